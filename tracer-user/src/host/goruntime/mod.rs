//! Go runtimes seen from outside: a Go process's live heap after the last GC, its GC goal
//! and cycle count, its memory limit and its goroutine count, read from its memory with
//! `process_vm_readv`, without stopping or instrumenting it (docs/go-runtime.md).
//!
//! - A binary is analysed once (cached by device, inode, size and modification time of
//!   /proc/PID/exe): which Go built it ([`crate::host::gobin`]), where the runtime's
//!   variables are ([`locate`]: ELF symbols, else the runtime's code) and the field offsets
//!   ([`fields`]: DWARF, else per-release tables).
//! - A sample is one `process_vm_readv` call for a Go process, and none for others. The
//!   per-P free lists need the P addresses, read once per process and again only when
//!   `allp` changes (GOMAXPROCS).
//! - Whatever is not understood, or a reading a correct layout could not give
//!   ([`reading`]), is an [`Unreadable`] reason, logged once per binary: never a number.
pub mod fields;
pub mod locate;
pub mod reading;
mod remote;

use std::{
    collections::HashMap,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
};

use anyhow::Context as _;
use object::Object as _;

use self::{fields::Fields, locate::Globals, reading::RawReading};
use crate::host::gobin::GoBinary;
pub use reading::GoRuntimeSample;

/// Why a Go process's runtime gives no figures.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Unreadable {
    /// Its binary is Go, but a layout we do not understand (version, architecture, a
    /// variable not found). Lasts as long as the binary.
    #[error("Go runtime not understood: {0}")]
    Layout(String),
    /// The process could not be read (gone, not permitted).
    #[error("reading the process: {0}")]
    Process(String),
    /// A reading a correct layout could not give: refused rather than reported.
    #[error("Go runtime reading refused: {0}")]
    Implausible(String),
}

/// How a binary's layout was found (for logs, docs and tests).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Found {
    /// Variables from ELF symbols.
    Symbols,
    /// Variables from the runtime's code (stripped binary).
    Code,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OffsetsFrom {
    Dwarf,
    Table,
}

/// Everything needed to read one Go binary's runtime.
#[derive(Clone, Debug)]
pub struct RuntimeLayout {
    pub go_version: String,
    pub release: (u32, u32),
    pub globals: Globals,
    pub found: Found,
    pub fields: Fields,
    pub offsets_from: OffsetsFrom,
    /// Position-independent: the addresses move by the load bias.
    pub pie: bool,
    segments: remote::Segments,
}

impl RuntimeLayout {
    /// Analyse an executable's bytes. Ok(None): not a Go binary. Err: a Go binary whose
    /// runtime cannot be read, and why.
    pub fn analyse(bytes: &[u8]) -> Result<Option<Self>, String> {
        let go = match GoBinary::parse(bytes) {
            Ok(Some(go)) => go,
            Ok(None) => return Ok(None),
            Err(e) => return Err(format!("{e:#}")),
        };
        let file = object::File::parse(bytes).map_err(|e| e.to_string())?;
        let version = go.build.go_version.clone();
        if file.architecture() != object::Architecture::X86_64 {
            return Err(format!(
                "{version} for {:?}: only x86-64 is read",
                file.architecture()
            ));
        }
        let release = go
            .build
            .go_release()
            .ok_or_else(|| format!("{version}: not a release, its layout is unknown"))?;
        if release < (1, 19) {
            return Err(format!("{version}: releases before Go 1.19 are not read"));
        }
        let (fields, offsets_from) = match fields::from_dwarf(&file, release) {
            Ok(Some(f)) => (f, OffsetsFrom::Dwarf),
            Ok(None) => match fields::table(release) {
                Some(f) => (f, OffsetsFrom::Table),
                None => {
                    return Err(format!(
                        "{version} without DWARF: no offsets table for Go {}.{}",
                        release.0, release.1
                    ));
                }
            },
            Err(e) => return Err(format!("{version}: DWARF: {e:#}")),
        };
        let by_symbols = locate::from_symbols(&file).map_err(|e| format!("{version}: {e:#}"))?;
        let (globals, found) = match by_symbols {
            Some(g) => (g, Found::Symbols),
            None => {
                let table = go
                    .pclntab
                    .as_ref()
                    .map_err(|e| format!("{version}: .gopclntab: {e}"))?;
                let g = locate::from_code(&file, table, &fields)
                    .map_err(|e| format!("{version}: {e:#}"))?;
                (g, Found::Code)
            }
        };
        Ok(Some(Self {
            go_version: version,
            release,
            globals,
            found,
            fields,
            offsets_from,
            pie: file.kind() == object::ObjectKind::Dynamic,
            segments: remote::segments(&file),
        }))
    }
}

/// A binary, as far as its device, inode, size and modification time tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct BinaryKey {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
}

struct Binary {
    layout: Result<Option<RuntimeLayout>, String>,
    /// Whether its trouble has been logged (once per binary).
    told_layout: bool,
    told_implausible: bool,
}

/// What is remembered of one process between samples.
struct ProcessState {
    binary: BinaryKey,
    bias: u64,
    /// `allp` (pointer, length) as last read, and its Ps' addresses.
    allp: Option<(u64, u64)>,
    ps: Vec<u64>,
    last_gc_cycles: Option<u32>,
}

/// Bounds on the caches: a node runs a few hundred binaries and some thousand processes.
const MAX_BINARIES: usize = 1024;
const MAX_PROCESSES: usize = 16384;

/// Reads Go runtimes of processes, caching what each binary and process teaches.
pub struct GoRuntimes {
    proc_root: PathBuf,
    binaries: HashMap<BinaryKey, Binary>,
    processes: HashMap<u32, ProcessState>,
}

impl Default for GoRuntimes {
    fn default() -> Self {
        Self::new(Path::new("/proc"))
    }
}

impl GoRuntimes {
    pub fn new(proc_root: &Path) -> Self {
        Self {
            proc_root: proc_root.to_path_buf(),
            binaries: HashMap::new(),
            processes: HashMap::new(),
        }
    }

    /// The runtime figures of process `pid`: Ok(None) when it is not a Go process (or a
    /// kernel thread), Err with the reason when it is one that cannot be read.
    pub fn sample(&mut self, pid: u32) -> Result<Option<GoRuntimeSample>, Unreadable> {
        let exe = self.proc_root.join(pid.to_string()).join("exe");
        let meta = match std::fs::metadata(&exe) {
            Ok(m) => m,
            // Kernel threads have no executable.
            Err(e)
                if e.kind() == std::io::ErrorKind::NotFound
                    && self.proc_root.join(pid.to_string()).is_dir() =>
            {
                return Ok(None);
            }
            Err(e) => return Err(Unreadable::Process(format!("{}: {e}", exe.display()))),
        };
        let key = BinaryKey {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
        };
        if !self.binaries.contains_key(&key) {
            if self.binaries.len() >= MAX_BINARIES {
                self.binaries.clear();
            }
            // Not cached when the file cannot be opened (the process exited, no permission):
            // that says nothing about the binary.
            let bytes = map_executable(&exe).map_err(|e| Unreadable::Process(format!("{e:#}")))?;
            let layout = RuntimeLayout::analyse(&bytes);
            if let Ok(Some(l)) = &layout {
                log::debug!(
                    "Go runtime of {} ({}): variables from {:?}, offsets from {:?}",
                    exe.display(),
                    l.go_version,
                    l.found,
                    l.offsets_from
                );
            }
            self.binaries.insert(
                key,
                Binary {
                    layout,
                    told_layout: false,
                    told_implausible: false,
                },
            );
        }
        let Some(binary) = self.binaries.get_mut(&key) else {
            return Ok(None);
        };
        let layout = match &binary.layout {
            Ok(Some(l)) => l,
            Ok(None) => return Ok(None),
            Err(reason) => {
                if !binary.told_layout {
                    binary.told_layout = true;
                    log::warn!(
                        "Go process {pid} ({}): runtime figures unavailable for this binary: {reason}",
                        exe.display()
                    );
                }
                return Err(Unreadable::Layout(reason.clone()));
            }
        };
        if self.processes.get(&pid).is_none_or(|p| p.binary != key) {
            if self.processes.len() >= MAX_PROCESSES {
                self.processes.clear();
            }
            let bias = if layout.pie {
                remote::load_bias(&self.proc_root, pid, &layout.segments)
                    .map_err(|e| Unreadable::Process(format!("{e:#}")))?
            } else {
                0
            };
            self.processes.insert(
                pid,
                ProcessState {
                    binary: key,
                    bias,
                    allp: None,
                    ps: Vec::new(),
                    last_gc_cycles: None,
                },
            );
        }
        let Some(state) = self.processes.get_mut(&pid) else {
            return Ok(None);
        };
        let interpreted = read_raw(pid, layout, state).and_then(|raw| {
            reading::interpret(&raw, state.last_gc_cycles, &layout.go_version)
                .map_err(Unreadable::Implausible)
        });
        match interpreted {
            Ok(sample) => {
                state.last_gc_cycles = Some(sample.gc_cycles);
                Ok(Some(sample))
            }
            Err(Unreadable::Implausible(reason)) => {
                // The pid may have been reused by a new run of the same binary (its GC count
                // starts again): learn the process afresh next time.
                self.processes.remove(&pid);
                if !binary.told_implausible {
                    binary.told_implausible = true;
                    log::warn!(
                        "Go process {pid} ({}, {}): runtime reading refused: {reason}",
                        exe.display(),
                        layout.go_version
                    );
                }
                Err(Unreadable::Implausible(reason))
            }
            Err(other) => Err(other),
        }
    }

    /// Forget a process (it exited).
    pub fn forget(&mut self, pid: u32) {
        self.processes.remove(&pid);
    }

    /// The layout of `pid`'s binary, once [`Self::sample`] has analysed it.
    pub fn layout_of(&self, pid: u32) -> Option<&RuntimeLayout> {
        let key = self.processes.get(&pid)?.binary;
        self.binaries.get(&key)?.layout.as_ref().ok()?.as_ref()
    }
}

/// The executable's bytes, mapped rather than read: telling a non-Go binary apart touches
/// only its headers, not its 100 MB.
fn map_executable(exe: &Path) -> anyhow::Result<memmap2::Mmap> {
    let file = std::fs::File::open(exe).with_context(|| format!("opening {}", exe.display()))?;
    // SAFETY: a read-only mapping, dropped when the analysis ends. The file is a running
    // process's executable, which the kernel normally keeps from being written (ETXTBSY),
    // and replacing it (rename) leaves this inode alone. Were its bytes changed anyway,
    // every parser here is bounds-checked: the worst is an error or a refused layout.
    unsafe { memmap2::Mmap::map(&file) }.with_context(|| format!("mapping {}", exe.display()))
}

/// One sample's words. Steady state: one `process_vm_readv`. When `allp` is new or changed
/// (first sample, GOMAXPROCS changed), the P addresses are read and the sample taken again.
fn read_raw(
    pid: u32,
    layout: &RuntimeLayout,
    state: &mut ProcessState,
) -> Result<RawReading, Unreadable> {
    let failed = |e: anyhow::Error| Unreadable::Process(format!("{e:#}"));
    for _ in 0..3 {
        let (raw, allp) = read_once(pid, layout, state).map_err(failed)?;
        if state.allp == Some(allp) {
            return Ok(raw);
        }
        let (ptr, len) = allp;
        // A wrong allp address reads some other word: never use it as a length to read.
        if len == 0 || len > reading::MAX_PROCS {
            return Err(Unreadable::Implausible(format!(
                "allp holds {len} Ps: not a GOMAXPROCS"
            )));
        }
        let words = remote::read_pieces(pid, &[(ptr, len as usize * 8)])
            .context("reading allp")
            .map_err(failed)?;
        state.ps = words[0]
            .chunks_exact(8)
            .map(|w| u64::from_le_bytes(w.try_into().unwrap_or_default()))
            .collect();
        state.allp = Some(allp);
    }
    Err(Unreadable::Process(
        "allp kept changing while read".to_string(),
    ))
}

fn read_once(
    pid: u32,
    layout: &RuntimeLayout,
    state: &ProcessState,
) -> anyhow::Result<(RawReading, (u64, u64))> {
    let g = &layout.globals;
    let f = &layout.fields;
    let at = |base: u64, off: u64| state.bias.wrapping_add(base).wrapping_add(off);
    let mut pieces = vec![
        (at(g.allglen, 0), 8),
        (at(g.allp, 0), 16),
        (at(g.gc_controller, f.gc_heap_marked), 8),
        (at(g.gc_controller, f.gc_percent_heap_goal), 8),
        (at(g.gc_controller, f.gc_memory_limit), 8),
        (at(g.memstats, f.memstats_numgc), 4),
        (at(g.sched, f.sched_ngsys), 4),
    ];
    const FIXED: usize = 7;
    pieces.extend(f.sched_gfree_counts.iter().map(|&o| (at(g.sched, o), 4)));
    let first_p = pieces.len();
    // P structs are on the Go heap, not in the binary: no bias.
    pieces.extend(
        state
            .ps
            .iter()
            .map(|&p| (p.wrapping_add(f.p_gfree_count), 4)),
    );
    let words = remote::read_pieces(pid, &pieces)?;
    let u64_at = |i: usize| u64::from_le_bytes(words[i][..8].try_into().unwrap_or_default());
    let i32_at = |i: usize| i32::from_le_bytes(words[i][..4].try_into().unwrap_or_default());
    let allp = (
        u64_at(1),
        u64::from_le_bytes(words[1][8..16].try_into().unwrap_or_default()),
    );
    let raw = RawReading {
        allglen: u64_at(0),
        heap_marked: u64_at(2),
        gc_percent_heap_goal: u64_at(3),
        memory_limit: u64_at(4) as i64,
        numgc: i32_at(5) as u32,
        ngsys: i32_at(6),
        sched_free: (FIXED..first_p).map(i32_at).collect(),
        p_free: (first_p..words.len()).map(i32_at).collect(),
    };
    Ok((raw, allp))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_binary_that_is_not_go_is_none_and_junk_is_a_reason() {
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        assert!(
            RuntimeLayout::analyse(&me).unwrap().is_none(),
            "this Rust test"
        );
        let err = RuntimeLayout::analyse(b"\x7fELF junk").unwrap_err();
        assert!(err.contains("ELF"), "{err}");
    }
}
