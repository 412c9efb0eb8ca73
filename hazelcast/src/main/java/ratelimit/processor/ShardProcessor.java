package ratelimit.processor;

import com.hazelcast.map.EntryProcessor;
import com.hazelcast.map.ExtendedMapEntry;
import com.hazelcast.nio.ObjectDataInput;
import com.hazelcast.nio.ObjectDataOutput;
import com.hazelcast.nio.serialization.IdentifiedDataSerializable;
import java.io.IOException;
import java.util.Map;
import java.util.concurrent.TimeUnit;

/**
 * Fixed-window decisions for the queued requests of several windows that live in one
 * {@link WindowShard}, run on the partition owner of the shard's key.
 *
 * <p>Each window's queued requests are decided in order by
 * {@link FixedWindowRule#decideBatch}, all at one instant: the member's clock unless the
 * caller injects a time ({@code nowMs > MEMBER_CLOCK}, for tests), so replicas with skewed
 * clocks still agree on window edges. A window that admitted something is stored with its
 * expiry (window end + {@code expiryGraceMs}); denied requests change nothing. Everything the call changed goes to the backup
 * replica as values ({@link ShardBackupProcessor}), before the caller is answered.
 *
 * <p>Wire format, in this order: {@code nowMs} ({@link #MEMBER_CLOCK}: the member's clock) and
 * {@code expiryGraceMs} as longs, the number of windows as an int, then per window its
 * key as a string, {@code limit} and {@code windowSeconds} as longs, {@code alignment} as
 * an int and the costs as a long array.
 *
 * <p>The result is, per window in order, {@code limit, resetAfterMs} then
 * {@code allowed (1|0), remaining, reason} per request ({@link #toResult}), all in one
 * {@code long[]}: a plain array, so the Python client reads it without a registered
 * factory.
 *
 * <p>The numbers of this contract ({@link #MEMBER_CLOCK}, {@link #RESULT_HEADER},
 * {@link #RESULT_STRIDE}, the ids in {@link ProcessorFactory}, the reasons and alignments
 * of {@link FixedWindowRule}) are written once, in {@code tests/vectors/processor_wire.csv},
 * and checked against it on both sides ({@code WireContractTest} here).
 */
public class ShardProcessor
        implements EntryProcessor<Object, Object, long[]>, IdentifiedDataSerializable {

    /** Sent instead of a time: the member's clock picks the window (any lower value too). */
    static final long MEMBER_CLOCK = -1L;
    /** Result slots of a window before its per-request triples: limit, resetAfterMs. */
    static final int RESULT_HEADER = 2;
    /** Result slots per request: allowed, remaining, reason. */
    static final int RESULT_STRIDE = 3;

    private long nowMs;
    private long expiryGraceMs;
    private String[] keys;
    private long[] limits;
    private long[] windowSeconds;
    private int[] alignments;
    private long[][] costs;
    /** Set by process(): what the backup replica must apply, or null if nothing changed. */
    private transient ShardBackupProcessor backup;

    public ShardProcessor() {
    }

    public ShardProcessor(
            long nowMs,
            long expiryGraceMs,
            String[] keys,
            long[] limits,
            long[] windowSeconds,
            int[] alignments,
            long[][] costs) {
        this.nowMs = nowMs;
        this.expiryGraceMs = expiryGraceMs;
        this.keys = keys;
        this.limits = limits;
        this.windowSeconds = windowSeconds;
        this.alignments = alignments;
        this.costs = costs;
    }

    @Override
    public long[] process(Map.Entry<Object, Object> entry) {
        validate();
        long now = nowMs > MEMBER_CLOCK ? nowMs : System.currentTimeMillis();
        WindowShard shard = entry.getValue() instanceof WindowShard stored ? stored : new WindowShard();
        long sweptAt = ShardBackupProcessor.NO_SWEEP;
        if (shard.sweepDue(now)) {
            shard.sweep(now);
            sweptAt = now;
        }
        int n = keys.length;
        int resultLength = 0;
        for (long[] batch : costs) {
            resultLength += RESULT_HEADER + RESULT_STRIDE * batch.length;
        }
        long[] result = new long[resultLength];
        int at = 0;
        int changes = 0;
        String[] changedKeys = new String[n];
        long[][] changedStates = new long[n][];
        for (int i = 0; i < n; i++) {
            long[] state = shard.live(keys[i], now);
            FixedWindowRule.BatchOutcome outcome = FixedWindowRule.decideBatch(
                    state != null,
                    state != null ? state[0] : 0L,
                    state != null ? state[1] : 0L,
                    now,
                    costs[i],
                    limits[i],
                    windowSeconds[i],
                    alignments[i]);
            long[] answer = toResult(outcome);
            System.arraycopy(answer, 0, result, at, answer.length);
            at += answer.length;
            // Denied requests change nothing.
            if (outcome.anyAllowed()) {
                long expiresAt = now + outcome.resetAfterMs() + expiryGraceMs;
                changedKeys[changes] = keys[i];
                changedStates[changes] = shard.put(keys[i], outcome.windowStartMs(), outcome.count(), expiresAt);
                changes++;
            }
        }
        if (changes > 0 || sweptAt != ShardBackupProcessor.NO_SWEEP) {
            // The same object, set again: that marks the entry changed and sends the backup.
            // It lives until its last window expires (at least 1 ms: 0 would mean forever).
            long ttlMs = Math.max(1L, shard.latestExpiryMs() - now);
            ((ExtendedMapEntry<Object, Object>) entry).setValue(shard, ttlMs, TimeUnit.MILLISECONDS);
            backup = new ShardBackupProcessor(sweptAt, ttlMs, changes, changedKeys, changedStates);
        }
        return result;
    }

    /** Lays one window's batch outcome out as its part of the documented result array. */
    static long[] toResult(FixedWindowRule.BatchOutcome outcome) {
        int n = outcome.allowed().length;
        long[] result = new long[RESULT_HEADER + RESULT_STRIDE * n];
        result[0] = outcome.limit();
        result[1] = outcome.resetAfterMs();
        for (int i = 0; i < n; i++) {
            int at = RESULT_HEADER + RESULT_STRIDE * i;
            result[at] = outcome.allowed()[i] ? 1L : 0L;
            result[at + 1] = outcome.remaining()[i];
            result[at + 2] = outcome.reasons()[i];
        }
        return result;
    }

    /**
     * Refuses a malformed call before the shard is touched: the shard is changed in place,
     * so a refusal half-way would leave changes the backup never hears of.
     */
    private void validate() {
        int n = keys.length;
        if (limits.length != n || windowSeconds.length != n || alignments.length != n || costs.length != n) {
            throw new IllegalArgumentException("every window needs a key, limit, window, alignment and costs");
        }
        for (int i = 0; i < n; i++) {
            if (keys[i] == null || limits[i] < 1 || windowSeconds[i] < 1 || costs[i] == null || costs[i].length == 0) {
                throw new IllegalArgumentException("window " + i + " is malformed");
            }
            for (long cost : costs[i]) {
                if (cost < 1) {
                    throw new IllegalArgumentException("window " + i + " has a cost below 1");
                }
            }
        }
    }

    @Override
    public EntryProcessor<Object, Object, long[]> getBackupProcessor() {
        return backup;
    }

    @Override
    public int getFactoryId() {
        return ProcessorFactory.FACTORY_ID;
    }

    @Override
    public int getClassId() {
        return ProcessorFactory.SHARD_PROCESSOR;
    }

    @Override
    public void writeData(ObjectDataOutput out) throws IOException {
        out.writeLong(nowMs);
        out.writeLong(expiryGraceMs);
        out.writeInt(keys.length);
        for (int i = 0; i < keys.length; i++) {
            out.writeString(keys[i]);
            out.writeLong(limits[i]);
            out.writeLong(windowSeconds[i]);
            out.writeInt(alignments[i]);
            out.writeLongArray(costs[i]);
        }
    }

    @Override
    public void readData(ObjectDataInput in) throws IOException {
        nowMs = in.readLong();
        expiryGraceMs = in.readLong();
        int n = in.readInt();
        keys = new String[n];
        limits = new long[n];
        windowSeconds = new long[n];
        alignments = new int[n];
        costs = new long[n][];
        for (int i = 0; i < n; i++) {
            keys[i] = in.readString();
            limits[i] = in.readLong();
            windowSeconds[i] = in.readLong();
            alignments[i] = in.readInt();
            costs[i] = in.readLongArray();
        }
    }
}
