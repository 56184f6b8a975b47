//! Process churn: `spawner COUNT [PARALLEL]` runs COUNT short-lived processes
//! (fork + exec of /bin/true), PARALLEL at a time, and prints how many succeeded.
// A test workload: it exists to be run by a scenario, which reports its panic as a failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]
use std::process::{Child, Command};

fn main() {
    let mut args = std::env::args().skip(1);
    let count: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1000);
    let parallel: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(8);
    let mut running: Vec<Child> = Vec::new();
    let mut ok = 0usize;
    for _ in 0..count {
        if running.len() >= parallel {
            let c = running.remove(0);
            ok += usize::from(c.wait_with_output().is_ok_and(|o| o.status.success()));
        }
        running.push(Command::new("/bin/true").spawn().expect("spawn /bin/true"));
    }
    for c in running {
        ok += usize::from(c.wait_with_output().is_ok_and(|o| o.status.success()));
    }
    println!("{ok}");
}
