//! Processes that ended during the session, however briefly they lived. Every end is
//! counted; the largest (by peak private memory) are kept with their exact final counters,
//! in bounded memory, so `top` and `report` can name a crash-looping init that allocated
//! 2 GiB and died between two samples.
use serde::{Deserialize, Serialize};

use crate::{model::counters::Calls, util::format};

/// One ended process, as the views show it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EndedProcess {
    pub pid: u32,
    pub ppid: u32,
    pub comm: String,
    /// Session time of its end (seconds).
    pub ended_at_secs: f64,
    /// It lived and died between two sampling rounds: never sampled alive.
    pub brief: bool,
    /// Highest private memory (anon + shmem + swap) it reached.
    pub peak_private_bytes: u64,
    /// Private memory at its end.
    pub private_bytes: u64,
    /// Bytes it obtained through mmap, brk and mremap.
    pub alloc_bytes: u64,
    pub calls: Calls,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<String>,
}

/// Counts of every end, and the largest ends.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct EndedLog {
    /// Processes that ended while observed.
    pub count: u64,
    /// Of those, how many lived less than one sampling interval.
    pub brief: u64,
    /// The largest by peak private memory, largest first (at most [`EndedLog::KEEP`]).
    pub largest: Vec<EndedProcess>,
}

impl EndedLog {
    pub const KEEP: usize = 20;

    pub fn add(&mut self, e: EndedProcess) {
        self.count += 1;
        self.brief += u64::from(e.brief);
        if self.largest.len() == Self::KEEP
            && self
                .largest
                .last()
                .is_some_and(|l| l.peak_private_bytes >= e.peak_private_bytes)
        {
            return;
        }
        // Stable: among equal peaks the earlier end stays first.
        let at = self
            .largest
            .partition_point(|x| x.peak_private_bytes >= e.peak_private_bytes);
        self.largest.insert(at, e);
        self.largest.truncate(Self::KEEP);
    }

    /// The kept ends that `keep` accepts, largest first, at most `limit`.
    pub fn largest_matching(
        &self,
        limit: usize,
        mut keep: impl FnMut(&EndedProcess) -> bool,
    ) -> Vec<EndedProcess> {
        self.largest
            .iter()
            .filter(|e| keep(e))
            .take(limit)
            .cloned()
            .collect()
    }
}

/// A text block for `top --once` and `report`: a count line, then the largest ends.
pub fn render_text(log: &EndedLog, shown: &[EndedProcess]) -> String {
    let mut out = format!(
        "ENDED: {} processes ({} lived less than one interval)\n",
        log.count, log.brief
    );
    if shown.is_empty() {
        return out;
    }
    out.push_str(&format!(
        "{:>7} {:<16} {:>9} {:>9} {:>9} {:>8} {:>8} {:>8} {:>8}  LIVED\n",
        "PID", "COMMAND", "PEAK", "ALLOC", "AT END", "MMAP", "MUNMAP", "BRK", "MADVISE"
    ));
    for e in shown {
        out.push_str(&format!(
            "{:>7} {:<16} {:>9} {:>9} {:>9} {:>8} {:>8} {:>8} {:>8}  {}\n",
            e.pid,
            e.comm,
            format::bytes(e.peak_private_bytes as f64),
            format::bytes(e.alloc_bytes as f64),
            format::bytes(e.private_bytes as f64),
            e.calls.mmap,
            e.calls.munmap,
            e.calls.brk,
            e.calls.madvise,
            if e.brief {
                "< 1 interval".to_string()
            } else {
                format!("ended at +{}", format::duration(e.ended_at_secs))
            }
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ended(pid: u32, peak: u64, brief: bool) -> EndedProcess {
        EndedProcess {
            pid,
            ppid: 1,
            comm: format!("p{pid}"),
            ended_at_secs: 1.0,
            brief,
            peak_private_bytes: peak,
            private_bytes: 0,
            alloc_bytes: 0,
            calls: Calls::default(),
            cgroup: None,
        }
    }

    #[test]
    fn counts_every_end_and_keeps_the_largest_in_order() {
        let mut log = EndedLog::default();
        for pid in 0..1000u32 {
            // Peaks 0..999 in a scrambled order; pid 500 is the biggest by far.
            let peak = if pid == 500 {
                1 << 31
            } else {
                u64::from((pid * 7919) % 1000)
            };
            log.add(ended(pid, peak, pid % 2 == 0));
        }
        assert_eq!((log.count, log.brief), (1000, 500));
        assert_eq!(log.largest.len(), EndedLog::KEEP);
        assert_eq!(log.largest[0].pid, 500);
        assert!(
            log.largest
                .windows(2)
                .all(|w| w[0].peak_private_bytes >= w[1].peak_private_bytes),
            "largest first"
        );
        assert_eq!(log.largest[1].peak_private_bytes, 999);
        assert_eq!(log.largest[19].peak_private_bytes, 981);
        let odd = log.largest_matching(3, |e| e.pid % 2 == 1);
        assert_eq!(odd.len(), 3);
        assert!(odd.iter().all(|e| e.pid % 2 == 1));
    }

    #[test]
    fn renders_counts_even_when_nothing_is_shown() {
        let mut log = EndedLog::default();
        log.add(ended(7, 3 << 20, true));
        let text = render_text(&log, &[]);
        assert_eq!(
            text,
            "ENDED: 1 processes (1 lived less than one interval)\n"
        );
        let text = render_text(&log, &log.largest);
        assert!(
            text.contains("p7") && text.contains("< 1 interval"),
            "{text}"
        );
    }
}
