package ratelimit.fault;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.hazelcast.internal.nio.BufferObjectDataInput;
import com.hazelcast.internal.nio.BufferObjectDataOutput;
import com.hazelcast.internal.serialization.InternalSerializationService;
import com.hazelcast.internal.serialization.impl.DefaultSerializationServiceBuilder;
import java.io.IOException;
import java.util.AbstractMap.SimpleEntry;
import java.util.Map;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import ratelimit.processor.ProcessorFactory;

/**
 * The stall hook: refused, changing nothing, unless the member runs with
 * {@code -Dratelimit.faults=on} (off by default); when on, the owner writes the marker and
 * hands its backup the sleep, which the backup member records for {@code ASK}.
 */
class FaultStallProcessorTest {

    @AfterEach
    void hooksOff() {
        System.clearProperty(Faults.PROPERTY);
    }

    /** Without the property, every part of the hook is refused with an error naming it, and nothing is written. */
    @Test
    void offByDefaultAndRefusedWithAClearError() {
        assertNull(System.getProperty(Faults.PROPERTY), "the tests' JVM runs without the property");
        assertFalse(Faults.enabled());
        Map.Entry<Object, Object> entry = new SimpleEntry<>("k", null);
        for (FaultStallProcessor processor : new FaultStallProcessor[] {
            new FaultStallProcessor(FaultStallProcessor.STALL, 7L, 10L),
            new FaultStallProcessor(FaultStallProcessor.ASK, 7L, 0L)}) {
            IllegalStateException refused = assertThrows(IllegalStateException.class, () -> processor.process(entry));
            assertTrue(refused.getMessage().contains("-Dratelimit.faults=on"), refused.getMessage());
        }
        IllegalStateException refused = assertThrows(IllegalStateException.class,
                () -> new FaultStallBackupProcessor(7L, 10L).process(entry));
        assertTrue(refused.getMessage().contains("fault injection is off"), refused.getMessage());
        assertNull(entry.getValue(), "nothing written");
        assertEquals(Faults.STALL_UNKNOWN, Faults.stallState(7L), "no sleep recorded");
    }

    /** Any value but "on" leaves the hook off. */
    @Test
    void onlyOnTurnsItOn() {
        for (String value : new String[] {"", "true", "ON", "1"}) {
            System.setProperty(Faults.PROPERTY, value);
            assertFalse(Faults.enabled(), value);
        }
        System.setProperty(Faults.PROPERTY, "on");
        assertTrue(Faults.enabled());
    }

    /** On: the owner writes the marker and answers the stall's id; its backup sleeps, then writes the same marker. */
    @Test
    void onTheOwnerWritesTheMarkerAndTheBackupSleeps() {
        System.setProperty(Faults.PROPERTY, Faults.ON);
        long stallId = System.nanoTime();
        Map.Entry<Object, Object> entry = new SimpleEntry<>("k", null);
        FaultStallProcessor stall = new FaultStallProcessor(FaultStallProcessor.STALL, stallId, 120L);
        assertArrayEquals(new long[] {stallId}, stall.process(entry));
        assertEquals(stallId, entry.getValue(), "marker written, so that the backup is sent");

        FaultStallProcessor ask = new FaultStallProcessor(FaultStallProcessor.ASK, stallId, 0L);
        assertNull(ask.getBackupProcessor(), "asking changes nothing: no backup");
        assertArrayEquals(new long[] {Faults.STALL_UNKNOWN}, ask.process(new SimpleEntry<>("a", null)));

        Map.Entry<Object, Object> copy = new SimpleEntry<>("k", null);
        long started = System.nanoTime();
        assertNull(assertInstanceOf(FaultStallBackupProcessor.class, stall.getBackupProcessor()).process(copy));
        long sleptMs = (System.nanoTime() - started) / 1_000_000;
        assertTrue(sleptMs >= 120, "slept " + sleptMs + " ms");
        assertEquals(stallId, copy.getValue());
        assertArrayEquals(new long[] {Faults.STALL_DONE}, ask.process(new SimpleEntry<>("a", null)));
    }

    /** A sleep out of range, and an unknown action, are refused. */
    @Test
    void badCallsAreRefused() {
        System.setProperty(Faults.PROPERTY, Faults.ON);
        Map.Entry<Object, Object> entry = new SimpleEntry<>("k", null);
        assertThrows(IllegalArgumentException.class,
                () -> new FaultStallProcessor(FaultStallProcessor.STALL, 1L, -1L).process(entry));
        assertThrows(IllegalArgumentException.class,
                () -> new FaultStallProcessor(FaultStallProcessor.STALL, 1L, FaultStallProcessor.MAX_SLEEP_MS + 1)
                        .process(entry));
        assertThrows(IllegalArgumentException.class, () -> new FaultStallProcessor(9, 1L, 0L).process(entry));
        assertNull(entry.getValue());
    }

    /** Both classes round-trip their wire format through the factory's ids. */
    @Test
    void theWireFormatRoundTrips() throws IOException {
        System.setProperty(Faults.PROPERTY, Faults.ON);
        InternalSerializationService ss = new DefaultSerializationServiceBuilder()
                .addDataSerializableFactory(ProcessorFactory.FACTORY_ID, new ProcessorFactory()).build();
        FaultStallProcessor stall = new FaultStallProcessor(FaultStallProcessor.STALL, 5L, 0L);
        BufferObjectDataOutput out = ss.createObjectDataOutput();
        stall.writeData(out);
        BufferObjectDataInput in = ss.createObjectDataInput(out.toByteArray());
        FaultStallProcessor read = new FaultStallProcessor();
        read.readData(in);
        Map.Entry<Object, Object> entry = new SimpleEntry<>("k", null);
        assertArrayEquals(new long[] {5L}, read.process(entry));

        FaultStallBackupProcessor backup = ss.toObject(ss.toData(stall.getBackupProcessor()));
        Map.Entry<Object, Object> copy = new SimpleEntry<>("k", null);
        backup.process(copy);
        assertEquals(5L, copy.getValue());
    }
}
