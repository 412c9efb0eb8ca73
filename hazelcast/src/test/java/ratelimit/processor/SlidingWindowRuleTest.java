package ratelimit.processor;

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
 * Runs the sliding-window rule's shared vectors (also run by
 * {@code tests/unit/test_sliding_window.py}), one decision and batches.
 */
class SlidingWindowRuleTest {

    private static SlidingWindowRule.State state(VectorFile.Row r) {
        return r.flag("has_state")
                ? new SlidingWindowRule.State(
                        r.number("state_window_start_ms"), r.number("state_count"), r.number("state_previous_count"))
                : null;
    }

    private static SlidingWindowRule.State expectedState(VectorFile.Row r) {
        return new SlidingWindowRule.State(
                r.number("new_window_start_ms"), r.number("new_count"), r.number("new_previous_count"));
    }

    /** Checks request {@code i} of a row against its list columns (single rows have lists of one). */
    private static void check(VectorFile.Row r, String reasons, int i, SlidingWindowRule.Outcome o) {
        assertEquals(r.numbers("allowed")[i] == 1L, o.allowed(), "allowed[" + i + "]");
        assertEquals(r.number("limit"), o.limit(), "limit");
        assertEquals(r.numbers("remaining")[i], o.remaining(), "remaining[" + i + "]");
        assertEquals(r.numbers("reset_after_ms")[i], o.resetAfterMs(), "resetAfterMs[" + i + "]");
        assertEquals(r.numbers("retry_after_ms")[i], o.retryAfterMs(), "retryAfterMs[" + i + "]");
        assertEquals(r.numbers(reasons)[i], o.reason(), "reason[" + i + "]");
    }

    /** The Java rule gives each shared vector's expected state and decision. */
    @TestFactory
    Stream<DynamicTest> sharedVectorsMatch() throws IOException {
        List<VectorFile.Row> rows = VectorFile.read("sliding_window.csv");
        assertTrue(rows.size() >= 25, "vectors read");
        return rows.stream().map(r -> DynamicTest.dynamicTest(r.name(), () -> {
            SlidingWindowRule.Outcome o = SlidingWindowRule.decide(
                    state(r), r.number("now_ms"), r.number("cost"), r.number("limit"), r.number("window_seconds"));
            check(r, "reason", 0, o);
            assertEquals(expectedState(r), o.state(), "new state");
        }));
    }

    /** The Java batch rule gives each shared batch vector's state and decisions. */
    @TestFactory
    Stream<DynamicTest> sharedBatchVectorsMatch() throws IOException {
        List<VectorFile.Row> rows = VectorFile.read("sliding_window_batch.csv");
        assertTrue(rows.size() >= 8, "batch vectors read");
        return rows.stream().map(r -> DynamicTest.dynamicTest(r.name(), () -> {
            long[] costs = r.numbers("costs");
            SlidingWindowRule.BatchOutcome o = SlidingWindowRule.decideBatch(
                    state(r), r.number("now_ms"), costs, r.number("limit"), r.number("window_seconds"));
            assertEquals(costs.length, o.outcomes().length, "decisions");
            for (int i = 0; i < costs.length; i++) {
                check(r, "reasons", i, o.outcomes()[i]);
            }
            assertEquals(expectedState(r), o.state(), "new state");
        }));
    }

    /** Arguments out of range, the overflow bound included, and empty batches are caller errors. */
    @Test
    void invalidArgumentsAreRejected() {
        assertThrows(IllegalArgumentException.class, () -> SlidingWindowRule.decide(null, 0, 0, 1, 1));
        assertThrows(IllegalArgumentException.class, () -> SlidingWindowRule.decide(null, 0, 1, 0, 1));
        assertThrows(IllegalArgumentException.class, () -> SlidingWindowRule.decide(null, 0, 1, 1, 0));
        assertThrows(IllegalArgumentException.class,
                () -> SlidingWindowRule.decide(null, 0, 1, (1L << 61) / 1000 + 1, 1));
        assertThrows(IllegalArgumentException.class, () -> SlidingWindowRule.decide(null, 0, 1, 1, Long.MAX_VALUE));
        assertThrows(IllegalArgumentException.class,
                () -> SlidingWindowRule.decideBatch(null, 0, new long[0], 1, 1));
        assertThrows(IllegalArgumentException.class,
                () -> SlidingWindowRule.decideBatch(null, 0, new long[] {1, 0}, 1, 1));
    }

    /** A batch gives exactly the decisions and final state of its requests decided one by one. */
    @Test
    void batchEqualsRepeatedSingleDecisions() {
        Random random = new Random(4127L);
        for (int c = 0; c < 2000; c++) {
            long windowSeconds = random.nextBoolean() ? 1L : 60L;
            long windowMs = windowSeconds * 1000L;
            long nowMs = 1_764_384_000_000L + random.nextInt(5 * (int) windowMs);
            long current = FixedWindowRule.windowStart(nowMs, windowSeconds);
            SlidingWindowRule.State state = random.nextInt(4) == 0 ? null : new SlidingWindowRule.State(
                    current + windowMs * (random.nextInt(5) - 3), random.nextInt(13), random.nextInt(13));
            long limit = 1 + random.nextInt(10);
            long[] costs = new long[1 + random.nextInt(12)];
            for (int i = 0; i < costs.length; i++) {
                costs[i] = 1 + random.nextInt(4);
            }
            String label = "case " + c + ": " + state + " now=" + nowMs + " limit=" + limit
                    + " window=" + windowSeconds + " costs=" + Arrays.toString(costs);
            SlidingWindowRule.BatchOutcome batch = SlidingWindowRule.decideBatch(state, nowMs, costs, limit, windowSeconds);
            SlidingWindowRule.State s = state;
            for (int i = 0; i < costs.length; i++) {
                SlidingWindowRule.Outcome single = SlidingWindowRule.decide(s, nowMs, costs[i], limit, windowSeconds);
                assertEquals(single, batch.outcomes()[i], label + " decision " + i);
                s = single.state();
            }
            assertEquals(s, batch.state(), label + " final state");
        }
    }
}
