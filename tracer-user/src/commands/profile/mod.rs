//! `leaktracer profile`: where in their code processes grow. First-touch page faults of the
//! chosen processes are sampled by bytes in the kernel (kernel/profiler.rs), their user
//! stacks named from each binary (Go's own symbol table for Go, blazesym otherwise), and the
//! result written as pprof with the top growth sites printed. The mappings of each process
//! are captured while it runs, so a process that exits before the end is still named.
pub mod pprof;

use std::{
    collections::{BTreeSet, HashMap},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::Context as _;

use crate::{
    host::{
        identity::{Identity, pod_log::PodLogIndex},
        procfs::Procfs,
        sites::ProcessImage,
        symbols::Symbolizer,
    },
    kernel::profiler::{ProfileCounters, Profiler, SampledStack},
    model::growth::{Frame, GrowthKind, GrowthProfile, MappingInfo, ProcessStack, Site},
    util::{clock, error::UsageError, format},
};

/// Which processes to profile: any that matches one of these.
#[derive(Clone, Debug, Default)]
pub struct Targets {
    pub pids: Vec<u32>,
    pub comms: Vec<String>,
    /// NAMESPACE/POD.
    pub pods: Vec<(String, String)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ProfileFormat {
    Text,
    Json,
}

pub struct ProfileOptions {
    pub targets: Targets,
    pub duration: Duration,
    pub output: PathBuf,
    pub mean_bytes: u64,
    pub format: ProfileFormat,
    pub top: usize,
}

/// How often new matching processes are looked for and mappings captured again.
const RESCAN: Duration = Duration::from_secs(1);

/// Parse NAMESPACE/POD.
pub fn parse_pod(s: &str) -> Result<(String, String), String> {
    match s.split_once('/') {
        Some((ns, pod)) if !ns.is_empty() && !pod.is_empty() && !pod.contains('/') => {
            Ok((ns.to_string(), pod.to_string()))
        }
        _ => Err("expected NAMESPACE/POD, e.g. kube-system/traefik-6d8f7c9b5-x2x4q".into()),
    }
}

pub async fn run(host_root: &Path, opts: &ProfileOptions) -> anyhow::Result<()> {
    let mut sigint = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .context("installing the SIGINT handler")?;
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    let stop = async move {
        tokio::select! {
            _ = sigint.recv() => {}
            _ = sigterm.recv() => {}
        }
    };
    let (profile, counters) = capture(
        host_root,
        &opts.targets,
        opts.duration,
        opts.mean_bytes,
        stop,
    )
    .await?;
    pprof::write(&profile, &opts.output)?;
    let seen = &profile.comms;
    let sites = profile.top_sites(opts.top);
    let mapped_sites = profile.top_mapped_sites(opts.top);
    match opts.format {
        ProfileFormat::Text => print_text(&profile, &sites, &mapped_sites, &counters, &opts.output),
        ProfileFormat::Json => println!(
            "{}",
            serde_json::to_string(&serde_json::json!({
                "output": opts.output,
                "processes": seen.iter().map(|(pid, comm)| serde_json::json!({"pid": pid, "comm": comm})).collect::<Vec<_>>(),
                "mean_bytes": opts.mean_bytes,
                "samples": profile.total_samples(),
                "mapped_samples": profile.mapped_samples(),
                "counters": counters,
                "sites": sites,
                "mapped_sites": mapped_sites,
                "functions": profile.functions(opts.top),
            }))?
        ),
    }
    Ok(())
}

/// Profile the processes matching `targets` for `duration` (or until `stop` completes): their
/// growth sites named, with the kernel side's counters. The one capture `profile` and the
/// daemon's /debug/pprof/growth share.
pub async fn capture(
    host_root: &Path,
    t: &Targets,
    duration: Duration,
    mean_bytes: u64,
    stop: impl std::future::Future<Output = ()>,
) -> anyhow::Result<(GrowthProfile, ProfileCounters)> {
    if t.pids.is_empty() && t.comms.is_empty() && t.pods.is_empty() {
        return Err(UsageError::new("profile needs at least one of --pid, --comm or --pod").into());
    }
    let procfs = Procfs::new(host_root);
    let proc_root = host_root.join("proc");
    let mut profiler = Profiler::start(host_root, mean_bytes)?;
    let mut pods = PodLogIndex::new(host_root);
    let mut seen: HashMap<u32, ProcessImage> = HashMap::new();
    let start_unix_ns = clock::unix_millis() as i64 * 1_000_000;
    let started = Instant::now();
    let deadline = tokio::time::Instant::now() + duration;
    let mut tick = tokio::time::interval(RESCAN);
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                for pid in matching(&procfs, t, &mut pods) {
                    if !seen.contains_key(&pid) {
                        profiler.add_target(pid, mean_bytes)?;
                        log::info!("profiling pid {pid}");
                    }
                    // Mappings change (libraries loaded, heaps grown): capture them again.
                    if let Some(image) = ProcessImage::read(&proc_root, pid, procfs.comm(pid).unwrap_or_default()) {
                        seen.insert(pid, image);
                    }
                }
                // Named pids are there or not; names and pods may still come.
                if seen.is_empty() && t.comms.is_empty() && t.pods.is_empty() {
                    return Err(UsageError::new("no process with the --pid given is running").into());
                }
            }
            () = tokio::time::sleep_until(deadline) => break,
            () = &mut stop => break,
        }
    }
    if seen.is_empty() {
        anyhow::bail!("no process matched --comm/--pod during the run: nothing to profile");
    }
    let stacks = profiler.stacks()?;
    let counters = profiler.counters()?;
    drop(profiler);
    let profile = build(&stacks, &seen, mean_bytes, start_unix_ns, started.elapsed());
    Ok((profile, counters))
}

/// Running processes that match the targets.
fn matching(procfs: &Procfs, t: &Targets, pods: &mut PodLogIndex) -> BTreeSet<u32> {
    let me = std::process::id();
    let mut out = BTreeSet::new();
    for pid in procfs.pids() {
        if pid == me {
            continue;
        }
        let by_pid = t.pids.contains(&pid);
        let by_comm = !t.comms.is_empty() && procfs.comm(pid).is_some_and(|c| t.comms.contains(&c));
        let by_pod = !t.pods.is_empty()
            && procfs
                .cgroup(pid)
                .and_then(|c| Identity::from_proc_cgroup(&c))
                .is_some_and(|mut id| {
                    pods.resolve(&mut id);
                    let names = &id.names;
                    t.pods.iter().any(|(ns, pod)| {
                        names.namespace.as_deref() == Some(ns) && names.pod.as_deref() == Some(pod)
                    })
                });
        if by_pid || by_comm || by_pod {
            out.insert(pid);
        }
    }
    out
}

/// Name every frame: its mapping from the process's captured maps, the binary read through
/// the process's root while it lives (the host path once it is gone).
fn build(
    stacks: &[SampledStack],
    seen: &HashMap<u32, ProcessImage>,
    mean_bytes: u64,
    start_unix_ns: i64,
    elapsed: Duration,
) -> GrowthProfile {
    let mut sym = Symbolizer::new();
    let mut profile = GrowthProfile {
        mean_bytes,
        start_unix_ns,
        duration_ns: elapsed.as_nanos() as i64,
        comms: seen.iter().map(|(p, s)| (*p, s.comm.clone())).collect(),
        ..GrowthProfile::default()
    };
    let mut mapping_ids: HashMap<(u32, u64), usize> = HashMap::new();
    for st in stacks {
        let Some(proc) = seen.get(&st.pid) else {
            continue;
        };
        let mut frames = Vec::with_capacity(st.frames.len());
        for (i, &addr) in st.frames.iter().enumerate() {
            let (mapping, resolved) = match proc.locate(addr) {
                Some((m, path, readable)) => {
                    let resolved = sym.resolve(&readable, m.file_offset(addr), i > 0);
                    let next = profile.mappings.len();
                    let id = *mapping_ids.entry((st.pid, m.start)).or_insert(next);
                    if id == next {
                        let build_id = sym.binary(&readable).and_then(|b| b.build_id.clone());
                        profile.mappings.push(MappingInfo {
                            pid: st.pid,
                            start: m.start,
                            end: m.end,
                            offset: m.offset,
                            path,
                            build_id,
                        });
                    }
                    (Some(id), resolved)
                }
                None => (None, Default::default()),
            };
            frames.push(Frame {
                address: addr,
                mapping,
                resolved,
            });
        }
        profile.stacks.push(ProcessStack {
            pid: st.pid,
            kind: st.kind,
            samples: st.samples,
            frames,
        });
    }
    profile
}

fn print_text(
    p: &GrowthProfile,
    sites: &[Site],
    mapped_sites: &[Site],
    c: &ProfileCounters,
    output: &Path,
) {
    let mut names: Vec<String> = p
        .comms
        .iter()
        .map(|(pid, comm)| format!("{comm} ({pid})"))
        .collect();
    names.sort();
    println!(
        "Growth profile of {}: {} samples, one per {} of first-touched memory on average, {} estimated",
        names.join(", "),
        p.total_samples(),
        format::bytes(p.mean_bytes as f64),
        format::bytes((p.total_samples() * p.mean_bytes) as f64)
    );
    println!("{:>9}  {:>6}  SITE", "GROWTH", "SHARE");
    print_sites(sites);
    if !mapped_sites.is_empty() {
        println!(
            "Mapped (anonymous mmap and brk, touched or not): {} estimated",
            format::bytes((p.mapped_samples() * p.mean_bytes) as f64)
        );
        println!("{:>9}  {:>6}  SITE", "MAPPED", "SHARE");
        print_sites(mapped_sites);
    }
    let dropped = c.dropped();
    println!(
        "Kernel: {} first-touch faults and {} mmap/brk growths seen, {} samples, {} stacks truncated, {} samples dropped (hash collisions {}, table full {}, no user stack {})",
        c.faults,
        c.growth_calls,
        c.samples,
        c.truncated,
        dropped,
        c.collisions,
        c.stacks_full,
        c.stack_errors
    );
    println!(
        "Written: {} (go tool pprof -top {}; -sample_index=mapped_space for the mapped growth)",
        output.display(),
        output.display()
    );
}

fn print_sites(sites: &[Site]) {
    for s in sites {
        let at = match (&s.file, s.line) {
            (Some(f), Some(l)) => format!("  {f}:{l}"),
            (Some(f), None) => format!("  {f}"),
            _ => String::new(),
        };
        let kind = if s.kind == GrowthKind::Brk {
            "  (brk)"
        } else {
            ""
        };
        println!(
            "{:>9}  {:>5.1}%  {}{at}{kind}",
            format::bytes(s.bytes as f64),
            s.share * 100.0,
            s.function
        );
    }
}
