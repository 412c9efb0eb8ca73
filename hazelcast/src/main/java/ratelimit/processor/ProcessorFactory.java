package ratelimit.processor;

import com.hazelcast.nio.serialization.DataSerializableFactory;
import com.hazelcast.nio.serialization.IdentifiedDataSerializable;

/**
 * Registered in {@code hazelcast/hazelcast.xml}. The ids are the contract's of
 * {@code tests/vectors/processor_wire.csv}, which {@code WireContractTest} checks them
 * against (and the Python tests {@code limiter/processor_wire.py} and the registration).
 */
public class ProcessorFactory implements DataSerializableFactory {

    public static final int FACTORY_ID = 7301;
    // 1 and 2 were the one-entry-per-key processor and its backup: retired, never reused.
    public static final int SHARD_PROCESSOR = 3;
    public static final int SHARD_BACKUP_PROCESSOR = 4;
    public static final int WINDOW_SHARD = 5;
    public static final int SHARD_WINDOW_READER = 6;

    @Override
    public IdentifiedDataSerializable create(int typeId) {
        return switch (typeId) {
            case SHARD_PROCESSOR -> new ShardProcessor();
            case SHARD_BACKUP_PROCESSOR -> new ShardBackupProcessor();
            case WINDOW_SHARD -> new WindowShard();
            case SHARD_WINDOW_READER -> new ShardWindowReader();
            default -> null;
        };
    }
}
