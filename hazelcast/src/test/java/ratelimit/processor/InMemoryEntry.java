package ratelimit.processor;

import com.hazelcast.map.ExtendedMapEntry;
import java.util.concurrent.TimeUnit;

/** A map entry held in memory that records the TTL it was last written with. */
final class InMemoryEntry implements ExtendedMapEntry<Object, Object> {

    /** The TTL of an entry that was never written with one. */
    static final long NO_TTL = -1L;

    private final Object key;
    private Object value;
    private long ttlMs = NO_TTL;
    private int writes;

    InMemoryEntry(Object key, Object value) {
        this.key = key;
        this.value = value;
    }

    @Override
    public Object getKey() {
        return key;
    }

    @Override
    public Object getValue() {
        return value;
    }

    /** A write without a TTL: the processors must never use it, so it clears the TTL. */
    @Override
    public Object setValue(Object newValue) {
        Object old = value;
        value = newValue;
        ttlMs = NO_TTL;
        writes++;
        return old;
    }

    @Override
    public Object setValue(Object newValue, long ttl, TimeUnit unit) {
        Object old = value;
        value = newValue;
        ttlMs = unit.toMillis(ttl);
        writes++;
        return old;
    }

    @Override
    public Object setValueWithoutChangingExpiryTime(Object newValue) {
        Object old = value;
        value = newValue;
        writes++;
        return old;
    }

    long ttlMs() {
        return ttlMs;
    }

    int writes() {
        return writes;
    }
}
