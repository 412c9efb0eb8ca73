package ratelimit.processor;

import com.hazelcast.core.ReadOnly;
import com.hazelcast.map.EntryProcessor;
import com.hazelcast.nio.ObjectDataInput;
import com.hazelcast.nio.ObjectDataOutput;
import com.hazelcast.nio.serialization.IdentifiedDataSerializable;
import java.io.IOException;
import java.util.Map;

/**
 * Reads one client's stored policy states from a {@link WindowShard} on its owner, with the
 * owner's clock at the read: the clock its decisions use, so that a replica can run the
 * rule on them as the owner would (a peek, or the states the next decision would see). A
 * read of the whole shard would carry every other client's states too.
 *
 * <p>Wire format: the key as a string. The answer is a {@code long[]}: {@code nowMs}, then the
 * key's stored array when it is live ({@code [nowMs, expiresAtMs, slot, a, b, c, ...]}, see
 * {@link WindowShard}), else just {@code [nowMs]}.
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
            long[] stored = shard.live(key, nowMs);
            if (stored != null) {
                long[] answer = new long[1 + stored.length];
                answer[0] = nowMs;
                System.arraycopy(stored, 0, answer, 1, stored.length);
                return answer;
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
