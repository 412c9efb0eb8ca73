package ratelimit.processor;

/**
 * The combined rule: one request against a client's whole list of limits, mirrored line for
 * line from {@code limiter/policy_rule.py}, whose docstring defines it.
 *
 * <p>Each limit is decided by its own rule ({@link FixedWindowRule}, {@link SlidingWindowRule},
 * {@link GcraRule}) at the same {@code nowMs} and {@code cost}. The request is admitted when
 * every enforced limit admits it; a denial returns every state as given; an admission applies
 * every limit that admitted it, shadow limits included. A cost of 0 is a peek: each limit's
 * usage, read from its rule's cost-over-limit answer, and no state changes. {@code deniedBy}
 * is the first enforced limit over its limit by cost, else the enforced denying limit with the
 * longest wait; {@code retryAfterMs} is that wait, when every enforced limit admits;
 * {@code closest} is {@code deniedBy} on a denial, else the enforced limit with the smallest
 * {@code remaining / capacity} (the limit, or {@code burst + 1} for GCRA). Both implementations run {@code tests/vectors/policy.csv} and
 * {@code policy_batch.csv}.
 *
 * <p>A limit's state is its rule's own type: {@link FixedState}, {@link SlidingWindowRule.State}
 * or {@link GcraRule.State}, or {@code null} when nothing is stored.
 */
public final class PolicyRule {

    /** Algorithms, numbered as {@code Algorithm.wire_id} in {@code limiter/policy.py}. */
    public static final int FIXED_WINDOW = 0;
    public static final int SLIDING_WINDOW = 1;
    public static final int GCRA = 2;

    /** The most limits one client may have. */
    public static final int MAX_LIMITS = 8;

    /** {@code retryAfterMs} without a retry time (Python's {@code None}). */
    public static final long NO_RETRY = -1L;

    /** {@code deniedBy} of an admission (Python's {@code None}). */
    public static final int NO_LIMIT = -1;

    private PolicyRule() {
    }

    /**
     * One limit of a policy. {@code alignment} ({@link FixedWindowRule#CLOCK} or
     * {@link FixedWindowRule#FIRST_REQUEST}) is read for a fixed window only, {@code burst} for
     * GCRA only; the Python spec checks that the others are unset.
     */
    public record Limit(String name, int algorithm, long limit, long windowSeconds, int alignment, long burst,
            boolean shadow) {
    }

    /** A fixed window's state (the fixed rule itself takes it as separate numbers). */
    public record FixedState(long windowStartMs, long count) {
    }

    /** One limit's answer, as {@code limiter.rule.Decision}. */
    public record Decision(boolean allowed, long limit, long remaining, long resetAfterMs, long retryAfterMs,
            int reason) {

        /** The retry time when there is one, otherwise the reset. */
        public long waitMs() {
            return retryAfterMs == NO_RETRY ? resetAfterMs : retryAfterMs;
        }
    }

    /** The states to store, one per limit, and the answer. */
    public record Outcome(
            Object[] states,
            boolean allowed,
            int reason,
            Decision[] decisions,
            int deniedBy,
            int[] shadowDenied,
            int closest,
            long retryAfterMs) {
    }

    /** A batch's final states and, per request in order, its outcome. */
    public record BatchOutcome(Object[] states, Outcome[] outcomes) {
    }

    private record One(Object state, Decision decision) {
    }

    /** {@code limit}'s own rule on {@code state}; a state of another algorithm is a caller error. */
    private static One decideOne(Limit limit, Object state, long nowMs, long cost) {
        switch (limit.algorithm()) {
            case FIXED_WINDOW -> {
                if (state != null && !(state instanceof FixedState)) {
                    throw new IllegalArgumentException(limit.name() + ": a fixed window's state is a FixedState");
                }
                FixedState s = (FixedState) state;
                FixedWindowRule.Outcome o = FixedWindowRule.decide(s != null, s == null ? 0L : s.windowStartMs(),
                        s == null ? 0L : s.count(), nowMs, cost, limit.limit(), limit.windowSeconds(),
                        limit.alignment());
                return new One(new FixedState(o.windowStartMs(), o.count()),
                        new Decision(o.allowed(), o.limit(), o.remaining(), o.resetAfterMs(), NO_RETRY, o.reason()));
            }
            case SLIDING_WINDOW -> {
                if (state != null && !(state instanceof SlidingWindowRule.State)) {
                    throw new IllegalArgumentException(limit.name() + ": a sliding window's state is a State");
                }
                SlidingWindowRule.Outcome o = SlidingWindowRule.decide((SlidingWindowRule.State) state, nowMs, cost,
                        limit.limit(), limit.windowSeconds());
                return new One(o.state(), new Decision(o.allowed(), o.limit(), o.remaining(), o.resetAfterMs(),
                        o.retryAfterMs(), o.reason()));
            }
            case GCRA -> {
                if (state != null && !(state instanceof GcraRule.State)) {
                    throw new IllegalArgumentException(limit.name() + ": a gcra limit's state is a GcraRule.State");
                }
                GcraRule.Outcome o = GcraRule.decide((GcraRule.State) state, nowMs, cost, limit.limit(),
                        limit.windowSeconds(), limit.burst());
                return new One(o.state(), new Decision(o.allowed(), o.limit(), o.remaining(), o.resetAfterMs(),
                        o.retryAfterMs(), o.reason()));
            }
            default -> throw new IllegalArgumentException(limit.name() + ": unknown algorithm " + limit.algorithm());
        }
    }

    /** {@code limit}'s usage now, from its rule's answer to a cost it could never admit. */
    private static Decision peek(Limit limit, Object state, long nowMs) {
        long never = limit.algorithm() == GCRA ? limit.burst() + 2 : limit.limit() + 1;
        Decision over = decideOne(limit, state, nowMs, never).decision();
        return new Decision(true, over.limit(), over.remaining(), over.resetAfterMs(), NO_RETRY,
                FixedWindowRule.ADMITTED);
    }

    /** Whether {@code a * b < c * d} for numbers that are not negative, exactly (128 bits). */
    private static boolean productLess(long a, long b, long c, long d) {
        long high = Math.multiplyHigh(a, b);
        long otherHigh = Math.multiplyHigh(c, d);
        if (high != otherHigh) {
            return high < otherHigh;
        }
        return Long.compareUnsigned(a * b, c * d) < 0;
    }

    /** What a limit's remaining counts out of: its limit, or for GCRA the bucket of burst + 1. */
    private static long capacity(Limit limit) {
        return limit.algorithm() == GCRA ? limit.burst() + 1 : limit.limit();
    }

    private static int closest(Limit[] policy, Decision[] decisions) {
        int best = NO_LIMIT;
        for (int i = 0; i < policy.length; i++) {
            if (policy[i].shadow()) {
                continue;
            }
            Decision d = decisions[i];
            if (best == NO_LIMIT || productLess(d.remaining(), capacity(policy[best]), decisions[best].remaining(),
                    capacity(policy[i]))) {
                best = i;
            }
        }
        return best;
    }

    /** The first enforced limit over its limit by cost, else the longest wait (the first among equals). */
    private static int deniedBy(Limit[] policy, Decision[] decisions) {
        int longest = NO_LIMIT;
        for (int i = 0; i < policy.length; i++) {
            if (policy[i].shadow() || decisions[i].allowed()) {
                continue;
            }
            if (decisions[i].reason() == FixedWindowRule.COST_OVER_LIMIT) {
                return i;
            }
            if (longest == NO_LIMIT || decisions[i].waitMs() > decisions[longest].waitMs()) {
                longest = i;
            }
        }
        return longest;
    }

    private static void check(Limit[] policy, Object[] states, long cost) {
        if (policy == null || policy.length < 1 || policy.length > MAX_LIMITS) {
            throw new IllegalArgumentException("a policy has 1 to " + MAX_LIMITS + " limits");
        }
        boolean enforced = false;
        for (Limit limit : policy) {
            enforced |= !limit.shadow();
        }
        if (!enforced) {
            throw new IllegalArgumentException("a policy needs at least one enforced (non-shadow) limit");
        }
        if (states == null || states.length != policy.length) {
            throw new IllegalArgumentException("one state per limit");
        }
        if (cost < 0) {
            throw new IllegalArgumentException("cost must not be negative");
        }
    }

    /** Decides one request of {@code cost} (0: a peek) against every limit of {@code policy}. */
    public static Outcome decide(Limit[] policy, Object[] states, long nowMs, long cost) {
        check(policy, states, cost);
        int n = policy.length;
        Object[] given = states.clone();
        if (cost == 0) {
            Decision[] peeks = new Decision[n];
            for (int i = 0; i < n; i++) {
                peeks[i] = peek(policy[i], given[i], nowMs);
            }
            return new Outcome(given, true, FixedWindowRule.ADMITTED, peeks, NO_LIMIT, new int[0],
                    closest(policy, peeks), NO_RETRY);
        }
        One[] own = new One[n];
        Decision[] ownDecisions = new Decision[n];
        int shadowDenials = 0;
        for (int i = 0; i < n; i++) {
            own[i] = decideOne(policy[i], given[i], nowMs, cost);
            ownDecisions[i] = own[i].decision();
            if (policy[i].shadow() && !ownDecisions[i].allowed()) {
                shadowDenials++;
            }
        }
        int deniedBy = deniedBy(policy, ownDecisions);
        boolean allowed = deniedBy == NO_LIMIT;
        int[] shadowDenied = new int[shadowDenials];
        Object[] newStates = new Object[n];
        Decision[] decisions = new Decision[n];
        for (int i = 0, s = 0; i < n; i++) {
            Decision d = ownDecisions[i];
            if (policy[i].shadow() && !d.allowed()) {
                shadowDenied[s++] = i;
            }
            if (allowed && d.allowed()) {
                newStates[i] = own[i].state();
                decisions[i] = d;
                continue;
            }
            newStates[i] = given[i];
            if (d.allowed()) { // it alone admits, but the request was denied: it counts nothing
                Decision usage = peek(policy[i], given[i], nowMs);
                d = new Decision(d.allowed(), d.limit(), usage.remaining(), usage.resetAfterMs(), d.retryAfterMs(),
                        d.reason());
            }
            decisions[i] = d;
        }
        if (allowed) {
            return new Outcome(newStates, true, FixedWindowRule.ADMITTED, decisions, NO_LIMIT, shadowDenied,
                    closest(policy, decisions), NO_RETRY);
        }
        Decision denial = ownDecisions[deniedBy];
        long retry = denial.reason() == FixedWindowRule.LIMIT_REACHED ? denial.waitMs() : NO_RETRY;
        return new Outcome(newStates, false, denial.reason(), decisions, deniedBy, shadowDenied, deniedBy, retry);
    }

    /**
     * Decides several requests of one client, in order, all at {@code nowMs}: exactly what
     * calling {@link #decide} once per cost would give.
     */
    public static BatchOutcome decideBatch(Limit[] policy, Object[] states, long nowMs, long[] costs) {
        if (costs == null || costs.length == 0) {
            throw new IllegalArgumentException("a batch needs at least one cost");
        }
        Outcome[] outcomes = new Outcome[costs.length];
        Object[] current = states;
        for (int i = 0; i < costs.length; i++) {
            outcomes[i] = decide(policy, current, nowMs, costs[i]);
            current = outcomes[i].states();
        }
        return new BatchOutcome(current, outcomes);
    }

    /**
     * The states once a request of {@code cost}, admitted at or after {@code sentMs} and counted
     * by the limits {@code counted}, is given back: {@code refund} of {@code limiter/refund.py},
     * whose docstring defines it. Each counted limit is given back by its own rule; every other
     * limit, and a state of {@code null}, is returned as given. A cost of 0 counted nothing.
     * Both implementations run {@code tests/vectors/refund.csv}.
     */
    public static Object[] refund(Limit[] policy, Object[] states, long nowMs, long cost, int[] counted,
            long sentMs) {
        check(policy, states, cost);
        Object[] result = states.clone();
        if (counted == null) {
            throw new IllegalArgumentException("no counted limits");
        }
        for (int index : counted) {
            if (index < 0 || index >= policy.length) {
                throw new IllegalArgumentException("no limit " + index + " in a policy of " + policy.length);
            }
        }
        if (cost == 0) {
            return result;
        }
        boolean[] done = new boolean[policy.length];
        for (int i : counted) {
            if (done[i]) {
                continue;
            }
            done[i] = true;
            result[i] = refundOne(policy[i], states[i], nowMs, cost, sentMs);
        }
        return result;
    }

    /** {@code limit}'s own refund rule; a state of another algorithm is a caller error. */
    private static Object refundOne(Limit limit, Object state, long nowMs, long cost, long sentMs) {
        switch (limit.algorithm()) {
            case FIXED_WINDOW -> {
                if (state != null && !(state instanceof FixedState)) {
                    throw new IllegalArgumentException(limit.name() + ": a fixed window's state is a FixedState");
                }
                FixedState s = (FixedState) state;
                if (s == null) {
                    return null;
                }
                return new FixedState(s.windowStartMs(),
                        FixedWindowRule.refund(s.windowStartMs(), s.count(), cost, limit.limit(), sentMs));
            }
            case SLIDING_WINDOW -> {
                if (state != null && !(state instanceof SlidingWindowRule.State)) {
                    throw new IllegalArgumentException(limit.name() + ": a sliding window's state is a State");
                }
                return SlidingWindowRule.refund((SlidingWindowRule.State) state, cost, limit.limit(), sentMs);
            }
            case GCRA -> {
                if (state != null && !(state instanceof GcraRule.State)) {
                    throw new IllegalArgumentException(limit.name() + ": a gcra limit's state is a GcraRule.State");
                }
                return GcraRule.refund((GcraRule.State) state, nowMs, cost, limit.limit(), limit.windowSeconds(),
                        limit.burst(), sentMs);
            }
            default -> throw new IllegalArgumentException(limit.name() + ": unknown algorithm " + limit.algorithm());
        }
    }
}
