package ratelimit.processor;

import com.hazelcast.map.EntryProcessor;
import com.hazelcast.map.ExtendedMapEntry;
import com.hazelcast.nio.ObjectDataInput;
import com.hazelcast.nio.ObjectDataOutput;
import com.hazelcast.nio.serialization.IdentifiedDataSerializable;
import java.io.IOException;
import java.util.Map;
import java.util.concurrent.TimeUnit;

/** Writes the primary's decided window state onto a backup replica, with the same TTL. */
public class WindowBackupProcessor
        implements EntryProcessor<Object, Object, long[]>, IdentifiedDataSerializable {

    private long windowStartMs;
    private long count;
    private long ttlMs;

    public WindowBackupProcessor() {
    }

    public WindowBackupProcessor(long windowStartMs, long count, long ttlMs) {
        this.windowStartMs = windowStartMs;
        this.count = count;
        this.ttlMs = ttlMs;
    }

    @Override
    public long[] process(Map.Entry<Object, Object> entry) {
        ((ExtendedMapEntry<Object, Object>) entry)
                .setValue(new long[] {windowStartMs, count}, ttlMs, TimeUnit.MILLISECONDS);
        return null;
    }

    @Override
    public EntryProcessor<Object, Object, long[]> getBackupProcessor() {
        return null;
    }

    @Override
    public int getFactoryId() {
        return ProcessorFactory.FACTORY_ID;
    }

    @Override
    public int getClassId() {
        return ProcessorFactory.WINDOW_BACKUP_PROCESSOR;
    }

    @Override
    public void writeData(ObjectDataOutput out) throws IOException {
        out.writeLong(windowStartMs);
        out.writeLong(count);
        out.writeLong(ttlMs);
    }

    @Override
    public void readData(ObjectDataInput in) throws IOException {
        windowStartMs = in.readLong();
        count = in.readLong();
        ttlMs = in.readLong();
    }
}
