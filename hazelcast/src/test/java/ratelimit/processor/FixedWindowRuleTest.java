package ratelimit.processor;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import java.util.Random;
import java.util.stream.Stream;
import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestFactory;

/**
 * Runs the shared vectors (also run by the Python unit tests) against the Java rule, one
 * decision and a batch of them.
 */
class FixedWindowRuleTest {

    private static List<String[]> vectors() throws IOException {
        Path file = Path.of(System.getProperty("vectors.file", "../tests/vectors/fixed_window.csv"));
        List<String> lines = Files.readAllLines(file);
        return lines.stream().skip(1).filter(l -> !l.isBlank()).map(l -> l.split(",")).toList();
    }

    /** The alignment column's name as the rule's number. */
    private static int alignment(String name) {
        return switch (name) {
            case "clock" -> FixedWindowRule.CLOCK;
            case "first_request" -> FixedWindowRule.FIRST_REQUEST;
            default -> throw new IllegalArgumentException("unknown alignment " + name);
        };
    }

    @Test
    void vectorsCoverBothAlignments() throws IOException {
        assertTrue(vectors().stream().anyMatch(r -> r[14].equals("first_request")), "first_request vectors");
        assertTrue(batchVectors().stream().anyMatch(r -> r[14].equals("first_request")), "first_request batches");
    }

    @TestFactory
    Stream<DynamicTest> sharedVectorsMatch() throws IOException {
        List<String[]> rows = vectors();
        assertFalse(rows.isEmpty(), "no vectors read");
        return rows.stream().map(r -> DynamicTest.dynamicTest(r[0], () -> {
            FixedWindowRule.Outcome o = FixedWindowRule.decide(
                    r[1].equals("1"), Long.parseLong(r[2]), Long.parseLong(r[3]),
                    Long.parseLong(r[4]), Long.parseLong(r[5]), Long.parseLong(r[6]),
                    Long.parseLong(r[7]), alignment(r[14]));
            assertEquals(r[8].equals("1"), o.allowed(), "allowed");
            assertEquals(Long.parseLong(r[6]), o.limit(), "limit");
            assertEquals(Long.parseLong(r[9]), o.remaining(), "remaining");
            assertEquals(Long.parseLong(r[10]), o.resetAfterMs(), "resetAfterMs");
            assertEquals(Integer.parseInt(r[11]), o.reason(), "reason");
            assertEquals(Long.parseLong(r[12]), o.windowStartMs(), "new window start");
            assertEquals(Long.parseLong(r[13]), o.count(), "new count");
        }));
    }

    @Test
    void nonPositiveArgumentsAreRejected() {
        assertThrows(IllegalArgumentException.class, () -> FixedWindowRule.decide(false, 0, 0, 0, 0, 1, 1, FixedWindowRule.CLOCK));
        assertThrows(IllegalArgumentException.class, () -> FixedWindowRule.decide(false, 0, 0, 0, 1, 0, 1, FixedWindowRule.CLOCK));
        assertThrows(IllegalArgumentException.class, () -> FixedWindowRule.decide(false, 0, 0, 0, 1, 1, 0, FixedWindowRule.CLOCK));
    }

    private static List<String[]> batchVectors() throws IOException {
        Path file = Path.of(System.getProperty("batch.vectors.file", "../tests/vectors/fixed_window_batch.csv"));
        List<String> lines = Files.readAllLines(file);
        return lines.stream().skip(1).filter(l -> !l.isBlank()).map(l -> l.split(",", -1)).toList();
    }

    private static long[] longs(String field) {
        return Arrays.stream(field.trim().split(" +")).mapToLong(Long::parseLong).toArray();
    }

    @TestFactory
    Stream<DynamicTest> sharedBatchVectorsMatch() throws IOException {
        List<String[]> rows = batchVectors();
        assertFalse(rows.isEmpty(), "no batch vectors read");
        return rows.stream().map(r -> DynamicTest.dynamicTest(r[0], () -> {
            assertEquals(15, r.length, "columns");
            long[] costs = longs(r[7]);
            long[] allowed = longs(r[8]);
            long[] remaining = longs(r[9]);
            long[] reasons = longs(r[10]);
            assertEquals(costs.length, allowed.length, "allowed column length");
            assertEquals(costs.length, remaining.length, "remaining column length");
            assertEquals(costs.length, reasons.length, "reasons column length");
            long limit = Long.parseLong(r[5]);
            FixedWindowRule.BatchOutcome o = FixedWindowRule.decideBatch(
                    r[1].equals("1"), Long.parseLong(r[2]), Long.parseLong(r[3]),
                    Long.parseLong(r[4]), costs, limit, Long.parseLong(r[6]), alignment(r[14]));
            assertEquals(limit, o.limit(), "limit");
            assertEquals(costs.length, o.allowed().length, "decisions");
            for (int i = 0; i < costs.length; i++) {
                assertEquals(allowed[i] == 1L, o.allowed()[i], "allowed[" + i + "]");
                assertEquals(remaining[i], o.remaining()[i], "remaining[" + i + "]");
                assertEquals(reasons[i], o.reasons()[i], "reasons[" + i + "]");
            }
            assertEquals(Long.parseLong(r[11]), o.resetAfterMs(), "resetAfterMs");
            assertEquals(Long.parseLong(r[12]), o.windowStartMs(), "new window start");
            assertEquals(Long.parseLong(r[13]), o.count(), "new count");
        }));
    }

    @Test
    void batchEqualsRepeatedSingleDecisions() {
        Random random = new Random(7301L);
        for (int c = 0; c < 2000; c++) {
            long windowSeconds = random.nextBoolean() ? 1L : 60L;
            int alignment = random.nextBoolean() ? FixedWindowRule.CLOCK : FixedWindowRule.FIRST_REQUEST;
            long windowMs = windowSeconds * 1000L;
            long nowMs = 1_764_384_000_000L + random.nextInt(5 * (int) windowMs);
            long current = FixedWindowRule.windowStart(nowMs, windowSeconds);
            boolean hasState = random.nextInt(4) != 0;
            // Current window most of the time, otherwise an older, a later or an unaligned one.
            long stateStart = switch (random.nextInt(5)) {
                case 0 -> current - windowMs * (1 + random.nextInt(3));
                case 1 -> current + windowMs;
                case 2 -> nowMs - random.nextInt(2 * (int) windowMs);
                default -> current;
            };
            long stateCount = random.nextInt(13);
            long limit = 1 + random.nextInt(10);
            long[] costs = new long[1 + random.nextInt(12)];
            for (int i = 0; i < costs.length; i++) {
                costs[i] = 1 + random.nextInt(4);
            }
            String label = "case " + c + ": state=" + hasState + "/" + stateStart + "/" + stateCount
                    + " now=" + nowMs + " limit=" + limit + " window=" + windowSeconds + " alignment=" + alignment
                    + " costs=" + Arrays.toString(costs);

            FixedWindowRule.BatchOutcome batch = FixedWindowRule.decideBatch(
                    hasState, stateStart, stateCount, nowMs, costs, limit, windowSeconds, alignment);

            boolean has = hasState;
            long start = stateStart;
            long count = stateCount;
            FixedWindowRule.Outcome single = null;
            for (int i = 0; i < costs.length; i++) {
                single = FixedWindowRule.decide(has, start, count, nowMs, costs[i], limit, windowSeconds, alignment);
                assertEquals(single.allowed(), batch.allowed()[i], label + " allowed[" + i + "]");
                assertEquals(single.remaining(), batch.remaining()[i], label + " remaining[" + i + "]");
                assertEquals(single.reason(), batch.reasons()[i], label + " reasons[" + i + "]");
                assertEquals(single.limit(), batch.limit(), label + " limit");
                assertEquals(single.resetAfterMs(), batch.resetAfterMs(), label + " resetAfterMs");
                has = true;
                start = single.windowStartMs();
                count = single.count();
            }
            assertEquals(single.windowStartMs(), batch.windowStartMs(), label + " new window start");
            assertEquals(single.count(), batch.count(), label + " new count");
        }
    }

    @Test
    void invalidBatchesAreRejected() {
        assertThrows(IllegalArgumentException.class,
                () -> FixedWindowRule.decideBatch(false, 0, 0, 0, new long[0], 1, 1, FixedWindowRule.CLOCK));
        assertThrows(IllegalArgumentException.class,
                () -> FixedWindowRule.decideBatch(false, 0, 0, 0, null, 1, 1, FixedWindowRule.CLOCK));
        assertThrows(IllegalArgumentException.class,
                () -> FixedWindowRule.decideBatch(false, 0, 0, 0, new long[] {1, 0, 1}, 1, 1, FixedWindowRule.CLOCK));
        assertThrows(IllegalArgumentException.class,
                () -> FixedWindowRule.decideBatch(false, 0, 0, 0, new long[] {-1}, 1, 1, FixedWindowRule.CLOCK));
        assertThrows(IllegalArgumentException.class,
                () -> FixedWindowRule.decideBatch(false, 0, 0, 0, new long[] {1}, 0, 1, FixedWindowRule.CLOCK));
        assertThrows(IllegalArgumentException.class,
                () -> FixedWindowRule.decideBatch(false, 0, 0, 0, new long[] {1}, 1, 0, FixedWindowRule.CLOCK));
    }
}
