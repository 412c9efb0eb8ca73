package ratelimit.store;

import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.SQLException;
import java.sql.Statement;
import java.util.Map;
import java.util.Objects;
import java.util.Properties;
import java.util.concurrent.ArrayBlockingQueue;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.Semaphore;
import java.util.concurrent.TimeUnit;

/**
 * The registry's PostgreSQL database as one member sees it: a few pooled JDBC connections
 * and the schema, created on first use.
 *
 * <p>One table holds the records of every registry map (the tests give each run its own
 * maps), keyed by map name and client id. The client's name is a column generated from
 * the record, unique per map: the database never holds two clients of one name, and the
 * names map is loaded from it, so it never holds a name without its record either.
 *
 * <p>A connection that fails is dropped with every idle one, and the call is tried once
 * more on a fresh connection (every statement here is idempotent), so a database that
 * restarted is used again at once; a database that is away fails the call within the
 * driver's timeouts.
 */
public final class RegistryDatabase {

    static final String TABLE = "ratelimit_registry";
    static final String NAME_CONSTRAINT = "ratelimit_registry_name_unique";
    /** Connections of one member at most, in use or idle (the initial load runs on many
     *  partition threads at once; the database's max_connections is shared). */
    private static final int POOL_SIZE = 4;
    private static final long PERMIT_WAIT_SECONDS = 3;
    /** Attempts of a load at cluster start: a load that fails leaves partitions empty. */
    private static final int LOAD_ATTEMPTS = 6;
    /** Serialises the schema's creation between members (a transaction-scoped lock). */
    private static final long SCHEMA_LOCK = 7301_0014L;

    private static final Map<String, RegistryDatabase> SHARED = new ConcurrentHashMap<>();

    private final String url;
    private final Properties properties;
    private final BlockingQueue<Connection> idle = new ArrayBlockingQueue<>(POOL_SIZE);
    private final Semaphore permits = new Semaphore(POOL_SIZE, true);
    private volatile boolean schemaReady;

    RegistryDatabase(String url, String user, String password) {
        this.url = Objects.requireNonNull(url, "jdbc url");
        this.properties = new Properties();
        properties.setProperty("user", user);
        if (password != null && !password.isEmpty()) {
            properties.setProperty("password", password);
        }
        // A database that is away fails a call in seconds, never hangs a partition thread:
        // with one retry on a fresh connection, within about 4 s, below the API replicas'
        // 5 s management deadline, so a 503 for a timeout is not followed by a late write.
        properties.setProperty("connectTimeout", "2");
        properties.setProperty("loginTimeout", "2");
        properties.setProperty("socketTimeout", "2");
        properties.setProperty("tcpKeepAlive", "true");
        properties.setProperty("ApplicationName", "ratelimit-member");
    }

    /** The one pool of this member for a database (every registry map shares it). */
    static RegistryDatabase shared(String url, String user, String password) {
        String key = url + "\u0000" + user;
        return SHARED.computeIfAbsent(key, k -> new RegistryDatabase(url, user, password));
    }

    /** Work on one connection, in autocommit mode unless the work says otherwise. */
    @FunctionalInterface
    interface Work<T> {
        T run(Connection connection) throws SQLException;
    }

    /**
     * Runs {@code work} on a pooled connection; a broken connection is replaced and the
     * work tried once more. Errors of the database's own making (a constraint) are not
     * retried.
     */
    <T> T call(Work<T> work) {
        try {
            if (!permits.tryAcquire(PERMIT_WAIT_SECONDS, TimeUnit.SECONDS)) {
                throw new RegistryUnavailableException(
                        "the registry database is busy: no connection free within "
                                + PERMIT_WAIT_SECONDS + " s", null);
            }
        } catch (InterruptedException interrupted) {
            Thread.currentThread().interrupt();
            throw new RegistryUnavailableException("interrupted waiting for a connection", interrupted);
        }
        try {
            return callHoldingPermit(work);
        } finally {
            permits.release();
        }
    }

    /**
     * {@link #call} retried with a growing pause (0.2 s, 0.4 s, ... about 6 s in all): for
     * the initial load, where a failure would leave the map incomplete until the next
     * restart, while a write answers its caller at once instead.
     */
    <T> T callPatiently(Work<T> work) {
        long pauseMillis = 200;
        for (int attempt = 1; ; attempt++) {
            try {
                return call(work);
            } catch (RegistryUnavailableException error) {
                if (attempt >= LOAD_ATTEMPTS) {
                    throw error;
                }
            }
            try {
                Thread.sleep(pauseMillis);
            } catch (InterruptedException interrupted) {
                Thread.currentThread().interrupt();
                throw new RegistryUnavailableException("interrupted loading", interrupted);
            }
            pauseMillis *= 2;
        }
    }

    private <T> T callHoldingPermit(Work<T> work) {
        SQLException last = null;
        for (int attempt = 0; attempt < 2; attempt++) {
            Connection connection = null;
            try {
                connection = take();
                T result = work.run(connection);
                release(connection);
                return result;
            } catch (SQLException error) {
                if (isConstraint(error) && connection != null) {
                    release(connection);
                    throw translate(error);
                }
                // One broken connection means the others are suspect too (the database
                // restarted, say): the retry, and every call after it, starts afresh.
                discard(connection);
                discardIdle();
                last = error;
            }
        }
        throw translate(last);
    }

    private Connection take() throws SQLException {
        Connection connection = idle.poll();
        if (connection == null) {
            connection = DriverManager.getConnection(url, properties);
        }
        if (!schemaReady) {
            createSchema(connection);
        }
        return connection;
    }

    private void release(Connection connection) {
        try {
            if (!connection.getAutoCommit()) {
                connection.setAutoCommit(true);
            }
        } catch (SQLException error) {
            discard(connection);
            return;
        }
        if (!idle.offer(connection)) {
            discard(connection);
        }
    }

    private void discardIdle() {
        Connection connection;
        while ((connection = idle.poll()) != null) {
            discard(connection);
        }
    }

    private static void discard(Connection connection) {
        if (connection == null) {
            return;
        }
        try {
            connection.close();
        } catch (SQLException ignored) {
            // Already broken: nothing to close.
        }
    }

    private void createSchema(Connection connection) throws SQLException {
        connection.setAutoCommit(false);
        try (Statement statement = connection.createStatement()) {
            statement.execute("SELECT pg_advisory_xact_lock(" + SCHEMA_LOCK + ")");
            statement.execute(
                    "CREATE TABLE IF NOT EXISTS " + TABLE + " ("
                            + " map_name text NOT NULL,"
                            + " id text NOT NULL,"
                            + " record text NOT NULL,"
                            + " name text GENERATED ALWAYS AS ((record::jsonb) ->> 'name') STORED NOT NULL,"
                            + " stored_at timestamptz NOT NULL DEFAULT now(),"
                            + " PRIMARY KEY (map_name, id),"
                            + " CONSTRAINT " + NAME_CONSTRAINT + " UNIQUE (map_name, name))");
            connection.commit();
        } catch (SQLException error) {
            connection.rollback();
            throw error;
        } finally {
            connection.setAutoCommit(true);
        }
        schemaReady = true;
    }

    private static boolean isConstraint(SQLException error) {
        String state = error.getSQLState();
        return state != null && state.startsWith("23");
    }

    private static RuntimeException translate(SQLException error) {
        if ("23505".equals(error.getSQLState()) && String.valueOf(error.getMessage()).contains(NAME_CONSTRAINT)) {
            return new NameTakenException("a client with this name already exists");
        }
        return new RegistryUnavailableException(
                "the registry database did not answer: " + error.getMessage(), error);
    }
}
