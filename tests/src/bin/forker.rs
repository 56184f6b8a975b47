//! A process that forks a child which never execs: the child shares the parent's touched heap
//! (copy-on-write) and then only sleeps, so no RSS counter of its own moves.
//! `forker [MIB]`: touches MIB of heap, prints "ready", forks when a line arrives on stdin,
//! prints "child PID", then sleeps. The child dies with the parent (PR_SET_PDEATHSIG).
use std::io::{BufRead as _, Write as _};

fn main() {
    let mib: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(32);
    let held = vec![0x44u8; mib << 20];
    std::hint::black_box(&held);
    let mut out = std::io::stdout();
    let _ = writeln!(out, "ready");
    let _ = out.flush();
    let mut line = String::new();
    let _ = std::io::stdin().lock().read_line(&mut line);
    // SAFETY: single-threaded here; the child calls only async-signal-safe functions.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: prctl and pause are async-signal-safe and take no pointers.
        unsafe {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            loop {
                libc::pause();
            }
        }
    }
    let _ = writeln!(out, "child {pid}");
    let _ = out.flush();
    loop {
        std::thread::sleep(std::time::Duration::from_secs(3600));
    }
}
