//! Loads of this process other than the session's that the session's overhead budget prices
//! with its own: the daemon's growth-profile captures load the growth-site programs apart from
//! the session (a capture comes and goes), yet they run on the node's page faults, mmaps and
//! brks like the session's hooks. Registered while attached, their timed runs (run_time.rs)
//! join the session's in each measurement window and their run counts join the guard's
//! readings, so the budget counts them as the `stacks` hook, the first it pauses: then a
//! capture stops early (see daemon/auto_profile).
use std::{
    os::fd::AsFd as _,
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use anyhow::Context as _;
use aya::maps::{Map, MapData, PerCpuArray};
use tracer_common::{HOOK_STACKS, RunTime};

use crate::kernel::run_time::{self, Reading};

struct Registered {
    token: u64,
    /// The load's own run counters (`PROG_RUNS`), for the guard.
    runs: PerCpuArray<MapData, u64>,
    /// The load's timed runs (`HOOK_TIME`), for the measurement windows.
    time: PerCpuArray<MapData, RunTime>,
}

static PRICED: Mutex<Vec<Registered>> = Mutex::new(Vec::new());
static NEXT_TOKEN: AtomicU64 = AtomicU64::new(1);

/// Keeps a load's programs priced until dropped.
pub struct Registration {
    token: u64,
}

/// A second handle on one of `ebpf`'s per-CPU arrays (valid whatever its owner does).
fn reopen(ebpf: &aya::Ebpf, name: &str) -> anyhow::Result<MapData> {
    let Some(Map::PerCpuArray(m)) = ebpf.map(name) else {
        anyhow::bail!("the load has no per-CPU array {name}");
    };
    let fd = m
        .fd()
        .as_fd()
        .try_clone_to_owned()
        .with_context(|| format!("duplicating {name}'s fd"))?;
    MapData::from_fd(fd).with_context(|| format!("opening {name} again"))
}

/// Price `ebpf`'s growth-site programs with the session's until the registration is dropped.
pub fn register(ebpf: &aya::Ebpf) -> anyhow::Result<Registration> {
    let runs =
        PerCpuArray::try_from(Map::PerCpuArray(reopen(ebpf, "PROG_RUNS")?)).context("PROG_RUNS")?;
    let time =
        PerCpuArray::try_from(Map::PerCpuArray(reopen(ebpf, "HOOK_TIME")?)).context("HOOK_TIME")?;
    let token = NEXT_TOKEN.fetch_add(1, Ordering::Relaxed);
    if let Ok(mut v) = PRICED.lock() {
        v.push(Registered { token, runs, time });
    }
    Ok(Registration { token })
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Ok(mut v) = PRICED.lock() {
            v.retain(|r| r.token != self.token);
        }
    }
}

/// The registered loads' growth-site figures (their only hook), one reading per load.
pub fn readings() -> Vec<(u32, Reading)> {
    let Ok(v) = PRICED.lock() else {
        return Vec::new();
    };
    v.iter()
        .filter_map(|r| Some((HOOK_STACKS, run_time::read(&r.time, &r.runs, HOOK_STACKS)?)))
        .collect()
}

/// Runs of the registered loads' growth-site programs, summed over CPUs and loads.
pub fn stacks_runs() -> u64 {
    let Ok(v) = PRICED.lock() else {
        return 0;
    };
    v.iter()
        .filter_map(|r| run_time::hook_runs(&r.runs, HOOK_STACKS))
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_registered_prices_nothing() {
        let reg = Registration { token: 0 };
        drop(reg);
        assert!(readings().is_empty());
        assert_eq!(stacks_runs(), 0);
    }
}
