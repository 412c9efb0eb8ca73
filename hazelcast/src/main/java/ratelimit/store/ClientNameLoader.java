package ratelimit.store;

import com.hazelcast.core.HazelcastInstance;
import com.hazelcast.map.MapLoader;
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
 * Loads one names map (name to id) from the records of its paired records map, where
 * each name is unique: the database holds each name exactly once, inside its record.
 *
 * <p>It only loads: names are claimed in memory ({@code put_if_absent}, which decides
 * which of two concurrent creates wins), and what is durable of a name is its record.
 * A create writes its record first (durably, or not at all) and claims the name second,
 * so a database that is away never leaves a name without its record or a record
 * without its name behind, in memory or on disk.
 */
public final class ClientNameLoader implements MapLoader<String, String>, MapLoaderLifecycleSupport {

    private final RegistryDatabase database;
    private final String recordsMap;
    /** Set by the member before the first load; see {@link ClusterReadiness}. */
    private volatile ClusterReadiness readiness;

    public ClientNameLoader(RegistryDatabase database, String recordsMap) {
        this.database = database;
        this.recordsMap = recordsMap;
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
    public String load(String name) {
        // Loaded whole at start; a name missing from memory is free (see ClientRecordStore).
        return null;
    }

    @Override
    public Map<String, String> loadAll(Collection<String> names) {
        return database.callPatiently(connection -> {
            Map<String, String> found = new HashMap<>();
            Array keys = connection.createArrayOf("text", names.toArray());
            try (PreparedStatement select = connection.prepareStatement(
                    "SELECT name, id FROM " + RegistryDatabase.TABLE
                            + " WHERE map_name = ? AND name = ANY (?)")) {
                select.setString(1, recordsMap);
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
            gate.await("loading the names of " + recordsMap);
        }
        return database.callPatiently(connection -> {
            List<String> names = new ArrayList<>();
            try (PreparedStatement select = connection.prepareStatement(
                    "SELECT name FROM " + RegistryDatabase.TABLE + " WHERE map_name = ?")) {
                select.setString(1, recordsMap);
                try (ResultSet rows = select.executeQuery()) {
                    while (rows.next()) {
                        names.add(rows.getString(1));
                    }
                }
            }
            return names;
        });
    }
}
