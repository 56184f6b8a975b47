//! `leaktracer report TRACE`: a session over the replayed trace (pipeline/source/replay.rs)
//! into a sink that keeps the OOM kills, memory-cgroup activity and overhead budget the trace
//! recorded and judges the suspects at its end, through the same process table, verdicts and
//! ranking as a live session. Streaming: memory is bounded by the table's limits, not the file.
pub mod flame;
pub mod plot;
mod render;
mod sink;
use std::{
    fs::File,
    io::{BufRead, BufReader, IsTerminal as _, Write as _},
    path::Path,
};

use anyhow::Context as _;
use serde::Serialize;

pub use render::render_text;
pub use sink::ReportSink;

use crate::{
    host::identity::PodNames,
    pipeline::{context::Context, filter::Filter, session::Session, source::replay::ReplaySource},
    trace::{Header, OomRecord, Summary},
    util::error::UsageError,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormat {
    Text,
    Json,
}

/// The report's row of a suspect, also the JSON shape of `report --format json`'s
/// suspects: the one suspect (crate::model::suspect), then what the trace recorded of its
/// process.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct SuspectRow {
    #[serde(flatten)]
    pub suspect: crate::model::suspect::Suspect,
    /// The memory limit recorded for the process and the time until its private memory
    /// reaches it at the assessed growth (leaking/growing only; offline the cgroup's other
    /// members are not known, so this is an upper bound when a cgroup limit applies).
    pub limit_bytes: Option<u64>,
    pub time_to_limit_secs: Option<f64>,
    /// Percentiles of this process's mmap request sizes (bytes), from its log2 histogram.
    pub mmap_size_p50_bytes: Option<u64>,
    pub mmap_size_p99_bytes: Option<u64>,
    pub cmdline: Option<String>,
    /// Memory cgroup path at first sight (to relate suspects to OOM kills).
    pub cgroup: Option<String>,
    #[serde(flatten)]
    pub names: PodNames,
    /// Its limit-risk judgement at the end of the trace (None without a memory cgroup limit
    /// recorded for it): see docs/trace-format.md, `risk`.
    pub risk: Option<crate::detector::LimitRisk>,
    /// A Go process's runtime as last recorded (None for other processes).
    pub go: Option<crate::model::go::GoFigures>,
    /// Where in its code it grew, largest first (traces recorded with `--stacks`): where
    /// its memory was first touched (made resident).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sites: Vec<crate::model::growth::Site>,
    /// Where it mapped memory (anonymous mmap, brk), largest first, touched or not.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub mapped_sites: Vec<crate::model::growth::Site>,
}

/// A process whose peaks meet (or are about to meet) its memory cgroup's limit at the end
/// of the trace, whatever its verdict: the JSON shape of `report --format json`'s `at_risk`.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct RiskRow {
    pub pid: u32,
    pub comm: String,
    /// Its verdict at the end of the trace (at risk and not leaking is the usual case).
    pub verdict: crate::detector::Verdict,
    pub risk: crate::detector::LimitRisk,
    pub exited: bool,
    pub cgroup: Option<String>,
    #[serde(flatten)]
    pub names: PodNames,
}

#[derive(Serialize)]
pub struct Report {
    pub header: Header,
    pub duration_secs: f64,
    pub processes: usize,
    pub samples: u64,
    pub suspects: Vec<SuspectRow>,
    /// Processes that ended during the trace (all counted; the largest with their final
    /// counters), short-lived ones included.
    pub ended: crate::model::ended::EndedLog,
    /// Syscall hooks the overhead budget paused (their counts are incomplete while paused).
    pub overhead_budget: Vec<crate::kernel::budget::HookSummary>,
    pub oom_kills: Vec<OomRecord>,
    /// Memory cgroups (and "node") that reported limit events, reclaim or pressure.
    pub memory_cgroups: Vec<crate::host::memcg::CgroupActivity>,
    pub summary: Option<Summary>,
    pub skipped_lines: u64,
    pub warnings: Vec<String>,
    /// Processes at risk of meeting their memory cgroup's limit at the end of the trace, the
    /// closest to it first (`--risk-margin`).
    pub at_risk: Vec<RiskRow>,
    /// The node's own memory (absent from traces recorded before node records existed).
    pub node: Option<NodeReport>,
    /// The growth-site sampling the trace recorded (`record --stacks`; absent without it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub growth_sites: Option<GrowthSitesReport>,
}

/// How the growth sites were sampled, and what could not be kept.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct GrowthSitesReport {
    /// Bytes one sample stands for.
    pub mean_bytes: u64,
    /// Samples of first-touch page faults.
    pub samples: u64,
    /// Samples of anonymous mmap and brk growth.
    pub mapped_samples: u64,
    /// Stacks the report could not keep (beyond its bound, or reported without frames).
    pub stacks_not_kept: u64,
    /// The kernel side's counters at the end (truncated stacks, dropped samples).
    pub kernel: crate::model::growth::ProfileCounters,
    /// Processes the kernel's table of targets had no room for.
    pub processes_not_sampled: u64,
}

/// The node's memory at the end of the trace, and every node series judged growing or
/// leaking during it.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct NodeReport {
    pub end: crate::model::node::NodeView,
    pub findings: Vec<crate::model::node::NodeFinding>,
}

pub struct ReportOptions {
    pub filter: Filter,
    pub format: ReportFormat,
    pub lenient: bool,
    pub limit: usize,
    pub plot: Option<std::path::PathBuf>,
    /// Draw the growth sites as a flame graph (SVG) here.
    pub flame: Option<std::path::PathBuf>,
    /// The limit-risk judgement's tuning (`--risk-margin`).
    pub risk: crate::detector::RiskConfig,
}

pub fn run(path: &Path, opts: &ReportOptions) -> anyhow::Result<()> {
    // A trace that cannot be opened is the user's input problem (exit 2), like a corrupt one.
    let file = File::open(path)
        .map_err(|e| UsageError::new(format!("cannot open trace {}: {e}", path.display())))?;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    let report = build_with_risk(
        Box::new(BufReader::with_capacity(1 << 20, file)),
        size,
        opts.lenient,
        opts.limit,
        std::io::stderr().is_terminal(),
        &opts.filter,
        &opts.risk,
    )
    .with_context(|| format!("reading {}", path.display()))?;
    if let Some(plot) = &opts.plot {
        crate::commands::report::plot::write_svg(plot, &report.plot_series)?;
        eprintln!("leaktracer: wrote {}", plot.display());
    }
    if let Some(flame) = &opts.flame {
        flame::write_svg(
            flame,
            &report.flame_lines,
            report.report.growth_sites.as_ref(),
        )?;
        eprintln!("leaktracer: wrote {}", flame.display());
    }
    let mut out = std::io::stdout().lock();
    match opts.format {
        ReportFormat::Json => {
            serde_json::to_writer_pretty(&mut out, &report.report)?;
            out.write_all(b"\n")?;
        }
        ReportFormat::Text => out.write_all(render_text(&report.report).as_bytes())?,
    }
    Ok(())
}

pub struct Built {
    pub report: Report,
    pub plot_series: Vec<crate::commands::report::plot::Series>,
    /// The growth sites as folded stacks, for `--flame`.
    pub flame_lines: Vec<String>,
}

/// Replay the trace read from `input` (`size` bytes, for the progress bar) through the
/// pipeline into the report's sink.
pub fn build(
    input: Box<dyn BufRead>,
    size: u64,
    lenient: bool,
    limit: usize,
    progress: bool,
    filter: &Filter,
) -> anyhow::Result<Built> {
    let risk = crate::detector::RiskConfig::default();
    build_with_risk(input, size, lenient, limit, progress, filter, &risk)
}

/// [`build`] with the limit-risk judgement tuned as given.
pub fn build_with_risk(
    input: Box<dyn BufRead>,
    size: u64,
    lenient: bool,
    limit: usize,
    progress: bool,
    filter: &Filter,
    risk: &crate::detector::RiskConfig,
) -> anyhow::Result<Built> {
    let mut source = ReplaySource::open(input, size, lenient, progress)?;
    let mut sink =
        ReportSink::new(source.header().clone(), filter.clone(), limit).with_risk(risk.clone());
    // The session loop is the live one; replay never waits, so a thread-local runtime
    // without timers or I/O drives it.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .context("starting the replay's runtime")?;
    let mut session = Session::replay(&mut source, Context::offline());
    runtime.block_on(session.run(&mut sink))?;
    drop(session);
    sink.into_report(source.stats())
}

#[cfg(test)]
mod tests;
