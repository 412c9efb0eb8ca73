package ratelimit.processor;

import com.hazelcast.nio.serialization.DataSerializableFactory;
import com.hazelcast.nio.serialization.IdentifiedDataSerializable;

/**
 * Registered in {@code hazelcast/hazelcast.xml}; the ids must match
 * {@code limiter/entry_processor.py}.
 */
public class ProcessorFactory implements DataSerializableFactory {

    public static final int FACTORY_ID = 7301;
    public static final int FIXED_WINDOW_PROCESSOR = 1;
    public static final int WINDOW_BACKUP_PROCESSOR = 2;

    @Override
    public IdentifiedDataSerializable create(int typeId) {
        return switch (typeId) {
            case FIXED_WINDOW_PROCESSOR -> new FixedWindowProcessor();
            case WINDOW_BACKUP_PROCESSOR -> new WindowBackupProcessor();
            default -> null;
        };
    }
}
