package ratelimit.processor;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.stream.Stream;
import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestFactory;

/** Runs the shared vectors (also run by tests/unit/test_rule.py) against the Java rule. */
class FixedWindowRuleTest {

    private static List<String[]> vectors() throws IOException {
        Path file = Path.of(System.getProperty("vectors.file", "../tests/vectors/fixed_window.csv"));
        List<String> lines = Files.readAllLines(file);
        return lines.stream().skip(1).filter(l -> !l.isBlank()).map(l -> l.split(",")).toList();
    }

    @TestFactory
    Stream<DynamicTest> sharedVectorsMatch() throws IOException {
        List<String[]> rows = vectors();
        assertFalse(rows.isEmpty(), "no vectors read");
        return rows.stream().map(r -> DynamicTest.dynamicTest(r[0], () -> {
            FixedWindowRule.Outcome o = FixedWindowRule.decide(
                    r[1].equals("1"), Long.parseLong(r[2]), Long.parseLong(r[3]),
                    Long.parseLong(r[4]), Long.parseLong(r[5]), Long.parseLong(r[6]),
                    Long.parseLong(r[7]));
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
        assertThrows(IllegalArgumentException.class, () -> FixedWindowRule.decide(false, 0, 0, 0, 0, 1, 1));
        assertThrows(IllegalArgumentException.class, () -> FixedWindowRule.decide(false, 0, 0, 0, 1, 0, 1));
        assertThrows(IllegalArgumentException.class, () -> FixedWindowRule.decide(false, 0, 0, 0, 1, 1, 0));
    }
}
