//! Section 1 (workload slowdown) and the data of section 2 (cost per event): every tracer in
//! turn, alternating the order every round, runs every workload; node-wide tracers stay up
//! for the whole round, memleak is attached to each workload process. The slowdown is the
//! median over rounds of (ops/s traced) / (ops/s untraced in the same round).
use std::collections::BTreeMap;

use serde::Serialize;

use super::{
    bpf::ProgStat,
    sys,
    tracers::{self, Env, Running, Tracer},
    workloads::{self, Workload},
};

/// One workload × tracer: measured, or why not.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Cell {
    Measured {
        /// ops/s of each round
        ops_per_sec: Vec<f64>,
        /// median over rounds of traced / untraced ops/s (the untraced cell: 1)
        ratio: f64,
        /// (1 - ratio) in percent
        slowdown_pct: f64,
    },
    NotAvailable(String),
}

#[derive(Debug, Serialize)]
pub struct Row {
    pub workload: String,
    pub cells: BTreeMap<Tracer, Cell>,
}

/// Per tracer and program: summed run time (ns) and runs over the whole section.
pub type PerEvent = BTreeMap<Tracer, BTreeMap<String, (u64, u64)>>;

#[derive(Debug, Serialize)]
pub struct Slowdown {
    pub rounds: usize,
    pub seconds_per_run: u64,
    pub rows: Vec<Row>,
    #[serde(skip)]
    pub per_event: PerEvent,
    /// Harness failures behind "n/a" cells (not the cells that cannot apply, nor peers absent
    /// from the machine, which `bench::gaps` reports from the environment).
    #[serde(skip)]
    pub errors: Vec<String>,
}

/// A tracer that cannot measure a workload by design (memleak follows one pid; Go does not
/// allocate through libc): an "n/a" with its reason, never a harness failure.
#[derive(Debug)]
struct NotApplicable(&'static str);

impl std::fmt::Display for NotApplicable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for NotApplicable {}

#[derive(Default)]
struct Samples {
    /// (workload, tracer) -> (round, ops/s)
    ops: BTreeMap<(String, Tracer), Vec<(usize, f64)>>,
    /// why a tracer, or a tracer on a workload, could not run
    failed: BTreeMap<(Option<String>, Tracer), String>,
    per_event: PerEvent,
    /// the harness failures among `failed`
    errors: Vec<String>,
}

impl Samples {
    fn add_programs(&mut self, tracer: Tracer, progs: &[ProgStat]) {
        let by_prog = self.per_event.entry(tracer).or_default();
        for p in progs {
            let e = by_prog.entry(p.name.clone()).or_default();
            e.0 += p.run_time_ns;
            e.1 += p.run_cnt;
        }
    }

    fn tracer_failed(&self, tracer: Tracer) -> Option<&String> {
        self.failed.get(&(None, tracer))
    }

    fn run_failed(&self, w: &Workload, tracer: Tracer) -> Option<&String> {
        self.failed.get(&(Some(w.name().to_string()), tracer))
    }
}

pub fn run(
    env: &Env,
    workloads: &[Workload],
    missing: &[(String, String)],
    rounds: usize,
    secs: u64,
) -> Slowdown {
    let mut s = Samples::default();
    for round in 0..rounds {
        let mut order = Tracer::ALL.to_vec();
        let mut ws = workloads.to_vec();
        // Alternate: drift in the machine's speed spreads over every configuration.
        if round % 2 == 1 {
            order.reverse();
            ws.reverse();
        }
        for tracer in order {
            run_tracer(env, &mut s, tracer, &ws, round, secs);
        }
    }
    let mut rows: Vec<Row> = workloads.iter().map(|w| row(&s, w)).collect();
    for (name, why) in missing {
        rows.push(Row {
            workload: name.clone(),
            cells: Tracer::ALL
                .iter()
                .map(|t| (*t, Cell::NotAvailable(why.clone())))
                .collect(),
        });
    }
    Slowdown {
        rounds,
        seconds_per_run: secs,
        rows,
        per_event: s.per_event,
        errors: s.errors,
    }
}

/// One tracer, one round: start it, run every workload, stop it.
fn run_tracer(
    env: &Env,
    s: &mut Samples,
    tracer: Tracer,
    ws: &[Workload],
    round: usize,
    secs: u64,
) {
    if s.tracer_failed(tracer).is_some() {
        return;
    }
    if let (Tracer::Memleak, Err(why)) = (tracer, &env.memleak) {
        s.failed.insert((None, tracer), why.clone());
        return;
    }
    let running = match tracers::start(tracer, env, &format!("slowdown-{tracer:?}")) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("bench: {}: n/a: {e:#}", tracer.label());
            // bpftrace not installed is a gap of the environment, reported once from there.
            if !(tracer == Tracer::Bpftrace && env.bpftrace_missing.is_some()) {
                s.errors
                    .push(format!("slowdown: starting {}: {e:#}", tracer.label()));
            }
            s.failed.insert((None, tracer), format!("{e:#}"));
            return;
        }
    };
    for w in ws {
        if s.run_failed(w, tracer).is_some() {
            continue;
        }
        match run_one(env, s, tracer, w, secs) {
            Ok(rate) => {
                eprintln!(
                    "bench: round {} | {:<38} | {:<36} | {rate:>12.0} ops/s",
                    round + 1,
                    w.name(),
                    tracer.label()
                );
                s.ops
                    .entry((w.name().to_string(), tracer))
                    .or_default()
                    .push((round, rate));
            }
            Err(e) => {
                eprintln!("bench: {} on {}: n/a: {e:#}", tracer.label(), w.name());
                if e.downcast_ref::<NotApplicable>().is_none() {
                    s.errors.push(format!(
                        "slowdown: {} on {}: {e:#}",
                        tracer.label(),
                        w.name()
                    ));
                }
                s.failed
                    .insert((Some(w.name().to_string()), tracer), format!("{e:#}"));
            }
        }
    }
    if let Some(r) = running {
        let progs = r.stop();
        s.add_programs(tracer, &progs);
    }
}

fn run_one(
    env: &Env,
    s: &mut Samples,
    tracer: Tracer,
    w: &Workload,
    secs: u64,
) -> anyhow::Result<f64> {
    match w {
        Workload::Stress { args, .. } => {
            if tracer == Tracer::Memleak {
                return Err(NotApplicable(
                    "stress-ng forks its workers after start; memleak -p follows one pid (see the C malloc row)",
                )
                .into());
            }
            workloads::stress(args, secs)
        }
        Workload::Gated {
            exe, libc_alloc, ..
        } => {
            let gated = workloads::Gated::spawn(exe, secs)?;
            let attached: Option<Running> = if tracer == Tracer::Memleak {
                let m = env.memleak.as_ref().map_err(|e| anyhow::anyhow!("{e}"))?;
                Some(m.attach(env, gated.pid(), "slowdown-memleak")?)
            } else {
                None
            };
            let rate = gated.go()?;
            if let Some(r) = attached {
                let progs = r.stop();
                if progs.iter().all(|p| p.run_cnt == 0) {
                    if !libc_alloc {
                        return Err(NotApplicable(
                            "memleak attached, but its uprobes on libc's allocator never fired: this program does not allocate through libc (Go has its own allocator)",
                        )
                        .into());
                    }
                    anyhow::bail!(
                        "memleak attached, but its uprobes on libc's allocator never fired on a program that allocates through libc"
                    );
                }
                s.add_programs(tracer, &progs);
            }
            Ok(rate)
        }
    }
}

fn row(s: &Samples, w: &Workload) -> Row {
    let name = w.name().to_string();
    let base: BTreeMap<usize, f64> = s
        .ops
        .get(&(name.clone(), Tracer::None))
        .map(|v| v.iter().copied().collect())
        .unwrap_or_default();
    let cells = Tracer::ALL
        .iter()
        .map(|&t| {
            let why = s.tracer_failed(t).or_else(|| s.run_failed(w, t));
            let cell = match (why, s.ops.get(&(name.clone(), t))) {
                (Some(why), _) => Cell::NotAvailable(why.clone()),
                (None, Some(samples)) => measured(samples, &base),
                (None, None) => Cell::NotAvailable("not run".into()),
            };
            (t, cell)
        })
        .collect();
    Row {
        workload: name,
        cells,
    }
}

/// Median of the per-round ratios to the untraced run of the same round.
fn measured(samples: &[(usize, f64)], base: &BTreeMap<usize, f64>) -> Cell {
    let ratios: Vec<f64> = samples
        .iter()
        .filter_map(|(round, ops)| Some(ops / base.get(round).filter(|b| **b > 0.0)?))
        .collect();
    match sys::median(&ratios) {
        Some(ratio) => Cell::Measured {
            ops_per_sec: samples.iter().map(|(_, o)| o.round()).collect(),
            ratio: (ratio * 1000.0).round() / 1000.0,
            slowdown_pct: ((1.0 - ratio) * 1000.0).round() / 10.0,
        },
        None => Cell::NotAvailable("no untraced baseline".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratio_is_the_median_of_same_round_ratios() {
        let base: BTreeMap<usize, f64> = [(0, 100.0), (1, 50.0), (2, 100.0)].into();
        let Cell::Measured {
            ratio,
            slowdown_pct,
            ..
        } = measured(&[(0, 90.0), (1, 40.0), (2, 95.0)], &base)
        else {
            panic!("expected a measurement")
        };
        assert_eq!(ratio, 0.9);
        assert_eq!(slowdown_pct, 10.0);
    }
}
