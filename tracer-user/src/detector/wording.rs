//! Numbers as the one-sentence reason of an [`Assessment`](super::Assessment) shows them.

/// "1.5 MiB", "-300 KiB", "12 B": the one byte formatter (crate::util::format::bytes).
pub(super) fn fmt_bytes(b: f64) -> String {
    crate::util::format::bytes(b)
}

pub(super) fn fmt_rate(r: f64) -> String {
    format!("{}/s", fmt_bytes(r))
}

/// "45s", "12.5 min", "3.2 h".
pub(super) fn fmt_secs(s: f64) -> String {
    if s < 120.0 {
        format!("{s:.0}s")
    } else if s < 7200.0 {
        format!("{:.1} min", s / 60.0)
    } else {
        format!("{:.1} h", s / 3600.0)
    }
}

/// A timestamp as given (seconds since the caller's origin).
pub(super) fn fmt_t(t: f64) -> String {
    format!("{t:.0}s")
}
