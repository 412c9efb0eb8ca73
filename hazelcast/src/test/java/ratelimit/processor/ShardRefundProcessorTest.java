package ratelimit.processor;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;

import com.hazelcast.internal.serialization.InternalSerializationService;
import com.hazelcast.internal.serialization.impl.DefaultSerializationServiceBuilder;
import com.hazelcast.internal.nio.BufferObjectDataOutput;
import java.io.IOException;
import java.util.Arrays;
import org.junit.jupiter.api.Test;

/**
 * The refund processor against {@link PolicyRule#refund}: only the counted limits' numbers
 * change, the expiry and the other stored numbers are kept, the backup carries the new array,
 * nothing is written when there is nothing to give back, and its wire format round-trips.
 */
class ShardRefundProcessorTest {

    static final PolicyRule.Limit[] POLICY = {ShardProcessorTest.FIXED, ShardProcessorTest.SLIDING,
        ShardProcessorTest.GCRA};
    static final long NOW = 1_764_384_000_250L;

    static ShardRefundProcessor refund(long now, long elapsedMs, long cost, int... counted) {
        return new ShardRefundProcessor(now, elapsedMs, "c:p", ShardProcessorTest.wire(POLICY), cost, counted);
    }

    /** Two admissions, then one given back by every limit: the stored states are the rule's, the expiry kept. */
    @Test
    void aRefundStoresTheRulesStatesAndKeepsTheExpiry() {
        WindowShard shard = new WindowShard();
        InMemoryEntry entry = new InMemoryEntry("shard:0", shard);
        ShardProcessorTest.call(NOW, "c:p", POLICY, 1, 1).process(entry);
        long[] before = shard.live("c:p", NOW + 10);
        Object[] states = WindowShard.statesOf(ShardProcessorTest.wire(POLICY), before);

        ShardRefundProcessor processor = refund(NOW + 10, 10, 1, 0, 1, 2);
        assertArrayEquals(new long[] {1L}, processor.process(entry), "changed");

        Object[] expected = PolicyRule.refund(POLICY, states, NOW + 10, 1, new int[] {0, 1, 2}, NOW);
        long[] after = shard.live("c:p", NOW + 10);
        assertArrayEquals(ShardProcessorTest.stored(POLICY, expected, before[WindowShard.EXPIRES_AT]), after);
        assertEquals(1L, ((PolicyRule.FixedState) expected[0]).count(), "fixed: two counted, one given back");

        WindowShard copy = new WindowShard();
        InMemoryEntry backupEntry = new InMemoryEntry("shard:0", copy);
        processor.getBackupProcessor().process(backupEntry);
        assertArrayEquals(after, copy.live("c:p", NOW + 10), "the backup stores the same array");
        assertEquals(entry.ttlMs(), backupEntry.ttlMs(), "and the same TTL");
    }

    /** Only the counted limits change; a slot no limit of the policy claims is kept as stored. */
    @Test
    void onlyTheCountedLimitsChange() {
        WindowShard shard = new WindowShard();
        InMemoryEntry entry = new InMemoryEntry("shard:0", shard);
        ShardProcessorTest.call(NOW, "c:p", POLICY, 1).process(entry);
        long[] decided = shard.live("c:p", NOW);
        long[] withStranger = Arrays.copyOf(decided, decided.length + 4);
        withStranger[decided.length] = 12345L;
        withStranger[decided.length + 1] = 7L;
        shard.put("c:p", withStranger);

        assertArrayEquals(new long[] {1L}, refund(NOW, 0, 1, 1).process(entry));
        long[] after = shard.live("c:p", NOW);
        for (int i = 0; i < after.length; i++) {
            boolean slidingCount = i == 1 + 4 + 2; // the second limit's count
            assertEquals(slidingCount ? withStranger[i] - 1 : withStranger[i], after[i], "long " + i);
        }
    }

    /** A key not stored, or a refund the rule turns down, writes nothing and sends no backup. */
    @Test
    void nothingToGiveBackWritesNothing() {
        WindowShard shard = new WindowShard();
        InMemoryEntry entry = new InMemoryEntry("shard:0", shard);
        assertArrayEquals(new long[] {0L}, refund(NOW, 0, 1, 0).process(entry), "no key");
        ShardProcessorTest.call(NOW, "c:p", POLICY, 1).process(entry);
        int writes = entry.writes();
        long[] stored = shard.live("c:p", NOW);
        // Sent before the fixed and sliding windows started: neither counted it.
        ShardRefundProcessor early = refund(NOW, 60_000, 1, 0, 1);
        assertArrayEquals(new long[] {0L}, early.process(entry), "windows that did not count it");
        assertSame(stored, shard.live("c:p", NOW));
        assertEquals(writes, entry.writes());
        assertNull(early.getBackupProcessor());
    }

    /** A limit index outside the policy and a negative elapsed time are refused before the shard is touched. */
    @Test
    void malformedRefundsAreRefused() {
        InMemoryEntry entry = new InMemoryEntry("shard:0", new WindowShard());
        assertThrows(IllegalArgumentException.class, () -> refund(NOW, 0, 1, 3).process(entry));
        assertThrows(IllegalArgumentException.class, () -> refund(NOW, -1, 1, 0).process(entry));
        assertEquals(0, entry.writes());
    }

    /** The wire format is the documented order and reads back as written. */
    @Test
    void wireFormatRoundTrips() throws IOException {
        InternalSerializationService ss = new DefaultSerializationServiceBuilder()
                .addDataSerializableFactory(ProcessorFactory.FACTORY_ID, new ProcessorFactory()).build();
        ShardRefundProcessor processor = refund(-1L, 42L, 3, 0, 2);
        BufferObjectDataOutput out = ss.createObjectDataOutput();
        processor.writeData(out);
        var in = ss.createObjectDataInput(out.toByteArray());
        assertEquals(-1L, in.readLong(), "nowMs");
        assertEquals(42L, in.readLong(), "elapsedMs");
        assertEquals(RecentCalls.NO_CALLER, in.readLong(), "caller");
        assertEquals(0L, in.readLong(), "callSeq");
        assertEquals("c:p", in.readString(), "key");
        assertEquals(3, in.readInt(), "limits");
        ShardRefundProcessor read = new ShardRefundProcessor();
        read.readData(ss.createObjectDataInput(out.toByteArray()));
        BufferObjectDataOutput again = ss.createObjectDataOutput();
        read.writeData(again);
        assertArrayEquals(out.toByteArray(), again.toByteArray(), "read back as written");
    }
}
