package ratelimit.processor;

import com.hazelcast.nio.ObjectDataInput;
import com.hazelcast.nio.ObjectDataOutput;
import com.hazelcast.nio.serialization.IdentifiedDataSerializable;
import java.io.IOException;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.SortedMap;
import java.util.TreeMap;

/**
 * The value of one counter shard: the windows of many clients, each
 * {@code long[]{windowStartMs, count, expiresAtMs}}, under the client's window key.
 *
 * <p>Why many windows in one entry: one entry is what one entry processor can change
 * atomically with a synchronous backup, so the decisions of many clients that a replica
 * has queued at once cost one client message, one partition operation and one backup
 * instead of one of each per client. The map keeps shards in OBJECT format, so a decision
 * changes this object in place and nothing is serialised per call; only migration and
 * replication serialise it whole.
 *
 * <p>A window is dead once its expiry passed (window end + grace, what a per-entry TTL
 * would be): {@link #live} ignores it at once, and {@link #sweep} drops dead windows at most
 * every {@link #SWEEP_EVERY_MS}, with the instant passed on to the backup so both copies
 * drop the same ones. The entry itself is written with a TTL that ends with its
 * latest-expiring window ({@link #latestExpiryMs}), so a shard no request touches any more
 * leaves the map once all its windows are over.
 */
public final class WindowShard implements IdentifiedDataSerializable {

    /** The least time between two sweeps of one shard on its owner. */
    static final long SWEEP_EVERY_MS = 1_000L;

    private final HashMap<String, long[]> windows = new HashMap<>();
    /** The expiry of the window that expires last; never earlier than that. */
    private long latestExpiryMs;
    /** Not serialised: a copy (a promoted backup, a migrated shard) sweeps on first use. */
    private transient long nextSweepMs;

    public WindowShard() {
    }

    /** The window stored under {@code key} if it has not expired at {@code nowMs}, else null. */
    long[] live(String key, long nowMs) {
        long[] window = windows.get(key);
        return window != null && window[2] > nowMs ? window : null;
    }

    /** Stores a window and returns its state; a stored state is never changed in place. */
    long[] put(String key, long windowStartMs, long count, long expiresAtMs) {
        long[] state = {windowStartMs, count, expiresAtMs};
        windows.put(key, state);
        latestExpiryMs = Math.max(latestExpiryMs, expiresAtMs);
        return state;
    }

    /** When the last of its windows expires: the end of the shard entry's TTL. */
    long latestExpiryMs() {
        return latestExpiryMs;
    }

    boolean sweepDue(long nowMs) {
        return nowMs >= nextSweepMs;
    }

    /** Drops every window expired at {@code nowMs}; returns how many. */
    int sweep(long nowMs) {
        int before = windows.size();
        windows.values().removeIf(window -> window[2] <= nowMs);
        latestExpiryMs = 0L;
        for (long[] window : windows.values()) {
            latestExpiryMs = Math.max(latestExpiryMs, window[2]);
        }
        nextSweepMs = nowMs + SWEEP_EVERY_MS;
        return before - windows.size();
    }

    int size() {
        return windows.size();
    }

    /** Every stored window, live or not, by key (a copy, for tests and comparisons). */
    SortedMap<String, List<Long>> snapshot() {
        TreeMap<String, List<Long>> copy = new TreeMap<>();
        windows.forEach((key, state) -> copy.put(key, List.of(state[0], state[1], state[2])));
        return copy;
    }

    @Override
    public int getFactoryId() {
        return ProcessorFactory.FACTORY_ID;
    }

    @Override
    public int getClassId() {
        return ProcessorFactory.WINDOW_SHARD;
    }

    @Override
    public void writeData(ObjectDataOutput out) throws IOException {
        out.writeInt(windows.size());
        for (Map.Entry<String, long[]> window : windows.entrySet()) {
            out.writeString(window.getKey());
            long[] state = window.getValue();
            out.writeLong(state[0]);
            out.writeLong(state[1]);
            out.writeLong(state[2]);
        }
    }

    @Override
    public void readData(ObjectDataInput in) throws IOException {
        windows.clear();
        int n = in.readInt();
        for (int i = 0; i < n; i++) {
            String key = in.readString();
            put(key, in.readLong(), in.readLong(), in.readLong());
        }
    }
}
