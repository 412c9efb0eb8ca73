package ratelimit.processor;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.util.Arrays;
import java.util.List;
import java.util.zip.CRC32;
import org.junit.jupiter.api.Test;
import ratelimit.processor.ShardProcessor.WireLimit;
import ratelimit.processor.ShardProcessor.Window;

/**
 * The shard processor's decisions against {@link PolicyRule} alone and the shared policy
 * vectors: one call per policy, the answer's layout, states found by slot, what is stored
 * and when nothing is. The wire formats, the backup, the sweep and the reader are in
 * {@link ShardStorageTest}.
 */
class ShardProcessorTest {

    static final long GRACE_MS = 5_000L;
    static final int STRIDE = ShardProcessor.RESULT_STRIDE_PER_LIMIT;

    static final PolicyRule.Limit FIXED = new PolicyRule.Limit("burst", PolicyRule.FIXED_WINDOW, 2, 1,
            FixedWindowRule.CLOCK, 0, false);
    static final PolicyRule.Limit SLIDING = new PolicyRule.Limit("tens", PolicyRule.SLIDING_WINDOW, 5, 10, 0, 0, false);
    static final PolicyRule.Limit GCRA = new PolicyRule.Limit("smooth", PolicyRule.GCRA, 3, 1, 0, 1, false);

    /** The slot the Python side gives a limit: crc32 of "name/algorithm/windowSeconds". */
    static long slot(PolicyRule.Limit limit) {
        String algorithm = switch (limit.algorithm()) {
            case PolicyRule.FIXED_WINDOW -> "fixed_window";
            case PolicyRule.SLIDING_WINDOW -> "sliding_window";
            default -> "gcra";
        };
        CRC32 crc = new CRC32();
        crc.update((limit.name() + "/" + algorithm + "/" + limit.windowSeconds()).getBytes(StandardCharsets.UTF_8));
        return crc.getValue();
    }

    static WireLimit[] wire(PolicyRule.Limit... policy) {
        return Arrays.stream(policy).map(l -> WireLimit.of(slot(l), l)).toArray(WireLimit[]::new);
    }

    static ShardProcessor call(long now, String key, PolicyRule.Limit[] policy, long... costs) {
        return new ShardProcessor(now, GRACE_MS, new Window[] {new Window(key, wire(policy), costs)});
    }

    /** The answer the contract lays out for one window's batch outcome. */
    static long[] answer(PolicyRule.BatchOutcome outcome) {
        return Arrays.stream(outcome.outcomes()).flatMap(o -> Arrays.stream(o.decisions()))
                .flatMapToLong(d -> Arrays.stream(new long[] {d.allowed() ? 1 : 0, d.remaining(), d.resetAfterMs(),
                        d.retryAfterMs(), d.reason()}))
                .toArray();
    }

    /** A state's a, b, c, written out here rather than with the code under test. */
    static long[] numbers(Object state) {
        if (state instanceof PolicyRule.FixedState s) {
            return new long[] {s.windowStartMs(), s.count(), 0};
        }
        if (state instanceof SlidingWindowRule.State s) {
            return new long[] {s.windowStartMs(), s.count(), s.previousCount()};
        }
        GcraRule.State s = (GcraRule.State) state;
        return new long[] {s.tatMs(), s.tatFraction(), 0};
    }

    /** The stored array the contract gives for {@code states} of {@code policy}. */
    static long[] stored(PolicyRule.Limit[] policy, Object[] states, long expiresAtMs) {
        long[] stored = {expiresAtMs};
        for (int i = 0; i < policy.length; i++) {
            if (states[i] != null) {
                long[] n = numbers(states[i]);
                long[] more = {slot(policy[i]), n[0], n[1], n[2]};
                stored = Arrays.copyOf(stored, stored.length + 4);
                System.arraycopy(more, 0, stored, stored.length - 4, 4);
            }
        }
        return stored;
    }

    static long expiry(long now, PolicyRule.BatchOutcome outcome) {
        PolicyRule.Outcome last = outcome.outcomes()[outcome.outcomes().length - 1];
        return now + Arrays.stream(last.decisions()).mapToLong(PolicyRule.Decision::resetAfterMs).max().orElseThrow()
                + GRACE_MS;
    }

    /** Fixed 2/1s, sliding 5/10s and GCRA 3/1s (burst 1) decided in one call, twice, as the rule decides them. */
    @Test
    void aThreeLimitPolicyIsDecidedInOneCallAsTheRuleDecidesIt() {
        PolicyRule.Limit[] policy = {FIXED, SLIDING, GCRA};
        WindowShard shard = new WindowShard();
        InMemoryEntry entry = new InMemoryEntry("shard:0", shard);
        long now = 1_764_384_000_250L;
        long[] costs = {1, 1, 1, 2};
        long[] result = call(now, "c:p", policy, costs).process(entry);

        PolicyRule.BatchOutcome expected = PolicyRule.decideBatch(policy, new Object[3], now, costs);
        assertEquals(STRIDE * 3 * costs.length, result.length, "5 longs per limit per request");
        assertArrayEquals(answer(expected), result);
        // By hand: the first request passes all three; the second is the gcra bucket's last
        // (burst 1: two at once); the third finds the fixed window full (and gcra empty).
        assertArrayEquals(new long[] {1, 1, 750, -1, 0}, Arrays.copyOfRange(result, 0, 5), "fixed, request 1");
        assertArrayEquals(new long[] {1, 3, 20_000 - 250, -1, 0}, Arrays.copyOfRange(result, 20, 25),
                "sliding, request 2");
        assertArrayEquals(new long[] {0, 0, 750, -1, 1}, Arrays.copyOfRange(result, 30, 35), "fixed, request 3");
        assertArrayEquals(new long[] {0, 0, 667, 334, 1}, Arrays.copyOfRange(result, 40, 45), "gcra, request 3");
        assertArrayEquals(stored(policy, expected.states(), expiry(now, expected)), shard.live("c:p", now),
                "the final states in policy order, under the longest reset + grace");

        long later = now + 800; // the next fixed window, the same sliding window
        long[] again = call(later, "c:p", policy, 1, 1).process(entry);
        PolicyRule.BatchOutcome next = PolicyRule.decideBatch(policy, expected.states(), later, new long[] {1, 1});
        assertArrayEquals(answer(next), again, "the stored states carried into the next call");
        assertArrayEquals(stored(policy, next.states(), expiry(later, next)), shard.live("c:p", later));
    }

    /**
     * Each shared policy batch vector gives its answers and final states through the shard
     * (but those with a peek, a cost of 0, which never reaches the processor).
     */
    @Test
    void sharedBatchVectorsGiveTheSameAnswersInAShard() throws IOException {
        List<VectorFile.Row> rows = VectorFile.read("policy_batch.csv").stream()
                .filter(r -> Arrays.stream(r.numbers("costs")).allMatch(cost -> cost >= 1)).toList();
        assertTrue(rows.size() >= 4, "vectors read: " + rows.size());
        for (VectorFile.Row r : rows) {
            PolicyRule.Limit[] policy = PolicyRuleTest.policy(r.text("limits"));
            Object[] states = PolicyRuleTest.states(policy, r.text("states"));
            long now = r.number("now_ms");
            long[] costs = r.numbers("costs");
            WindowShard shard = new WindowShard();
            shard.put("other:p", new long[] {Long.MAX_VALUE, slot(policy[0]), 0, 1, 0});
            shard.put("c:p", stored(policy, states, Long.MAX_VALUE));
            long[] result = call(now, "c:p", policy, costs).process(new InMemoryEntry("shard:0", shard));

            assertEquals(STRIDE * policy.length * costs.length, result.length, r.name());
            long[] allowed = r.numbers("allowed");
            for (int i = 0; i < costs.length; i++) {
                boolean all = true; // admitted when every enforced limit admits
                for (int j = 0; j < policy.length; j++) {
                    all &= policy[j].shadow() || result[STRIDE * (i * policy.length + j)] == 1L;
                }
                assertEquals(allowed[i] == 1L, all, r.name() + ": allowed[" + i + "]");
            }
            PolicyRule.BatchOutcome expected = PolicyRule.decideBatch(policy, states, now, costs);
            assertArrayEquals(answer(expected), result, r.name());
            Object[] finalStates = PolicyRuleTest.states(policy, r.text("new_states"));
            long expiresAt = Arrays.stream(allowed).anyMatch(a -> a == 1L) ? expiry(now, expected) : Long.MAX_VALUE;
            assertArrayEquals(stored(policy, finalStates, expiresAt), shard.live("c:p", now), r.name() + ": stored");
            assertEquals(List.of(Long.MAX_VALUE, slot(policy[0]), 0L, 1L, 0L), shard.snapshot().get("other:p"),
                    r.name() + ": another client's states");
        }
    }

    /** Only denials: the stored array, the entry and the backup stay as they were. */
    @Test
    void aDenialChangesNoState() {
        PolicyRule.Limit[] policy = {FIXED, SLIDING, GCRA};
        WindowShard shard = new WindowShard();
        InMemoryEntry entry = new InMemoryEntry("shard:0", shard);
        long now = 1_000_000L;
        call(now, "c:p", policy, 1, 1).process(entry);
        long[] before = shard.live("c:p", now);
        int writes = entry.writes();

        ShardProcessor denied = call(now + 10, "c:p", policy, 1, 3);
        long[] result = denied.process(entry);
        assertEquals(0L, result[0], "the fixed window is full");
        assertEquals(PolicyRule.NO_RETRY, result[3], "no retry time from a fixed window");
        assertEquals(FixedWindowRule.COST_OVER_LIMIT, result[STRIDE * 3 + 4], "3 is above the fixed limit");
        assertTrue(before == shard.live("c:p", now + 10), "the same stored array");
        assertEquals(writes, entry.writes(), "no write");
        assertNull(denied.getBackupProcessor(), "no backup");
    }

    /**
     * A limit keeps its state under its slot through a changed value, alignment, shadow flag or
     * place in the policy; a renamed limit has another slot and starts empty.
     */
    @Test
    void statesAreCarriedBySlotAndALimitWhoseSlotChangedStartsFresh() {
        PolicyRule.Limit minute = new PolicyRule.Limit("minute", PolicyRule.FIXED_WINDOW, 3, 60, 0, 0, false);
        PolicyRule.Limit smooth = new PolicyRule.Limit("smooth", PolicyRule.GCRA, 1, 60, 0, 0, false);
        WindowShard shard = new WindowShard();
        InMemoryEntry entry = new InMemoryEntry("shard:0", shard);
        long now = 6_000_000L;
        call(now, "c:p", new PolicyRule.Limit[] {minute, smooth}, 1, 1).process(entry);

        // The same minute limit raised to 5 and moved; smooth renamed: a new slot.
        PolicyRule.Limit raised = new PolicyRule.Limit("minute", PolicyRule.FIXED_WINDOW, 5, 60, 1, 0, true);
        PolicyRule.Limit renamed = new PolicyRule.Limit("steady", PolicyRule.GCRA, 1, 60, 0, 0, false);
        PolicyRule.Limit[] policy = {renamed, raised};
        long[] result = call(now + 1_000, "c:p", policy, 1).process(entry);
        assertEquals(1L, result[0], "steady starts empty: it admits");
        assertEquals(5L - 2, result[STRIDE + 1], "minute kept its count of 1 (smooth denied the second request)");
        long[] stored = shard.live("c:p", now + 1_000);
        assertEquals(1 + 2 * 4, stored.length, "smooth's state is gone");
        assertEquals(slot(renamed), stored[1], "in the new policy's order");
        assertArrayEquals(new long[] {slot(raised), 6_000_000L, 2, 0}, Arrays.copyOfRange(stored, 5, 9));
    }

    /** A limit the policy no longer has leaves the stored array on the next admitted call only. */
    @Test
    void aLimitDroppedFromThePolicyIsDroppedFromTheStoredArray() {
        WindowShard shard = new WindowShard();
        InMemoryEntry entry = new InMemoryEntry("shard:0", shard);
        long now = 9_000_000L;
        call(now, "c:p", new PolicyRule.Limit[] {FIXED, SLIDING, GCRA}, 1).process(entry);
        assertEquals(1 + 3 * 4, shard.live("c:p", now).length);

        long[] kept = shard.live("c:p", now);
        call(now + 1, "c:p", new PolicyRule.Limit[] {SLIDING}, 99).process(entry);
        assertTrue(kept == shard.live("c:p", now + 1), "a denial drops nothing");

        PolicyRule.Limit[] policy = {GCRA, FIXED};
        call(now + 2, "c:p", policy, 1).process(entry);
        long[] stored = shard.live("c:p", now + 2);
        assertEquals(1 + 2 * 4, stored.length, "the sliding limit is gone");
        assertEquals(slot(GCRA), stored[1]);
        assertEquals(slot(FIXED), stored[5]);
        assertEquals(2L, stored[7], "the fixed count carried: 1 + 1");
    }

    /** A shadow limit with nothing stored that denies stays null: it is left out of the stored array. */
    @Test
    void aNullStateIsLeftOut() {
        PolicyRule.Limit shadow = new PolicyRule.Limit("trial", PolicyRule.FIXED_WINDOW, 1, 60, 0, 0, true);
        WindowShard shard = new WindowShard();
        long[] result = call(0L, "c:p", new PolicyRule.Limit[] {shadow, GCRA}, 2)
                .process(new InMemoryEntry("shard:0", shard));
        assertEquals(0L, result[0], "the shadow limit denies");
        assertEquals(1L, result[STRIDE], "gcra admits (burst 1: two at once)");
        long[] stored = shard.live("c:p", 0L);
        assertEquals(5, stored.length, "only gcra's state");
        assertEquals(slot(GCRA), stored[1]);
    }

    /** With MEMBER_CLOCK sent, the member's own clock decides. */
    @Test
    void theMemberClockDecidesWhenNoTimeIsSent() {
        long before = System.currentTimeMillis();
        WindowShard shard = new WindowShard();
        PolicyRule.Limit minute = new PolicyRule.Limit("m", PolicyRule.FIXED_WINDOW, 5, 60, 0, 0, false);
        long[] result = call(ShardProcessor.MEMBER_CLOCK, "c:p", new PolicyRule.Limit[] {minute}, 2)
                .process(new InMemoryEntry("shard:0", shard));
        long after = System.currentTimeMillis();
        assertEquals(STRIDE, result.length);
        assertArrayEquals(new long[] {1, 3}, Arrays.copyOf(result, 2));
        long[] stored = shard.live("c:p", after);
        assertNotNull(stored, "stored");
        assertTrue(stored[2] == FixedWindowRule.windowStart(before, 60)
                || stored[2] == FixedWindowRule.windowStart(after, 60), "the window of the member clock");
        assertEquals(2L, stored[3]);
    }

    /** Anything malformed in any window is refused before the shard is touched. */
    @Test
    void aMalformedCallChangesNothing() {
        WireLimit good = WireLimit.of(1, FIXED);
        List<Window> bad = List.of(
                new Window("b:p", new WireLimit[0], new long[] {1}),
                new Window("b:p", new WireLimit[9], new long[] {1}),
                new Window("b:p", new WireLimit[] {good}, new long[] {1, 0}),
                new Window("b:p", new WireLimit[] {good}, new long[0]),
                new Window(null, new WireLimit[] {good}, new long[] {1}),
                new Window("b:p", new WireLimit[] {new WireLimit(1, 3, 2, 1, 0, 0, 0)}, new long[] {1}),
                new Window("b:p", new WireLimit[] {new WireLimit(1, 0, 0, 1, 0, 0, 0)}, new long[] {1}),
                new Window("b:p", new WireLimit[] {new WireLimit(1, 0, 2, 0, 0, 0, 0)}, new long[] {1}),
                new Window("b:p", new WireLimit[] {new WireLimit(1, 0, 2, 1, 2, 0, 0)}, new long[] {1}),
                new Window("b:p", new WireLimit[] {new WireLimit(1, 0, 2, 1, 0, 1, 0)}, new long[] {1}),
                new Window("b:p", new WireLimit[] {new WireLimit(1, 2, 2, 1, 1, 0, 0)}, new long[] {1}),
                new Window("b:p", new WireLimit[] {new WireLimit(1, 2, 2, 1, 0, -1, 0)}, new long[] {1}),
                new Window("b:p", new WireLimit[] {new WireLimit(1, 0, 2, 1, 0, 0, 2)}, new long[] {1}),
                new Window("b:p", new WireLimit[] {new WireLimit(1, 0, 2, 1, 0, 0, 1)}, new long[] {1}),
                new Window("b:p", new WireLimit[] {good, WireLimit.of(1, GCRA)}, new long[] {1}),
                new Window("b:p", new WireLimit[] {new WireLimit(1, 1, 1L << 50, 1L << 20, 0, 0, 0)}, new long[] {1}),
                new Window("b:p", new WireLimit[] {new WireLimit(1, 0, (1L << 61) + 1, 1, 0, 0, 0)}, new long[] {1}));
        for (int i = 0; i < bad.size(); i++) {
            WindowShard shard = new WindowShard();
            InMemoryEntry entry = new InMemoryEntry("shard:0", shard);
            ShardProcessor processor = new ShardProcessor(1_000L, GRACE_MS,
                    new Window[] {new Window("a:p", new WireLimit[] {good}, new long[] {1}), bad.get(i)});
            assertThrows(IllegalArgumentException.class, () -> processor.process(entry), "case " + i);
            assertEquals(0, shard.size(), "case " + i + ": the valid first window was not stored either");
            assertEquals(0, entry.writes(), "case " + i);
        }
    }
}
