//! A growth profile: sampled stacks where processes first touched memory (or mapped it:
//! anonymous mmap, brk), named, with the mapping each address came from. Each sample stands
//! for the mean sampling interval in bytes. The "site" of a stack is its first frame outside the allocator (Go's runtime,
//! libc's malloc family and mem* routines): the code that asked for the memory.
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::host::symbols::ResolvedFrame;

/// The kernel side's own health while sampling: what it saw and what it could not keep.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProfileCounters {
    /// First-touch page faults of the targets.
    pub faults: u64,
    pub samples: u64,
    /// Stacks deeper than the frames kept (kept truncated).
    pub truncated: u64,
    /// Samples dropped: two stacks with one hash, the stack table full, no user stack.
    pub collisions: u64,
    pub stacks_full: u64,
    pub stack_errors: u64,
    /// mmap and brk calls of the targets that grew them (sampled by bytes, like the faults).
    #[serde(default)]
    pub growth_calls: u64,
}

impl ProfileCounters {
    pub fn dropped(&self) -> u64 {
        self.collisions + self.stacks_full + self.stack_errors
    }
}

/// How a sampled stack made its process grow.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum GrowthKind {
    /// A first-touch page fault: memory made resident (RSS). What a leak is made of.
    #[default]
    Touched,
    /// An anonymous, accessible mmap: address space committed, resident once touched.
    Mapped,
    /// The program break moved up (glibc's main heap).
    Brk,
}

impl GrowthKind {
    pub fn as_str(self) -> &'static str {
        match self {
            GrowthKind::Touched => "touched",
            GrowthKind::Mapped => "mapped",
            GrowthKind::Brk => "brk",
        }
    }

    pub fn is_touched(&self) -> bool {
        *self == GrowthKind::Touched
    }
}

/// One file mapping of one process, as captured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MappingInfo {
    pub pid: u32,
    pub start: u64,
    pub end: u64,
    pub offset: u64,
    pub path: PathBuf,
    pub build_id: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    pub address: u64,
    /// Index into `GrowthProfile::mappings`.
    pub mapping: Option<usize>,
    pub resolved: ResolvedFrame,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessStack {
    pub pid: u32,
    pub kind: GrowthKind,
    pub samples: u64,
    /// Innermost first.
    pub frames: Vec<Frame>,
}

#[derive(Clone, Debug, Default)]
pub struct GrowthProfile {
    /// Mean bytes between samples: what one sample stands for.
    pub mean_bytes: u64,
    pub start_unix_ns: i64,
    pub duration_ns: i64,
    pub comms: HashMap<u32, String>,
    pub mappings: Vec<MappingInfo>,
    pub stacks: Vec<ProcessStack>,
}

/// A growth site: where the code asked for memory, with the growth it caused.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Site {
    pub function: String,
    pub file: Option<String>,
    pub line: Option<u32>,
    /// The named functions that called it, nearest first (at most [`CALLERS`]): through a
    /// shared helper, they tell the code paths apart.
    pub callers: Vec<String>,
    pub samples: u64,
    /// Estimated bytes: samples × the mean interval.
    pub bytes: u64,
    /// Share of all sampled growth of its kind (0..1).
    pub share: f64,
    /// Touched (resident), or mapped (mmap, brk: address space asked for).
    pub kind: GrowthKind,
}

/// A function's growth: its own (flat: it touched the memory) and with its callees (cum: it
/// is on the stack), like `go tool pprof -top -cum`. Through a shared helper, cum tells the
/// callers apart.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FunctionGrowth {
    pub function: String,
    pub flat_bytes: u64,
    pub cum_bytes: u64,
    /// cum over all sampled growth (0..1).
    pub cum_share: f64,
}

impl GrowthProfile {
    /// Named functions by cumulative resident growth (touched), largest first (ties by
    /// name), at most `n`.
    pub fn functions(&self, n: usize) -> Vec<FunctionGrowth> {
        let mut by: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
        for s in self.stacks.iter().filter(|s| s.kind.is_touched()) {
            let mut on_stack: Vec<&str> = Vec::new();
            for (i, f) in s.frames.iter().enumerate() {
                let Some(name) = f.resolved.function.as_deref() else {
                    continue;
                };
                let e = by.entry(name).or_default();
                if i == 0 {
                    e.0 += s.samples;
                }
                // Counted once per stack, however often it recurses.
                if !on_stack.contains(&name) {
                    e.1 += s.samples;
                    on_stack.push(name);
                }
            }
        }
        let total = self.total_samples().max(1) as f64;
        let mut out: Vec<FunctionGrowth> = by
            .into_iter()
            .map(|(function, (flat, cum))| FunctionGrowth {
                function: function.to_string(),
                flat_bytes: flat * self.mean_bytes,
                cum_bytes: cum * self.mean_bytes,
                cum_share: cum as f64 / total,
            })
            .collect();
        out.sort_by(|a, b| {
            b.cum_bytes
                .cmp(&a.cum_bytes)
                .then(a.function.cmp(&b.function))
        });
        out.truncate(n);
        out
    }

    /// Samples of resident growth (touched).
    pub fn total_samples(&self) -> u64 {
        self.samples_where(|k| k.is_touched())
    }

    /// Samples of mmap and brk growth.
    pub fn mapped_samples(&self) -> u64 {
        self.samples_where(|k| !k.is_touched())
    }

    fn samples_where(&self, wanted: impl Fn(GrowthKind) -> bool) -> u64 {
        self.stacks
            .iter()
            .filter(|s| wanted(s.kind))
            .map(|s| s.samples)
            .sum()
    }

    /// Sites of resident growth (first touch), largest first (ties by name), at most `n`:
    /// where the memory a leak holds was made resident.
    pub fn top_sites(&self, n: usize) -> Vec<Site> {
        self.sites_where(n, |k| k.is_touched())
    }

    /// Sites of mmap and brk growth, largest first, at most `n`: where the code asked the
    /// kernel for memory (C's large mallocs, heaps growing), touched or not.
    pub fn top_mapped_sites(&self, n: usize) -> Vec<Site> {
        self.sites_where(n, |k| !k.is_touched())
    }

    fn sites_where(&self, n: usize, wanted: impl Fn(GrowthKind) -> bool) -> Vec<Site> {
        type SiteKey = (String, Option<String>, Option<u32>, Vec<String>, GrowthKind);
        let mut by: BTreeMap<SiteKey, u64> = BTreeMap::new();
        let mut total: HashMap<GrowthKind, u64> = HashMap::new();
        for s in self.stacks.iter().filter(|s| wanted(s.kind)) {
            *total.entry(s.kind).or_default() += s.samples;
            let key = match site_index(&s.frames) {
                Some(i) => {
                    let f = &s.frames[i];
                    let callers = s.frames[i + 1..]
                        .iter()
                        .filter_map(|c| c.resolved.function.clone())
                        .take(CALLERS)
                        .collect();
                    (
                        f.resolved
                            .function
                            .clone()
                            .unwrap_or_else(|| format!("{:#x}", f.address)),
                        f.resolved.file.clone(),
                        f.resolved.line,
                        callers,
                        s.kind,
                    )
                }
                None => ("(unknown)".to_string(), None, None, Vec::new(), s.kind),
            };
            *by.entry(key).or_default() += s.samples;
        }
        let mut sites: Vec<Site> = by
            .into_iter()
            .map(|((function, file, line, callers, kind), samples)| Site {
                function,
                file,
                line,
                callers,
                samples,
                bytes: samples * self.mean_bytes,
                share: samples as f64 / total.get(&kind).copied().unwrap_or(0).max(1) as f64,
                kind,
            })
            .collect();
        sites.sort_by(|a, b| b.samples.cmp(&a.samples).then(a.function.cmp(&b.function)));
        sites.truncate(n);
        sites
    }
}

/// Callers named with a site.
pub const CALLERS: usize = 2;

/// The first frame outside the allocator; the innermost named frame if all are inside.
fn site_index(frames: &[Frame]) -> Option<usize> {
    frames
        .iter()
        .position(|f| {
            f.resolved
                .function
                .as_deref()
                .is_some_and(|n| !is_allocator(n))
        })
        .or_else(|| (!frames.is_empty()).then_some(0))
}

/// A frame as a trace keeps it: the name, and the (binary, build id, file offset) it came
/// from, so the address can be named again after the process is gone or on another machine.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SiteFrame {
    pub address: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
    /// The binary's path as the process saw it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build_id: Option<String>,
    /// Offset in `module` of the address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
}

impl SiteFrame {
    /// An address outside any file mapping (or of a process already gone).
    pub fn unnamed(address: u64) -> Self {
        Self {
            address,
            ..Self::default()
        }
    }

    pub fn to_frame(&self) -> Frame {
        Frame {
            address: self.address,
            mapping: None,
            resolved: ResolvedFrame {
                function: self.function.clone(),
                file: self.file.clone(),
                line: self.line,
            },
        }
    }
}

/// Allocator and runtime code: never the site that asked for memory.
pub fn is_allocator(function: &str) -> bool {
    const GO_PREFIXES: [&str; 3] = ["runtime.", "internal/runtime/", "internal/abi."];
    const C_NAMES: [&str; 16] = [
        "malloc",
        "calloc",
        "realloc",
        "reallocarray",
        "posix_memalign",
        "aligned_alloc",
        "memalign",
        "valloc",
        "sysmalloc",
        "sysmalloc_mmap",
        "sysmalloc_mmap_fallback",
        "operator new",
        "mmap",
        "mmap64",
        "brk",
        "sbrk",
    ];
    const C_PREFIXES: [&str; 12] = [
        "_int_",
        "__libc_",
        "__mmap",
        "__brk",
        "__sbrk",
        "__GI___",
        "__memset",
        "__memcpy",
        "__memmove",
        "memset",
        "memcpy",
        "tcache",
    ];
    GO_PREFIXES.iter().any(|p| function.starts_with(p))
        || C_NAMES
            .iter()
            .any(|n| function == *n || function.starts_with(&format!("{n}(")))
        || C_PREFIXES.iter().any(|p| function.starts_with(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(name: &str, line: u32) -> Frame {
        Frame {
            address: 0x1000 + u64::from(line),
            mapping: None,
            resolved: ResolvedFrame {
                function: Some(name.to_string()),
                file: Some("main.go".into()),
                line: Some(line),
            },
        }
    }

    fn stack(samples: u64, names: &[(&str, u32)]) -> ProcessStack {
        ProcessStack {
            pid: 1,
            kind: GrowthKind::Touched,
            samples,
            frames: names.iter().map(|(n, l)| frame(n, *l)).collect(),
        }
    }

    #[test]
    fn the_site_is_the_first_frame_outside_the_allocator() {
        let p = GrowthProfile {
            mean_bytes: 512 * 1024,
            stacks: vec![
                stack(
                    30,
                    &[
                        ("runtime.memclrNoHeapPointers", 1),
                        ("runtime.mallocgc", 2),
                        ("main.retain", 11),
                        ("main.main", 20),
                    ],
                ),
                stack(
                    10,
                    &[
                        ("__memset_avx2_unaligned_erms", 1),
                        ("keep", 7),
                        ("main", 3),
                    ],
                ),
                stack(5, &[("main.main", 21)]),
            ],
            ..GrowthProfile::default()
        };
        let sites = p.top_sites(10);
        assert_eq!(sites[0].function, "main.retain");
        assert_eq!(sites[0].line, Some(11));
        assert_eq!(sites[0].bytes, 30 * 512 * 1024);
        assert!((sites[0].share - 30.0 / 45.0).abs() < 1e-9);
        assert_eq!(sites[1].function, "keep");
        assert_eq!(sites[2].function, "main.main");
        assert_eq!(p.top_sites(1).len(), 1);
    }

    #[test]
    fn cumulative_growth_tells_callers_of_a_shared_helper_apart() {
        let p = GrowthProfile {
            mean_bytes: 10,
            stacks: vec![
                stack(9, &[("malloc", 1), ("fill", 2), ("keeper", 3), ("main", 4)]),
                stack(1, &[("fill", 2), ("churner", 5), ("main", 4)]),
                stack(2, &[("rec", 6), ("rec", 6), ("main", 4)]),
            ],
            ..GrowthProfile::default()
        };
        let f = p.functions(20);
        let get = |n: &str| f.iter().find(|g| g.function == n).unwrap().clone();
        assert_eq!(f[0].function, "main");
        assert_eq!(get("main").cum_bytes, 120);
        assert_eq!(get("keeper").cum_bytes, 90);
        assert_eq!(get("churner").cum_bytes, 10);
        assert_eq!(get("fill").cum_bytes, 100);
        assert_eq!((get("fill").flat_bytes, get("malloc").flat_bytes), (10, 90));
        assert_eq!(get("rec").cum_bytes, 20, "recursion counted once");
        assert!((get("keeper").cum_share - 0.75).abs() < 1e-9);
    }

    #[test]
    fn an_unnamed_stack_is_still_counted() {
        let p = GrowthProfile {
            mean_bytes: 4096,
            stacks: vec![ProcessStack {
                pid: 1,
                kind: GrowthKind::Touched,
                samples: 3,
                frames: vec![Frame {
                    address: 0xdead,
                    mapping: None,
                    resolved: ResolvedFrame::default(),
                }],
            }],
            ..GrowthProfile::default()
        };
        assert_eq!(p.top_sites(5)[0].function, "0xdead");
        assert!(is_allocator("malloc") && is_allocator("runtime.mallocgc"));
        assert!(!is_allocator("main.retain") && !is_allocator("mallocate_things"));
    }
}
