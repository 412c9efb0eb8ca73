package ratelimit.store;

import com.hazelcast.cluster.Member;
import com.hazelcast.core.HazelcastInstance;
import com.hazelcast.partition.Partition;
import java.util.HashSet;
import java.util.Set;
import java.util.function.BooleanSupplier;
import java.util.function.IntSupplier;
import java.util.logging.Logger;

/**
 * Holds an initial load back until the cluster it fills is whole and settled: at least
 * the members it was told to expect ({@code hazelcast.initial.min.cluster.size}), the
 * partitions spread over all of them, and none migrating.
 *
 * <p>A member accepts clients as soon as it has joined, before the others have (the
 * minimum size only holds back its own start), so a replica that reconnects while a
 * restarted cluster forms creates the registry maps on one member, and that starts their
 * EAGER load. A load that overlapped members joining (partitions moving under it) was
 * measured to lose entries; waiting here, in the load's own thread (never a partition
 * thread), makes the load start on the final partition table. Until it is done the map
 * answers "not loaded yet", and callers retry.
 */
final class ClusterReadiness {

    private static final Logger LOG = Logger.getLogger(ClusterReadiness.class.getName());
    static final String MIN_SIZE_PROPERTY = "hazelcast.initial.min.cluster.size";
    /** Longer than any member start measured here (about 20 s for three at once). */
    static final long DEFAULT_WAIT_MILLIS = 300_000;
    private static final long POLL_MILLIS = 100;

    private final IntSupplier members;
    private final int expected;
    private final BooleanSupplier settled;
    private final long waitMillis;

    ClusterReadiness(IntSupplier members, int expected, BooleanSupplier settled, long waitMillis) {
        this.members = members;
        this.expected = Math.max(1, expected);
        this.settled = settled;
        this.waitMillis = waitMillis;
    }

    /** Readiness of the cluster of {@code instance}, as its configuration expects it. */
    static ClusterReadiness of(HazelcastInstance instance) {
        String minSize = instance.getConfig().getProperty(MIN_SIZE_PROPERTY);
        int expected = minSize == null || minSize.isBlank() ? 1 : Integer.parseInt(minSize.trim());
        return new ClusterReadiness(
                () -> instance.getCluster().getMembers().size(),
                expected,
                () -> everyMemberOwnsPartitions(instance) && instance.getPartitionService().isClusterSafe(),
                DEFAULT_WAIT_MILLIS);
    }

    /**
     * Whether the partition table has been spread over every member. A table assigned
     * while the cluster had one member (any partition operation assigns it) is rebalanced
     * only a moment after the others join, and the cluster counts as safe in between.
     */
    private static boolean everyMemberOwnsPartitions(HazelcastInstance instance) {
        Set<Member> owners = new HashSet<>();
        for (Partition partition : instance.getPartitionService().getPartitions()) {
            owners.add(partition.getOwner());
        }
        return owners.containsAll(instance.getCluster().getMembers());
    }

    boolean ready() {
        return members.getAsInt() >= expected && settled.getAsBoolean();
    }

    /**
     * Returns once the cluster is whole and settled; throws when it is not within the
     * wait (the load then fails and is tried again by the next use of the map).
     */
    void await(String what) {
        long deadline = System.nanoTime() + waitMillis * 1_000_000;
        boolean told = false;
        while (!ready()) {
            if (System.nanoTime() - deadline > 0) {
                throw new IllegalStateException(what + ": the cluster has " + members.getAsInt()
                        + " of " + expected + " members or partitions not yet spread over them after "
                        + waitMillis + " ms; not loading a partial registry");
            }
            if (!told) {
                LOG.info(what + ": waiting for " + expected + " members, the partitions spread over them and no migration before loading");
                told = true;
            }
            try {
                Thread.sleep(POLL_MILLIS);
            } catch (InterruptedException interrupted) {
                Thread.currentThread().interrupt();
                throw new IllegalStateException(what + ": interrupted while waiting for the cluster", interrupted);
            }
        }
    }
}
