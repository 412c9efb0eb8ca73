package ratelimit.fault;

import com.hazelcast.map.EntryProcessor;
import com.hazelcast.nio.ObjectDataInput;
import com.hazelcast.nio.ObjectDataOutput;
import com.hazelcast.nio.serialization.IdentifiedDataSerializable;
import java.io.IOException;
import java.util.Map;
import ratelimit.processor.ProcessorFactory;

/**
 * A test's hook (off unless {@link Faults#enabled()}): holds back the answer of the calls
 * that follow it on one partition, after their owner applied them.
 *
 * <p>{@link #STALL}: sent to a key of a map of its own whose partition is that of the key
 * to stall. On the partition's owner it writes a marker value (the stall's id), so that
 * its backup, {@link FaultStallBackupProcessor}, goes to the partition's backup member,
 * where it sleeps {@code sleepMs} on that member's partition thread. A partition's backup
 * replica is the same member for every map, and one partition thread serves every map of
 * a partition, so each operation on the partition that the owner runs after this one is
 * applied there, but its synchronous backup waits behind the sleep, and the owner cannot
 * answer its caller until the sleep is over. Answered, by the owner, once its own backup
 * ran: {@code [stallId]}.
 *
 * <p>{@link #ASK}: sent to a key of any member, answers {@code [state]}, the state of stall
 * {@code stallId} on that member ({@link Faults#STALL_UNKNOWN}, {@link Faults#STALL_SLEEPING},
 * {@link Faults#STALL_DONE}): only the stall's backup member knows it, so this tells the
 * test which member that is and when its sleep is over. Changes nothing, so has no backup.
 *
 * <p>Wire format: {@code action} as an int, {@code stallId} and {@code sleepMs} as longs.
 * The ids and numbers are the contract's of {@code tests/vectors/processor_wire.csv}.
 */
public class FaultStallProcessor
        implements EntryProcessor<Object, Object, long[]>, IdentifiedDataSerializable {

    /** Write the marker, and sleep on the backup member. */
    public static final int STALL = 1;
    /** Answer the state of a stall on this member. */
    public static final int ASK = 2;
    /**
     * The longest sleep accepted. A sleep past Hazelcast's backup timeout
     * ({@code hazelcast.operation.backup.timeout.millis}, 5 s by default) holds nothing back
     * longer: the owner then answers without its backup's ack.
     */
    public static final long MAX_SLEEP_MS = 60_000L;

    private int action;
    private long stallId;
    private long sleepMs;

    public FaultStallProcessor() {
    }

    public FaultStallProcessor(int action, long stallId, long sleepMs) {
        this.action = action;
        this.stallId = stallId;
        this.sleepMs = sleepMs;
    }

    @Override
    public long[] process(Map.Entry<Object, Object> entry) {
        Faults.requireEnabled("FaultStallProcessor");
        switch (action) {
            case STALL -> {
                if (sleepMs < 0 || sleepMs > MAX_SLEEP_MS) {
                    throw new IllegalArgumentException("sleepMs " + sleepMs + " is out of 0.." + MAX_SLEEP_MS);
                }
                entry.setValue(stallId);
                return new long[] {stallId};
            }
            case ASK -> {
                return new long[] {Faults.stallState(stallId)};
            }
            default -> throw new IllegalArgumentException("unknown fault action " + action);
        }
    }

    @Override
    public EntryProcessor<Object, Object, long[]> getBackupProcessor() {
        return action == STALL ? new FaultStallBackupProcessor(stallId, sleepMs) : null;
    }

    @Override
    public int getFactoryId() {
        return ProcessorFactory.FACTORY_ID;
    }

    @Override
    public int getClassId() {
        return ProcessorFactory.FAULT_STALL_PROCESSOR;
    }

    @Override
    public void writeData(ObjectDataOutput out) throws IOException {
        out.writeInt(action);
        out.writeLong(stallId);
        out.writeLong(sleepMs);
    }

    @Override
    public void readData(ObjectDataInput in) throws IOException {
        action = in.readInt();
        stallId = in.readLong();
        sleepMs = in.readLong();
    }
}
