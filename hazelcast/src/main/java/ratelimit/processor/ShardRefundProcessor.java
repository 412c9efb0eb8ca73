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
 * Gives back one admission of one client whose states live in a {@link WindowShard}, run on
 * the partition owner of the shard's key: {@link PolicyRule#refund} on the member's clock
 * (unless the caller injects a time, {@code nowMs > MEMBER_CLOCK}, for tests) with
 * {@code sentMs = now - elapsedMs}, where {@code elapsedMs} is the time since the caller sent
 * the decision it gives back. Why a call of its own: a refund is rare (a request that another
 * key denied), and a decision's call then carries nothing more; the rule is safe in any order
 * against the decisions of the same client.
 *
 * <p>Only the numbers of the limits it gave back change, at their slots in the stored array;
 * the key's expiry and every other limit's numbers are kept as stored. A key not stored (or
 * expired) is left alone. A change goes to the backup replica as the new array
 * ({@link ShardBackupProcessor}), before the caller is answered.
 *
 * <p>Wire format, in this order: {@code nowMs} ({@link ShardProcessor#MEMBER_CLOCK}: the
 * member's clock), {@code elapsedMs}, {@code caller} and {@code callSeq} (the call's id, see
 * {@link RecentCalls}; a refund already applied is answered {@code {1}} again and changes nothing) as
 * longs, the key as a string, the number of limits
 * as an int and each limit as {@link ShardProcessor} sends it, then {@code cost} as a long
 * and the indices of the limits that counted the admission as an int array. The answer is
 * {@code long[] {1}} when the stored states changed, {@code {0}} when there was nothing to
 * give back.
 */
public class ShardRefundProcessor
        implements EntryProcessor<Object, Object, long[]>, IdentifiedDataSerializable {

    private long nowMs;
    private long elapsedMs;
    /** The call's id ({@link RecentCalls}): a refund sent again is answered, not applied twice. */
    private long caller;
    private long callSeq;
    private String key;
    private ShardProcessor.WireLimit[] limits;
    private long cost;
    private int[] counted;
    /** Set by readData() when a count that frames the call is out of range: refused by process(). */
    private transient String malformed;
    /** Set by process(): what the backup replica must apply, or null if nothing changed. */
    private transient ShardBackupProcessor backup;

    public ShardRefundProcessor() {
    }

    public ShardRefundProcessor(long nowMs, long elapsedMs, String key, ShardProcessor.WireLimit[] limits, long cost,
            int[] counted) {
        this(nowMs, elapsedMs, RecentCalls.NO_CALLER, 0L, key, limits, cost, counted);
    }

    public ShardRefundProcessor(long nowMs, long elapsedMs, long caller, long callSeq, String key,
            ShardProcessor.WireLimit[] limits, long cost, int[] counted) {
        this.nowMs = nowMs;
        this.elapsedMs = elapsedMs;
        this.caller = caller;
        this.callSeq = callSeq;
        this.key = key;
        this.limits = limits;
        this.cost = cost;
        this.counted = counted;
    }

    @Override
    public long[] process(Map.Entry<Object, Object> entry) {
        validate();
        long now = nowMs > ShardProcessor.MEMBER_CLOCK ? nowMs : System.currentTimeMillis();
        if (!(entry.getValue() instanceof WindowShard shard)) {
            return new long[] {0L};
        }
        long[] answered = shard.answerOf(caller, callSeq);
        if (answered != null) {
            return answered;
        }
        long[] stored = shard.live(key, now);
        if (stored == null) {
            return new long[] {0L};
        }
        PolicyRule.Limit[] policy = new PolicyRule.Limit[limits.length];
        for (int j = 0; j < limits.length; j++) {
            policy[j] = limits[j].toRule(j);
        }
        Object[] states = WindowShard.statesOf(limits, stored);
        Object[] given = PolicyRule.refund(policy, states, now, cost, counted, now - elapsedMs);
        long[] updated = WindowShard.withStates(limits, stored, states, given);
        if (updated == stored) {
            return new long[] {0L};
        }
        shard.put(key, updated);
        long ttlMs = Math.max(1L, shard.latestExpiryMs() - now);
        ((ExtendedMapEntry<Object, Object>) entry).setValue(shard, ttlMs, TimeUnit.MILLISECONDS);
        long[] answer = {1L};
        ShardBackupProcessor.Call call = null;
        if (caller != RecentCalls.NO_CALLER) {
            shard.rememberCall(caller, callSeq, now, answer);
            call = new ShardBackupProcessor.Call(caller, callSeq, now, answer);
        }
        backup = new ShardBackupProcessor(ShardBackupProcessor.NO_SWEEP, ttlMs, 1, new String[] {key},
                new long[][] {updated}, call);
        return answer;
    }

    /** Refuses a malformed call before the shard is touched, as {@link ShardProcessor} does. */
    private void validate() {
        if (malformed != null) {
            throw new IllegalArgumentException(malformed);
        }
        if (key == null || limits == null || counted == null) {
            throw new IllegalArgumentException("refund is malformed");
        }
        if (limits.length < 1 || limits.length > PolicyRule.MAX_LIMITS) {
            throw new IllegalArgumentException("a policy has 1 to " + PolicyRule.MAX_LIMITS + " limits");
        }
        for (int j = 0; j < limits.length; j++) {
            ShardProcessor.checkLimit(limits[j], "limit " + j);
            for (int k = 0; k < j; k++) {
                if (limits[k].slot() == limits[j].slot()) {
                    throw new IllegalArgumentException("two limits share slot " + limits[j].slot());
                }
            }
        }
        if (cost < 0 || elapsedMs < 0) {
            throw new IllegalArgumentException("cost and elapsedMs must not be negative");
        }
        for (int index : counted) {
            if (index < 0 || index >= limits.length) {
                throw new IllegalArgumentException("no limit " + index + " in a policy of " + limits.length);
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
        return ProcessorFactory.SHARD_REFUND_PROCESSOR;
    }

    @Override
    public void writeData(ObjectDataOutput out) throws IOException {
        out.writeLong(nowMs);
        out.writeLong(elapsedMs);
        out.writeLong(caller);
        out.writeLong(callSeq);
        out.writeString(key);
        out.writeInt(limits.length);
        for (ShardProcessor.WireLimit limit : limits) {
            out.writeLong(limit.slot());
            out.writeInt(limit.algorithm());
            out.writeLong(limit.limit());
            out.writeLong(limit.windowSeconds());
            out.writeInt(limit.alignment());
            out.writeLong(limit.burst());
            out.writeInt(limit.shadow());
        }
        out.writeLong(cost);
        out.writeIntArray(counted);
    }

    @Override
    public void readData(ObjectDataInput in) throws IOException {
        nowMs = in.readLong();
        elapsedMs = in.readLong();
        caller = in.readLong();
        callSeq = in.readLong();
        key = in.readString();
        int n = in.readInt();
        if (n < 0 || n > PolicyRule.MAX_LIMITS) {
            // The rest is not read (an absurd count must not size an array).
            malformed = "a policy has 1 to " + PolicyRule.MAX_LIMITS + " limits, got " + n;
            return;
        }
        limits = new ShardProcessor.WireLimit[n];
        for (int j = 0; j < n; j++) {
            limits[j] = new ShardProcessor.WireLimit(in.readLong(), in.readInt(), in.readLong(), in.readLong(),
                    in.readInt(), in.readLong(), in.readInt());
        }
        cost = in.readLong();
        counted = in.readIntArray();
    }
}
