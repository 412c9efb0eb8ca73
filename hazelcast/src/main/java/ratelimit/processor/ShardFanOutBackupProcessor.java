package ratelimit.processor;

import com.hazelcast.map.EntryProcessor;
import com.hazelcast.nio.ObjectDataInput;
import com.hazelcast.nio.ObjectDataOutput;
import com.hazelcast.nio.serialization.IdentifiedDataSerializable;
import java.io.IOException;
import java.util.HashMap;
import java.util.Map;
import java.util.Set;

/**
 * What one partition operation of a {@link ShardFanOutProcessor} call changed, for the backup
 * replica of that partition: per shard entry the primary changed, by its key, the
 * {@link ShardBackupProcessor} that applies the change. Hazelcast runs it on every key of the
 * call that falls in the partition; an entry whose key it does not hold is left untouched (it was
 * not changed, or it belongs to another partition's backup).
 *
 * <p>Wire format (member to member only): the number of entries as an int, then per entry its
 * key as a string and its {@link ShardBackupProcessor} in that class's wire format.
 */
public class ShardFanOutBackupProcessor
        implements EntryProcessor<Object, Object, long[]>, IdentifiedDataSerializable {

    private Map<String, ShardBackupProcessor> changes;

    public ShardFanOutBackupProcessor() {
    }

    ShardFanOutBackupProcessor(Map<String, ShardBackupProcessor> changes) {
        this.changes = changes;
    }

    @Override
    public long[] process(Map.Entry<Object, Object> entry) {
        ShardBackupProcessor change = changes.get(entry.getKey());
        if (change != null) {
            change.process(entry);
        }
        return null;
    }

    /** The shard keys whose changes it carries (tests). */
    Set<String> keys() {
        return changes.keySet();
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
        return ProcessorFactory.SHARD_FAN_OUT_BACKUP_PROCESSOR;
    }

    @Override
    public void writeData(ObjectDataOutput out) throws IOException {
        out.writeInt(changes.size());
        for (Map.Entry<String, ShardBackupProcessor> change : changes.entrySet()) {
            out.writeString(change.getKey());
            change.getValue().writeData(out);
        }
    }

    @Override
    public void readData(ObjectDataInput in) throws IOException {
        int n = in.readInt();
        changes = new HashMap<>();
        for (int i = 0; i < n; i++) {
            String key = in.readString();
            ShardBackupProcessor change = new ShardBackupProcessor();
            change.readData(in);
            changes.put(key, change);
        }
    }
}
