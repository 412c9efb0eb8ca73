package ratelimit.processor;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;

import com.hazelcast.nio.serialization.IdentifiedDataSerializable;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.stream.Stream;
import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestFactory;
import ratelimit.fault.FaultStallBackupProcessor;
import ratelimit.fault.FaultStallProcessor;
import ratelimit.fault.Faults;

/**
 * The entry processor's wire contract, Java side: the constants of this package against
 * {@code tests/vectors/processor_wire.csv}, the one place the contract is written (the
 * Python unit tests check {@code limiter/processor_wire.py} and {@code hazelcast.xml}
 * against the same file).
 */
class WireContractTest {

    /** Each number of the contract that Java has, by its name in the contract file. */
    private static final Map<String, Long> JAVA_SIDE = new LinkedHashMap<>();

    static {
        JAVA_SIDE.put("factory_id", (long) ProcessorFactory.FACTORY_ID);
        JAVA_SIDE.put("shard_processor", (long) ProcessorFactory.SHARD_PROCESSOR);
        JAVA_SIDE.put("shard_backup_processor", (long) ProcessorFactory.SHARD_BACKUP_PROCESSOR);
        JAVA_SIDE.put("window_shard", (long) ProcessorFactory.WINDOW_SHARD);
        JAVA_SIDE.put("shard_window_reader", (long) ProcessorFactory.SHARD_WINDOW_READER);
        JAVA_SIDE.put("shard_refund_processor", (long) ProcessorFactory.SHARD_REFUND_PROCESSOR);
        JAVA_SIDE.put("shard_fan_out_processor", (long) ProcessorFactory.SHARD_FAN_OUT_PROCESSOR);
        JAVA_SIDE.put("shard_fan_out_backup_processor", (long) ProcessorFactory.SHARD_FAN_OUT_BACKUP_PROCESSOR);
        JAVA_SIDE.put("fault_stall_processor", (long) ProcessorFactory.FAULT_STALL_PROCESSOR);
        JAVA_SIDE.put("fault_stall_backup_processor", (long) ProcessorFactory.FAULT_STALL_BACKUP_PROCESSOR);
        JAVA_SIDE.put("fault_action_stall", (long) FaultStallProcessor.STALL);
        JAVA_SIDE.put("fault_action_ask", (long) FaultStallProcessor.ASK);
        JAVA_SIDE.put("fault_stall_unknown", Faults.STALL_UNKNOWN);
        JAVA_SIDE.put("fault_stall_sleeping", Faults.STALL_SLEEPING);
        JAVA_SIDE.put("fault_stall_done", Faults.STALL_DONE);
        JAVA_SIDE.put("member_clock", ShardProcessor.MEMBER_CLOCK);
        JAVA_SIDE.put("result_stride_per_limit", (long) ShardProcessor.RESULT_STRIDE_PER_LIMIT);
        JAVA_SIDE.put("no_retry", PolicyRule.NO_RETRY);
        JAVA_SIDE.put("reason_admitted", (long) FixedWindowRule.ADMITTED);
        JAVA_SIDE.put("reason_limit_reached", (long) FixedWindowRule.LIMIT_REACHED);
        JAVA_SIDE.put("reason_cost_over_limit", (long) FixedWindowRule.COST_OVER_LIMIT);
        JAVA_SIDE.put("alignment_clock", (long) FixedWindowRule.CLOCK);
        JAVA_SIDE.put("alignment_first_request", (long) FixedWindowRule.FIRST_REQUEST);
        JAVA_SIDE.put("algorithm_fixed_window", (long) PolicyRule.FIXED_WINDOW);
        JAVA_SIDE.put("algorithm_sliding_window", (long) PolicyRule.SLIDING_WINDOW);
        JAVA_SIDE.put("algorithm_gcra", (long) PolicyRule.GCRA);
    }

    /** The contract file's rows: name to {value, sides}. */
    private static Map<String, String[]> contract() throws IOException {
        Path file = Path.of(System.getProperty("wire.file", "../tests/vectors/processor_wire.csv"));
        Map<String, String[]> rows = new LinkedHashMap<>();
        for (String line : Files.readAllLines(file).stream().skip(1).toList()) {
            if (!line.isBlank()) {
                String[] columns = line.split(",", 4);
                rows.put(columns[0], new String[] {columns[1], columns[2]});
            }
        }
        assertFalse(rows.isEmpty(), "no contract read");
        return rows;
    }

    /** Every number the contract gives Java has a constant here, and each constant a row. */
    @Test
    void everyNumberJavaUsesIsInTheContractAndNoOther() throws IOException {
        Map<String, String[]> rows = contract();
        for (Map.Entry<String, String[]> row : rows.entrySet()) {
            String sides = row.getValue()[1];
            if (sides.equals("both") || sides.equals("java")) {
                assertNotNull(JAVA_SIDE.get(row.getKey()), "no Java constant for " + row.getKey());
            }
        }
        for (String name : JAVA_SIDE.keySet()) {
            assertNotNull(rows.get(name), name + " is not in the contract");
        }
    }

    /** Each Java constant of the wire has the contract's value. */
    @TestFactory
    Stream<DynamicTest> javaConstantsMatchTheContract() throws IOException {
        Map<String, String[]> rows = contract();
        return JAVA_SIDE.entrySet().stream().map(constant -> DynamicTest.dynamicTest(constant.getKey(), () -> {
            String[] row = rows.get(constant.getKey());
            assertNotNull(row, constant.getKey() + " is not in the contract");
            assertEquals(Long.parseLong(row[0]), constant.getValue(), constant.getKey());
        }));
    }

    /** The factory makes each class under its contract id, and nothing under a retired id. */
    @Test
    void theFactoryMakesEachClassUnderItsIdAndNothingUnderARetiredOne() throws IOException {
        Map<String, String[]> rows = contract();
        ProcessorFactory factory = new ProcessorFactory();
        Map<String, Class<?>> classes = Map.of(
                "shard_processor", ShardProcessor.class,
                "shard_backup_processor", ShardBackupProcessor.class,
                "window_shard", WindowShard.class,
                "shard_window_reader", ShardWindowReader.class,
                "shard_refund_processor", ShardRefundProcessor.class,
                "shard_fan_out_processor", ShardFanOutProcessor.class,
                "shard_fan_out_backup_processor", ShardFanOutBackupProcessor.class,
                "fault_stall_processor", FaultStallProcessor.class,
                "fault_stall_backup_processor", FaultStallBackupProcessor.class);
        for (Map.Entry<String, Class<?>> expected : classes.entrySet()) {
            int id = Integer.parseInt(rows.get(expected.getKey())[0]);
            IdentifiedDataSerializable made = factory.create(id);
            assertNotNull(made, expected.getKey());
            assertEquals(expected.getValue(), made.getClass(), expected.getKey());
            assertEquals(id, made.getClassId(), expected.getKey() + ": class id");
            assertEquals(Integer.parseInt(rows.get("factory_id")[0]), made.getFactoryId(), expected.getKey() + ": factory id");
        }
        long retired = rows.values().stream().filter(r -> r[1].equals("retired")).count();
        assertEquals(12, retired, "retired ids");
        for (Map.Entry<String, String[]> row : rows.entrySet()) {
            if (row.getValue()[1].equals("retired")) {
                assertNull(factory.create(Integer.parseInt(row.getValue()[0])), row.getKey() + " is retired");
            }
        }
    }
}
