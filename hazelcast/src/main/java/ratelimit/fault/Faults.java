package ratelimit.fault;

import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;

/**
 * The switch of this member's fault-injection hooks, and what they did here.
 *
 * <p>The hooks exist for the tests that need a failure at one exact moment (see
 * {@link FaultStallProcessor}); a member runs them only when its JVM was started with
 * {@code -Dratelimit.faults=on}. Any other member refuses them with an
 * {@link IllegalStateException} naming the property, which reaches the caller as the
 * error of its call: a production member can never be stalled by a stray call.
 */
public final class Faults {

    /** The system property that turns the hooks on, and its one value that does. */
    public static final String PROPERTY = "ratelimit.faults";
    public static final String ON = "on";

    /** A stall's state on a member, as {@link FaultStallProcessor#ASK} answers it. */
    public static final long STALL_UNKNOWN = 0L;
    public static final long STALL_SLEEPING = 1L;
    public static final long STALL_DONE = 2L;

    /** At most this many stalls are remembered per member; then the finished ones are forgotten. */
    static final int REMEMBERED_STALLS = 1024;

    private static final Map<Long, Long> STALLS = new ConcurrentHashMap<>();

    private Faults() {
    }

    /** Whether this member runs the hooks (read at each call, so a test can switch it). */
    public static boolean enabled() {
        return ON.equals(System.getProperty(PROPERTY));
    }

    /** Refuses {@code hook} unless the hooks are on. */
    static void requireEnabled(String hook) {
        if (!enabled()) {
            throw new IllegalStateException(hook + " refused: fault injection is off on this member "
                    + "(tests start members with -D" + PROPERTY + "=" + ON + ")");
        }
    }

    /** The state of stall {@code stallId} on this member. */
    static long stallState(long stallId) {
        return STALLS.getOrDefault(stallId, STALL_UNKNOWN);
    }

    static void stallSleeping(long stallId) {
        if (STALLS.size() >= REMEMBERED_STALLS) {
            STALLS.values().removeIf(state -> state == STALL_DONE);
        }
        STALLS.put(stallId, STALL_SLEEPING);
    }

    static void stallDone(long stallId) {
        STALLS.put(stallId, STALL_DONE);
    }
}
