package ratelimit.store;

import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.Test;

class ClusterReadinessTest {

    /** Ready only with every expected member and no partition moving. */
    @Test
    void readyNeedsEveryMemberAndNoMigration() {
        assertFalse(new ClusterReadiness(() -> 2, 3, () -> true, 0).ready());
        assertFalse(new ClusterReadiness(() -> 3, 3, () -> false, 0).ready());
        assertTrue(new ClusterReadiness(() -> 3, 3, () -> true, 0).ready());
        assertTrue(new ClusterReadiness(() -> 4, 3, () -> true, 0).ready());
    }

    /** The wait returns once the last member has joined and the partitions settled. */
    @Test
    void awaitReturnsOnceTheClusterIsWhole() {
        AtomicInteger polls = new AtomicInteger();
        ClusterReadiness readiness = new ClusterReadiness(
                () -> polls.incrementAndGet() >= 3 ? 3 : 1, 3, () -> true, 10_000);
        readiness.await("test");
        assertTrue(polls.get() >= 3);
    }

    /** A cluster that never becomes whole fails the load instead of loading part of it. */
    @Test
    void awaitFailsWhenTheClusterStaysPartial() {
        ClusterReadiness readiness = new ClusterReadiness(() -> 1, 3, () -> true, 300);
        IllegalStateException failure = assertThrows(IllegalStateException.class, () -> readiness.await("test"));
        assertTrue(failure.getMessage().contains("1 of 3 members"), failure.getMessage());
    }
}
