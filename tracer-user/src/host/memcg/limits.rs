//! Where the memory-cgroup hierarchies are, and the limit and usage of a cgroup, v1 and v2:
//! the figure a leak races towards ("reaches its limit in 40 min") and the state of a cgroup
//! at an OOM kill.
use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use serde::Serialize;

use super::parse;

/// Limits change rarely and many processes share a cgroup, so a resolved limit is reused
/// this long.
const CACHE_TTL: Duration = Duration::from_secs(10);
/// A node runs a few hundred cgroups; past this many the oldest entries go.
const CACHE_MAX: usize = 4096;

/// Where the memory cgroup hierarchies are mounted (below the host root).
#[derive(Clone, Debug)]
pub struct CgroupRoots {
    /// The v1 hierarchy carrying the memory controller, e.g. /sys/fs/cgroup/memory.
    pub v1_memory: Option<PathBuf>,
    /// The unified (v2) hierarchy, only when the memory controller is on it.
    pub v2: Option<PathBuf>,
    /// "/" on the host, or where the host's filesystem is seen from a container ("/host").
    host_root: PathBuf,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CgroupVersion {
    V1,
    V2,
}

/// A cgroup's directory in the hierarchy that holds its memory files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CgroupDir {
    pub path: PathBuf,
    pub version: CgroupVersion,
}

impl CgroupDir {
    /// The file holding current usage.
    pub fn usage_file(&self) -> PathBuf {
        self.path.join(match self.version {
            CgroupVersion::V1 => "memory.usage_in_bytes",
            CgroupVersion::V2 => "memory.current",
        })
    }

    /// This cgroup's own limit (not its ancestors'); None when unlimited or unreadable
    /// (the v2 root has no memory.max).
    fn own_limit(&self) -> Option<u64> {
        let file = match self.version {
            CgroupVersion::V1 => "memory.limit_in_bytes",
            CgroupVersion::V2 => "memory.max",
        };
        let path = self.path.join(file);
        let text = std::fs::read_to_string(&path).ok()?;
        let limit = match self.version {
            CgroupVersion::V1 => parse::parse_v1_limit(&text),
            CgroupVersion::V2 => parse::parse_v2_max(&text),
        };
        limit
            .inspect_err(|e| log::debug!("{}: {e:#}", path.display()))
            .ok()
            .flatten()
    }
}

/// The limit that applies to a process and where it comes from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Limit {
    pub bytes: u64,
    /// The cgroup holding the tightest limit, or None for the node's memory. Kept as an
    /// Option (rather than a `LimitSource` field) for the crate's existing callers; see
    /// [`Limit::source`].
    pub cgroup: Option<String>,
}

/// Which one a [`Limit`] is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LimitSource {
    /// A memory cgroup's limit: this cgroup or an ancestor (a pod's limit may sit on the pod
    /// slice rather than on the container).
    Cgroup { path: String },
    /// No cgroup on the path is limited: the node's memory (MemTotal).
    Node,
}

impl Limit {
    pub fn source(&self) -> LimitSource {
        match &self.cgroup {
            Some(path) => LimitSource::Cgroup { path: path.clone() },
            None => LimitSource::Node,
        }
    }
}

/// `cgroup` (as in /proc/PID/cgroup: "/a/b", or "/" for the root) relative to a hierarchy's
/// mount point; None when it would climb out of it ("/../x" is what a process in another
/// cgroup namespace looks like: we cannot place it).
fn relative(cgroup: &str) -> Option<&str> {
    let rel = cgroup.trim_matches('/');
    (!rel.split('/').any(|c| c == ".." || c == ".")).then_some(rel)
}

/// "/a/b" -> "/a" -> "/"; None above the root.
fn parent(cgroup: &str) -> Option<&str> {
    let c = cgroup.trim_end_matches('/');
    if c.is_empty() {
        return None;
    }
    Some(match c.rfind('/') {
        Some(0) | None => "/",
        Some(i) => &c[..i],
    })
}

/// "a/b/" or "/a/b" -> "/a/b"; "" -> "/": one spelling per cgroup for map keys and events.
pub fn normalize(cgroup: &str) -> String {
    format!("/{}", cgroup.trim_matches('/'))
}

impl CgroupRoots {
    /// Find the hierarchies from the host's mount table (the host's PID 1 when its /proc is
    /// visible, else our own), falling back to the usual places.
    pub fn discover(host_root: &Path) -> Self {
        let mountinfo = std::fs::read_to_string(host_root.join("proc/1/mountinfo"))
            .or_else(|_| std::fs::read_to_string("/proc/self/mountinfo"))
            .unwrap_or_default();
        let mut v1 = None;
        let mut v2 = None;
        for m in parse::parse_mountinfo(&mountinfo) {
            let at = host_root.join(m.mount_point.trim_start_matches('/'));
            if m.v1_memory {
                v1 = Some(at);
            } else if m.v2 {
                // A hybrid host mounts cgroup2 without the memory controller (it is on v1).
                let controllers =
                    std::fs::read_to_string(at.join("cgroup.controllers")).unwrap_or_default();
                if controllers.split_whitespace().any(|c| c == "memory") {
                    v2 = Some(at);
                }
            }
        }
        let usual = host_root.join("sys/fs/cgroup");
        if v1.is_none() && usual.join("memory/memory.limit_in_bytes").exists() {
            v1 = Some(usual.join("memory"));
        }
        if v2.is_none()
            && v1.is_none()
            && std::fs::read_to_string(usual.join("cgroup.controllers"))
                .is_ok_and(|c| c.split_whitespace().any(|c| c == "memory"))
        {
            v2 = Some(usual);
        }
        log::debug!("memory cgroups: v1 {v1:?}, v2 {v2:?}");
        Self::new(v1, v2, host_root)
    }

    /// Explicit hierarchies (tests, unusual layouts).
    pub fn new(v1_memory: Option<PathBuf>, v2: Option<PathBuf>, host_root: &Path) -> Self {
        Self {
            v1_memory,
            v2,
            host_root: host_root.to_owned(),
        }
    }

    /// A /proc file of the host: under the host root when mounted there, else ours (PSI and
    /// meminfo are node-wide either way).
    pub fn proc_file(&self, rel: &str) -> PathBuf {
        let host = self.host_root.join("proc").join(rel);
        if host.exists() {
            host
        } else {
            Path::new("/proc").join(rel)
        }
    }

    /// The directory of a cgroup path (as in /proc/PID/cgroup) in the hierarchy that has it.
    pub fn locate(&self, cgroup: &str) -> Option<CgroupDir> {
        let rel = relative(cgroup)?;
        if let Some(v1) = &self.v1_memory {
            let path = v1.join(rel);
            if path.join("memory.limit_in_bytes").exists() {
                return Some(CgroupDir {
                    path,
                    version: CgroupVersion::V1,
                });
            }
        }
        if let Some(v2) = &self.v2 {
            let path = v2.join(rel);
            if path.is_dir() {
                return Some(CgroupDir {
                    path,
                    version: CgroupVersion::V2,
                });
            }
        }
        None
    }

    /// This cgroup's own limit (not its ancestors'), None when unlimited.
    pub fn own_limit(&self, cgroup: &str) -> Option<u64> {
        self.locate(cgroup)?.own_limit()
    }

    /// The tightest cgroup limit from this cgroup up to the root and the cgroup holding it.
    /// v1 limits are hierarchical too (use_hierarchy is forced on since 6.x; before, pods ran
    /// with it on), so walking up is right for both versions.
    fn tightest(&self, cgroup: &str) -> Option<(u64, String)> {
        relative(cgroup)?;
        let mut best: Option<(u64, String)> = None;
        let mut at = Some(cgroup);
        while let Some(c) = at {
            if let Some(l) = self.own_limit(c)
                && best.as_ref().is_none_or(|(b, _)| l < *b)
            {
                best = Some((l, normalize(c)));
            }
            at = parent(c);
        }
        best
    }

    /// The tightest limit on the path from this cgroup up to the root, None when none.
    pub fn limit_of(&self, cgroup: &str) -> Option<u64> {
        self.tightest(cgroup).map(|(b, _)| b)
    }

    /// Current usage of a cgroup (v1 memory.usage_in_bytes, v2 memory.current).
    pub fn usage_of(&self, cgroup: &str) -> Option<u64> {
        current_usage(self, cgroup).ok()
    }

    /// The node's memory (MemTotal).
    pub fn node_memory(&self) -> Option<u64> {
        let path = self.proc_file("meminfo");
        let text = std::fs::read_to_string(&path).ok()?;
        parse::parse_meminfo_total(&text)
            .inspect_err(|e| log::warn!("{}: {e:#}", path.display()))
            .ok()
    }

    /// The limit that applies to a process in `cgroup`: the tightest cgroup limit, else the
    /// node's memory; None only when even /proc/meminfo is unreadable.
    pub fn effective_limit(&self, cgroup: Option<&str>) -> Option<Limit> {
        if let Some((bytes, path)) = cgroup.and_then(|c| self.tightest(c)) {
            return Some(Limit {
                bytes,
                cgroup: Some(path),
            });
        }
        self.node_memory().map(|bytes| Limit {
            bytes,
            cgroup: None,
        })
    }
}

/// The tightest limit on the path from `memcg_path` up to the root, else the node's memory.
/// (u64::MAX with `LimitSource::Node` if /proc/meminfo cannot be read, which does not happen
/// on a working Linux.)
pub fn effective_limit(roots: &CgroupRoots, memcg_path: &str) -> Limit {
    roots.effective_limit(Some(memcg_path)).unwrap_or(Limit {
        bytes: u64::MAX,
        cgroup: None,
    })
}

/// Current memory usage of a cgroup: v2 memory.current, v1 memory.usage_in_bytes.
pub fn current_usage(roots: &CgroupRoots, memcg_path: &str) -> Result<u64> {
    let dir = roots
        .locate(memcg_path)
        .with_context(|| format!("no memory cgroup {memcg_path} (roots {roots:?})"))?;
    read_u64(&dir.usage_file())
}

/// A counter file, with the file named in the error.
pub(super) fn read_u64(path: &Path) -> Result<u64> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    parse::parse_u64(&text).with_context(|| format!("parsing {}", path.display()))
}

/// A small TTL cache over `effective_limit`, keyed by cgroup path and bounded.
pub struct LimitCache {
    roots: CgroupRoots,
    entries: HashMap<String, (Instant, Option<Limit>)>,
}

impl LimitCache {
    pub fn new(roots: CgroupRoots) -> Self {
        Self {
            roots,
            entries: HashMap::new(),
        }
    }

    pub fn roots(&self) -> &CgroupRoots {
        &self.roots
    }

    /// The limit for a process in `cgroup` (None: not in a known cgroup, the node's memory).
    pub fn get(&mut self, cgroup: Option<&str>) -> Option<Limit> {
        let key = cgroup.map(normalize).unwrap_or_default();
        if let Some((at, l)) = self.entries.get(&key)
            && at.elapsed() < CACHE_TTL
        {
            return l.clone();
        }
        if self.entries.len() >= CACHE_MAX {
            self.entries.retain(|_, (at, _)| at.elapsed() < CACHE_TTL);
            // All fresh: a burst of new cgroups. Drop the oldest (a linear scan, but only
            // when 4096 cgroups were seen within the TTL).
            if self.entries.len() >= CACHE_MAX
                && let Some(oldest) = self
                    .entries
                    .iter()
                    .min_by_key(|(_, (at, _))| *at)
                    .map(|(k, _)| k.clone())
            {
                self.entries.remove(&oldest);
            }
        }
        let l = self.roots.effective_limit(cgroup);
        self.entries.insert(key, (Instant::now(), l.clone()));
        l
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(parent("/a/b"), Some("/a"));
        assert_eq!(parent("/a"), Some("/"));
        assert_eq!(parent("/"), None);
        assert_eq!(parent(""), None);
        assert_eq!(relative("/kubepods/pod1/"), Some("kubepods/pod1"));
        assert_eq!(relative("/"), Some(""));
        assert_eq!(relative("/../../x"), None);
        assert_eq!(normalize("a/b/"), "/a/b");
        assert_eq!(normalize(""), "/");
    }

    /// A fake v2 hierarchy: the pod slice has the tight limit, the container none.
    #[test]
    fn tightest_limit_walks_up_v2() {
        let root = std::env::temp_dir().join(format!("lt-memcg-limits-{}", std::process::id()));
        let cg = root.join("sys/fs/cgroup");
        let pod = cg.join("kubepods.slice/pod1");
        let ctr = pod.join("ctr");
        std::fs::create_dir_all(&ctr).unwrap();
        std::fs::write(cg.join("kubepods.slice/memory.max"), "1073741824\n").unwrap();
        std::fs::write(pod.join("memory.max"), "268435456\n").unwrap();
        std::fs::write(ctr.join("memory.max"), "max\n").unwrap();
        std::fs::write(ctr.join("memory.current"), "1000\n").unwrap();
        std::fs::create_dir_all(root.join("proc")).unwrap();
        std::fs::write(root.join("proc/meminfo"), "MemTotal: 2048 kB\n").unwrap();
        let roots = CgroupRoots::new(None, Some(cg.clone()), &root);

        let l = effective_limit(&roots, "/kubepods.slice/pod1/ctr");
        assert_eq!(l.bytes, 256 << 20);
        assert_eq!(
            l.source(),
            LimitSource::Cgroup {
                path: "/kubepods.slice/pod1".into()
            }
        );
        assert_eq!(
            current_usage(&roots, "/kubepods.slice/pod1/ctr").unwrap(),
            1000
        );
        let err = current_usage(&roots, "/kubepods.slice/pod1").unwrap_err();
        assert!(format!("{err:#}").contains("memory.current"), "{err:#}");
        // Unknown cgroups and escapes from the hierarchy fall back to the node.
        for c in ["/elsewhere", "/../kubepods.slice/pod1/ctr"] {
            let l = effective_limit(&roots, c);
            assert_eq!((l.bytes, l.source()), (2048 * 1024, LimitSource::Node));
        }
        assert_eq!(roots.effective_limit(None).unwrap().cgroup, None);

        let mut cache = LimitCache::new(roots);
        let a = cache.get(Some("kubepods.slice/pod1/ctr/")).unwrap();
        // Served from the cache, though the file changed.
        std::fs::write(pod.join("memory.max"), "max\n").unwrap();
        assert_eq!(cache.get(Some("/kubepods.slice/pod1/ctr")).unwrap(), a);
        assert_eq!(cache.len(), 1);
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn serializes() {
        let l = Limit {
            bytes: 1,
            cgroup: Some("/a".into()),
        };
        assert_eq!(
            serde_json::to_string(&l.source()).unwrap(),
            r#"{"kind":"cgroup","path":"/a"}"#
        );
        assert_eq!(
            serde_json::to_string(&LimitSource::Node).unwrap(),
            r#"{"kind":"node"}"#
        );
    }
}
