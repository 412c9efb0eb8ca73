package ratelimit.processor;

/**
 * The sliding-window rule (the weighted two-window approximation), mirrored line for line
 * from {@code limiter/sliding_window.py}, whose docstring defines it.
 *
 * <p>Clock-aligned windows of W; the state is the current window's start, its count and
 * the previous window's count. A request of {@code cost} passes when
 * {@code previous * (W - elapsed) + (count + cost) * W <= limit * W}, computed without
 * multiplying a stored count beyond {@code limit * W}, which is checked to be at most
 * {@link #MAX_LIMIT_TIMES_WINDOW_MS}: no {@code long} overflows. Both implementations run
 * {@code tests/vectors/sliding_window.csv} and {@code sliding_window_batch.csv}.
 */
public final class SlidingWindowRule {

    /** The largest {@code limit * windowMs} (2**61). */
    public static final long MAX_LIMIT_TIMES_WINDOW_MS = 1L << 61;

    /** {@code retryAfterMs} of a decision without a retry time (Python's {@code None}). */
    public static final long NO_RETRY = -1L;

    private SlidingWindowRule() {
    }

    /** The state to store after a decision. */
    public record State(long windowStartMs, long count, long previousCount) {
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

    private static long windowMs(long cost, long limit, long windowSeconds) {
        if (cost < 1 || limit < 1 || windowSeconds < 1) {
            throw new IllegalArgumentException("cost, limit and window must be positive");
        }
        if (windowSeconds > MAX_LIMIT_TIMES_WINDOW_MS / 1000L
                || windowSeconds * 1000L > MAX_LIMIT_TIMES_WINDOW_MS / limit) {
            throw new IllegalArgumentException("limit * window_ms must be at most 2**61");
        }
        return windowSeconds * 1000L;
    }

    /**
     * The state a request at {@code nowMs} sees: the stored one until its window ends (kept
     * when it starts later), otherwise the window holding {@code nowMs}, whose previous count
     * is the stored count if the stored window is the one just before it, else 0.
     */
    public static State roll(State state, long nowMs, long windowSeconds) {
        long windowMs = windowSeconds * 1000L;
        if (state == null) {
            return new State(FixedWindowRule.windowStart(nowMs, windowSeconds), 0L, 0L);
        }
        if (nowMs < state.windowStartMs() + windowMs) {
            return state;
        }
        long start = FixedWindowRule.windowStart(nowMs, windowSeconds);
        long previous = state.windowStartMs() >= start - windowMs ? state.count() : 0L;
        return new State(start, 0L, previous);
    }

    private static long room(State state, long nowMs, long limit, long windowMs) {
        long weight = windowMs - Math.max(0L, nowMs - state.windowStartMs());
        long budget = limit * windowMs;
        if (state.previousCount() > budget / weight) {
            return 0L;
        }
        return Math.max(0L, (budget - state.previousCount() * weight) / windowMs - state.count());
    }

    /** The first elapsed e in [0, W) with {@code weighted * (W - e) <= free * W}, or -1. */
    private static long firstElapsed(long weighted, long free, long windowMs) {
        if (free < 0) {
            return -1L;
        }
        if (weighted == 0) {
            return 0L;
        }
        long span = free * windowMs / weighted;
        if (span < 1) {
            return -1L;
        }
        return Math.max(0L, windowMs - span);
    }

    private static long passesAt(State state, long cost, long limit, long windowMs) {
        long start = state.windowStartMs();
        long elapsed = firstElapsed(state.previousCount(), limit - state.count() - cost, windowMs);
        if (elapsed >= 0) {
            return start + elapsed;
        }
        elapsed = firstElapsed(state.count(), limit - cost, windowMs);
        if (elapsed >= 0) {
            return start + windowMs + elapsed;
        }
        return start + 2 * windowMs;
    }

    private static long resetAfterMs(State state, long nowMs, long windowMs) {
        if (state.count() > 0) {
            return state.windowStartMs() + 2 * windowMs - nowMs;
        }
        if (state.previousCount() > 0) {
            return state.windowStartMs() + windowMs - nowMs;
        }
        return 0L;
    }

    /**
     * Applies one request to {@code state} ({@code null}: nothing stored); the state of a
     * denial is {@code state} rolled to {@code nowMs}.
     */
    public static Outcome decide(State state, long nowMs, long cost, long limit, long windowSeconds) {
        long windowMs = windowMs(cost, limit, windowSeconds);
        State current = roll(state, nowMs, windowSeconds);
        long room = room(current, nowMs, limit, windowMs);
        if (cost > limit) {
            return new Outcome(current, false, limit, room, resetAfterMs(current, nowMs, windowMs), NO_RETRY,
                    FixedWindowRule.COST_OVER_LIMIT);
        }
        if (cost <= room) {
            State admitted = new State(current.windowStartMs(), current.count() + cost, current.previousCount());
            return new Outcome(admitted, true, limit, room - cost, resetAfterMs(admitted, nowMs, windowMs), NO_RETRY,
                    FixedWindowRule.ADMITTED);
        }
        long retry = passesAt(current, cost, limit, windowMs) - nowMs;
        return new Outcome(current, false, limit, room, resetAfterMs(current, nowMs, windowMs), retry,
                FixedWindowRule.LIMIT_REACHED);
    }

    /**
     * Applies several requests of one key, in order, all at {@code nowMs}: exactly what
     * calling {@link #decide} once per cost would give.
     */
    public static BatchOutcome decideBatch(State state, long nowMs, long[] costs, long limit, long windowSeconds) {
        if (costs == null || costs.length == 0) {
            throw new IllegalArgumentException("a batch needs at least one cost");
        }
        Outcome[] outcomes = new Outcome[costs.length];
        for (int i = 0; i < costs.length; i++) {
            outcomes[i] = decide(state, nowMs, costs[i], limit, windowSeconds);
            state = outcomes[i].state();
        }
        return new BatchOutcome(state, outcomes);
    }

    /**
     * Gives back a request of {@code cost} that this limit counted, as {@code refund} in
     * {@code limiter/sliding_window.py}: the current count less {@code cost} (floor 0) when
     * the current window started at or before {@code sentMs}, else {@code state} unchanged
     * ({@code null} stays {@code null}).
     */
    public static State refund(State state, long cost, long limit, long sentMs) {
        if (state == null || cost < 1 || cost > limit || state.windowStartMs() > sentMs) {
            return state;
        }
        return new State(state.windowStartMs(), Math.max(0L, state.count() - cost), state.previousCount());
    }
}
