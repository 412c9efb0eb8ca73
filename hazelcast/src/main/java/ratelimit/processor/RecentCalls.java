package ratelimit.processor;

import com.hazelcast.nio.ObjectDataInput;
import com.hazelcast.nio.ObjectDataOutput;
import java.io.IOException;

/**
 * The last call of each replica worker that changed one shard entry, with the answer it was
 * given: kept in the entry ({@link WindowShard}), so that the synchronous backup and a
 * migrated copy hold them too, and a call sent again after its owner died is recognised by
 * the promoted backup and answered as the first time, changing nothing.
 *
 * <p>Why the last call per worker is enough: a worker has at most one call in flight per shard
 * entry (its lane), and sends a call again only until its deadline, never once it moved on to
 * the next. A call that runs beside the lanes (a refund) comes under a worker number of its
 * own. A record is dropped when the same worker's next call changes the entry, or
 * {@link #KEEP_MS} after the call (a worker that stopped), or, past {@link #MAX_CALLS}
 * workers, the oldest first.
 *
 * <p>What it costs: per worker that changed the entry in the last minute, three longs here
 * (24 B) and its answer array (16 B of header plus 8 B per long: 5 longs per limit per request
 * of the batch, so 56 B for one request of one limit). A call that changed nothing (every
 * request denied) is not recorded: deciding it again is as good as the first time.
 *
 * <p>Wire format (inside {@link WindowShard}'s and the backups'): the number of calls as an
 * int, then per call the worker and the call's number and the time it was decided as longs,
 * and its answer as a long array.
 */
final class RecentCalls {

    /** The caller's id when it sends none (tests, tools): such a call is never recorded. */
    static final long NO_CALLER = 0L;
    /** How long a worker's last call is kept: far beyond any decision timeout. */
    static final long KEEP_MS = 60_000L;
    /** The most workers remembered per shard entry. */
    static final int MAX_CALLS = 4_096;

    private long[] workers = new long[4];
    private long[] seqs = new long[4];
    private long[] decidedAtMs = new long[4];
    private long[][] answers = new long[4][];
    private int size;

    /** The answer given to the call {@code seq} of {@code worker}, or null if not recorded. */
    long[] answerOf(long worker, long seq) {
        if (worker == NO_CALLER) {
            return null;
        }
        for (int i = 0; i < size; i++) {
            if (workers[i] == worker) {
                return seqs[i] == seq ? answers[i] : null;
            }
        }
        return null;
    }

    /**
     * Records {@code answer} as the answer to the call {@code seq} of {@code worker}, decided at
     * {@code nowMs}, in place of that worker's previous call; drops calls older than
     * {@link #KEEP_MS} at {@code nowMs}. The array is kept as it is (never changed afterwards).
     */
    void remember(long worker, long seq, long nowMs, long[] answer) {
        if (worker == NO_CALLER) {
            return;
        }
        int at = -1;
        int oldest = -1;
        for (int i = 0; i < size; i++) {
            if (workers[i] == worker) {
                at = i;
            } else if (nowMs - decidedAtMs[i] > KEEP_MS) {
                removeAt(i);
                i--;
                continue;
            }
            if (oldest < 0 || decidedAtMs[i] < decidedAtMs[oldest]) {
                oldest = i;
            }
        }
        if (at < 0) {
            if (size == MAX_CALLS) {
                removeAt(oldest);
            }
            if (size == workers.length) {
                grow();
            }
            at = size++;
            workers[at] = worker;
        }
        seqs[at] = seq;
        decidedAtMs[at] = nowMs;
        answers[at] = answer;
    }

    int size() {
        return size;
    }

    /** Bytes held by the records (arrays' slots and answers), as this class's docstring counts. */
    long bytes() {
        long bytes = 0L;
        for (int i = 0; i < size; i++) {
            bytes += 3L * Long.BYTES + 16L + (long) Long.BYTES * answers[i].length;
        }
        return bytes;
    }

    private void removeAt(int i) {
        int last = --size;
        workers[i] = workers[last];
        seqs[i] = seqs[last];
        decidedAtMs[i] = decidedAtMs[last];
        answers[i] = answers[last];
        answers[last] = null;
    }

    private void grow() {
        int capacity = workers.length * 2;
        workers = java.util.Arrays.copyOf(workers, capacity);
        seqs = java.util.Arrays.copyOf(seqs, capacity);
        decidedAtMs = java.util.Arrays.copyOf(decidedAtMs, capacity);
        answers = java.util.Arrays.copyOf(answers, capacity);
    }

    void writeTo(ObjectDataOutput out) throws IOException {
        out.writeInt(size);
        for (int i = 0; i < size; i++) {
            out.writeLong(workers[i]);
            out.writeLong(seqs[i]);
            out.writeLong(decidedAtMs[i]);
            out.writeLongArray(answers[i]);
        }
    }

    void readFrom(ObjectDataInput in) throws IOException {
        size = 0;
        int n = in.readInt();
        if (n < 0 || n > MAX_CALLS) {
            throw new IllegalArgumentException(n + " recent calls, at most " + MAX_CALLS);
        }
        for (int i = 0; i < n; i++) {
            long worker = in.readLong();
            long seq = in.readLong();
            long at = in.readLong();
            long[] answer = in.readLongArray();
            if (size == workers.length) {
                grow();
            }
            workers[size] = worker;
            seqs[size] = seq;
            decidedAtMs[size] = at;
            answers[size] = answer;
            size++;
        }
    }
}
