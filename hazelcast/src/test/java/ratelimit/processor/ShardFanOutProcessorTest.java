package ratelimit.processor;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static ratelimit.processor.ShardProcessorTest.FIXED;
import static ratelimit.processor.ShardProcessorTest.GCRA;
import static ratelimit.processor.ShardProcessorTest.GRACE_MS;
import static ratelimit.processor.ShardProcessorTest.SLIDING;
import static ratelimit.processor.ShardProcessorTest.wire;

import com.hazelcast.internal.nio.BufferObjectDataInput;
import com.hazelcast.internal.nio.BufferObjectDataOutput;
import com.hazelcast.internal.serialization.InternalSerializationService;
import com.hazelcast.internal.serialization.impl.DefaultSerializationServiceBuilder;
import com.hazelcast.map.EntryProcessor;
import java.io.IOException;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.CyclicBarrier;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import ratelimit.processor.ShardProcessor.Window;

/**
 * One call over several shard entries ({@link ShardFanOutProcessor}) against one
 * {@link ShardProcessor} call per shard: the same answers and stored states per entry, each
 * partition operation's backup carrying exactly its own entries' changes, also with two
 * partition threads sharing the instance, and a malformed call refused when read.
 */
class ShardFanOutProcessorTest {

    private static final long NOW = 1_764_384_000_000L;

    private static InternalSerializationService serialization() {
        return new DefaultSerializationServiceBuilder()
                .addDataSerializableFactory(ProcessorFactory.FACTORY_ID, new ProcessorFactory())
                .build();
    }

    /** Three shard entries, each with its own clients, costs and policies. */
    private static Map<String, Window[]> threeShards(int round) {
        Map<String, Window[]> shards = new LinkedHashMap<>();
        shards.put("shard-0-of-3", new Window[] {
            new Window("a:p", wire(FIXED), new long[] {1, 1, 1}),
            new Window("b:p", wire(SLIDING, GCRA), new long[] {2})});
        shards.put("shard-1-of-3", new Window[] {new Window("c:p", wire(GCRA), new long[] {1, 1 + round % 2})});
        shards.put("shard-2-of-3", new Window[] {new Window("d:p", wire(FIXED, SLIDING), new long[] {1})});
        return shards;
    }

    private static Object copy(InternalSerializationService ss, Object object) {
        return ss.toObject(ss.toData(object));
    }

    /**
     * Each entry answers and stores what one shard call on it would, and each partition
     * operation's backup (entries 0 and 1 in one partition, entry 2 in another) carries only
     * its own entries' changes, which bring the backup copies to the primaries.
     */
    @Test
    void severalShardEntriesInOneCallAnswerAndBackUpPerEntry() {
        InternalSerializationService ss = serialization();
        Map<String, InMemoryEntry> fanned = new LinkedHashMap<>();
        Map<String, InMemoryEntry> single = new LinkedHashMap<>();
        Map<String, InMemoryEntry> backups = new LinkedHashMap<>();
        for (String key : threeShards(0).keySet()) {
            fanned.put(key, new InMemoryEntry(key, null));
            single.put(key, new InMemoryEntry(key, null));
            backups.put(key, new InMemoryEntry(key, null));
        }
        List<List<String>> partitions = List.of(List.of("shard-0-of-3", "shard-1-of-3"), List.of("shard-2-of-3"));
        for (int round = 0; round < 6; round++) {
            long now = NOW + round * 400L;
            Map<String, Window[]> shards = threeShards(round);
            ShardFanOutProcessor call = (ShardFanOutProcessor) copy(ss, new ShardFanOutProcessor(now, GRACE_MS, shards));
            for (List<String> partition : partitions) {
                for (String key : partition) {
                    long[] expected = new ShardProcessor(now, GRACE_MS, shards.get(key)).process(single.get(key));
                    assertArrayEquals(expected, call.process(fanned.get(key)), "round " + round + ", " + key);
                    assertEquals(((WindowShard) single.get(key).getValue()).snapshot(),
                            ((WindowShard) fanned.get(key).getValue()).snapshot(), "round " + round + ", " + key);
                    assertEquals(single.get(key).ttlMs(), fanned.get(key).ttlMs(), "TTL of " + key);
                }
                EntryProcessor<Object, Object, long[]> backup = call.getBackupProcessor();
                assertTrue(backup == call.getBackupProcessor(), "asked twice, the same backup");
                if (round >= 3 && partition.contains("shard-0-of-3")) {
                    // a is over its limit by now, yet b and c still change: never an empty backup here.
                    assertInstanceOf(ShardFanOutBackupProcessor.class, backup);
                }
                if (backup == null) {
                    continue;
                }
                ShardFanOutBackupProcessor received = (ShardFanOutBackupProcessor) copy(ss, backup);
                assertTrue(Set.copyOf(partition).containsAll(received.keys()),
                        "round " + round + ": a backup carries its own partition's entries only");
                // Hazelcast runs the backup on every key of the call in its partition; the others
                // it never sees, and an entry it holds no change for stays as it is.
                for (InMemoryEntry entry : backups.values()) {
                    int writes = entry.writes();
                    received.process(entry);
                    if (!received.keys().contains((String) entry.getKey())) {
                        assertEquals(writes, entry.writes(), "an entry without a change is not written");
                    }
                }
            }
            for (String key : shards.keySet()) {
                assertEquals(((WindowShard) fanned.get(key).getValue()).snapshot(),
                        ((WindowShard) backups.get(key).getValue()).snapshot(), "round " + round + ": backup of " + key);
                assertEquals(fanned.get(key).ttlMs(), backups.get(key).ttlMs(), "round " + round + ": TTL of " + key);
            }
        }
    }

    /** A partition operation that changed nothing (every request denied, no sweep due) has no backup. */
    @Test
    void anOperationThatChangedNothingHasNoBackup() {
        Map<String, Window[]> shards = Map.of("shard-0-of-1",
                new Window[] {new Window("a:p", wire(FIXED), new long[] {1, 1})});
        InMemoryEntry entry = new InMemoryEntry("shard-0-of-1", null);
        new ShardFanOutProcessor(NOW, GRACE_MS, shards).process(entry);
        ShardFanOutProcessor denied = new ShardFanOutProcessor(NOW + 1, GRACE_MS,
                Map.of("shard-0-of-1", new Window[] {new Window("a:p", wire(FIXED), new long[] {1})}));
        long[] answer = denied.process(entry);
        assertEquals(0L, answer[0], "over the limit of 2");
        assertNull(denied.getBackupProcessor());
    }

    /**
     * Two partition threads share one instance, as on a member, each running operations on its
     * own entries at once: every answer is the single-shard call's, and every backup holds its
     * thread's entries only.
     */
    @Test
    void partitionThreadsSharingTheInstanceKeepTheirBackupsApart() throws Exception {
        int rounds = 200;
        Map<String, Window[]> shards = new LinkedHashMap<>();
        for (int s = 0; s < 4; s++) {
            shards.put("shard-" + s + "-of-4", new Window[] {new Window("k" + s + ":p", wire(GCRA), new long[] {1})});
        }
        List<List<String>> threads = List.of(List.of("shard-0-of-4", "shard-1-of-4"),
                List.of("shard-2-of-4", "shard-3-of-4"));
        CyclicBarrier together = new CyclicBarrier(threads.size());
        ExecutorService pool = Executors.newFixedThreadPool(threads.size());
        try {
            for (int round = 0; round < rounds; round++) {
                long now = NOW + round * 1_000L;
                ShardFanOutProcessor call = new ShardFanOutProcessor(now, GRACE_MS, shards);
                List<Future<?>> done = new ArrayList<>();
                for (List<String> keys : threads) {
                    done.add(pool.submit(() -> {
                        for (String key : keys) {
                            together.await(5, TimeUnit.SECONDS);
                            long[] answer = call.process(new InMemoryEntry(key, null));
                            assertEquals(1L, answer[0], key + " admitted on a fresh entry");
                        }
                        ShardFanOutBackupProcessor backup = (ShardFanOutBackupProcessor) call.getBackupProcessor();
                        assertEquals(Set.copyOf(keys), backup.keys(), "this thread's entries, no other's");
                        return null;
                    }));
                }
                for (Future<?> future : done) {
                    future.get(10, TimeUnit.SECONDS);
                }
            }
        } finally {
            pool.shutdownNow();
        }
    }

    /** The wire format is the documented order, and a copy decides as the original. */
    @Test
    void wireFormatIsTheDocumentedOrder() throws IOException {
        InternalSerializationService ss = serialization();
        Map<String, Window[]> shards = threeShards(0);
        ShardFanOutProcessor processor = new ShardFanOutProcessor(-1L, GRACE_MS, shards);
        BufferObjectDataOutput out = ss.createObjectDataOutput();
        processor.writeData(out);
        byte[] bytes = out.toByteArray();
        BufferObjectDataInput in = ss.createObjectDataInput(bytes);
        assertEquals(-1L, in.readLong(), "nowMs");
        assertEquals(GRACE_MS, in.readLong(), "expiryGraceMs");
        assertEquals(RecentCalls.NO_CALLER, in.readLong(), "caller");
        assertEquals(0L, in.readLong(), "callSeq");
        assertEquals(3, in.readInt(), "shard entries");
        for (Map.Entry<String, Window[]> shard : shards.entrySet()) {
            assertEquals(shard.getKey(), in.readString(), "shard key");
            BufferObjectDataOutput windows = ss.createObjectDataOutput();
            ShardProcessor.writeWindows(windows, shard.getValue());
            byte[] expected = windows.toByteArray();
            byte[] read = new byte[expected.length];
            in.readFully(read);
            assertArrayEquals(expected, read, "its windows as ShardProcessor sends them");
        }
        assertEquals(bytes.length, in.position(), "trailing bytes");
    }

    /** A call with one bad window anywhere is refused whole when read, before any entry is touched. */
    @Test
    void aMalformedCallIsRefusedWhenRead() throws IOException {
        InternalSerializationService ss = serialization();
        Map<String, Window[]> shards = threeShards(0);
        shards.put("shard-2-of-3", new Window[] {new Window("d:p", wire(FIXED), new long[] {0})});
        BufferObjectDataOutput out = ss.createObjectDataOutput();
        new ShardFanOutProcessor(NOW, GRACE_MS, shards).writeData(out);
        ShardFanOutProcessor read = new ShardFanOutProcessor();
        BufferObjectDataInput in = ss.createObjectDataInput(out.toByteArray());
        IllegalArgumentException refused = assertThrows(IllegalArgumentException.class, () -> read.readData(in));
        assertTrue(refused.getMessage().contains("shard-2-of-3"), refused.getMessage());
        InMemoryEntry untouched = new InMemoryEntry("shard-0-of-3", null);
        assertThrows(IllegalArgumentException.class,
                () -> new ShardFanOutProcessor(NOW, GRACE_MS, shards).process(untouched));
        assertEquals(0, untouched.writes(), "refused before the first entry");
        for (int count : new int[] {0, -1, ShardFanOutProcessor.MAX_SHARDS + 1}) {
            BufferObjectDataOutput framed = ss.createObjectDataOutput();
            framed.writeLong(NOW);
            framed.writeLong(GRACE_MS);
            framed.writeLong(1L);
            framed.writeLong(1L);
            framed.writeInt(count);
            BufferObjectDataInput framedIn = ss.createObjectDataInput(framed.toByteArray());
            assertThrows(IllegalArgumentException.class, () -> new ShardFanOutProcessor().readData(framedIn));
        }
    }
}
