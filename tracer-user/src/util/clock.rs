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
