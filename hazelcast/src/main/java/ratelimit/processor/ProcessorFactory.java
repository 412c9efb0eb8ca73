package ratelimit.processor;

import com.hazelcast.nio.serialization.DataSerializableFactory;
import com.hazelcast.nio.serialization.IdentifiedDataSerializable;
import ratelimit.fault.FaultStallBackupProcessor;
import ratelimit.fault.FaultStallProcessor;

/**
 * Registered in {@code hazelcast/hazelcast.xml}. The ids are the contract's of
 * {@code tests/vectors/processor_wire.csv}, which {@code WireContractTest} checks them
 * against (and the Python tests {@code limiter/processor_wire.py} and the registration).
 * A class whose wire format changes takes a new id and its old one is retired, so a member
 * or client of the other format fails to deserialise it instead of misreading it.
 */
public class ProcessorFactory implements DataSerializableFactory {

    public static final int FACTORY_ID = 7301;
    // 1 and 2 were the one-entry-per-key processor and its backup; 3 to 6 the same four
    // classes when each client had one fixed window; 7, 8, 9, 11, 12 and 13 these classes
    // before calls carried ids: retired, never reused.
    public static final int SHARD_WINDOW_READER = 10;
    public static final int SHARD_PROCESSOR = 14;
    public static final int SHARD_BACKUP_PROCESSOR = 15;
    public static final int SHARD_FAN_OUT_PROCESSOR = 16;
    public static final int SHARD_FAN_OUT_BACKUP_PROCESSOR = 17;
    public static final int WINDOW_SHARD = 18;
    public static final int SHARD_REFUND_PROCESSOR = 19;
    // A test's fault-injection hook (ratelimit.fault), refused unless the member runs with
    // -Dratelimit.faults=on.
    public static final int FAULT_STALL_PROCESSOR = 20;
    public static final int FAULT_STALL_BACKUP_PROCESSOR = 21;

    @Override
    public IdentifiedDataSerializable create(int typeId) {
        return switch (typeId) {
            case SHARD_PROCESSOR -> new ShardProcessor();
            case SHARD_BACKUP_PROCESSOR -> new ShardBackupProcessor();
            case WINDOW_SHARD -> new WindowShard();
            case SHARD_WINDOW_READER -> new ShardWindowReader();
            case SHARD_REFUND_PROCESSOR -> new ShardRefundProcessor();
            case SHARD_FAN_OUT_PROCESSOR -> new ShardFanOutProcessor();
            case SHARD_FAN_OUT_BACKUP_PROCESSOR -> new ShardFanOutBackupProcessor();
            case FAULT_STALL_PROCESSOR -> new FaultStallProcessor();
            case FAULT_STALL_BACKUP_PROCESSOR -> new FaultStallBackupProcessor();
            default -> null;
        };
    }
}
