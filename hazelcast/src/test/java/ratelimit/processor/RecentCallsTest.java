package ratelimit.processor;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertSame;
import static ratelimit.processor.ShardProcessorTest.FIXED;
import static ratelimit.processor.ShardProcessorTest.GRACE_MS;
import static ratelimit.processor.ShardProcessorTest.wire;

import com.hazelcast.internal.serialization.InternalSerializationService;
import com.hazelcast.internal.serialization.impl.DefaultSerializationServiceBuilder;
import java.util.Map;
import org.junit.jupiter.api.Test;
import ratelimit.processor.ShardProcessor.Window;

/**
 * A call sent again (its owner died before answering) is recognised by its id wherever the
 * shard entry is then: on the primary, on the backup copy the primary's backup built, and on a
 * serialised (migrated) copy; answered as the first time, with nothing counted twice.
 */
class RecentCallsTest {

    private static final long NOW = 1_764_384_000_000L;
    private static final long WORKER = 0x5eedL;
    /** Two requests a second (FIXED): the third of a window is denied. */
    private static final PolicyRule.Limit[] POLICY = {FIXED};

    private static ShardProcessor call(long seq, long... costs) {
        return new ShardProcessor(NOW, GRACE_MS, WORKER, seq, new Window[] {new Window("c:p", wire(POLICY), costs)});
    }

    private static long count(WindowShard shard) {
        return shard.live("c:p", NOW)[3];
    }

    /** The same call twice on one copy: the second answer is the first, and the count moves once. */
    @Test
    void aCallSentAgainIsAnsweredAsBeforeAndCountsOnce() {
        InMemoryEntry entry = new InMemoryEntry("shard-0-of-1", null);
        long[] first = call(1, 1).process(entry);
        WindowShard shard = (WindowShard) entry.getValue();
        assertEquals(1L, count(shard));
        int writes = entry.writes();
        long[] again = call(1, 1).process(entry);
        assertArrayEquals(first, again);
        assertEquals(1L, count(shard), "counted once");
        assertEquals(writes, entry.writes(), "nothing written for the repeat");
        call(2, 1).process(entry);
        assertEquals(2L, count(shard), "the worker's next call counts");
    }

    /** The backup copy holds the call: sent to it after a promotion, it is recognised there. */
    @Test
    void theBackupCopyRecognisesTheCall() {
        InMemoryEntry primary = new InMemoryEntry("shard-0-of-1", null);
        InMemoryEntry backupCopy = new InMemoryEntry("shard-0-of-1", null);
        ShardProcessor sent = call(7, 1, 1);
        long[] first = sent.process(primary);
        assertNotNull(sent.getBackupProcessor());
        sent.getBackupProcessor().process(backupCopy);
        long[] again = call(7, 1, 1).process(backupCopy);
        assertArrayEquals(first, again);
        assertEquals(2L, count((WindowShard) backupCopy.getValue()), "not 4");
    }

    /** A serialised copy of the shard (migration, replication) keeps the recent calls. */
    @Test
    void aSerialisedCopyKeepsTheRecentCalls() {
        InternalSerializationService ss = new DefaultSerializationServiceBuilder()
                .addDataSerializableFactory(ProcessorFactory.FACTORY_ID, new ProcessorFactory()).build();
        InMemoryEntry entry = new InMemoryEntry("shard-0-of-1", null);
        long[] first = call(3, 2).process(entry);
        WindowShard copy = (WindowShard) ss.toObject(ss.toData(entry.getValue()));
        assertEquals(1, copy.recentCallCount());
        InMemoryEntry moved = new InMemoryEntry("shard-0-of-1", copy);
        assertArrayEquals(first, call(3, 2).process(moved));
        assertEquals(2L, count(copy));
    }

    /** A call that changed nothing (all denied) is not recorded; deciding it again is harmless. */
    @Test
    void aCallThatChangedNothingIsNotRecorded() {
        InMemoryEntry entry = new InMemoryEntry("shard-0-of-1", null);
        call(1, 1, 1).process(entry);
        WindowShard shard = (WindowShard) entry.getValue();
        assertEquals(1, shard.recentCallCount());
        call(2, 1).process(entry);
        assertNull(shard.answerOf(WORKER, 2), "denied: nothing recorded");
        assertNotNull(shard.answerOf(WORKER, 1), "the worker's last changing call stays");
    }

    /** A worker keeps one record, old workers' records go after a minute, and calls without id never. */
    @Test
    void recordsAreBounded() {
        RecentCalls calls = new RecentCalls();
        long[] answer = {1L, 0L, 0L, -1L, 0L};
        calls.remember(1L, 1L, 0L, answer);
        calls.remember(1L, 2L, 10L, answer);
        assertEquals(1, calls.size());
        assertNull(calls.answerOf(1L, 1L));
        assertSame(answer, calls.answerOf(1L, 2L));
        calls.remember(2L, 1L, 20L, answer);
        calls.remember(3L, 1L, 20L + RecentCalls.KEEP_MS + 1, answer);
        assertEquals(1, calls.size(), "workers 1 and 2 expired");
        calls.remember(RecentCalls.NO_CALLER, 1L, 0L, answer);
        assertNull(calls.answerOf(RecentCalls.NO_CALLER, 1L));
        assertEquals(1, calls.size());
        assertEquals(3 * 8 + 16 + 5 * 8, calls.bytes());
        for (long worker = 10; worker < 10 + RecentCalls.MAX_CALLS + 5; worker++) {
            calls.remember(worker, 1L, NOW + worker, answer);
        }
        assertEquals(RecentCalls.MAX_CALLS, calls.size());
    }

    /** A refund sent again is answered as applied and gives back nothing more. */
    @Test
    void aRefundSentAgainGivesBackOnce() {
        InMemoryEntry entry = new InMemoryEntry("shard-0-of-1", null);
        call(1, 1, 1).process(entry);
        WindowShard shard = (WindowShard) entry.getValue();
        ShardRefundProcessor refund = new ShardRefundProcessor(NOW, 0L, WORKER, 2L, "c:p", wire(POLICY), 1L,
                new int[] {0});
        assertArrayEquals(new long[] {1L}, refund.process(entry));
        assertEquals(1L, count(shard));
        ShardRefundProcessor again = new ShardRefundProcessor(NOW, 0L, WORKER, 2L, "c:p", wire(POLICY), 1L,
                new int[] {0});
        assertArrayEquals(new long[] {1L}, again.process(entry));
        assertEquals(1L, count(shard), "given back once");
    }

    /** A fan-out call sent again is recognised by each shard entry it changed. */
    @Test
    void aFanOutCallSentAgainCountsOnce() {
        InMemoryEntry one = new InMemoryEntry("shard-0-of-2", null);
        InMemoryEntry two = new InMemoryEntry("shard-1-of-2", null);
        Map<String, Window[]> shards = Map.of(
                "shard-0-of-2", new Window[] {new Window("c:p", wire(POLICY), new long[] {1})},
                "shard-1-of-2", new Window[] {new Window("c:p", wire(POLICY), new long[] {1})});
        ShardFanOutProcessor first = new ShardFanOutProcessor(NOW, GRACE_MS, WORKER, 9L, shards);
        long[] a = first.process(one);
        long[] b = first.process(two);
        ShardFanOutProcessor again = new ShardFanOutProcessor(NOW, GRACE_MS, WORKER, 9L, shards);
        assertArrayEquals(a, again.process(one));
        assertArrayEquals(b, again.process(two));
        assertEquals(1L, count((WindowShard) one.getValue()));
        assertEquals(1L, count((WindowShard) two.getValue()));
    }
}
