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
 * One fixed-window decision, run on the partition owner of the client's counter key.
 *
 * <p>The stored value is {@code long[]{windowStartMs, count}}. The processor runs under the
 * partition thread, so read, decide and write are atomic without any lock, and the whole
 * decision is one round trip. Unless the caller injects a time ({@code nowMs >= 0}, for
 * tests), the member's own clock picks the window, so replicas with skewed clocks still
 * agree on window edges.
 *
 * <p>The result is {@code long[]{allowed(0|1), limit, remaining, resetAfterMs, reason}}:
 * a plain array, so the Python client reads it without a registered factory.
 */
public class FixedWindowProcessor
        implements EntryProcessor<Object, Object, long[]>, IdentifiedDataSerializable {

    private long limit;
    private long windowSeconds;
    private long cost;
    private long nowMs;
    private long expiryGraceMs;
    /** Set by process(): what the backup replica must store, or null if nothing changed. */
    private transient WindowBackupProcessor backup;

    public FixedWindowProcessor() {
    }

    public FixedWindowProcessor(long limit, long windowSeconds, long cost, long nowMs, long expiryGraceMs) {
        this.limit = limit;
        this.windowSeconds = windowSeconds;
        this.cost = cost;
        this.nowMs = nowMs;
        this.expiryGraceMs = expiryGraceMs;
    }

    @Override
    public long[] process(Map.Entry<Object, Object> entry) {
        long now = nowMs >= 0 ? nowMs : System.currentTimeMillis();
        Object stored = entry.getValue();
        boolean hasState = stored instanceof long[] state && state.length == 2;
        long[] state = hasState ? (long[]) stored : new long[] {0L, 0L};
        FixedWindowRule.Outcome outcome =
                FixedWindowRule.decide(hasState, state[0], state[1], now, cost, limit, windowSeconds);
        if (outcome.allowed()) {
            long ttlMs = outcome.resetAfterMs() + expiryGraceMs;
            long[] value = {outcome.windowStartMs(), outcome.count()};
            // Value and TTL in one step: a plain setValue would keep no per-entry TTL.
            ((ExtendedMapEntry<Object, Object>) entry).setValue(value, ttlMs, TimeUnit.MILLISECONDS);
            backup = new WindowBackupProcessor(outcome.windowStartMs(), outcome.count(), ttlMs);
        }
        return new long[] {
            outcome.allowed() ? 1L : 0L,
            outcome.limit(),
            outcome.remaining(),
            outcome.resetAfterMs(),
            outcome.reason(),
        };
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
        out.writeLong(cost);
        out.writeLong(nowMs);
        out.writeLong(expiryGraceMs);
    }

    @Override
    public void readData(ObjectDataInput in) throws IOException {
        limit = in.readLong();
        windowSeconds = in.readLong();
        cost = in.readLong();
        nowMs = in.readLong();
        expiryGraceMs = in.readLong();
    }
}
