//! One reading of the node's own memory per interval: /proc/meminfo, /proc/slabinfo and the
//! zombie memory cgroups (v1: /proc/cgroups against the memory hierarchy's directories; v2:
//! the root's cgroup.stat). Each source that cannot be read is said once and left out; the
//! others still count.
use std::path::PathBuf;

use anyhow::Context as _;

use super::{
    meminfo::NodeMemory,
    slabinfo::{self, SlabCache},
    zombies::{self, Zombies},
};
use crate::host::memcg::CgroupRoots;

/// What the node's memory looked like at one moment.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NodeReading {
    pub memory: NodeMemory,
    /// Every slab cache (empty when /proc/slabinfo cannot be read: it needs root).
    pub slabs: Vec<SlabCache>,
    /// None when neither hierarchy carries the memory controller, or it cannot be read.
    pub zombies: Option<Zombies>,
    /// Page cache held by removed children, under the parents that have most of the zombies
    /// seen removed (see [`NodeReader::read`]).
    pub held: Vec<HeldCache>,
}

/// Page cache that a memory cgroup's removed children still hold.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HeldCache {
    pub parent: String,
    pub bytes: u64,
}

/// Parents whose held page cache is read each interval, at most.
const HELD_PARENTS: usize = 3;

pub struct NodeReader {
    meminfo: PathBuf,
    slabinfo: PathBuf,
    proc_cgroups: PathBuf,
    roots: CgroupRoots,
    page_size: u64,
    /// Sources already said to be unreadable (each is said once, not every interval).
    warned: [bool; 3],
}

impl NodeReader {
    pub fn new(roots: CgroupRoots) -> Self {
        Self {
            meminfo: roots.proc_file("meminfo"),
            slabinfo: roots.proc_file("slabinfo"),
            proc_cgroups: roots.proc_file("cgroups"),
            roots,
            page_size: crate::util::page::page_size(),
            warned: [false; 3],
        }
    }

    /// Read the node now. `zombie_parents` are the parents of cgroups seen removed and not
    /// freed, with how many each has: the page cache those hold is read for the ones with
    /// most. Never fails: a source that cannot be read is empty (and said once).
    pub fn read(&mut self, zombie_parents: &std::collections::HashMap<String, u64>) -> NodeReading {
        let memory = std::fs::read_to_string(&self.meminfo)
            .with_context(|| format!("reading {}", self.meminfo.display()))
            .map(|t| NodeMemory::parse(&t));
        let slabs = std::fs::read_to_string(&self.slabinfo)
            .with_context(|| format!("reading {} (it needs root)", self.slabinfo.display()))
            .map(|t| slabinfo::parse(&t, self.page_size));
        let zombies = self.zombies();
        let mut parents: Vec<(&String, &u64)> =
            zombie_parents.iter().filter(|(_, n)| **n > 0).collect();
        parents.sort_by(|a, b| b.1.cmp(a.1).then_with(|| a.0.cmp(b.0)));
        let held = parents
            .into_iter()
            .take(HELD_PARENTS)
            .filter_map(|(parent, _)| {
                Some(HeldCache {
                    parent: parent.clone(),
                    bytes: zombies::held_page_cache(&self.roots, parent)?,
                })
            })
            .collect();
        NodeReading {
            memory: self.once(0, memory).unwrap_or_default(),
            slabs: self.once(1, slabs).unwrap_or_default(),
            zombies: self.once(2, zombies).flatten(),
            held,
        }
    }

    fn zombies(&self) -> anyhow::Result<Option<Zombies>> {
        if let Some(v2) = &self.roots.v2 {
            let stat = v2.join("cgroup.stat");
            let text = std::fs::read_to_string(&stat)
                .with_context(|| format!("reading {}", stat.display()))?;
            return zombies::v2(&text).map(Some);
        }
        if let Some(v1) = &self.roots.v1_memory {
            let text = std::fs::read_to_string(&self.proc_cgroups)
                .with_context(|| format!("reading {}", self.proc_cgroups.display()))?;
            return zombies::v1(&text, v1).map(Some);
        }
        Ok(None)
    }

    fn once<T>(&mut self, source: usize, r: anyhow::Result<T>) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(e) => {
                if !std::mem::replace(&mut self.warned[source], true) {
                    log::warn!("node memory: {e:#}; left out of the node's accounting");
                }
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_machine() {
        let mut r = NodeReader::new(CgroupRoots::discover(std::path::Path::new("/")));
        let n = r.read(&Default::default());
        assert!(n.memory.total > 0, "MemTotal is always there");
        assert!(n.memory.free <= n.memory.total);
    }

    #[test]
    fn a_host_without_memory_cgroups_has_no_zombie_count() {
        let dir = std::env::temp_dir().join(format!("lt-node-reader-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut r = NodeReader::new(CgroupRoots::new(None, None, &dir));
        assert_eq!(r.read(&Default::default()).zombies, None);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
