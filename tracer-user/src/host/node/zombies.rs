//! Zombie memory cgroups: removed (no directory left) but still held by the kernel, usually by
//! page cache charged to them. Each one keeps its per-CPU statistics and its charged pages; a
//! node that creates and removes cgroups (every pod, every cron job) can pile up thousands.
use std::path::Path;

use anyhow::Context as _;

/// How many memory cgroups the kernel holds that have no directory any more.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Zombies {
    /// Memory cgroups the kernel counts (v1: /proc/cgroups; v2: live + dying).
    pub in_kernel: u64,
    /// Directories of the hierarchy (live cgroups).
    pub directories: u64,
    /// Removed but not released.
    pub zombies: u64,
}

/// cgroup v1: `/proc/cgroups`' `num_cgroups` for the memory controller against the
/// directories under its hierarchy (`v1_memory`, e.g. /sys/fs/cgroup/memory).
pub fn v1(proc_cgroups: &str, v1_memory: &Path) -> anyhow::Result<Zombies> {
    let in_kernel =
        memory_cgroups(proc_cgroups).context("/proc/cgroups has no memory controller line")?;
    let directories =
        count_dirs(v1_memory).with_context(|| format!("walking {}", v1_memory.display()))?;
    Ok(Zombies {
        in_kernel,
        directories,
        zombies: in_kernel.saturating_sub(directories),
    })
}

/// cgroup v2: the root's `cgroup.stat` (`nr_descendants`, `nr_dying_descendants`).
pub fn v2(cgroup_stat: &str) -> anyhow::Result<Zombies> {
    let field = |key: &str| {
        cgroup_stat.lines().find_map(|l| {
            let (k, v) = l.split_once(' ')?;
            (k == key).then(|| v.trim().parse::<u64>().ok()).flatten()
        })
    };
    let live = field("nr_descendants").context("cgroup.stat has no nr_descendants")?;
    let dying = field("nr_dying_descendants").context("cgroup.stat has no nr_dying_descendants")?;
    Ok(Zombies {
        // The root counts too, on both sides.
        in_kernel: live + dying + 1,
        directories: live + 1,
        zombies: dying,
    })
}

/// The id of the hierarchy carrying the memory controller, as cgroup tracepoints name it:
/// 0 for the unified (v2) one; on v1, /proc/cgroups' second column. None without one.
pub fn memory_hierarchy(roots: &crate::host::memcg::CgroupRoots) -> Option<i32> {
    if roots.v2.is_some() {
        return Some(0);
    }
    roots.v1_memory.as_ref()?;
    let text = std::fs::read_to_string(roots.proc_file("cgroups")).ok()?;
    hierarchy_of_memory(&text)
}

fn hierarchy_of_memory(proc_cgroups: &str) -> Option<i32> {
    proc_cgroups.lines().find_map(|l| {
        let mut f = l.split_whitespace();
        (f.next()? == "memory").then(|| f.next()?.parse().ok())?
    })
}

/// Page cache that the removed children of the memory cgroup `parent` still hold: what its
/// hierarchical figure counts beyond itself and its live children. v1: `total_cache` −
/// `cache` − the live children's `total_cache`; v2: `file` − the live children's `file` (v2
/// has no local figure, so page cache `parent` holds itself counts too; a cgroup with
/// children holds little of its own). None when `parent` is gone or unreadable.
pub fn held_page_cache(roots: &crate::host::memcg::CgroupRoots, parent: &str) -> Option<u64> {
    use crate::host::memcg::CgroupVersion;
    let dir = roots.locate(parent)?;
    let (total_key, local_key) = match dir.version {
        CgroupVersion::V1 => ("total_cache", Some("cache")),
        CgroupVersion::V2 => ("file", None),
    };
    let stat = |d: &Path, key: &str| -> Option<u64> {
        let text = std::fs::read_to_string(d.join("memory.stat")).ok()?;
        text.lines().find_map(|l| {
            let (k, v) = l.split_once(' ')?;
            (k == key).then(|| v.trim().parse().ok())?
        })
    };
    let mut held = stat(&dir.path, total_key)?;
    if let Some(local) = local_key {
        held = held.saturating_sub(stat(&dir.path, local)?);
    }
    for child in std::fs::read_dir(&dir.path).ok()?.flatten() {
        if child.file_type().is_ok_and(|t| t.is_dir()) {
            held = held.saturating_sub(stat(&child.path(), total_key).unwrap_or(0));
        }
    }
    Some(held)
}

/// `num_cgroups` of the memory line of /proc/cgroups (`subsys hierarchy num_cgroups enabled`).
fn memory_cgroups(proc_cgroups: &str) -> Option<u64> {
    proc_cgroups.lines().find_map(|l| {
        let mut f = l.split_whitespace();
        (f.next()? == "memory").then(|| f.nth(1)?.parse().ok())?
    })
}

/// Directories in the tree under `root`, `root` included. Bounded by what the hierarchy
/// holds (cgroupfs has no loops: no symlinks, no bind mounts inside it).
fn count_dirs(root: &Path) -> std::io::Result<u64> {
    let mut count = 0;
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        count += 1;
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            // A cgroup removed while we walk: it is gone, not an error.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && dir != root => {
                count -= 1;
                continue;
            }
            Err(e) => return Err(e),
        };
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(entry.path());
            }
        }
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_counts_kernel_cgroups_against_directories() {
        let dir = std::env::temp_dir().join(format!("lt-zombies-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for d in ["a", "a/b", "c"] {
            std::fs::create_dir_all(dir.join(d)).unwrap();
        }
        std::fs::write(dir.join("a/memory.usage_in_bytes"), "0").unwrap();
        let proc_cgroups = "#subsys_name\thierarchy\tnum_cgroups\tenabled\n\
                            cpuset\t3\t3\t1\nmemory\t4\t37\t1\npids\t8\t9\t1\n";
        let z = v1(proc_cgroups, &dir).unwrap();
        assert_eq!(
            z,
            Zombies {
                in_kernel: 37,
                directories: 4,
                zombies: 33
            }
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_memory_hierarchy_is_the_second_column() {
        let text = "#subsys_name\thierarchy\tnum_cgroups\tenabled\nmemory\t4\t37\t1\n";
        assert_eq!(hierarchy_of_memory(text), Some(4));
        assert_eq!(hierarchy_of_memory("cpu\t1\t3\t1\n"), None);
    }

    #[test]
    fn v1_without_a_memory_controller_is_an_error() {
        assert!(v1("cpu\t1\t3\t1\n", Path::new("/nonexistent")).is_err());
    }

    #[test]
    fn v2_reads_dying_descendants() {
        let stat = "nr_descendants 41\nnr_dying_descendants 312\nnr_subsys_memory 300\n";
        let z = v2(stat).unwrap();
        assert_eq!(z.zombies, 312);
        assert_eq!(z.directories, 42);
        assert_eq!(z.in_kernel, 354);
        assert!(v2("nr_descendants 1\n").is_err());
    }
}
