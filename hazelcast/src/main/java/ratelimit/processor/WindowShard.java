package ratelimit.processor;

import com.hazelcast.nio.ObjectDataInput;
import com.hazelcast.nio.ObjectDataOutput;
import com.hazelcast.nio.serialization.IdentifiedDataSerializable;
import java.io.IOException;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.SortedMap;
import java.util.TreeMap;

/**
 * The value of one counter shard: the policy states of many clients, each under the
 * client's key ({@code "{client_id}:p"}) as one {@code long[]}:
 * {@code [expiresAtMs, then per stored limit: slot, a, b, c]} ({@link #EXPIRES_AT},
 * {@link #STRIDE}). A limit's {@code a, b, c} are a fixed window's {@code windowStartMs,
 * count, 0}, a sliding window's {@code windowStartMs, count, previousCount} and GCRA's
 * {@code tatMs, tatFraction, 0}; {@link #statesOf} and {@link #toStored} convert them from
 * and to the rules' states. A limit finds its state by its slot, so a limit whose slot is
 * not stored starts empty, and a limit the policy no longer has is left out of the next
 * array stored.
 *
 * <p>Why many clients in one entry: one entry is what one entry processor can change
 * atomically with a synchronous backup, so the decisions of many clients that a replica
 * has queued at once cost one client message, one partition operation and one backup
 * instead of one of each per client. The map keeps shards in OBJECT format, so a decision
 * changes this object in place and nothing is serialised per call; only migration and
 * replication serialise it whole.
 *
 * <p>A key is dead once its expiry passed (the longest reset of its limits + grace, what a
 * per-entry TTL would be): {@link #live} ignores it at once, and {@link #sweep} drops dead
 * keys at most every {@link #SWEEP_EVERY_MS}, with the instant passed on to the backup so
 * both copies drop the same ones. The entry itself is written with a TTL that ends with its
 * latest-expiring key ({@link #latestExpiryMs}), so a shard no request touches any more
 * leaves the map once all its keys are over.
 *
 * <p>Wire format (member to member only): the number of keys as an int, then per key the key
 * as a string and its {@code long[]} (an int length, then the longs).
 */
public final class WindowShard implements IdentifiedDataSerializable {

    /** The least time between two sweeps of one shard on its owner. */
    static final long SWEEP_EVERY_MS = 1_000L;
    /** Where a stored array holds its expiry; the limits' numbers follow it. */
    static final int EXPIRES_AT = 0;
    /** Longs per stored limit: slot, a, b, c. */
    static final int STRIDE = 4;

    private final HashMap<String, long[]> states = new HashMap<>();
    /** The expiry of the key that expires last; never earlier than that. */
    private long latestExpiryMs;
    /** Not serialised: a copy (a promoted backup, a migrated shard) sweeps on first use. */
    private transient long nextSweepMs;

    public WindowShard() {
    }

    /** The array stored under {@code key} if it has not expired at {@code nowMs}, else null. */
    long[] live(String key, long nowMs) {
        long[] stored = states.get(key);
        return stored != null && stored[EXPIRES_AT] > nowMs ? stored : null;
    }

    /**
     * Stores {@code stored} ({@code [expiresAtMs, slot, a, b, c, ...]}) under {@code key}, as is:
     * a stored array is never changed in place afterwards, so it can go to the backup as it is.
     */
    void put(String key, long[] stored) {
        if (stored == null || stored.length < 1 || (stored.length - 1) % STRIDE != 0) {
            throw new IllegalArgumentException("a stored state is an expiry then 4 longs per limit");
        }
        states.put(key, stored);
        latestExpiryMs = Math.max(latestExpiryMs, stored[EXPIRES_AT]);
    }

    /**
     * Each limit's state, in policy order, from a stored array ({@code [expiresAtMs, slot, a,
     * b, c, ...]}, or null): the numbers stored under the limit's slot, read as its algorithm's
     * state, or null when its slot is not stored.
     */
    static Object[] statesOf(ShardProcessor.WireLimit[] limits, long[] stored) {
        Object[] states = new Object[limits.length];
        if (stored == null) {
            return states;
        }
        for (int j = 0; j < limits.length; j++) {
            for (int at = 1; at + STRIDE <= stored.length; at += STRIDE) {
                if (stored[at] != limits[j].slot()) {
                    continue;
                }
                long a = stored[at + 1];
                long b = stored[at + 2];
                long c = stored[at + 3];
                states[j] = switch (limits[j].algorithm()) {
                    case PolicyRule.FIXED_WINDOW -> new PolicyRule.FixedState(a, b);
                    case PolicyRule.SLIDING_WINDOW -> new SlidingWindowRule.State(a, b, c);
                    case PolicyRule.GCRA -> new GcraRule.State(a, b);
                    default -> throw new IllegalArgumentException("unknown algorithm " + limits[j].algorithm());
                };
                break;
            }
        }
        return states;
    }

    /**
     * The array to store: {@code expiresAtMs}, then per limit with a state, in policy order,
     * its slot, a, b, c; a limit whose state is null is left out.
     */
    static long[] toStored(ShardProcessor.WireLimit[] limits, Object[] states, long expiresAtMs) {
        int kept = 0;
        for (Object state : states) {
            kept += state == null ? 0 : 1;
        }
        long[] stored = new long[1 + STRIDE * kept];
        stored[EXPIRES_AT] = expiresAtMs;
        int at = 1;
        for (int j = 0; j < limits.length; j++) {
            Object state = states[j];
            if (state == null) {
                continue;
            }
            stored[at] = limits[j].slot();
            if (state instanceof PolicyRule.FixedState s) {
                stored[at + 1] = s.windowStartMs();
                stored[at + 2] = s.count();
            } else if (state instanceof SlidingWindowRule.State s) {
                stored[at + 1] = s.windowStartMs();
                stored[at + 2] = s.count();
                stored[at + 3] = s.previousCount();
            } else if (state instanceof GcraRule.State s) {
                stored[at + 1] = s.tatMs();
                stored[at + 2] = s.tatFraction();
            } else {
                throw new IllegalArgumentException("unknown state " + state);
            }
            at += STRIDE;
        }
        return stored;
    }

    /**
     * {@code stored} with the numbers of each limit whose state differs between {@code before}
     * and {@code after} (both as {@link #statesOf} reads them) written at its slot, in a copy;
     * the expiry and every other number are kept. {@code stored} itself when nothing differs.
     * A limit's state only ever changes where it was stored (a refund never creates one).
     */
    static long[] withStates(ShardProcessor.WireLimit[] limits, long[] stored, Object[] before, Object[] after) {
        long[] updated = stored;
        for (int j = 0; j < limits.length; j++) {
            if (Objects.equals(before[j], after[j]) || after[j] == null) {
                continue;
            }
            for (int at = 1; at + STRIDE <= stored.length; at += STRIDE) {
                if (stored[at] != limits[j].slot()) {
                    continue;
                }
                if (updated == stored) {
                    updated = stored.clone();
                }
                long[] numbers = numbersOf(after[j]);
                updated[at + 1] = numbers[0];
                updated[at + 2] = numbers[1];
                updated[at + 3] = numbers[2];
                break;
            }
        }
        return updated;
    }

    /** A rule's state as the three numbers stored for it. */
    private static long[] numbersOf(Object state) {
        if (state instanceof PolicyRule.FixedState s) {
            return new long[] {s.windowStartMs(), s.count(), 0L};
        }
        if (state instanceof SlidingWindowRule.State s) {
            return new long[] {s.windowStartMs(), s.count(), s.previousCount()};
        }
        if (state instanceof GcraRule.State s) {
            return new long[] {s.tatMs(), s.tatFraction(), 0L};
        }
        throw new IllegalArgumentException("unknown state " + state);
    }

    /** When the last of its keys expires: the end of the shard entry's TTL. */
    long latestExpiryMs() {
        return latestExpiryMs;
    }

    boolean sweepDue(long nowMs) {
        return nowMs >= nextSweepMs;
    }

    /** Drops every key expired at {@code nowMs}; returns how many. */
    int sweep(long nowMs) {
        int before = states.size();
        states.values().removeIf(stored -> stored[EXPIRES_AT] <= nowMs);
        latestExpiryMs = 0L;
        for (long[] stored : states.values()) {
            latestExpiryMs = Math.max(latestExpiryMs, stored[EXPIRES_AT]);
        }
        nextSweepMs = nowMs + SWEEP_EVERY_MS;
        return before - states.size();
    }

    int size() {
        return states.size();
    }

    /** Every stored array, live or not, by key (a copy, for tests and comparisons). */
    SortedMap<String, List<Long>> snapshot() {
        TreeMap<String, List<Long>> copy = new TreeMap<>();
        states.forEach((key, stored) -> copy.put(key, Arrays.stream(stored).boxed().toList()));
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
        out.writeInt(states.size());
        for (Map.Entry<String, long[]> stored : states.entrySet()) {
            out.writeString(stored.getKey());
            out.writeLongArray(stored.getValue());
        }
    }

    @Override
    public void readData(ObjectDataInput in) throws IOException {
        states.clear();
        latestExpiryMs = 0L;
        int n = in.readInt();
        for (int i = 0; i < n; i++) {
            String key = in.readString();
            put(key, in.readLongArray());
        }
    }
}
