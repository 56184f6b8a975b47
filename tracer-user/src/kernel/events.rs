//! Rare kernel events from the ring buffer, decoded into owned values.
use std::os::fd::AsRawFd as _;

use anyhow::Context as _;
use aya::maps::{MapData, RingBuf};
use tokio::io::unix::AsyncFd;
use tracer_common::{
    CGROUP_MKDIR, CGROUP_RELEASE, CGROUP_RMDIR, CgroupEvent, EVENT_CGROUP, EVENT_EXEC, EVENT_EXIT,
    EVENT_OOM_VICTIM, Event, ExitEvent,
};

use crate::{
    host::procfs::comm_from_bytes,
    kernel::sampler::RssGeneration,
    model::cgroups::{CgroupAction, CgroupChange},
    model::counters::Counters,
};

#[derive(Clone, Debug, PartialEq)]
pub enum KernelEvent {
    Exec {
        tgid: u32,
        comm: String,
        old_pid: u32,
        t_mono: f64,
    },
    /// A process ended. `counters` are its final ones (None when the kernel never had an
    /// entry for it, e.g. its map was full); `comm` is theirs, else the exiting task's.
    Exit {
        tgid: u32,
        comm: String,
        t_mono: f64,
        counters: Option<Box<Counters>>,
    },
    OomVictim(OomVictim),
    /// A cgroup was made, removed or freed (any hierarchy: the source keeps the memory
    /// one's).
    Cgroup(CgroupChange),
}

/// What oom:mark_victim told us. Sizes in bytes; 0 when the kernel's event lacks them.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct OomVictim {
    pub pid: u32,
    pub comm: String,
    pub trigger_pid: u32,
    pub trigger_comm: String,
    pub uid: u32,
    pub total_vm_bytes: u64,
    pub anon_rss_bytes: u64,
    pub file_rss_bytes: u64,
    pub shmem_rss_bytes: u64,
    pub pgtables_bytes: u64,
    pub oom_score_adj: i64,
    #[serde(skip)]
    pub t_mono: f64,
}

/// Read a plain-old-data record from the start of `bytes`, None when too short.
fn read_record<T: aya::Pod>(bytes: &[u8]) -> Option<T> {
    if bytes.len() < std::mem::size_of::<T>() {
        return None;
    }
    // SAFETY: length checked; T is plain old data (aya::Pod: any bit pattern is valid);
    // read_unaligned copes with alignment.
    Some(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) })
}

/// One ring-buffer record as an event; an exit's RSS figures are judged exact or not by the
/// RSS generation current now (see `RssGeneration`).
pub fn decode(bytes: &[u8], rss_gen: &RssGeneration) -> Option<KernelEvent> {
    // Every record starts with its kind (u32); exits have a layout of their own.
    let kind = u32::from_ne_bytes(bytes.get(..4)?.try_into().ok()?);
    if kind == EVENT_EXIT {
        let ev: ExitEvent = read_record(bytes)?;
        return Some(KernelEvent::Exit {
            tgid: ev.tgid,
            comm: comm_from_bytes(&ev.stats.comm),
            t_mono: ev.ts_ns as f64 / 1e9,
            counters: (ev.has_stats == 1).then(|| {
                Box::new(crate::kernel::convert::counters(
                    &ev.stats,
                    rss_gen.is_exact(&ev.stats),
                ))
            }),
        });
    }
    if kind == EVENT_CGROUP {
        let ev: CgroupEvent = read_record(bytes)?;
        let end = ev
            .path
            .iter()
            .position(|b| *b == 0)
            .unwrap_or(ev.path.len());
        return Some(KernelEvent::Cgroup(CgroupChange {
            action: match ev.action {
                CGROUP_MKDIR => CgroupAction::Mkdir,
                CGROUP_RMDIR => CgroupAction::Rmdir,
                CGROUP_RELEASE => CgroupAction::Release,
                _ => return None,
            },
            id: ev.id,
            level: ev.level,
            path: String::from_utf8_lossy(&ev.path[..end]).into_owned(),
            hierarchy: ev.hierarchy,
            t_mono: ev.ts_ns as f64 / 1e9,
        }));
    }
    let ev: Event = read_record(bytes)?;
    let t_mono = ev.ts_ns as f64 / 1e9;
    Some(match ev.kind {
        EVENT_EXEC => KernelEvent::Exec {
            tgid: ev.tgid,
            comm: comm_from_bytes(&ev.comm),
            old_pid: ev.aux,
            t_mono,
        },
        EVENT_OOM_VICTIM => KernelEvent::OomVictim(OomVictim {
            pid: ev.tgid,
            comm: comm_from_bytes(&ev.comm),
            trigger_pid: ev.aux,
            trigger_comm: comm_from_bytes(&ev.trigger_comm),
            uid: ev.uid,
            total_vm_bytes: ev.oom_total_vm_kb * 1024,
            anon_rss_bytes: ev.oom_anon_rss_kb * 1024,
            file_rss_bytes: ev.oom_file_rss_kb * 1024,
            shmem_rss_bytes: ev.oom_shmem_rss_kb * 1024,
            pgtables_bytes: ev.oom_pgtables_kb * 1024,
            oom_score_adj: ev.oom_score_adj,
            t_mono,
        }),
        _ => return None,
    })
}

/// Asks the reader to drain the ring now; answered once everything in it is in the channel.
pub type FlushRequest = tokio::sync::oneshot::Sender<()>;

/// Forward ring-buffer events to a channel until the receiver goes away. A request on
/// `flush` drains the ring at once (the session's end: routine events are written without a
/// wake-up, so the last ones would otherwise wait for the timer, and be lost).
pub fn spawn_reader(
    ebpf: &mut aya::Ebpf,
    tx: tokio::sync::mpsc::Sender<KernelEvent>,
    mut flush: tokio::sync::mpsc::Receiver<FlushRequest>,
    rss_gen: RssGeneration,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let ring = RingBuf::try_from(ebpf.take_map("EVENTS").context("map EVENTS missing")?)?;
    // SAFETY: the AsyncFd owns the RingBuf, which owns the map fd: the fd outlives the
    // registration and is not closed behind tokio's back.
    let mut fd =
        unsafe { AsyncFd::register(ring) }.context("registering the ring buffer with tokio")?;
    log::debug!("ring buffer fd {}", fd.get_ref().as_raw_fd());
    Ok(tokio::spawn(async move {
        // Routine events (exec, exit) are written without waking us (it costs the traced
        // process microseconds per event), so besides readiness the ring is drained on a
        // short timer; urgent ones (OOM) and a filling ring do wake us.
        let mut tick = tokio::time::interval(DRAIN_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let mut batch = Vec::new();
            let mut ack = None;
            tokio::select! {
                Some(req) = flush.recv() => {
                    drain(fd.get_mut(), &rss_gen, &mut batch);
                    ack = Some(req);
                }
                guard = fd.readable_mut() => {
                    let mut guard = match guard {
                        Ok(g) => g,
                        Err(e) => {
                            log::error!("ring buffer poll failed: {e}");
                            return;
                        }
                    };
                    drain(guard.get_inner_mut(), &rss_gen, &mut batch);
                    guard.clear_ready();
                }
                _ = tick.tick() => drain(fd.get_mut(), &rss_gen, &mut batch),
            }
            for ev in batch {
                if tx.send(ev).await.is_err() {
                    return;
                }
            }
            if let Some(ack) = ack {
                let _ = ack.send(());
            }
        }
    }))
}

/// How often the ring is drained when nothing woke the reader.
const DRAIN_EVERY: std::time::Duration = std::time::Duration::from_millis(100);

fn drain(ring: &mut RingBuf<MapData>, rss_gen: &RssGeneration, batch: &mut Vec<KernelEvent>) {
    while let Some(item) = ring.next() {
        if let Some(ev) = decode(&item, rss_gen) {
            batch.push(ev);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes_of<T>(ev: &T) -> Vec<u8> {
        // SAFETY: the records are repr(C) plain old data.
        unsafe {
            std::slice::from_raw_parts((ev as *const T).cast::<u8>(), std::mem::size_of::<T>())
        }
        .to_vec()
    }

    #[test]
    fn decodes_exit_and_oom() {
        let generation = RssGeneration::default();
        let mut stats = tracer_common::ProcStats::default();
        stats.comm[..4].copy_from_slice(b"leak");
        stats.rss = [1, 2, 3, 4];
        stats.peak_private = 9;
        stats.calls[tracer_common::CALL_BRK] = 500;
        let ev = ExitEvent {
            kind: EVENT_EXIT,
            tgid: 42,
            ts_ns: 2_000_000_000,
            has_stats: 1,
            stats,
            ..ExitEvent::default()
        };
        match decode(&bytes_of(&ev), &generation) {
            Some(KernelEvent::Exit {
                tgid: 42,
                comm,
                counters: Some(c),
                t_mono,
            }) => {
                assert_eq!(comm, "leak");
                assert_eq!(
                    *c,
                    crate::kernel::convert::counters(&stats, false),
                    "the final counters, whole"
                );
                assert!((t_mono - 2.0).abs() < 1e-9);
            }
            other => panic!("unexpected {other:?}"),
        }
        let unknown = ExitEvent { has_stats: 0, ..ev };
        assert!(matches!(
            decode(&bytes_of(&unknown), &generation),
            Some(KernelEvent::Exit { counters: None, .. })
        ));
        // A record cut short is refused, not read past its end.
        assert_eq!(decode(&bytes_of(&ev)[..100], &generation), None);
        let oom = Event {
            kind: EVENT_OOM_VICTIM,
            tgid: 7,
            aux: 8,
            oom_anon_rss_kb: 65536,
            oom_score_adj: -500,
            ..Event::default()
        };
        let Some(KernelEvent::OomVictim(v)) = decode(&bytes_of(&oom), &generation) else {
            panic!()
        };
        assert_eq!(
            (v.pid, v.trigger_pid, v.anon_rss_bytes, v.oom_score_adj),
            (7, 8, 64 << 20, -500)
        );
    }

    #[test]
    fn rejects_short_or_unknown() {
        let generation = RssGeneration::default();
        assert_eq!(decode(&[0u8; 8], &generation), None);
        assert_eq!(decode(&[], &generation), None);
        let ev = Event {
            kind: 99,
            ..Event::default()
        };
        assert_eq!(decode(&bytes_of(&ev), &generation), None);
    }
}
