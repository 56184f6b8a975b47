//! `report` as a sink: while the trace is replayed it keeps the OOM kills, the memory-cgroup
//! activity and the overhead budget's decisions the trace recorded; at the end it judges the
//! suspects (the one list, crate::model::suspect) and takes the ended processes from the
//! table, as `record` judged them for its summary at the same moment.
use crate::{
    commands::report::{Built, Report, RiskRow, SuspectRow, plot},
    detector::RiskConfig,
    host::identity::Identity,
    host::memcg::{ActivityFold, CgroupActivity},
    kernel::budget::{BudgetEvent, HookSummary},
    model::{ended::EndedLog, suspect::Suspect, table::Process, table::ProcessTable},
    pipeline::{
        context::Context,
        filter::Filter,
        sink::{Happening, SessionEnd, Sink},
        source::replay::ReplayStats,
    },
    trace::{Header, OomRecord},
    util::clock,
};

/// OOM records, budget decisions and cgroups kept at most (a pathological trace must not
/// exhaust memory; the counts beyond are said in warnings where it matters).
const MAX_OOMS: usize = 10_000;
const MAX_BUDGET_EVENTS: usize = 100_000;
const MAX_CGROUPS: usize = 1000;

/// Suspects drawn by `--plot`.
const PLOTTED: usize = 6;

/// Growth sites listed per suspect (when the trace has stacks).
const SITES_PER_SUSPECT: usize = 5;
/// Where a suspect mapped memory: fewer lines (the touched sites are what it holds).
const MAPPED_SITES_PER_SUSPECT: usize = 3;

pub struct ReportSink {
    header: Header,
    filter: Filter,
    limit: usize,
    oom_kills: Vec<OomRecord>,
    cgroups: ActivityFold,
    budget_events: Vec<(f64, BudgetEvent)>,
    /// What the end of the trace showed (None until `finish`).
    findings: Option<Findings>,
    risk: RiskConfig,
    /// The node as the last node record left it, and its series' worst verdicts.
    node_end: Option<crate::model::node::NodeView>,
    node_findings: crate::model::node::NodeFindings,
    /// Growth-site stacks the trace recorded (`record --stacks`).
    sites: crate::model::sites::SiteLog,
}

/// The report's figures judged at the end of the trace.
struct Findings {
    now: f64,
    processes: usize,
    suspects: Vec<SuspectRow>,
    at_risk: Vec<RiskRow>,
    plot_series: Vec<plot::Series>,
    ended: EndedLog,
    overhead_budget: Vec<HookSummary>,
    memory_cgroups: Vec<CgroupActivity>,
    cgroups_dropped: u64,
    growth_sites: Option<super::GrowthSitesReport>,
    flame_lines: Vec<String>,
}

impl ReportSink {
    /// `header` is the trace's (its start dates the suspects' growth).
    pub fn new(header: Header, filter: Filter, limit: usize) -> Self {
        Self {
            header,
            filter,
            limit,
            oom_kills: Vec::new(),
            cgroups: ActivityFold::new(MAX_CGROUPS),
            budget_events: Vec::new(),
            findings: None,
            risk: RiskConfig::default(),
            node_end: None,
            node_findings: Default::default(),
            sites: Default::default(),
        }
    }

    /// The limit-risk judgement tuned as given (`--risk-margin`).
    pub fn with_risk(mut self, risk: RiskConfig) -> Self {
        self.risk = risk;
        self
    }

    /// The report, with what the replay counted of the trace itself.
    pub fn into_report(self, trace: ReplayStats<'_>) -> anyhow::Result<Built> {
        let f = self
            .findings
            .ok_or_else(|| anyhow::anyhow!("the replay ended before the report was judged"))?;
        let mut warnings = trace.warnings.to_vec();
        if f.cgroups_dropped > 0 {
            warnings.push(format!(
                "{} memory-cgroup events of cgroups beyond the first {MAX_CGROUPS} not summarised",
                f.cgroups_dropped
            ));
        }
        if trace.summary.is_none() {
            warnings.push("no summary line: the recording did not end cleanly (killed?); the report covers what was written".into());
        }
        Ok(Built {
            report: Report {
                header: self.header,
                duration_secs: clock::round_ms(f.now),
                processes: f.processes,
                samples: trace.samples,
                suspects: f.suspects,
                ended: f.ended,
                overhead_budget: f.overhead_budget,
                oom_kills: self.oom_kills,
                memory_cgroups: f.memory_cgroups,
                summary: trace.summary.cloned(),
                skipped_lines: trace.skipped_lines,
                warnings,
                at_risk: f.at_risk,
                node: self.node_end.map(|end| super::NodeReport {
                    end,
                    findings: self.node_findings.list(),
                }),
                growth_sites: f.growth_sites,
            },
            plot_series: f.plot_series,
            flame_lines: f.flame_lines,
        })
    }
}

impl Sink for ReportSink {
    /// The suspects are judged afresh at the end of the trace, as `record` judges them for
    /// its summary; verdicts round by round would cost the detector's work for every changed
    /// process of every round of the trace (minutes for a trace of tens of megabytes).
    fn follows_verdicts(&self) -> bool {
        false
    }

    fn handle(
        &mut self,
        _ctx: &mut Context,
        _table: &ProcessTable,
        what: Happening<'_>,
    ) -> anyhow::Result<()> {
        match what {
            Happening::Oom(rec) => {
                if self.oom_kills.len() < MAX_OOMS {
                    self.oom_kills.push(rec.clone());
                }
            }
            Happening::Memcg { t, event } => self.cgroups.add(t, event),
            Happening::Budget { t, event } => {
                if self.budget_events.len() < MAX_BUDGET_EVENTS {
                    self.budget_events.push((t, event.clone()));
                }
            }
            Happening::Cgroup { .. } => {}
            Happening::Stacks { update, .. } => self.sites.apply(update),
            Happening::Node {
                t, view, changes, ..
            } => {
                self.node_findings.fold(t, changes);
                self.node_end = Some(view.clone());
            }
            // The table has the rounds, execs and exits; they are judged at the end.
            Happening::Round { .. } | Happening::Exec { .. } | Happening::Exit { .. } => {}
        }
        Ok(())
    }

    fn finish(
        &mut self,
        ctx: &mut Context,
        table: &ProcessTable,
        end: SessionEnd,
    ) -> anyhow::Result<()> {
        let now = end.t;
        // Judged at the trace's end, as `record` judged them for its summary.
        let start = self.header.start_unix_ms;
        let mut judged = self.filter.suspects(table, now, start, &mut ctx.ids);
        judged.truncate(self.limit);
        let plot_series = judged
            .iter()
            .take(PLOTTED)
            .map(|(s, p)| plot::Series::of(p, &s.comm))
            .collect();
        let risk = &self.risk;
        let sites = &self.sites;
        let suspects = judged
            .into_iter()
            .map(|(s, p)| {
                let r = risk_at(p, now, ctx, risk);
                let mut row = row(s, p, ctx.ids.get(p), r);
                let growth = sites.profile(|pid| pid == p.pid);
                row.sites = growth.top_sites(SITES_PER_SUSPECT);
                row.mapped_sites = growth.top_mapped_sites(MAPPED_SITES_PER_SUSPECT);
                row
            })
            .collect();
        // Growth sites of the processes asked for, each rooted at its process.
        let mut wanted = std::collections::HashMap::new();
        let flame_lines = self.sites.folded(
            |pid| {
                *wanted.entry(pid).or_insert_with(|| {
                    table
                        .find(pid)
                        .is_some_and(|p| self.filter.wants(p, &mut ctx.ids))
                })
            },
            |pid| {
                let comm = table.find(pid).map_or("?", |p| p.comm.as_str());
                format!("{comm} ({pid})")
            },
        );
        let growth_sites = (!self.sites.is_empty() || self.sites.dropped > 0).then(|| {
            let all = self.sites.profile(|_| true);
            super::GrowthSitesReport {
                mean_bytes: self.sites.mean_bytes(),
                samples: all.total_samples(),
                mapped_samples: all.mapped_samples(),
                stacks_not_kept: self.sites.dropped,
                kernel: self.sites.counters,
                processes_not_sampled: self.sites.targets_refused,
            }
        });
        let mut at_risk: Vec<RiskRow> = Vec::new();
        for p in table
            .live
            .values()
            .map(|p| &**p)
            .chain(table.graveyard.iter())
        {
            if !self.filter.wants(p, &mut ctx.ids) {
                continue;
            }
            let Some(r) = risk_at(p, now, ctx, risk).filter(|r| r.at_risk) else {
                continue;
            };
            let verdict =
                crate::model::verdicts::assess(p, now, &crate::detector::DetectorConfig::default())
                    .verdict;
            at_risk.push(RiskRow {
                pid: p.pid,
                comm: p.comm.clone(),
                verdict,
                risk: r,
                exited: p.exited_at.is_some(),
                cgroup: p.memcg_path(),
                names: ctx.ids.get(p).names,
            });
        }
        at_risk.sort_by(|a, b| {
            b.risk
                .peak_ratio
                .total_cmp(&a.risk.peak_ratio)
                .then(a.pid.cmp(&b.pid))
        });
        at_risk.truncate(self.limit);
        let cgroups = std::mem::replace(&mut self.cgroups, ActivityFold::new(MAX_CGROUPS));
        self.findings = Some(Findings {
            now,
            processes: table.live.len() + table.graveyard.len(),
            suspects,
            at_risk,
            plot_series,
            ended: EndedLog {
                largest: table
                    .ended
                    .largest_matching(self.limit, |e| self.filter.matches(e.pid, &e.comm)),
                ..table.ended.clone()
            },
            overhead_budget: crate::kernel::budget::summarize(&self.budget_events, now),
            cgroups_dropped: cgroups.dropped,
            memory_cgroups: cgroups.finish(),
            growth_sites,
            flame_lines,
        });
        Ok(())
    }
}

/// The report's row of a suspect: the one judgement plus what the trace recorded of the
/// process (limit, mmap sizes, command line, cgroup, Kubernetes names).
/// `p`'s limit risk at `now`, against the limit its trace recorded.
fn risk_at(
    p: &Process,
    now: f64,
    ctx: &mut Context,
    cfg: &RiskConfig,
) -> Option<crate::detector::LimitRisk> {
    let limit = crate::model::risk::cgroup_limit(p, &mut ctx.limits)?;
    crate::model::risk::judge(p, now, limit, cfg)
}

fn row(
    suspect: Suspect,
    p: &Process,
    id: Identity,
    risk: Option<crate::detector::LimitRisk>,
) -> SuspectRow {
    let hist = &p.counters.mmap_size_hist;
    let time_to_limit_secs = p
        .limit_bytes
        .and_then(|l| {
            suspect
                .assessment
                .time_to_limit(suspect.private_bytes as f64, l as f64)
        })
        .map(clock::round_ms);
    SuspectRow {
        suspect,
        limit_bytes: p.limit_bytes,
        time_to_limit_secs,
        mmap_size_p50_bytes: log2_percentile(hist, 0.50),
        mmap_size_p99_bytes: log2_percentile(hist, 0.99),
        cmdline: p.cmdline.as_deref().map(str::to_owned),
        cgroup: p.memcg_path(),
        names: id.names,
        risk,
        go: p.go.as_ref().map(|g| g.latest.clone()),
        sites: Vec::new(),
        mapped_sites: Vec::new(),
    }
}

/// Percentile of a log2 size histogram (upper bound of the bucket holding it).
fn log2_percentile(hist: &[u32], q: f64) -> Option<u64> {
    let total: u64 = hist.iter().map(|&c| u64::from(c)).sum();
    if total == 0 {
        return None;
    }
    let mut h = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 1 << 46, 2).ok()?;
    for (i, &c) in hist.iter().enumerate() {
        if c > 0 {
            let _ = h.record_n(
                1u64 << (i as u32 + crate::model::counters::MMAP_SIZE_MIN_SHIFT + 1),
                u64::from(c),
            );
        }
    }
    Some(h.value_at_quantile(q))
}
