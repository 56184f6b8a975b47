//! Growth profiles captured on their own: when a process is judged leaking, the daemon
//! profiles it (the capture `leaktracer profile` makes) for a few seconds, keeps the last few
//! profiles in memory, writes a `growth_profile` line with its top sites on stdout, and
//! serves them at `/debug/pprof/leaks` (the list, JSON) and `/debug/pprof/leaks/ID` (pprof).
//! Bounded: one capture at a time (shared with the on-demand endpoint), a process at most
//! once an hour, at most `keep` profiles of at most [`MAX_PROFILE_BYTES`] each, at most
//! [`MAX_PENDING`] waiting. And kept within the overhead budget: while the session's budget
//! has a hook paused (or its programs use more than half the budget) no capture starts. A
//! capture's own programs are priced with the session's (kernel/priced.rs, as the `stacks`
//! hook, paused first): when the budget pauses any hook, the one running stops early
//! (keeping what it sampled).
use std::{
    collections::{HashMap, VecDeque},
    io::Write as _,
    path::PathBuf,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use axum::{
    extract::Path,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::Serialize;

use crate::{
    commands::profile::{self, Targets, pprof},
    model::growth::Site,
    util::clock,
};

/// Profiles larger than this (gzipped) are not kept (counted as failed).
pub const MAX_PROFILE_BYTES: usize = 4 << 20;
/// Leaking processes waiting for their capture at most (more are skipped, counted).
pub const MAX_PENDING: usize = 16;
/// A process is captured again at most this often.
const AGAIN_AFTER: Duration = Duration::from_secs(3600);
/// Sites named in the stdout line and the list.
const SITES: usize = 5;

#[derive(Clone, Debug)]
pub struct AutoConfig {
    /// Profiles kept (0: automatic capture off).
    pub keep: usize,
    pub seconds: u64,
    /// Mean bytes per sample.
    pub rate: u64,
}

/// A kept profile, as the list shows it.
#[derive(Clone, Debug, Serialize)]
pub struct Captured {
    pub id: u64,
    pub pid: u32,
    pub comm: String,
    /// Why it was captured: the verdict's reason.
    pub reason: String,
    pub captured_at: String,
    pub seconds: u64,
    pub mean_bytes: u64,
    pub samples: u64,
    pub sites: Vec<Site>,
    /// Stopped before `seconds` because the overhead budget paused a hook (a storm).
    pub cut_short: bool,
    /// Where the pprof file is served.
    pub url: String,
    #[serde(skip)]
    pprof: Vec<u8>,
}

/// Outcomes, for the metric.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Captured,
    Failed,
    /// A leaking process not captured: too many waiting.
    Skipped,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Captured => "captured",
            Outcome::Failed => "failed",
            Outcome::Skipped => "skipped",
        }
    }
}

struct Pending {
    pid: u32,
    comm: String,
    reason: String,
}

/// The kept profiles, shared by the sink (which captures) and the server (which serves).
#[derive(Default)]
pub struct Store {
    kept: VecDeque<Captured>,
    next_id: u64,
}

impl Store {
    fn push(&mut self, keep: usize, mut c: Captured) {
        self.next_id += 1;
        c.id = self.next_id;
        c.url = format!("/debug/pprof/leaks/{}", c.id);
        self.kept.push_back(c);
        while self.kept.len() > keep {
            self.kept.pop_front();
        }
    }
}

pub struct AutoProfiler {
    cfg: AutoConfig,
    host_root: PathBuf,
    /// Set while any capture runs (shared with `/debug/pprof/growth`).
    busy: Arc<AtomicBool>,
    store: Arc<Mutex<Store>>,
    pending: VecDeque<Pending>,
    last_captured: HashMap<u32, Instant>,
    /// Outcomes the sink has not yet added to the metric (the capture task adds to it).
    outcomes: Arc<Mutex<Vec<Outcome>>>,
    /// The budget has a hook paused: a running capture stops (set by the sink every round).
    storm: Arc<AtomicBool>,
    /// A storm, or the programs over half the budget: no capture starts.
    crowded: bool,
}

impl AutoProfiler {
    pub fn new(
        cfg: AutoConfig,
        host_root: PathBuf,
        busy: Arc<AtomicBool>,
        store: Arc<Mutex<Store>>,
    ) -> Self {
        Self {
            cfg,
            host_root,
            busy,
            store,
            pending: VecDeque::new(),
            last_captured: HashMap::new(),
            outcomes: Arc::default(),
            storm: Arc::default(),
            crowded: false,
        }
    }

    /// The session's overhead at this round: a paused hook, or programs using more than half
    /// the budget, hold captures off; a paused hook stops a running one (whose own programs
    /// are in the share: a capture within the budget runs on).
    pub fn overhead(&mut self, o: &crate::kernel::budget::OverheadStatus) {
        let busy_programs = o.budget > 0.0 && o.bpf_cpu_share.is_some_and(|s| s > o.budget / 2.0);
        let storm = !o.paused.is_empty();
        self.storm.store(storm, Ordering::Release);
        self.crowded = storm || busy_programs;
    }

    /// A process was judged leaking: capture it when the capture slot is free (unless it was
    /// captured within the hour).
    pub fn leaking(&mut self, pid: u32, comm: &str, reason: &str) {
        if self.cfg.keep == 0
            || self.pending.iter().any(|p| p.pid == pid)
            || self
                .last_captured
                .get(&pid)
                .is_some_and(|t| t.elapsed() < AGAIN_AFTER)
        {
            return;
        }
        if self.pending.len() >= MAX_PENDING {
            self.record(Outcome::Skipped);
            return;
        }
        self.pending.push_back(Pending {
            pid,
            comm: comm.to_string(),
            reason: reason.to_string(),
        });
    }

    /// Each round: start the next capture if the slot is free; `alive` says whether a
    /// waiting process still runs. Returns the outcomes since the last call (for metrics).
    pub fn tick(&mut self, alive: impl Fn(u32) -> bool, t0_mono: f64) -> Vec<Outcome> {
        self.last_captured.retain(|_, t| t.elapsed() < AGAIN_AFTER);
        while let Some(p) = self.pending.front() {
            if alive(p.pid) {
                break;
            }
            self.pending.pop_front();
        }
        if !self.crowded && !self.pending.is_empty() && !self.busy.swap(true, Ordering::AcqRel) {
            if let Some(p) = self.pending.pop_front() {
                self.last_captured.insert(p.pid, Instant::now());
                self.spawn(p, t0_mono);
            } else {
                self.busy.store(false, Ordering::Release);
            }
        }
        self.outcomes
            .lock()
            .map(|mut o| std::mem::take(&mut *o))
            .unwrap_or_default()
    }

    fn record(&self, o: Outcome) {
        if let Ok(mut v) = self.outcomes.lock() {
            v.push(o);
        }
    }

    fn spawn(&self, p: Pending, t0_mono: f64) {
        let (cfg, root) = (self.cfg.clone(), self.host_root.clone());
        let (busy, store, outcomes, storm) = (
            self.busy.clone(),
            self.store.clone(),
            self.outcomes.clone(),
            self.storm.clone(),
        );
        tokio::spawn(async move {
            let started = clock::unix_millis();
            let begun = Instant::now();
            let targets = Targets {
                pids: vec![p.pid],
                ..Targets::default()
            };
            let storm_begins = async move {
                while !storm.load(Ordering::Acquire) {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            };
            let result = profile::capture(
                &root,
                &targets,
                Duration::from_secs(cfg.seconds),
                cfg.rate,
                storm_begins,
            )
            .await
            .and_then(|(prof, _)| Ok((pprof::gzipped(&prof)?, prof)));
            let cut_short =
                begun.elapsed() + Duration::from_millis(500) < Duration::from_secs(cfg.seconds);
            busy.store(false, Ordering::Release);
            let outcome = match result {
                Ok((bytes, _)) if bytes.len() > MAX_PROFILE_BYTES => {
                    log::warn!(
                        "growth profile of pid {} not kept: {} bytes (at most {MAX_PROFILE_BYTES})",
                        p.pid,
                        bytes.len()
                    );
                    Outcome::Failed
                }
                Ok((bytes, prof)) => {
                    let captured = Captured {
                        id: 0,
                        pid: p.pid,
                        comm: p.comm,
                        reason: p.reason,
                        captured_at: clock::rfc3339(started),
                        seconds: cfg.seconds,
                        mean_bytes: cfg.rate,
                        samples: prof.total_samples(),
                        sites: prof.top_sites(SITES),
                        cut_short,
                        url: String::new(),
                        pprof: bytes,
                    };
                    let line = store.lock().ok().and_then(|mut s| {
                        s.push(cfg.keep, captured);
                        s.kept.back().map(|c| event_line(c, t0_mono))
                    });
                    if let Some(line) = line {
                        let mut out = std::io::stdout().lock();
                        let _ = writeln!(out, "{line}");
                        let _ = out.flush();
                    }
                    Outcome::Captured
                }
                Err(e) => {
                    log::warn!("growth profile of pid {}: {e:#}", p.pid);
                    Outcome::Failed
                }
            };
            if let Ok(mut v) = outcomes.lock() {
                v.push(outcome);
            }
        });
    }
}

/// The stdout line of a kept profile (a JSON object like the daemon's other events).
fn event_line(c: &Captured, t0_mono: f64) -> String {
    let mut v = serde_json::to_value(c).unwrap_or_default();
    if let Some(o) = v.as_object_mut() {
        o.insert("type".into(), "growth_profile".into());
        o.insert(
            "t".into(),
            clock::round_ms(clock::monotonic_secs() - t0_mono).into(),
        );
    }
    v.to_string()
}

/// `GET /debug/pprof/leaks`: the kept profiles, newest last.
pub async fn list(store: Arc<Mutex<Store>>) -> Response {
    let body = store
        .lock()
        .map(|s| serde_json::to_string_pretty(&s.kept).unwrap_or_default())
        .unwrap_or_default();
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// `GET /debug/pprof/leaks/ID`: one kept profile (gzipped pprof), 404 once it is gone.
pub async fn one(store: Arc<Mutex<Store>>, Path(id): Path<u64>) -> Response {
    let found = store.lock().ok().and_then(|s| {
        s.kept
            .iter()
            .find(|c| c.id == id)
            .map(|c| (c.pid, c.pprof.clone()))
    });
    match found {
        Some((pid, bytes)) => {
            super::growth_profile::pprof_response(&format!("growth-{pid}-{id}.pb.gz"), bytes)
        }
        None => (
            StatusCode::NOT_FOUND,
            format!("no kept growth profile {id} (see /debug/pprof/leaks)\n"),
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn captured(pid: u32) -> Captured {
        Captured {
            id: 0,
            pid,
            comm: "x".into(),
            reason: String::new(),
            captured_at: String::new(),
            seconds: 1,
            mean_bytes: 1,
            samples: 0,
            sites: Vec::new(),
            cut_short: false,
            url: String::new(),
            pprof: Vec::new(),
        }
    }

    #[test]
    fn the_store_keeps_the_newest_with_their_urls() {
        let mut s = Store::default();
        for pid in 1..=5 {
            s.push(3, captured(pid));
        }
        let pids: Vec<u32> = s.kept.iter().map(|c| c.pid).collect();
        assert_eq!(pids, [3, 4, 5]);
        assert_eq!(s.kept[2].url, "/debug/pprof/leaks/5");
    }

    #[test]
    fn a_leaking_process_waits_once_and_too_many_are_skipped() {
        let mut a = AutoProfiler::new(
            AutoConfig {
                keep: 4,
                seconds: 1,
                rate: 1 << 19,
            },
            PathBuf::from("/"),
            Arc::new(AtomicBool::new(true)), // busy: nothing starts
            Arc::default(),
        );
        a.leaking(1, "a", "r");
        a.leaking(1, "a", "r");
        assert_eq!(a.pending.len(), 1, "one wait per process");
        for pid in 2..=(MAX_PENDING as u32 + 3) {
            a.leaking(pid, "b", "r");
        }
        assert_eq!(a.pending.len(), MAX_PENDING);
        // Gone processes leave the queue; the slot is busy, so nothing starts.
        let out = a.tick(|pid| pid != 1, 0.0);
        assert_eq!(out.iter().filter(|o| **o == Outcome::Skipped).count(), 3);
        assert_eq!(a.pending.front().map(|p| p.pid), Some(2));
        // A storm holds captures off: nothing starts even with the slot free.
        let mut held = AutoProfiler::new(
            AutoConfig {
                keep: 4,
                seconds: 1,
                rate: 1 << 19,
            },
            PathBuf::from("/"),
            Arc::default(),
            Arc::default(),
        );
        held.overhead(&crate::kernel::budget::OverheadStatus {
            bpf_cpu_share: Some(0.001),
            budget: 0.01,
            paused: vec![crate::kernel::budget::Hook::Madvise],
            rss_from_proc: 0,
        });
        held.leaking(7, "a", "r");
        held.tick(|_| true, 0.0);
        assert_eq!(held.pending.len(), 1, "still waiting");
        assert!(!held.busy.load(Ordering::Acquire), "no capture started");
        held.overhead(&crate::kernel::budget::OverheadStatus {
            bpf_cpu_share: Some(0.006),
            budget: 0.01,
            paused: Vec::new(),
            rss_from_proc: 0,
        });
        assert!(held.crowded, "over half the budget holds off too");
        assert!(
            !held.storm.load(Ordering::Acquire),
            "but stops no capture: within the budget, its own cost among the rest"
        );
        // Off: nothing waits.
        let mut off = AutoProfiler::new(
            AutoConfig {
                keep: 0,
                seconds: 1,
                rate: 1,
            },
            PathBuf::from("/"),
            Arc::default(),
            Arc::default(),
        );
        off.leaking(1, "a", "r");
        assert!(off.pending.is_empty());
    }
}
