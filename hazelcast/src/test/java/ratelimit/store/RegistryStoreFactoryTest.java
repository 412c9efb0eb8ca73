package ratelimit.store;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;

import java.util.Properties;
import org.junit.jupiter.api.Test;

class RegistryStoreFactoryTest {

    private static Properties properties(String role) {
        Properties properties = new Properties();
        properties.setProperty("role", role);
        properties.setProperty("records.prefix", "ratelimit.clients");
        properties.setProperty("names.prefix", "ratelimit.names");
        // Nothing listens on port 1: the database is away.
        properties.setProperty("jdbc.url", "jdbc:postgresql://127.0.0.1:1/none");
        properties.setProperty("jdbc.user", "ratelimit");
        return properties;
    }

    /** A names map is loaded from the records map with the same suffix. */
    @Test
    void namesMapIsPairedWithTheRecordsMapOfTheSameSuffix() {
        assertEquals("ratelimit.clients", RegistryStoreFactory.recordsMapOf(
                "ratelimit.names", "ratelimit.names", "ratelimit.clients"));
        assertEquals("ratelimit.clients.api-1234", RegistryStoreFactory.recordsMapOf(
                "ratelimit.names.api-1234", "ratelimit.names", "ratelimit.clients"));
        assertThrows(IllegalArgumentException.class, () -> RegistryStoreFactory.recordsMapOf(
                "other.names", "ratelimit.names", "ratelimit.clients"));
    }

    /** Each role gets its kind of store, built without touching the database. */
    @Test
    void rolesGiveAWriteThroughStoreAndALoader() {
        RegistryStoreFactory factory = new RegistryStoreFactory();
        assertInstanceOf(ClientRecordStore.class, factory.newMapStore("ratelimit.clients", properties("records")));
        assertInstanceOf(ClientNameLoader.class, factory.newMapStore("ratelimit.names", properties("names")));
        assertThrows(IllegalArgumentException.class,
                () -> factory.newMapStore("ratelimit.clients", properties("other")));
    }

    /** A single key missing from memory is absent: no query, even with no database. */
    @Test
    void aSingleMissingKeyIsAbsentWithoutAQuery() {
        RegistryStoreFactory factory = new RegistryStoreFactory();
        assertNull(factory.newMapStore("ratelimit.clients", properties("records")).load("x"));
        assertNull(factory.newMapStore("ratelimit.names", properties("names")).load("x"));
    }

    /** With the database away, a write fails with the exception the API maps to 503. */
    @Test
    void aWriteWithTheDatabaseAwayFailsAsUnavailable() {
        ClientRecordStore store = (ClientRecordStore) new RegistryStoreFactory()
                .newMapStore("ratelimit.clients", properties("records"));
        assertThrows(RegistryUnavailableException.class, () -> store.store("id", "{\"name\":\"a\"}"));
    }
}
