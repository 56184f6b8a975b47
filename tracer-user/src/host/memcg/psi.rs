//! PSI triggers (Documentation/accounting/psi.rst): the kernel wakes a poller with POLLPRI
//! when tasks stalled on memory for more than `stall` within a `window`, at most once per
//! window, so a quiet node costs nothing.
use std::{
    fs::{File, OpenOptions},
    io::Write,
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::bail;
use anyhow::{Context, Result};
use serde::Serialize;
use tokio::{
    io::{Interest, unix::AsyncFd},
    sync::mpsc,
};

use super::{event::MemcgEvent, parse::Psi, sys};

/// "some": at least one task stalled; "full": all non-idle tasks stalled at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StallKind {
    Some,
    Full,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PsiTrigger {
    pub kind: StallKind,
    pub stall: Duration,
    pub window: Duration,
}

impl PsiTrigger {
    /// The kernel accepts windows of 0.5-10 s and a stall of at most the window. Without
    /// CAP_SYS_RESOURCE the window must also be a multiple of 2 s (the kernel says EINVAL;
    /// the error then says so).
    pub fn new(kind: StallKind, stall: Duration, window: Duration) -> Result<Self> {
        if !(Duration::from_millis(500)..=Duration::from_secs(10)).contains(&window) {
            bail!("PSI trigger window {window:?} outside 500ms..=10s");
        }
        if stall.is_zero() || stall > window {
            bail!("PSI trigger stall {stall:?} must be > 0 and <= the window {window:?}");
        }
        Ok(Self {
            kind,
            stall,
            window,
        })
    }

    /// What is written to the pressure file: "some 150000 1000000" (microseconds).
    pub fn kernel_line(&self) -> String {
        let kind = match self.kind {
            StallKind::Some => "some",
            StallKind::Full => "full",
        };
        format!(
            "{kind} {} {}",
            self.stall.as_micros(),
            self.window.as_micros()
        )
    }
}

impl std::str::FromStr for PsiTrigger {
    type Err = String;

    /// `[some:|full:]STALL/WINDOW`, e.g. `150ms/1s` or `full:500ms/2s` (`--pressure-trigger`).
    fn from_str(s: &str) -> Result<Self, String> {
        const FORM: &str = "expected [some:|full:]STALL/WINDOW, e.g. 150ms/1s or full:500ms/2s";
        let s = s.trim();
        let (kind, rest) = match s.split_once(':') {
            Some(("some", r)) => (StallKind::Some, r),
            Some(("full", r)) => (StallKind::Full, r),
            Some((k, _)) => return Err(format!("unknown stall kind {k:?} (some or full); {FORM}")),
            None => (StallKind::Some, s),
        };
        let (stall, window) = rest.split_once('/').ok_or_else(|| FORM.to_owned())?;
        let duration = |d: &str| {
            humantime::parse_duration(d.trim()).map_err(|e| format!("{d:?}: {e}; {FORM}"))
        };
        Self::new(kind, duration(stall)?, duration(window)?).map_err(|e| e.to_string())
    }
}

impl Default for PsiTrigger {
    /// 15 % "some" stall: reclaim is costing the node real time. 150 ms within 1 s with
    /// CAP_SYS_RESOURCE, else 300 ms within 2 s (the shortest window allowed without it).
    fn default() -> Self {
        let window = if sys::has_cap_sys_resource() {
            1000
        } else {
            2000
        };
        Self {
            kind: StallKind::Some,
            stall: Duration::from_millis(window * 15 / 100),
            window: Duration::from_millis(window),
        }
    }
}

/// A pressure file with a trigger written into it. The trigger lives as long as the fd.
pub struct ArmedTrigger {
    fd: AsyncFd<File>,
    path: PathBuf,
    line: String,
}

/// Open `path` (/proc/pressure/memory or a v2 cgroup's memory.pressure) read-write, write
/// the trigger, and register the fd for priority readiness. Needs a tokio runtime.
pub fn arm(path: &Path, trigger: &PsiTrigger) -> Result<ArmedTrigger> {
    let line = trigger.kernel_line();
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .with_context(|| format!("opening {} read-write for a PSI trigger", path.display()))?;
    // One write() per trigger, NUL-terminated as in the kernel's example.
    f.write_all(format!("{line}\0").as_bytes())
        .with_context(|| {
            let why = if !trigger.window.as_millis().is_multiple_of(2000)
                && !sys::has_cap_sys_resource()
            {
                "this process lacks CAP_SYS_RESOURCE (root in a container often does), so the \
             window must be a multiple of 2 s"
            } else {
                "the window must be 0.5-10 s and the stall at most the window"
            };
            format!("writing PSI trigger {line:?} to {}: {why}", path.display())
        })?;
    let fd = sys::async_fd(f, Interest::PRIORITY)
        .with_context(|| format!("registering {} with the tokio reactor", path.display()))?;
    Ok(ArmedTrigger {
        fd,
        path: path.to_owned(),
        line,
    })
}

impl ArmedTrigger {
    pub fn line(&self) -> &str {
        &self.line
    }

    /// Wait for the trigger and send a `Pressure` event each time it fires, with the
    /// averages read from the file then. Ends when the receiver is gone or, for a cgroup
    /// (`cgroup_dir` set), when the cgroup is removed: the kernel then destroys the trigger
    /// and reports POLLERR/POLLHUP.
    pub async fn run(
        self,
        scope: String,
        cgroup_dir: Option<PathBuf>,
        tx: mpsc::Sender<MemcgEvent>,
    ) {
        loop {
            let guard = tokio::select! {
                g = self.fd.ready(Interest::PRIORITY) => g,
                _ = tx.closed() => return,
            };
            let mut guard = match guard {
                Ok(g) => g,
                Err(e) => {
                    log::warn!("PSI trigger on {}: {e}", self.path.display());
                    return;
                }
            };
            let ready = guard.ready();
            // Edge-triggered: the kernel consumed the event when epoll polled it, so
            // clearing tokio's copy cannot lose a later one.
            guard.clear_ready();
            if cgroup_dir.as_ref().is_some_and(|d| !d.exists()) {
                log::debug!("PSI watch of {scope} ends: cgroup removed");
                return;
            }
            if ready.is_read_closed() || ready.is_error() {
                log::warn!(
                    "PSI trigger on {} was closed by the kernel",
                    self.path.display()
                );
                return;
            }
            let psi = match std::fs::read_to_string(&self.path)
                .with_context(|| format!("reading {}", self.path.display()))
                .and_then(|t| {
                    Psi::parse(&t).with_context(|| format!("parsing {}", self.path.display()))
                }) {
                Ok(p) => p,
                Err(e) => {
                    log::warn!("{e:#}");
                    continue;
                }
            };
            let ev = MemcgEvent::pressure(scope.clone(), self.line.clone(), &psi);
            if tx.send(ev).await.is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trigger_lines() {
        let d = PsiTrigger::default().kernel_line();
        assert!(
            d == "some 150000 1000000" || d == "some 300000 2000000",
            "{d}"
        );
        let t = PsiTrigger::new(
            StallKind::Full,
            Duration::from_millis(500),
            Duration::from_secs(2),
        )
        .unwrap();
        assert_eq!(t.kernel_line(), "full 500000 2000000");
        assert!(
            PsiTrigger::new(
                StallKind::Some,
                Duration::from_millis(1),
                Duration::from_millis(100)
            )
            .is_err()
        );
        assert!(
            PsiTrigger::new(
                StallKind::Some,
                Duration::from_secs(3),
                Duration::from_secs(2)
            )
            .is_err()
        );
        assert!(PsiTrigger::new(StallKind::Some, Duration::ZERO, Duration::from_secs(2)).is_err());
        assert!(
            PsiTrigger::new(
                StallKind::Some,
                Duration::from_secs(1),
                Duration::from_secs(11)
            )
            .is_err()
        );
    }

    #[test]
    fn triggers_from_the_command_line() {
        let line = |s: &str| s.parse::<PsiTrigger>().map(|t| t.kernel_line());
        assert_eq!(line("150ms/1s").as_deref(), Ok("some 150000 1000000"));
        assert_eq!(line("some:20ms/2s").as_deref(), Ok("some 20000 2000000"));
        assert_eq!(
            line(" full:500ms/2s ").as_deref(),
            Ok("full 500000 2000000")
        );
        for bad in [
            "",
            "150ms",
            "half:1s/2s",
            "1s/100ms",
            "3s/2s",
            "soon/2s",
            "0s/2s",
        ] {
            assert!(line(bad).is_err(), "{bad:?} accepted");
        }
    }
}
