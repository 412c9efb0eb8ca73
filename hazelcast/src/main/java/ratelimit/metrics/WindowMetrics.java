package ratelimit.metrics;

import com.hazelcast.core.HazelcastInstance;
import com.hazelcast.core.HazelcastInstanceAware;
import com.hazelcast.core.LifecycleEvent;
import com.hazelcast.core.LifecycleListener;
import com.hazelcast.instance.impl.HazelcastInstanceImpl;
import com.hazelcast.instance.impl.HazelcastInstanceProxy;
import com.hazelcast.internal.partition.IPartitionService;
import com.hazelcast.internal.serialization.Data;
import com.hazelcast.map.impl.MapService;
import com.hazelcast.map.impl.MapServiceContext;
import com.hazelcast.map.impl.record.Record;
import com.hazelcast.map.impl.recordstore.RecordStore;
import com.hazelcast.spi.impl.NodeEngineImpl;
import java.lang.management.ManagementFactory;
import java.util.Iterator;
import java.util.Map;
import java.util.logging.Level;
import java.util.logging.Logger;
import javax.management.JMException;
import javax.management.MBeanServer;
import javax.management.ObjectName;
import ratelimit.processor.WindowShard;

/**
 * Counts the windows a member holds in the entry processor's shard entries, owned and
 * backup, and the work of their sweep, as the MBean {@code ratelimit:type=Windows,instance=…}
 * that the member's JMX exporter publishes ({@code ratelimit_member_windows{role}} and
 * {@code ratelimit_member_sweep_*}, see {@code hazelcast/jmx-exporter.yml}).
 *
 * <p>Why not Hazelcast's map metrics: they count entries, and a shard entry holds any
 * number of windows (all of them, with one shard), and an OBJECT entry's memory cost is
 * reported as 0. So a read walks the record stores of every map whose name ends in
 * {@code .shards} on this member, partition by partition, and adds up each shard's
 * {@link WindowShard#windowCount()}: a read of a few hundred references per scrape, outside
 * the partition threads, on a concurrent store (a count may be a moment stale, never a
 * reason to block a decision). A partition this member owns counts as owned, any other it
 * holds as backup.
 *
 * <p>Registered by {@code hazelcast/hazelcast.xml} as a lifecycle listener, which Hazelcast
 * hands its instance ({@link HazelcastInstanceAware}); the MBean is registered then, and
 * removed at shutdown.
 */
public final class WindowMetrics implements WindowMetricsMBean, LifecycleListener, HazelcastInstanceAware {

    private static final Logger LOG = Logger.getLogger(WindowMetrics.class.getName());
    private static final String SHARDS_SUFFIX = ".shards";

    /** A scrape reads the three counts one after the other: one walk serves them all. */
    private static final long COUNT_REUSED_FOR_NANOS = 1_000_000_000L;

    private volatile NodeEngineImpl engine;
    private volatile ObjectName name;
    private volatile long[] lastCount;
    private volatile long lastCountAt;

    @Override
    public void setHazelcastInstance(HazelcastInstance instance) {
        HazelcastInstanceImpl impl = instance instanceof HazelcastInstanceProxy proxy ? proxy.getOriginal()
                : instance instanceof HazelcastInstanceImpl direct ? direct : null;
        if (impl == null) {
            LOG.warning("window metrics: not a member instance, nothing published");
            return;
        }
        engine = impl.node.getNodeEngine();
        try {
            ObjectName objectName = ObjectName.getInstance("ratelimit:type=Windows,instance="
                    + ObjectName.quote(instance.getName()));
            MBeanServer server = ManagementFactory.getPlatformMBeanServer();
            server.registerMBean(this, objectName);
            name = objectName;
        } catch (JMException e) {
            LOG.log(Level.WARNING, "window metrics: the MBean could not be registered", e);
        }
    }

    @Override
    public void stateChanged(LifecycleEvent event) {
        ObjectName registered = name;
        if (event.getState() == LifecycleEvent.LifecycleState.SHUTTING_DOWN && registered != null) {
            try {
                ManagementFactory.getPlatformMBeanServer().unregisterMBean(registered);
            } catch (JMException e) {
                LOG.log(Level.FINE, "window metrics: already unregistered", e);
            }
            name = null;
        }
    }

    @Override
    public long getOwnedWindows() {
        return recentCount()[0];
    }

    @Override
    public long getBackupWindows() {
        return recentCount()[1];
    }

    @Override
    public long getOwnedShards() {
        return recentCount()[2];
    }

    /** {@link #count()}, walked again only when the last walk is over a second old. */
    private long[] recentCount() {
        long now = System.nanoTime();
        long[] last = lastCount;
        if (last == null || now - lastCountAt > COUNT_REUSED_FOR_NANOS) {
            last = count();
            lastCount = last;
            lastCountAt = now;
        }
        return last;
    }

    @Override
    public double getSweepSeconds() {
        return WindowShard.sweepNanos() / 1e9;
    }

    @Override
    public long getSweepExamined() {
        return WindowShard.sweepExamined();
    }

    @Override
    public long getSweepDropped() {
        return WindowShard.sweepDropped();
    }

    @Override
    public long getRecentCallBytes() {
        return recentCount()[3];
    }

    @Override
    public long getRecentCalls() {
        return recentCount()[4];
    }

    /**
     * {owned windows, backup windows, owned shard entries, bytes and count of the recent calls
     * kept in every shard entry held (owned and backup)} on this member now.
     */
    long[] count() {
        long[] counts = new long[5];
        NodeEngineImpl nodeEngine = engine;
        if (nodeEngine == null) {
            return counts;
        }
        MapService service = nodeEngine.getService(MapService.SERVICE_NAME);
        MapServiceContext context = service.getMapServiceContext();
        IPartitionService partitions = nodeEngine.getPartitionService();
        for (int id = 0; id < partitions.getPartitionCount(); id++) {
            boolean owned = partitions.getPartition(id).isLocal();
            for (RecordStore<?> store : context.getPartitionContainer(id).getMaps().values()) {
                if (!store.getName().endsWith(SHARDS_SUFFIX)) {
                    continue;
                }
                Iterator<Map.Entry<Data, Record>> records = store.getStorage().mutationTolerantIterator();
                while (records.hasNext()) {
                    if (records.next().getValue().getValue() instanceof WindowShard shard) {
                        counts[owned ? 0 : 1] += shard.windowCount();
                        counts[2] += owned ? 1 : 0;
                        counts[3] += shard.recentCallBytes();
                        counts[4] += shard.recentCallCount();
                    }
                }
            }
        }
        return counts;
    }
}
