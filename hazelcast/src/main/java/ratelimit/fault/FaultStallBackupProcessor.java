package ratelimit.fault;

import com.hazelcast.map.EntryProcessor;
import com.hazelcast.nio.ObjectDataInput;
import com.hazelcast.nio.ObjectDataOutput;
import com.hazelcast.nio.serialization.IdentifiedDataSerializable;
import java.io.IOException;
import java.util.Map;
import ratelimit.processor.ProcessorFactory;

/**
 * The backup of a {@link FaultStallProcessor#STALL}: on the partition's backup member, sleeps
 * {@code sleepMs} on the partition thread (every backup of the partition queued after it
 * waits), then writes the same marker as the owner. Refused unless {@link Faults#enabled()}.
 * Records the stall as sleeping, then done, for {@link FaultStallProcessor#ASK}.
 *
 * <p>Wire format (member to member only): {@code stallId} and {@code sleepMs} as longs.
 */
public class FaultStallBackupProcessor
        implements EntryProcessor<Object, Object, long[]>, IdentifiedDataSerializable {

    private long stallId;
    private long sleepMs;

    public FaultStallBackupProcessor() {
    }

    FaultStallBackupProcessor(long stallId, long sleepMs) {
        this.stallId = stallId;
        this.sleepMs = sleepMs;
    }

    @Override
    public long[] process(Map.Entry<Object, Object> entry) {
        Faults.requireEnabled("FaultStallBackupProcessor");
        Faults.stallSleeping(stallId);
        try {
            Thread.sleep(sleepMs);
        } catch (InterruptedException interrupted) {
            Thread.currentThread().interrupt();
        } finally {
            Faults.stallDone(stallId);
        }
        entry.setValue(stallId);
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
        return ProcessorFactory.FAULT_STALL_BACKUP_PROCESSOR;
    }

    @Override
    public void writeData(ObjectDataOutput out) throws IOException {
        out.writeLong(stallId);
        out.writeLong(sleepMs);
    }

    @Override
    public void readData(ObjectDataInput in) throws IOException {
        stallId = in.readLong();
        sleepMs = in.readLong();
    }
}
