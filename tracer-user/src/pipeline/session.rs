//! A session: the one loop over a [`Source`]. Each step the source says is applied to the
//! model by the pipeline (pipeline/core.rs) and handed to the sink; the source adds its part
//! in between (the live one watches cgroups and retires stale kernel entries, the replay one
//! applies the identities the trace recorded). `top`, `record`, `oom` and `daemon` are sinks
//! over a live source, `report` over a replayed trace, so they cannot disagree.
use crate::{
    host::memcg::CgroupRoots,
    pipeline::context::Context,
    pipeline::core::Pipeline,
    pipeline::sink::{EndReason, Happening, Sink},
    pipeline::source::{
        Source,
        live::{LiveOptions, LiveSource},
        replay::ReplaySource,
    },
    pipeline::step::Step,
};

pub struct Session<'s> {
    source: Source<'s>,
    pipeline: Pipeline,
}

impl Session<'static> {
    /// A session over the kernel and the host: loads and attaches the programs.
    pub fn live(opts: LiveOptions, ctx: Context) -> anyhow::Result<Self> {
        let roots: &CgroupRoots = &ctx.roots;
        let (source, table) = LiveSource::start(opts, roots)?;
        Ok(Self {
            source: Source::Live(Box::new(source)),
            pipeline: Pipeline::new(table, ctx),
        })
    }
}

impl<'s> Session<'s> {
    /// A session over a recorded trace (`ctx` offline: see [`Context::offline`]).
    pub fn replay(source: &'s mut ReplaySource, ctx: Context) -> Self {
        let table = source.table();
        Self {
            source: Source::Replay(source),
            pipeline: Pipeline::new(table, ctx),
        }
    }

    /// The limit-risk judgement tuned as given (`--risk-margin`).
    pub fn with_risk_config(mut self, cfg: crate::detector::RiskConfig) -> Self {
        self.pipeline.risk = cfg;
        self
    }

    /// Run until the source ends (the duration elapses, a signal arrives, the trace ends) or
    /// the sink asks to stop.
    pub async fn run(&mut self, sink: &mut dyn Sink) -> anyhow::Result<EndReason> {
        sink.start(&self.source.info())?;
        while let Some(step) = self.source.next_step(&self.pipeline.table).await? {
            self.apply(step, sink)?;
            if sink.wants_stop() {
                self.source.stop(EndReason::Sink);
            }
        }
        let end = self.source.end(&self.pipeline.table);
        sink.finish(&mut self.pipeline.ctx, &self.pipeline.table, end)?;
        Ok(end.reason)
    }

    /// One step: the model changes first, then the source adds its part, then the sink is
    /// told.
    fn apply(&mut self, step: Step, sink: &mut dyn Sink) -> anyhow::Result<()> {
        let (p, source) = (&mut self.pipeline, &mut self.source);
        match step {
            Step::Round { snap, overhead } => {
                let report = p.fold(&snap, source.procfs());
                source.after_round(p, &snap, &report);
                p.publish_round(sink, &snap, &report, &overhead)
            }
            Step::Exec {
                pid,
                comm,
                t_mono,
                cmdline,
                cgroup,
            } => {
                p.table.exec(pid, comm.clone(), cmdline, cgroup);
                source.after_exec(p, pid);
                p.tell(
                    sink,
                    Happening::Exec {
                        pid,
                        comm: &comm,
                        t_mono,
                    },
                )
            }
            Step::Exit {
                pid,
                comm,
                t_mono,
                counters,
            } => {
                let ended = p.table.end(pid, t_mono, counters.as_ref(), source.procfs());
                source.after_exit(p, ended);
                p.tell(
                    sink,
                    Happening::Exit {
                        pid,
                        comm: &comm,
                        t_mono,
                        ended,
                    },
                )
            }
            Step::OomVictim(v) => p.oom_victim(sink, &v),
            Step::OomRecord(rec) => p.tell(sink, Happening::Oom(&rec)),
            Step::Memcg { t_mono, event } => {
                let t = p.table.session_time(t_mono);
                p.tell(sink, Happening::Memcg { t, event: &event })
            }
            Step::Budget { t_mono, event } => {
                let t = p.table.session_time(t_mono);
                p.tell(sink, Happening::Budget { t, event: &event })
            }
            Step::Node { t_mono, reading } => p.node(sink, t_mono, reading),
            Step::Stacks { t_mono, update } => {
                let t = p.table.session_time(t_mono);
                p.tell(sink, Happening::Stacks { t, update: &update })
            }
            Step::Cgroup(change) => {
                let t = p.table.session_time(change.t_mono);
                p.node.cgroup(t, &change);
                p.tell(sink, Happening::Cgroup { t, change: &change })
            }
        }
    }
}
