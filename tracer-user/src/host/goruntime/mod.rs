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
//! - A process found not to be Go is not looked at again for a while ([`NotGo`]): with
//!   10,000 processes, a look (a stat of /proc/PID/exe) at each every round was most of a
//!   round's cost. Only a binary without any Go section is "not Go": a Go process whose
//!   reading failed (just started, a layout not understood) is looked at every round.
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
            // Go's symbol table without build information (Go before 1.18 has none): Go,
            // but not read; never taken for a binary that is not Go.
            Ok(None) if has_section(bytes, ".gopclntab") => {
                return Err(".gopclntab without .go.buildinfo: Go before 1.18 is not read".into());
            }
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

/// Whether the ELF file `bytes` has a section of that name.
fn has_section(bytes: &[u8], name: &str) -> bool {
    object::File::parse(bytes).is_ok_and(|f| f.section_by_name(name).is_some())
}

/// What one look at a process found.
#[derive(Debug)]
pub enum Probe {
    /// Its executable has no Go section (or it has none: a kernel thread).
    NotGo,
    /// Its binary is Go: the runtime's figures, or why there are none.
    Go(Result<GoRuntimeSample, Unreadable>),
    /// Its executable could not be looked at (the process exited, no permission): nothing
    /// is known.
    Unknown(Unreadable),
}

impl Probe {
    /// As [`GoRuntimes::sample`] says it.
    pub fn into_sample(self) -> Result<Option<GoRuntimeSample>, Unreadable> {
        match self {
            Probe::NotGo => Ok(None),
            Probe::Go(r) => r.map(Some),
            Probe::Unknown(e) => Err(e),
        }
    }
}

/// A not-Go process is looked at again after at least this many rounds...
pub const RECHECK_MIN_ROUNDS: u64 = 15;
/// ...and at most this many (the period depends on the pid, to spread the looks).
pub const RECHECK_MAX_ROUNDS: u64 = 30;

fn recheck_period(pid: u32) -> u64 {
    RECHECK_MIN_ROUNDS + u64::from(pid) % (RECHECK_MAX_ROUNDS - RECHECK_MIN_ROUNDS + 1)
}

/// Processes found not to be Go, each with the identity it had then: the caller's summary of
/// what tells one process (and one program) from another without a look at /proc (e.g. the
/// kernel's first sight, its comm and whether it exec'ed). A pid reused, or an exec that
/// changes its comm, is another identity and is looked at afresh; an exec is also forgotten
/// explicitly ([`NotGo::forget`]).
#[derive(Debug, Default)]
pub struct NotGo {
    known: HashMap<u32, NotGoEntry>,
}

#[derive(Clone, Copy, Debug)]
struct NotGoEntry {
    identity: u64,
    /// The round it was last looked at.
    checked: u64,
    /// The last round it was asked about (one not asked about is gone: see `end_round`).
    seen: u64,
}

impl NotGo {
    /// Whether to look at process `pid` (of that identity) in round `round`.
    pub fn due(&mut self, pid: u32, identity: u64, round: u64) -> bool {
        match self.known.get_mut(&pid) {
            Some(e) if e.identity == identity => {
                e.seen = round;
                round >= e.checked + recheck_period(pid)
            }
            _ => true,
        }
    }

    /// What the look at `pid` in `round` found: only a binary that is not Go is remembered;
    /// anything else (Go, whether read or not, or not known) is looked at every round.
    pub fn record(&mut self, pid: u32, identity: u64, round: u64, probe: &Probe) {
        match probe {
            // Bounded by the processes a round asks about (see `end_round`).
            Probe::NotGo => {
                self.known.insert(
                    pid,
                    NotGoEntry {
                        identity,
                        checked: round,
                        seen: round,
                    },
                );
            }
            Probe::Go(_) | Probe::Unknown(_) => {
                self.known.remove(&pid);
            }
        }
    }

    /// Look at `pid` next round (it exec'ed, or exited).
    pub fn forget(&mut self, pid: u32) {
        self.known.remove(&pid);
    }

    /// After a round: forget the processes it did not ask about (gone).
    pub fn end_round(&mut self, round: u64) {
        self.known.retain(|_, e| e.seen == round);
    }

    pub fn len(&self) -> usize {
        self.known.len()
    }

    pub fn is_empty(&self) -> bool {
        self.known.is_empty()
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
    not_go: NotGo,
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
            not_go: NotGo::default(),
        }
    }

    /// [`Self::sample`] in sampling round `round`, for a process of `identity` (see
    /// [`NotGo`]): a process found not to be Go is looked at again only every
    /// [`RECHECK_MIN_ROUNDS`]-[`RECHECK_MAX_ROUNDS`] rounds, or when its identity changes.
    pub fn sample_in_round(
        &mut self,
        pid: u32,
        identity: u64,
        round: u64,
    ) -> Result<Option<GoRuntimeSample>, Unreadable> {
        if !self.not_go.due(pid, identity, round) {
            return Ok(None);
        }
        let probe = self.probe(pid);
        self.not_go.record(pid, identity, round, &probe);
        probe.into_sample()
    }

    /// After a round of [`Self::sample_in_round`]: processes it did not ask about are gone.
    pub fn end_round(&mut self, round: u64) {
        self.not_go.end_round(round);
    }

    /// The process exec'ed: whatever it was, it is looked at afresh next round.
    pub fn exec(&mut self, pid: u32) {
        self.not_go.forget(pid);
    }

    /// The runtime figures of process `pid`: Ok(None) when it is not a Go process (or a
    /// kernel thread), Err with the reason when it is one that cannot be read.
    pub fn sample(&mut self, pid: u32) -> Result<Option<GoRuntimeSample>, Unreadable> {
        self.probe(pid).into_sample()
    }

    /// What process `pid` is, and its runtime's figures when it is a Go process.
    pub fn probe(&mut self, pid: u32) -> Probe {
        let exe = self.proc_root.join(pid.to_string()).join("exe");
        let meta = match std::fs::metadata(&exe) {
            Ok(m) => m,
            // Kernel threads have no executable.
            Err(e)
                if e.kind() == std::io::ErrorKind::NotFound
                    && self.proc_root.join(pid.to_string()).is_dir() =>
            {
                return Probe::NotGo;
            }
            Err(e) => {
                return Probe::Unknown(Unreadable::Process(format!("{}: {e}", exe.display())));
            }
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
            let bytes = match map_executable(&exe) {
                Ok(b) => b,
                Err(e) => return Probe::Unknown(Unreadable::Process(format!("{e:#}"))),
            };
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
            return Probe::Unknown(Unreadable::Process(format!(
                "{}: binary not cached",
                exe.display()
            )));
        };
        let layout = match &binary.layout {
            Ok(Some(l)) => l,
            Ok(None) => return Probe::NotGo,
            Err(reason) => {
                if !binary.told_layout {
                    binary.told_layout = true;
                    log::warn!(
                        "Go process {pid} ({}): runtime figures unavailable for this binary: {reason}",
                        exe.display()
                    );
                }
                return Probe::Go(Err(Unreadable::Layout(reason.clone())));
            }
        };
        if self.processes.get(&pid).is_none_or(|p| p.binary != key) {
            if self.processes.len() >= MAX_PROCESSES {
                self.processes.clear();
            }
            let bias = if layout.pie {
                match remote::load_bias(&self.proc_root, pid, &layout.segments) {
                    Ok(b) => b,
                    Err(e) => return Probe::Go(Err(Unreadable::Process(format!("{e:#}")))),
                }
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
            return Probe::Go(Err(Unreadable::Process(
                "process state not cached".to_string(),
            )));
        };
        let interpreted = read_raw(pid, layout, state).and_then(|raw| {
            reading::interpret(&raw, state.last_gc_cycles, &layout.go_version)
                .map_err(Unreadable::Implausible)
        });
        Probe::Go(match interpreted {
            Ok(sample) => {
                state.last_gc_cycles = Some(sample.gc_cycles);
                Ok(sample)
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
        })
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

    /// A minimal x86-64 ELF file with these sections (16 zero bytes each) and nothing else.
    fn elf_with_sections(names: &[&str]) -> Vec<u8> {
        let mut strtab = vec![0u8];
        let mut name_at = Vec::new();
        for n in std::iter::once(&".shstrtab").chain(names) {
            name_at.push(strtab.len() as u32);
            strtab.extend_from_slice(n.as_bytes());
            strtab.push(0);
        }
        let data_at = 64u64;
        let strtab_at = data_at + 16 * names.len() as u64;
        let shoff = (strtab_at + strtab.len() as u64).next_multiple_of(8);
        let mut f = Vec::new();
        f.extend_from_slice(b"\x7fELF\x02\x01\x01");
        f.resize(16, 0);
        f.extend_from_slice(&2u16.to_le_bytes()); // ET_EXEC
        f.extend_from_slice(&62u16.to_le_bytes()); // EM_X86_64
        f.extend_from_slice(&1u32.to_le_bytes());
        f.extend_from_slice(&0u64.to_le_bytes()); // entry
        f.extend_from_slice(&0u64.to_le_bytes()); // no program headers
        f.extend_from_slice(&shoff.to_le_bytes());
        f.extend_from_slice(&0u32.to_le_bytes()); // flags
        for half in [64u16, 56, 0, 64, 2 + names.len() as u16, 1] {
            f.extend_from_slice(&half.to_le_bytes());
        }
        f.resize(strtab_at as usize, 0);
        f.extend_from_slice(&strtab);
        f.resize(shoff as usize, 0);
        let header = |f: &mut Vec<u8>, name: u32, kind: u32, offset: u64, size: u64| {
            f.extend_from_slice(&name.to_le_bytes());
            f.extend_from_slice(&kind.to_le_bytes());
            f.extend_from_slice(&[0u8; 16]); // flags, address
            f.extend_from_slice(&offset.to_le_bytes());
            f.extend_from_slice(&size.to_le_bytes());
            f.extend_from_slice(&[0u8; 8]); // link, info
            f.extend_from_slice(&1u64.to_le_bytes());
            f.extend_from_slice(&0u64.to_le_bytes());
        };
        header(&mut f, 0, 0, 0, 0);
        header(&mut f, name_at[0], 3, strtab_at, strtab.len() as u64);
        for (i, _) in names.iter().enumerate() {
            header(&mut f, name_at[i + 1], 1, data_at + 16 * i as u64, 16);
        }
        f
    }

    #[test]
    fn a_binary_with_go_sections_is_go_even_unread() {
        let go_without_buildinfo = elf_with_sections(&[".gopclntab"]);
        let err = RuntimeLayout::analyse(&go_without_buildinfo).unwrap_err();
        assert!(err.contains("gopclntab"), "{err}");
        let plain = elf_with_sections(&[".data"]);
        assert!(RuntimeLayout::analyse(&plain).unwrap().is_none());
        // Build information that is not readable: Go, not read (an error, never "not Go").
        assert!(RuntimeLayout::analyse(&elf_with_sections(&[".go.buildinfo"])).is_err());
    }

    #[test]
    fn the_not_go_cache_looks_again_staggered_or_when_the_identity_changes() {
        let mut c = NotGo::default();
        assert!(c.due(100, 7, 0), "never looked at");
        c.record(100, 7, 0, &Probe::NotGo);
        c.end_round(0);
        // Pid 100: every 15 + 100 % 16 = 19 rounds.
        for round in 1..19 {
            assert!(!c.due(100, 7, round), "round {round}");
            c.end_round(round);
        }
        assert!(c.due(100, 7, 19));
        c.end_round(19);
        assert!(c.due(100, 8, 20), "another identity: a reused pid, an exec");
        c.record(100, 8, 20, &Probe::NotGo);
        c.forget(100);
        assert!(c.due(100, 8, 21), "the exec event");
        let periods: std::collections::BTreeSet<u64> = (0..1000).map(recheck_period).collect();
        assert_eq!(
            (periods.first(), periods.last(), periods.len()),
            (Some(&RECHECK_MIN_ROUNDS), Some(&RECHECK_MAX_ROUNDS), 16)
        );
        // A process not asked about in a round is gone: forgotten.
        c.record(5, 1, 30, &Probe::NotGo);
        c.end_round(30);
        c.end_round(31);
        assert!(c.is_empty());
    }

    #[test]
    fn a_go_process_is_never_taken_for_not_go() {
        let mut c = NotGo::default();
        let failed = [
            Probe::Go(Err(Unreadable::Process("just started".into()))),
            Probe::Go(Err(Unreadable::Layout("go1.17".into()))),
            Probe::Go(Err(Unreadable::Implausible("numgc went back".into()))),
            Probe::Unknown(Unreadable::Process("no permission".into())),
        ];
        for (round, probe) in failed.iter().enumerate() {
            let round = round as u64;
            c.record(9, 1, round, probe);
            assert!(c.due(9, 1, round + 1), "{probe:?}: looked at next round");
        }
        // Once thought not Go, then found Go (it exec'ed; its identity did not tell):
        // forgotten at once.
        c.record(9, 1, 10, &Probe::NotGo);
        assert!(!c.due(9, 1, 11));
        c.record(9, 1, 29, &Probe::Go(Err(Unreadable::Process("x".into()))));
        assert!(c.due(9, 1, 30));
        assert!(c.is_empty());
    }

    #[test]
    fn rounds_look_at_a_go_binary_every_time_and_at_others_now_and_then() {
        let dir = tempfile::tempdir().unwrap();
        let proc = dir.path().join("proc");
        let bin = dir.path().join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        let go = bin.join("go-old");
        std::fs::write(&go, elf_with_sections(&[".gopclntab"])).unwrap();
        let plain = bin.join("plain");
        std::fs::write(&plain, elf_with_sections(&[".data"])).unwrap();
        for (pid, exe) in [(10, Some(&plain)), (11, Some(&go)), (12, None)] {
            let d = proc.join(pid.to_string());
            std::fs::create_dir_all(&d).unwrap();
            if let Some(exe) = exe {
                std::os::unix::fs::symlink(exe, d.join("exe")).unwrap();
            }
        }
        let mut g = GoRuntimes::new(&proc);
        assert!(matches!(g.probe(10), Probe::NotGo));
        assert!(matches!(g.probe(11), Probe::Go(Err(Unreadable::Layout(_)))));
        assert!(matches!(g.probe(12), Probe::NotGo), "a kernel thread");
        assert!(matches!(g.probe(13), Probe::Unknown(_)), "gone");
        let round = |g: &mut GoRuntimes, r: u64| {
            let out: Vec<_> = [10, 11, 13]
                .into_iter()
                .map(|pid| g.sample_in_round(pid, 1, r))
                .collect();
            g.end_round(r);
            out
        };
        assert_eq!(round(&mut g, 0)[0], Ok(None));
        // Pid 10 now runs the Go binary without a new identity (its exec event lost): seen
        // at its next look, 15 + 10 % 16 = 25 rounds later. The Go binary's failed readings
        // and the unknown process are looked at every round.
        std::fs::remove_file(proc.join("10/exe")).unwrap();
        std::os::unix::fs::symlink(&go, proc.join("10/exe")).unwrap();
        for r in 1..25 {
            let out = round(&mut g, r);
            assert_eq!(out[0], Ok(None), "round {r}: not looked at");
            assert!(matches!(out[1], Err(Unreadable::Layout(_))), "round {r}");
            assert!(matches!(out[2], Err(Unreadable::Process(_))), "round {r}");
        }
        assert!(matches!(round(&mut g, 25)[0], Err(Unreadable::Layout(_))));
        // An exec event: looked at the next round.
        std::fs::remove_file(proc.join("10/exe")).unwrap();
        std::os::unix::fs::symlink(&plain, proc.join("10/exe")).unwrap();
        assert_eq!(round(&mut g, 26)[0], Ok(None));
        std::fs::remove_file(proc.join("10/exe")).unwrap();
        std::os::unix::fs::symlink(&go, proc.join("10/exe")).unwrap();
        g.exec(10);
        assert!(matches!(round(&mut g, 27)[0], Err(Unreadable::Layout(_))));
    }
}
