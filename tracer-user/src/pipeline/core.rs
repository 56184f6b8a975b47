//! The pipeline's state and steps, the same for every source: the model (process table),
//! the detector's configuration and the context of lookups; a round folded into the table,
//! its verdicts refreshed and handed to the sink; the OOM post-mortem built once. Live and
//! offline verdicts agree because both come through here.
use crate::{
    detector::DetectorConfig,
    host::memcg::MemcgEvent,
    host::procfs::Procfs,
    kernel::budget::OverheadStatus,
    kernel::events::OomVictim,
    kernel::sampler::Snapshot,
    model::table::{ProcessTable, RoundReport},
    pipeline::context::Context,
    pipeline::sink::{Happening, Sink},
};

pub struct Pipeline {
    pub table: ProcessTable,
    /// The lookups the pipeline and its sinks share (built once per command).
    pub ctx: Context,
    detector: DetectorConfig,
    /// The limit-risk judgement's tuning (`--risk-margin`).
    pub risk: crate::detector::RiskConfig,
    /// The node's own memory as series, judged like processes (model/node.rs).
    pub node: crate::model::node::NodeModel,
}

impl Pipeline {
    pub fn new(table: ProcessTable, ctx: Context) -> Self {
        Self {
            table,
            ctx,
            detector: DetectorConfig::default(),
            risk: crate::detector::RiskConfig::default(),
            node: crate::model::node::NodeModel::default(),
        }
    }

    /// Hand one happening to the sink, with the table and the shared lookups.
    pub fn tell(&mut self, sink: &mut dyn Sink, what: Happening<'_>) -> anyhow::Result<()> {
        sink.handle(&mut self.ctx, &self.table, what)
    }

    /// Fold a round's counters into the table. `procfs` is for first-sight lookups (command
    /// line, cgroup) of a live session; offline there is none.
    pub fn fold(&mut self, snap: &Snapshot, procfs: Option<&Procfs>) -> RoundReport {
        let report = self.table.update(snap, procfs);
        // Identities of processes that left the table (short-lived ones included) are
        // forgotten: the cache stays bounded by the table.
        self.ctx.ids.prune(&self.table);
        report
    }

    /// The rest of a round once the source has added its part: reclaim as memory-cgroup
    /// events, the verdicts refreshed, then the round itself to the sink.
    pub fn publish_round(
        &mut self,
        sink: &mut dyn Sink,
        snap: &Snapshot,
        report: &RoundReport,
        overhead: &OverheadStatus,
    ) -> anyhow::Result<()> {
        let t = self.table.session_time(snap.t_mono);
        // Reclaim is summed per cgroup by the table; each cgroup that stalled is one event.
        for (cgroup, r) in &report.reclaim {
            let event = MemcgEvent::Reclaim {
                ts_ms: crate::util::clock::unix_millis(),
                cgroup: cgroup.clone(),
                runs: r.runs,
                reclaimed_bytes: r.pages * crate::kernel::loader::page_size(),
                stall_ms: r.stall_ns as f64 / 1e6,
                pids: r.pids.clone(),
            };
            self.tell(sink, Happening::Memcg { t, event: &event })?;
        }
        let (verdicts, risks) = if sink.follows_verdicts() {
            (
                crate::model::verdicts::refresh(&mut self.table, t, &self.detector),
                crate::model::risk::refresh(&mut self.table, t, &mut self.ctx.limits, &self.risk),
            )
        } else {
            (Vec::new(), Vec::new())
        };
        self.tell(
            sink,
            Happening::Round {
                snap,
                report,
                verdicts: &verdicts,
                risks: &risks,
                overhead,
            },
        )
    }

    /// A reading of the node's own memory: folded into the node's series, which are judged
    /// at once (a few dozen series, most of them flat and skipped), then handed to the sink.
    pub fn node(
        &mut self,
        sink: &mut dyn Sink,
        t_mono: f64,
        reading: crate::host::node::NodeReading,
    ) -> anyhow::Result<()> {
        let t = self.table.session_time(t_mono);
        self.node.fold(t, reading);
        let changes = self.node.refresh(t, &self.detector);
        let (Some(view), Some(reading)) = (self.node.view(), self.node.latest()) else {
            return Ok(());
        };
        sink.handle(
            &mut self.ctx,
            &self.table,
            Happening::Node {
                t,
                reading,
                view: &view,
                changes: &changes,
            },
        )
    }

    /// An OOM victim: the post-mortem is built once, here, for every sink.
    pub fn oom_victim(&mut self, sink: &mut dyn Sink, v: &OomVictim) -> anyhow::Result<()> {
        let rec = crate::pipeline::postmortem::post_mortem(&self.table, v, &mut self.ctx);
        self.tell(sink, Happening::Oom(&rec))
    }
}
