//! Loads the kernel programs, hands them their field offsets, sizes their maps and
//! attaches them. The only module that knows program names and attach points.
use std::path::Path;

use anyhow::{Context as _, anyhow, bail};

use aya::{
    Ebpf, EbpfLoader,
    maps::PerCpuArray,
    programs::{
        RawTracePoint, TracePoint, raw_trace_point::RawTracePointLinkId,
        trace_point::TracePointLinkId,
    },
};
use tracer_common::{RunTime, globals as g};

use crate::{
    kernel::btf::{self, KernelBtf},
    kernel::budget::Hook,
    kernel::preflight,
    kernel::run_time,
    kernel::tracefs::TraceFs,
    util::error::UsageError,
};

/// How RSS changes are observed (see tracer-ebpf/src/programs/rss.rs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RssSource {
    /// Classic kmem:rss_stat tracepoint: exact (the kernel sums the per-CPU counters for
    /// the event), works without BTF. The default.
    Tracepoint,
    /// Raw tracepoint reading the shared counter itself (needs kernel BTF): skips the
    /// per-CPU sum and record formatting, but lags the exact value by the per-CPU batches
    /// not yet folded in (at most max(32, 2*CPUs) pages per CPU the process ran on).
    Raw,
}

/// Map sizes; defaults fit a busy node, tests shrink them to provoke (counted) overflow.
#[derive(Clone, Copy, Debug)]
pub struct MapSizes {
    pub procs: u32,
    pub ringbuf_bytes: u32,
}

impl Default for MapSizes {
    fn default() -> Self {
        Self {
            procs: 32768,
            // 1 MiB: about 5,700 exec/exit events. 256 KiB lost exits when 10,000 processes
            // ended at once (the reader drains every 100 ms, or when an eighth is full).
            ringbuf_bytes: 1 << 20,
        }
    }
}

#[derive(Clone, Debug)]
pub struct LoadOptions {
    pub host_root: std::path::PathBuf,
    pub rss_source: RssSource,
    pub sizes: MapSizes,
    /// Attach oom:mark_victim (optional: a kernel without it degrades with a warning).
    pub oom: bool,
    /// Sample growth-site stacks (`record --stacks`): the page-fault program attached, one
    /// sample per this many bytes first touched on average. The processes to sample are
    /// added as targets afterwards (kernel/profiler.rs).
    pub stacks_mean_bytes: Option<u64>,
}

/// Loaded and attached programs. Dropping it detaches everything.
pub struct Probes {
    pub ebpf: Ebpf,
    pub rss_source: RssSource,
    /// Names of attached programs, for stats and logs.
    pub attached: Vec<&'static str>,
    /// The links of the syscall programs and the growth-site page-fault program, which the
    /// overhead budget detaches and attaches again (absent while detached).
    tracepoint_links: std::collections::HashMap<&'static str, TracePointLinkId>,
    /// The growth-site page-fault program is in use (`record --stacks`).
    stacks: bool,
    /// The rss_stat program's link, which the budget detaches last (absent while detached).
    rss_link: Option<RssLink>,
    /// madvise and munmap count in per-CPU slots, which the sampler adds (see `hot_slots`).
    pub hot_slots: bool,
    /// The syscall programs in use (see `syscall_programs`): the ones the budget reattaches.
    syscall_programs: Vec<&'static str>,
}

enum RssLink {
    Raw(RawTracePointLinkId),
    Tracepoint(TracePointLinkId),
}

/// The compiled kernel object, built by build.rs through aya-build.
pub(crate) static OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/tracer-ebpf"));

/// Syscall tracepoints, named like their programs. madvise and munmap are counted at enter,
/// brk at exit (its return value is the new break), mmap and mremap at exit.
const SYSCALL_PROGRAMS: [&str; 5] = [
    "sys_exit_mmap",
    "sys_enter_munmap",
    "sys_exit_brk",
    "sys_exit_mremap",
    "sys_enter_madvise",
];

/// The enter programs that save mmap's and mremap's arguments for their exits, where the
/// exits cannot read them from the thread's saved registers (see `args_from_regs`).
const ARG_SAVING_PROGRAMS: [&str; 2] = ["sys_enter_mmap", "sys_enter_mremap"];

/// (program, vmscan event) for memory-cgroup direct reclaim.
const RECLAIM_PROGRAMS: [(&str, &str); 2] = [
    ("memcg_reclaim_begin", "mm_vmscan_memcg_reclaim_begin"),
    ("memcg_reclaim_end", "mm_vmscan_memcg_reclaim_end"),
];

/// cgroup:cgroup_mkdir/rmdir/release: which memory cgroups were removed and never freed
/// (zombies), with their paths. Optional, like reclaim.
const CGROUP_PROGRAMS: [&str; 3] = ["cgroup_mkdir", "cgroup_rmdir", "cgroup_release"];

/// The cgroup events' shared layout, if all three exist with a 64-bit id (kernels before
/// 5.5 had a 32-bit one, not worth a second layout).
fn cgroup_offsets(tfs: &TraceFs, o: &mut Offsets) -> anyhow::Result<()> {
    for event in CGROUP_PROGRAMS {
        if !tfs.has_event("cgroup", event) {
            bail!("tracepoint cgroup:{event} not available on this kernel");
        }
    }
    let f = tfs.format("cgroup", "cgroup_rmdir")?;
    if f.fields.get("id").map(|x| x.size) != Some(8) {
        bail!("cgroup:cgroup_rmdir's id is not 64-bit on this kernel");
    }
    o.set(g::CGROUP_ROOT, f.offset("root")?);
    o.set(g::CGROUP_LEVEL, f.offset("level")?);
    o.set(g::CGROUP_ID, f.offset("id")?);
    o.set(g::CGROUP_PATH, f.offset("path")?);
    Ok(())
}

/// Offset of `nr_reclaimed` in the reclaim-end record, if both events exist.
fn reclaim_offset(tfs: &TraceFs) -> anyhow::Result<u32> {
    for (_, event) in RECLAIM_PROGRAMS {
        if !tfs.has_event("vmscan", event) {
            bail!("tracepoint vmscan:{event} not available on this kernel");
        }
    }
    tfs.format("vmscan", "mm_vmscan_memcg_reclaim_end")?
        .offset("nr_reclaimed")
}

struct Offsets {
    values: Vec<(&'static str, u32)>,
}

impl Offsets {
    fn set(&mut self, name: &'static str, v: u32) {
        self.values.push((name, v));
    }
}

fn tracepoint_offsets(tfs: &TraceFs, oom: bool) -> anyhow::Result<Offsets> {
    let mut o = Offsets { values: Vec::new() };
    let mmap = tfs.format("syscalls", "sys_enter_mmap")?;
    o.set(g::MMAP_LEN, mmap.offset("len")?);
    o.set(g::MMAP_PROT, mmap.offset("prot")?);
    o.set(g::MMAP_FLAGS, mmap.offset("flags")?);
    o.set(g::MMAP_FD, mmap.offset("fd")?);
    o.set(
        g::MUNMAP_LEN,
        tfs.format("syscalls", "sys_enter_munmap")?.offset("len")?,
    );
    let mremap = tfs.format("syscalls", "sys_enter_mremap")?;
    o.set(g::MREMAP_OLD_LEN, mremap.offset("old_len")?);
    o.set(g::MREMAP_NEW_LEN, mremap.offset("new_len")?);
    let madvise = tfs.format("syscalls", "sys_enter_madvise")?;
    o.set(g::MADVISE_LEN, madvise.offset("len_in")?);
    o.set(g::MADVISE_BEHAVIOR, madvise.offset("behavior")?);
    // Every sys_exit_* record has the same layout; mmap's stands for all.
    o.set(
        g::SYS_EXIT_RET,
        tfs.format("syscalls", "sys_exit_mmap")?.offset("ret")?,
    );
    let rss = tfs.format("kmem", "rss_stat")?;
    o.set(g::RSS_MM_ID, rss.offset("mm_id")?);
    o.set(g::RSS_CURR, rss.offset("curr")?);
    o.set(g::RSS_MEMBER, rss.offset("member")?);
    o.set(g::RSS_SIZE, rss.offset("size")?);
    let exit = tfs.format("sched", "sched_process_exit")?;
    o.set(g::EXIT_GROUP_DEAD, exit.optional_offset("group_dead"));
    o.set(
        g::EXEC_OLD_PID,
        tfs.format("sched", "sched_process_exec")?
            .offset("old_pid")?,
    );
    if oom {
        let v = tfs.format("oom", "mark_victim")?;
        o.set(g::OOM_PID, v.offset("pid")?);
        o.set(g::OOM_COMM, v.optional_offset("comm"));
        o.set(g::OOM_TOTAL_VM, v.optional_offset("total_vm"));
        o.set(g::OOM_ANON_RSS, v.optional_offset("anon_rss"));
        o.set(g::OOM_FILE_RSS, v.optional_offset("file_rss"));
        o.set(g::OOM_SHMEM_RSS, v.optional_offset("shmem_rss"));
        o.set(g::OOM_UID, v.optional_offset("uid"));
        o.set(g::OOM_PGTABLES, v.optional_offset("pgtables"));
        o.set(g::OOM_SCORE_ADJ, v.optional_offset("oom_score_adj"));
    }
    Ok(o)
}

/// How many RSS slots the rss_stat programs have (`tracer_common::RSS_SLOTS`).
/// `LEAKTRACER_RSS_SLOTS=0` leaves one (index 0 only): every other process keeps its RSS in
/// its entry, the path a process takes when its slot's index is another's (for measuring
/// what the slots save, and for testing that path).
fn rss_slots() -> u32 {
    match std::env::var("LEAKTRACER_RSS_SLOTS") {
        Ok(v) if v == "0" => 1,
        _ => tracer_common::RSS_SLOTS,
    }
}

/// Whether madvise and munmap count in per-CPU slots (`tracer_common::HOT_SLOTS`), and the
/// possible CPUs. The slots need `bpf_map_lookup_percpu_elem` (Linux 5.19) for the exit
/// program to fold every CPU's; on an older kernel, or a node with more CPUs than the fold
/// visits, they stay off and those programs count in the process's entry as before.
/// Without the fork program (no kernel BTF) a pid reused after a missed exit could inherit
/// its slots, so they stay off too. `LEAKTRACER_HOT_SLOTS=0` turns them off (for measuring
/// what they save).
fn hot_slots(fork_traced: bool) -> (u32, u32) {
    let cpus = aya::util::nr_cpus().map_or(0, |n| n as u32);
    let kernel_has_fold = aya::util::KernelVersion::current()
        .is_ok_and(|v| v >= aya::util::KernelVersion::new(5, 19, 0));
    let wanted = std::env::var("LEAKTRACER_HOT_SLOTS").map_or(true, |v| v != "0");
    let on = wanted
        && kernel_has_fold
        && fork_traced
        && (1..=tracer_common::HOT_MAX_CPUS).contains(&cpus);
    if wanted && !on {
        log::info!(
            "madvise and munmap count in the per-process map (kernel before 5.19, {cpus} CPUs, or fork not traced): the per-CPU fast path is off"
        );
    }
    (u32::from(on), cpus)
}

/// Whether the mmap/mremap exits read their arguments from the thread's saved user
/// registers (tracer-ebpf's syscall_args.rs), which spares them an enter program each. That
/// needs x86_64 (the register layout the programs know), `bpf_task_pt_regs` (Linux 5.15) and
/// the kernel's BTF (`btf_usable`). `LEAKTRACER_MMAP_ARGS=enter` keeps the enter programs
/// (for measuring what this saves, and for testing that path).
fn args_from_regs(btf_usable: bool) -> u32 {
    let kernel_has_regs = aya::util::KernelVersion::current()
        .is_ok_and(|v| v >= aya::util::KernelVersion::new(5, 15, 0));
    let wanted = std::env::var("LEAKTRACER_MMAP_ARGS").map_or(true, |v| v != "enter");
    let on = wanted && kernel_has_regs && btf_usable && std::env::consts::ARCH == "x86_64";
    if wanted && !on {
        log::info!(
            "mmap and mremap save their arguments at enter (kernel before 5.15, no kernel BTF, or not x86_64)"
        );
    }
    u32::from(on)
}

/// The syscall programs to attach: the arguments' enter programs only when the exits need
/// them.
fn syscall_programs(args_from_regs: bool) -> Vec<&'static str> {
    let mut programs = SYSCALL_PROGRAMS.to_vec();
    if !args_from_regs {
        programs.extend(ARG_SAVING_PROGRAMS);
    }
    programs
}

impl Probes {
    pub fn load(opts: &LoadOptions) -> anyhow::Result<Self> {
        preflight::check_privileges()?;
        let tfs = preflight::locate_tracefs(&opts.host_root)?;
        preflight::raise_memlock();

        let oom = opts.oom && tfs.has_event("oom", "mark_victim");
        if opts.oom && !oom {
            log::warn!(
                "tracepoint oom:mark_victim not available on this kernel: OOM kills will not be recorded"
            );
        }
        let mut offsets = tracepoint_offsets(&tfs, oom).map_err(|e| {
            anyhow!(UsageError::new(format!(
                "{e:#}: this kernel lacks a tracepoint leaktracer needs"
            )))
        })?;
        // Memory-cgroup reclaim is optional evidence: without it the rest still works.
        let reclaim = match reclaim_offset(&tfs) {
            Ok(off) => {
                offsets.set(g::RECLAIM_NR_RECLAIMED, off);
                true
            }
            Err(e) => {
                log::warn!("memory-cgroup reclaim is not traced: {e:#}");
                false
            }
        };

        let cgroups = match cgroup_offsets(&tfs, &mut offsets) {
            Ok(()) => true,
            Err(e) => {
                log::warn!("zombie memory cgroups are counted but not named: {e:#}");
                false
            }
        };

        // Kernel struct offsets for the raw programs (fork always; rss in raw mode).
        let btf = KernelBtf::from_path(&opts.host_root.join("sys/kernel/btf/vmlinux"));
        let task = btf.as_ref().ok().map(btf::task_layout).transpose();
        let rss_layout = btf.as_ref().ok().map(btf::rss_layout).transpose();
        let rss_source = match (opts.rss_source, &rss_layout) {
            (RssSource::Tracepoint, _) => RssSource::Tracepoint,
            (RssSource::Raw, Ok(Some(_))) => RssSource::Raw,
            (RssSource::Raw, _) => {
                return Err(anyhow!(UsageError::new(format!(
                    "--rss-source raw needs the kernel's BTF (/sys/kernel/btf/vmlinux): {}",
                    btf_problem(&btf, &rss_layout)
                ))));
            }
        };
        let task = match task {
            Ok(Some(t)) => Some(t),
            _ => {
                log::warn!(
                    "kernel BTF unusable: fork is not traced, new processes appear at their first allocation"
                );
                None
            }
        };
        if let Some(t) = task {
            offsets.set(g::TASK_MM, t.task_mm);
            offsets.set(g::TASK_PID, t.task_pid);
            offsets.set(g::TASK_TGID, t.task_tgid);
        }
        match btf.as_ref().map(btf::task_extras) {
            Ok(Ok(x)) => {
                offsets.set(g::TASK_FLAGS, x.task_flags);
                offsets.set(g::TASK_SIGNAL, x.task_signal);
                offsets.set(g::SIGNAL_LIVE, x.signal_live);
                offsets.set(g::TASK_GROUP_LEADER, x.task_group_leader);
                offsets.set(g::TASK_COMM, x.task_comm);
            }
            Ok(Err(e)) => log::warn!(
                "{e:#}: processes are named by the thread that first ran, and on kernels without sched_process_exit's group_dead a process ends with its leader"
            ),
            Err(_) => {}
        }
        // Set whatever the rss source: new kernel entries take their first RSS from the mm
        // through these (see maps.rs fill_rss_from_mm), in the classic mode too.
        if let Ok(Some(r)) = &rss_layout {
            offsets.set(g::MM_RSS_STAT, r.mm_rss_stat);
            offsets.set(g::RSS_STAT_STRIDE, r.stride);
            offsets.set(g::RSS_STAT_COUNT, r.count);
        }

        // Growth sites asked for and this kernel cannot: the user's request fails clearly.
        let stack_fields = match opts.stacks_mean_bytes {
            Some(_) => Some(crate::kernel::profiler::field_offsets(&tfs)?),
            None => None,
        };
        let stacks_mean_bytes = opts.stacks_mean_bytes.unwrap_or(0);

        let page_size = page_size();
        let self_tgid = std::process::id();
        let raw_keys: u32 = u32::from(rss_source == RssSource::Raw);
        // The fork program (task offsets known) frees a recycled pid's stale slots.
        let (hot_on, nr_cpus) = hot_slots(task.is_some());
        let args_from_regs = args_from_regs(task.is_some());
        let mut loader = EbpfLoader::new();
        for (name, v) in &offsets.values {
            loader.override_global(name, v, true);
        }
        loader
            .override_global(g::PAGE_SIZE, &page_size, true)
            .override_global(g::SELF_TGID, &self_tgid, true)
            .override_global("RSS_KEYS_ARE_POINTERS", &raw_keys, true)
            .override_global(g::HOT_ON, &hot_on, true)
            .override_global(g::NR_CPUS, &nr_cpus, true)
            .override_global(g::ARGS_FROM_REGS, &args_from_regs, true)
            .map_max_entries("PROCS", opts.sizes.procs)
            .map_max_entries("RSS_SLOTS", rss_slots())
            .map_max_entries(
                "EVENTS",
                opts.sizes
                    .ringbuf_bytes
                    .next_power_of_two()
                    .max(page_size as u32),
            );
        if let Some(fields) = &stack_fields {
            crate::kernel::profiler::configure(&mut loader, fields, &stacks_mean_bytes);
        }
        let mut ebpf = loader
            .load(OBJECT)
            .context("loading the eBPF object into the kernel")?;

        // RSS figures are exact from the first generation on (see ProcStats::rss_gen).
        crate::kernel::sampler::set_rss_gen(&mut ebpf, 1)?;
        let mut attached = Vec::new();
        let mut tracepoint_links = std::collections::HashMap::new();
        let syscall_programs = syscall_programs(args_from_regs != 0);
        for &prog in &syscall_programs {
            tracepoint_links.insert(prog, attach_tp(&mut ebpf, prog, "syscalls", prog)?);
            attached.push(prog);
        }
        let rss_link = Some(match rss_source {
            RssSource::Raw => RssLink::Raw(attach_raw(&mut ebpf, "rss_stat_raw", "rss_stat")?),
            RssSource::Tracepoint => {
                RssLink::Tracepoint(attach_tp(&mut ebpf, "rss_stat", "kmem", "rss_stat")?)
            }
        });
        attached.push(rss_program(rss_source));
        if task.is_some() {
            attach_raw(&mut ebpf, "sched_process_fork", "sched_process_fork")?;
            attached.push("sched_process_fork");
        }
        attach_tp(
            &mut ebpf,
            "sched_process_exec",
            "sched",
            "sched_process_exec",
        )?;
        attach_tp(
            &mut ebpf,
            "sched_process_exit",
            "sched",
            "sched_process_exit",
        )?;
        attached.extend(["sched_process_exec", "sched_process_exit"]);
        if oom {
            attach_tp(&mut ebpf, "mark_victim", "oom", "mark_victim")?;
            attached.push("mark_victim");
        }
        if reclaim {
            for (prog, event) in RECLAIM_PROGRAMS {
                attach_tp(&mut ebpf, prog, "vmscan", event)?;
                attached.push(prog);
            }
        }
        if cgroups {
            for prog in CGROUP_PROGRAMS {
                attach_tp(&mut ebpf, prog, "cgroup", prog)?;
                attached.push(prog);
            }
        }
        let stacks = stack_fields.is_some();
        if stacks {
            use crate::kernel::profiler::{PROGRAMS, init};
            init(&mut ebpf)?;
            for (prog, group, event) in PROGRAMS {
                tracepoint_links.insert(prog, attach_tp(&mut ebpf, prog, group, event)?);
                attached.push(prog);
            }
        }
        log::info!(
            "attached {} programs (rss source: {:?})",
            attached.len(),
            rss_source
        );
        Ok(Self {
            ebpf,
            rss_source,
            attached,
            tracepoint_links,
            stacks,
            rss_link,
            hot_slots: hot_on != 0,
            syscall_programs,
        })
    }

    /// What the programs have cost so far, as they timed themselves (run_time.rs): one
    /// figure per hook and one for the unpausable programs, with the hooks' runs in this
    /// process's other loads registered to be priced (the daemon's growth-profile captures:
    /// see priced.rs). Empty if the maps cannot be read.
    pub fn costs(&self) -> Vec<crate::kernel::budget::ProgCost> {
        let mut readings = crate::kernel::priced::readings();
        if let (Some(time), Some(runs)) = (self.ebpf.map("HOOK_TIME"), self.ebpf.map("PROG_RUNS"))
            && let (Ok(time), Ok(runs)) = (
                PerCpuArray::<_, RunTime>::try_from(time),
                PerCpuArray::<_, u64>::try_from(runs),
            )
        {
            readings.extend(
                run_time::indices().filter_map(|i| Some((i, run_time::read(&time, &runs, i)?))),
            );
        }
        run_time::costs(&readings)
    }

    /// Each pausable hook's cumulative run count (the kernel's `PROG_RUNS`, summed over its
    /// programs and CPUs, with the runs of registered captures' growth-site programs: see
    /// priced.rs), for the overhead budget's guard; empty if the map cannot be read.
    pub fn hook_runs(&self) -> Vec<(Hook, u64)> {
        let Some(map) = self.ebpf.map("PROG_RUNS") else {
            return Vec::new();
        };
        let Ok(runs) = PerCpuArray::<_, u64>::try_from(map) else {
            return Vec::new();
        };
        run_time::HOOK_INDICES
            .into_iter()
            .filter_map(|(hook, index)| {
                let own = run_time::hook_runs(&runs, index)?;
                // The daemon's captures run growth-site programs of their own load (priced.rs).
                let other = if hook == Hook::Stacks {
                    crate::kernel::priced::stacks_runs()
                } else {
                    0
                };
                Some((hook, own + other))
            })
            .collect()
    }

    fn tracepoint(&mut self, name: &str) -> anyhow::Result<&mut TracePoint> {
        Ok(self
            .ebpf
            .program_mut(name)
            .with_context(|| format!("program {name} missing"))?
            .try_into()?)
    }

    /// Detach a syscall or rss_stat program (the overhead budget); a no-op when it is
    /// detached or not in use.
    pub fn detach(&mut self, prog: &str) -> anyhow::Result<()> {
        if prog == rss_program(self.rss_source) {
            match self.rss_link.take() {
                Some(RssLink::Raw(id)) => self.raw_tracepoint(prog)?.detach(id),
                Some(RssLink::Tracepoint(id)) => self.tracepoint(prog)?.detach(id),
                None => return Ok(()),
            }
            .with_context(|| format!("detaching {prog}"))?;
            return Ok(());
        }
        let Some((name, id)) = self.tracepoint_links.remove_entry(prog) else {
            return Ok(());
        };
        self.tracepoint(name)?
            .detach(id)
            .with_context(|| format!("detaching {name}"))?;
        Ok(())
    }

    /// Attach a detached program again; a no-op when attached or not in use.
    pub fn reattach(&mut self, prog: &str) -> anyhow::Result<()> {
        if prog == rss_program(self.rss_source) {
            if self.rss_link.is_none() {
                self.rss_link = Some(match self.rss_source {
                    RssSource::Raw => RssLink::Raw(
                        self.raw_tracepoint(prog)?
                            .attach("rss_stat")
                            .with_context(|| format!("attaching {prog} again"))?,
                    ),
                    RssSource::Tracepoint => RssLink::Tracepoint(
                        self.tracepoint(prog)?
                            .attach("kmem", "rss_stat")
                            .with_context(|| format!("attaching {prog} again"))?,
                    ),
                });
            }
            return Ok(());
        }
        let found = match self.syscall_programs.iter().copied().find(|n| *n == prog) {
            Some(name) => Some((name, "syscalls", name)),
            None if self.stacks => crate::kernel::profiler::PROGRAMS
                .into_iter()
                .find(|(name, _, _)| *name == prog),
            None => None,
        };
        // None: the other rss program (not the one in use), stacks not asked for, or an
        // enter program the mmap exits do not need.
        let Some((name, group, event)) = found else {
            return Ok(());
        };
        if self.tracepoint_links.contains_key(name) {
            return Ok(());
        }
        let id = self
            .tracepoint(name)?
            .attach(group, event)
            .with_context(|| format!("attaching {name} again"))?;
        self.tracepoint_links.insert(name, id);
        Ok(())
    }

    fn raw_tracepoint(&mut self, name: &str) -> anyhow::Result<&mut RawTracePoint> {
        Ok(self
            .ebpf
            .program_mut(name)
            .with_context(|| format!("program {name} missing"))?
            .try_into()?)
    }
}

/// The program that observes RSS in this mode.
fn rss_program(source: RssSource) -> &'static str {
    match source {
        RssSource::Raw => "rss_stat_raw",
        RssSource::Tracepoint => "rss_stat",
    }
}

fn btf_problem(
    btf: &anyhow::Result<KernelBtf>,
    layout: &anyhow::Result<Option<btf::RssLayout>>,
) -> String {
    match (btf, layout) {
        (Err(e), _) => format!("{e:#}"),
        (_, Err(e)) => format!("{e:#}"),
        _ => "unknown".into(),
    }
}

pub(crate) fn attach_tp(
    ebpf: &mut Ebpf,
    prog: &str,
    group: &str,
    event: &str,
) -> anyhow::Result<TracePointLinkId> {
    let p: &mut TracePoint = ebpf
        .program_mut(prog)
        .with_context(|| format!("program {prog} missing from the object"))?
        .try_into()?;
    p.load()
        .with_context(|| format!("verifier rejected {prog}"))?;
    p.attach(group, event)
        .with_context(|| format!("attaching {prog} to tracepoint {group}:{event}"))
}

fn attach_raw(ebpf: &mut Ebpf, prog: &str, tp: &str) -> anyhow::Result<RawTracePointLinkId> {
    let p: &mut RawTracePoint = ebpf
        .program_mut(prog)
        .with_context(|| format!("program {prog} missing from the object"))?
        .try_into()?;
    p.load()
        .with_context(|| format!("verifier rejected {prog}"))?;
    p.attach(tp)
        .with_context(|| format!("attaching {prog} to raw tracepoint {tp}"))
}
// The page size is the machine's, not the kernel programs': util owns it; kept here
// for the loader's callers.
pub use crate::util::page::page_size;

/// Is a host root usable? (Used to explain `--host-root` mistakes early.)
pub fn check_host_root(root: &Path) -> Result<(), UsageError> {
    if root.join("proc").is_dir() {
        Ok(())
    } else {
        Err(UsageError::new(format!(
            "--host-root {}: no proc/ under it",
            root.display()
        )))
    }
}
