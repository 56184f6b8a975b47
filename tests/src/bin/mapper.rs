//! Exact mapping patterns whose accounting the tests check:
//! - `mapper roundtrip MIB`: mmap MIB anonymous, touch, munmap the same region.
//! - `mapper go-style RESERVE_MIB COMMIT_MIB`: reserve with mmap(PROT_NONE) like the Go
//!   runtime, then commit part of it with mmap(MAP_FIXED, PROT_READ|PROT_WRITE) and touch it.
//! - `mapper madvise MIB`: mmap, touch, then release with madvise(MADV_DONTNEED).
//! - `mapper threads THREADS CALLS KIB`: THREADS threads at once (more than the CPUs, so that
//!   their calls interleave on each CPU and sleep in the kernel), each making CALLS pairs of
//!   an anonymous mmap of KIB KiB with MAP_POPULATE (the kernel allocates every page inside
//!   the call, where the thread can be preempted or moved to another CPU) then its munmap,
//!   and one mmap of length 0 (fails with EINVAL). Exactly THREADS*CALLS successful mmaps of
//!   that size and as many failed ones.
//! - `mapper mremap MIB GROW_MIB SHRINK_MIB`: mmap MIB, grow it by GROW_MIB with mremap
//!   (MREMAP_MAYMOVE), then shrink it by SHRINK_MIB, and one mremap that fails (EINVAL: an
//!   unaligned address). Exactly two successful mremap calls.
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

/// One thread of `mapper threads`: CALLS populated mmaps of `len` bytes, each unmapped at
/// once, and as many failing mmaps.
fn map_in_a_thread(calls: usize, len: usize) {
    for _ in 0..calls {
        let p = map(
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_POPULATE,
            std::ptr::null_mut(),
        );
        // SAFETY: unmapping exactly what was mapped.
        assert_eq!(unsafe { libc::munmap(p.cast(), len) }, 0);
        // SAFETY: a zero length is refused (EINVAL) before anything is mapped.
        let failed = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                0,
                libc::PROT_READ,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_eq!(failed, libc::MAP_FAILED);
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
        Some("threads") => {
            let arg = |i: usize| args.get(i).and_then(|a| a.parse::<usize>().ok());
            let (threads, calls, kib) = (
                arg(1).unwrap_or(8),
                arg(2).unwrap_or(200),
                arg(3).unwrap_or(384),
            );
            let workers: Vec<_> = (0..threads)
                .map(|_| std::thread::spawn(move || map_in_a_thread(calls, kib << 10)))
                .collect();
            for w in workers {
                if w.join().is_err() {
                    eprintln!("mapper: a mapping thread failed");
                    std::process::exit(1);
                }
            }
        }
        Some("mremap") => {
            let (len, grow, shrink) = (mib(1), mib(2), mib(3));
            let p = map(
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                0,
                std::ptr::null_mut(),
            );
            // SAFETY: resizing our own mapping; the results are checked.
            let grown = unsafe { libc::mremap(p.cast(), len, len + grow, libc::MREMAP_MAYMOVE) };
            assert_ne!(grown, libc::MAP_FAILED, "mremap grow failed");
            // SAFETY: as above; shrinking in place never moves.
            let shrunk = unsafe { libc::mremap(grown, len + grow, len + grow - shrink, 0) };
            assert_eq!(shrunk, grown, "mremap shrink failed");
            // SAFETY: an unaligned old address is refused (EINVAL) before anything changes.
            let failed = unsafe { libc::mremap(grown.cast::<u8>().add(1).cast(), 4096, 8192, 0) };
            assert_eq!(failed, libc::MAP_FAILED);
        }
        other => {
            eprintln!(
                "usage: mapper roundtrip MIB | go-style RESERVE_MIB COMMIT_MIB | madvise MIB | threads THREADS CALLS KIB | mremap MIB GROW_MIB SHRINK_MIB (got {other:?})"
            );
            std::process::exit(2);
        }
    }
    println!("ready");
    let _ = std::io::stdout().flush();
    std::thread::sleep(std::time::Duration::from_secs(3600));
}
