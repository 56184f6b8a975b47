//! Short-lived processes with exactly known counts:
//! `brief COUNT BRK_CALLS MMAP_CALLS [MIN_MS MAX_MS [MAP_KIB [MADVISE_CALLS]]]` forks COUNT
//! children, a few at a time. Each child names itself `brief-child`, makes exactly BRK_CALLS
//! brk calls (one brk(0), then growths of one page each) and MMAP_CALLS anonymous MAP_KIB-KiB
//! mmaps (64 by default; every page written, so its private memory peaks at least at their
//! sum). With MADVISE_CALLS (at most 64 maps then), it then makes that many
//! madvise(MADV_DONTNEED) calls of one page, the first half on CPU 0 and the second half on
//! CPU 1 (so that they are counted on two CPUs), and munmaps every map. Then it sleeps
//! MIN_MS..=MAX_MS milliseconds and exits. The parent prints `child PID LIFETIME_MS` per
//! child, then `done`.
//!
//! Children make their syscalls directly (no libc allocator in between), so the counts a
//! tracer must report are exactly the arguments.
use std::io::Write as _;

fn arg(args: &[String], i: usize, default: u64) -> u64 {
    args.get(i).and_then(|a| a.parse().ok()).unwrap_or(default)
}

/// Maps a child can release (kept in a fixed array: the child does not allocate).
const MAX_RELEASED_MAPS: usize = 64;

/// Pin the calling process to one CPU (a no-op where that CPU is not available).
///
/// SAFETY: only a raw sched_setaffinity on a stack-allocated mask.
unsafe fn pin_to(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is a valid empty mask; CPU_SET stays within it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// The child's whole life: only raw syscalls, then _exit (no destructors, no flushing).
fn child(
    brk_calls: u64,
    mmap_calls: u64,
    map_bytes: usize,
    madvise_calls: u64,
    sleep_ms: u64,
) -> ! {
    // SAFETY: raw syscalls on this process's own memory; brk and mmap cannot corrupt
    // anything the child still uses (it never returns into Rust code that allocates), and
    // every mapping is written only within its own length.
    unsafe {
        libc::prctl(
            libc::PR_SET_NAME,
            c"brief-child".as_ptr() as libc::c_ulong,
            0,
            0,
            0,
        );
        if brk_calls > 0 {
            let base = libc::syscall(libc::SYS_brk, 0usize) as usize;
            for i in 1..brk_calls as usize {
                libc::syscall(libc::SYS_brk, base + i * 4096);
            }
        }
        let mut maps = [std::ptr::null_mut::<libc::c_void>(); MAX_RELEASED_MAPS];
        for i in 0..mmap_calls as usize {
            let p = libc::mmap(
                std::ptr::null_mut(),
                map_bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            );
            if p != libc::MAP_FAILED {
                for page in (0..map_bytes).step_by(4096) {
                    *(p as *mut u8).add(page) = 1;
                }
                if let Some(slot) = maps.get_mut(i) {
                    *slot = p;
                }
            }
        }
        if madvise_calls > 0 && !maps[0].is_null() {
            for i in 0..madvise_calls {
                if i == 0 || i == madvise_calls / 2 {
                    pin_to(usize::from(i != 0));
                }
                libc::madvise(maps[0], 4096, libc::MADV_DONTNEED);
            }
            for p in maps.iter().filter(|p| !p.is_null()) {
                libc::munmap(*p, map_bytes);
            }
        }
        let ts = libc::timespec {
            tv_sec: (sleep_ms / 1000) as libc::time_t,
            tv_nsec: ((sleep_ms % 1000) * 1_000_000) as libc::c_long,
        };
        libc::nanosleep(&ts, std::ptr::null_mut());
        libc::_exit(0)
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let count = arg(&args, 0, 200);
    let brk_calls = arg(&args, 1, 500);
    let mmap_calls = arg(&args, 2, 50);
    let min_ms = arg(&args, 3, 5);
    let max_ms = arg(&args, 4, 50).max(min_ms);
    let map_bytes = (arg(&args, 5, 64) as usize) << 10;
    let madvise_calls = arg(&args, 6, 0);
    if madvise_calls > 0 && mmap_calls as usize > MAX_RELEASED_MAPS {
        eprintln!("brief: at most {MAX_RELEASED_MAPS} maps with MADVISE_CALLS");
        std::process::exit(2);
    }
    let parallel = 4;
    let mut running = Vec::new();
    let mut out = std::io::stdout().lock();
    // A small LCG: lifetimes spread over [min, max] without a dependency.
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..count {
        if running.len() >= parallel {
            let pid: libc::pid_t = running.remove(0);
            // SAFETY: waiting for our own child.
            unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };
        }
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        let sleep_ms = min_ms + (seed >> 33) % (max_ms - min_ms + 1);
        // Flush before forking, so a child never inherits (and loses) buffered output.
        let _ = out.flush();
        // SAFETY: the child runs only raw syscalls and _exit (async-signal-safe).
        let pid = unsafe { libc::fork() };
        match pid {
            0 => child(brk_calls, mmap_calls, map_bytes, madvise_calls, sleep_ms),
            p if p > 0 => {
                let _ = writeln!(out, "child {p} {sleep_ms}");
                running.push(p);
            }
            _ => {
                eprintln!("fork failed: {}", std::io::Error::last_os_error());
                std::process::exit(1);
            }
        }
    }
    for pid in running {
        // SAFETY: waiting for our own child.
        unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };
    }
    let _ = writeln!(out, "done");
}
