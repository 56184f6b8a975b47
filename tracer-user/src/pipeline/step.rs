//! What a source says happened, one step at a time (pipeline/source/), for the session loop
//! to apply (pipeline/session.rs).
use crate::{
    host::memcg::MemcgEvent,
    kernel::budget::{BudgetEvent, OverheadStatus},
    kernel::events::OomVictim,
    kernel::sampler::Snapshot,
    model::counters::Counters,
    trace::OomRecord,
};

/// One thing that happened, as a source says it.
pub enum Step {
    /// A sampling round's counters, and the kernel programs' cost at that round.
    Round {
        snap: Snapshot,
        overhead: OverheadStatus,
    },
    /// A process exec'ed: its new name and, when known, its command line and /proc cgroup
    /// file.
    Exec {
        pid: u32,
        comm: String,
        t_mono: f64,
        cmdline: Option<String>,
        cgroup: Option<String>,
    },
    /// A process ended; `counters` are its final ones (None: the kernel had none).
    Exit {
        pid: u32,
        comm: String,
        t_mono: f64,
        counters: Option<Counters>,
    },
    /// The kernel chose an OOM victim: the pipeline builds its post-mortem.
    OomVictim(OomVictim),
    /// An OOM post-mortem built before (a replayed trace's record): handed on as it is.
    OomRecord(OomRecord),
    Memcg {
        t_mono: f64,
        event: MemcgEvent,
    },
    Budget {
        t_mono: f64,
        event: BudgetEvent,
    },
    /// A memory cgroup made, removed or freed (zombies are the removed, not freed ones).
    Cgroup(crate::model::cgroups::CgroupChange),
    /// Growth-site stacks that are new or gained samples (`record --stacks`).
    Stacks {
        t_mono: f64,
        update: crate::model::sites::StackUpdate,
    },
    /// The node's own memory (meminfo, slab caches, zombie memory cgroups), read once a round.
    Node {
        t_mono: f64,
        reading: crate::host::node::NodeReading,
    },
}
