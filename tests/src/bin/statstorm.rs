//! A runaway file walker: stat() on names that do not exist, each new, so every call leaves a
//! negative dentry behind and the dentry slab cache grows (about 200 bytes a name).
//! `statstorm SECONDS RATE_PER_SEC` prints "storming" once started, then runs for SECONDS.
// A test workload: failing loudly is its job.
#![allow(clippy::unwrap_used, clippy::expect_used)]
use std::time::{Duration, Instant};

fn main() {
    let mut args = std::env::args().skip(1);
    let secs: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(20);
    let rate: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let dir = std::env::temp_dir().join(format!("statstorm-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("creating the storm's directory");
    println!("storming");
    let start = Instant::now();
    let mut n: u64 = 0;
    while start.elapsed() < Duration::from_secs(secs) {
        // Paced in batches of 1000: the rate, not the CPU, sets the growth.
        for _ in 0..1000 {
            let _ = std::fs::metadata(dir.join(format!("missing-{n}")));
            n += 1;
        }
        let due = Duration::from_secs_f64(n as f64 / rate as f64);
        if let Some(wait) = due.checked_sub(start.elapsed()) {
            std::thread::sleep(wait);
        }
    }
    let _ = std::fs::remove_dir(&dir);
    println!("done {n}");
}
