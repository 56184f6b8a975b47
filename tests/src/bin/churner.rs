//! Paced process churn: `churner COUNT PARALLEL PROGRAM [PER_SEC]` runs COUNT short-lived
//! processes (fork + exec of PROGRAM, which must exit 0), at most PARALLEL at a time and,
//! with PER_SEC, no faster than that; prints how many succeeded. COUNT 0 runs until killed.
//! Unlike `spawner` (always /bin/true), the program is chosen by the caller, so a test can
//! give its processes a command name of their own (a copy of /bin/true under another name)
//! and tell them apart from other work on the machine.
use std::{
    process::{Child, Command},
    time::{Duration, Instant},
};

fn main() {
    let mut args = std::env::args().skip(1);
    let count: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(1000);
    let parallel: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(8).max(1);
    let program = args.next().unwrap_or_else(|| "/bin/true".to_string());
    let per_sec: Option<f64> = args.next().and_then(|a| a.parse().ok());
    let start = Instant::now();
    let mut running: Vec<Child> = Vec::with_capacity(parallel);
    let mut ok = 0u64;
    let mut n = 0u64;
    while count == 0 || n < count {
        if running.len() >= parallel {
            let mut c = running.remove(0);
            ok += u64::from(c.wait().is_ok_and(|s| s.success()));
        }
        if let Some(rate) = per_sec {
            let due = Duration::from_secs_f64(n as f64 / rate);
            if let Some(wait) = due.checked_sub(start.elapsed()) {
                std::thread::sleep(wait);
            }
        }
        running.push(
            Command::new(&program)
                .spawn()
                .unwrap_or_else(|e| panic!("spawn {program}: {e}")),
        );
        n += 1;
    }
    for mut c in running {
        ok += u64::from(c.wait().is_ok_and(|s| s.success()));
    }
    println!("{ok}");
}
