//! Prometheus metrics of `leaktracer daemon` (prometheus-client). Names follow Prometheus
//! conventions (base units, `_total` counters) and cAdvisor's `namespace`/`pod`/`container`
//! labels. Cardinality is bounded: per-container series for the containers of the top-N
//! growing processes, per-process verdicts for those top-N only, and no pid labels.
use std::sync::atomic::AtomicU64;

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::{Registry, Unit},
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ContainerLabels {
    pub namespace: String,
    pub pod: String,
    pub container: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VerdictLabels {
    pub namespace: String,
    pub pod: String,
    pub container: String,
    pub comm: String,
    pub verdict: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ContainerEventLabels {
    pub namespace: String,
    pub pod: String,
    pub container: String,
    pub event: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallLabels {
    pub call: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HookLabels {
    pub hook: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CacheLabels {
    pub cache: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SeriesVerdictLabels {
    pub series: String,
    pub verdict: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MapLabels {
    pub map: String,
}

type GaugeF = Gauge<f64, AtomicU64>;

pub struct Metrics {
    pub registry: Registry,
    pub container_private_bytes: Family<ContainerLabels, GaugeF>,
    pub container_growth: Family<ContainerLabels, GaugeF>,
    pub leak_verdict: Family<VerdictLabels, Gauge>,
    pub leak_confidence: Family<ContainerLabels, GaugeF>,
    pub time_to_limit: Family<ContainerLabels, GaugeF>,
    pub limit_headroom: Family<ContainerLabels, GaugeF>,
    pub oom_kills: Family<ContainerLabels, Counter>,
    pub memcg_events: Family<ContainerEventLabels, Counter>,
    pub memcg_reclaim_stall: Family<ContainerLabels, Counter<f64, AtomicU64>>,
    pub events_lost: Family<ReasonLabels, Counter>,
    pub map_entries: Family<MapLabels, Gauge>,
    pub map_capacity: Family<MapLabels, Gauge>,
    pub tracked_processes: Gauge,
    pub bpf_cpu_ratio: GaugeF,
    pub hook_paused: Family<HookLabels, Gauge>,
    pub hook_pauses: Family<HookLabels, Counter>,
    pub process_exits: Counter,
    pub syscalls: Family<CallLabels, Counter>,
    pub self_rss: Gauge,
    pub self_cpu: Counter<f64, AtomicU64>,
    pub node_memory: Family<KindLabels, Gauge>,
    pub slab_bytes: Family<CacheLabels, Gauge>,
    pub memcg_zombies: Gauge,
    pub node_verdict: Family<SeriesVerdictLabels, Gauge>,
    pub go_heap_live: Family<ContainerLabels, Gauge>,
    pub go_goroutines: Family<ContainerLabels, Gauge>,
    pub go_gc_cycles: Family<ContainerLabels, Counter>,
    pub growth_profiles: Family<OutcomeLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut r = Registry::with_prefix("leaktracer");
        let m = Self {
            container_private_bytes: Family::default(),
            container_growth: Family::default(),
            leak_verdict: Family::default(),
            leak_confidence: Family::default(),
            time_to_limit: Family::default(),
            limit_headroom: Family::default(),
            oom_kills: Family::default(),
            memcg_events: Family::default(),
            memcg_reclaim_stall: Family::default(),
            events_lost: Family::default(),
            map_entries: Family::default(),
            map_capacity: Family::default(),
            tracked_processes: Gauge::default(),
            bpf_cpu_ratio: GaugeF::default(),
            hook_paused: Family::default(),
            hook_pauses: Family::default(),
            process_exits: Counter::default(),
            syscalls: Family::default(),
            self_rss: Gauge::default(),
            self_cpu: Counter::default(),
            node_memory: Family::default(),
            slab_bytes: Family::default(),
            memcg_zombies: Gauge::default(),
            node_verdict: Family::default(),
            go_heap_live: Family::default(),
            growth_profiles: Family::default(),
            go_goroutines: Family::default(),
            go_gc_cycles: Family::default(),
            registry: Registry::default(),
        };
        r.register_with_unit(
            "container_private",
            "Private memory (anon + shmem + swap) of the container's processes",
            Unit::Bytes,
            m.container_private_bytes.clone(),
        );
        r.register(
            "container_growth_bytes_per_second",
            "Growth rate of the container's fastest-growing process (robust slope)",
            m.container_growth.clone(),
        );
        r.register(
            "leak_verdict",
            "1 for the verdict of each of the top-N growing processes",
            m.leak_verdict.clone(),
        );
        r.register(
            "leak_confidence",
            "Confidence (0..1) of a leaking/growing verdict in the container",
            m.leak_confidence.clone(),
        );
        r.register_with_unit(
            "time_to_limit",
            "Time until the container's memory limit (or the node's memory) is reached at the current growth",
            Unit::Seconds,
            m.time_to_limit.clone(),
        );
        r.register(
            "limit_headroom_ratio",
            "Highest recent peak of private memory over the memory cgroup's limit (0..1, 0.94 = 94%), of the container's processes at risk or among the top-N; see --risk-margin",
            m.limit_headroom.clone(),
        );
        r.register(
            "oom_kills",
            "OOM kills, by the victim's container",
            m.oom_kills.clone(),
        );
        r.register(
            "memcg_events",
            "Memory-cgroup events (v1 OOM notifications and usage thresholds; v2 memory.events high/max/oom/oom_kill/oom_group_kill; direct reclaim runs; PSI pressure)",
            m.memcg_events.clone(),
        );
        r.register_with_unit(
            "memcg_reclaim_stall",
            "Time the container's allocations spent in memory-cgroup direct reclaim (at its limit or memory.high)",
            Unit::Seconds,
            m.memcg_reclaim_stall.clone(),
        );
        r.register(
            "growth_profiles",
            "Growth profiles of processes judged leaking, by outcome: captured (kept, served at /debug/pprof/leaks), failed, skipped (too many waiting)",
            m.growth_profiles.clone(),
        );
        r.register(
            "kernel_events_lost",
            "Kernel-side losses: full maps, ring buffer drops, failed reads",
            m.events_lost.clone(),
        );
        r.register(
            "kernel_map_entries",
            "Entries in leaktracer's kernel maps",
            m.map_entries.clone(),
        );
        r.register(
            "kernel_map_capacity",
            "Capacity of leaktracer's kernel maps",
            m.map_capacity.clone(),
        );
        r.register_with_unit(
            "node_memory",
            "The node's memory by kind, from /proc/meminfo (total, free, available, used, anon, file, shmem, slab_reclaimable, slab_unreclaimable, kernel_stack, page_tables, percpu, vmalloc_used) and unattributed: used memory that neither processes' anonymous memory nor the kernel's counters explain",
            Unit::Bytes,
            m.node_memory.clone(),
        );
        r.register_with_unit(
            "slab",
            "Memory held by the biggest slab caches (top 10, from /proc/slabinfo)",
            Unit::Bytes,
            m.slab_bytes.clone(),
        );
        r.register(
            "memcg_zombies",
            "Memory cgroups removed but still held by the kernel (v1: /proc/cgroups against the hierarchy's directories; v2: nr_dying_descendants)",
            m.memcg_zombies.clone(),
        );
        r.register(
            "node_verdict",
            "1 for each node series (a meminfo kind, unattributed, slab:CACHE, memcg_zombies) judged growing or leaking",
            m.node_verdict.clone(),
        );
        r.register_with_unit(
            "go_heap_live",
            "Heap the last GC left live, summed over the container's Go processes (read from each Go runtime; docs/go-runtime.md)",
            Unit::Bytes,
            m.go_heap_live.clone(),
        );
        r.register(
            "go_goroutines",
            "Goroutines of the container's Go processes",
            m.go_goroutines.clone(),
        );
        r.register(
            "go_gc_cycles",
            "GC cycles the container's Go processes completed while leaktracer watched",
            m.go_gc_cycles.clone(),
        );
        r.register(
            "tracked_processes",
            "Processes leaktracer tracks",
            m.tracked_processes.clone(),
        );
        r.register(
            "bpf_cpu_ratio",
            "Share of the node's CPU (0..1) leaktracer's kernel programs used in the last measurement window (the programs' own timing)",
            m.bpf_cpu_ratio.clone(),
        );
        r.register(
            "hook_paused",
            "1 while the overhead budget (--max-overhead) has this syscall hook paused (its counts are then incomplete)",
            m.hook_paused.clone(),
        );
        r.register(
            "hook_pauses",
            "Times the overhead budget paused this syscall hook",
            m.hook_pauses.clone(),
        );
        r.register(
            "process_exits",
            "Processes that ended, however short their life (each with its final counters)",
            m.process_exits.clone(),
        );
        r.register(
            "syscalls",
            "Traced memory syscalls (mmap, munmap, brk, mremap, madvise) of every process on the node, short-lived ones included",
            m.syscalls.clone(),
        );
        r.register_with_unit(
            "self_resident_memory",
            "leaktracer's own resident memory",
            Unit::Bytes,
            m.self_rss.clone(),
        );
        r.register_with_unit(
            "self_cpu",
            "CPU time leaktracer itself used",
            Unit::Seconds,
            m.self_cpu.clone(),
        );
        Self { registry: r, ..m }
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Encoding into a String cannot fail for these metric types.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// The node's series: every meminfo kind, the biggest slab caches, the zombie memory cgroups
/// and the node series judged growing or leaking (replaced each reading: a cache that leaves
/// the top 10 leaves the metric).
pub fn set_node(m: &Metrics, v: &crate::model::node::NodeView) {
    let mem = &v.memory;
    let kinds = [
        ("total", mem.total),
        ("free", mem.free),
        ("available", mem.available),
        ("used", v.used),
        ("anon", mem.anon),
        ("file", mem.file),
        ("shmem", mem.shmem),
        ("slab_reclaimable", mem.slab_reclaimable),
        ("slab_unreclaimable", mem.slab_unreclaimable),
        ("kernel_stack", mem.kernel_stack),
        ("page_tables", mem.page_tables),
        ("percpu", mem.percpu),
        ("vmalloc_used", mem.vmalloc_used),
        ("unattributed", v.unattributed),
    ];
    for (kind, bytes) in kinds {
        m.node_memory
            .get_or_create(&KindLabels {
                kind: kind.to_string(),
            })
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
    }
    m.slab_bytes.clear();
    for c in &v.slab_top {
        m.slab_bytes
            .get_or_create(&CacheLabels {
                cache: c.name.clone(),
            })
            .set(i64::try_from(c.bytes).unwrap_or(i64::MAX));
    }
    if let Some(z) = v.zombies {
        m.memcg_zombies
            .set(i64::try_from(z.zombies).unwrap_or(i64::MAX));
    }
    m.node_verdict.clear();
    for x in &v.verdicts {
        m.node_verdict
            .get_or_create(&SeriesVerdictLabels {
                series: x.series.clone(),
                verdict: x.verdict.as_str().to_string(),
            })
            .set(1);
    }
}
