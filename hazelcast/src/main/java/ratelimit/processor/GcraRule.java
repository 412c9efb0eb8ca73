package ratelimit.processor;

/**
 * The GCRA rule (redis-cell's semantics: {@code limit} per window plus a {@code burst}),
 * mirrored line for line from {@code limiter/gcra.py}, whose docstring defines it.
 *
 * <p>The TAT is {@code tatMs + tatFraction / limit} ms, so the emission interval
 * {@code T = windowMs / limit} is exact; times are multiplied by {@code limit} only when
 * within {@code (burst + 1) * windowMs}, checked to be at most
 * {@link #MAX_CAPACITY_TIMES_WINDOW_MS}: no {@code long} overflows. Reported times are
 * rounded up to whole ms. Both implementations run {@code tests/vectors/gcra.csv} and
 * {@code gcra_batch.csv}.
 */
public final class GcraRule {

    /** The largest {@code (burst + 1) * windowMs} (2**61). */
    public static final long MAX_CAPACITY_TIMES_WINDOW_MS = 1L << 61;

    /** {@code retryAfterMs} of a decision without a retry time (Python's {@code None}). */
    public static final long NO_RETRY = -1L;

    private GcraRule() {
    }

    /** The state to store: the TAT, {@code tatMs + tatFraction / limit} ms. */
    public record State(long tatMs, long tatFraction) {
    }

    /** What one decision produces: the state to store and the answer to give. */
    public record Outcome(
            State state,
            boolean allowed,
            long limit,
            long remaining,
            long resetAfterMs,
            long retryAfterMs,
            int reason) {
    }

    /** A batch's final state and, per request in order, its outcome. */
    public record BatchOutcome(State state, Outcome[] outcomes) {
    }

    /** {@code (burst + 1) * windowMs}, the bucket's depth in 1/limit ms. */
    private static long depth(long cost, long limit, long windowSeconds, long burst) {
        if (cost < 1 || limit < 1 || windowSeconds < 1 || burst < 0) {
            throw new IllegalArgumentException("cost, limit and window must be positive and burst not negative");
        }
        if (windowSeconds > MAX_CAPACITY_TIMES_WINDOW_MS / 1000L
                || burst >= MAX_CAPACITY_TIMES_WINDOW_MS / (windowSeconds * 1000L)) {
            throw new IllegalArgumentException("(burst + 1) * window_ms must be at most 2**61");
        }
        return (burst + 1) * windowSeconds * 1000L;
    }

    private static long ceilMs(long wholeMs, long fraction) {
        return wholeMs + (fraction > 0 ? 1L : 0L);
    }

    /** Applies one request to {@code state} ({@code null}: nothing stored). */
    public static Outcome decide(State state, long nowMs, long cost, long limit, long windowSeconds, long burst) {
        long depth = depth(cost, limit, windowSeconds, burst);
        long windowMs = windowSeconds * 1000L;
        long fraction = state == null ? 0L : Math.min(state.tatFraction(), limit - 1);
        long aheadMs;
        long aheadFraction;
        if (state == null || state.tatMs() < nowMs || (state.tatMs() == nowMs && fraction <= 0)) {
            aheadMs = 0L;
            aheadFraction = 0L;
        } else {
            aheadMs = state.tatMs() - nowMs;
            aheadFraction = fraction;
        }
        State unchanged = state == null ? new State(nowMs, 0L) : state;
        long reset = ceilMs(aheadMs, aheadFraction);
        long depthMs = depth / limit;
        long depthFraction = depth % limit;
        long ahead;
        long room;
        if (aheadMs > depthMs || (aheadMs == depthMs && aheadFraction > depthFraction)) {
            ahead = depth + 1; // more than the bucket holds: nothing passes
            room = 0L;
        } else {
            ahead = aheadMs * limit + aheadFraction;
            room = (depth - ahead) / windowMs;
        }
        if (cost > burst + 1) {
            return new Outcome(unchanged, false, limit, room, reset, NO_RETRY, FixedWindowRule.COST_OVER_LIMIT);
        }
        if (cost <= room) {
            long newAhead = ahead + cost * windowMs;
            long whole = newAhead / limit;
            long part = newAhead % limit;
            return new Outcome(new State(nowMs + whole, part), true, limit, room - cost, ceilMs(whole, part),
                    NO_RETRY, FixedWindowRule.ADMITTED);
        }
        // It passes once ahead has shrunk to (depth - cost * windowMs) / limit.
        long target = depth - cost * windowMs;
        long retry = aheadMs - target / limit + (aheadFraction > target % limit ? 1L : 0L);
        return new Outcome(unchanged, false, limit, room, reset, retry, FixedWindowRule.LIMIT_REACHED);
    }

    /**
     * Applies several requests of one key, in order, all at {@code nowMs}: exactly what
     * calling {@link #decide} once per cost would give.
     */
    public static BatchOutcome decideBatch(
            State state, long nowMs, long[] costs, long limit, long windowSeconds, long burst) {
        if (costs == null || costs.length == 0) {
            throw new IllegalArgumentException("a batch needs at least one cost");
        }
        Outcome[] outcomes = new Outcome[costs.length];
        for (int i = 0; i < costs.length; i++) {
            outcomes[i] = decide(state, nowMs, costs[i], limit, windowSeconds, burst);
            state = outcomes[i].state();
        }
        return new BatchOutcome(state, outcomes);
    }

    /**
     * Gives back a request of {@code cost} admitted at or after {@code sentMs}, as {@code refund}
     * in {@code limiter/gcra.py}, whose docstring proves it safe: the TAT moves back by
     * {@code cost * T} less the time elapsed since {@code sentMs} (never below {@code nowMs},
     * which is a full bucket); a TAT at or before {@code nowMs} and {@code null} are kept.
     */
    public static State refund(State state, long nowMs, long cost, long limit, long windowSeconds, long burst,
            long sentMs) {
        long depth = depth(cost, limit, windowSeconds, burst);
        if (state == null || cost > burst + 1) {
            return state;
        }
        long fraction = Math.min(state.tatFraction(), limit - 1);
        if (state.tatMs() < nowMs || (state.tatMs() == nowMs && fraction <= 0)) {
            return state;
        }
        long give = cost * (depth / (burst + 1)); // cost * windowMs, in 1/limit ms: at most depth
        long elapsedMs = Math.max(0L, nowMs - sentMs);
        if (elapsedMs > give / limit) {
            return state;
        }
        give -= elapsedMs * limit;
        if (give == 0L) {
            return state;
        }
        long tatMs = state.tatMs() - give / limit;
        long tatFraction = fraction - give % limit;
        if (tatFraction < 0L) {
            tatMs -= 1L;
            tatFraction += limit;
        }
        if (tatMs < nowMs || (tatMs == nowMs && tatFraction <= 0L)) {
            return new State(nowMs, 0L);
        }
        return new State(tatMs, tatFraction);
    }
}
