package ratelimit.processor;

import com.hazelcast.map.EntryProcessor;
import com.hazelcast.nio.ObjectDataInput;
import com.hazelcast.nio.ObjectDataOutput;
import com.hazelcast.nio.serialization.IdentifiedDataSerializable;
import java.io.IOException;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * The decisions of one replica's batch over every shard entry it touches, in one cluster
 * call: sent with {@code IMap.executeOnKeys(shard keys, this)}, so the member the client asked
 * fans it out (one operation per member, one per partition, on the partition threads that own
 * the shards) and the replica pays one call per batch, as with a single shard, while the work
 * spreads over every member's partition threads. For each shard entry, {@link #process} decides
 * that entry's windows only, by {@link ShardProcessor}'s rule ({@link ShardProcessor#decide}),
 * and answers that entry's {@code long[]} in {@link ShardProcessor}'s layout.
 *
 * <p>Why it is written for several threads at once: Hazelcast ({@code
 * MapExecuteOnKeysMessageTask}, {@code MultipleEntryOperationFactory}) deserialises the processor
 * once per member and gives the same instance to the operation of every partition of that member,
 * which run at once on different partition threads. So the call's fields are set once (by the
 * constructor or {@link #readData}) and only read afterwards, and what a partition's backup must
 * carry is kept per thread: {@code OperationRunnerImpl} asks the operation for its backup
 * ({@link #getBackupProcessor}, twice: {@code shouldBackup} then {@code getBackupOperation}) on
 * the partition thread that ran it, right after its run and before the thread runs anything
 * else. The first {@link #process} after that starts the next operation's changes afresh. The
 * backup ({@link ShardFanOutBackupProcessor}) holds the changes of the shard entries that
 * operation decided, by key, and applies each to its own entry only, so a stale or foreign
 * change can never land on another entry.
 *
 * <p>What it costs in durability: Hazelcast sends the backups of a multi-key operation
 * asynchronously ({@code MultipleEntryOperation.getSyncBackupCount()} is 0), where
 * {@link ShardProcessor}'s single-entry call waits for its synchronous backup before the caller
 * hears the answer; see docs/design.md ("One call per batch").
 *
 * <p>A malformed call is refused whole when it is read, before any partition runs, so no shard
 * is changed by a call that another shard's part would refuse. The coordinating member reads the
 * call first: its refusal is the caller's error.
 *
 * <p>The call's id goes with each shard entry's part: an entry that already applied it answers
 * as then and changes nothing, so the call can be sent again whole when its fate is unknown.
 *
 * <p>Wire format, in this order: {@code nowMs} ({@link ShardProcessor#MEMBER_CLOCK}: the member's
 * clock), {@code expiryGraceMs}, {@code caller} and {@code callSeq} as longs, the number of shard entries as an int, then per
 * shard entry its key as a string and its windows as {@link ShardProcessor} sends them (their
 * number as an int, then each window).
 */
public class ShardFanOutProcessor
        implements EntryProcessor<Object, Object, long[]>, IdentifiedDataSerializable {

    /** The most shard entries one call may carry (far above any shard count in use). */
    static final int MAX_SHARDS = 1 << 16;

    private long nowMs;
    private long expiryGraceMs;
    /** The call's id, recorded by every shard entry it changes ({@link RecentCalls}). */
    private long caller;
    private long callSeq;
    /** Each shard entry's windows, by the entry's key: read-only once set. */
    private Map<String, ShardProcessor.Window[]> shards;
    /** The changes of the partition operation running on each thread, for its backup. */
    private final ThreadLocal<Pending> pending = ThreadLocal.withInitial(Pending::new);
    private volatile boolean validated;

    /** One partition operation's changes, by shard key, and the backup built from them. */
    private static final class Pending {
        final Map<String, ShardBackupProcessor> changes = new HashMap<>();
        /** Set once the operation's backup was asked for: the next process() starts afresh. */
        boolean sealed;
        ShardFanOutBackupProcessor built;
    }

    public ShardFanOutProcessor() {
    }

    public ShardFanOutProcessor(long nowMs, long expiryGraceMs, Map<String, ShardProcessor.Window[]> shards) {
        this(nowMs, expiryGraceMs, RecentCalls.NO_CALLER, 0L, shards);
    }

    public ShardFanOutProcessor(long nowMs, long expiryGraceMs, long caller, long callSeq,
            Map<String, ShardProcessor.Window[]> shards) {
        this.nowMs = nowMs;
        this.expiryGraceMs = expiryGraceMs;
        this.caller = caller;
        this.callSeq = callSeq;
        this.shards = new LinkedHashMap<>(shards);
    }

    @Override
    public long[] process(Map.Entry<Object, Object> entry) {
        if (!validated) {
            // Idempotent, so two threads doing it at once is harmless.
            validate();
        }
        Pending mine = pending.get();
        if (mine.sealed) {
            mine.changes.clear();
            mine.built = null;
            mine.sealed = false;
        }
        Object key = entry.getKey();
        ShardProcessor.Window[] windows = shards.get(key);
        if (windows == null) {
            // A key this call does not carry: Hazelcast only passes the call's own keys.
            return null;
        }
        long now = nowMs > ShardProcessor.MEMBER_CLOCK ? nowMs : System.currentTimeMillis();
        ShardProcessor.Decided decided = ShardProcessor.decide(entry, windows, now, expiryGraceMs, caller, callSeq);
        if (decided.backup() != null) {
            mine.changes.put((String) key, decided.backup());
        }
        return decided.result();
    }

    @Override
    public EntryProcessor<Object, Object, long[]> getBackupProcessor() {
        Pending mine = pending.get();
        if (!mine.sealed) {
            mine.sealed = true;
            mine.built = mine.changes.isEmpty() ? null : new ShardFanOutBackupProcessor(new HashMap<>(mine.changes));
        }
        return mine.built;
    }

    private void validate() {
        if (shards == null || shards.isEmpty()) {
            throw new IllegalArgumentException("no shard entries");
        }
        for (Map.Entry<String, ShardProcessor.Window[]> shard : shards.entrySet()) {
            if (shard.getKey() == null) {
                throw new IllegalArgumentException("a shard entry has no key");
            }
            ShardProcessor.validateWindows(shard.getValue(), "shard " + shard.getKey() + ", ");
            if (shard.getValue().length == 0) {
                throw new IllegalArgumentException("shard " + shard.getKey() + " has no windows");
            }
        }
        validated = true;
    }

    @Override
    public int getFactoryId() {
        return ProcessorFactory.FACTORY_ID;
    }

    @Override
    public int getClassId() {
        return ProcessorFactory.SHARD_FAN_OUT_PROCESSOR;
    }

    @Override
    public void writeData(ObjectDataOutput out) throws IOException {
        out.writeLong(nowMs);
        out.writeLong(expiryGraceMs);
        out.writeLong(caller);
        out.writeLong(callSeq);
        out.writeInt(shards.size());
        for (Map.Entry<String, ShardProcessor.Window[]> shard : shards.entrySet()) {
            out.writeString(shard.getKey());
            ShardProcessor.writeWindows(out, shard.getValue());
        }
    }

    @Override
    public void readData(ObjectDataInput in) throws IOException {
        nowMs = in.readLong();
        expiryGraceMs = in.readLong();
        caller = in.readLong();
        callSeq = in.readLong();
        int n = in.readInt();
        if (n < 1 || n > MAX_SHARDS) {
            throw new IllegalArgumentException("a call carries 1 to " + MAX_SHARDS + " shard entries, got " + n);
        }
        shards = new LinkedHashMap<>();
        for (int i = 0; i < n; i++) {
            String key = in.readString();
            int windows = in.readInt();
            if (windows < 1 || windows > MAX_SHARDS) {
                throw new IllegalArgumentException("shard " + key + ": 1 to " + MAX_SHARDS + " windows, got "
                        + windows);
            }
            ShardProcessor.Window[] read = new ShardProcessor.Window[windows];
            for (int w = 0; w < windows; w++) {
                String windowKey = in.readString();
                int nLimits = in.readInt();
                if (nLimits < 1 || nLimits > PolicyRule.MAX_LIMITS) {
                    // The rest is not read (an absurd count must not size an array).
                    throw new IllegalArgumentException("shard " + key + ", window " + w + ": a policy has 1 to "
                            + PolicyRule.MAX_LIMITS + " limits, got " + nLimits);
                }
                ShardProcessor.WireLimit[] limits = new ShardProcessor.WireLimit[nLimits];
                for (int j = 0; j < nLimits; j++) {
                    limits[j] = new ShardProcessor.WireLimit(in.readLong(), in.readInt(), in.readLong(), in.readLong(),
                            in.readInt(), in.readLong(), in.readInt());
                }
                read[w] = new ShardProcessor.Window(windowKey, limits, in.readLongArray());
            }
            if (shards.put(key, read) != null) {
                throw new IllegalArgumentException("shard " + key + " is sent twice");
            }
        }
        // Refused here, on the member the caller asked, before any partition runs.
        validate();
    }
}
