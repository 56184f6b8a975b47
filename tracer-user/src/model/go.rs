//! A Go process's runtime as series: its live heap after each GC seen, and its goroutine
//! count, from the readings host/goruntime makes every round. The live heap after a GC is
//! what a Go leak grows, exactly, without waiting for RSS troughs; the goroutine count is
//! what a retry loop that never gives up its goroutines grows.
use serde::Serialize;

use crate::{detector::Point, host::goruntime::GoRuntimeSample, model::series::Ring};

/// Post-GC live heaps kept (one per GC cycle seen).
const GC_POINTS: usize = 120;
/// Goroutine counts kept (stored on change).
const GOROUTINE_POINTS: usize = 300;

/// What the runtime said at the latest round, as views show it.
#[derive(Clone, Debug, PartialEq, Serialize, serde::Deserialize)]
pub struct GoFigures {
    pub go_version: String,
    /// Heap bytes the last GC found live (None before the first GC).
    pub live_heap_bytes: Option<u64>,
    /// The GOGC heap goal (None with GOGC=off).
    pub heap_goal_bytes: Option<u64>,
    pub gc_cycles: u32,
    /// The soft memory limit (None when unset).
    pub memory_limit_bytes: Option<u64>,
    pub goroutines: u64,
}

impl From<&GoRuntimeSample> for GoFigures {
    fn from(s: &GoRuntimeSample) -> Self {
        Self {
            go_version: s.go_version.clone(),
            live_heap_bytes: s.live_heap_bytes,
            heap_goal_bytes: s.heap_goal_bytes,
            gc_cycles: s.gc_cycles,
            memory_limit_bytes: s.memory_limit_bytes,
            goroutines: s.goroutines,
        }
    }
}

/// One Go process's runtime series.
#[derive(Clone, Debug)]
pub struct GoState {
    pub latest: GoFigures,
    /// Session time of the latest reading.
    pub t: f64,
    /// (t, live heap) once per GC cycle seen: the heap each GC left live.
    pub post_gc: Ring<Point>,
    /// (t, goroutines), on change.
    pub goroutines: Ring<Point>,
}

impl GoState {
    pub fn new(t: f64, f: GoFigures) -> Self {
        let mut s = Self {
            latest: f.clone(),
            t,
            post_gc: Ring::new(GC_POINTS),
            goroutines: Ring::new(GOROUTINE_POINTS),
        };
        s.fold(t, f);
        s
    }

    /// A reading at session time `t`. A new GC cycle adds its live heap; the goroutine
    /// count is stored when it changed.
    pub fn fold(&mut self, t: f64, f: GoFigures) {
        let new_cycle = self.post_gc.is_empty() || f.gc_cycles != self.latest.gc_cycles;
        if let (true, Some(live)) = (new_cycle && f.gc_cycles > 0, f.live_heap_bytes) {
            self.post_gc.push(Point {
                t,
                bytes: live as f64,
            });
        }
        if self
            .goroutines
            .last()
            .is_none_or(|p| p.bytes != f.goroutines as f64)
        {
            self.goroutines.push(Point {
                t,
                bytes: f.goroutines as f64,
            });
        }
        self.latest = f;
        self.t = t;
    }

    /// The goroutine counts as a step function up to `now` (stored on change only).
    pub fn goroutine_points(&self, now: f64) -> Vec<Point> {
        let mut pts: Vec<Point> = self.goroutines.iter().copied().collect();
        if let Some(last) = pts.last().copied()
            && now - last.t > 1.0
        {
            let gap = now - last.t;
            let n = gap.min(60.0) as usize;
            pts.extend((1..=n).map(|i| Point {
                t: last.t + gap * i as f64 / n as f64,
                bytes: last.bytes,
            }));
        }
        pts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figures(gc: u32, live: u64, goroutines: u64) -> GoFigures {
        GoFigures {
            go_version: "go1.26.6".into(),
            live_heap_bytes: (gc > 0).then_some(live),
            heap_goal_bytes: Some(live * 2),
            gc_cycles: gc,
            memory_limit_bytes: None,
            goroutines,
        }
    }

    #[test]
    fn one_point_per_gc_cycle_and_goroutines_on_change() {
        let mut s = GoState::new(0.0, figures(0, 0, 5));
        s.fold(1.0, figures(1, 10, 5));
        s.fold(2.0, figures(1, 10, 6));
        s.fold(3.0, figures(3, 20, 6));
        let gc: Vec<(f64, f64)> = s.post_gc.iter().map(|p| (p.t, p.bytes)).collect();
        assert_eq!(
            gc,
            [(1.0, 10.0), (3.0, 20.0)],
            "no live heap before the first GC"
        );
        let g: Vec<f64> = s.goroutines.iter().map(|p| p.bytes).collect();
        assert_eq!(g, [5.0, 6.0]);
        assert_eq!(s.goroutine_points(10.0).last().unwrap().t, 10.0);
    }
}
