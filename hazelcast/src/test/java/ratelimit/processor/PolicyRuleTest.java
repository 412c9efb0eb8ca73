package ratelimit.processor;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.util.Arrays;
import java.util.List;
import java.util.Random;
import java.util.stream.Stream;
import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestFactory;

/**
 * Runs the combined rule's shared vectors (also run by {@code tests/unit/test_policy_rule.py});
 * their encoding is described in {@code tests/vectors/policy.py}.
 */
class PolicyRuleTest {

    private static int algorithm(String name) {
        return switch (name) {
            case "fixed_window" -> PolicyRule.FIXED_WINDOW;
            case "sliding_window" -> PolicyRule.SLIDING_WINDOW;
            case "gcra" -> PolicyRule.GCRA;
            default -> throw new IllegalArgumentException("unknown algorithm " + name);
        };
    }

    private static int alignment(String name) {
        return switch (name) {
            case "clock" -> FixedWindowRule.CLOCK;
            case "first_request" -> FixedWindowRule.FIRST_REQUEST;
            case "-" -> -1;
            default -> throw new IllegalArgumentException("unknown alignment " + name);
        };
    }

    static PolicyRule.Limit[] policy(String field) {
        return Arrays.stream(field.split("\\|")).map(spec -> {
            String[] f = spec.split(";", -1);
            return new PolicyRule.Limit(f[0], algorithm(f[1]), Long.parseLong(f[2]), Long.parseLong(f[3]),
                    alignment(f[4]), Long.parseLong(f[5]), f[6].equals("1"));
        }).toArray(PolicyRule.Limit[]::new);
    }

    static Object[] states(PolicyRule.Limit[] policy, String field) {
        String[] fields = field.split("\\|", -1);
        assertEquals(policy.length, fields.length, "one state per limit");
        Object[] states = new Object[policy.length];
        for (int i = 0; i < policy.length; i++) {
            if (fields[i].equals("-")) {
                continue;
            }
            long[] n = Arrays.stream(fields[i].split(";")).mapToLong(Long::parseLong).toArray();
            states[i] = switch (policy[i].algorithm()) {
                case PolicyRule.FIXED_WINDOW -> new PolicyRule.FixedState(n[0], n[1]);
                case PolicyRule.SLIDING_WINDOW -> new SlidingWindowRule.State(n[0], n[1], n[2]);
                default -> new GcraRule.State(n[0], n[1]);
            };
        }
        return states;
    }

    private static PolicyRule.Decision[] decisions(PolicyRule.Limit[] policy, String field) {
        String[] fields = field.split("\\|");
        PolicyRule.Decision[] decisions = new PolicyRule.Decision[policy.length];
        for (int i = 0; i < policy.length; i++) {
            long[] n = Arrays.stream(fields[i].split(";")).mapToLong(Long::parseLong).toArray();
            decisions[i] = new PolicyRule.Decision(n[0] == 1L, policy[i].limit(), n[1], n[2], n[3], (int) n[4]);
        }
        return decisions;
    }

    private static int[] indices(String field) {
        return field.equals("-") ? new int[0] : Arrays.stream(field.split(" ")).mapToInt(Integer::parseInt).toArray();
    }

    /** The Java rule gives each shared vector's states and decision. */
    @TestFactory
    Stream<DynamicTest> sharedVectorsMatch() throws IOException {
        List<VectorFile.Row> rows = VectorFile.read("policy.csv");
        assertTrue(rows.size() >= 30, "vectors read");
        return rows.stream().map(r -> DynamicTest.dynamicTest(r.name(), () -> {
            PolicyRule.Limit[] policy = policy(r.text("limits"));
            PolicyRule.Outcome o = PolicyRule.decide(policy, states(policy, r.text("states")), r.number("now_ms"),
                    r.number("cost"));
            assertEquals(r.flag("allowed"), o.allowed(), "allowed");
            assertEquals(r.number("reason"), o.reason(), "reason");
            assertEquals(r.number("denied_by"), o.deniedBy(), "deniedBy");
            assertArrayEquals(indices(r.text("shadow_denied")), o.shadowDenied(), "shadowDenied");
            assertEquals(r.number("closest"), o.closest(), "closest");
            assertEquals(r.number("retry_after_ms"), o.retryAfterMs(), "retryAfterMs");
            assertArrayEquals(decisions(policy, r.text("decisions")), o.decisions(), "decisions");
            assertArrayEquals(states(policy, r.text("new_states")), o.states(), "new states");
        }));
    }

    /** The Java refund rule gives each shared refund vector's states (tests/vectors/refund.csv). */
    @TestFactory
    Stream<DynamicTest> sharedRefundVectorsMatch() throws IOException {
        List<VectorFile.Row> rows = VectorFile.read("refund.csv");
        assertTrue(rows.size() >= 30, "refund vectors read");
        return rows.stream().map(r -> DynamicTest.dynamicTest(r.name(), () -> {
            PolicyRule.Limit[] policy = policy(r.text("limits"));
            Object[] given = PolicyRule.refund(policy, states(policy, r.text("states")), r.number("now_ms"),
                    r.number("cost"), indices(r.text("counted")), r.number("sent_ms"));
            assertArrayEquals(states(policy, r.text("new_states")), given, "new states");
        }));
    }

    /** A refund of a limit outside the policy, or with a negative cost, is a caller error. */
    @Test
    void refundCallerErrorsAreRefused() {
        PolicyRule.Limit[] policy = policy("a;fixed_window;3;1;clock;0;0");
        Object[] states = new Object[1];
        assertThrows(IllegalArgumentException.class, () -> PolicyRule.refund(policy, states, 0L, 1L, new int[] {1}, 0L));
        assertThrows(IllegalArgumentException.class, () -> PolicyRule.refund(policy, states, 0L, -1L, new int[] {0}, 0L));
    }

    /** The Java batch rule gives each shared batch vector's final states and answers. */
    @TestFactory
    Stream<DynamicTest> sharedBatchVectorsMatch() throws IOException {
        List<VectorFile.Row> rows = VectorFile.read("policy_batch.csv");
        assertTrue(rows.size() >= 6, "batch vectors read");
        return rows.stream().map(r -> DynamicTest.dynamicTest(r.name(), () -> {
            PolicyRule.Limit[] policy = policy(r.text("limits"));
            long[] costs = r.numbers("costs");
            PolicyRule.BatchOutcome b = PolicyRule.decideBatch(policy, states(policy, r.text("states")),
                    r.number("now_ms"), costs);
            assertEquals(costs.length, b.outcomes().length, "answers");
            for (int i = 0; i < costs.length; i++) {
                PolicyRule.Outcome o = b.outcomes()[i];
                assertEquals(r.numbers("allowed")[i] == 1L, o.allowed(), "allowed[" + i + "]");
                assertEquals(r.numbers("reasons")[i], o.reason(), "reason[" + i + "]");
                assertEquals(r.numbers("denied_by")[i], o.deniedBy(), "deniedBy[" + i + "]");
                assertEquals(r.numbers("closest")[i], o.closest(), "closest[" + i + "]");
                assertEquals(r.numbers("retry_after_ms")[i], o.retryAfterMs(), "retryAfterMs[" + i + "]");
            }
            assertArrayEquals(states(policy, r.text("new_states")), b.states(), "final states");
        }));
    }

    /** A negative cost, a wrong state count or type, a bad policy and an empty batch are caller errors. */
    @Test
    void callerErrorsAreRefused() {
        PolicyRule.Limit[] p = policy("a;fixed_window;3;1;clock;0;0|b;gcra;3;1;-;0;0");
        assertThrows(IllegalArgumentException.class, () -> PolicyRule.decide(p, new Object[2], 0, -1));
        assertThrows(IllegalArgumentException.class, () -> PolicyRule.decide(p, new Object[1], 0, 1));
        assertThrows(IllegalArgumentException.class,
                () -> PolicyRule.decide(p, new Object[] {null, new PolicyRule.FixedState(0, 1)}, 0, 1));
        assertThrows(IllegalArgumentException.class,
                () -> PolicyRule.decide(p, new Object[] {new GcraRule.State(0, 0), null}, 0, 1));
        assertThrows(IllegalArgumentException.class,
                () -> PolicyRule.decide(new PolicyRule.Limit[0], new Object[0], 0, 1));
        assertThrows(IllegalArgumentException.class,
                () -> PolicyRule.decide(policy("a;fixed_window;3;1;clock;0;1"), new Object[1], 0, 1));
        assertThrows(IllegalArgumentException.class, () -> PolicyRule.decideBatch(p, new Object[2], 0, new long[0]));
    }

    private static PolicyRule.Limit randomLimit(Random random, int i) {
        int algorithm = random.nextInt(3);
        return new PolicyRule.Limit("l" + i, algorithm, 1 + random.nextInt(8), 1 + random.nextInt(7),
                algorithm == PolicyRule.FIXED_WINDOW ? random.nextInt(2) : -1,
                algorithm == PolicyRule.GCRA ? random.nextInt(4) : 0, i > 0 && random.nextBoolean());
    }

    /** A batch gives exactly the outcomes and final states of its requests decided one by one. */
    @Test
    void batchEqualsRepeatedSingleDecisions() {
        Random random = new Random(2719L);
        for (int c = 0; c < 1000; c++) {
            PolicyRule.Limit[] policy = new PolicyRule.Limit[1 + random.nextInt(4)];
            for (int i = 0; i < policy.length; i++) {
                policy[i] = randomLimit(random, i);
            }
            long nowMs = 1_764_384_000_000L + random.nextInt(60_000);
            long[] costs = new long[1 + random.nextInt(12)];
            for (int i = 0; i < costs.length; i++) {
                costs[i] = random.nextInt(5);
            }
            Object[] states = new Object[policy.length];
            PolicyRule.BatchOutcome batch = PolicyRule.decideBatch(policy, states, nowMs, costs);
            Object[] s = states;
            for (int i = 0; i < costs.length; i++) {
                PolicyRule.Outcome single = PolicyRule.decide(policy, s, nowMs, costs[i]);
                PolicyRule.Outcome inBatch = batch.outcomes()[i];
                String label = "case " + c + " request " + i;
                assertEquals(single.allowed(), inBatch.allowed(), label);
                assertEquals(single.deniedBy(), inBatch.deniedBy(), label);
                assertEquals(single.closest(), inBatch.closest(), label);
                assertEquals(single.retryAfterMs(), inBatch.retryAfterMs(), label);
                assertArrayEquals(single.decisions(), inBatch.decisions(), label);
                assertArrayEquals(single.states(), inBatch.states(), label);
                s = single.states();
            }
            assertArrayEquals(s, batch.states(), "case " + c + " final states");
        }
    }

    /** One fixed-window limit gives the fixed rule's decision, and its state when admitted. */
    @Test
    void oneFixedWindowIsTheFixedRule() {
        Random random = new Random(4409L);
        for (int c = 0; c < 3000; c++) {
            long limit = 1 + random.nextInt(12);
            int alignment = random.nextInt(2);
            PolicyRule.Limit[] policy = {new PolicyRule.Limit("only", PolicyRule.FIXED_WINDOW, limit, 60, alignment,
                    0, false)};
            PolicyRule.FixedState state = random.nextInt(4) == 0 ? null
                    : new PolicyRule.FixedState(60_000L * random.nextInt(3), random.nextInt(13));
            long nowMs = random.nextInt(180_000);
            long cost = 1 + random.nextInt(14);
            FixedWindowRule.Outcome f = FixedWindowRule.decide(state != null, state == null ? 0 : state.windowStartMs(),
                    state == null ? 0 : state.count(), nowMs, cost, limit, 60, alignment);
            PolicyRule.Outcome o = PolicyRule.decide(policy, new Object[] {state}, nowMs, cost);
            String label = "case " + c;
            assertEquals(new PolicyRule.Decision(f.allowed(), f.limit(), f.remaining(), f.resetAfterMs(),
                    PolicyRule.NO_RETRY, f.reason()), o.decisions()[0], label);
            assertEquals(f.allowed(), o.allowed(), label);
            assertEquals(f.reason(), o.reason(), label);
            Object expected = f.allowed() ? new PolicyRule.FixedState(f.windowStartMs(), f.count()) : state;
            assertEquals(expected, o.states()[0], label);
        }
    }
}
