package ratelimit.processor;

/**
 * The fixed-window rule, mirrored line for line from {@code limiter/rule.py}.
 *
 * <p>Both implementations are checked against the same file of cases
 * ({@code tests/vectors/fixed_window.csv}); change one, change the other and the file.
 * A window lasts W from its start; a request counts in the stored window until that window
 * ends ({@code now < start + W}; a window that starts later than {@code now} is kept, as if
 * {@code now} were its start), otherwise a new window opens: at
 * {@code k*W} in epoch milliseconds ({@link #CLOCK}), or at {@code now}, the request that
 * found none open ({@link #FIRST_REQUEST}).
 *
 * <p>{@link #decideBatch} is the same rule for several queued requests of one key, checked
 * against {@code tests/vectors/fixed_window_batch.csv} and against repeated {@link #decide}.
 */
public final class FixedWindowRule {

    public static final int ADMITTED = 0;
    public static final int LIMIT_REACHED = 1;
    public static final int COST_OVER_LIMIT = 2;

    /** Alignments, numbered as {@code Alignment.wire_id} in {@code limiter/rule.py}. */
    public static final int CLOCK = 0;
    public static final int FIRST_REQUEST = 1;

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

    /**
     * What one batch decision produces: the state to store after the last request and, per
     * request in order, the answer to give. {@code limit} and {@code resetAfterMs} are shared
     * because every request of a batch is decided at the same instant.
     */
    public record BatchOutcome(
            long windowStartMs,
            long count,
            long limit,
            long resetAfterMs,
            boolean[] allowed,
            long[] remaining,
            int[] reasons) {

        /** Whether anything was admitted, i.e. whether the state has to be written. */
        public boolean anyAllowed() {
            for (boolean a : allowed) {
                if (a) {
                    return true;
                }
            }
            return false;
        }
    }

    public static long windowStart(long nowMs, long windowSeconds) {
        long windowMs = windowSeconds * 1000L;
        return Math.floorDiv(nowMs, windowMs) * windowMs;
    }

    /** Where a window opened at {@code nowMs} starts. */
    public static long openingStart(long nowMs, long windowSeconds, int alignment) {
        return switch (alignment) {
            case CLOCK -> windowStart(nowMs, windowSeconds);
            case FIRST_REQUEST -> nowMs;
            default -> throw new IllegalArgumentException("unknown alignment " + alignment);
        };
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
            long windowSeconds,
            int alignment) {
        if (cost < 1 || limit < 1 || windowSeconds < 1) {
            throw new IllegalArgumentException("cost, limit and window must be positive");
        }
        long windowMs = windowSeconds * 1000L;
        boolean open = hasState && nowMs < stateWindowStartMs + windowMs;
        long start = open ? stateWindowStartMs : openingStart(nowMs, windowSeconds, alignment);
        long used = open ? stateCount : 0L;
        long resetAfterMs = start + windowMs - Math.max(nowMs, start);
        if (cost > limit) {
            return new Outcome(start, used, false, limit, Math.max(0L, limit - used), resetAfterMs, COST_OVER_LIMIT);
        }
        if (used + cost <= limit) {
            long count = used + cost;
            return new Outcome(start, count, true, limit, limit - count, resetAfterMs, ADMITTED);
        }
        return new Outcome(start, used, false, limit, Math.max(0L, limit - used), resetAfterMs, LIMIT_REACHED);
    }

    /**
     * Applies several requests of one key, in order, all at {@code nowMs}: exactly what
     * calling {@link #decide} once per cost would give, with each call seeing the state the
     * previous one produced. One call instead of a loop lets the entry processor decide a
     * whole queue of requests in one partition operation. A request that does not fit is
     * denied and changes nothing, so a later, smaller one may still be admitted.
     *
     * @param costs the weights of the requests, in arrival order; must be non-empty and
     *     every cost positive, otherwise nothing is decided
     */
    public static BatchOutcome decideBatch(
            boolean hasState,
            long stateWindowStartMs,
            long stateCount,
            long nowMs,
            long[] costs,
            long limit,
            long windowSeconds,
            int alignment) {
        if (costs == null || costs.length == 0) {
            throw new IllegalArgumentException("a batch needs at least one cost");
        }
        for (long cost : costs) {
            if (cost < 1) {
                throw new IllegalArgumentException("cost, limit and window must be positive");
            }
        }
        int n = costs.length;
        boolean[] allowed = new boolean[n];
        long[] remaining = new long[n];
        int[] reasons = new int[n];
        Outcome last = null;
        for (int i = 0; i < n; i++) {
            last = i == 0
                    ? decide(hasState, stateWindowStartMs, stateCount, nowMs, costs[i], limit, windowSeconds, alignment)
                    // From the second request on, the state is the one just decided: always open
                    // at nowMs, so a stored state from an ended window is dropped once.
                    : decide(true, last.windowStartMs(), last.count(), nowMs, costs[i], limit, windowSeconds, alignment);
            allowed[i] = last.allowed();
            remaining[i] = last.remaining();
            reasons[i] = last.reason();
        }
        return new BatchOutcome(
                last.windowStartMs(), last.count(), limit, last.resetAfterMs(), allowed, remaining, reasons);
    }

    /**
     * Gives back a request of {@code cost} that this limit counted, as {@code refund} in
     * {@code limiter/rule.py}: the count less {@code cost} (floor 0) when the stored window
     * started at or before {@code sentMs} (the window that counted it), else unchanged.
     *
     * @return the new count, or {@code stateCount} when nothing is given back
     */
    public static long refund(long stateWindowStartMs, long stateCount, long cost, long limit, long sentMs) {
        if (cost < 1 || cost > limit || stateWindowStartMs > sentMs) {
            return stateCount;
        }
        return Math.max(0L, stateCount - cost);
    }
}
