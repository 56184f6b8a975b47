//! Clocks. Kernel timestamps are CLOCK_MONOTONIC (bpf_ktime_get_ns); the trace header pairs
//! one monotonic reading with the wall clock so any event can be put on a calendar.
use std::time::{SystemTime, UNIX_EPOCH};

pub fn monotonic_secs() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid pointer to a timespec; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

/// CPU time the calling thread has used so far (ns). The RSS fallback and the Go reader run
/// on the sampling thread: the difference of two readings around them is their own cost,
/// whatever else the process's other threads (event reader, sinks) do meanwhile.
pub fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid pointer to a timespec; CLOCK_THREAD_CPUTIME_ID exists on every Linux
    // this runs on (2.6.12+), and on failure ts stays zeroed, which reads as 0 ns.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    (ts.tv_sec as u64).saturating_mul(1_000_000_000) + ts.tv_nsec as u64
}

pub fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// RFC 3339 rendering of a unix-millisecond timestamp.
pub fn rfc3339(unix_ms: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + std::time::Duration::from_millis(unix_ms))
        .to_string()
}

/// Times are written with millisecond precision: more would be noise, and it keeps lines short.
pub fn round_ms(t: f64) -> f64 {
    (t * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_thread_cpu_clock_counts_this_threads_work_only() {
        let t0 = thread_cpu_ns();
        // Another thread's work is not ours.
        std::thread::spawn(|| {
            let until = std::time::Instant::now() + std::time::Duration::from_millis(30);
            while std::time::Instant::now() < until {
                std::hint::spin_loop();
            }
        })
        .join()
        .unwrap();
        let after_other = thread_cpu_ns();
        let until = std::time::Instant::now() + std::time::Duration::from_millis(30);
        while std::time::Instant::now() < until {
            std::hint::spin_loop();
        }
        let after_own = thread_cpu_ns();
        assert!(after_other - t0 < 20_000_000, "{} ns", after_other - t0);
        assert!(
            after_own - after_other >= 10_000_000,
            "{} ns",
            after_own - after_other
        );
    }
}
