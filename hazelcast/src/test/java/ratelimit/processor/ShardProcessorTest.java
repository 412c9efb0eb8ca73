package ratelimit.processor;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.hazelcast.internal.nio.BufferObjectDataInput;
import com.hazelcast.internal.nio.BufferObjectDataOutput;
import com.hazelcast.internal.serialization.InternalSerializationService;
import com.hazelcast.internal.serialization.impl.DefaultSerializationServiceBuilder;
import com.hazelcast.map.EntryProcessor;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.api.Test;

/**
 * The shard processor against the rule alone and the shared vectors, its result layout and
 * wire format, its backup against its primary, and the sweep of expired windows.
 */
class ShardProcessorTest {

    private static final long GRACE_MS = 5_000L;

    private static InternalSerializationService serialization() {
        return new DefaultSerializationServiceBuilder()
                .addDataSerializableFactory(ProcessorFactory.FACTORY_ID, new ProcessorFactory())
                .build();
    }

    private static long[] longs(String field) {
        return Arrays.stream(field.trim().split(" +")).mapToLong(Long::parseLong).toArray();
    }

    private static ShardProcessor oneWindow(long now, String key, long limit, long window, int alignment, long[] costs) {
        return new ShardProcessor(now, GRACE_MS, new String[] {key}, new long[] {limit}, new long[] {window},
                new int[] {alignment}, new long[][] {costs});
    }

    @Test
    void sharedBatchVectorsGiveTheSameAnswersInAShard() throws IOException {
        Path file = Path.of(System.getProperty("batch.vectors.file", "../tests/vectors/fixed_window_batch.csv"));
        List<String[]> rows = Files.readAllLines(file).stream().skip(1).filter(l -> !l.isBlank())
                .map(l -> l.split(",", -1)).toList();
        assertFalse(rows.isEmpty(), "no batch vectors read");
        for (String[] r : rows) {
            long now = Long.parseLong(r[4]);
            int alignment = r[14].equals("clock") ? FixedWindowRule.CLOCK : FixedWindowRule.FIRST_REQUEST;
            WindowShard shard = new WindowShard();
            // Another client's window in the same shard must not change anything.
            shard.put("other:60", 0L, 2L, Long.MAX_VALUE);
            if (r[1].equals("1")) {
                shard.put("c:60", Long.parseLong(r[2]), Long.parseLong(r[3]), Long.MAX_VALUE);
            }
            long[] costs = longs(r[7]);
            long[] result = oneWindow(now, "c:60", Long.parseLong(r[5]), Long.parseLong(r[6]), alignment, costs)
                    .process(new InMemoryEntry("shard:0", shard));
            assertEquals(ShardProcessor.RESULT_HEADER + ShardProcessor.RESULT_STRIDE * costs.length,
                    result.length, r[0]);
            assertEquals(Long.parseLong(r[5]), result[0], r[0] + ": limit");
            assertEquals(Long.parseLong(r[11]), result[1], r[0] + ": resetAfterMs");
            long[] allowed = longs(r[8]);
            long[] remaining = longs(r[9]);
            long[] reasons = longs(r[10]);
            for (int i = 0; i < costs.length; i++) {
                int at = ShardProcessor.RESULT_HEADER + ShardProcessor.RESULT_STRIDE * i;
                assertEquals(allowed[i], result[at], r[0] + ": allowed[" + i + "]");
                assertEquals(remaining[i], result[at + 1], r[0] + ": remaining[" + i + "]");
                assertEquals(reasons[i], result[at + 2], r[0] + ": reason[" + i + "]");
            }
            boolean anyAllowed = Arrays.stream(allowed).anyMatch(a -> a == 1L);
            if (anyAllowed) {
                long[] stored = shard.live("c:60", now);
                assertNotNull(stored, r[0] + ": stored");
                assertEquals(Long.parseLong(r[12]), stored[0], r[0] + ": new window start");
                assertEquals(Long.parseLong(r[13]), stored[1], r[0] + ": new count");
                assertEquals(now + Long.parseLong(r[11]) + GRACE_MS, stored[2], r[0] + ": expiry");
            }
            assertEquals(List.of(0L, 2L, Long.MAX_VALUE), shard.snapshot().get("other:60"), r[0] + ": other window");
        }
    }

    /** A call of many windows answers, window by window, what the rule decides for each alone. */
    @Test
    void manyWindowsInOneCallAnswerAsEachWindowDecidedAlone() {
        Random random = new Random(7);
        long now = 1_000_000L;
        WindowShard shard = new WindowShard();
        InMemoryEntry shardEntry = new InMemoryEntry("shard:0", shard);
        // Per key, the window a call of its own would have left: {windowStartMs, count}.
        long[][] alone = new long[6][];
        for (int round = 0; round < 40; round++) {
            now += random.nextInt(20_000);
            int n = 1 + random.nextInt(alone.length);
            String[] keys = new String[n];
            long[] limits = new long[n];
            long[] windows = new long[n];
            int[] alignments = new int[n];
            long[][] costs = new long[n][];
            long[] expected = new long[0];
            for (int i = 0; i < n; i++) {
                int k = (round + i) % alone.length;
                keys[i] = "c" + k + ":60";
                limits[i] = 1 + k;
                windows[i] = 60;
                alignments[i] = k % 2 == 0 ? FixedWindowRule.CLOCK : FixedWindowRule.FIRST_REQUEST;
                costs[i] = random.longs(1 + random.nextInt(4), 1, 3).toArray();
                long[] state = alone[k];
                FixedWindowRule.BatchOutcome outcome = FixedWindowRule.decideBatch(
                        state != null, state != null ? state[0] : 0L, state != null ? state[1] : 0L,
                        now, costs[i], limits[i], 60, alignments[i]);
                if (outcome.anyAllowed()) {
                    alone[k] = new long[] {outcome.windowStartMs(), outcome.count()};
                }
                long[] single = ShardProcessor.toResult(outcome);
                long[] joined = Arrays.copyOf(expected, expected.length + single.length);
                System.arraycopy(single, 0, joined, expected.length, single.length);
                expected = joined;
            }
            long[] result = new ShardProcessor(now, GRACE_MS, keys, limits, windows, alignments, costs)
                    .process(shardEntry);
            assertArrayEquals(expected, result, "round " + round);
        }
    }

    /** A window's answer is limit, resetAfterMs, then allowed, remaining, reason per request. */
    @Test
    void resultLayoutFromABatchOutcome() {
        FixedWindowRule.BatchOutcome outcome = new FixedWindowRule.BatchOutcome(
                0, 2, 7, 1234, new boolean[] {true, false}, new long[] {5, 5}, new int[] {0, 2});
        assertArrayEquals(new long[] {7, 1234, 1, 5, 0, 0, 5, 2}, ShardProcessor.toResult(outcome));
    }

    /** With MEMBER_CLOCK sent, the member's own clock picks the window. */
    @Test
    void theMemberClockPicksTheWindowWhenNoTimeIsSent() {
        long before = System.currentTimeMillis();
        WindowShard shard = new WindowShard();
        long[] result = oneWindow(ShardProcessor.MEMBER_CLOCK, "c:60", 5, 60, FixedWindowRule.CLOCK, new long[] {2})
                .process(new InMemoryEntry("shard:0", shard));
        long after = System.currentTimeMillis();

        assertEquals(5, result.length);
        assertEquals(5, result[0]);
        assertTrue(result[1] >= 1 && result[1] <= 60_000, "resetAfterMs within the window");
        assertArrayEquals(new long[] {1, 3, 0}, Arrays.copyOfRange(result, 2, 5));
        long[] stored = shard.live("c:60", after);
        assertNotNull(stored, "stored");
        assertTrue(stored[0] == FixedWindowRule.windowStart(before, 60)
                || stored[0] == FixedWindowRule.windowStart(after, 60), "window of the member clock");
        assertEquals(2, stored[1]);
    }

    @Test
    void theBackupEndsWithThePrimarysWindows() {
        InternalSerializationService ss = serialization();
        Random random = new Random(11);
        InMemoryEntry primary = new InMemoryEntry("shard:0", null);
        InMemoryEntry backup = new InMemoryEntry("shard:0", null);
        long now = 5_000_000L;
        for (int round = 0; round < 200; round++) {
            now += random.nextInt(3_000);
            int n = 1 + random.nextInt(4);
            String[] keys = new String[n];
            long[] limits = new long[n];
            long[] windows = new long[n];
            int[] alignments = new int[n];
            long[][] costs = new long[n][];
            for (int i = 0; i < n; i++) {
                // Distinct keys in one call, as a replica sends them (one flight per key).
                keys[i] = "c" + ((round * 3 + i) % 17) + ":" + (1 + i);
                limits[i] = 1 + random.nextInt(5);
                windows[i] = 1 + i;
                alignments[i] = random.nextBoolean() ? FixedWindowRule.CLOCK : FixedWindowRule.FIRST_REQUEST;
                costs[i] = random.longs(1 + random.nextInt(3), 1, 3).toArray();
            }
            ShardProcessor processor = new ShardProcessor(now, GRACE_MS, keys, limits, windows, alignments, costs);
            processor.process(primary);
            EntryProcessor<Object, Object, long[]> sent = processor.getBackupProcessor();
            if (sent != null) {
                Object received = ss.toObject(ss.toData(sent));
                ((ShardBackupProcessor) received).process(backup);
                assertEquals(primary.ttlMs(), backup.ttlMs(), "round " + round + ": TTL");
            }
            WindowShard primaryShard = (WindowShard) primary.getValue();
            WindowShard backupShard = (WindowShard) backup.getValue();
            assertEquals(primaryShard.snapshot(), backupShard == null ? null : backupShard.snapshot(), "round " + round);
        }
        assertTrue(((WindowShard) primary.getValue()).size() < 17 * 4, "expired windows were swept");
    }

    @Test
    void expiredWindowsAreIgnoredAtOnceAndSweptOnBothCopies() {
        WindowShard shard = new WindowShard();
        shard.put("old:60", 0L, 3L, 1_000L);
        shard.put("young:60", 0L, 1L, 90_000L);
        InMemoryEntry primary = new InMemoryEntry("shard:0", shard);
        WindowShard backupShard = new WindowShard();
        backupShard.put("old:60", 0L, 3L, 1_000L);
        backupShard.put("young:60", 0L, 1L, 90_000L);
        InMemoryEntry backup = new InMemoryEntry("shard:0", backupShard);

        assertNull(shard.live("old:60", 1_000L), "dead at its expiry");
        ShardProcessor processor = oneWindow(2_000L, "old:60", 3, 60, FixedWindowRule.CLOCK, new long[] {1});
        long[] result = processor.process(primary);
        assertEquals(2L, result[ShardProcessor.RESULT_HEADER + 1], "a fresh window, not the expired count");
        ((ShardBackupProcessor) processor.getBackupProcessor()).process(backup);
        assertEquals(shard.snapshot(), backupShard.snapshot());
        assertEquals(List.of(0L, 1L, 90_000L), shard.snapshot().get("young:60"));
        assertEquals(90_000L - 2_000L, primary.ttlMs(), "the entry lives until its last window expires");

        // A later call within the sweep interval does not sweep; one after it does.
        ShardProcessor soon = oneWindow(2_500L, "young:60", 1, 60, FixedWindowRule.CLOCK, new long[] {1});
        soon.process(primary);
        assertNull(soon.getBackupProcessor(), "nothing admitted and no sweep: no backup");
        ShardProcessor later = oneWindow(95_000L, "new:60", 5, 60, FixedWindowRule.CLOCK, new long[] {1});
        later.process(primary);
        ((ShardBackupProcessor) later.getBackupProcessor()).process(backup);
        assertNull(shard.snapshot().get("young:60"), "swept on the primary");
        assertEquals(shard.snapshot(), backupShard.snapshot(), "and on the backup");
    }

    @Test
    void aDeniedOnlyCallWritesNothing() {
        WindowShard shard = new WindowShard();
        shard.put("c:60", 0L, 3L, 90_000L);
        InMemoryEntry entry = new InMemoryEntry("shard:0", shard);
        oneWindow(1_000L, "c:60", 3, 60, FixedWindowRule.CLOCK, new long[] {1}).process(entry);
        int afterSweep = entry.writes();
        ShardProcessor denied = oneWindow(1_500L, "c:60", 3, 60, FixedWindowRule.CLOCK, new long[] {1, 2});
        long[] result = denied.process(entry);
        assertEquals(0L, result[ShardProcessor.RESULT_HEADER], "denied");
        assertEquals(afterSweep, entry.writes(), "no write");
        assertNull(denied.getBackupProcessor(), "no backup");
    }

    @Test
    void aMalformedCallChangesNothing() {
        WindowShard shard = new WindowShard();
        InMemoryEntry entry = new InMemoryEntry("shard:0", shard);
        ShardProcessor processor = new ShardProcessor(1_000L, GRACE_MS, new String[] {"a:60", "b:60"},
                new long[] {3, 3}, new long[] {60, 60}, new int[] {0, 0}, new long[][] {{1}, {1, 0}});
        assertThrows(IllegalArgumentException.class, () -> processor.process(entry));
        assertEquals(0, shard.size(), "the valid first window was not stored either");
        assertEquals(0, entry.writes());
    }

    @Test
    void wireFormatIsTheDocumentedOrderAndRoundTrips() throws IOException {
        InternalSerializationService ss = serialization();
        ShardProcessor processor = new ShardProcessor(-1L, GRACE_MS, new String[] {"a:60", "b:1"},
                new long[] {3, 7}, new long[] {60, 1}, new int[] {1, 0}, new long[][] {{1, 2}, {4}});
        BufferObjectDataOutput out = ss.createObjectDataOutput();
        processor.writeData(out);
        byte[] bytes = out.toByteArray();
        BufferObjectDataInput in = ss.createObjectDataInput(bytes);
        assertEquals(-1L, in.readLong(), "nowMs");
        assertEquals(GRACE_MS, in.readLong(), "expiryGraceMs");
        assertEquals(2, in.readInt(), "windows");
        assertEquals("a:60", in.readString());
        assertEquals(3L, in.readLong());
        assertEquals(60L, in.readLong());
        assertEquals(1, in.readInt());
        assertArrayEquals(new long[] {1, 2}, in.readLongArray());
        assertEquals("b:1", in.readString());
        assertEquals(7L, in.readLong());
        assertEquals(1L, in.readLong());
        assertEquals(0, in.readInt());
        assertArrayEquals(new long[] {4}, in.readLongArray());
        assertEquals(bytes.length, in.position(), "trailing bytes");

        WindowShard shard = new WindowShard();
        shard.put("a:60", 1L, 2L, 3L);
        shard.put("b:1", 4L, 5L, 6L);
        Object copy = ss.toObject(ss.toData(shard));
        assertInstanceOf(WindowShard.class, copy);
        assertEquals(shard.snapshot(), ((WindowShard) copy).snapshot());
        assertInstanceOf(ShardProcessor.class, ss.toObject(ss.toData(processor)));
    }

    @Test
    void theReaderAnswersOneLiveWindowOrNothingWithTheOwnersClock() {
        WindowShard shard = new WindowShard();
        long now = System.currentTimeMillis();
        shard.put("live:60", 10L, 2L, now + 60_000L);
        shard.put("dead:60", 10L, 2L, now - 1L);
        InMemoryEntry entry = new InMemoryEntry("shard:0", shard);
        long[] live = new ShardWindowReader("live:60").process(entry);
        assertEquals(3, live.length);
        assertArrayEquals(new long[] {10L, 2L}, new long[] {live[0], live[1]});
        long[] dead = new ShardWindowReader("dead:60").process(entry);
        long[] none = new ShardWindowReader("none:60").process(new InMemoryEntry("shard:1", null));
        assertEquals(1, dead.length);
        assertEquals(1, none.length);
        long after = System.currentTimeMillis();
        for (long read : new long[] {live[2], dead[0], none[0]}) {
            assertTrue(now <= read && read <= after, "the owner's clock at the read");
        }
        assertEquals(0, entry.writes(), "a read");
    }
}
