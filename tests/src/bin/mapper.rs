//! Exact mapping patterns whose accounting the tests check:
//! - `mapper roundtrip MIB`: mmap MIB anonymous, touch, munmap the same region.
//! - `mapper go-style RESERVE_MIB COMMIT_MIB`: reserve with mmap(PROT_NONE) like the Go
//!   runtime, then commit part of it with mmap(MAP_FIXED, PROT_READ|PROT_WRITE) and touch it.
//! - `mapper madvise MIB`: mmap, touch, then release with madvise(MADV_DONTNEED).
//!
//! Prints "ready" once done and then sleeps, so the tracer can sample the final state.
use std::io::Write as _;

fn map(len: usize, prot: i32, flags: i32, addr: *mut libc::c_void) -> *mut u8 {
    // SAFETY: anonymous mapping; the result is checked.
    let p = unsafe {
        libc::mmap(
            addr,
            len,
            prot,
            flags | libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    assert_ne!(
        p,
        libc::MAP_FAILED,
        "mmap failed: {}",
        std::io::Error::last_os_error()
    );
    p as *mut u8
}

fn touch(p: *mut u8, len: usize) {
    for off in (0..len).step_by(4096) {
        // SAFETY: within a fresh read-write mapping of `len` bytes.
        unsafe { p.add(off).write_volatile(1) };
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mib = |i: usize| -> usize {
        args.get(i)
            .and_then(|a| a.parse::<usize>().ok())
            .unwrap_or(16)
            << 20
    };
    match args.first().map(String::as_str) {
        Some("roundtrip") => {
            let len = mib(1);
            let p = map(
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                0,
                std::ptr::null_mut(),
            );
            touch(p, len);
            // SAFETY: unmapping exactly what was mapped.
            assert_eq!(unsafe { libc::munmap(p.cast(), len) }, 0);
        }
        Some("go-style") => {
            let (reserve, commit) = (mib(1), mib(2));
            let base = map(
                reserve,
                libc::PROT_NONE,
                libc::MAP_NORESERVE,
                std::ptr::null_mut(),
            );
            let p = map(
                commit,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_FIXED,
                base.cast(),
            );
            assert_eq!(p, base);
            touch(p, commit);
        }
        Some("madvise") => {
            let len = mib(1);
            let p = map(
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                0,
                std::ptr::null_mut(),
            );
            touch(p, len);
            // SAFETY: advising on our own mapping.
            let rc = unsafe { libc::madvise(p.cast(), len, libc::MADV_DONTNEED) };
            assert_eq!(rc, 0);
        }
        other => {
            eprintln!(
                "usage: mapper roundtrip MIB | go-style RESERVE_MIB COMMIT_MIB | madvise MIB (got {other:?})"
            );
            std::process::exit(2);
        }
    }
    println!("ready");
    let _ = std::io::stdout().flush();
    std::thread::sleep(std::time::Duration::from_secs(3600));
}
