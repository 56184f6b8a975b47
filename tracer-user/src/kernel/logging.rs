//! Userspace logs (env_logger; `--log-level`) and the kernel side's aya-log records.
use std::os::fd::AsRawFd as _;

use tokio::io::unix::AsyncFd;

pub fn init(level: log::LevelFilter) {
    env_logger::Builder::new()
        .filter_level(level)
        .format_timestamp_millis()
        .target(env_logger::Target::Stderr)
        .init();
}

/// Forward the kernel programs' aya-log records to our logger. The programs log only on
/// rare paths (OOM), so this is idle most of the time. Absent logs are not an error: an
/// object built without any log call has no log map.
pub fn spawn_ebpf_logger(ebpf: &mut aya::Ebpf) -> Option<tokio::task::JoinHandle<()>> {
    let logger = match aya_log::EbpfLogger::init(ebpf) {
        Ok(l) => l,
        Err(e) => {
            log::debug!("kernel-side logging unavailable: {e}");
            return None;
        }
    };
    // SAFETY: the AsyncFd owns the logger, which owns its ring-buffer fd.
    let mut fd =
        match unsafe { AsyncFd::register_with_interest(logger, tokio::io::Interest::READABLE) } {
            Ok(fd) => fd,
            Err(e) => {
                log::debug!("kernel-side logging unavailable: {e}");
                return None;
            }
        };
    log::debug!("kernel log ring fd {}", fd.get_ref().as_raw_fd());
    Some(tokio::spawn(async move {
        loop {
            let Ok(mut guard) = fd.readable_mut().await else {
                return;
            };
            guard.get_inner_mut().flush();
            guard.clear_ready();
        }
    }))
}
