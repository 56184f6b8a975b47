//! Programs of this process's other loads that the session's overhead budget prices with its
//! own: the daemon's growth-profile captures load the growth-site programs apart from the
//! session (a capture comes and goes), yet they run on the node's page faults, mmaps and brks
//! like the session's hooks. Registered while attached, their costs join the session's in
//! each measurement window under their program names, and their run counts join the guard's
//! readings, so the budget counts them as the `stacks` hook, the first it pauses: then a
//! capture stops early (see daemon/auto_profile).
use std::{
    os::fd::{AsFd as _, AsRawFd as _, OwnedFd},
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use anyhow::Context as _;
use aya::maps::{Map, MapData, PerCpuArray};
use tracer_common::HOOK_STACKS;

use crate::kernel::budget::{ProgCost, fdinfo_cost};

struct Registered {
    token: u64,
    /// Each program's name and a duplicate of its fd (valid whatever its owner does).
    programs: Vec<(&'static str, OwnedFd)>,
    /// The load's own run counters (`HOOK_RUNS`), for the guard.
    runs: Option<PerCpuArray<MapData, u64>>,
}

static PRICED: Mutex<Vec<Registered>> = Mutex::new(Vec::new());
static NEXT_TOKEN: AtomicU64 = AtomicU64::new(1);

/// Keeps a load's programs priced until dropped.
pub struct Registration {
    token: u64,
}

/// Price `ebpf`'s attached growth-site programs (`names`) with the session's until the
/// registration is dropped.
pub fn register(ebpf: &aya::Ebpf, names: &[&'static str]) -> anyhow::Result<Registration> {
    let mut programs = Vec::new();
    for &name in names {
        let Some(p) = ebpf.program(name) else {
            continue;
        };
        let fd = p
            .fd()
            .with_context(|| format!("program {name} not loaded"))?
            .as_fd()
            .try_clone_to_owned()
            .with_context(|| format!("duplicating program {name}'s fd"))?;
        programs.push((name, fd));
    }
    let runs = match ebpf.map("HOOK_RUNS") {
        Some(Map::PerCpuArray(m)) => {
            let fd = m
                .fd()
                .as_fd()
                .try_clone_to_owned()
                .context("duplicating HOOK_RUNS's fd")?;
            let data = MapData::from_fd(fd).context("opening HOOK_RUNS again")?;
            Some(PerCpuArray::try_from(Map::PerCpuArray(data)).context("HOOK_RUNS")?)
        }
        _ => None,
    };
    let token = NEXT_TOKEN.fetch_add(1, Ordering::Relaxed);
    if let Ok(mut v) = PRICED.lock() {
        v.push(Registered {
            token,
            programs,
            runs,
        });
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

/// The registered programs' cumulative costs, summed per name (two captures at once are one
/// hook's cost).
pub fn costs() -> Vec<ProgCost> {
    let Ok(v) = PRICED.lock() else {
        return Vec::new();
    };
    let mut out: Vec<ProgCost> = Vec::new();
    for (name, fd) in v.iter().flat_map(|r| r.programs.iter()) {
        let Some((run_ns, runs)) = fdinfo_cost(fd.as_raw_fd()) else {
            continue;
        };
        match out.iter_mut().find(|c| c.name == *name) {
            Some(c) => {
                c.run_ns += run_ns;
                c.runs += runs;
            }
            None => out.push(ProgCost {
                name: name.to_string(),
                run_ns,
                runs,
            }),
        }
    }
    out
}

/// Runs of the registered loads' growth-site programs, summed over CPUs and loads.
pub fn stacks_runs() -> u64 {
    let Ok(v) = PRICED.lock() else {
        return 0;
    };
    v.iter()
        .filter_map(|r| r.runs.as_ref()?.get(&HOOK_STACKS, 0).ok())
        .map(|per_cpu| per_cpu.iter().sum::<u64>())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_registered_prices_nothing() {
        let reg = Registration { token: 0 };
        drop(reg);
        assert!(costs().is_empty());
        assert_eq!(stacks_runs(), 0);
    }
}
