//! Memory limits and usage of memory cgroups, v1 and v2: the figure a leak races towards
//! ("reaches its limit in 40 min") and the state of a cgroup at an OOM kill.
use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

/// v1 reports "no limit" as a huge page-aligned number (PAGE_COUNTER_MAX * page size).
const V1_UNLIMITED: u64 = 1 << 62;
/// Limits change rarely; many processes share a cgroup, so cache them briefly.
const CACHE_TTL: Duration = Duration::from_secs(10);
const CACHE_MAX: usize = 4096;

/// Where the memory cgroup hierarchies are mounted (below the host root).
#[derive(Clone, Debug)]
pub struct CgroupRoots {
    pub v1_memory: Option<PathBuf>,
    pub v2: Option<PathBuf>,
    meminfo: PathBuf,
}

/// The limit that applies to a process and where it comes from.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Limit {
    pub bytes: u64,
    /// The cgroup holding the tightest limit, or None for the node's memory.
    pub cgroup: Option<String>,
}

impl CgroupRoots {
    /// Find the hierarchies from the host's mount table, falling back to the usual places.
    pub fn discover(host_root: &Path) -> Self {
        let mut v1 = None;
        let mut v2 = None;
        let mountinfo = std::fs::read_to_string(host_root.join("proc/1/mountinfo"))
            .or_else(|_| std::fs::read_to_string("/proc/self/mountinfo"))
            .unwrap_or_default();
        for line in mountinfo.lines() {
            // "... mount_point options - fstype source super_options"
            let Some((left, right)) = line.split_once(" - ") else {
                continue;
            };
            let mount_point = left.split(' ').nth(4).unwrap_or("");
            let mut r = right.split(' ');
            let fstype = r.next().unwrap_or("");
            let super_opts = r.nth(1).unwrap_or("");
            let at = host_root.join(mount_point.trim_start_matches('/'));
            if fstype == "cgroup2" && at.join("cgroup.controllers").exists() {
                let controllers =
                    std::fs::read_to_string(at.join("cgroup.controllers")).unwrap_or_default();
                if controllers.split_whitespace().any(|c| c == "memory") {
                    v2 = Some(at);
                }
            } else if fstype == "cgroup" && super_opts.split(',').any(|o| o == "memory") {
                v1 = Some(at);
            }
        }
        if v1.is_none()
            && host_root
                .join("sys/fs/cgroup/memory/memory.limit_in_bytes")
                .exists()
        {
            v1 = Some(host_root.join("sys/fs/cgroup/memory"));
        }
        if v2.is_none() && host_root.join("sys/fs/cgroup/memory.max").exists() {
            v2 = Some(host_root.join("sys/fs/cgroup"));
        }
        Self {
            v1_memory: v1,
            v2,
            meminfo: host_root.join("proc/meminfo"),
        }
    }

    /// The directory of a cgroup path (as in /proc/PID/cgroup) in the hierarchy that has it.
    fn dir(&self, cgroup: &str) -> Option<(PathBuf, bool)> {
        let rel = cgroup.trim_start_matches('/');
        if let Some(v1) = &self.v1_memory {
            let d = v1.join(rel);
            if d.join("memory.limit_in_bytes").exists() {
                return Some((d, true));
            }
        }
        if let Some(v2) = &self.v2 {
            let d = v2.join(rel);
            if d.is_dir() {
                return Some((d, false));
            }
        }
        None
    }

    /// The cgroup's directory in the v1 memory hierarchy, if it is there.
    pub fn v1_dir(&self, cgroup: &str) -> Option<PathBuf> {
        self.dir(cgroup).filter(|(_, v1)| *v1).map(|(d, _)| d)
    }

    /// The cgroup's directory in the v2 hierarchy (with memory.events), if it is there.
    pub fn v2_dir(&self, cgroup: &str) -> Option<PathBuf> {
        self.dir(cgroup)
            .filter(|(d, v1)| !*v1 && d.join("memory.events").exists())
            .map(|(d, _)| d)
    }

    /// This cgroup's own limit (not its ancestors'), None when unlimited.
    pub fn own_limit(&self, cgroup: &str) -> Option<u64> {
        let (d, v1) = self.dir(cgroup)?;
        if v1 {
            read_u64(&d.join("memory.limit_in_bytes")).filter(|&v| v < V1_UNLIMITED)
        } else {
            parse_max(&std::fs::read_to_string(d.join("memory.max")).ok()?)
        }
    }

    /// The tightest limit from this cgroup up to the root.
    pub fn limit_of(&self, cgroup: &str) -> Option<u64> {
        self.tightest(cgroup).map(|(b, _)| b)
    }

    fn tightest(&self, cgroup: &str) -> Option<(u64, String)> {
        let mut best: Option<(u64, String)> = None;
        let mut path = cgroup.trim_end_matches('/').to_string();
        loop {
            if let Some(l) = self.own_limit(&path) {
                if best.as_ref().is_none_or(|(b, _)| l < *b) {
                    best = Some((
                        l,
                        if path.is_empty() {
                            "/".into()
                        } else {
                            path.clone()
                        },
                    ));
                }
            }
            match path.rfind('/') {
                Some(i) if !path.is_empty() => path.truncate(i),
                _ => break,
            }
        }
        best
    }

    /// Current usage of a cgroup (v1 memory.usage_in_bytes, v2 memory.current).
    pub fn usage_of(&self, cgroup: &str) -> Option<u64> {
        let (d, v1) = self.dir(cgroup)?;
        read_u64(&d.join(if v1 {
            "memory.usage_in_bytes"
        } else {
            "memory.current"
        }))
    }

    /// The node's memory (MemTotal), the limit of processes in no limited cgroup.
    pub fn node_memory(&self) -> Option<u64> {
        let text = std::fs::read_to_string(&self.meminfo).ok()?;
        parse_meminfo_total(&text)
    }

    /// The limit that applies to a process in `cgroup`: the tightest cgroup limit, else the node.
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

/// A small TTL cache over `effective_limit`, keyed by cgroup path (bounded).
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

    pub fn get(&mut self, cgroup: Option<&str>) -> Option<Limit> {
        let key = cgroup.unwrap_or("").to_string();
        if let Some((at, l)) = self.entries.get(&key) {
            if at.elapsed() < CACHE_TTL {
                return l.clone();
            }
        }
        if self.entries.len() >= CACHE_MAX {
            self.entries.retain(|_, (at, _)| at.elapsed() < CACHE_TTL);
            if self.entries.len() >= CACHE_MAX {
                self.entries.clear();
            }
        }
        let l = self.roots.effective_limit(cgroup);
        self.entries.insert(key, (Instant::now(), l.clone()));
        l
    }
}

fn read_u64(p: &Path) -> Option<u64> {
    std::fs::read_to_string(p).ok()?.trim().parse().ok()
}

/// v2 `memory.max`: "max" or a byte count.
pub fn parse_max(text: &str) -> Option<u64> {
    match text.trim() {
        "max" => None,
        v => v.parse().ok(),
    }
}

pub fn parse_meminfo_total(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map(|kb| kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parsers() {
        assert_eq!(parse_max("max\n"), None);
        assert_eq!(parse_max("67108864\n"), Some(64 << 20));
        assert_eq!(parse_max("garbage"), None);
        assert_eq!(
            parse_meminfo_total("MemTotal:       24576000 kB\nMemFree: 1 kB\n"),
            Some(24576000 * 1024)
        );
        assert_eq!(parse_meminfo_total(""), None);
    }

    /// A fake v2 hierarchy: the pod slice has the tight limit, the container none.
    #[test]
    fn tightest_limit_walks_up_v2() {
        let root = std::env::temp_dir().join(format!("lt-memcg-{}", std::process::id()));
        let pod = root.join("sys/fs/cgroup/kubepods.slice/pod1");
        let ctr = pod.join("ctr");
        std::fs::create_dir_all(&ctr).unwrap();
        std::fs::write(root.join("sys/fs/cgroup/memory.max"), "max\n").unwrap();
        std::fs::write(
            root.join("sys/fs/cgroup/kubepods.slice/memory.max"),
            "1073741824\n",
        )
        .unwrap();
        std::fs::write(pod.join("memory.max"), "268435456\n").unwrap();
        std::fs::write(ctr.join("memory.max"), "max\n").unwrap();
        std::fs::write(ctr.join("memory.current"), "1000\n").unwrap();
        std::fs::create_dir_all(root.join("proc")).unwrap();
        std::fs::write(root.join("proc/meminfo"), "MemTotal: 2048 kB\n").unwrap();
        let roots = CgroupRoots {
            v1_memory: None,
            v2: Some(root.join("sys/fs/cgroup")),
            meminfo: root.join("proc/meminfo"),
        };
        let l = roots
            .effective_limit(Some("/kubepods.slice/pod1/ctr"))
            .unwrap();
        assert_eq!(
            l,
            Limit {
                bytes: 256 << 20,
                cgroup: Some("/kubepods.slice/pod1".into())
            }
        );
        assert_eq!(roots.usage_of("/kubepods.slice/pod1/ctr"), Some(1000));
        assert_eq!(
            roots.effective_limit(Some("/elsewhere")),
            Some(Limit {
                bytes: 2048 * 1024,
                cgroup: None
            })
        );
        assert_eq!(
            roots.effective_limit(None),
            Some(Limit {
                bytes: 2048 * 1024,
                cgroup: None
            })
        );
        let _ = std::fs::remove_dir_all(&root);
    }

    /// The real v1 hierarchy of this machine: a cgroup with a 64 MiB limit.
    #[test]
    fn real_v1_limit() {
        let roots = CgroupRoots::discover(Path::new("/"));
        let Some(v1) = &roots.v1_memory else {
            assert!(
                roots.v2.is_some() || std::env::var("LEAKTRACER_SKIP_PRIVILEGED").is_ok(),
                "no memory cgroup hierarchy found"
            );
            return;
        };
        let name = format!("leaktracer-limits-test-{}", std::process::id());
        let dir = v1.join(&name);
        if std::fs::create_dir(&dir).is_err() {
            assert!(
                std::env::var("LEAKTRACER_SKIP_PRIVILEGED").is_ok_and(|v| v == "1"),
                "creating a v1 memory cgroup needs root (LEAKTRACER_SKIP_PRIVILEGED=1 to skip)"
            );
            return;
        }
        std::fs::write(dir.join("memory.limit_in_bytes"), "67108864").unwrap();
        let l = roots.effective_limit(Some(&format!("/{name}")));
        let usage = roots.usage_of(&format!("/{name}"));
        let _ = std::fs::remove_dir(&dir);
        assert_eq!(
            l,
            Some(Limit {
                bytes: 64 << 20,
                cgroup: Some(format!("/{name}"))
            })
        );
        assert_eq!(usage, Some(0));
    }
}
