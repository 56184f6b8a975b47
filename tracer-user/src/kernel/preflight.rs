//! Checks made before touching BPF, so a missing privilege or mount is one clear line
//! (exit code 2) instead of a verifier dump or a backtrace.
use std::path::Path;

use crate::{kernel::tracefs::TraceFs, util::error::UsageError};

const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// Effective capability set of this process, from /proc/self/status.
fn effective_caps() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .unwrap_or(0)
}

fn has(caps: u64, cap: u32) -> bool {
    caps & (1u64 << cap) != 0
}

/// Verify we may load tracing programs: CAP_BPF + CAP_PERFMON (or CAP_SYS_ADMIN, which
/// implies both on kernels before 5.8).
pub fn check_privileges() -> Result<(), UsageError> {
    let caps = effective_caps();
    if has(caps, CAP_SYS_ADMIN) || (has(caps, CAP_BPF) && has(caps, CAP_PERFMON)) {
        return Ok(());
    }
    let mut missing = Vec::new();
    if !has(caps, CAP_BPF) {
        missing.push("CAP_BPF");
    }
    if !has(caps, CAP_PERFMON) {
        missing.push("CAP_PERFMON");
    }
    Err(UsageError::new(format!(
        "missing capability {}: run leaktracer as root (sudo leaktracer ...), or grant it with \
         `setcap cap_bpf,cap_perfmon,cap_sys_resource+ep $(which leaktracer)`",
        missing.join(" and ")
    )))
}

/// Find tracefs, or explain how to mount it.
pub fn locate_tracefs(host_root: &Path) -> Result<TraceFs, UsageError> {
    TraceFs::locate(host_root).ok_or_else(|| {
        UsageError::new(format!(
            "tracefs is not mounted (looked in {0}sys/kernel/tracing and {0}sys/kernel/debug/tracing): \
             mount it with `mount -t tracefs nodev /sys/kernel/tracing`",
            host_root.display().to_string().trim_end_matches('/').to_string() + "/"
        ))
    })
}

/// Raise RLIMIT_MEMLOCK for kernels that still charge BPF maps to it (before 5.11).
/// Newer kernels charge the memory cgroup instead, so EPERM here is only a warning.
pub fn raise_memlock() {
    let rlim = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: plain syscall with a valid pointer to an initialised struct.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &rlim) } != 0 {
        log::debug!(
            "could not raise RLIMIT_MEMLOCK ({}); fine on kernels >= 5.11, which account BPF memory to the memory cgroup",
            std::io::Error::last_os_error()
        );
    }
}
