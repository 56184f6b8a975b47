//! Parsers for the memory-cgroup, PSI and mount files. Pure (text in, values out) so they
//! are unit-tested on contents captured from real kernels; the callers add the file name to
//! any error.
use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

/// v1 writes "no limit" as PAGE_COUNTER_MAX pages in bytes: 9223372036854771712 with 4 KiB
/// pages, a little less with 16/64 KiB pages. No machine has 4 EiB, so anything from 2^62
/// up means unlimited whatever the page size.
const V1_UNLIMITED_FROM: u64 = 1 << 62;

/// The counters of a v2 `memory.events` (hierarchical: they include descendants' events).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
// Counters missing from a trace line (written by a newer or older leaktracer) read as 0.
#[serde(default)]
pub struct MemoryEvents {
    /// Reclaimed below memory.low although protected.
    pub low: u64,
    /// Throttled/reclaimed for going over memory.high.
    pub high: u64,
    /// About to go over memory.max (the v2 analogue of v1's failcnt).
    pub max: u64,
    /// Hit the limit and reclaim failed: the OOM killer was invoked (or would have been).
    pub oom: u64,
    /// Processes killed by the OOM killer.
    pub oom_kill: u64,
    /// Whole-cgroup OOM kills (memory.oom.group).
    pub oom_group_kill: u64,
}

impl MemoryEvents {
    /// Lines of "key value"; keys this version does not know (newer kernels add some, e.g.
    /// `sock_throttled`) are skipped, missing ones (older kernels lack `oom_group_kill`) are 0.
    pub fn parse(text: &str) -> Result<Self> {
        let mut ev = Self::default();
        let mut known = 0;
        for line in text.lines() {
            let Some((key, value)) = line.split_once(' ') else {
                continue;
            };
            let slot = match key {
                "low" => &mut ev.low,
                "high" => &mut ev.high,
                "max" => &mut ev.max,
                "oom" => &mut ev.oom,
                "oom_kill" => &mut ev.oom_kill,
                "oom_group_kill" => &mut ev.oom_group_kill,
                _ => continue,
            };
            *slot = parse_u64(value).with_context(|| format!("memory.events key {key}"))?;
            known += 1;
        }
        if known == 0 {
            bail!("no memory.events counters in {text:?}");
        }
        Ok(ev)
    }

    /// (name, value) of every counter, for logs and for callers that iterate.
    pub fn fields(&self) -> [(&'static str, u64); 6] {
        [
            ("low", self.low),
            ("high", self.high),
            ("max", self.max),
            ("oom", self.oom),
            ("oom_kill", self.oom_kill),
            ("oom_group_kill", self.oom_group_kill),
        ]
    }

    /// The counters that changed (non-zero, when `self` is a delta from [`diff`]).
    pub fn changed(&self) -> Vec<(&'static str, u64)> {
        self.fields().into_iter().filter(|&(_, v)| v != 0).collect()
    }

    /// Whether any counter that says the limit bit (everything but `low`, which is about
    /// protection, not pressure) is non-zero.
    pub fn any_limit_event(&self) -> bool {
        self.high | self.max | self.oom | self.oom_kill | self.oom_group_kill != 0
    }
}

/// How much each counter rose from `prev` to `now`. Counters only grow while a cgroup lives,
/// so any decrease means the path now names a new cgroup: then everything in `now` is new.
pub fn diff(prev: &MemoryEvents, now: &MemoryEvents) -> MemoryEvents {
    let (p, n) = (prev.fields(), now.fields());
    if p.iter().zip(&n).any(|((_, a), (_, b))| b < a) {
        return *now;
    }
    MemoryEvents {
        low: now.low - prev.low,
        high: now.high - prev.high,
        max: now.max - prev.max,
        oom: now.oom - prev.oom,
        oom_kill: now.oom_kill - prev.oom_kill,
        oom_group_kill: now.oom_group_kill - prev.oom_group_kill,
    }
}

/// v1 `memory.oom_control`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct OomControl {
    pub oom_kill_disable: bool,
    /// The cgroup is in OOM right now (only stays 1 while the killer is disabled).
    pub under_oom: bool,
    /// Kills in this cgroup so far (the line exists since 4.13; 0 when absent).
    pub oom_kill: u64,
}

impl OomControl {
    pub fn parse(text: &str) -> Result<Self> {
        let mut oc = Self::default();
        let mut known = 0;
        for line in text.lines() {
            let Some((key, value)) = line.split_once(' ') else {
                continue;
            };
            let v = || parse_u64(value).with_context(|| format!("memory.oom_control key {key}"));
            match key {
                "oom_kill_disable" => oc.oom_kill_disable = v()? != 0,
                "under_oom" => oc.under_oom = v()? != 0,
                "oom_kill" => oc.oom_kill = v()?,
                _ => continue,
            }
            known += 1;
        }
        if known == 0 {
            bail!("no memory.oom_control fields in {text:?}");
        }
        Ok(oc)
    }
}

/// One line of a PSI file: share of wall time (percent) some/all tasks stalled over the last
/// 10/60/300 s, and the total stall time in microseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct PsiLine {
    pub avg10: f64,
    pub avg60: f64,
    pub avg300: f64,
    pub total_us: u64,
}

/// /proc/pressure/memory or a v2 cgroup's memory.pressure.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Psi {
    pub some: PsiLine,
    /// Absent only in the system-wide cpu file of kernels before 5.13; always there for memory.
    pub full: Option<PsiLine>,
}

impl Psi {
    pub fn parse(text: &str) -> Result<Self> {
        let mut some = None;
        let mut full = None;
        for line in text.lines() {
            let mut words = line.split_whitespace();
            let slot = match words.next() {
                Some("some") => &mut some,
                Some("full") => &mut full,
                _ => continue,
            };
            let mut l = PsiLine::default();
            for w in words {
                let Some((k, v)) = w.split_once('=') else {
                    bail!("PSI field without '=': {w:?}");
                };
                let f = || -> Result<f64> { v.parse().with_context(|| format!("PSI {k}={v}")) };
                match k {
                    "avg10" => l.avg10 = f()?,
                    "avg60" => l.avg60 = f()?,
                    "avg300" => l.avg300 = f()?,
                    "total" => {
                        l.total_us = parse_u64(v).with_context(|| format!("PSI total={v}"))?
                    }
                    _ => {}
                }
            }
            *slot = Some(l);
        }
        Ok(Self {
            some: some.with_context(|| format!("no 'some' line in PSI text {text:?}"))?,
            full,
        })
    }
}

/// v2 `memory.max`: "max" (None: no limit) or a byte count.
pub fn parse_v2_max(text: &str) -> Result<Option<u64>> {
    match text.trim() {
        "max" => Ok(None),
        v => parse_u64(v).map(Some),
    }
}

/// v1 `memory.limit_in_bytes`: a byte count, None when it is the "unlimited" sentinel.
pub fn parse_v1_limit(text: &str) -> Result<Option<u64>> {
    let v = parse_u64(text)?;
    Ok((v < V1_UNLIMITED_FROM).then_some(v))
}

/// MemTotal of /proc/meminfo, in bytes.
pub fn parse_meminfo_total(text: &str) -> Result<u64> {
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .context("no MemTotal line")?;
    let mut words = line.split_whitespace();
    let n = parse_u64(words.next().unwrap_or(""))?;
    match words.next() {
        Some("kB") => Ok(n * 1024),
        other => bail!("MemTotal unit {other:?}, expected kB"),
    }
}

/// A single decimal counter (memory.current, usage_in_bytes, failcnt...), whitespace around.
pub fn parse_u64(text: &str) -> Result<u64> {
    let t = text.trim();
    t.parse().with_context(|| format!("not a number: {t:?}"))
}

/// A cgroup filesystem mount from a mountinfo line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CgroupMount {
    /// Where it is mounted (octal escapes such as `\040` undone).
    pub mount_point: String,
    /// cgroup2 (the unified hierarchy) rather than a v1 hierarchy.
    pub v2: bool,
    /// A v1 hierarchy with the memory controller (always false for v2: whether v2 has the
    /// memory controller is in its cgroup.controllers file, not in mountinfo).
    pub v1_memory: bool,
}

/// The cgroup mounts of a /proc/PID/mountinfo.
pub fn parse_mountinfo(text: &str) -> Vec<CgroupMount> {
    let mut out = Vec::new();
    for line in text.lines() {
        // "id parent major:minor root mount_point options [optional...] - fstype source super_options"
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let Some(mount_point) = left.split(' ').nth(4) else {
            continue;
        };
        let mut r = right.split(' ');
        let fstype = r.next().unwrap_or("");
        let super_opts = r.nth(1).unwrap_or("");
        let (v2, v1_memory) = match fstype {
            "cgroup2" => (true, false),
            "cgroup" => (false, super_opts.split(',').any(|o| o == "memory")),
            _ => continue,
        };
        out.push(CgroupMount {
            mount_point: unescape_octal(mount_point),
            v2,
            v1_memory,
        });
    }
    out
}

/// mountinfo writes space, tab, newline and backslash in paths as `\ooo`.
fn unescape_octal(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    // Captured on the development machine (kernel 6.18, cgroup v1 memory controller).
    const V1_OOM_CONTROL_IDLE: &str = "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n";
    // The same file of a 32 MiB test cgroup right after `head -c 64M /dev/zero | tail` in it
    // was OOM-killed.
    const V1_OOM_CONTROL_KILLED: &str = "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n";
    const V1_LIMIT_UNLIMITED: &str = "9223372036854771712\n";
    const V1_LIMIT_32M: &str = "33554432\n";
    const V1_USAGE: &str = "1782218752\n";
    const V1_FAILCNT_AFTER_OOM: &str = "115\n";
    const PROC_PRESSURE_IDLE: &str = "some avg10=0.00 avg60=0.00 avg300=0.00 total=157194\n\
                                      full avg10=0.00 avg60=0.00 avg300=0.00 total=122513\n";
    // Right after writing 400 MB from inside a 32 MiB v1 cgroup.
    const PROC_PRESSURE_BUSY: &str = "some avg10=2.53 avg60=0.45 avg300=0.09 total=629021\n\
                                      full avg10=0.54 avg60=0.09 avg300=0.02 total=212674\n";
    const MEMINFO_HEAD: &str = "MemTotal:       24683656 kB\nMemFree:        22528496 kB\n\
                                MemAvailable:   24178572 kB\nBuffers:           11476 kB\n";
    const MOUNTINFO: &str = "\
23 1 254:0 / / rw,relatime - ext4 /dev/vda rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
    // A typical cgroup-v2 node (systemd, containerd): documented formats.
    const MOUNTINFO_V2: &str = "\
25 30 0:23 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
26 30 0:5 / /host\\040root/sys rw shared:2 - cgroup2 none rw
";
    const V2_MEMORY_EVENTS_0: &str = "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\noom_group_kill 0\n";
    const V2_MEMORY_EVENTS_1: &str =
        "low 0\nhigh 12\nmax 57\noom 1\noom_kill 1\noom_group_kill 0\nsock_throttled 3\n";

    #[test]
    fn oom_control() {
        assert_eq!(
            OomControl::parse(V1_OOM_CONTROL_IDLE).unwrap(),
            OomControl::default()
        );
        let k = OomControl::parse(V1_OOM_CONTROL_KILLED).unwrap();
        assert_eq!(k.oom_kill, 1);
        assert!(!k.under_oom && !k.oom_kill_disable);
        let d = OomControl::parse("oom_kill_disable 1\nunder_oom 1\n").unwrap();
        assert!(d.oom_kill_disable && d.under_oom);
        assert_eq!(d.oom_kill, 0);
        assert!(OomControl::parse("").is_err());
        assert!(OomControl::parse("oom_kill x\n").is_err());
    }

    #[test]
    fn memory_events_and_diff() {
        let a = MemoryEvents::parse(V2_MEMORY_EVENTS_0).unwrap();
        assert_eq!(a, MemoryEvents::default());
        let b = MemoryEvents::parse(V2_MEMORY_EVENTS_1).unwrap();
        assert_eq!((b.high, b.max, b.oom, b.oom_kill), (12, 57, 1, 1));
        let d = diff(&a, &b);
        assert_eq!(
            d.changed(),
            vec![("high", 12), ("max", 57), ("oom", 1), ("oom_kill", 1)]
        );
        assert!(d.any_limit_event());
        assert!(diff(&b, &b).changed().is_empty());
        // Only `low` moved: not a limit event.
        let low = MemoryEvents { low: 1, ..b };
        assert!(!diff(&b, &low).any_limit_event());
        // A recreated cgroup: counters restart, everything counts as new.
        let fresh = MemoryEvents {
            max: 2,
            ..Default::default()
        };
        assert_eq!(diff(&b, &fresh), fresh);
        // Older kernel without oom_group_kill.
        let old = MemoryEvents::parse("low 0\nhigh 0\nmax 3\noom 0\noom_kill 0\n").unwrap();
        assert_eq!(old.max, 3);
        assert!(MemoryEvents::parse("").is_err());
        assert!(MemoryEvents::parse("max lots\n").is_err());
    }

    #[test]
    fn psi() {
        let p = Psi::parse(PROC_PRESSURE_IDLE).unwrap();
        assert_eq!(p.some.total_us, 157194);
        assert_eq!(p.full.unwrap().total_us, 122513);
        let p = Psi::parse(PROC_PRESSURE_BUSY).unwrap();
        assert_eq!(
            (p.some.avg10, p.some.avg60, p.some.avg300),
            (2.53, 0.45, 0.09)
        );
        assert_eq!(p.full.unwrap().avg10, 0.54);
        let cpu_old = Psi::parse("some avg10=1.00 avg60=0.00 avg300=0.00 total=5\n").unwrap();
        assert!(cpu_old.full.is_none());
        assert!(Psi::parse("full avg10=0.00 avg60=0.00 avg300=0.00 total=1\n").is_err());
        assert!(Psi::parse("some avg10=x\n").is_err());
    }

    #[test]
    fn limits_and_counters() {
        assert_eq!(parse_v1_limit(V1_LIMIT_UNLIMITED).unwrap(), None);
        // 64 KiB-page kernels' sentinel.
        assert_eq!(parse_v1_limit("9223372036854710272").unwrap(), None);
        assert_eq!(parse_v1_limit(V1_LIMIT_32M).unwrap(), Some(32 << 20));
        assert_eq!(parse_v2_max("max\n").unwrap(), None);
        assert_eq!(parse_v2_max("268435456\n").unwrap(), Some(256 << 20));
        assert!(parse_v2_max("").is_err());
        assert_eq!(parse_u64(V1_USAGE).unwrap(), 1782218752);
        assert_eq!(parse_u64(V1_FAILCNT_AFTER_OOM).unwrap(), 115);
        assert_eq!(parse_meminfo_total(MEMINFO_HEAD).unwrap(), 24683656 * 1024);
        assert!(parse_meminfo_total("MemFree: 1 kB\n").is_err());
    }

    #[test]
    fn mountinfo() {
        let m = parse_mountinfo(MOUNTINFO);
        assert_eq!(m.len(), 5);
        let mem: Vec<_> = m.iter().filter(|m| m.v1_memory).collect();
        assert_eq!(mem.len(), 1);
        assert_eq!(mem[0].mount_point, "/sys/fs/cgroup/memory");
        let v2: Vec<_> = m.iter().filter(|m| m.v2).collect();
        assert_eq!(v2[0].mount_point, "/sys/fs/cgroup/unified");
        let m = parse_mountinfo(MOUNTINFO_V2);
        assert_eq!(m[0].mount_point, "/sys/fs/cgroup");
        assert!(m[0].v2);
        assert_eq!(m[1].mount_point, "/host root/sys");
    }
}
