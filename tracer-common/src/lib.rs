//! The ABI shared by leaktracer's kernel programs and its userspace.
//!
//! Everything here is `#[repr(C)]`, fixed-size and free of padding surprises so that the
//! kernel writes and userspace reads the very same bytes. Userspace enables the `user`
//! feature to get `aya::Pod` for map values and ring-buffer records.
#![no_std]
// Unit tests may unwrap: a panic is how a test fails. Production code may not (see the
// workspace lints in Cargo.toml).
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

/// Kernel `enum mm_counter` order: MM_FILEPAGES, MM_ANONPAGES, MM_SWAPENTS, MM_SHMEMPAGES.
pub const RSS_FILE: usize = 0;
pub const RSS_ANON: usize = 1;
pub const RSS_SWAP: usize = 2;
pub const RSS_SHMEM: usize = 3;
pub const RSS_MEMBERS: usize = 4;

/// Syscalls traced, as indices into [`ProcStats::calls`].
pub const CALL_MMAP: usize = 0;
pub const CALL_MUNMAP: usize = 1;
pub const CALL_BRK: usize = 2;
pub const CALL_MREMAP: usize = 3;
pub const CALL_MADVISE: usize = 4;
pub const CALL_KINDS: usize = 5;
/// Names of the syscalls above, in index order (for logs, JSON and metrics).
pub const CALL_NAMES: [&str; CALL_KINDS] = ["mmap", "munmap", "brk", "mremap", "madvise"];

/// Buckets of the per-process log2 histogram of mmap request sizes:
/// bucket `i` counts requests with `floor(log2(len)) == i + 12` (4 KiB) ; the last bucket
/// takes everything from 2^(12+MMAP_HIST_BUCKETS-1) up, the first everything below 8 KiB.
pub const MMAP_HIST_BUCKETS: usize = 24;
pub const MMAP_HIST_MIN_SHIFT: u32 = 12;

/// The histogram bucket of an mmap of `len` bytes: floor(log2(len)) - 12, clamped to the
/// buckets (see [`MMAP_HIST_BUCKETS`]). A loop of at most 23 one-bit shifts: a binary search
/// over the bit length is shorter, but Linux 6.1's verifier loses the bounds of its result
/// (it tracks the ORs LLVM makes of the partial sums as a contradictory range) and refuses
/// the histogram write.
#[inline(always)]
pub fn mmap_size_bucket(len: u64) -> usize {
    let mut v = len >> (MMAP_HIST_MIN_SHIFT + 1);
    let mut bucket = 0usize;
    while v != 0 && bucket < MMAP_HIST_BUCKETS - 1 {
        v >>= 1;
        bucket += 1;
    }
    bucket
}

/// Per-process counters, aggregated in the kernel, keyed by tgid in the `PROCS` map.
/// Byte counters are cumulative since the entry was created (`first_seen_ns`);
/// `rss` holds the latest absolute value of each RSS counter.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProcStats {
    pub comm: [u8; 16],
    /// CLOCK_MONOTONIC (bpf_ktime_get_ns) when the kernel created this entry.
    pub first_seen_ns: u64,
    /// Latest RSS per kernel counter (bytes), see `RSS_*`.
    pub rss: [u64; RSS_MEMBERS],
    /// Highest anon+shmem+swap seen (bytes): the leak-relevant high-water mark.
    pub peak_private: u64,
    /// Calls per traced syscall, see `CALL_*`: mmap and mremap when they succeeded; brk every
    /// call (a failed brk returns the unchanged break and changes nothing); munmap and madvise
    /// every call (counted at entry, see the syscall programs: a failed one is a caller's bug).
    pub calls: [u64; CALL_KINDS],
    /// mmap and mremap calls that returned an error (not counted in the byte counters).
    pub failed_calls: u64,
    /// mmap with PROT_READ/WRITE/EXEC of anonymous memory (committed address space).
    pub mapped_anon: u64,
    /// mmap of a file.
    pub mapped_file: u64,
    /// mmap with PROT_NONE: address space reserved, not committed (Go's arena reservations).
    pub reserved: u64,
    /// munmap'ed bytes (whatever the mapping was).
    pub unmapped: u64,
    /// madvise(MADV_DONTNEED | MADV_FREE | MADV_REMOVE | MADV_DONTNEED_LOCKED) bytes: given back
    /// to the kernel without unmapping (Go's scavenger, jemalloc, tcmalloc).
    pub released: u64,
    /// Heap growth and shrink through brk.
    pub brk_grown: u64,
    pub brk_shrunk: u64,
    /// Growth and shrink through mremap.
    pub mremap_grown: u64,
    pub mremap_shrunk: u64,
    /// Current program break as last returned by brk (0 until the first call is seen).
    pub brk_current: u64,
    /// Parent tgid at fork, 0 when the process predates the tracer.
    pub ppid: u32,
    /// `PROC_FLAG_*`.
    pub flags: u32,
    /// log2 histogram of mmap request sizes, see `MMAP_HIST_*`.
    pub mmap_size_hist: [u32; MMAP_HIST_BUCKETS],
    /// Memory-cgroup direct reclaim run by this process's threads (vmscan memcg_reclaim
    /// begin/end): its charges hit the cgroup's limit (v1 limit_in_bytes, v2 memory.max) or
    /// memory.high, and it had to free pages before it could go on.
    pub reclaim_runs: u64,
    /// Time spent in that reclaim (ns): stall the cgroup's limit imposed on this process.
    pub reclaim_ns: u64,
    /// Pages that reclaim freed (from anywhere in the cgroup, not only this process).
    pub reclaimed_pages: u64,
    /// The RSS generation (`RSS_GEN`) current when `rss` was last filled whole from the mm.
    /// `rss` is exact only while it equals a non-zero current generation: the overhead budget
    /// sets the generation to 0 when it pauses the rss_stat hook and to a new value when it
    /// resumes it, so an entry not refilled since is read from /proc instead.
    pub rss_gen: u32,
    /// 1 while this process's RSS figures live in its `RSS_SLOTS` slot (see [`RssSlot`]):
    /// the slot's `rss`, `peak_private` and `rss_gen` are then newer than the entry's.
    pub rss_in_slot: u32,
    /// The key under which this process owns its mm in `MM_OWNER` (the mm's address for the
    /// raw rss_stat program, its tagged hash for the classic one; 0 until learnt). An rss_stat
    /// event for this very key is the process's own: the kernel program then skips the owner
    /// map, the costliest part of the page-fault path. Kernel-private; userspace ignores it.
    pub mm_key: u64,
}

/// Slots of the per-CPU `HOT` array: madvise and munmap, the hottest syscalls (an allocator
/// purging makes millions of madvise calls a second), and the mmap/mremap exits count into a
/// slot of their own CPU indexed by `tgid % HOT_SLOTS` instead of the process's `PROCS`
/// entry: an inlined array access and plain adds instead of a hash lookup and atomic adds. A slot belongs to one
/// process at a time (`tgid`); a process whose index is taken on that CPU counts in `PROCS`
/// as before. Userspace adds a process's slots of every CPU to its entry when it samples; the
/// exit program folds them into the final counters and frees them.
pub const HOT_SLOTS: u32 = 256;

/// Slots of the `RSS_SLOTS` array: the rss_stat programs (every page fault runs them) keep a
/// process's RSS in the slot at index `tgid % RSS_SLOTS` instead of its `PROCS` entry, an
/// inlined array access instead of a hash lookup, the most of what the page-fault path cost
/// above the empty program. Unlike [`HOT_SLOTS`] this array is shared by all CPUs: RSS figures
/// are absolute values (the last writer is right), not sums, so one slot per process serves.
/// A slot belongs to one process at a time (`tgid`); a process whose index is taken keeps
/// its RSS in `PROCS` as before. Its entry's `rss_in_slot` tells userspace to read the slot;
/// exec and exit fold the slot back into the entry and free it.
pub const RSS_SLOTS: u32 = 4096;

/// One process's RSS figures while it holds a slot (see [`RSS_SLOTS`]): the fields of
/// [`ProcStats`] that the rss_stat programs write.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RssSlot {
    /// The owning process; 0 = free.
    pub tgid: u32,
    /// As `ProcStats::rss_gen`.
    pub rss_gen: u32,
    /// As `ProcStats::mm_key`: the mm whose changes this slot takes (0 while being claimed).
    pub mm_key: u64,
    /// As `ProcStats::rss`.
    pub rss: [u64; RSS_MEMBERS],
    /// As `ProcStats::peak_private`.
    pub peak_private: u64,
}

impl RssSlot {
    /// The entry as it is with this slot's figures, when the slot is the entry's (same owner
    /// `tgid` and mm): what the sampler reads for a process whose RSS lives in its slot.
    pub fn merged_into(&self, tgid: u32, s: &ProcStats) -> Option<ProcStats> {
        if self.tgid != tgid || self.mm_key != s.mm_key || self.mm_key == 0 {
            return None;
        }
        Some(ProcStats {
            rss: self.rss,
            peak_private: self.peak_private.max(s.peak_private),
            rss_gen: self.rss_gen,
            ..*s
        })
    }
}

/// One process's counts on one CPU (see [`HOT_SLOTS`]): what its madvise and munmap
/// programs count (at sys_enter) and its mmap and mremap exits (when the call returns), each
/// field adding to the [`ProcStats`] field of the same name.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HotCounts {
    /// The owning process; 0 = free.
    pub tgid: u32,
    pub _pad: u32,
    /// Adds to `ProcStats::calls[CALL_MADVISE]`.
    pub madvise_calls: u64,
    pub released: u64,
    /// Adds to `ProcStats::calls[CALL_MUNMAP]`.
    pub munmap_calls: u64,
    pub unmapped: u64,
    /// Adds to `ProcStats::calls[CALL_MMAP]`.
    pub mmap_calls: u64,
    pub mapped_anon: u64,
    pub mapped_file: u64,
    pub reserved: u64,
    /// Adds to `ProcStats::calls[CALL_MREMAP]`.
    pub mremap_calls: u64,
    pub mremap_grown: u64,
    pub mremap_shrunk: u64,
    pub failed_calls: u64,
    pub mmap_size_hist: [u32; MMAP_HIST_BUCKETS],
}

/// A slot's counters, or the counters of a process they add to: the twelve sums, then the
/// mmap size histogram.
type CounterRefs<'a> = ([&'a mut u64; 12], &'a mut [u32; MMAP_HIST_BUCKETS]);

// `HotCounts::targets_in` takes the call counts apart by position.
const _: () = assert!(
    CALL_MMAP == 0 && CALL_MUNMAP == 1 && CALL_BRK == 2 && CALL_MREMAP == 3 && CALL_MADVISE == 4
);

impl HotCounts {
    /// The slot's counters, in the order of [`Self::targets_in`]: the one list of them.
    fn counters_mut(&mut self) -> CounterRefs<'_> {
        (
            [
                &mut self.madvise_calls,
                &mut self.released,
                &mut self.munmap_calls,
                &mut self.unmapped,
                &mut self.mmap_calls,
                &mut self.mapped_anon,
                &mut self.mapped_file,
                &mut self.reserved,
                &mut self.mremap_calls,
                &mut self.mremap_grown,
                &mut self.mremap_shrunk,
                &mut self.failed_calls,
            ],
            &mut self.mmap_size_hist,
        )
    }

    /// The counters of a process that each of [`Self::counters_mut`] adds to.
    fn targets_in(s: &mut ProcStats) -> CounterRefs<'_> {
        let [mmap, munmap, _brk, mremap, madvise] = &mut s.calls;
        (
            [
                madvise,
                &mut s.released,
                munmap,
                &mut s.unmapped,
                mmap,
                &mut s.mapped_anon,
                &mut s.mapped_file,
                &mut s.reserved,
                mremap,
                &mut s.mremap_grown,
                &mut s.mremap_shrunk,
                &mut s.failed_calls,
            ],
            &mut s.mmap_size_hist,
        )
    }

    /// Add this slot's counters to `into` (wrapping, as the kernel's adds do).
    fn add_into(&self, (sums, hist): CounterRefs<'_>) {
        let mut copy = *self;
        let (from_sums, from_hist) = copy.counters_mut();
        for (into, n) in sums.into_iter().zip(from_sums) {
            *into = into.wrapping_add(*n);
        }
        for (into, n) in hist.iter_mut().zip(from_hist.iter()) {
            *into = into.wrapping_add(*n);
        }
    }

    /// Add these counts to a process's counters.
    pub fn add_to(&self, s: &mut ProcStats) {
        self.add_into(Self::targets_in(s));
    }

    /// Add another slot's counts of the same process (its slot on another CPU).
    pub fn merge(&mut self, o: &HotCounts) {
        o.add_into(self.counters_mut());
    }
}

/// The process was created while tracing (fork seen), so its counters are complete.
pub const PROC_FLAG_FORK_SEEN: u32 = 1;
/// The process exec'ed while tracing.
pub const PROC_FLAG_EXEC_SEEN: u32 = 2;
/// The process has exited but its final counters could not travel with its exit event (the
/// ring buffer was full): the kernel keeps the entry until userspace has sampled it once and
/// deletes it, so even then the counters are not lost. Normally the exit program sends an
/// [`ExitEvent`] and frees the entry at once.
pub const PROC_FLAG_EXITED: u32 = 4;

/// Indices of the per-CPU `COUNTERS` array: health of the kernel side, never silent.
pub const CTR_PROCS_FULL: u32 = 0;
pub const CTR_PENDING_FULL: u32 = 1;
pub const CTR_RINGBUF_FULL: u32 = 2;
pub const CTR_RSS_UNATTRIBUTED: u32 = 3;
pub const CTR_EXIT_WITHOUT_ENTRY: u32 = 4;
pub const CTR_READ_ERRORS: u32 = 5;
/// Memory-cgroup direct reclaim runs seen (vmscan memcg_reclaim_end). (Run counts of the hot
/// syscall and rss_stat programs are kept apart, in `PROG_RUNS`: they are activity, not
/// health, and the overhead budget reads them several times a second.)
pub const CTR_RECLAIM_EVENTS: u32 = 6;
pub const CTR_COUNT: u32 = 7;

/// The pausable hooks, in the budget's pause order: indices of the per-CPU `HOOK_TIME` array
/// (what their timed runs cost).
pub const HOOK_MADVISE: u32 = 0;
pub const HOOK_MUNMAP: u32 = 1;
pub const HOOK_MMAP: u32 = 2;
pub const HOOK_BRK: u32 = 3;
pub const HOOK_RSS: u32 = 4;
/// The growth-site stack programs (`record --stacks`): paused first, they are the most
/// optional.
pub const HOOK_STACKS: u32 = 5;
pub const HOOK_COUNT: u32 = 6;

/// Indices of the per-CPU `PROG_RUNS` array: how many times each program of a pausable hook
/// ran. The overhead budget sums them per hook every few hundred milliseconds and multiplies
/// them by the hook's cost per run (`HOOK_TIME`), so a storm is paused within a fraction of a
/// second. One counter per program, not per hook: a program times the run whose count is a
/// multiple of `TIME_EVERY`, and a hook's enter and exit alternating on one shared counter
/// would always time the same one of the two.
pub const RUN_MADVISE: u32 = 0;
pub const RUN_MUNMAP: u32 = 1;
pub const RUN_MMAP_ENTER: u32 = 2;
pub const RUN_MMAP_EXIT: u32 = 3;
pub const RUN_MREMAP_ENTER: u32 = 4;
pub const RUN_MREMAP_EXIT: u32 = 5;
pub const RUN_BRK: u32 = 6;
/// rss_stat and rss_stat_raw (only one of them is attached).
pub const RUN_RSS: u32 = 7;
pub const RUN_FAULT_STACK: u32 = 8;
pub const RUN_MMAP_STACK: u32 = 9;
pub const RUN_BRK_STACK: u32 = 10;
pub const RUN_COUNT: u32 = 11;

/// The hook a `PROG_RUNS` index belongs to.
pub const fn hook_of_run(run: u32) -> u32 {
    match run {
        RUN_MADVISE => HOOK_MADVISE,
        RUN_MUNMAP => HOOK_MUNMAP,
        RUN_MMAP_ENTER | RUN_MMAP_EXIT | RUN_MREMAP_ENTER | RUN_MREMAP_EXIT => HOOK_MMAP,
        RUN_BRK => HOOK_BRK,
        RUN_RSS => HOOK_RSS,
        _ => HOOK_STACKS,
    }
}

/// Index of the per-CPU `HOOK_TIME` array after the hooks': the programs that are never
/// paused (process lifecycle, cgroups, OOM, reclaim), every run of which is timed.
pub const TIMED_UNPAUSABLE: u32 = HOOK_COUNT;
pub const TIMED_COUNT: u32 = HOOK_COUNT + 1;

/// One run in this many of a pausable hook's programs (per CPU) times itself (a power of
/// two). The programs time themselves rather than rely on the kernel's run-time statistics
/// (`BPF_ENABLE_STATS`): turning those on and off flips a static key, which patches kernel
/// text at every BPF dispatch site while the programs run; a Debian 6.12.117 guest panicked
/// ("Oops: int3" in trace_call_bpf) within seconds of flips under a page-fault storm, and
/// keeping them on costs every run of every BPF program on the node two clock reads. Timing
/// one run in 32 costs the other 31 a mask test.
pub const TIME_EVERY: u64 = 32;

/// What the timed runs of one hook (or of the unpausable programs) cost, per CPU:
/// `HOOK_TIME`'s value. Cumulative, like `PROG_RUNS`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RunTime {
    /// Nanoseconds spent in the timed runs (bpf_ktime_get_ns around the program's body).
    pub ns: u64,
    /// How many runs were timed.
    pub runs: u64,
}

/// Names of the counters above, in index order (for logs, JSON and metrics).
pub const COUNTER_NAMES: [&str; CTR_COUNT as usize] = [
    "procs_map_full",
    "pending_map_full",
    "ringbuf_full",
    "rss_unattributed",
    "exit_without_enter",
    "kernel_read_errors",
    "reclaim_events",
];

/// Arguments of a syscall in flight, saved at sys_enter and consumed at sys_exit
/// so only successful calls are counted. Keyed by pid_tgid (thread) in `PENDING`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PendingCall {
    pub kind: u32,
    pub _pad: u32,
    pub addr: u64,
    pub len: u64,
    /// mmap: prot; mremap: new_len; madvise: behavior.
    pub arg2: u64,
    /// mmap: flags.
    pub arg3: u64,
    /// mmap: fd.
    pub arg4: u64,
}

/// Kinds of [`Event`] sent through the ring buffer: rare things only.
pub const EVENT_EXEC: u32 = 1;
pub const EVENT_EXIT: u32 = 2;
pub const EVENT_OOM_VICTIM: u32 = 3;
pub const EVENT_CGROUP: u32 = 4;

/// What happened to a cgroup ([`CgroupEvent::action`]).
pub const CGROUP_MKDIR: u32 = 1;
pub const CGROUP_RMDIR: u32 = 2;
/// The kernel freed it: the last reference (often page cache charged to it) went away.
pub const CGROUP_RELEASE: u32 = 3;

/// Bytes of a cgroup's path carried by [`CgroupEvent`] (Kubernetes paths are ~130 bytes).
pub const CGROUP_PATH_LEN: usize = 256;

/// A cgroup made, removed or released (cgroup:cgroup_mkdir/rmdir/release). Rare; written in
/// place into the ring buffer (too big for the stack).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CgroupEvent {
    /// Always [`EVENT_CGROUP`].
    pub kind: u32,
    /// [`CGROUP_MKDIR`], [`CGROUP_RMDIR`] or [`CGROUP_RELEASE`].
    pub action: u32,
    /// CLOCK_MONOTONIC of the event.
    pub ts_ns: u64,
    /// The hierarchy's id (v1: /proc/cgroups' second column; v2: 0).
    pub hierarchy: i32,
    pub level: i32,
    /// The cgroup's id (its kernfs inode number on 64-bit kernels).
    pub id: u64,
    /// NUL-terminated path within the hierarchy, truncated to fit.
    pub path: [u8; CGROUP_PATH_LEN],
}

impl Default for CgroupEvent {
    fn default() -> Self {
        Self {
            kind: EVENT_CGROUP,
            action: 0,
            ts_ns: 0,
            hierarchy: 0,
            level: 0,
            id: 0,
            path: [0; CGROUP_PATH_LEN],
        }
    }
}

/// A rare event (exec, OOM victim). One fixed layout for both kinds keeps the decoder
/// trivial; fields a kind does not use are zero. Small enough (< 200 bytes) to be built on
/// the BPF stack. Exits travel as [`ExitEvent`]; every record starts with `kind: u32`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Event {
    pub kind: u32,
    /// Process the event is about (exec'ed, exited or OOM victim).
    pub tgid: u32,
    /// CLOCK_MONOTONIC of the event.
    pub ts_ns: u64,
    pub comm: [u8; 16],
    /// EXEC: previous pid (de_thread); OOM: triggering tgid.
    pub aux: u32,
    /// OOM: uid of the victim.
    pub uid: u32,
    /// OOM: victim's total_vm, anon/file/shmem RSS and page tables, in KiB as the
    /// tracepoint reports them (0 on kernels whose mark_victim carries only the pid).
    pub oom_total_vm_kb: u64,
    pub oom_anon_rss_kb: u64,
    pub oom_file_rss_kb: u64,
    pub oom_shmem_rss_kb: u64,
    pub oom_pgtables_kb: u64,
    pub oom_score_adj: i64,
    /// OOM: comm of the triggering task (current when the victim was chosen).
    pub trigger_comm: [u8; 16],
}

/// A process's end, with its final counters: a process that lived less than one sampling
/// interval (a cron job, a crash-looping init) is counted exactly, and the kernel frees its
/// `PROCS` entry at once. Written in place into the ring buffer (too big for the stack).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExitEvent {
    /// Always [`EVENT_EXIT`]; first, like [`Event::kind`], so a record's kind can be read
    /// before its size is known.
    pub kind: u32,
    pub tgid: u32,
    /// CLOCK_MONOTONIC of the exit.
    pub ts_ns: u64,
    /// 1 when the kernel had the process's counters (else `stats` is zero but for `comm`,
    /// which is then the exiting task's).
    pub has_stats: u32,
    pub _pad: u32,
    /// The final counters. `rss` is as it stood before the address space was torn down.
    pub stats: ProcStats,
}

/// Tracepoint field offsets, read by userspace from tracefs `format` files and passed in
/// as globals. Names are `<EVENT>_<FIELD>`; the kernel program refuses to count when an
/// offset is still 0 where 0 is impossible (fields start after the 8-byte common header).
pub mod globals {
    pub const MMAP_LEN: &str = "OFF_MMAP_LEN";
    pub const MMAP_PROT: &str = "OFF_MMAP_PROT";
    pub const MMAP_FLAGS: &str = "OFF_MMAP_FLAGS";
    pub const MMAP_FD: &str = "OFF_MMAP_FD";
    pub const MUNMAP_LEN: &str = "OFF_MUNMAP_LEN";
    pub const MREMAP_OLD_LEN: &str = "OFF_MREMAP_OLD_LEN";
    pub const MREMAP_NEW_LEN: &str = "OFF_MREMAP_NEW_LEN";
    pub const MADVISE_LEN: &str = "OFF_MADVISE_LEN";
    pub const MADVISE_BEHAVIOR: &str = "OFF_MADVISE_BEHAVIOR";
    pub const SYS_EXIT_RET: &str = "OFF_SYS_EXIT_RET";
    pub const RSS_MM_ID: &str = "OFF_RSS_MM_ID";
    pub const RSS_CURR: &str = "OFF_RSS_CURR";
    pub const RSS_MEMBER: &str = "OFF_RSS_MEMBER";
    pub const RSS_SIZE: &str = "OFF_RSS_SIZE";
    pub const EXIT_GROUP_DEAD: &str = "OFF_EXIT_GROUP_DEAD";
    pub const EXEC_OLD_PID: &str = "OFF_EXEC_OLD_PID";
    pub const OOM_PID: &str = "OFF_OOM_PID";
    pub const OOM_COMM: &str = "OFF_OOM_COMM";
    pub const OOM_TOTAL_VM: &str = "OFF_OOM_TOTAL_VM";
    pub const OOM_ANON_RSS: &str = "OFF_OOM_ANON_RSS";
    pub const OOM_FILE_RSS: &str = "OFF_OOM_FILE_RSS";
    pub const OOM_SHMEM_RSS: &str = "OFF_OOM_SHMEM_RSS";
    pub const OOM_UID: &str = "OFF_OOM_UID";
    pub const OOM_PGTABLES: &str = "OFF_OOM_PGTABLES";
    pub const OOM_SCORE_ADJ: &str = "OFF_OOM_SCORE_ADJ";
    pub const RECLAIM_NR_RECLAIMED: &str = "OFF_RECLAIM_NR_RECLAIMED";
    /// cgroup:cgroup_mkdir/rmdir/release share one layout.
    pub const CGROUP_ROOT: &str = "OFF_CGROUP_ROOT";
    pub const CGROUP_LEVEL: &str = "OFF_CGROUP_LEVEL";
    pub const CGROUP_ID: &str = "OFF_CGROUP_ID";
    pub const CGROUP_PATH: &str = "OFF_CGROUP_PATH";
    /// Kernel struct offsets from BTF, for the raw rss_stat program.
    pub const TASK_MM: &str = "OFF_TASK_MM";
    pub const TASK_PID: &str = "OFF_TASK_PID";
    pub const TASK_TGID: &str = "OFF_TASK_TGID";
    /// task_struct.flags (PF_EXITING: never create an entry for a task that is exiting).
    pub const TASK_FLAGS: &str = "OFF_TASK_FLAGS";
    /// task_struct.signal and signal_struct.live.counter (a process's last exit on kernels
    /// whose sched_process_exit has no group_dead).
    pub const TASK_SIGNAL: &str = "OFF_TASK_SIGNAL";
    pub const SIGNAL_LIVE: &str = "OFF_SIGNAL_LIVE";
    /// task_struct.group_leader and .comm: entries are named by the thread-group leader.
    pub const TASK_GROUP_LEADER: &str = "OFF_TASK_GROUP_LEADER";
    pub const TASK_COMM: &str = "OFF_TASK_COMM";
    pub const MM_RSS_STAT: &str = "OFF_MM_RSS_STAT";
    pub const RSS_STAT_STRIDE: &str = "RSS_STAT_STRIDE";
    pub const RSS_STAT_COUNT: &str = "OFF_RSS_STAT_COUNT";
    /// Page size in bytes (rss counters count pages).
    pub const PAGE_SIZE: &str = "PAGE_SIZE";
    /// leaktracer's own tgid: its allocations are not traced (they would be feedback).
    pub const SELF_TGID: &str = "SELF_TGID";
    /// 1: madvise and munmap count in per-CPU slots (see `HOT_SLOTS`).
    pub const HOT_ON: &str = "HOT_ON";
    /// Possible CPUs: the per-CPU slots the exit program folds.
    pub const NR_CPUS: &str = "NR_CPUS";
    /// 1: the mmap/mremap exits read their arguments from the saved user registers.
    pub const ARGS_FROM_REGS: &str = "ARGS_FROM_REGS";
}

/// The most CPUs the exit program folds slots of (a bounded loop for the verifier): on a
/// node with more, the per-CPU slots stay off.
pub const HOT_MAX_CPUS: u32 = 1024;

/// Growth-site profiling (`leaktracer profile`, `record --stacks`): user stacks of sampled
/// first-touch page faults, and of sampled mmap and brk growth.
///
/// Frames kept per stack (deeper stacks are truncated, and counted).
pub const STACK_MAX_FRAMES: usize = 64;
/// Entries of the `EXP_QUANTILES` array: quantiles of the exponential distribution the
/// sampling countdown draws from.
pub const EXP_QUANTILE_COUNT: u32 = 256;
/// `EXP_QUANTILES` values are multiples of the mean in 1/1024ths.
pub const EXP_QUANTILE_SCALE: u64 = 1024;

/// A profiled process (`PROFILE_TARGETS`, keyed by tgid).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProfileTarget {
    /// Bytes of faulted-in memory until the next sample (below 1: take one).
    pub countdown: i64,
    /// Bytes of mmap and brk growth until the next sample: a countdown of its own, so that
    /// each kind's samples estimate that kind's bytes (memory mapped, then touched, is
    /// sampled once as each).
    pub map_countdown: i64,
    /// The process's program break after its last brk (0: none seen since it became a
    /// target), to tell growth from the return value alone.
    pub brk_last: u64,
}

/// How a sampled stack made its process grow (`StackKey::kind`).
/// A first-touch page fault: memory that became resident (RSS).
pub const GROWTH_TOUCHED: u16 = 0;
/// An anonymous, accessible mmap: address space committed, resident once touched.
pub const GROWTH_MAPPED: u16 = 1;
/// The program break moved up (brk/sbrk: glibc's main heap).
pub const GROWTH_BRK: u16 = 2;

/// A stack of a profiled process, keyed by its content: the hash of its frames (the
/// frames themselves are in the value and compared, so a hash collision is counted, never
/// merged), and how it grew (one stack can map memory and touch it: two entries).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct StackKey {
    pub tgid: u32,
    pub nframes: u16,
    /// `GROWTH_*`.
    pub kind: u16,
    pub hash: u64,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StackSamples {
    /// Samples taken at this stack (each stands for the mean sampling interval in bytes).
    pub samples: u64,
    /// User return addresses, innermost first; `StackKey::nframes` are valid.
    pub frames: [u64; STACK_MAX_FRAMES],
}

impl Default for StackSamples {
    fn default() -> Self {
        Self {
            samples: 0,
            frames: [0; STACK_MAX_FRAMES],
        }
    }
}

/// Indices of the per-CPU `PROFILE_COUNTERS` array.
pub const PCTR_FAULTS: u32 = 0;
pub const PCTR_SAMPLES: u32 = 1;
/// Stacks deeper than `STACK_MAX_FRAMES` (kept truncated).
pub const PCTR_TRUNCATED: u32 = 2;
/// Two different stacks with one hash: the later sample is dropped, counted here.
pub const PCTR_COLLISIONS: u32 = 3;
/// `GROWTH_STACKS` full: the sample is dropped.
pub const PCTR_STACKS_FULL: u32 = 4;
/// bpf_get_stack failed (no user stack).
pub const PCTR_STACK_ERRORS: u32 = 5;
/// mmap and brk calls of the targets that grew them (sampled by bytes, like the faults).
pub const PCTR_GROWTH_CALLS: u32 = 6;
pub const PCTR_COUNT: u32 = 7;

#[cfg(feature = "user")]
mod pod {
    // Plain old data: repr(C), integer fields only, no padding that carries meaning, so any
    // bytes the kernel writes are a valid value (the layout tests below pin the sizes).
    // SAFETY: as above, for each of the four types.
    unsafe impl aya::Pod for super::ProcStats {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::PendingCall {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::Event {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::ExitEvent {}
    // SAFETY: repr(C), integers and a byte array, no padding (4+4+8+4+4+8+256).
    unsafe impl aya::Pod for super::CgroupEvent {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::ProfileTarget {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::StackKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::StackSamples {}
    // SAFETY: repr(C), integers only, no padding (4+4+12*8+24*4).
    unsafe impl aya::Pod for super::HotCounts {}
    // SAFETY: RunTime is repr(C) and made of u64 only: no padding, every bit pattern valid.
    unsafe impl aya::Pod for super::RunTime {}
    // SAFETY: repr(C), integers only, no padding (4+4+8+4*8+8).
    unsafe impl aya::Pod for super::RssSlot {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abi_sizes_are_stable() {
        // The kernel and userspace builds must agree on these sizes; a change here is an
        // ABI change and must be deliberate.
        assert_eq!(core::mem::size_of::<ProcStats>(), 336);
        assert_eq!(core::mem::size_of::<StackKey>(), 16);
        assert_eq!(core::mem::size_of::<HotCounts>(), 200);
        assert_eq!(core::mem::size_of::<RssSlot>(), 56);
        assert_eq!(core::mem::size_of::<ProfileTarget>(), 24);
        assert_eq!(core::mem::size_of::<PendingCall>() % 8, 0);
        assert_eq!(core::mem::size_of::<Event>() % 8, 0);
        assert_eq!(core::mem::size_of::<ExitEvent>(), 24 + 336);
        assert_eq!(core::mem::offset_of!(ExitEvent, kind), 0);
        assert_eq!(core::mem::offset_of!(Event, kind), 0);
        assert!(
            core::mem::size_of::<Event>() < 200,
            "Event is built on the 512-byte BPF stack"
        );
    }

    #[test]
    fn mmap_sizes_fall_in_their_log2_bucket() {
        let expected = |len: u64| match len {
            0..8192 => 0,
            _ => ((len.ilog2() - MMAP_HIST_MIN_SHIFT) as usize).min(MMAP_HIST_BUCKETS - 1),
        };
        for shift in 0..64 {
            for len in [1u64 << shift, (1u64 << shift) - 1, (1u64 << shift) + 1] {
                assert_eq!(mmap_size_bucket(len), expected(len), "len {len}");
            }
        }
        assert_eq!(mmap_size_bucket(0), 0);
        assert_eq!(mmap_size_bucket(4096), 0);
        assert_eq!(mmap_size_bucket(8192), 1);
        assert_eq!(mmap_size_bucket(640 << 10), 7);
        assert_eq!(mmap_size_bucket(u64::MAX), MMAP_HIST_BUCKETS - 1);
    }

    #[test]
    fn an_rss_slot_is_read_only_for_its_owner_and_mm() {
        let entry = ProcStats {
            rss: [1, 2, 3, 4],
            peak_private: 100,
            rss_gen: 1,
            rss_in_slot: 1,
            mm_key: 0xabc,
            ppid: 9,
            ..ProcStats::default()
        };
        let slot = RssSlot {
            tgid: 42,
            rss_gen: 2,
            mm_key: 0xabc,
            rss: [10, 20, 30, 40],
            peak_private: 90,
        };
        let merged = slot.merged_into(42, &entry).unwrap();
        assert_eq!(merged.rss, [10, 20, 30, 40]);
        assert_eq!(merged.rss_gen, 2);
        // The higher of the two peaks: the entry's may come from before the slot.
        assert_eq!(merged.peak_private, 100);
        assert_eq!(merged.ppid, 9);
        // Another process's slot, a slot for another mm (exec), a slot being claimed.
        assert!(slot.merged_into(43, &entry).is_none());
        let other_mm = ProcStats {
            mm_key: 0xdef,
            ..entry
        };
        assert!(slot.merged_into(42, &other_mm).is_none());
        let claiming = RssSlot { mm_key: 0, ..slot };
        let unlearnt = ProcStats { mm_key: 0, ..entry };
        assert!(claiming.merged_into(42, &unlearnt).is_none());
    }

    fn hot_slot() -> HotCounts {
        let mut mmap_size_hist = [0; MMAP_HIST_BUCKETS];
        mmap_size_hist[3] = 7;
        HotCounts {
            tgid: 42,
            _pad: 0,
            madvise_calls: 1,
            released: 2,
            munmap_calls: 3,
            unmapped: 4,
            mmap_calls: 5,
            mapped_anon: 6,
            mapped_file: 7,
            reserved: 8,
            mremap_calls: 9,
            mremap_grown: 10,
            mremap_shrunk: 11,
            failed_calls: 12,
            mmap_size_hist,
        }
    }

    #[test]
    fn a_hot_slot_adds_each_counter_to_its_namesake() {
        let mut s = ProcStats {
            calls: [100, 200, 300, 400, 500],
            released: 1000,
            unmapped: u64::MAX,
            ..ProcStats::default()
        };
        hot_slot().add_to(&mut s);
        assert_eq!(s.calls[CALL_MMAP], 105);
        assert_eq!(s.calls[CALL_MUNMAP], 203);
        assert_eq!(s.calls[CALL_BRK], 300, "brk is never counted in a slot");
        assert_eq!(s.calls[CALL_MREMAP], 409);
        assert_eq!(s.calls[CALL_MADVISE], 501);
        assert_eq!(s.released, 1002);
        assert_eq!(s.unmapped, 3, "wraps as the kernel's adds do");
        assert_eq!((s.mapped_anon, s.mapped_file, s.reserved), (6, 7, 8));
        assert_eq!(
            (s.mremap_grown, s.mremap_shrunk, s.failed_calls),
            (10, 11, 12)
        );
        assert_eq!(s.mmap_size_hist[3], 7);
        assert_eq!((s.brk_grown, s.peak_private), (0, 0));
    }

    #[test]
    fn hot_slots_of_two_cpus_merge_field_by_field() {
        let mut a = hot_slot();
        a.merge(&hot_slot());
        let doubled = HotCounts {
            tgid: 42,
            _pad: 0,
            madvise_calls: 2,
            released: 4,
            munmap_calls: 6,
            unmapped: 8,
            mmap_calls: 10,
            mapped_anon: 12,
            mapped_file: 14,
            reserved: 16,
            mremap_calls: 18,
            mremap_grown: 20,
            mremap_shrunk: 22,
            failed_calls: 24,
            mmap_size_hist: hot_slot().mmap_size_hist.map(|n| n * 2),
        };
        assert_eq!(a, doubled);
    }
}
