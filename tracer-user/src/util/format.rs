//! Human renderings of bytes, rates and durations for tables.

/// 1536 -> "1.5 KiB": binary units, one decimal below 10. The one byte formatter: tables,
/// headers and the detector's reason sentences all show sizes this way.
pub fn bytes(b: f64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let neg = b < 0.0;
    let mut v = b.abs();
    let mut i = 0;
    while v >= 1024.0 && i < UNITS.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    let s = if i == 0 {
        format!("{v:.0} {}", UNITS[i])
    } else if v < 10.0 {
        format!("{v:.1} {}", UNITS[i])
    } else {
        format!("{v:.0} {}", UNITS[i])
    };
    if neg { format!("-{s}") } else { s }
}

/// Seconds as "45s", "12m", "3h05m", "2d04h".
pub fn duration(secs: f64) -> String {
    if !secs.is_finite() || secs < 0.0 {
        return "-".into();
    }
    let s = secs as u64;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        3600..=86399 => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d{:02}h", s / 86400, (s % 86400) / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders() {
        assert_eq!(bytes(0.0), "0 B");
        assert_eq!(bytes(1536.0), "1.5 KiB");
        assert_eq!(bytes(100.0 * 1048576.0), "100 MiB");
        assert_eq!(bytes(-2048.0), "-2.0 KiB");
        assert_eq!(duration(45.2), "45s");
        assert_eq!(duration(754.0), "12m34s");
        assert_eq!(duration(3.0 * 3600.0 + 300.0), "3h05m");
        assert_eq!(duration(f64::NAN), "-");
    }
}
