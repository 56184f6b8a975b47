//! A C-style leaker: malloc + touch at a fixed rate, never free.
//! `leaker RATE_KIB_PER_SEC [SECONDS]` (default: run until killed).
use std::time::{Duration, Instant};

fn main() {
    let mut args = std::env::args().skip(1);
    let rate_kib: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(4096);
    let secs: Option<u64> = args.next().and_then(|a| a.parse().ok());
    // 10 steps a second keeps the growth smooth at the sampler's resolution.
    let step = (rate_kib * 1024 / 10) as usize;
    let start = Instant::now();
    let mut n: u32 = 0;
    loop {
        if secs.is_some_and(|s| start.elapsed() >= Duration::from_secs(s)) {
            break;
        }
        // SAFETY: malloc'd block is written within its bounds and intentionally never freed.
        unsafe {
            let p = libc::malloc(step) as *mut u8;
            if !p.is_null() {
                std::ptr::write_bytes(p, 0xa5, step);
            }
            // Never read: without this, an optimised build drops the allocation altogether.
            std::hint::black_box(p);
        }
        n += 1;
        let next = Duration::from_millis(100) * n;
        if let Some(wait) = next.checked_sub(start.elapsed()) {
            std::thread::sleep(wait);
        }
    }
}
