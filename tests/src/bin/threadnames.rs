//! A multi-threaded process whose threads are renamed and act first: the leader touches
//! LEADER_MIB of heap and then only sleeps; WORKERS threads rename themselves (prctl
//! PR_SET_NAME "tn-worker-N") and loop on mmap/munmap of untouched anonymous memory, so
//! after a tracer attaches, the first kernel event of this process comes from a worker, and
//! no RSS counter moves. `threadnames [LEADER_MIB] [WORKERS]`; prints "ready".
// A test workload: it exists to be run by a scenario, which reports its panic as a failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]
use std::{ffi::CString, io::Write as _, time::Duration};

fn main() {
    let mut args = std::env::args().skip(1);
    let mib: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(32);
    let workers: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(2);
    let held = vec![0x33u8; mib << 20];
    std::hint::black_box(&held);
    for i in 0..workers {
        std::thread::spawn(move || {
            let name = CString::new(format!("tn-worker-{i}")).expect("no NUL in the name");
            // SAFETY: PR_SET_NAME reads a NUL-terminated string, which `name` is.
            unsafe { libc::prctl(libc::PR_SET_NAME, name.as_ptr()) };
            loop {
                // SAFETY: an anonymous private mapping, never touched, unmapped at once.
                unsafe {
                    let len = 64 << 10;
                    let p = libc::mmap(
                        std::ptr::null_mut(),
                        len,
                        libc::PROT_READ | libc::PROT_WRITE,
                        libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                        -1,
                        0,
                    );
                    if p != libc::MAP_FAILED {
                        libc::munmap(p, len);
                    }
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        });
    }
    // Let every worker rename itself before saying ready.
    std::thread::sleep(Duration::from_millis(200));
    let _ = writeln!(std::io::stdout(), "ready");
    let _ = std::io::stdout().flush();
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}
