package ratelimit.store;

import com.hazelcast.map.MapLoader;
import com.hazelcast.map.MapStoreFactory;
import java.util.Properties;

/**
 * The map store of each registry map, configured in hazelcast.xml by these properties:
 *
 * <ul>
 *   <li>{@code role}: {@code records} (id to record, written through) or {@code names}
 *       (name to id, loaded from the records);
 *   <li>{@code records.prefix} and {@code names.prefix}: a names map {@code <names.prefix>X}
 *       is loaded from the records of map {@code <records.prefix>X} (the tests give each
 *       run a pair of maps with one suffix);
 *   <li>{@code jdbc.url}, {@code jdbc.user}, {@code jdbc.password}: the database.
 * </ul>
 */
public final class RegistryStoreFactory implements MapStoreFactory<String, String> {

    @Override
    public MapLoader<String, String> newMapStore(String mapName, Properties properties) {
        RegistryDatabase database = RegistryDatabase.shared(
                required(properties, "jdbc.url"),
                required(properties, "jdbc.user"),
                properties.getProperty("jdbc.password", ""));
        String role = required(properties, "role");
        switch (role) {
            case "records":
                return new ClientRecordStore(database, mapName);
            case "names":
                return new ClientNameLoader(database, recordsMapOf(
                        mapName,
                        required(properties, "names.prefix"),
                        required(properties, "records.prefix")));
            default:
                throw new IllegalArgumentException("map store role must be records or names, not " + role);
        }
    }

    /** The records map paired with a names map: the same suffix after the other prefix. */
    static String recordsMapOf(String namesMap, String namesPrefix, String recordsPrefix) {
        if (!namesMap.startsWith(namesPrefix)) {
            throw new IllegalArgumentException(
                    "names map " + namesMap + " does not start with " + namesPrefix);
        }
        return recordsPrefix + namesMap.substring(namesPrefix.length());
    }

    private static String required(Properties properties, String key) {
        String value = properties.getProperty(key);
        if (value == null || value.isEmpty()) {
            throw new IllegalArgumentException("map store property " + key + " is missing");
        }
        return value;
    }
}
