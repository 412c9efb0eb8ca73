package ratelimit.processor;

/**
 * The fixed-window rule, mirrored line for line from {@code limiter/rule.py}.
 *
 * <p>Both implementations are checked against the same file of cases
 * ({@code tests/vectors/fixed_window.csv}); change one, change the other and the file.
 * Windows are aligned: window k covers {@code [k*W, (k+1)*W)} in epoch milliseconds, so
 * every caller that agrees on the clock agrees on the window without coordination.
 */
public final class FixedWindowRule {

    public static final int ADMITTED = 0;
    public static final int LIMIT_REACHED = 1;
    public static final int COST_OVER_LIMIT = 2;

    private FixedWindowRule() {
    }

    /** What one decision produces: the state to store and the answer to give. */
    public record Outcome(
            long windowStartMs,
            long count,
            boolean allowed,
            long limit,
            long remaining,
            long resetAfterMs,
            int reason) {
    }

    public static long windowStart(long nowMs, long windowSeconds) {
        long windowMs = windowSeconds * 1000L;
        return Math.floorDiv(nowMs, windowMs) * windowMs;
    }

    /**
     * Applies one request of weight {@code cost} to the stored state.
     *
     * @param hasState whether a state is stored at all; when false the other two state
     *     arguments are ignored
     */
    public static Outcome decide(
            boolean hasState,
            long stateWindowStartMs,
            long stateCount,
            long nowMs,
            long cost,
            long limit,
            long windowSeconds) {
        if (cost < 1 || limit < 1 || windowSeconds < 1) {
            throw new IllegalArgumentException("cost, limit and window must be positive");
        }
        long start = windowStart(nowMs, windowSeconds);
        long used = hasState && stateWindowStartMs == start ? stateCount : 0L;
        long resetAfterMs = start + windowSeconds * 1000L - nowMs;
        if (cost > limit) {
            return new Outcome(start, used, false, limit, Math.max(0L, limit - used), resetAfterMs, COST_OVER_LIMIT);
        }
        if (used + cost <= limit) {
            long count = used + cost;
            return new Outcome(start, count, true, limit, limit - count, resetAfterMs, ADMITTED);
        }
        return new Outcome(start, used, false, limit, Math.max(0L, limit - used), resetAfterMs, LIMIT_REACHED);
    }
}
