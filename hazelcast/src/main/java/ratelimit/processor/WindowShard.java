package ratelimit.processor;

import com.hazelcast.nio.ObjectDataInput;
import com.hazelcast.nio.ObjectDataOutput;
import com.hazelcast.nio.serialization.IdentifiedDataSerializable;
import java.io.IOException;
import java.util.Arrays;
import java.util.List;
import java.util.Objects;
import java.util.SortedMap;
import java.util.TreeMap;
import java.util.concurrent.atomic.LongAdder;

/**
 * The value of one counter shard: the policy states of many clients, each under the
 * client's key ({@code "{client_id}:p"}) as one {@code long[]}:
 * {@code [expiresAtMs, then per stored limit: slot, a, b, c]} ({@link #EXPIRES_AT},
 * {@link #STRIDE}). A limit's {@code a, b, c} are a fixed window's {@code windowStartMs,
 * count, 0}, a sliding window's {@code windowStartMs, count, previousCount} and GCRA's
 * {@code tatMs, tatFraction, 0}; {@link #statesOf} and {@link #toStored} convert them from
 * and to the rules' states. A limit finds its state by its slot, so a limit whose slot is
 * not stored starts empty, and a limit the policy no longer has is left out of the next
 * array stored. The keys and arrays are kept in a {@link WindowTable} (flat arrays, a
 * client key packed into 16 bytes), not a {@code HashMap}: a window is what a million
 * clients multiply.
 *
 * <p>Why many clients in one entry: one entry is what one entry processor can change
 * atomically with a synchronous backup, so the decisions of many clients that a replica
 * has queued at once cost one client message, one partition operation and one backup
 * instead of one of each per client. The map keeps shards in OBJECT format, so a decision
 * changes this object in place and nothing is serialised per call; only migration and
 * replication serialise it whole.
 *
 * <p>A key is dead once its expiry passed (the longest reset of its limits + grace, what a
 * per-entry TTL would be): {@link #live} ignores it at once, and dead keys are dropped by an
 * incremental sweep: a step ({@link #sweepStep}) looks at no more than {@link #SWEEP_STEP}
 * keys from a cursor, at most one step per millisecond while a pass is under way, and a new
 * pass over the whole shard starts at most every {@link #SWEEP_EVERY_MS} (10 s). So no call pays for
 * a walk of every window, however many the shard holds. The step's instant goes to the
 * backup, which takes the same step on its copy (the same keys in the same order, since it
 * applies the same changes), so both copies drop the same keys; if the copies ever walk
 * apart (a copy made mid-pass starts its cursor at 0), each still drops only dead keys. The
 * entry itself is written with a TTL that ends no earlier than its latest-expiring key
 * ({@link #latestExpiryMs}), so a shard no request touches any more leaves the map once all
 * its keys are over.
 *
 * <p>It also keeps the last call of each replica worker that changed it, with its answer
 * ({@link RecentCalls}), so a call sent again after its owner died is answered, not counted
 * twice, by whichever copy holds the entry then.
 *
 * <p>Wire format (member to member only): the number of keys as an int, then per key the key
 * as a string and its {@code long[]} (an int length, then the longs); then the recent calls in
 * {@link RecentCalls}'s format.
 */
public final class WindowShard implements IdentifiedDataSerializable {

    /**
     * The least time between the starts of two sweep passes over one shard. A pass looks at
     * every window (about 21 ns each measured, a pointer to follow per window), so its cost
     * per second is the windows held over this: at a pass a second, a million windows (two
     * copies) cost the partition threads about 43 ms a second, a quarter of their time at
     * 3,000-9,000 decisions a second; every 10 s, a tenth of that. A dead window is ignored
     * at once anyway; the pass only frees its memory, about 10 s later at most.
     */
    static final long SWEEP_EVERY_MS = 10_000L;
    /** The most keys one sweep step looks at. */
    static final int SWEEP_STEP = 512;
    /** Where a stored array holds its expiry; the limits' numbers follow it. */
    static final int EXPIRES_AT = 0;
    /** Longs per stored limit: slot, a, b, c. */
    static final int STRIDE = 4;

    /** Time spent in sweep steps on this member, primary and backup, for its metrics. */
    static final LongAdder SWEEP_NANOS = new LongAdder();
    /** Keys sweep steps looked at, and dropped, on this member. */
    static final LongAdder SWEEP_EXAMINED = new LongAdder();
    static final LongAdder SWEEP_DROPPED = new LongAdder();

    private final WindowTable states = new WindowTable();
    /** The last call of each worker that changed this shard, with its answer. */
    private final RecentCalls calls = new RecentCalls();
    /** No earlier than the expiry of the key that expires last. */
    private long latestExpiryMs;
    /** Not serialised: a copy (a promoted backup, a migrated shard) sweeps on first use. */
    private transient long nextSweepMs;
    /** Where the next sweep step starts; 0 starts a pass. */
    private transient int sweepCursor;
    /** The latest expiry among the keys the pass under way kept or stored. */
    private transient long passLatestExpiryMs;
    /** When the pass under way started. */
    private transient long passStartedMs;

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
        passLatestExpiryMs = Math.max(passLatestExpiryMs, stored[EXPIRES_AT]);
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

    /** The answer given to the call {@code seq} of {@code worker}, if it changed this shard. */
    long[] answerOf(long worker, long seq) {
        return calls.answerOf(worker, seq);
    }

    /** Records the answer of a call that changed this shard (see {@link RecentCalls}). */
    void rememberCall(long worker, long seq, long nowMs, long[] answer) {
        calls.remember(worker, seq, nowMs, answer);
    }

    /** Calls remembered, and the bytes their records hold (the members' metrics). */
    public int recentCallCount() {
        return calls.size();
    }

    public long recentCallBytes() {
        return calls.bytes();
    }

    /** No earlier than when the last of its keys expires: the end of the shard entry's TTL. */
    long latestExpiryMs() {
        return latestExpiryMs;
    }

    boolean sweepDue(long nowMs) {
        return nowMs >= nextSweepMs;
    }

    /**
     * One step of the sweep at {@code nowMs}: looks at up to {@link #SWEEP_STEP} keys from the
     * cursor and drops those expired at {@code nowMs}; returns how many it dropped. The last
     * key moves into a dropped key's place and is looked at there, so a pass sees every key
     * that was stored before it reached its place. When a pass ends, the latest expiry becomes
     * the latest of the keys it kept or saw stored, and the next pass is due
     * {@link #SWEEP_EVERY_MS} after this one started; otherwise the next step is due 1 ms later.
     */
    int sweepStep(long nowMs) {
        long started = System.nanoTime();
        if (sweepCursor == 0 || sweepCursor > states.size()) {
            sweepCursor = 0;
            passStartedMs = nowMs;
            passLatestExpiryMs = 0L;
        }
        int at = sweepCursor;
        int looked = 0;
        int dropped = 0;
        while (looked < SWEEP_STEP && at < states.size()) {
            long expiresAt = states.valueAt(at)[EXPIRES_AT];
            looked++;
            if (expiresAt <= nowMs) {
                states.removeAt(at);
                dropped++;
            } else {
                passLatestExpiryMs = Math.max(passLatestExpiryMs, expiresAt);
                at++;
            }
        }
        if (at >= states.size()) {
            sweepCursor = 0;
            latestExpiryMs = passLatestExpiryMs;
            nextSweepMs = passStartedMs + SWEEP_EVERY_MS;
        } else {
            sweepCursor = at;
            nextSweepMs = nowMs + 1;
        }
        SWEEP_EXAMINED.add(looked);
        SWEEP_DROPPED.add(dropped);
        SWEEP_NANOS.add(System.nanoTime() - started);
        return dropped;
    }

    /** Sweeps until a whole pass is done (tests, and a copy that must match its primary). */
    int sweep(long nowMs) {
        int dropped = sweepStep(nowMs);
        while (sweepCursor != 0) {
            dropped += sweepStep(nowMs);
        }
        return dropped;
    }

    int size() {
        return states.size();
    }

    /** Windows held, live or not yet swept; read by the member's metrics from another thread. */
    public int windowCount() {
        return states.size();
    }

    /** Nanoseconds spent in sweep steps on this member, primary and backup copies alike. */
    public static long sweepNanos() {
        return SWEEP_NANOS.sum();
    }

    /** Keys the sweep steps of this member looked at. */
    public static long sweepExamined() {
        return SWEEP_EXAMINED.sum();
    }

    /** Keys the sweep steps of this member dropped. */
    public static long sweepDropped() {
        return SWEEP_DROPPED.sum();
    }

    /** Every stored array, live or not, by key (a copy, for tests and comparisons). */
    SortedMap<String, List<Long>> snapshot() {
        TreeMap<String, List<Long>> copy = new TreeMap<>();
        for (int at = 0; at < states.size(); at++) {
            copy.put(states.keyAt(at), Arrays.stream(states.valueAt(at)).boxed().toList());
        }
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
        for (int at = 0; at < states.size(); at++) {
            out.writeString(states.keyAt(at));
            out.writeLongArray(states.valueAt(at));
        }
        calls.writeTo(out);
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
        calls.readFrom(in);
    }
}
