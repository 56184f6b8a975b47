//! A process whose memory another process fills, after it has spawned children the way most
//! runtimes do (posix_spawn: the child shares the parent's mm until it execs).
//! `spawnee MIB CHILDREN`: maps MIB of anonymous memory without touching it, spawns CHILDREN
//! `true` processes one after another with std's Command (posix_spawn, CLONE_VM|CLONE_VFORK
//! under glibc) and waits for each, then prints "buffer ADDR LEN" and sleeps. Another process
//! then writes the buffer with process_vm_writev: the page faults happen in this process's mm
//! from the writer's context (rss_stat's curr=0), and must still be counted as this process's.
// A test workload: a panic is how it reports a broken environment.
#![allow(clippy::unwrap_used, clippy::expect_used)]
use std::io::Write as _;

fn main() {
    let mut args = std::env::args().skip(1);
    let mib: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(64);
    let children: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(5);
    let len = mib << 20;
    // SAFETY: an anonymous private mapping at an address of the kernel's choosing; the result
    // is checked below and the memory is never accessed through this process.
    let buf = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    assert_ne!(buf, libc::MAP_FAILED, "mmap of {mib} MiB failed");
    for _ in 0..children {
        let status = std::process::Command::new("true")
            .status()
            .expect("spawning true");
        assert!(status.success());
    }
    let mut out = std::io::stdout();
    let _ = writeln!(out, "buffer {} {len}", buf as usize);
    let _ = out.flush();
    loop {
        std::thread::sleep(std::time::Duration::from_secs(3600));
    }
}
