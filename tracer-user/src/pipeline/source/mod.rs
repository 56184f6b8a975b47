//! Where a session's steps come from: the kernel and the host ([`live`]), or a recorded trace
//! ([`replay`]). A source only says what happened, one [`Step`] at a time; the pipeline
//! (pipeline/core.rs) does the same with every step whichever source said it.
pub mod live;
pub mod replay;
pub mod stacks;

use crate::{
    host::procfs::Procfs,
    kernel::sampler::Snapshot,
    model::table::{Ended, ProcessTable, RoundReport},
    pipeline::core::Pipeline,
    pipeline::sink::{EndReason, SessionEnd, SessionInfo},
    pipeline::step::Step,
};

/// The source of one session.
pub enum Source<'s> {
    Live(Box<live::LiveSource>),
    /// Borrowed: what the replay counted (samples, the summary, warnings) is read after the
    /// session.
    Replay(&'s mut replay::ReplaySource),
}

impl Source<'_> {
    pub fn info(&self) -> SessionInfo {
        match self {
            Self::Live(l) => l.info().clone(),
            Self::Replay(r) => r.info(),
        }
    }

    /// The next step, or None at the end. `table` is the model as the previous steps left
    /// it.
    pub async fn next_step(&mut self, table: &ProcessTable) -> anyhow::Result<Option<Step>> {
        match self {
            Self::Live(l) => l.next_step(table).await,
            Self::Replay(r) => r.next_step(),
        }
    }

    /// The sink asked to stop (a replay has nothing to stop: it reads to the end).
    pub fn stop(&mut self, reason: EndReason) {
        if let Self::Live(l) = self {
            l.stop(reason);
        }
    }

    pub fn end(&self, table: &ProcessTable) -> SessionEnd {
        match self {
            Self::Live(l) => l.end(table),
            Self::Replay(r) => r.end(),
        }
    }

    /// The host's /proc, for first-sight lookups (none offline).
    pub fn procfs(&self) -> Option<&Procfs> {
        match self {
            Self::Live(l) => Some(l.procfs()),
            Self::Replay(_) => None,
        }
    }

    /// A round is folded into the table: what the source adds before the sinks see it.
    pub fn after_round(&mut self, p: &mut Pipeline, snap: &Snapshot, report: &RoundReport) {
        match self {
            Self::Live(l) => l.after_round(p, snap, report),
            Self::Replay(r) => r.describe_new(p, &report.new_pids),
        }
    }

    /// A process exec'ed (the table has its new identity).
    pub fn after_exec(&mut self, p: &mut Pipeline, pid: u32) {
        if let Self::Live(l) = self {
            l.after_exec(p, pid);
        }
    }

    /// A process ended; one never seen alive has just entered the table.
    pub fn after_exit(&mut self, p: &mut Pipeline, ended: Option<Ended>) {
        if let (Self::Replay(r), Some(e)) = (self, ended)
            && e.first_sight
        {
            r.describe_new(p, &[e.pid]);
        }
    }
}
