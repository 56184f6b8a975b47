//! leaktracer's own kernel layouts: the task_struct, signal_struct and mm_struct offsets the
//! eBPF programs read, built on the query API with every type checked.
use anyhow::{Context as _, bail, ensure};

use super::{
    decode::{KernelBtf, Ty},
    query::TypeInfo,
};

/// MM_FILEPAGES, MM_ANONPAGES, MM_SWAPENTS, MM_SHMEMPAGES: the programs read all four.
const NR_MM_COUNTERS: u32 = 4;

/// Offsets into `struct task_struct` the raw-tracepoint programs need.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TaskLayout {
    pub task_mm: u32,
    pub task_pid: u32,
    pub task_tgid: u32,
}

/// More of `struct task_struct`, for the exit and naming logic. Optional: without them the
/// programs fall back (the leader's exit ends a process on kernels whose exit event lacks
/// group_dead; a process is named by the thread that created its entry).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TaskExtras {
    /// task_struct.flags (PF_EXITING).
    pub task_flags: u32,
    /// task_struct.signal, and in it signal_struct.live.counter: the threads still alive,
    /// which tells a process's last exit on kernels whose exit event lacks group_dead.
    pub task_signal: u32,
    pub signal_live: u32,
    /// task_struct.group_leader and task_struct.comm: a process is named by its
    /// thread-group leader, as /proc/<pid>/comm names it, not by whichever thread ran.
    pub task_group_leader: u32,
    pub task_comm: u32,
}

/// Where the RSS counters of an mm live.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RssLayout {
    /// Offset in mm_struct of the first RSS counter element.
    pub mm_rss_stat: u32,
    /// Bytes between the counters of two consecutive members (MM_FILEPAGES=0,
    /// MM_ANONPAGES=1, MM_SWAPENTS=2, MM_SHMEMPAGES=3).
    pub stride: u32,
    /// Offset of the 64-bit page count inside one element.
    pub count: u32,
}

/// The offset of `strukt.path`, after checking its type (`want` names it for the error).
fn typed_member(
    btf: &KernelBtf,
    strukt: &str,
    path: &str,
    ok: fn(&TypeInfo) -> bool,
    want: &str,
) -> anyhow::Result<u32> {
    let ty = btf.member_type(strukt, path)?;
    ensure!(ok(&ty), "{strukt}.{path} is {ty:?}, expected {want}");
    btf.member_offset(strukt, path)
}

/// The programs read `mm` as a pointer and `pid`/`tgid` as 32-bit values: the types are
/// checked too, so a kernel that changed them fails here rather than yielding garbage.
pub fn task_layout(btf: &KernelBtf) -> anyhow::Result<TaskLayout> {
    let field = |path: &str, ok: fn(&TypeInfo) -> bool, want: &str| {
        typed_member(btf, "task_struct", path, ok, want)
    };
    let pid_t = |t: &TypeInfo| *t == TypeInfo::Int { size: 4 };
    Ok(TaskLayout {
        task_mm: field("mm", |t| *t == TypeInfo::Ptr, "a pointer")?,
        task_pid: field("pid", pid_t, "a 32-bit pid_t")?,
        task_tgid: field("tgid", pid_t, "a 32-bit pid_t")?,
    })
}

/// Offsets of [`TaskExtras`], with their types checked like [`task_layout`]'s.
pub fn task_extras(btf: &KernelBtf) -> anyhow::Result<TaskExtras> {
    let field = |path: &str, ok: fn(&TypeInfo) -> bool, want: &str| {
        typed_member(btf, "task_struct", path, ok, want)
    };
    Ok(TaskExtras {
        task_flags: field("flags", |t| *t == TypeInfo::Int { size: 4 }, "a 32-bit int")?,
        task_signal: field("signal", |t| *t == TypeInfo::Ptr, "a pointer")?,
        signal_live: typed_member(
            btf,
            "signal_struct",
            "live.counter",
            |t| *t == TypeInfo::Int { size: 4 },
            "a 32-bit int",
        )?,
        task_group_leader: field("group_leader", |t| *t == TypeInfo::Ptr, "a pointer")?,
        task_comm: field(
            "comm",
            |t| {
                matches!(
                    t,
                    TypeInfo::Array {
                        elem_size: 1,
                        len: 16,
                        ..
                    }
                )
            },
            "char[16]",
        )?,
    })
}

/// The byte offset of 64-bit integer member `name` in (anonymous or named) type `id`.
fn s64_member(btf: &KernelBtf, id: u32, name: &str) -> anyhow::Result<u32> {
    let f = btf.locate_in(id, name)?;
    let ty = btf.info(f.ty, 0)?;
    ensure!(
        ty == TypeInfo::Int { size: 8 },
        "{}.{name} is {ty:?}, expected a 64-bit integer",
        btf.describe(id)
    );
    btf.byte_offset(&f)
        .with_context(|| format!("offset of {}.{name}", btf.describe(id)))
}

/// Where mm_struct's RSS counters are, for both kernel layouts:
/// - Linux >= 6.2: `struct percpu_counter rss_stat[NR_MM_COUNTERS]`; each element's shared
///   `s64 count` (stride = sizeof(struct percpu_counter)).
/// - Older: `struct mm_rss_stat { atomic_long_t count[NR_MM_COUNTERS]; } rss_stat`, where
///   atomic_long_t is `struct { s64 counter; }` (stride 8).
pub fn rss_layout(btf: &KernelBtf) -> anyhow::Result<RssLayout> {
    let rss = btf.member_type("mm_struct", "rss_stat")?;
    let f = btf.locate("mm_struct", "rss_stat")?;
    let rss_offset = btf
        .byte_offset(&f)
        .context("offset of mm_struct.rss_stat")?;
    let rss_id = btf.resolve(f.ty)?;
    match &rss {
        TypeInfo::Array { elem, len, .. } if matches!(&**elem, TypeInfo::Struct { name, .. } if name == "percpu_counter") =>
        {
            ensure!(
                *len >= NR_MM_COUNTERS,
                "mm_struct.rss_stat has {len} counters, expected at least {NR_MM_COUNTERS}"
            );
            let Ty::Array { elem, .. } = *btf.ty(rss_id)? else {
                bail!("mm_struct.rss_stat changed kind between lookups");
            };
            let elem = btf.resolve(elem)?;
            let stride = btf.size_of(elem, 0)?;
            let count = s64_member(btf, elem, "count")?;
            ensure!(
                count.checked_add(8).is_some_and(|end| end <= stride),
                "percpu_counter.count at {count} does not fit in its {stride}-byte element"
            );
            Ok(RssLayout {
                mm_rss_stat: rss_offset,
                stride,
                count,
            })
        }
        TypeInfo::Struct { name, .. } if name == "mm_rss_stat" => {
            let counts = btf.locate_in(rss_id, "count")?;
            let counts_offset = btf
                .byte_offset(&counts)
                .context("offset of mm_rss_stat.count")?;
            let Ty::Array { elem, nelems } = *btf.ty(btf.resolve(counts.ty)?)? else {
                bail!("mm_rss_stat.count is not an array");
            };
            ensure!(
                nelems >= NR_MM_COUNTERS,
                "mm_rss_stat.count has {nelems} counters, expected at least {NR_MM_COUNTERS}"
            );
            // atomic_long_t -> atomic64_t -> struct { s64 counter; } (anonymous).
            let elem = btf.resolve(elem)?;
            let stride = btf.size_of(elem, 0)?;
            ensure!(
                stride == 8,
                "atomic_long_t is {stride} bytes, expected 8 (64-bit kernel)"
            );
            let count = s64_member(btf, elem, "counter")?;
            Ok(RssLayout {
                mm_rss_stat: rss_offset
                    .checked_add(counts_offset)
                    .context("mm_struct.rss_stat.count offset overflows")?,
                stride,
                count,
            })
        }
        other => bail!(
            "mm_struct.rss_stat is {other:?}: expected struct percpu_counter[N] (Linux >= 6.2) \
             or struct mm_rss_stat (older kernels)"
        ),
    }
}
