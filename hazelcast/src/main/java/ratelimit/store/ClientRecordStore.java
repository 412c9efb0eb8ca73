package ratelimit.store;

import com.hazelcast.map.MapStore;
import com.hazelcast.core.HazelcastInstance;
import com.hazelcast.map.MapLoaderLifecycleSupport;
import java.sql.Array;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.util.ArrayList;
import java.util.Collection;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;

/**
 * Write-through store of one client-records map (id to record, a JSON string with a
 * {@code name}): every put, replace and remove is written to PostgreSQL before the member
 * changes its memory, so an operation whose write failed changes nothing, and one that
 * answered is durable.
 *
 * <p>The whole map is loaded when the cluster starts (initial-load-mode EAGER). After
 * that, memory holds every record (every write goes through it), so {@link #load} of one
 * key answers "none" without asking the database: an unknown id costs no query, and is
 * answered while the database is away.
 */
public final class ClientRecordStore implements MapStore<String, String>, MapLoaderLifecycleSupport {

    private final RegistryDatabase database;
    private final String mapName;
    /** Set by the member before the first load; see {@link ClusterReadiness}. */
    private volatile ClusterReadiness readiness;

    public ClientRecordStore(RegistryDatabase database, String mapName) {
        this.database = database;
        this.mapName = mapName;
    }

    @Override
    public void store(String id, String record) {
        database.call(connection -> {
            try (PreparedStatement upsert = connection.prepareStatement(
                    "INSERT INTO " + RegistryDatabase.TABLE + " (map_name, id, record) VALUES (?, ?, ?)"
                            + " ON CONFLICT (map_name, id) DO UPDATE SET record = EXCLUDED.record,"
                            + " stored_at = now()")) {
                upsert.setString(1, mapName);
                upsert.setString(2, id);
                upsert.setString(3, record);
                return upsert.executeUpdate();
            }
        });
    }

    @Override
    public void storeAll(Map<String, String> records) {
        // Each record on its own: one that fails must not take the others with it, and
        // the registry never writes more than one at a time.
        records.forEach(this::store);
    }

    @Override
    public void delete(String id) {
        database.call(connection -> {
            try (PreparedStatement delete = connection.prepareStatement(
                    "DELETE FROM " + RegistryDatabase.TABLE + " WHERE map_name = ? AND id = ?")) {
                delete.setString(1, mapName);
                delete.setString(2, id);
                return delete.executeUpdate();
            }
        });
    }

    @Override
    public void deleteAll(Collection<String> ids) {
        ids.forEach(this::delete);
    }

    @Override
    public void init(HazelcastInstance instance, Properties properties, String name) {
        readiness = ClusterReadiness.of(instance);
    }

    @Override
    public void destroy() {
        // The connection pool is shared by every registry map of this member.
    }

    @Override
    public String load(String id) {
        return null;
    }

    @Override
    public Map<String, String> loadAll(Collection<String> ids) {
        return database.callPatiently(connection -> {
            Map<String, String> found = new HashMap<>();
            Array keys = connection.createArrayOf("text", ids.toArray());
            try (PreparedStatement select = connection.prepareStatement(
                    "SELECT id, record FROM " + RegistryDatabase.TABLE
                            + " WHERE map_name = ? AND id = ANY (?)")) {
                select.setString(1, mapName);
                select.setArray(2, keys);
                try (ResultSet rows = select.executeQuery()) {
                    while (rows.next()) {
                        found.put(rows.getString(1), rows.getString(2));
                    }
                }
            }
            return found;
        });
    }

    @Override
    public Iterable<String> loadAllKeys() {
        ClusterReadiness gate = readiness;
        if (gate != null) {
            gate.await("loading " + mapName);
        }
        return database.callPatiently(connection -> {
            List<String> ids = new ArrayList<>();
            try (PreparedStatement select = connection.prepareStatement(
                    "SELECT id FROM " + RegistryDatabase.TABLE + " WHERE map_name = ?")) {
                select.setString(1, mapName);
                try (ResultSet rows = select.executeQuery()) {
                    while (rows.next()) {
                        ids.add(rows.getString(1));
                    }
                }
            }
            return ids;
        });
    }
}
