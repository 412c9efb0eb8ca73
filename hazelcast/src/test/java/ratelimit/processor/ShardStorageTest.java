package ratelimit.processor;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static ratelimit.processor.ShardProcessorTest.GRACE_MS;
import static ratelimit.processor.ShardProcessorTest.answer;
import static ratelimit.processor.ShardProcessorTest.call;
import static ratelimit.processor.ShardProcessorTest.expiry;
import static ratelimit.processor.ShardProcessorTest.slot;
import static ratelimit.processor.ShardProcessorTest.stored;

import com.hazelcast.internal.nio.BufferObjectDataInput;
import com.hazelcast.internal.nio.BufferObjectDataOutput;
import com.hazelcast.internal.serialization.InternalSerializationService;
import com.hazelcast.internal.serialization.impl.DefaultSerializationServiceBuilder;
import com.hazelcast.map.EntryProcessor;
import java.io.IOException;
import java.util.Arrays;
import java.util.ArrayList;
import java.util.Collections;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import org.junit.jupiter.api.Test;
import ratelimit.processor.ShardProcessor.WireLimit;
import ratelimit.processor.ShardProcessor.Window;

/**
 * What the shard keeps and sends: the processor's wire format, the stored arrays across many
 * calls against the rule alone, the backup against its primary, expiry and the sweep, and
 * the reader's answer.
 */
class ShardStorageTest {

    private static InternalSerializationService serialization() {
        return new DefaultSerializationServiceBuilder()
                .addDataSerializableFactory(ProcessorFactory.FACTORY_ID, new ProcessorFactory())
                .build();
    }

    private static final PolicyRule.Limit FIRST = new PolicyRule.Limit("first", PolicyRule.FIXED_WINDOW, 3, 60,
            FixedWindowRule.FIRST_REQUEST, 0, false);
    private static final PolicyRule.Limit TRIAL = new PolicyRule.Limit("trial", PolicyRule.GCRA, 7, 2, 0, 4, true);

    @Test
    void wireFormatIsTheDocumentedOrderAndRoundTrips() throws IOException {
        InternalSerializationService ss = serialization();
        ShardProcessor processor = new ShardProcessor(-1L, GRACE_MS, 77L, 5L, new Window[] {
            new Window("a:p", ShardProcessorTest.wire(FIRST, TRIAL), new long[] {1, 2}),
            new Window("b:p", ShardProcessorTest.wire(ShardProcessorTest.SLIDING), new long[] {4})});
        BufferObjectDataOutput out = ss.createObjectDataOutput();
        processor.writeData(out);
        byte[] bytes = out.toByteArray();
        BufferObjectDataInput in = ss.createObjectDataInput(bytes);
        assertEquals(-1L, in.readLong(), "nowMs");
        assertEquals(GRACE_MS, in.readLong(), "expiryGraceMs");
        assertEquals(77L, in.readLong(), "caller");
        assertEquals(5L, in.readLong(), "callSeq");
        assertEquals(2, in.readInt(), "windows");
        assertEquals("a:p", in.readString());
        assertEquals(2, in.readInt(), "limits");
        assertEquals(slot(FIRST), in.readLong(), "slot");
        assertEquals(PolicyRule.FIXED_WINDOW, in.readInt(), "algorithm");
        assertEquals(3L, in.readLong(), "limit");
        assertEquals(60L, in.readLong(), "windowSeconds");
        assertEquals(FixedWindowRule.FIRST_REQUEST, in.readInt(), "alignment");
        assertEquals(0L, in.readLong(), "burst");
        assertEquals(0, in.readInt(), "shadow");
        assertEquals(slot(TRIAL), in.readLong());
        assertEquals(PolicyRule.GCRA, in.readInt());
        assertEquals(7L, in.readLong());
        assertEquals(2L, in.readLong());
        assertEquals(0, in.readInt(), "alignment: fixed only");
        assertEquals(4L, in.readLong(), "burst");
        assertEquals(1, in.readInt(), "shadow");
        assertArrayEquals(new long[] {1, 2}, in.readLongArray(), "costs");
        assertEquals("b:p", in.readString());
        assertEquals(1, in.readInt());
        assertEquals(slot(ShardProcessorTest.SLIDING), in.readLong());
        assertEquals(PolicyRule.SLIDING_WINDOW, in.readInt());
        assertEquals(5L, in.readLong());
        assertEquals(10L, in.readLong());
        assertEquals(0, in.readInt());
        assertEquals(0L, in.readLong());
        assertEquals(0, in.readInt());
        assertArrayEquals(new long[] {4}, in.readLongArray());
        assertEquals(bytes.length, in.position(), "trailing bytes");

        // The copy decides as the original does.
        Object copy = ss.toObject(ss.toData(processor));
        assertInstanceOf(ShardProcessor.class, copy);
        WindowShard one = new WindowShard();
        WindowShard other = new WindowShard();
        long[] original = new ShardProcessor(5_000L, GRACE_MS, new Window[] {
            new Window("a:p", ShardProcessorTest.wire(FIRST, TRIAL), new long[] {1, 2})})
                .process(new InMemoryEntry("shard:0", one));
        ShardProcessor timed = (ShardProcessor) ss.toObject(ss.toData(new ShardProcessor(5_000L, GRACE_MS,
                new Window[] {new Window("a:p", ShardProcessorTest.wire(FIRST, TRIAL), new long[] {1, 2})})));
        assertArrayEquals(original, timed.process(new InMemoryEntry("shard:0", other)));
        assertEquals(one.snapshot(), other.snapshot());

        WindowShard shard = new WindowShard();
        shard.put("a:p", new long[] {9L, slot(FIRST), 1L, 2L, 0L});
        shard.put("b:p", new long[] {6L});
        BufferObjectDataOutput shardOut = ss.createObjectDataOutput();
        shard.writeData(shardOut);
        BufferObjectDataInput shardIn = ss.createObjectDataInput(shardOut.toByteArray());
        assertEquals(2, shardIn.readInt(), "keys");
        String key = shardIn.readString();
        assertArrayEquals(shard.live(key, 0L), shardIn.readLongArray(), "each key with its long[]");
        shardIn.readString();
        shardIn.readLongArray();
        assertEquals(0, shardIn.readInt(), "then the recent calls: none");
        Object shardCopy = ss.toObject(ss.toData(shard));
        assertInstanceOf(WindowShard.class, shardCopy);
        assertEquals(shard.snapshot(), ((WindowShard) shardCopy).snapshot());
        assertEquals(9L, ((WindowShard) shardCopy).latestExpiryMs());
    }

    /** Counts that frame the call out of range are refused by process(), not half read. */
    @Test
    void aCallFramedOutOfRangeIsRefused() throws IOException {
        InternalSerializationService ss = serialization();
        for (int[] counts : new int[][] {{-1, 1}, {1, 9}, {1, -1}}) {
            BufferObjectDataOutput out = ss.createObjectDataOutput();
            out.writeLong(1_000L);
            out.writeLong(GRACE_MS);
            out.writeLong(1L);
            out.writeLong(1L);
            out.writeInt(counts[0]);
            out.writeString("a:p");
            out.writeInt(counts[1]);
            ShardProcessor processor = new ShardProcessor();
            processor.readData(ss.createObjectDataInput(out.toByteArray()));
            InMemoryEntry entry = new InMemoryEntry("shard:0", null);
            assertThrows(IllegalArgumentException.class, () -> processor.process(entry), Arrays.toString(counts));
            assertEquals(0, entry.writes());
        }
    }

    private static final PolicyRule.Limit[] POOL = {
        new PolicyRule.Limit("a", PolicyRule.FIXED_WINDOW, 1, 1, 0, 0, false),
        new PolicyRule.Limit("b", PolicyRule.FIXED_WINDOW, 1, 3, 0, 0, false),
        new PolicyRule.Limit("a", PolicyRule.SLIDING_WINDOW, 1, 2, 0, 0, false),
        new PolicyRule.Limit("c", PolicyRule.SLIDING_WINDOW, 1, 1, 0, 0, false),
        new PolicyRule.Limit("a", PolicyRule.GCRA, 1, 1, 0, 0, false),
        new PolicyRule.Limit("d", PolicyRule.GCRA, 1, 4, 0, 0, false)};

    /** 1 to 4 limits of the pool (so their slots recur), in any order, with any values. */
    private static PolicyRule.Limit[] randomPolicy(Random random) {
        List<PolicyRule.Limit> pool = new ArrayList<>(List.of(POOL));
        Collections.shuffle(pool, random);
        PolicyRule.Limit[] policy = new PolicyRule.Limit[1 + random.nextInt(4)];
        for (int i = 0; i < policy.length; i++) {
            PolicyRule.Limit l = pool.get(i);
            policy[i] = new PolicyRule.Limit(l.name(), l.algorithm(), 1 + random.nextInt(6), l.windowSeconds(),
                    l.algorithm() == PolicyRule.FIXED_WINDOW ? random.nextInt(2) : 0,
                    l.algorithm() == PolicyRule.GCRA ? random.nextInt(3) : 0, i > 0 && random.nextBoolean());
        }
        return policy;
    }

    /** The states stored under the policy's slots, read without the code under test. */
    private static Object[] decode(PolicyRule.Limit[] policy, long[] stored) {
        Object[] states = new Object[policy.length];
        for (int i = 0; stored != null && i < policy.length; i++) {
            for (int at = 1; at < stored.length; at += 4) {
                if (stored[at] == slot(policy[i])) {
                    long a = stored[at + 1];
                    long b = stored[at + 2];
                    states[i] = switch (policy[i].algorithm()) {
                        case PolicyRule.FIXED_WINDOW -> new PolicyRule.FixedState(a, b);
                        case PolicyRule.SLIDING_WINDOW -> new SlidingWindowRule.State(a, b, stored[at + 3]);
                        default -> new GcraRule.State(a, b);
                    };
                }
            }
        }
        return states;
    }

    /**
     * Many calls of several clients each: every answer is the rule's on the states a model
     * of the contract keeps, every live stored array the model's, and the backup, sent
     * serialised, ends with the primary's shard and TTL.
     */
    @Test
    void randomCallsAnswerAsTheRuleAloneAndTheBackupKeepsUp() {
        InternalSerializationService ss = serialization();
        Random random = new Random(11);
        InMemoryEntry primary = new InMemoryEntry("shard:0", null);
        InMemoryEntry backup = new InMemoryEntry("shard:0", null);
        Map<String, long[]> model = new HashMap<>();
        long now = 1_764_384_000_000L;
        for (int round = 0; round < 400; round++) {
            now += random.nextInt(round % 50 == 49 ? 30_000 : 1_500);
            int n = 1 + random.nextInt(4);
            Window[] windows = new Window[n];
            long[] expected = new long[0];
            for (int i = 0; i < n; i++) {
                // Distinct keys in one call, as a replica sends them (one flight per key).
                String key = "c" + ((round * 3 + i) % 13) + ":p";
                PolicyRule.Limit[] policy = randomPolicy(random);
                long[] costs = random.longs(1 + random.nextInt(4), 1, 4).toArray();
                windows[i] = new Window(key, ShardProcessorTest.wire(policy), costs);
                long[] kept = model.get(key);
                PolicyRule.BatchOutcome o = PolicyRule.decideBatch(policy,
                        decode(policy, kept != null && kept[0] > now ? kept : null), now, costs);
                if (Arrays.stream(o.outcomes()).anyMatch(PolicyRule.Outcome::allowed)) {
                    model.put(key, stored(policy, o.states(), expiry(now, o)));
                }
                long[] single = answer(o);
                expected = Arrays.copyOf(expected, expected.length + single.length);
                System.arraycopy(single, 0, expected, expected.length - single.length, single.length);
            }
            ShardProcessor processor = new ShardProcessor(now, GRACE_MS, windows);
            assertArrayEquals(expected, processor.process(primary), "round " + round);
            WindowShard primaryShard = (WindowShard) primary.getValue();
            for (Map.Entry<String, long[]> m : model.entrySet()) {
                long[] live = m.getValue()[0] > now ? m.getValue() : null;
                assertArrayEquals(live, primaryShard.live(m.getKey(), now), "round " + round + ": " + m.getKey());
            }
            EntryProcessor<Object, Object, long[]> sent = processor.getBackupProcessor();
            if (sent != null) {
                Object received = ss.toObject(ss.toData(sent));
                ((ShardBackupProcessor) received).process(backup);
                assertEquals(primary.ttlMs(), backup.ttlMs(), "round " + round + ": TTL");
                assertEquals(primaryShard.latestExpiryMs() - now, primary.ttlMs(), "round " + round);
            }
            WindowShard backupShard = (WindowShard) backup.getValue();
            assertEquals(primaryShard.snapshot(), backupShard == null ? null : backupShard.snapshot(),
                    "round " + round);
        }
        // A pass starts at most every SWEEP_EVERY_MS: one call after it sweeps what expired.
        call(now + WindowShard.SWEEP_EVERY_MS, "c0:p", new PolicyRule.Limit[] {FIRST}, 1).process(primary);
        assertTrue(((WindowShard) primary.getValue()).size() < 13, "expired keys were swept");
    }

    @Test
    void expiredStatesAreIgnoredAtOnceAndSweptOnBothCopies() {
        long[] old = {1_000L, slot(FIRST), 0L, 3L, 0L};
        long[] young = {90_000L, slot(FIRST), 0L, 1L, 0L};
        WindowShard shard = new WindowShard();
        shard.put("old:p", old);
        shard.put("young:p", young);
        InMemoryEntry primary = new InMemoryEntry("shard:0", shard);
        WindowShard backupShard = new WindowShard();
        backupShard.put("old:p", old);
        backupShard.put("young:p", young);
        InMemoryEntry backup = new InMemoryEntry("shard:0", backupShard);

        assertNull(shard.live("old:p", 1_000L), "dead at its expiry");
        ShardProcessor processor = call(2_000L, "old:p", new PolicyRule.Limit[] {FIRST}, 1);
        long[] result = processor.process(primary);
        assertEquals(2L, result[1], "a fresh window, not the expired count");
        assertArrayEquals(new long[] {2_000L + 60_000L + GRACE_MS, slot(FIRST), 2_000L, 1L, 0L},
                shard.live("old:p", 2_000L), "expires at now + reset + grace");
        ((ShardBackupProcessor) processor.getBackupProcessor()).process(backup);
        assertEquals(shard.snapshot(), backupShard.snapshot());
        assertEquals(90_000L - 2_000L, primary.ttlMs(), "the entry lives until its last key (young) expires");

        // A later call within the sweep interval does not sweep; one after it does.
        ShardProcessor soon = call(2_500L, "young:p", new PolicyRule.Limit[] {FIRST}, 5);
        soon.process(primary);
        assertNull(soon.getBackupProcessor(), "nothing admitted and no sweep: no backup");
        ShardProcessor later = call(95_000L, "new:p", new PolicyRule.Limit[] {FIRST}, 1);
        later.process(primary);
        ((ShardBackupProcessor) later.getBackupProcessor()).process(backup);
        assertNull(shard.snapshot().get("young:p"), "swept on the primary");
        assertNull(shard.snapshot().get("old:p"), "swept on the primary");
        assertEquals(shard.snapshot(), backupShard.snapshot(), "and on the backup");
        assertEquals(1, shard.size());
    }

    @Test
    void theReaderAnswersTheOwnersClockThenTheLiveStoredArray() {
        WindowShard shard = new WindowShard();
        long now = System.currentTimeMillis();
        long[] live = {now + 60_000L, slot(FIRST), 10L, 2L, 0L, slot(TRIAL), now + 5, 3L, 0L};
        shard.put("live:p", live);
        shard.put("dead:p", new long[] {now - 1L, slot(FIRST), 10L, 2L, 0L});
        InMemoryEntry entry = new InMemoryEntry("shard:0", shard);
        long[] read = new ShardWindowReader("live:p").process(entry);
        assertEquals(1 + live.length, read.length);
        assertArrayEquals(live, Arrays.copyOfRange(read, 1, read.length), "[nowMs, expiresAtMs, slot, a, b, c, ...]");
        long[] dead = new ShardWindowReader("dead:p").process(entry);
        long[] none = new ShardWindowReader("none:p").process(new InMemoryEntry("shard:1", null));
        assertEquals(1, dead.length, "just [nowMs]");
        assertEquals(1, none.length);
        long after = System.currentTimeMillis();
        for (long clock : new long[] {read[0], dead[0], none[0]}) {
            assertTrue(now <= clock && clock <= after, "the owner's clock at the read");
        }
        assertEquals(0, entry.writes(), "a read");
        read[2] = -5L;
        assertEquals(slot(FIRST), shard.live("live:p", now)[1], "the answer is a copy");
    }
}
