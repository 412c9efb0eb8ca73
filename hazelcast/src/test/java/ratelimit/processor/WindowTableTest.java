package ratelimit.processor;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.UUID;
import org.junit.jupiter.api.Test;

/**
 * {@link WindowTable} against a {@code HashMap} over random puts and removals of packed and
 * other keys, the packing of client keys, and the incremental sweep of {@link WindowShard}.
 */
class WindowTableTest {

    /** A client key of the usual form packs into two longs and unpacks to the same string. */
    @Test
    void clientKeysPackAndUnpackExactly() {
        WindowTable table = new WindowTable();
        Random random = new Random(3);
        for (int i = 0; i < 1_000; i++) {
            String key = new UUID(random.nextLong(), random.nextLong()) + ":p";
            assertTrue(table.pack(key), key);
            table.put(key, new long[] {i});
            assertEquals(key, table.keyAt(table.size() - 1));
        }
        assertFalse(table.pack("C0FFEE00-0000-4000-8000-000000000000:p"), "upper case is another string");
        assertFalse(table.pack("c0ffee00-0000-4000-8000-000000000000:q"));
        assertFalse(table.pack("c0ffee00-0000-4000-8000-00000000000:pp"));
        assertFalse(table.pack("c:p"));
    }

    /** Every get answers as a HashMap would after the same puts and removals. */
    @Test
    void randomPutsAndRemovalsMatchAHashMap() {
        Random random = new Random(7);
        WindowTable table = new WindowTable();
        Map<String, long[]> model = new HashMap<>();
        List<String> keys = new ArrayList<>();
        for (int i = 0; i < 600; i++) {
            keys.add(i % 5 == 0 ? "other-" + i + ":p" : new UUID(random.nextLong() & 0xFFL, i) + ":p");
        }
        keys.add("00000000-0000-0000-0000-000000000000:p");
        keys.add("");
        for (int step = 0; step < 40_000; step++) {
            String key = keys.get(random.nextInt(keys.size()));
            if (random.nextInt(3) > 0) {
                long[] value = {step};
                table.put(key, value);
                model.put(key, value);
            } else if (table.size() > 0) {
                int at = random.nextInt(table.size());
                model.remove(table.keyAt(at));
                table.removeAt(at);
            }
            if (step % 997 == 0) {
                assertEquals(model.size(), table.size());
                for (String k : keys) {
                    assertArrayEquals(model.get(k), table.get(k), "step " + step + ": " + k);
                }
                for (int at = 0; at < table.size(); at++) {
                    assertTrue(model.get(table.keyAt(at)) == table.valueAt(at), "the same array");
                }
            }
        }
    }

    /** A sweep step looks at no more than its share of keys, and a pass drops every dead one. */
    @Test
    void sweepStepsAreBoundedAndAPassDropsEveryDeadKey() {
        WindowShard shard = new WindowShard();
        int n = 5 * WindowShard.SWEEP_STEP + 7;
        for (int i = 0; i < n; i++) {
            shard.put(new UUID(1L, i) + ":p", new long[] {i % 2 == 0 ? 100L : 10_000L});
        }
        long examinedBefore = WindowShard.SWEEP_EXAMINED.sum();
        int dropped = shard.sweepStep(1_000L);
        assertEquals(WindowShard.SWEEP_STEP, WindowShard.SWEEP_EXAMINED.sum() - examinedBefore);
        assertTrue(dropped > 0 && dropped <= WindowShard.SWEEP_STEP);
        assertFalse(shard.sweepDue(1_000L), "the next step is due a millisecond later");
        assertTrue(shard.sweepDue(1_001L));
        int steps = 1;
        for (long now = 1_001L; shard.size() > n / 2; now++) {
            shard.sweepStep(now);
            steps++;
        }
        assertEquals(n / 2, shard.size(), "every even key (dead) dropped, every odd one kept");
        assertTrue(steps <= n / WindowShard.SWEEP_STEP + 1, steps + " steps");
        for (int i = 0; i < n; i++) {
            long[] stored = shard.live(new UUID(1L, i) + ":p", 1_000L);
            if (i % 2 == 0) {
                assertNull(stored);
            } else {
                assertArrayEquals(new long[] {10_000L}, stored);
            }
        }
        assertEquals(10_000L, shard.latestExpiryMs());
    }
}
