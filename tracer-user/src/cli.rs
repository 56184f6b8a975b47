//! Command-line interface. `--help` is meant to teach: each command says what it shows,
//! how to read it and gives an example.
use std::{path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand};

use crate::{commands::top::OutputFormat, kernel::loader::RssSource};

const ABOUT: &str = "Which process is leaking memory, how fast, since when — traced with eBPF.";

const LONG_ABOUT: &str = "\
leaktracer traces mmap/munmap/brk/mremap/madvise and RSS changes of every process on this \
node with eBPF, aggregates them in the kernel, and ranks processes by how fast their private \
memory (anonymous + shared memory + swap) grows.

Needs root, or CAP_BPF + CAP_PERFMON, and tracefs mounted at /sys/kernel/tracing.

Exit codes: 0 success; 1 runtime failure; 2 usage error (bad flag, missing privilege or \
tracefs, a kernel without a required tracepoint).";

const AFTER_HELP: &str = "\
Examples:
  sudo leaktracer top                              live view, fastest growers first
  sudo leaktracer top --once --duration 10s        one table after 10 s (scripts, no TTY)
  sudo leaktracer record -o trace.jsonl -d 5m      a JSON Lines trace for later analysis";

#[derive(Debug, Parser)]
#[command(name = "leaktracer", version, about = ABOUT, long_about = LONG_ABOUT, after_help = AFTER_HELP)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct Global {
    /// Log level for leaktracer's own diagnostics on stderr (error, warn, info, debug, trace).
    /// `debug` also shows the kernel programs' aya-log messages.
    #[arg(long, global = true, default_value = "warn", env = "LEAKTRACER_LOG")]
    pub log_level: log::LevelFilter,

    /// Root of the host filesystem: `/` on a node, `/host` when running in a container with
    /// the host's /proc, /sys mounted below it.
    #[arg(long, global = true, default_value = "/", value_name = "DIR")]
    pub host_root: PathBuf,

    /// CRI runtime socket to take pod, namespace and container names from (kubelet's labels,
    /// via `ListContainers`). Default: the first that exists of
    /// run/k3s/containerd/containerd.sock, run/containerd/containerd.sock,
    /// var/run/crio/crio.sock, run/crio/crio.sock under --host-root. A path given here is used as
    /// is (not under --host-root); `none` turns CRI lookups off. Without a socket, or for a
    /// container the runtime does not know, names come from the kubelet's /var/log/pods.
    #[arg(
        long,
        global = true,
        value_name = "PATH|none",
        env = "LEAKTRACER_CRI_SOCKET"
    )]
    pub cri_socket: Option<PathBuf>,
}

#[derive(Debug, Args, Clone)]
pub struct TraceArgs {
    /// Sampling interval: how often the kernel's per-process counters are read (e.g. 500ms, 1s, 5s).
    #[arg(short, long, default_value = "1s", value_parser = parse_duration)]
    pub interval: Duration,

    /// How RSS changes are observed: `tracepoint` (classic kmem:rss_stat; exact) or `raw`
    /// (raw tracepoint; needs kernel BTF; approximate within the kernel's per-CPU batches).
    #[arg(long, value_enum, default_value = "tracepoint")]
    pub rss_source: RssSource,

    /// Only show/record these pids (repeatable). Tracking stays node-wide.
    #[arg(short, long = "pid", value_name = "PID", value_parser = clap::value_parser!(u32).range(1..))]
    pub pids: Vec<u32>,

    /// Only show/record processes with this command name (as in /proc/PID/comm; repeatable).
    #[arg(short, long = "comm", value_name = "NAME", value_parser = parse_comm)]
    pub comms: Vec<String>,

    /// leaktracer's own oom_score_adj, so the watcher survives the OOM storm it watches
    /// (-1000 = never killed; 1000 = first to go).
    #[arg(long, default_value_t = -900, allow_negative_numbers = true, value_parser = clap::value_parser!(i32).range(-1000..=1000))]
    pub oom_score_adj: i32,

    /// Only show/record processes of this Kubernetes namespace (repeatable).
    #[arg(long = "namespace", value_name = "NS", value_parser = parse_name)]
    pub namespaces: Vec<String>,

    /// Only show/record processes of this pod (by name; repeatable).
    #[arg(long = "pod", value_name = "POD", value_parser = parse_name)]
    pub pods: Vec<String>,

    /// Only show/record processes of this container (by name; repeatable).
    #[arg(long = "container", value_name = "NAME", value_parser = parse_name)]
    pub containers: Vec<String>,

    /// Overhead budget: the share of the node's CPU leaktracer's kernel programs may use
    /// (e.g. 1%, 0.5%; 0 turns it off). Measured one interval in five from the programs'
    /// own timing (one run in 32; the kernel's BPF statistics are never turned on); when
    /// over budget, hooks are paused in this order:
    /// madvise, munmap, mmap (with mremap), brk, and last rss_stat (a page-fault storm), and
    /// resumed after a hold that doubles while the storm goes on. The four syscall hooks are
    /// paused together (any syscall tracepoint slows every syscall), the dearest detached
    /// first. While rss_stat is paused,
    /// RSS is read from /proc/PID/status each interval, so samples and verdicts stay exact
    /// (peaks between two samples may be missed); rss_stat is paused only when it costs more
    /// than those reads would. Process lifecycle is never paused. Pauses
    /// and resumes are reported (trace `budget` records, health, top's header, metrics,
    /// report).
    #[arg(long, default_value = "1%", value_name = "PERCENT", value_parser = parse_percent)]
    pub max_overhead: f64,

    /// When the node's memory pressure is reported (PSI, /proc/pressure/memory; on cgroup v2
    /// also each limited cgroup's memory.pressure): tasks stalled on memory for STALL within
    /// WINDOW, "some" (at least one task) or "full" (all at once). The kernel takes windows
    /// of 500ms-10s, multiples of 2 s without CAP_SYS_RESOURCE. Default: 15% "some" stall,
    /// 150ms/1s, or 300ms/2s without CAP_SYS_RESOURCE. A trigger given here that the kernel
    /// refuses is an error; the default's refusal is a warning.
    #[arg(long, value_name = "[some:|full:]STALL/WINDOW")]
    pub pressure_trigger: Option<crate::host::memcg::psi::PsiTrigger>,

    /// Capacity of the kernel's per-process map. Smaller values are for testing overflow
    /// accounting; overflow is counted and reported as `procs_map_full`.
    #[arg(long, default_value_t = 32768, value_parser = clap::value_parser!(u32).range(16..=1_048_576), hide_short_help = true)]
    pub procs_map_size: u32,

    /// Size of the kernel→user event ring buffer in bytes (rounded up to a power of two).
    /// Losses are counted as `ringbuf_full`.
    #[arg(long, default_value_t = 1 << 20, value_parser = clap::value_parser!(u32).range(4096..=1 << 30), hide_short_help = true)]
    pub ringbuf_bytes: u32,
}

/// The limit-risk judgement's flag (top, record, daemon, report).
#[derive(Debug, Args, Clone)]
pub struct RiskArgs {
    /// Flag a process as at risk of meeting its memory cgroup's limit when its recent peaks
    /// of private memory come within this margin of the limit (10%: peaks at 90% of the limit
    /// or more), or when its peaks rise towards the limit and would get there within the hour.
    /// Not a leak verdict: a process that rises under load and falls back (GC, batch work,
    /// backups) is at risk when its peaks nearly meet the limit, however steady it is.
    /// Shown as top's RISK column, a `risk` object in JSON and traces, in `report`, as
    /// leaktracer_limit_headroom_ratio and as `risk` events of the daemon.
    #[arg(long, default_value = "10%", value_name = "PERCENT", value_parser = parse_percent)]
    pub risk_margin: f64,
}

impl RiskArgs {
    pub fn config(&self) -> crate::detector::RiskConfig {
        crate::detector::RiskConfig {
            margin: self.risk_margin,
            ..Default::default()
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Live view of processes ranked by memory growth: leaking first, then growing, then by
    /// GROWTH/s.
    ///
    /// Columns: RSS (anon+file+shmem), PRIVATE (anon+shmem+swap: what a leak grows),
    /// GROWTH/s and GROWTH/min (robust slope of PRIVATE over --window, as a function of
    /// time), ALLOC/s (bytes obtained through mmap/brk/mremap), GROWING (length of the
    /// current rise, from the last trough to where it stopped rising; "-" when PRIVATE did
    /// not grow over --window), VERDICT (docs/verdicts.md), TO LIMIT (time until the memory
    /// limit at the current growth, while growing), RISK (the highest recent peak of PRIVATE
    /// as a share of the memory cgroup's limit, "!" when at risk of meeting it: see
    /// --risk-margin; the header counts them), and in the live view TREND (a sparkline of
    /// PRIVATE over --window) and NAMESPACE/POD.
    ///
    /// Keys of the live view: ↑/↓ (or k/j, PgUp/PgDn, Home/End) select a process; Enter
    /// opens its detail (private memory over the window with the troughs its verdict was
    /// judged on, the verdict's confidence and why, since when, time to limit, limit risk,
    /// identity, mmap sizes, its cgroup's recent events and OOM kills) and Esc goes back; `/`
    /// filters by command, namespace, pod or container; `s` sorts by growth, private memory,
    /// verdict or time to limit; `p` shows or hides NAMESPACE/POD (shown when any process is
    /// in a pod); `?` helps; `q` or Ctrl-C quits. Keys take effect at once; the figures are
    /// refreshed every --interval. Colours follow the verdict's severity; NO_COLOR=1 turns
    /// them off. The terminal is restored on q, Ctrl-C, SIGTERM and panics.
    #[command(
        after_help = "Example: sudo leaktracer top --once --duration 10s --format json | jq '.processes[0]'"
    )]
    Top {
        #[command(flatten)]
        trace: TraceArgs,
        #[command(flatten)]
        risk: RiskArgs,
        /// Observe for --duration, print one table (or JSON document) and exit.
        #[arg(long)]
        once: bool,
        /// With --once: how long to observe. Without: stop the live view after this long.
        #[arg(short, long, value_parser = parse_duration)]
        duration: Option<Duration>,
        /// Output of --once.
        #[arg(short, long, value_enum, default_value = "table")]
        format: OutputFormat,
        /// Rates are computed over this much recent history (default 60s; with --once, the
        /// whole observation).
        #[arg(short, long, value_parser = parse_duration)]
        window: Option<Duration>,
        /// Rows to show with --once.
        #[arg(short = 'n', long, default_value_t = 25)]
        limit: usize,
    },
    /// Record a JSON Lines trace (schema: docs/trace-format.md).
    ///
    /// Writes a header line, then `process`, `sample`, `exec`, `exit`, `oom_kill` and `health`
    /// lines as they happen, and a `summary` line at the end — also when stopped by
    /// SIGINT/SIGTERM. The file is flushed every interval. With --stacks, `stacks` lines say
    /// where in their code the processes grew, for `report` to show per suspect.
    #[command(
        after_help = "Example: sudo leaktracer record --output /tmp/node.jsonl --duration 10m --interval 2s
         sudo leaktracer record --stacks --comm traefik -o t.jsonl && leaktracer report t.jsonl --flame sites.svg"
    )]
    Record {
        #[command(flatten)]
        trace: TraceArgs,
        #[command(flatten)]
        risk: RiskArgs,
        /// Trace file to write (`-` for stdout).
        #[arg(short, long, value_name = "FILE")]
        output: PathBuf,
        /// Stop after this long (default: until SIGINT/SIGTERM).
        #[arg(short, long, value_parser = parse_duration)]
        duration: Option<Duration>,
        /// Also sample where the processes grow (growth sites): first-touched memory is
        /// sampled in the kernel, one user stack per --stack-rate bytes on average per
        /// process, for the processes --pid/--comm/--namespace/--pod/--container select (all
        /// without them, up to 1024 at a time). Stacks are named while the processes run
        /// (Go's own symbol table, else ELF symbols and DWARF) and written with the binary,
        /// build id and file offset of each frame. Every user page fault on the node then
        /// runs a small program: the overhead budget prices it and pauses it first.
        #[arg(long)]
        stacks: bool,
        /// Mean bytes of first-touched memory between two stack samples of a process.
        #[arg(long, default_value = "512KiB", value_parser = parse_rate, requires = "stacks")]
        stack_rate: u64,
    },
    /// Follow OOM kills live: victim, trigger, cgroup and its limit, and the victim's growth before.
    ///
    /// Each kill is printed as a readable block (or one JSON line with --format json) as soon
    /// as the kernel picks the victim. The victim's history and cgroup come from what
    /// leaktracer saw while it was alive, so keep it running before the kill happens.
    #[command(
        after_help = "Example: sudo leaktracer oom --format json | tee -a /var/log/oom.jsonl"
    )]
    Oom {
        #[command(flatten)]
        trace: TraceArgs,
        /// Output: readable blocks, or JSON Lines.
        #[arg(short, long, value_enum, default_value = "text")]
        format: crate::commands::oom::OomFormat,
        /// Stop after this long (default: until SIGINT/SIGTERM).
        #[arg(short, long, value_parser = parse_duration)]
        duration: Option<Duration>,
    },
    /// Where in their code processes grow: sampled stacks of first-touched memory, as pprof.
    ///
    /// Page faults that make memory resident are sampled in the kernel, one per --rate bytes
    /// on average (Poisson, like Go's heap profiler), for the chosen processes only; each
    /// sample's user stack is taken by frame pointers (Go keeps them; C and C++ need
    /// -fno-omit-frame-pointer) and named from the binary: Go's own symbol table (stripped
    /// binaries too), else ELF symbols and DWARF. The top growth sites are printed (the first
    /// frame outside the allocator), and the profile is written for `go tool pprof`, Grafana
    /// Pyroscope or Parca (sample types alloc_samples, alloc_space). Nothing is attached
    /// outside the run.
    #[command(
        after_help = "Example: sudo leaktracer profile --comm traefik --duration 30s --output growth.pb.gz\n         go tool pprof -top growth.pb.gz"
    )]
    Profile {
        /// A process to profile (repeatable).
        #[arg(long = "pid")]
        pids: Vec<u32>,
        /// Processes with this command name, including ones started during the run
        /// (repeatable).
        #[arg(long = "comm")]
        comms: Vec<String>,
        /// The processes of a pod, NAMESPACE/POD (repeatable; names from the kubelet's log
        /// directories).
        #[arg(long = "pod", value_parser = crate::commands::profile::parse_pod)]
        pods: Vec<(String, String)>,
        /// How long to sample.
        #[arg(short, long, value_parser = parse_duration, default_value = "20s")]
        duration: Duration,
        /// The pprof file to write (gzipped protobuf).
        #[arg(short, long)]
        output: std::path::PathBuf,
        /// Mean bytes of first-touched memory between two samples (smaller: more detail,
        /// more cost).
        #[arg(long, default_value = "512KiB", value_parser = parse_rate)]
        rate: u64,
        /// Summary on stdout: readable, or one JSON object.
        #[arg(short, long, value_enum, default_value = "text")]
        format: crate::commands::profile::ProfileFormat,
        /// Growth sites in the summary.
        #[arg(long, default_value_t = 10)]
        top: usize,
    },
    /// Run as a node agent (DaemonSet): Prometheus metrics, health endpoints, JSON events.
    ///
    /// Serves /metrics (OpenMetrics text), /healthz and /readyz (ready once the eBPF programs
    /// are attached) on --listen, and writes OOM kills, verdict changes and limit-risk changes as JSON Lines on
    /// stdout for the log pipeline (the same records as `record` writes). SIGTERM detaches the
    /// programs, flushes and exits 0. --pid/--comm/--namespace/--pod/--container select the
    /// processes that get verdict, risk and exit lines, growth profiles and per-container
    /// series; node-wide totals, node verdicts, memory-cgroup events and OOM kills stay
    /// node-wide. Metrics reference: deploy/README.md.
    #[command(
        after_help = "Example: sudo leaktracer daemon --listen 127.0.0.1:9464\n         curl -s localhost:9464/metrics | grep leaktracer_container"
    )]
    Daemon {
        #[command(flatten)]
        trace: TraceArgs,
        #[command(flatten)]
        risk: RiskArgs,
        /// Address for /metrics, /healthz and /readyz.
        #[arg(long, default_value = "0.0.0.0:9464", value_parser = parse_listen)]
        listen: std::net::SocketAddr,
        /// How many of the fastest-growing processes get series (bounds cardinality).
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..=10_000))]
        top: u64,
        /// Write a process's final sample and exit record to stdout when its peak private
        /// memory reached this many MiB (0: every exit). Every exit is counted in
        /// leaktracer_process_exits_total and its calls in leaktracer_syscalls_total.
        #[arg(long, default_value_t = 64, value_name = "MIB")]
        exit_min_peak_mib: u64,
        /// When a process is judged leaking, profile where it grows (the capture of
        /// `leaktracer profile`, --auto-profile-seconds long, one process at a time, each at
        /// most once an hour) and keep the last this many profiles in memory: served at
        /// /debug/pprof/leaks (list) and /debug/pprof/leaks/ID (pprof), each announced by a
        /// `growth_profile` line on stdout with its top sites. 0 turns it off.
        #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(0..=256))]
        auto_profiles: u64,
        /// How long each automatic growth profile samples.
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=60))]
        auto_profile_seconds: u64,
    },
    /// Analyse a recorded trace offline: ranked suspects with verdicts, OOM kills, health.
    ///
    /// Replays the trace through the same process table and leak detector as a live
    /// session, so the verdicts are the ones `top` and `record` would have given. Reads
    /// streaming (any size, bounded memory). A corrupt or truncated line is an error naming
    /// the line, unless --lenient. Needs no privileges.
    #[command(
        after_help = "Example: leaktracer report node.jsonl --plot node.svg\n         leaktracer report node.jsonl --format json | jq '.suspects[0]'"
    )]
    Report(ReportArgs),
}

#[derive(Debug, Args, Clone)]
pub struct ReportArgs {
    /// The trace to analyse (written by `leaktracer record`, on this node or another).
    #[arg(value_name = "TRACE.jsonl")]
    pub trace: PathBuf,
    /// Output: a readable report, or one JSON document (`suspects`, `oom_kills`, ...).
    #[arg(short, long, value_enum, default_value = "text")]
    pub format: crate::commands::report::ReportFormat,
    /// Also write an SVG chart of private memory over time for the top suspects.
    #[arg(long, value_name = "OUT.svg")]
    pub plot: Option<PathBuf>,
    /// Also draw the growth sites (a trace recorded with --stacks) as an SVG flame graph:
    /// one tower per process, each function as wide as the memory first touched under it.
    #[arg(long, value_name = "OUT.svg")]
    pub flame: Option<PathBuf>,
    /// Skip corrupt or truncated lines with a warning instead of failing.
    #[arg(long)]
    pub lenient: bool,
    /// Suspects to list at most.
    #[arg(short = 'n', long, default_value_t = 20)]
    pub limit: usize,
    /// Only these pids / command names (repeatable).
    #[arg(short, long = "pid", value_name = "PID", value_parser = clap::value_parser!(u32).range(1..))]
    pub pids: Vec<u32>,
    #[arg(short, long = "comm", value_name = "NAME", value_parser = parse_comm)]
    pub comms: Vec<String>,
    /// Only processes of this Kubernetes namespace / pod / container, as recorded (repeatable).
    #[arg(long = "namespace", value_name = "NS", value_parser = parse_name)]
    pub namespaces: Vec<String>,
    #[arg(long = "pod", value_name = "POD", value_parser = parse_name)]
    pub pods: Vec<String>,
    #[arg(long = "container", value_name = "NAME", value_parser = parse_name)]
    pub containers: Vec<String>,
    #[command(flatten)]
    pub risk: RiskArgs,
}

/// A filter on names (namespace, pod, container): an empty one would match nothing.
pub fn parse_name(s: &str) -> Result<String, String> {
    if s.trim().is_empty() {
        return Err("must not be empty".into());
    }
    Ok(s.to_owned())
}

/// A command name as the kernel keeps it: at most 15 bytes (TASK_COMM_LEN - 1), so a longer
/// one would silently match nothing.
pub fn parse_comm(s: &str) -> Result<String, String> {
    let s = parse_name(s)?;
    if s.len() > 15 {
        return Err(format!(
            "command names are at most 15 bytes (the kernel truncates them): use {:?}",
            truncate_comm(&s)
        ));
    }
    Ok(s)
}

fn truncate_comm(s: &str) -> &str {
    let mut end = 15;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// A share of the CPU as a percentage ("1%", "0.5", "0" for off), returned as a fraction.
pub fn parse_percent(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .trim_end_matches('%')
        .parse()
        .map_err(|_| format!("expected a percentage such as 1% or 0.5%, got {s:?}"))?;
    if !(0.0..=100.0).contains(&v) {
        return Err(format!(
            "expected a percentage between 0% and 100%, got {s:?}"
        ));
    }
    Ok(v / 100.0)
}

/// IP:PORT for --listen, with the expected form in the error.
pub fn parse_listen(s: &str) -> Result<std::net::SocketAddr, String> {
    s.parse().map_err(|_| {
        "expected IP:PORT with a port of 1-65535, e.g. 127.0.0.1:9464, 0.0.0.0:9464 or [::]:9464"
            .to_owned()
    })
}

/// "512KiB", "4MiB", "65536": bytes between profile samples, at least one page.
pub fn parse_rate(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, mult) = [
        ("KiB", 1u64 << 10),
        ("MiB", 1 << 20),
        ("GiB", 1 << 30),
        ("B", 1),
    ]
    .iter()
    .find_map(|(suffix, m)| s.strip_suffix(suffix).map(|n| (n, *m)))
    .unwrap_or((s, 1));
    let v: u64 = num
        .trim()
        .parse()
        .map_err(|_| format!("expected a size like 512KiB, 4MiB or 65536, not {s:?}"))?;
    let bytes = v.checked_mul(mult).ok_or("too large")?;
    if !(4096..=1 << 40).contains(&bytes) {
        return Err("must be between 4KiB and 1TiB".into());
    }
    Ok(bytes)
}

/// "30s", "5m", "1h30m", "500ms"; must be positive.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s.trim())
        .map_err(|e| format!("{e} (examples: 500ms, 10s, 5m, 1h)"))?;
    if d.is_zero() {
        return Err("must be greater than zero".into());
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::*;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn bad_flags_are_rejected() {
        assert!(Cli::try_parse_from(["leaktracer", "top", "--bogus"]).is_err());
        assert_eq!(parse_percent("1%"), Ok(0.01));
        assert_eq!(parse_percent("0.5"), Ok(0.005));
        assert_eq!(parse_percent("0"), Ok(0.0));
        assert!(parse_percent("150%").is_err() && parse_percent("lots").is_err());
        assert!(
            Cli::try_parse_from(["leaktracer", "record"]).is_err(),
            "--output is required"
        );
        assert!(Cli::try_parse_from(["leaktracer", "top", "--interval", "0s"]).is_err());
        assert!(Cli::try_parse_from(["leaktracer", "top", "--pid", "abc"]).is_err());
        assert!(
            Cli::try_parse_from([
                "leaktracer",
                "top",
                "--once",
                "--duration",
                "10s",
                "--format",
                "json"
            ])
            .is_ok()
        );
    }
}
