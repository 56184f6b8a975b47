//! The kernel's own accounting of BPF programs (kernel.bpf_stats_enabled=1): run time and
//! run count of each program a process holds, read from its /proc/PID/fdinfo. Reading by
//! process (not "programs that appeared since") keeps other tools loading programs on the
//! same machine out of the numbers.
use std::{collections::BTreeMap, process::Command};

use anyhow::Context as _;

#[derive(Clone, Debug)]
pub struct ProgStat {
    pub id: u64,
    pub name: String,
    pub run_time_ns: u64,
    pub run_cnt: u64,
}

const STATS_SYSCTL: &str = "/proc/sys/kernel/bpf_stats_enabled";

/// kernel.bpf_stats_enabled on for the bench, back to what it was when dropped: a node-wide
/// setting (every BPF program on the machine pays two clock reads per run while it is on),
/// and the end-to-end tests check that leaktracer never turns it on, which they cannot tell
/// while it is left on.
pub struct StatsOn {
    before: String,
}

pub fn enable_stats() -> anyhow::Result<StatsOn> {
    let before =
        std::fs::read_to_string(STATS_SYSCTL).with_context(|| format!("reading {STATS_SYSCTL}"))?;
    std::fs::write(STATS_SYSCTL, "1").context("enabling kernel.bpf_stats_enabled (needs root)")?;
    Ok(StatsOn {
        before: before.trim().to_string(),
    })
}

impl Drop for StatsOn {
    fn drop(&mut self) {
        if self.before != "1"
            && let Err(e) = std::fs::write(STATS_SYSCTL, &self.before)
        {
            eprintln!(
                "bench: could not restore kernel.bpf_stats_enabled={}: {e}",
                self.before
            );
        }
    }
}

/// Programs held open by `pid`, with their cumulative run time and count.
pub fn programs_of(pid: u32) -> Vec<ProgStat> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fdinfo")) else {
        return Vec::new();
    };
    let mut progs: Vec<ProgStat> = dir
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .filter_map(|text| parse_fdinfo(&text))
        .collect();
    // The same program can be open through several fds.
    progs.sort_by_key(|p| p.id);
    progs.dedup_by_key(|p| p.id);
    if !progs.is_empty() {
        let names = names();
        for p in &mut progs {
            p.name = names
                .get(&p.id)
                .cloned()
                .unwrap_or_else(|| format!("prog{}", p.id));
        }
    }
    progs
}

/// A BPF program fd's fdinfo: `prog_id`, `run_time_ns`, `run_cnt` lines.
fn parse_fdinfo(text: &str) -> Option<ProgStat> {
    let field = |key: &str| {
        text.lines().find_map(|l| {
            l.strip_prefix(key)?
                .strip_prefix(':')?
                .trim()
                .parse::<u64>()
                .ok()
        })
    };
    Some(ProgStat {
        id: field("prog_id")?,
        name: String::new(),
        run_time_ns: field("run_time_ns").unwrap_or(0),
        run_cnt: field("run_cnt").unwrap_or(0),
    })
}

/// Program names by id, from bpftool (fdinfo has none). Empty when bpftool is missing.
fn names() -> BTreeMap<u64, String> {
    let Ok(out) = Command::new("bpftool")
        .args(["-j", "prog", "show"])
        .output()
    else {
        return BTreeMap::new();
    };
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(&out.stdout) else {
        return BTreeMap::new();
    };
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| Some((p["id"].as_u64()?, p["name"].as_str()?.to_string())))
        .collect()
}

/// Sum of (run_time_ns, run_cnt) over programs, the change between two readings of the same
/// process (programs that appeared in between count from zero).
pub fn delta(before: &[ProgStat], after: &[ProgStat]) -> (u64, u64) {
    after.iter().fold((0, 0), |(ns, cnt), a| {
        let b = before.iter().find(|b| b.id == a.id);
        (
            ns + a.run_time_ns - b.map_or(0, |b| b.run_time_ns.min(a.run_time_ns)),
            cnt + a.run_cnt - b.map_or(0, |b| b.run_cnt.min(a.run_cnt)),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_program_fdinfo_and_skips_others() {
        let prog = "pos:\t0\nflags:\t02000002\nprog_type:\t5\nprog_id:\t126\nrun_time_ns:\t420800\nrun_cnt:\t295\n";
        let p = parse_fdinfo(prog).unwrap();
        assert_eq!((p.id, p.run_time_ns, p.run_cnt), (126, 420_800, 295));
        assert!(parse_fdinfo("pos:\t0\nflags:\t02\nmap_id:\t5\n").is_none());
    }

    #[test]
    fn delta_counts_new_programs_from_zero() {
        let s = |id, ns, cnt| ProgStat {
            id,
            name: String::new(),
            run_time_ns: ns,
            run_cnt: cnt,
        };
        let before = [s(1, 100, 1)];
        let after = [s(1, 300, 3), s(2, 50, 5)];
        assert_eq!(delta(&before, &after), (250, 7));
    }
}
