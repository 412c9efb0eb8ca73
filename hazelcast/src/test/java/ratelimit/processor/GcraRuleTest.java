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

/** Runs the GCRA rule's shared vectors (also run by {@code tests/unit/test_gcra.py}), one decision and batches. */
class GcraRuleTest {

    private static GcraRule.State state(VectorFile.Row r) {
        return r.flag("has_state") ? new GcraRule.State(r.number("state_tat_ms"), r.number("state_tat_fraction")) : null;
    }

    private static GcraRule.State expectedState(VectorFile.Row r) {
        return new GcraRule.State(r.number("new_tat_ms"), r.number("new_tat_fraction"));
    }

    /** Checks request {@code i} of a row against its list columns (single rows have lists of one). */
    private static void check(VectorFile.Row r, String reasons, int i, GcraRule.Outcome o) {
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
        List<VectorFile.Row> rows = VectorFile.read("gcra.csv");
        assertTrue(rows.size() >= 25, "vectors read");
        return rows.stream().map(r -> DynamicTest.dynamicTest(r.name(), () -> {
            GcraRule.Outcome o = GcraRule.decide(state(r), r.number("now_ms"), r.number("cost"), r.number("limit"),
                    r.number("window_seconds"), r.number("burst"));
            check(r, "reason", 0, o);
            assertEquals(expectedState(r), o.state(), "new state");
        }));
    }

    /** The Java batch rule gives each shared batch vector's state and decisions. */
    @TestFactory
    Stream<DynamicTest> sharedBatchVectorsMatch() throws IOException {
        List<VectorFile.Row> rows = VectorFile.read("gcra_batch.csv");
        assertTrue(rows.size() >= 6, "batch vectors read");
        return rows.stream().map(r -> DynamicTest.dynamicTest(r.name(), () -> {
            long[] costs = r.numbers("costs");
            GcraRule.BatchOutcome o = GcraRule.decideBatch(state(r), r.number("now_ms"), costs, r.number("limit"),
                    r.number("window_seconds"), r.number("burst"));
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
        assertThrows(IllegalArgumentException.class, () -> GcraRule.decide(null, 0, 0, 1, 1, 0));
        assertThrows(IllegalArgumentException.class, () -> GcraRule.decide(null, 0, 1, 0, 1, 0));
        assertThrows(IllegalArgumentException.class, () -> GcraRule.decide(null, 0, 1, 1, 0, 0));
        assertThrows(IllegalArgumentException.class, () -> GcraRule.decide(null, 0, 1, 1, 1, -1));
        assertThrows(IllegalArgumentException.class, () -> GcraRule.decide(null, 0, 1, 1, 1, (1L << 61) / 1000));
        assertThrows(IllegalArgumentException.class, () -> GcraRule.decide(null, 0, 1, 1, Long.MAX_VALUE, 0));
        assertThrows(IllegalArgumentException.class, () -> GcraRule.decideBatch(null, 0, new long[0], 1, 1, 0));
        assertThrows(IllegalArgumentException.class, () -> GcraRule.decideBatch(null, 0, new long[] {1, 0}, 1, 1, 0));
    }

    /** A batch gives exactly the decisions and final state of its requests decided one by one. */
    @Test
    void batchEqualsRepeatedSingleDecisions() {
        Random random = new Random(9203L);
        for (int c = 0; c < 2000; c++) {
            long windowSeconds = random.nextBoolean() ? 1L : 60L;
            long limit = 1 + random.nextInt(13);
            long burst = random.nextInt(6);
            long nowMs = 1_764_384_000_000L + random.nextInt(60_000);
            GcraRule.State state = random.nextInt(4) == 0 ? null
                    : new GcraRule.State(nowMs + random.nextInt(120_000) - 20_000, random.nextInt((int) limit));
            long[] costs = new long[1 + random.nextInt(12)];
            for (int i = 0; i < costs.length; i++) {
                costs[i] = 1 + random.nextInt(4);
            }
            String label = "case " + c + ": " + state + " now=" + nowMs + " limit=" + limit + " burst=" + burst
                    + " window=" + windowSeconds + " costs=" + Arrays.toString(costs);
            GcraRule.BatchOutcome batch = GcraRule.decideBatch(state, nowMs, costs, limit, windowSeconds, burst);
            GcraRule.State s = state;
            for (int i = 0; i < costs.length; i++) {
                GcraRule.Outcome single = GcraRule.decide(s, nowMs, costs[i], limit, windowSeconds, burst);
                assertEquals(single, batch.outcomes()[i], label + " decision " + i);
                s = single.state();
            }
            assertEquals(s, batch.state(), label + " final state");
        }
    }
}
