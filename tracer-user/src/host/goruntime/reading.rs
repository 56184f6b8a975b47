//! From raw words read out of a Go process to the figures leaktracer reports, refusing any
//! reading that a correct layout could not give: a wrong offset must end as a reason, never
//! as a number. Pure: unit-tested on made-up readings.

/// What one read of a Go process returned, field by field.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RawReading {
    pub heap_marked: u64,
    pub gc_percent_heap_goal: u64,
    pub memory_limit: i64,
    pub numgc: u32,
    pub allglen: u64,
    /// Free goroutines on the global lists (one count, or one per list).
    pub sched_free: Vec<i32>,
    pub ngsys: i32,
    /// Free goroutines cached on each P.
    pub p_free: Vec<i32>,
}

/// The runtime's figures, as the Go process itself would report them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GoRuntimeSample {
    /// Heap bytes the last GC found live (gcController.heapMarked); None before the first
    /// GC, when the runtime has not measured it.
    pub live_heap_bytes: Option<u64>,
    /// The GOGC heap goal (gcController.gcPercentHeapGoal); None when GOGC=off. With a
    /// memory limit below it, the runtime's effective goal is lower.
    pub heap_goal_bytes: Option<u64>,
    /// Completed GC cycles (MemStats.NumGC).
    pub gc_cycles: u32,
    /// The soft memory limit (debug.SetMemoryLimit / GOMEMLIMIT); None when unset.
    pub memory_limit_bytes: Option<u64>,
    /// Goroutines, counted as runtime.NumGoroutine does: all Gs minus the free ones minus
    /// the system ones. Lists change while they are read: the count may be off by a few.
    pub goroutines: u64,
    /// "go1.26.6".
    pub go_version: String,
}

/// More goroutine records than this cannot be (each costs at least a few KiB).
const MAX_ALLGLEN: u64 = 1 << 26;
/// GOMAXPROCS bound (the runtime's own limit is far lower in practice).
pub const MAX_PROCS: u64 = 1 << 12;
/// Goroutines the count may dip below zero by while the lists change under the read.
const RACE_SLACK: i64 = 64;

/// Check a reading and turn it into figures; `previous_gc_cycles` is the last accepted
/// reading of the same process, if any. Err is the reason the reading is not believed.
pub fn interpret(
    raw: &RawReading,
    previous_gc_cycles: Option<u32>,
    go_version: &str,
) -> Result<GoRuntimeSample, String> {
    if raw.allglen == 0 || raw.allglen > MAX_ALLGLEN {
        return Err(format!("allglen {} is not a goroutine count", raw.allglen));
    }
    if raw.p_free.is_empty() || raw.p_free.len() as u64 > MAX_PROCS {
        return Err(format!("{} Ps is not a GOMAXPROCS", raw.p_free.len()));
    }
    let free_or_sys = raw
        .sched_free
        .iter()
        .chain(&raw.p_free)
        .chain(std::iter::once(&raw.ngsys));
    if let Some(bad) = free_or_sys
        .clone()
        .find(|&&n| n < 0 || n as u64 > raw.allglen)
    {
        return Err(format!(
            "a free or system goroutine count ({bad}) outside 0..=allglen ({})",
            raw.allglen
        ));
    }
    let not_running: i64 = free_or_sys.map(|&n| i64::from(n)).sum();
    let goroutines = raw.allglen as i64 - not_running;
    if goroutines < -RACE_SLACK {
        return Err(format!(
            "more free and system goroutines ({not_running}) than goroutines ({})",
            raw.allglen
        ));
    }
    if let Some(before) = previous_gc_cycles
        && raw.numgc < before
    {
        return Err(format!(
            "the GC cycle count went back from {before} to {}",
            raw.numgc
        ));
    }
    if raw.memory_limit < 0 {
        return Err(format!("negative memory limit {}", raw.memory_limit));
    }
    let gc_ran = raw.numgc > 0;
    let heap_goal_bytes =
        (raw.gc_percent_heap_goal != u64::MAX).then_some(raw.gc_percent_heap_goal);
    if gc_ran
        && let Some(goal) = heap_goal_bytes
        && goal < raw.heap_marked
    {
        return Err(format!(
            "heap goal {goal} below the live heap {}",
            raw.heap_marked
        ));
    }
    Ok(GoRuntimeSample {
        live_heap_bytes: gc_ran.then_some(raw.heap_marked),
        heap_goal_bytes,
        gc_cycles: raw.numgc,
        memory_limit_bytes: (raw.memory_limit != i64::MAX).then_some(raw.memory_limit as u64),
        // gcount's own floor: the reader's goroutine is running.
        goroutines: goroutines.max(1) as u64,
        go_version: go_version.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sane() -> RawReading {
        RawReading {
            heap_marked: 32 << 20,
            gc_percent_heap_goal: 66 << 20,
            memory_limit: i64::MAX,
            numgc: 7,
            allglen: 520,
            sched_free: vec![3],
            ngsys: 12,
            p_free: vec![2, 2],
        }
    }

    #[test]
    fn a_sane_reading_gives_the_runtimes_figures() {
        let s = interpret(&sane(), Some(6), "go1.26.6").unwrap();
        assert_eq!(s.goroutines, 520 - 3 - 12 - 4);
        assert_eq!(s.live_heap_bytes, Some(32 << 20));
        assert_eq!(s.heap_goal_bytes, Some(66 << 20));
        assert_eq!(s.memory_limit_bytes, None, "MaxInt64 means no limit");
        assert_eq!(s.gc_cycles, 7);
    }

    #[test]
    fn before_the_first_gc_there_is_no_live_heap_and_gogc_off_has_no_goal() {
        let mut r = sane();
        r.numgc = 0;
        r.heap_marked = 0;
        r.gc_percent_heap_goal = u64::MAX;
        r.memory_limit = 1 << 30;
        let s = interpret(&r, None, "go1.19.8").unwrap();
        assert_eq!((s.live_heap_bytes, s.heap_goal_bytes), (None, None));
        assert_eq!(s.memory_limit_bytes, Some(1 << 30));
    }

    type Corruption = Box<dyn Fn(&mut RawReading)>;

    /// What a wrong offset reads: each is refused with a reason.
    #[test]
    fn impossible_readings_are_refused_with_a_reason() {
        let cases: Vec<(&str, Corruption)> = vec![
            ("allglen", Box::new(|r| r.allglen = 0)),
            ("allglen", Box::new(|r| r.allglen = u64::MAX)),
            ("GOMAXPROCS", Box::new(|r| r.p_free.clear())),
            ("outside", Box::new(|r| r.ngsys = -5)),
            ("outside", Box::new(|r| r.p_free[0] = 10_000)),
            (
                "more free",
                Box::new(|r| {
                    r.sched_free = vec![515];
                    r.p_free = vec![60, 60];
                }),
            ),
            ("went back", Box::new(|r| r.numgc = 3)),
            ("negative memory limit", Box::new(|r| r.memory_limit = -1)),
            (
                "below the live heap",
                Box::new(|r| r.gc_percent_heap_goal = 1),
            ),
        ];
        for (why, corrupt) in cases {
            let mut r = sane();
            corrupt(&mut r);
            let err = interpret(&r, Some(6), "go1.26.6").unwrap_err();
            assert!(err.contains(why), "{why}: {err}");
        }
    }
}
