//! Growth-site stacks in a live session (`record --stacks`): the growth-site programs of the
//! session's own load (page faults, mmap, brk) sample the processes the user asked for, and every few seconds their
//! new stacks are named while the processes still run (their mappings read then) and
//! reported with every stack's samples so far. The kernel's table is bounded: a process
//! that ended has its stacks reported one last time and then removed from it.
use std::{
    collections::{HashMap, HashSet},
    path::PathBuf,
    time::Duration,
};

use aya::Ebpf;
use tracer_common::StackKey;

use crate::{
    host::{sites::ProcessImage, symbols::Symbolizer},
    kernel::profiler,
    model::sites::{StackSample, StackUpdate},
};

#[derive(Clone, Debug)]
pub struct StackOptions {
    /// Mean bytes first touched between two samples of a process.
    pub mean_bytes: u64,
    /// How often stacks are read and named.
    pub every: Duration,
    /// The processes to sample (`record`'s --pid, --comm and Kubernetes filters).
    pub only: crate::pipeline::filter::Filter,
}

/// Refused processes remembered (each counted once while it runs).
const MAX_REFUSED_KEPT: usize = 65_536;

/// Binaries the symbolizer may keep open between collections: more, and it starts afresh
/// (a busy node's binaries' symbol tables would otherwise stay in memory for the session).
const MAX_CACHED_BINARIES: usize = 8;

pub struct StackCollector {
    opts: StackOptions,
    proc_root: PathBuf,
    /// Processes being sampled.
    targets: HashSet<u32>,
    /// Running processes the kernel's target table has no room for (at most
    /// [`MAX_REFUSED_KEPT`] remembered: the count saturates there).
    refused: HashSet<u32>,
    /// Stacks reported so far: their id and samples at the last report.
    known: HashMap<StackKey, (u32, u64)>,
    next_id: u32,
    /// Each sampled process's mappings, read when one of its stacks is first named.
    images: HashMap<u32, ProcessImage>,
    sym: Symbolizer,
    last_collect: f64,
}

impl StackCollector {
    pub fn new(opts: StackOptions, proc_root: PathBuf) -> Self {
        Self {
            opts,
            proc_root,
            targets: HashSet::new(),
            refused: HashSet::new(),
            known: HashMap::new(),
            next_id: 1,
            images: HashMap::new(),
            sym: Symbolizer::new(),
            last_collect: f64::NEG_INFINITY,
        }
    }

    /// Sample every process in `wanted` not sampled yet (while the kernel's table has room).
    pub fn add_targets(&mut self, ebpf: &mut Ebpf, wanted: impl IntoIterator<Item = u32>) {
        for pid in wanted {
            // A refused process is tried again each round: room comes as targets end.
            if self.targets.contains(&pid) || pid == std::process::id() {
                continue;
            }
            let added = if self.targets.len() >= profiler::MAX_TARGETS {
                Err(anyhow::anyhow!("the target table is full"))
            } else {
                profiler::add_target(ebpf, pid, self.opts.mean_bytes)
            };
            match added {
                Ok(()) => {
                    self.targets.insert(pid);
                    self.refused.remove(&pid);
                }
                Err(e) => {
                    log::debug!("growth sites: pid {pid} not sampled: {e:#}");
                    if self.refused.len() < MAX_REFUSED_KEPT {
                        self.refused.insert(pid);
                    }
                }
            }
        }
    }

    /// Whether a collection is due at `t_mono`.
    pub fn due(&self, t_mono: f64) -> bool {
        t_mono - self.last_collect >= self.opts.every.as_secs_f64()
    }

    /// Read the kernel's stacks: name the new ones, report those whose samples changed, and
    /// forget the processes `alive` says have ended (after this last report of theirs).
    pub fn collect(
        &mut self,
        ebpf: &mut Ebpf,
        t_mono: f64,
        alive: impl Fn(u32) -> bool,
        comm: impl Fn(u32) -> String,
    ) -> anyhow::Result<StackUpdate> {
        self.last_collect = t_mono;
        let mut update = StackUpdate {
            mean_bytes: self.opts.mean_bytes,
            ..StackUpdate::default()
        };
        let mut ended_keys = Vec::new();
        for (key, stack) in profiler::stacks(ebpf)? {
            let ended = !alive(stack.pid);
            if ended {
                ended_keys.push(key);
            }
            if let Some((id, reported)) = self.known.get_mut(&key) {
                if *reported != stack.samples {
                    *reported = stack.samples;
                    update.stacks.push(StackSample {
                        pid: stack.pid,
                        id: *id,
                        kind: stack.kind,
                        samples: stack.samples,
                        frames: None,
                    });
                }
                continue;
            }
            let id = self.next_id;
            self.next_id += 1;
            self.known.insert(key, (id, stack.samples));
            let frames = self.name(stack.pid, &stack.frames, &comm);
            update.stacks.push(StackSample {
                pid: stack.pid,
                id,
                kind: stack.kind,
                samples: stack.samples,
                frames: Some(frames),
            });
        }
        self.refused.retain(|p| alive(*p));
        // The ended: out of the kernel's tables and ours.
        let gone: Vec<u32> = self
            .targets
            .iter()
            .copied()
            .filter(|p| !alive(*p))
            .collect();
        for pid in gone {
            profiler::remove_target(ebpf, pid);
            self.targets.remove(&pid);
            self.images.remove(&pid);
        }
        profiler::remove_stacks(ebpf, &ended_keys)?;
        for k in &ended_keys {
            self.known.remove(k);
        }
        if self.sym.cached_binaries() > MAX_CACHED_BINARIES {
            self.sym = Symbolizer::new();
        }
        update.counters = profiler::counters(ebpf)?;
        update.targets = self.targets.len() as u32;
        update.targets_refused = self.refused.len() as u64;
        Ok(update)
    }

    /// Name a stack's frames with the process's mappings, read again when they do not cover
    /// the stack (code loaded since); a process already gone keeps its addresses only.
    fn name(
        &mut self,
        pid: u32,
        frames: &[u64],
        comm: &impl Fn(u32) -> String,
    ) -> Vec<crate::model::growth::SiteFrame> {
        let stale = self.images.get(&pid).is_none_or(|i| !i.covers(frames));
        if stale && let Some(image) = ProcessImage::read(&self.proc_root, pid, comm(pid)) {
            self.images.insert(pid, image);
        }
        match self.images.get(&pid) {
            Some(image) => image.name_frames(&mut self.sym, frames),
            None => frames
                .iter()
                .map(|a| crate::model::growth::SiteFrame::unnamed(*a))
                .collect(),
        }
    }
}
