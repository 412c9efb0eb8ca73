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
 * Applies to a backup replica's shard what the primary's {@link ShardProcessor} changed:
 * the sweep step at the primary's instant (the same step on the same keys, see
 * {@link WindowShard#sweepStep}), then the keys it wrote, as values. It decides
 * nothing again (another member's clock could pick another window), and it carries only
 * the keys that changed, each with its stored array ({@code [expiresAtMs, slot, a, b, c,
 * ...]}, see {@link WindowShard}), not the shard, and the entry's TTL the primary gave it.
 *
 * <p>Wire format (member to member only): {@code sweptAtMs} ({@link #NO_SWEEP}: none) and
 * {@code ttlMs} as longs, the number of changed keys as an int, then per key the key as a
 * string and its stored array as a long array; then whether a call is recorded (a boolean)
 * and if so its caller, number and decision time as longs and its answer as a long array
 * ({@link RecentCalls}), so this copy recognises the call if it is sent again.
 */
public class ShardBackupProcessor
        implements EntryProcessor<Object, Object, long[]>, IdentifiedDataSerializable {

    /** {@code sweptAtMs} when the primary did not sweep. */
    static final long NO_SWEEP = -1L;

    private long sweptAtMs;
    private long ttlMs;
    private int changes;
    private String[] keys;
    private long[][] states;
    /** The call that made the changes, recorded on this copy too; null: none to record. */
    private Call call;

    /** A call's id, when it was decided, and its answer, as {@link RecentCalls} keeps them. */
    record Call(long caller, long seq, long decidedAtMs, long[] answer) {
    }

    public ShardBackupProcessor() {
    }

    ShardBackupProcessor(long sweptAtMs, long ttlMs, int changes, String[] keys, long[][] states, Call call) {
        this.sweptAtMs = sweptAtMs;
        this.ttlMs = ttlMs;
        this.changes = changes;
        this.keys = keys;
        this.states = states;
        this.call = call;
    }

    @Override
    public long[] process(Map.Entry<Object, Object> entry) {
        WindowShard shard = entry.getValue() instanceof WindowShard stored ? stored : new WindowShard();
        if (sweptAtMs != NO_SWEEP) {
            shard.sweepStep(sweptAtMs);
        }
        for (int i = 0; i < changes; i++) {
            shard.put(keys[i], states[i]);
        }
        if (call != null) {
            shard.rememberCall(call.caller(), call.seq(), call.decidedAtMs(), call.answer());
        }
        ((ExtendedMapEntry<Object, Object>) entry).setValue(shard, ttlMs, TimeUnit.MILLISECONDS);
        return null;
    }

    @Override
    public EntryProcessor<Object, Object, long[]> getBackupProcessor() {
        return null;
    }

    @Override
    public int getFactoryId() {
        return ProcessorFactory.FACTORY_ID;
    }

    @Override
    public int getClassId() {
        return ProcessorFactory.SHARD_BACKUP_PROCESSOR;
    }

    @Override
    public void writeData(ObjectDataOutput out) throws IOException {
        out.writeLong(sweptAtMs);
        out.writeLong(ttlMs);
        out.writeInt(changes);
        for (int i = 0; i < changes; i++) {
            out.writeString(keys[i]);
            out.writeLongArray(states[i]);
        }
        out.writeBoolean(call != null);
        if (call != null) {
            out.writeLong(call.caller());
            out.writeLong(call.seq());
            out.writeLong(call.decidedAtMs());
            out.writeLongArray(call.answer());
        }
    }

    @Override
    public void readData(ObjectDataInput in) throws IOException {
        sweptAtMs = in.readLong();
        ttlMs = in.readLong();
        changes = in.readInt();
        keys = new String[changes];
        states = new long[changes][];
        for (int i = 0; i < changes; i++) {
            keys[i] = in.readString();
            states[i] = in.readLongArray();
        }
        call = in.readBoolean() ? new Call(in.readLong(), in.readLong(), in.readLong(), in.readLongArray()) : null;
    }
}
