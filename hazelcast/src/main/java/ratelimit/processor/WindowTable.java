package ratelimit.processor;

import java.util.Arrays;

/**
 * The keys and stored arrays of one {@link WindowShard}, in flat arrays: a key maps to its
 * {@code long[]} as in a {@code HashMap<String, long[]>}, at about half the memory.
 *
 * <p>Why: a shard holds every window of its clients, and with a million clients the map's
 * overhead was most of a window's cost: the key's {@code String} and its bytes (80 B for a
 * UUID key) and a node (32 B) besides the 56 B array; 201 B per window per copy measured
 * on the members at 100,000 windows in one shard, 121 B with this table, and 88-89 B at a
 * million windows over 271 shards (docs/benchmarks.md). Here a client key of the usual
 * form ({@code "<uuid>:p"}, lowercase, as the replicas send it) is kept as its 128 bits in
 * two {@code long}s, and the entries sit in
 * dense arrays ({@link #size()} of them, in positions {@code 0 .. size-1}) indexed by an
 * open-addressing table of positions (linear probing, at most 3/4 full). Any other key is
 * kept as its {@code String} beside them ({@link #others}, allocated on the first one), so
 * every key works and the usual ones cost 16 B.
 *
 * <p>Positions are dense so that a sweep can walk them with a cursor ({@link WindowShard});
 * a removal moves the last entry into the hole ({@link #removeAt}). Not thread-safe: a shard
 * is changed only on its partition thread; {@link #size()} may be read from another thread
 * for metrics (a plain int, possibly a little stale).
 */
final class WindowTable {

    /** {@code "<8>-<4>-<4>-<4>-<12>:p"}: the packed form's length. */
    static final int PACKED_KEY_LENGTH = 38;
    private static final long GOLDEN = 0x9E3779B97F4A7C15L;
    private static final char[] HEX = "0123456789abcdef".toCharArray();

    private long[] high = new long[4];
    private long[] low = new long[4];
    private long[][] values = new long[4][];
    /** Keys not of the packed form, at their positions (null elsewhere); null until one comes. */
    private String[] others;
    /** Position + 1 of an entry, 0 for a free slot; a power of two long. */
    private int[] index = new int[8];
    private int size;

    /** The key parsed by {@link #pack}: its two halves (reused: one thread, no allocation). */
    private long packedHigh;
    private long packedLow;

    int size() {
        return size;
    }

    long[] get(String key) {
        int at = find(key);
        return at < 0 ? null : values[at];
    }

    /** Stores {@code value} under {@code key}, in place of what was there if anything. */
    void put(String key, long[] value) {
        int at = find(key);
        if (at >= 0) {
            values[at] = value;
            return;
        }
        boolean packed = pack(key);
        if (size == values.length) {
            int capacity = size + Math.max(4, size >> 2);
            high = Arrays.copyOf(high, capacity);
            low = Arrays.copyOf(low, capacity);
            values = Arrays.copyOf(values, capacity);
            if (others != null) {
                others = Arrays.copyOf(others, capacity);
            }
        }
        if (!packed && others == null) {
            others = new String[values.length];
        }
        at = size++;
        high[at] = packed ? packedHigh : 0L;
        low[at] = packed ? packedLow : 0L;
        values[at] = value;
        if (others != null) {
            others[at] = packed ? null : key;
        }
        if (4L * size > 3L * index.length) {
            rebuildIndex(index.length * 2);
        } else {
            index[freeSlot(hashAt(at))] = at + 1;
        }
    }

    String keyAt(int at) {
        if (others != null && others[at] != null) {
            return others[at];
        }
        return unpack(high[at], low[at]);
    }

    long[] valueAt(int at) {
        return values[at];
    }

    /** Removes the entry at {@code at}; the last entry moves there (unless it was the last). */
    void removeAt(int at) {
        deleteSlot(slotOf(at));
        int last = size - 1;
        if (at != last) {
            int moved = slotOf(last);
            high[at] = high[last];
            low[at] = low[last];
            values[at] = values[last];
            if (others != null) {
                others[at] = others[last];
            }
            index[moved] = at + 1;
        }
        values[last] = null;
        if (others != null) {
            others[last] = null;
        }
        size = last;
    }

    void clear() {
        high = new long[4];
        low = new long[4];
        values = new long[4][];
        others = null;
        index = new int[8];
        size = 0;
    }

    /** The position of {@code key}, or -1. */
    private int find(String key) {
        boolean packed = pack(key);
        long h = packed ? packedHigh : 0L;
        long l = packed ? packedLow : 0L;
        int mask = index.length - 1;
        for (int slot = spread(packed ? hashOf(h, l) : key.hashCode()) & mask; ; slot = (slot + 1) & mask) {
            int at = index[slot] - 1;
            if (at < 0) {
                return -1;
            }
            String other = others == null ? null : others[at];
            if (packed ? other == null && high[at] == h && low[at] == l : key.equals(other)) {
                return at;
            }
        }
    }

    /** The index slot holding position {@code at}. */
    private int slotOf(int at) {
        int mask = index.length - 1;
        for (int slot = hashAt(at) & mask; ; slot = (slot + 1) & mask) {
            if (index[slot] == at + 1) {
                return slot;
            }
        }
    }

    private int freeSlot(int hash) {
        int mask = index.length - 1;
        int slot = hash & mask;
        while (index[slot] != 0) {
            slot = (slot + 1) & mask;
        }
        return slot;
    }

    /** Empties {@code slot}, shifting back the entries after it that probed past it. */
    private void deleteSlot(int slot) {
        int mask = index.length - 1;
        int hole = slot;
        for (int next = (hole + 1) & mask; index[next] != 0; next = (next + 1) & mask) {
            int home = hashAt(index[next] - 1) & mask;
            // Moves back unless its home lies cyclically in (hole, next].
            boolean stays = hole <= next ? hole < home && home <= next : hole < home || home <= next;
            if (!stays) {
                index[hole] = index[next];
                hole = next;
            }
        }
        index[hole] = 0;
    }

    private void rebuildIndex(int length) {
        index = new int[length];
        for (int at = 0; at < size; at++) {
            index[freeSlot(hashAt(at))] = at + 1;
        }
    }

    private int hashAt(int at) {
        String other = others == null ? null : others[at];
        return spread(other != null ? other.hashCode() : hashOf(high[at], low[at]));
    }

    private static int hashOf(long high, long low) {
        return Long.hashCode(high * 31 + low);
    }

    private static int spread(int hash) {
        return (int) ((hash * GOLDEN) >>> 32);
    }

    /**
     * Whether {@code key} is {@code "<uuid>:p"} with a lowercase UUID, the one form whose
     * bits give back exactly the same string; if so its halves are left in
     * {@link #packedHigh} and {@link #packedLow}.
     */
    boolean pack(String key) {
        if (key.length() != PACKED_KEY_LENGTH || key.charAt(36) != ':' || key.charAt(37) != 'p') {
            return false;
        }
        long h = 0L;
        long l = 0L;
        int digits = 0;
        for (int i = 0; i < 36; i++) {
            char c = key.charAt(i);
            if (i == 8 || i == 13 || i == 18 || i == 23) {
                if (c != '-') {
                    return false;
                }
                continue;
            }
            int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
            if (d < 0) {
                return false;
            }
            if (digits++ < 16) {
                h = (h << 4) | d;
            } else {
                l = (l << 4) | d;
            }
        }
        packedHigh = h;
        packedLow = l;
        return true;
    }

    static String unpack(long high, long low) {
        char[] out = new char[PACKED_KEY_LENGTH];
        int at = 0;
        for (int digit = 0; digit < 32; digit++) {
            if (digit == 8 || digit == 12 || digit == 16 || digit == 20) {
                out[at++] = '-';
            }
            long half = digit < 16 ? high : low;
            out[at++] = HEX[(int) (half >>> (60 - 4 * (digit % 16))) & 0xF];
        }
        out[at++] = ':';
        out[at] = 'p';
        return new String(out);
    }
}
