//! A cache that fills and then stays flat: after DELAY_SECS, malloc + touch RATE_MIB_PER_SEC
//! until TOTAL_MIB are resident, then hold them (idle) until killed.
//! `filler TOTAL_MIB RATE_MIB_PER_SEC [DELAY_SECS]`; prints "full" once the fill is done.
use std::{
    io::Write as _,
    time::{Duration, Instant},
};

fn main() {
    let mut args = std::env::args().skip(1);
    let total_mib: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(40);
    let rate_mib: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(8);
    let delay: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(0);
    std::thread::sleep(Duration::from_secs(delay));
    // 10 steps a second keeps the rise smooth at the sampler's resolution.
    let step = (rate_mib << 20) / 10;
    let steps = (total_mib << 20).div_ceil(step.max(1));
    let start = Instant::now();
    for n in 1..=steps {
        // SAFETY: the malloc'd block is written within its bounds and deliberately kept.
        unsafe {
            let p = libc::malloc(step as usize) as *mut u8;
            if !p.is_null() {
                std::ptr::write_bytes(p, 0x5a, step as usize);
            }
            // Never read: without this, an optimised build drops the allocation altogether.
            std::hint::black_box(p);
        }
        let next = Duration::from_millis(100) * n as u32;
        if let Some(wait) = next.checked_sub(start.elapsed()) {
            std::thread::sleep(wait);
        }
    }
    let _ = writeln!(std::io::stdout(), "full");
    let _ = std::io::stdout().flush();
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}
