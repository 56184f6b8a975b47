//! Reading /proc: the memory of processes that predate us (to seed them), and identity at first sight
//! (command line, cgroup), which must be captured before the process dies.
use std::path::{Path, PathBuf};

/// A kernel comm (NUL-padded) as a String.
pub fn comm_from_bytes(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

#[derive(Clone, Debug)]
pub struct Procfs {
    root: PathBuf,
}

/// Memory figures from /proc/<pid>/status, in bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StatusMem {
    pub rss_anon: u64,
    pub rss_file: u64,
    pub rss_shmem: u64,
    pub swap: u64,
    pub ppid: u32,
    /// Kernel threads have no mm: no Rss lines.
    pub has_mm: bool,
}

impl StatusMem {
    pub fn parse(text: &str) -> Self {
        let mut m = Self::default();
        for line in text.lines() {
            let Some((key, rest)) = line.split_once(':') else {
                continue;
            };
            let kb = || {
                rest.split_whitespace()
                    .next()
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0)
                    * 1024
            };
            match key {
                "RssAnon" => {
                    m.rss_anon = kb();
                    m.has_mm = true;
                }
                "RssFile" => m.rss_file = kb(),
                "RssShmem" => m.rss_shmem = kb(),
                "VmSwap" => m.swap = kb(),
                "PPid" => m.ppid = rest.trim().parse().unwrap_or(0),
                _ => {}
            }
        }
        m
    }
}

impl Procfs {
    pub fn new(host_root: &Path) -> Self {
        Self {
            root: host_root.join("proc"),
        }
    }

    fn path(&self, pid: u32, file: &str) -> PathBuf {
        self.root.join(pid.to_string()).join(file)
    }

    pub fn pids(&self) -> Vec<u32> {
        let Ok(dir) = std::fs::read_dir(&self.root) else {
            return Vec::new();
        };
        dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .collect()
    }

    /// The processes (thread-group leaders) alive now, from one listing of /proc; None when
    /// it cannot be listed.
    pub fn pid_set(&self) -> Option<std::collections::HashSet<u32>> {
        let dir = std::fs::read_dir(&self.root).ok()?;
        Some(
            dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect(),
        )
    }

    pub fn alive(&self, pid: u32) -> bool {
        self.root.join(pid.to_string()).exists()
    }

    pub fn comm(&self, pid: u32) -> Option<String> {
        std::fs::read_to_string(self.path(pid, "comm"))
            .ok()
            .map(|s| s.trim_end().to_string())
    }

    /// Command line, NULs as spaces, capped (a JVM's can be tens of KiB).
    pub fn cmdline(&self, pid: u32) -> Option<String> {
        let raw = std::fs::read(self.path(pid, "cmdline")).ok()?;
        let mut s: String = String::from_utf8_lossy(&raw)
            .replace('\0', " ")
            .trim_end()
            .to_string();
        if s.len() > 256 {
            let mut cut = 256;
            while !s.is_char_boundary(cut) {
                cut -= 1;
            }
            s.truncate(cut);
            s.push('…');
        }
        (!s.is_empty()).then_some(s)
    }

    pub fn cgroup(&self, pid: u32) -> Option<String> {
        std::fs::read_to_string(self.path(pid, "cgroup")).ok()
    }

    pub fn status(&self, pid: u32) -> Option<StatusMem> {
        std::fs::read_to_string(self.path(pid, "status"))
            .ok()
            .map(|t| StatusMem::parse(&t))
    }
}

/// leaktracer's own resident memory (bytes), for health reports.
pub fn own_rss_bytes() -> u64 {
    Procfs::new(Path::new("/"))
        .status(std::process::id())
        .map_or(0, |s| s.rss_anon + s.rss_file + s.rss_shmem)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_status() {
        let t = "Name:\tbash\nPPid:\t1\nVmRSS:\t    4000 kB\nRssAnon:\t    1000 kB\nRssFile:\t    2900 kB\nRssShmem:\t     100 kB\nVmSwap:\t       5 kB\n";
        let m = StatusMem::parse(t);
        assert_eq!(
            m,
            StatusMem {
                rss_anon: 1000 * 1024,
                rss_file: 2900 * 1024,
                rss_shmem: 100 * 1024,
                swap: 5 * 1024,
                ppid: 1,
                has_mm: true
            }
        );
        assert!(!StatusMem::parse("Name:\tkthreadd\nPPid:\t0\n").has_mm);
    }

    #[test]
    fn lists_the_live_processes_once() {
        let dir = std::env::temp_dir().join(format!("lt-procfs-{}", std::process::id()));
        let proc = dir.join("proc");
        for d in ["1", "42", "self", "sys"] {
            std::fs::create_dir_all(proc.join(d)).unwrap();
        }
        let procfs = Procfs::new(&dir);
        let set = procfs.pid_set().unwrap();
        assert_eq!(set, [1, 42].into_iter().collect());
        assert!(procfs.alive(42) && !procfs.alive(43));
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(
            Procfs::new(&dir).pid_set().is_none(),
            "no /proc: no listing"
        );
    }

    #[test]
    fn comm_from_kernel_bytes() {
        assert_eq!(comm_from_bytes(b"stress-ng-brk\0\0\0"), "stress-ng-brk");
        assert_eq!(comm_from_bytes(b"a-very-long-com\0"), "a-very-long-com");
        assert_eq!(comm_from_bytes(b"abc"), "abc");
    }
}
