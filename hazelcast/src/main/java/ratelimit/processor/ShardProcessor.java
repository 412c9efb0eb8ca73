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
 * Policy decisions for the queued requests of several clients whose states live in one
 * {@link WindowShard}, run on the partition owner of the shard's key.
 *
 * <p>Each client has a policy of 1 to {@link PolicyRule#MAX_LIMITS} limits, each with its own
 * algorithm; each window (one client's key, policy and queued costs) is decided in order by
 * {@link PolicyRule#decideBatch}, all at one instant: the member's clock unless the caller
 * injects a time ({@code nowMs > MEMBER_CLOCK}, for tests), so replicas with skewed clocks
 * still agree on window edges. A limit's stored state is found by its slot (a number the
 * caller derives from the limit's name, algorithm and window length), so a limit whose slot
 * is not stored starts empty. A window that admitted something is stored with the final
 * states of its policy's limits only (a limit dropped from the policy is dropped from the
 * store) and its expiry: {@code now + } the longest {@code resetAfterMs} of the last request's
 * decisions {@code + expiryGraceMs}. Denied requests change nothing. Everything the call
 * changed goes to the backup replica as values ({@link ShardBackupProcessor}), before the
 * caller is answered.
 *
 * <p>A call is recognised by its id ({@code caller}, {@code callSeq}): one the shard entry
 * already applied is answered as then and changes nothing ({@link RecentCalls}).
 *
 * <p>Wire format, in this order: {@code nowMs} ({@link #MEMBER_CLOCK}: the member's clock),
 * {@code expiryGraceMs}, {@code caller} ({@link RecentCalls#NO_CALLER}: none) and
 * {@code callSeq} as longs, the number of windows as an int, then per window its key
 * as a string, its number of limits as an int, per limit {@code slot} (long),
 * {@code algorithm} (int, {@link PolicyRule#FIXED_WINDOW} ...), {@code limit} and
 * {@code windowSeconds} (longs), {@code alignment} (int, fixed window only, else 0),
 * {@code burst} (long, GCRA only, else 0) and {@code shadow} (int, 1 or 0), then the costs
 * as a long array (an int length, then the longs).
 *
 * <p>The result is one {@code long[]}: per window in order, per request in order, per limit
 * in policy order, {@link #RESULT_STRIDE_PER_LIMIT} longs: that limit's
 * {@link PolicyRule.Decision} ({@code allowed (1|0), remaining, resetAfterMs, retryAfterMs}
 * ({@link PolicyRule#NO_RETRY}: none){@code , reason}), from which the client rebuilds the
 * combined answer. A plain array, so the Python client reads it without a registered factory.
 *
 * <p>The shard stores per key {@code [expiresAtMs, then per limit: slot, a, b, c]}, described
 * in {@link WindowShard}; {@link ShardWindowReader} reads it.
 *
 * <p>The numbers of this contract ({@link #MEMBER_CLOCK}, {@link #RESULT_STRIDE_PER_LIMIT},
 * the ids in {@link ProcessorFactory}, the algorithms and {@code NO_RETRY} of
 * {@link PolicyRule}, the reasons and alignments of {@link FixedWindowRule}) are written once,
 * in {@code tests/vectors/processor_wire.csv}, and checked against it on both sides
 * ({@code WireContractTest} here).
 */
public class ShardProcessor
        implements EntryProcessor<Object, Object, long[]>, IdentifiedDataSerializable {

    /** Sent instead of a time: the member's clock picks the window (any lower value too). */
    static final long MEMBER_CLOCK = -1L;
    /** Result slots per limit of a request: allowed, remaining, resetAfterMs, retryAfterMs, reason. */
    static final int RESULT_STRIDE_PER_LIMIT = 5;
    /** The largest limit and window in ms, as the Python spec bounds them ({@code limiter/policy.py}). */
    static final long MAX_LIMIT = 1L << 61;
    static final long MAX_WINDOW_MS = 1L << 61;

    /** One limit of a window's policy as it is sent: its slot and its spec. */
    public record WireLimit(long slot, int algorithm, long limit, long windowSeconds, int alignment, long burst,
            int shadow) {

        /** The wire form of {@code limit} stored under {@code slot} (0 for a field of another algorithm). */
        public static WireLimit of(long slot, PolicyRule.Limit limit) {
            int algorithm = limit.algorithm();
            return new WireLimit(slot, algorithm, limit.limit(), limit.windowSeconds(),
                    algorithm == PolicyRule.FIXED_WINDOW ? limit.alignment() : 0,
                    algorithm == PolicyRule.GCRA ? limit.burst() : 0, limit.shadow() ? 1 : 0);
        }

        /** The rule's limit; names are not sent, and the rule uses them in messages only. */
        PolicyRule.Limit toRule(int index) {
            return new PolicyRule.Limit("limit-" + index, algorithm, limit, windowSeconds, alignment, burst,
                    shadow == 1);
        }
    }

    /** One client's part of a call: its key, its policy and its queued costs, in order. */
    public record Window(String key, WireLimit[] limits, long[] costs) {
    }

    private long nowMs;
    private long expiryGraceMs;
    /** The call's id: the replica worker that sent it and its number there ({@link RecentCalls}). */
    private long caller;
    private long callSeq;
    private Window[] windows;
    /** Set by readData() when the counts that frame the call are out of range: refused by process(). */
    private transient String malformed;
    /** Set by process(): what the backup replica must apply, or null if nothing changed. */
    private transient ShardBackupProcessor backup;

    public ShardProcessor() {
    }

    /** A call without an id (tests): never recorded, so never recognised if sent again. */
    public ShardProcessor(long nowMs, long expiryGraceMs, Window[] windows) {
        this(nowMs, expiryGraceMs, RecentCalls.NO_CALLER, 0L, windows);
    }

    public ShardProcessor(long nowMs, long expiryGraceMs, long caller, long callSeq, Window[] windows) {
        this.nowMs = nowMs;
        this.expiryGraceMs = expiryGraceMs;
        this.caller = caller;
        this.callSeq = callSeq;
        this.windows = windows;
    }

    @Override
    public long[] process(Map.Entry<Object, Object> entry) {
        validate();
        long now = nowMs > MEMBER_CLOCK ? nowMs : System.currentTimeMillis();
        Decided decided = decide(entry, windows, now, expiryGraceMs, caller, callSeq);
        backup = decided.backup();
        return decided.result();
    }

    /** One shard's answer and what its backup replica must apply (null: nothing changed). */
    record Decided(long[] result, ShardBackupProcessor backup) {
    }

    /**
     * Decides {@code windows} against the shard stored in {@code entry} at {@code now}, and
     * writes the shard back if anything changed: the rule of this class for one shard entry,
     * shared with {@link ShardFanOutProcessor}, which runs it once per shard entry of its call.
     * Touches nothing but {@code entry}, so partition threads may run it at once on their own
     * entries.
     *
     * <p>A call this entry already applied (the same {@code caller} and {@code callSeq}: sent
     * again after its owner died before answering) gets the answer it got then, and nothing
     * changes. A call that changes the entry is recorded with its answer, in the entry and in
     * its backup.
     */
    static Decided decide(Map.Entry<Object, Object> entry, Window[] windows, long now, long expiryGraceMs,
            long caller, long callSeq) {
        WindowShard shard = entry.getValue() instanceof WindowShard stored ? stored : new WindowShard();
        long[] answered = shard.answerOf(caller, callSeq);
        if (answered != null) {
            return new Decided(answered, null);
        }
        long sweptAt = ShardBackupProcessor.NO_SWEEP;
        if (shard.sweepDue(now)) {
            // One bounded step of the incremental sweep (WindowShard), never a whole walk.
            shard.sweepStep(now);
            sweptAt = now;
        }
        int n = windows.length;
        int resultLength = 0;
        for (Window window : windows) {
            resultLength += RESULT_STRIDE_PER_LIMIT * window.limits().length * window.costs().length;
        }
        long[] result = new long[resultLength];
        int at = 0;
        int changes = 0;
        String[] changedKeys = new String[n];
        long[][] changedStates = new long[n][];
        for (Window window : windows) {
            WireLimit[] limits = window.limits();
            PolicyRule.Limit[] policy = new PolicyRule.Limit[limits.length];
            for (int j = 0; j < limits.length; j++) {
                policy[j] = limits[j].toRule(j);
            }
            Object[] states = WindowShard.statesOf(limits, shard.live(window.key(), now));
            PolicyRule.BatchOutcome outcome = PolicyRule.decideBatch(policy, states, now, window.costs());
            at = toResult(outcome, result, at);
            // Denied requests change nothing.
            if (anyAllowed(outcome)) {
                PolicyRule.Outcome last = outcome.outcomes()[outcome.outcomes().length - 1];
                long longestReset = 0L;
                for (PolicyRule.Decision decision : last.decisions()) {
                    longestReset = Math.max(longestReset, decision.resetAfterMs());
                }
                long[] stored = WindowShard.toStored(limits, outcome.states(), now + longestReset + expiryGraceMs);
                shard.put(window.key(), stored);
                changedKeys[changes] = window.key();
                changedStates[changes] = stored;
                changes++;
            }
        }
        ShardBackupProcessor backup = null;
        ShardBackupProcessor.Call call = null;
        if (changes > 0 && caller != RecentCalls.NO_CALLER) {
            shard.rememberCall(caller, callSeq, now, result);
            call = new ShardBackupProcessor.Call(caller, callSeq, now, result);
        }
        if (changes > 0 || sweptAt != ShardBackupProcessor.NO_SWEEP) {
            // The same object, set again: that marks the entry changed and sends the backup.
            // It lives until its last key expires (at least 1 ms: 0 would mean forever).
            long ttlMs = Math.max(1L, shard.latestExpiryMs() - now);
            ((ExtendedMapEntry<Object, Object>) entry).setValue(shard, ttlMs, TimeUnit.MILLISECONDS);
            backup = new ShardBackupProcessor(sweptAt, ttlMs, changes, changedKeys, changedStates, call);
        }
        return new Decided(result, backup);
    }

    private static boolean anyAllowed(PolicyRule.BatchOutcome outcome) {
        for (PolicyRule.Outcome o : outcome.outcomes()) {
            if (o.allowed()) {
                return true;
            }
        }
        return false;
    }

    /** Writes one window's answers into {@code result} from {@code at}; returns where they end. */
    static int toResult(PolicyRule.BatchOutcome outcome, long[] result, int at) {
        for (PolicyRule.Outcome request : outcome.outcomes()) {
            for (PolicyRule.Decision d : request.decisions()) {
                result[at] = d.allowed() ? 1L : 0L;
                result[at + 1] = d.remaining();
                result[at + 2] = d.resetAfterMs();
                result[at + 3] = d.retryAfterMs();
                result[at + 4] = d.reason();
                at += RESULT_STRIDE_PER_LIMIT;
            }
        }
        return at;
    }

    /**
     * Refuses a malformed call before the shard is touched: the shard is changed in place,
     * so a refusal half-way would leave changes the backup never hears of. Everything the
     * rules would refuse is refused here, with the bounds of {@code limiter/policy.py}.
     */
    private void validate() {
        if (malformed != null) {
            throw new IllegalArgumentException(malformed);
        }
        validateWindows(windows, "");
    }

    /** Refuses {@code windows} if any is malformed; {@code where} prefixes the message. */
    static void validateWindows(Window[] windows, String where) {
        if (windows == null) {
            throw new IllegalArgumentException(where + "no windows");
        }
        for (int i = 0; i < windows.length; i++) {
            Window window = windows[i];
            if (window == null || window.key() == null || window.limits() == null || window.costs() == null
                    || window.costs().length == 0) {
                throw new IllegalArgumentException(where + "window " + i + " is malformed");
            }
            WireLimit[] limits = window.limits();
            if (limits.length < 1 || limits.length > PolicyRule.MAX_LIMITS) {
                throw new IllegalArgumentException(where + "window " + i + ": a policy has 1 to " + PolicyRule.MAX_LIMITS
                        + " limits");
            }
            boolean enforced = false;
            for (int j = 0; j < limits.length; j++) {
                checkLimit(limits[j], where + "window " + i + ", limit " + j);
                enforced |= limits[j].shadow() == 0;
                for (int k = 0; k < j; k++) {
                    if (limits[k].slot() == limits[j].slot()) {
                        throw new IllegalArgumentException(where + "window " + i + ": two limits share slot "
                                + limits[j].slot());
                    }
                }
            }
            if (!enforced) {
                throw new IllegalArgumentException(where + "window " + i + ": a policy needs an enforced limit");
            }
            for (long cost : window.costs()) {
                if (cost < 1) {
                    throw new IllegalArgumentException(where + "window " + i + " has a cost below 1");
                }
            }
        }
    }

    static void checkLimit(WireLimit limit, String where) {
        if (limit == null) {
            throw new IllegalArgumentException(where + " is missing");
        }
        if (limit.limit() < 1 || limit.limit() > MAX_LIMIT) {
            throw new IllegalArgumentException(where + ": limit must be in [1, 2**61]");
        }
        if (limit.windowSeconds() < 1 || limit.windowSeconds() > MAX_WINDOW_MS / 1000L) {
            throw new IllegalArgumentException(where + ": windowSeconds must be in [1, 2**61 / 1000]");
        }
        if (limit.shadow() != 0 && limit.shadow() != 1) {
            throw new IllegalArgumentException(where + ": shadow is 1 or 0");
        }
        long windowMs = limit.windowSeconds() * 1000L;
        switch (limit.algorithm()) {
            case PolicyRule.FIXED_WINDOW -> {
            }
            case PolicyRule.SLIDING_WINDOW -> {
                if (limit.limit() > SlidingWindowRule.MAX_LIMIT_TIMES_WINDOW_MS / windowMs) {
                    throw new IllegalArgumentException(where + ": limit * window_ms must be at most 2**61");
                }
            }
            case PolicyRule.GCRA -> {
                if (limit.burst() < 0 || limit.burst() >= GcraRule.MAX_CAPACITY_TIMES_WINDOW_MS / windowMs) {
                    throw new IllegalArgumentException(where + ": (burst + 1) * window_ms must be at most 2**61");
                }
            }
            default -> throw new IllegalArgumentException(where + ": unknown algorithm " + limit.algorithm());
        }
        boolean knownAlignment = limit.alignment() == FixedWindowRule.CLOCK
                || limit.alignment() == FixedWindowRule.FIRST_REQUEST;
        if (limit.algorithm() == PolicyRule.FIXED_WINDOW ? !knownAlignment : limit.alignment() != 0) {
            throw new IllegalArgumentException(where + ": alignment is a fixed window's only (0 otherwise)");
        }
        if (limit.algorithm() != PolicyRule.GCRA && limit.burst() != 0) {
            throw new IllegalArgumentException(where + ": burst is GCRA's only");
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
        out.writeLong(caller);
        out.writeLong(callSeq);
        writeWindows(out, windows);
    }

    /** The number of windows as an int, then each window as this class's wire format has it. */
    static void writeWindows(ObjectDataOutput out, Window[] windows) throws IOException {
        out.writeInt(windows.length);
        for (Window window : windows) {
            out.writeString(window.key());
            out.writeInt(window.limits().length);
            for (WireLimit limit : window.limits()) {
                out.writeLong(limit.slot());
                out.writeInt(limit.algorithm());
                out.writeLong(limit.limit());
                out.writeLong(limit.windowSeconds());
                out.writeInt(limit.alignment());
                out.writeLong(limit.burst());
                out.writeInt(limit.shadow());
            }
            out.writeLongArray(window.costs());
        }
    }

    @Override
    public void readData(ObjectDataInput in) throws IOException {
        nowMs = in.readLong();
        expiryGraceMs = in.readLong();
        caller = in.readLong();
        callSeq = in.readLong();
        int n = in.readInt();
        if (n < 0) {
            malformed = n + " windows";
            return;
        }
        windows = new Window[n];
        for (int i = 0; i < n; i++) {
            String key = in.readString();
            int nLimits = in.readInt();
            if (nLimits < 0 || nLimits > PolicyRule.MAX_LIMITS) {
                // The rest is not read (an absurd count must not size an array).
                malformed = "window " + i + ": a policy has 1 to " + PolicyRule.MAX_LIMITS + " limits, got " + nLimits;
                return;
            }
            WireLimit[] limits = new WireLimit[nLimits];
            for (int j = 0; j < nLimits; j++) {
                limits[j] = new WireLimit(in.readLong(), in.readInt(), in.readLong(), in.readLong(), in.readInt(),
                        in.readLong(), in.readInt());
            }
            windows[i] = new Window(key, limits, in.readLongArray());
        }
    }
}
