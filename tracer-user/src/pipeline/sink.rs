//! What the pipeline hands its sinks (the commands' renderers): one [`Happening`] at a time,
//! the same whether a live session or a replayed trace produced it.
use std::time::Duration;

use crate::{
    detector::VerdictChange,
    host::memcg::MemcgEvent,
    kernel::budget::{BudgetEvent, OverheadStatus},
    kernel::sampler::Snapshot,
    model::table::{Ended, ProcessTable, RoundReport},
    pipeline::context::Context,
    trace::OomRecord,
};

/// Why the loop ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndReason {
    Duration,
    Signal,
    Sink,
    /// A replayed trace ran out of lines.
    EndOfTrace,
}

impl EndReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Duration => "duration",
            Self::Signal => "signal",
            Self::Sink => "user",
            Self::EndOfTrace => "end of trace",
        }
    }
}

/// How and when the session ended, for the sinks' last word.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SessionEnd {
    pub reason: EndReason,
    /// Session time (seconds, ms precision) of the end: now for a live session, the last
    /// moment a replayed trace speaks of.
    pub t: f64,
}

/// What happened, as sinks see it.
pub enum Happening<'a> {
    Round {
        snap: &'a Snapshot,
        report: &'a RoundReport,
        /// Verdicts that changed this round.
        verdicts: &'a [VerdictChange],
        /// Processes that started or stopped being at risk of meeting their memory cgroup's
        /// limit this round (model/risk.rs).
        risks: &'a [crate::model::risk::RiskChange],
        /// The kernel programs' cost and the hooks the budget has paused.
        overhead: &'a OverheadStatus,
    },
    /// The overhead budget paused or resumed a hook, at session time `t`.
    Budget { t: f64, event: &'a BudgetEvent },
    /// A process exec'ed (the table has its new name, command line and cgroup already).
    Exec {
        pid: u32,
        comm: &'a str,
        t_mono: f64,
    },
    /// An OOM kill, with the post-mortem the pipeline built once for every sink
    /// (pipeline/postmortem.rs).
    Oom(&'a OomRecord),
    /// A process ended: the table has already folded its final counters in (it is in the
    /// graveyard). `ended` is None when the kernel had no counters for it.
    Exit {
        pid: u32,
        comm: &'a str,
        t_mono: f64,
        ended: Option<Ended>,
    },
    /// A memory-cgroup or pressure event at session time `t` (event-driven watchers, see
    /// memcg/watch.rs, or the reclaim the table summed for a round).
    Memcg { t: f64, event: &'a MemcgEvent },
    /// A memory cgroup made, removed or freed, at session time `t` (the node model has it).
    Cgroup {
        t: f64,
        change: &'a crate::model::cgroups::CgroupChange,
    },
    /// Growth-site stacks that are new or gained samples, at session time `t`.
    Stacks {
        t: f64,
        update: &'a crate::model::sites::StackUpdate,
    },
    /// The node's own memory at session time `t`: the reading, the node as views show it
    /// (with its series' verdicts) and the verdicts that changed with this reading.
    Node {
        t: f64,
        reading: &'a crate::host::node::NodeReading,
        view: &'a crate::model::node::NodeView,
        changes: &'a [crate::model::node::NodeVerdictChange],
    },
}

pub trait Sink {
    /// Called once before the first step (after attach, for a live session).
    fn start(&mut self, _s: &SessionInfo) -> anyhow::Result<()> {
        Ok(())
    }
    /// `ctx` holds the lookups every sink shares (limits, identities).
    fn handle(
        &mut self,
        ctx: &mut Context,
        table: &ProcessTable,
        what: Happening<'_>,
    ) -> anyhow::Result<()>;
    /// Whether the sink uses the verdicts and limit risks refreshed every round (verdict
    /// changes, each process's latest verdict in a view). One that judges only at the end (`report`) says
    /// no, which spares the detector's work every round and changes nothing else.
    fn follows_verdicts(&self) -> bool {
        true
    }
    /// Whether the sink wants the session to stop (e.g. the user pressed `q`).
    fn wants_stop(&mut self) -> bool {
        false
    }
    fn finish(
        &mut self,
        ctx: &mut Context,
        table: &ProcessTable,
        end: SessionEnd,
    ) -> anyhow::Result<()>;
}

/// Facts about the session, for headers.
#[derive(Clone, Debug)]
pub struct SessionInfo {
    /// Wall clock at session start; session times count from it.
    pub start_unix_ms: u64,
    /// CLOCK_MONOTONIC seconds at session start (0 for a replayed trace, whose times are
    /// session times already).
    pub t0_mono: f64,
    pub interval: Duration,
    pub rss_source: crate::kernel::loader::RssSource,
    /// Programs attached (none when replaying).
    pub attached: Vec<&'static str>,
}
