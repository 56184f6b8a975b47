//! Memory-cgroup events, event-driven (no polling loops):
//! - cgroup v1: an eventfd registered through `cgroup.event_control` on `memory.oom_control`
//!   fires when the cgroup hits OOM; then `memory.oom_control` (oom_kill count) and
//!   `memory.failcnt` are read.
//! - cgroup v2: inotify on `memory.events` (modified on every counter change); the file is
//!   re-read and the counters that rose are reported.
//! - node memory pressure: a PSI trigger on /proc/pressure/memory (POLLPRI when stalls exceed
//!   the threshold within the window).
//!
//! Watches are bounded (`MAX_WATCHES`); a cgroup that disappears ends its watch quietly.
use std::{
    collections::HashSet,
    io::{Read as _, Write as _},
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use tokio::{io::unix::AsyncFd, sync::mpsc};

use super::CgroupRoots;

const MAX_WATCHES: usize = 512;

/// One memory-cgroup or pressure event, as written to traces and stdout.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum MemcgEvent {
    /// v1: the cgroup hit its limit and the OOM killer ran (or would have).
    Oom {
        cgroup: String,
        oom_kill_total: Option<u64>,
        failcnt: Option<u64>,
        usage_bytes: Option<u64>,
        limit_bytes: Option<u64>,
    },
    /// v2: counters of memory.events that rose (name -> new total).
    Events {
        cgroup: String,
        rose: Vec<(String, u64, u64)>,
    },
    /// Node memory pressure crossed the trigger (PSI averages, percent).
    Pressure { some_avg10: f64, full_avg10: f64 },
}

impl MemcgEvent {
    /// (cgroup, event name, count) pairs for counters.
    pub fn counts(&self) -> Vec<(String, String, u64)> {
        match self {
            Self::Oom { cgroup, .. } => vec![(cgroup.clone(), "oom".into(), 1)],
            Self::Events { cgroup, rose } => rose
                .iter()
                .map(|(k, before, now)| (cgroup.clone(), k.clone(), now.saturating_sub(*before)))
                .collect(),
            Self::Pressure { .. } => vec![(String::new(), "pressure".into(), 1)],
        }
    }
}

/// Parse `memory.events` (v2) into (name, value) pairs; unknown keys are kept.
pub fn parse_events(text: &str) -> Vec<(String, u64)> {
    text.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((k.to_string(), v.trim().parse().ok()?))
        })
        .collect()
}

/// `oom_kill N` of v1 `memory.oom_control`.
pub fn parse_oom_control_kills(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix("oom_kill "))
        .and_then(|v| v.trim().parse().ok())
}

/// avg10 of the `some` and `full` lines of a PSI file.
pub fn parse_psi(text: &str) -> (f64, f64) {
    let avg10 = |prefix: &str| {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.split_whitespace().find_map(|f| f.strip_prefix("avg10=")))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    };
    (avg10("some"), avg10("full"))
}

#[derive(Clone)]
pub struct Watcher {
    roots: CgroupRoots,
    tx: mpsc::Sender<MemcgEvent>,
    watched: Arc<Mutex<HashSet<String>>>,
}

impl Watcher {
    pub fn new(roots: CgroupRoots, tx: mpsc::Sender<MemcgEvent>) -> Self {
        Self {
            roots,
            tx,
            watched: Arc::new(Mutex::new(HashSet::new())),
        }
    }

    /// Watch a memory cgroup (idempotent, bounded). Errors are logged, not fatal: events are
    /// an addition to the kernel-side OOM records, not a replacement.
    pub fn watch(&self, cgroup: &str) {
        {
            let Ok(mut w) = self.watched.lock() else {
                return;
            };
            if w.contains(cgroup) || w.len() >= MAX_WATCHES {
                return;
            }
            w.insert(cgroup.to_string());
        }
        let result = if let Some(dir) = self.roots.v1_dir(cgroup) {
            self.watch_v1(cgroup.to_string(), dir)
        } else if let Some(dir) = self.roots.v2_dir(cgroup) {
            self.watch_v2(cgroup.to_string(), dir)
        } else {
            Ok(())
        };
        if let Err(e) = result {
            log::debug!("not watching memory cgroup {cgroup}: {e:#}");
        }
    }

    fn forget(watched: &Arc<Mutex<HashSet<String>>>, cgroup: &str) {
        if let Ok(mut w) = watched.lock() {
            w.remove(cgroup);
        }
    }

    fn watch_v1(&self, cgroup: String, dir: PathBuf) -> anyhow::Result<()> {
        // SAFETY: plain syscall; the result is checked and owned right away.
        let efd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        anyhow::ensure!(efd >= 0, "eventfd: {}", std::io::Error::last_os_error());
        // SAFETY: efd is a fresh descriptor we own.
        let efd = unsafe { OwnedFd::from_raw_fd(efd) };
        let oom_control =
            std::fs::File::open(dir.join("memory.oom_control")).context("memory.oom_control")?;
        std::fs::OpenOptions::new()
            .write(true)
            .open(dir.join("cgroup.event_control"))
            .and_then(|mut f| {
                f.write_all(format!("{} {}", efd.as_raw_fd(), oom_control.as_raw_fd()).as_bytes())
            })
            .context("registering with cgroup.event_control")?;
        let file = std::fs::File::from(efd);
        // SAFETY: the AsyncFd owns the eventfd file for the registration's lifetime.
        let mut afd = unsafe { AsyncFd::register(file) }.context("registering the eventfd")?;
        let (tx, roots, watched) = (self.tx.clone(), self.roots.clone(), self.watched.clone());
        tokio::spawn(async move {
            let _keep = oom_control; // the registration lives as long as this fd
            loop {
                let Ok(mut guard) = afd.readable_mut().await else {
                    break;
                };
                let mut buf = [0u8; 8];
                match guard.get_inner_mut().read(&mut buf) {
                    Ok(8) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        guard.clear_ready();
                        continue;
                    }
                    _ => break,
                }
                guard.clear_ready();
                // The eventfd also fires when the cgroup is removed.
                if !dir.exists() {
                    break;
                }
                // The notification comes as the OOM starts; give the killer a moment so the
                // oom_kill count read below includes this kill.
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                let ev = MemcgEvent::Oom {
                    cgroup: cgroup.clone(),
                    oom_kill_total: std::fs::read_to_string(dir.join("memory.oom_control"))
                        .ok()
                        .and_then(|t| parse_oom_control_kills(&t)),
                    failcnt: std::fs::read_to_string(dir.join("memory.failcnt"))
                        .ok()
                        .and_then(|t| t.trim().parse().ok()),
                    usage_bytes: roots.usage_of(&cgroup),
                    limit_bytes: roots.own_limit(&cgroup),
                };
                if tx.send(ev).await.is_err() {
                    break;
                }
            }
            Self::forget(&watched, &cgroup);
        });
        Ok(())
    }

    fn watch_v2(&self, cgroup: String, dir: PathBuf) -> anyhow::Result<()> {
        let events = dir.join("memory.events");
        // SAFETY: plain syscalls; results checked.
        let ifd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        anyhow::ensure!(
            ifd >= 0,
            "inotify_init1: {}",
            std::io::Error::last_os_error()
        );
        // SAFETY: ifd is a fresh descriptor we own.
        let ifd = unsafe { OwnedFd::from_raw_fd(ifd) };
        let cpath =
            std::ffi::CString::new(events.as_os_str().as_encoded_bytes()).context("path")?;
        // SAFETY: valid fd and NUL-terminated path.
        let wd =
            unsafe { libc::inotify_add_watch(ifd.as_raw_fd(), cpath.as_ptr(), libc::IN_MODIFY) };
        anyhow::ensure!(
            wd >= 0,
            "inotify_add_watch {}: {}",
            events.display(),
            std::io::Error::last_os_error()
        );
        let mut last = parse_events(&std::fs::read_to_string(&events).unwrap_or_default());
        let file = std::fs::File::from(ifd);
        // SAFETY: the AsyncFd owns the inotify file.
        let mut afd = unsafe { AsyncFd::register(file) }.context("registering inotify")?;
        let (tx, watched) = (self.tx.clone(), self.watched.clone());
        tokio::spawn(async move {
            loop {
                let Ok(mut guard) = afd.readable_mut().await else {
                    break;
                };
                let mut buf = [0u8; 4096];
                loop {
                    match guard.get_inner_mut().read(&mut buf) {
                        Ok(n) if n > 0 => continue,
                        _ => break,
                    }
                }
                guard.clear_ready();
                let Ok(text) = std::fs::read_to_string(&events) else {
                    break;
                };
                let now = parse_events(&text);
                let rose: Vec<(String, u64, u64)> = now
                    .iter()
                    .filter_map(|(k, v)| {
                        let before = last.iter().find(|(lk, _)| lk == k).map_or(0, |x| x.1);
                        (*v > before).then(|| (k.clone(), before, *v))
                    })
                    .collect();
                last = now;
                if !rose.is_empty()
                    && tx
                        .send(MemcgEvent::Events {
                            cgroup: cgroup.clone(),
                            rose,
                        })
                        .await
                        .is_err()
                {
                    break;
                }
            }
            Self::forget(&watched, &cgroup);
        });
        Ok(())
    }

    /// Arm a PSI trigger on node memory pressure: tasks stalled on memory for 300 ms within
    /// a 2 s window (15%). Windows must be multiples of 2 s without CAP_SYS_RESOURCE, which
    /// container runtimes often drop, so 2 s works everywhere.
    pub fn watch_pressure(&self, host_root: &Path) -> anyhow::Result<()> {
        let path = host_root.join("proc/pressure/memory");
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        f.write_all(b"some 300000 2000000\0")
            .with_context(|| format!("arming a PSI trigger on {}", path.display()))?;
        // SAFETY: the AsyncFd owns the file.
        let afd = unsafe { AsyncFd::register_with_interest(f, tokio::io::Interest::PRIORITY) }
            .context("registering PSI")?;
        let tx = self.tx.clone();
        tokio::spawn(async move {
            let mut afd = afd;
            loop {
                let Ok(mut guard) = afd.ready_mut(tokio::io::Interest::PRIORITY).await else {
                    break;
                };
                guard.clear_ready();
                let (some, full) = parse_psi(&std::fs::read_to_string(&path).unwrap_or_default());
                if tx
                    .send(MemcgEvent::Pressure {
                        some_avg10: some,
                        full_avg10: full,
                    })
                    .await
                    .is_err()
                {
                    break;
                }
                // A trigger fires at most once per window; avoid a storm of identical reports.
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_memory_events_v2() {
        let t = "low 0\nhigh 3\nmax 12\noom 1\noom_kill 1\noom_group_kill 0\n";
        let e = parse_events(t);
        assert_eq!(e.len(), 6);
        assert_eq!(e[2], ("max".to_string(), 12));
        assert!(parse_events("garbage\n\nx y\n").is_empty());
    }

    #[test]
    fn parses_oom_control_v1() {
        // Real content from this machine's v1 hierarchy.
        assert_eq!(
            parse_oom_control_kills("oom_kill_disable 0\nunder_oom 0\noom_kill 3\n"),
            Some(3)
        );
        assert_eq!(
            parse_oom_control_kills("oom_kill_disable 0\nunder_oom 0\n"),
            None
        );
    }

    #[test]
    fn parses_psi() {
        let t = "some avg10=1.50 avg60=0.20 avg300=0.05 total=123456\nfull avg10=0.75 avg60=0.10 avg300=0.00 total=6543\n";
        assert_eq!(parse_psi(t), (1.5, 0.75));
        assert_eq!(parse_psi(""), (0.0, 0.0));
    }
}
