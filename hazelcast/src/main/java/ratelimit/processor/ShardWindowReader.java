package ratelimit.processor;

import com.hazelcast.core.ReadOnly;
import com.hazelcast.map.EntryProcessor;
import com.hazelcast.nio.ObjectDataInput;
import com.hazelcast.nio.ObjectDataOutput;
import com.hazelcast.nio.serialization.IdentifiedDataSerializable;
import java.io.IOException;
import java.util.Map;

/**
 * Reads one window of a {@link WindowShard} on its owner: {@code long[]{windowStartMs,
 * count, nowMs}}, or {@code long[]{nowMs}} when the shard holds no live window under the
 * key, {@code nowMs} being the owner's clock at the read: the clock its decisions use, so
 * that a replica can pick the window a request would count in as the owner would (a
 * peek). A read of the whole shard would carry every other client's window too.
 */
public class ShardWindowReader
        implements EntryProcessor<Object, Object, long[]>, ReadOnly, IdentifiedDataSerializable {

    private String key;

    public ShardWindowReader() {
    }

    public ShardWindowReader(String key) {
        this.key = key;
    }

    @Override
    public long[] process(Map.Entry<Object, Object> entry) {
        long nowMs = System.currentTimeMillis();
        if (entry.getValue() instanceof WindowShard shard) {
            long[] window = shard.live(key, nowMs);
            if (window != null) {
                return new long[] {window[0], window[1], nowMs};
            }
        }
        return new long[] {nowMs};
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
        return ProcessorFactory.SHARD_WINDOW_READER;
    }

    @Override
    public void writeData(ObjectDataOutput out) throws IOException {
        out.writeString(key);
    }

    @Override
    public void readData(ObjectDataInput in) throws IOException {
        key = in.readString();
    }
}
