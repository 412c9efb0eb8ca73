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
 * Fixed-window decisions for a batch of queued requests of one key, run on the partition
 * owner of the client's counter key.
 *
 * <p>The stored value is {@code long[]{windowStartMs, count}}. The processor runs under the
 * partition thread, so read, decide and write are atomic without any lock, and the whole
 * batch is one round trip and one write instead of one per request. Unless the caller
 * injects a time ({@code nowMs >= 0}, for tests), the member's own clock picks the window,
 * so replicas with skewed clocks still agree on window edges. The requests are decided in
 * order at that one instant, as {@link FixedWindowRule#decideBatch} does.
 *
 * <p>Wire format, in this order: {@code limit}, {@code windowSeconds} as longs,
 * {@code alignment} as an int ({@link FixedWindowRule#CLOCK} or
 * {@link FixedWindowRule#FIRST_REQUEST}), {@code nowMs} ({@code -1}: the member's clock) and
 * {@code expiryGraceMs} as longs, then the costs as a long array.
 *
 * <p>The result is {@code long[]{limit, resetAfterMs, allowed_0 (1|0), remaining_0,
 * reason_0, allowed_1, remaining_1, reason_1, ...}}, length {@code 2 + 3n}: a plain array,
 * so the Python client reads it without a registered factory.
 */
public class FixedWindowProcessor
        implements EntryProcessor<Object, Object, long[]>, IdentifiedDataSerializable {

    /** Result slots before the per-request triples. */
    static final int RESULT_HEADER = 2;
    /** Result slots per request: allowed, remaining, reason. */
    static final int RESULT_STRIDE = 3;

    private long limit;
    private long windowSeconds;
    private int alignment;
    private long nowMs;
    private long expiryGraceMs;
    private long[] costs;
    /** Set by process(): what the backup replica must store, or null if nothing changed. */
    private transient WindowBackupProcessor backup;

    public FixedWindowProcessor() {
    }

    public FixedWindowProcessor(
            long limit, long windowSeconds, int alignment, long nowMs, long expiryGraceMs, long[] costs) {
        this.limit = limit;
        this.windowSeconds = windowSeconds;
        this.alignment = alignment;
        this.nowMs = nowMs;
        this.expiryGraceMs = expiryGraceMs;
        this.costs = costs;
    }

    @Override
    public long[] process(Map.Entry<Object, Object> entry) {
        long now = nowMs >= 0 ? nowMs : System.currentTimeMillis();
        Object stored = entry.getValue();
        boolean hasState = stored instanceof long[] state && state.length == 2;
        long[] state = hasState ? (long[]) stored : new long[] {0L, 0L};
        FixedWindowRule.BatchOutcome outcome =
                FixedWindowRule.decideBatch(
                hasState, state[0], state[1], now, costs, limit, windowSeconds, alignment);
        // Denied requests change nothing, so a batch with no admission leaves entry and TTL as they are.
        if (outcome.anyAllowed()) {
            long ttlMs = outcome.resetAfterMs() + expiryGraceMs;
            long[] value = {outcome.windowStartMs(), outcome.count()};
            // Value and TTL in one step: a plain setValue would keep no per-entry TTL.
            ((ExtendedMapEntry<Object, Object>) entry).setValue(value, ttlMs, TimeUnit.MILLISECONDS);
            backup = new WindowBackupProcessor(outcome.windowStartMs(), outcome.count(), ttlMs);
        }
        return toResult(outcome);
    }

    /** Lays a batch outcome out as the documented result array. */
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
     * The backup stores what the primary decided instead of deciding again: re-running the
     * rule on another member's clock could pick another window.
     */
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
        return ProcessorFactory.FIXED_WINDOW_PROCESSOR;
    }

    @Override
    public void writeData(ObjectDataOutput out) throws IOException {
        out.writeLong(limit);
        out.writeLong(windowSeconds);
        out.writeInt(alignment);
        out.writeLong(nowMs);
        out.writeLong(expiryGraceMs);
        out.writeLongArray(costs);
    }

    @Override
    public void readData(ObjectDataInput in) throws IOException {
        limit = in.readLong();
        windowSeconds = in.readLong();
        alignment = in.readInt();
        nowMs = in.readLong();
        expiryGraceMs = in.readLong();
        costs = in.readLongArray();
    }
}
