package ratelimit.processor;

import com.hazelcast.nio.serialization.DataSerializableFactory;
import com.hazelcast.nio.serialization.IdentifiedDataSerializable;

/**
 * Registered in {@code hazelcast/hazelcast.xml}; the ids must match
 * {@code limiter/processor_wire.py}.
 */
public class ProcessorFactory implements DataSerializableFactory {

    public static final int FACTORY_ID = 7301;
    public static final int FIXED_WINDOW_PROCESSOR = 1;
    public static final int WINDOW_BACKUP_PROCESSOR = 2;
    public static final int SHARD_PROCESSOR = 3;
    public static final int SHARD_BACKUP_PROCESSOR = 4;
    public static final int WINDOW_SHARD = 5;
    public static final int SHARD_WINDOW_READER = 6;

    @Override
    public IdentifiedDataSerializable create(int typeId) {
        return switch (typeId) {
            case FIXED_WINDOW_PROCESSOR -> new FixedWindowProcessor();
            case WINDOW_BACKUP_PROCESSOR -> new WindowBackupProcessor();
            case SHARD_PROCESSOR -> new ShardProcessor();
            case SHARD_BACKUP_PROCESSOR -> new ShardBackupProcessor();
            case WINDOW_SHARD -> new WindowShard();
            case SHARD_WINDOW_READER -> new ShardWindowReader();
            default -> null;
        };
    }
}
