//! Event-driven watchers on memory cgroups: the kernel wakes us, nothing polls.
//!
//! - v1: an eventfd registered through `cgroup.event_control` on `memory.oom_control` fires
//!   when the cgroup enters OOM (and, optionally, one on `memory.usage_in_bytes` when usage
//!   crosses a threshold). One small task per cgroup.
//! - v2: inotify IN_MODIFY on `memory.events` (kernfs notifies on every counter change, at
//!   most every 20 ms per file). One inotify instance and one task for all cgroups, because
//!   inotify instances are scarce (fs.inotify.max_user_instances is 128 by default, shared
//!   with kubelet and the runtimes).
//! - PSI: triggers on /proc/pressure/memory and, on v2, a cgroup's memory.pressure.
use std::{
    collections::{BTreeSet, HashMap},
    fs::{File, OpenOptions},
    io::{self, Read, Write},
    os::fd::AsRawFd,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use tokio::{
    io::{Interest, unix::AsyncFd},
    runtime::Handle,
    sync::mpsc,
    task::JoinHandle,
};

use super::{
    event::{MemcgEvent, unix_ms},
    limits::{CgroupRoots, CgroupVersion, effective_limit, normalize, read_u64},
    parse::{MemoryEvents, OomControl, diff},
    psi::{self, PsiTrigger},
    sys,
};

/// The v1 OOM notification comes as the OOM starts, before the killer has logged its report
/// (slow on a serial console) and counted its victim: wait this long at most for oom_kill to
/// move (it may not: killer disabled, or the OOM resolved by an exiting task).
const OOM_SETTLE: Duration = Duration::from_secs(1);

#[derive(Clone, Debug)]
pub struct WatchConfig {
    /// At most this many cgroups are watched; watching one more evicts first the watches
    /// whose cgroup is gone, then the least recently (re-)watched.
    pub max_watched: usize,
    /// v1: also report when usage crosses this fraction of the cgroup's effective limit
    /// (only when a cgroup limit applies; the threshold is on this cgroup's usage, so with
    /// the limit on an ancestor it fires no later than the ancestor reaches it).
    pub usage_threshold: Option<f64>,
    /// v2: also arm this PSI trigger on each watched cgroup's memory.pressure.
    pub cgroup_psi: Option<PsiTrigger>,
}

impl Default for WatchConfig {
    fn default() -> Self {
        Self {
            max_watched: 256,
            usage_threshold: Some(0.9),
            cgroup_psi: None,
        }
    }
}

/// Watches memory cgroups and sends [`MemcgEvent`]s. Its methods must be called inside a
/// tokio runtime with IO and time enabled; dropping it stops every watch.
pub struct MemcgWatcher {
    roots: CgroupRoots,
    tx: mpsc::Sender<MemcgEvent>,
    cfg: WatchConfig,
    watched: HashMap<String, Watched>,
    /// Logical clock for least-recently-used eviction.
    clock: u64,
    v2: Option<V2Notifier>,
    node_psi: Vec<JoinHandle<()>>,
}

struct Watched {
    last_used: u64,
    /// v1: the task owning the eventfds (finished when the cgroup is removed).
    v1_task: Option<JoinHandle<()>>,
    /// v2: the inotify watch descriptor of memory.events.
    v2_wd: Option<i32>,
    psi_task: Option<JoinHandle<()>>,
}

/// The shared v2 inotify instance and what each of its watch descriptors stands for.
struct V2Notifier {
    inotify: Arc<AsyncFd<File>>,
    entries: Arc<Mutex<HashMap<i32, V2Entry>>>,
    task: JoinHandle<()>,
}

struct V2Entry {
    cgroup: String,
    dir: PathBuf,
    /// Inode of the watched memory.events.
    ino: u64,
    prev: MemoryEvents,
}

/// Lock the v2 watches. A poisoned lock only means a holder panicked between two whole map
/// operations (a HashMap stays consistent across a panic): keep using it rather than take
/// the watcher down with it.
fn lock_entries(entries: &Mutex<HashMap<i32, V2Entry>>) -> MutexGuard<'_, HashMap<i32, V2Entry>> {
    entries.lock().unwrap_or_else(PoisonError::into_inner)
}

fn inode(p: &Path) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(p).ok().map(|m| m.ino())
}

impl MemcgWatcher {
    /// A watcher with the default [`WatchConfig`].
    pub fn new(roots: CgroupRoots, tx: mpsc::Sender<MemcgEvent>) -> Self {
        Self::with_config(roots, tx, WatchConfig::default())
    }

    pub fn with_config(roots: CgroupRoots, tx: mpsc::Sender<MemcgEvent>, cfg: WatchConfig) -> Self {
        Self {
            roots,
            tx,
            cfg,
            watched: HashMap::new(),
            clock: 0,
            v2: None,
            node_psi: Vec::new(),
        }
    }

    /// Start watching a memory cgroup (path as in /proc/PID/cgroup). Watching a cgroup
    /// already watched only marks it as recently used; one whose watch ended (the cgroup was
    /// removed, and maybe created again) is watched afresh.
    pub fn watch(&mut self, memcg_path: &str) -> Result<()> {
        let key = normalize(memcg_path);
        self.clock += 1;
        match self.watched.get(&key).map(|w| self.alive(w)) {
            Some(true) => {
                if let Some(w) = self.watched.get_mut(&key) {
                    w.last_used = self.clock;
                }
                return Ok(());
            }
            Some(false) => {
                self.unwatch(&key);
            }
            None => {}
        }
        let rt = Handle::try_current().context("MemcgWatcher::watch needs a tokio runtime")?;
        let dir = self.roots.locate(&key).with_context(|| {
            format!(
                "no memory cgroup {key} (v1 memory at {:?}, v2 at {:?})",
                self.roots.v1_memory, self.roots.v2
            )
        })?;
        self.make_room();
        let mut w = Watched {
            last_used: self.clock,
            v1_task: None,
            v2_wd: None,
            psi_task: None,
        };
        match dir.version {
            CgroupVersion::V1 => w.v1_task = Some(self.start_v1(&rt, &key, &dir.path)?),
            CgroupVersion::V2 => {
                w.v2_wd = Some(self.start_v2(&rt, &key, &dir.path)?);
                if let Some(t) = &self.cfg.cgroup_psi {
                    // Not fatal: the memory.events watch is what matters most.
                    match psi::arm(&dir.path.join("memory.pressure"), t) {
                        Ok(armed) => {
                            w.psi_task = Some(rt.spawn(armed.run(
                                key.clone(),
                                Some(dir.path.clone()),
                                self.tx.clone(),
                            )))
                        }
                        Err(e) => log::warn!("no PSI trigger on {key}: {e:#}"),
                    }
                }
            }
        }
        log::debug!("watching memory cgroup {key} ({:?})", dir.version);
        self.watched.insert(key, w);
        Ok(())
    }

    /// Stop watching; false when it was not watched.
    pub fn unwatch(&mut self, memcg_path: &str) -> bool {
        let Some(w) = self.watched.remove(&normalize(memcg_path)) else {
            return false;
        };
        self.stop(w);
        true
    }

    /// Whether the cgroup is watched and its watch still runs.
    pub fn is_watching(&self, memcg_path: &str) -> bool {
        self.watched
            .get(&normalize(memcg_path))
            .is_some_and(|w| self.alive(w))
    }

    /// The watched cgroups (including ones whose watch ended and are not yet evicted).
    pub fn watched(&self) -> impl Iterator<Item = &str> {
        self.watched.keys().map(String::as_str)
    }

    /// Arm a PSI trigger on the node's /proc/pressure/memory; each call adds one (e.g. a
    /// "some" and a "full" one). Fails if the kernel refuses the trigger.
    pub fn watch_node_pressure(&mut self, trigger: &PsiTrigger) -> Result<()> {
        let rt = Handle::try_current().context("watch_node_pressure needs a tokio runtime")?;
        // Our own /proc first: PSI there is node-wide, and in a container the host's /proc is
        // mounted read-only (arming a trigger is a write).
        let armed = psi::arm(Path::new("/proc/pressure/memory"), trigger)
            .or_else(|_| psi::arm(&self.roots.proc_file("pressure/memory"), trigger))?;
        log::debug!("PSI trigger {:?} armed on the node", armed.line());
        self.node_psi
            .push(rt.spawn(armed.run("node".into(), None, self.tx.clone())));
        Ok(())
    }

    fn alive(&self, w: &Watched) -> bool {
        if let Some(t) = &w.v1_task {
            return !t.is_finished();
        }
        let (Some(wd), Some(v2)) = (w.v2_wd, &self.v2) else {
            return false;
        };
        let entries = lock_entries(&v2.entries);
        let Some(e) = entries.get(&wd) else {
            return false;
        };
        // kernfs may not tell inotify about an rmdir; a removed (maybe re-created) cgroup
        // shows as a missing or different inode.
        inode(&e.dir.join("memory.events")) == Some(e.ino)
    }

    fn stop(&mut self, w: Watched) {
        if let Some(t) = w.v1_task {
            // Dropping the task's eventfds unregisters the kernel side.
            t.abort();
        }
        if let Some(t) = w.psi_task {
            t.abort();
        }
        if let (Some(wd), Some(v2)) = (w.v2_wd, &self.v2) {
            lock_entries(&v2.entries).remove(&wd);
            sys::inotify_rm_watch(v2.inotify.get_ref(), wd);
        }
    }

    fn make_room(&mut self) {
        let max = self.cfg.max_watched.max(1);
        if self.watched.len() < max {
            return;
        }
        let dead: Vec<String> = self
            .watched
            .iter()
            .filter(|(k, w)| !self.alive(w) || self.roots.locate(k).is_none())
            .map(|(k, _)| k.clone())
            .collect();
        for k in dead {
            self.unwatch(&k);
        }
        while self.watched.len() >= max {
            let Some(oldest) = self
                .watched
                .iter()
                .min_by_key(|(_, w)| w.last_used)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            log::debug!("memcg watch limit ({max}) reached: no longer watching {oldest}");
            self.unwatch(&oldest);
        }
    }

    fn start_v1(&self, rt: &Handle, cgroup: &str, dir: &Path) -> Result<JoinHandle<()>> {
        let oom_efd = sys::eventfd().context("creating an eventfd")?;
        register_v1_event(dir, &oom_efd, "memory.oom_control", None)?;
        let baseline = read_oom_control(dir)?;
        let mut threshold = None;
        if let Some(frac) = self.cfg.usage_threshold {
            let limit = effective_limit(&self.roots, cgroup);
            if limit.cgroup.is_some() {
                let bytes = (limit.bytes as f64 * frac) as u64;
                let efd = sys::eventfd().context("creating an eventfd")?;
                register_v1_event(dir, &efd, "memory.usage_in_bytes", Some(bytes))?;
                threshold = Some((efd, bytes));
            }
        }
        let oom = sys::async_fd(oom_efd, Interest::READABLE)?;
        let threshold = match threshold {
            Some((efd, bytes)) => Some((sys::async_fd(efd, Interest::READABLE)?, bytes)),
            None => None,
        };
        let task = V1Task {
            cgroup: cgroup.to_owned(),
            dir: dir.to_owned(),
            roots: self.roots.clone(),
            tx: self.tx.clone(),
            last_kills: baseline.oom_kill,
            last_threshold: None,
        };
        Ok(rt.spawn(task.run(oom, threshold)))
    }

    fn start_v2(&mut self, rt: &Handle, cgroup: &str, dir: &Path) -> Result<i32> {
        let v2 = match self.v2.take() {
            Some(v2) => v2,
            None => {
                let inotify = Arc::new(sys::async_fd(
                    sys::inotify_init().context("creating an inotify instance")?,
                    Interest::READABLE,
                )?);
                let entries = Arc::new(Mutex::new(HashMap::new()));
                let task = rt.spawn(v2_reader(inotify.clone(), entries.clone(), self.tx.clone()));
                V2Notifier {
                    inotify,
                    entries,
                    task,
                }
            }
        };
        let v2 = self.v2.insert(v2);
        let events = dir.join("memory.events");
        // Baseline first: only changes after the watch starts are reported.
        let prev = read_memory_events(&events)?;
        let wd = sys::inotify_add_watch(v2.inotify.get_ref(), &events, libc::IN_MODIFY)
            .with_context(|| format!("inotify watch on {}", events.display()))?;
        let ino = inode(&events).with_context(|| format!("stat {}", events.display()))?;
        lock_entries(&v2.entries).insert(
            wd,
            V2Entry {
                cgroup: cgroup.to_owned(),
                dir: dir.to_owned(),
                ino,
                prev,
            },
        );
        Ok(wd)
    }
}

impl Drop for MemcgWatcher {
    fn drop(&mut self) {
        for (_, w) in std::mem::take(&mut self.watched) {
            self.stop(w);
        }
        if let Some(v2) = self.v2.take() {
            v2.task.abort();
        }
        for t in self.node_psi.drain(..) {
            t.abort();
        }
    }
}

/// Ask the v1 memory controller to signal `efd` on events of `target` (memory.oom_control:
/// OOM; memory.usage_in_bytes with a threshold: usage crossing it). The kernel keeps its own
/// reference to the eventfd and drops the registration when we close it.
fn register_v1_event(dir: &Path, efd: &File, target: &str, arg: Option<u64>) -> Result<()> {
    let target_path = dir.join(target);
    let t =
        File::open(&target_path).with_context(|| format!("opening {}", target_path.display()))?;
    let mut line = format!("{} {}", efd.as_raw_fd(), t.as_raw_fd());
    if let Some(a) = arg {
        line.push_str(&format!(" {a}"));
    }
    let ctl = dir.join("cgroup.event_control");
    OpenOptions::new()
        .write(true)
        .open(&ctl)
        .and_then(|mut f| f.write_all(line.as_bytes()))
        .with_context(|| {
            format!(
                "registering a {target} notification ({line:?}) in {}",
                ctl.display()
            )
        })
}

fn read_oom_control(dir: &Path) -> Result<OomControl> {
    let p = dir.join("memory.oom_control");
    let text = std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?;
    OomControl::parse(&text).with_context(|| format!("parsing {}", p.display()))
}

fn read_memory_events(p: &Path) -> Result<MemoryEvents> {
    let text = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
    MemoryEvents::parse(&text).with_context(|| format!("parsing {}", p.display()))
}

/// Wait for an eventfd to be signalled and reset it; pending forever for `None`.
async fn signalled(fd: Option<&AsyncFd<File>>) -> io::Result<u64> {
    let Some(fd) = fd else {
        return std::future::pending().await;
    };
    loop {
        let mut guard = fd.readable().await?;
        if let Ok(r) = guard.try_io(|f| sys::read_eventfd(f.get_ref())) {
            return r;
        }
    }
}

/// One v1 cgroup's watch. cgroupfs reads are in-memory and quick, so they are done inline.
struct V1Task {
    cgroup: String,
    dir: PathBuf,
    roots: CgroupRoots,
    tx: mpsc::Sender<MemcgEvent>,
    last_kills: u64,
    /// When the last threshold event was sent (see [`THRESHOLD_QUIET`]).
    last_threshold: Option<Instant>,
}

/// A cgroup whose page cache fills it to the limit crosses the usage threshold up and down
/// many times a second: report a crossing at most this often per cgroup.
const THRESHOLD_QUIET: Duration = Duration::from_secs(10);

impl V1Task {
    async fn run(mut self, oom: AsyncFd<File>, threshold: Option<(AsyncFd<File>, u64)>) {
        loop {
            // Biased, threshold first: when both are signalled together (a fast hog crosses
            // 90% and hits the limit within one wakeup), report them in the order they
            // happened.
            let (r, is_oom) = tokio::select! {
                biased;
                r = signalled(threshold.as_ref().map(|t| &t.0)) => (r, false),
                r = signalled(Some(&oom)) => (r, true),
                _ = self.tx.closed() => return,
            };
            if let Err(e) = r {
                log::warn!("memcg eventfd of {}: {e}", self.cgroup);
                return;
            }
            // rmdir signals every registered eventfd too; by then the directory is gone.
            if !self.dir.exists() {
                log::debug!("memcg watch of {} ends: cgroup removed", self.cgroup);
                return;
            }
            let ev = if is_oom {
                self.oom_event().await
            } else {
                if self
                    .last_threshold
                    .is_some_and(|t| t.elapsed() < THRESHOLD_QUIET)
                {
                    continue;
                }
                self.last_threshold = Some(Instant::now());
                self.threshold_event(threshold.as_ref().map_or(0, |t| t.1))
            };
            match ev {
                Ok(ev) => {
                    if self.tx.send(ev).await.is_err() {
                        return;
                    }
                }
                Err(_) if !self.dir.exists() => return,
                Err(e) => log::warn!("{e:#}"),
            }
        }
    }

    async fn oom_event(&mut self) -> Result<MemcgEvent> {
        let ts_ms = unix_ms();
        let deadline = Instant::now() + OOM_SETTLE;
        let mut oc = read_oom_control(&self.dir)?;
        while oc.oom_kill <= self.last_kills && !oc.oom_kill_disable && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(1)).await;
            oc = read_oom_control(&self.dir)?;
        }
        self.last_kills = oc.oom_kill;
        Ok(MemcgEvent::Oom {
            ts_ms,
            cgroup: self.cgroup.clone(),
            oom_kill_total: oc.oom_kill,
            failcnt: read_u64(&self.dir.join("memory.failcnt"))?,
            usage_bytes: read_u64(&self.dir.join("memory.usage_in_bytes"))?,
            limit_bytes: effective_limit(&self.roots, &self.cgroup).bytes,
        })
    }

    fn threshold_event(&self, threshold_bytes: u64) -> Result<MemcgEvent> {
        Ok(MemcgEvent::Threshold {
            ts_ms: unix_ms(),
            cgroup: self.cgroup.clone(),
            usage_bytes: read_u64(&self.dir.join("memory.usage_in_bytes"))?,
            limit_bytes: effective_limit(&self.roots, &self.cgroup).bytes,
            threshold_bytes,
        })
    }
}

/// Reads the shared inotify instance: on each IN_MODIFY of a memory.events, re-read it and
/// report what rose.
async fn v2_reader(
    inotify: Arc<AsyncFd<File>>,
    entries: Arc<Mutex<HashMap<i32, V2Entry>>>,
    tx: mpsc::Sender<MemcgEvent>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = tokio::select! {
            g = inotify.readable() => match g {
                Ok(mut g) => match g.try_io(|f| f.get_ref().read(&mut buf)) {
                    Ok(Ok(n)) => n,
                    Ok(Err(e)) => {
                        log::warn!("reading inotify: {e}");
                        return;
                    }
                    Err(_would_block) => continue,
                },
                Err(e) => {
                    log::warn!("inotify readiness: {e}");
                    return;
                }
            },
            _ = tx.closed() => return,
        };
        // Several modifications of one file can be queued; read it once.
        let mut changed = BTreeSet::new();
        let mut overflow = false;
        {
            let mut map = lock_entries(&entries);
            for (wd, mask) in sys::parse_inotify_events(&buf[..n]) {
                if mask & libc::IN_Q_OVERFLOW != 0 {
                    overflow = true;
                } else if mask & libc::IN_IGNORED != 0 {
                    // The watch is gone (unwatch, or the kernel dropped the inode).
                    map.remove(&wd);
                } else if mask & libc::IN_MODIFY != 0 {
                    changed.insert(wd);
                }
            }
            if overflow {
                // Lost events: re-read every file (the counters are cumulative, so nothing
                // is lost but the timing).
                changed.extend(map.keys().copied());
            }
        }
        let mut out = Vec::new();
        for wd in changed {
            let mut map = lock_entries(&entries);
            let Some(e) = map.get_mut(&wd) else {
                continue;
            };
            let path = e.dir.join("memory.events");
            let now = match read_memory_events(&path) {
                Ok(now) => now,
                Err(err) => {
                    if !e.dir.exists() {
                        log::debug!("memcg watch of {} ends: cgroup removed", e.cgroup);
                        map.remove(&wd);
                        sys::inotify_rm_watch(inotify.get_ref(), wd);
                    } else {
                        log::warn!("{err:#}");
                    }
                    continue;
                }
            };
            let d = diff(&e.prev, &now);
            e.prev = now;
            if d.any_limit_event() {
                out.push((e.cgroup.clone(), d, now));
            }
        }
        for (cgroup, deltas, totals) in out {
            let ev = MemcgEvent::Events {
                ts_ms: unix_ms(),
                cgroup,
                deltas,
                totals,
            };
            if tx.send(ev).await.is_err() {
                return;
            }
        }
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    /// The v2 watcher's logic on a fake hierarchy of regular files (inotify reports their
    /// IN_MODIFY like kernfs does for memory.events); the kernel side is tested by
    /// real_tests::v2_oom_kill_is_reported on a v2 host.
    #[tokio::test(flavor = "current_thread")]
    async fn v2_watcher_on_fake_hierarchy() {
        let root = std::env::temp_dir().join(format!("lt-memcg-watch-{}", std::process::id()));
        let cg = root.join("sys/fs/cgroup");
        let mk = |name: &str, max: &str| {
            let d = cg.join(name);
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("memory.max"), max).unwrap();
            std::fs::write(d.join("memory.current"), "1000\n").unwrap();
            std::fs::write(
                d.join("memory.events"),
                "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\noom_group_kill 0\n",
            )
            .unwrap();
            d
        };
        let a = mk("pod/a", "max\n");
        std::fs::write(cg.join("pod/memory.max"), "4096\n").unwrap();
        let b = mk("b", "8192\n");
        let c = mk("c", "max\n");
        let roots = CgroupRoots::new(None, Some(cg.clone()), &root);
        let (tx, mut rx) = mpsc::channel(16);
        let cfg = WatchConfig {
            max_watched: 2,
            // A regular file takes the trigger text but cannot be polled: the failure is
            // logged and the memory.events watch stands.
            cgroup_psi: Some(PsiTrigger::default()),
            ..WatchConfig::default()
        };
        let mut w = MemcgWatcher::with_config(roots, tx, cfg);
        w.watch("/pod/a").unwrap();
        w.watch("/b").unwrap();
        assert!(w.is_watching("/pod/a") && w.is_watching("b/"));

        std::fs::write(
            a.join("memory.events"),
            "low 5\nhigh 0\nmax 3\noom 1\noom_kill 1\noom_group_kill 0\n",
        )
        .unwrap();
        let recv = async |rx: &mut mpsc::Receiver<MemcgEvent>| {
            tokio::time::timeout(Duration::from_secs(5), rx.recv())
                .await
                .expect("no event within 5 s")
                .unwrap()
        };
        match recv(&mut rx).await {
            MemcgEvent::Events {
                cgroup,
                deltas,
                totals,
                ..
            } => {
                assert_eq!(cgroup, "/pod/a");
                assert_eq!(
                    deltas.changed(),
                    vec![("low", 5), ("max", 3), ("oom", 1), ("oom_kill", 1)]
                );
                assert_eq!(totals.max, 3);
                assert_eq!(totals.oom_kill, 1);
            }
            other => panic!("{other:?}"),
        }
        // Only `low` moves: nothing to report. Then b: one Events, no Oom.
        std::fs::write(
            a.join("memory.events"),
            "low 9\nhigh 0\nmax 3\noom 1\noom_kill 1\noom_group_kill 0\n",
        )
        .unwrap();
        std::fs::write(
            b.join("memory.events"),
            "low 0\nhigh 7\nmax 0\noom 0\noom_kill 0\n",
        )
        .unwrap();
        match recv(&mut rx).await {
            MemcgEvent::Events { cgroup, deltas, .. } => {
                assert_eq!(cgroup, "/b");
                assert_eq!(deltas.changed(), vec![("high", 7)]);
            }
            other => panic!("{other:?}"),
        }

        // At the limit of 2: re-watching a makes b the least recently used, so c evicts b.
        w.watch("pod/a").unwrap();
        w.watch("/c").unwrap();
        assert!(w.is_watching("/pod/a") && w.is_watching("/c") && !w.is_watching("/b"));
        assert_eq!(w.watched().count(), 2);

        // A removed cgroup's watch is dead; re-created, it is watched afresh.
        std::fs::remove_dir_all(&c).unwrap();
        assert!(!w.is_watching("/c"));
        assert!(w.watch("/c").is_err());
        let c = mk("c", "max\n");
        w.watch("/c").unwrap();
        assert!(w.is_watching("/c"));
        std::fs::write(c.join("memory.events"), "max 1\n").unwrap();
        match recv(&mut rx).await {
            MemcgEvent::Events { cgroup, deltas, .. } => {
                assert_eq!(cgroup, "/c");
                assert_eq!(deltas.changed(), vec![("max", 1)]);
            }
            other => panic!("{other:?}"),
        }
        assert!(w.unwatch("/c") && !w.unwatch("/c"));
        drop(w);
        let _ = std::fs::remove_dir_all(&root);
    }
}
