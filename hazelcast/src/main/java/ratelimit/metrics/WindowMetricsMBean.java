package ratelimit.metrics;

/** What {@link WindowMetrics} publishes over JMX (see {@code hazelcast/jmx-exporter.yml}). */
public interface WindowMetricsMBean {

    /** Windows held in the shard entries of partitions this member owns. */
    long getOwnedWindows();

    /** Windows held in the shard entries this member keeps as backups. */
    long getBackupWindows();

    /** Shard entries this member owns (holding any number of windows). */
    long getOwnedShards();

    /** Seconds the sweep steps took on this member's partition threads since it started. */
    double getSweepSeconds();

    /** Windows the sweep steps looked at, and dropped (expired), since the member started. */
    long getSweepExamined();

    long getSweepDropped();

    /** Bytes of the recent calls kept in the shard entries this member holds (owned and backup). */
    long getRecentCallBytes();

    /** Recent calls kept in those shard entries (a worker's last changing call each). */
    long getRecentCalls();
}
