//! The few system calls std lacks (eventfd, inotify), as `File`s so that reads go through
//! std and tokio's `AsyncFd`. All the module's `unsafe` is here.
use std::{
    ffi::CString,
    fs::File,
    io::{self, Read},
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    os::unix::ffi::OsStrExt,
    path::Path,
};

use tokio::io::{Interest, unix::AsyncFd};

/// Register a file with the tokio reactor (of the current runtime, which must exist).
pub fn async_fd(file: File, interest: Interest) -> io::Result<AsyncFd<File>> {
    // SAFETY: a `File` owns its fd: it stays open, and the same, until the AsyncFd (which
    // owns the File) is dropped.
    Ok(unsafe { AsyncFd::register_with_interest(file, interest) }?)
}

/// A non-blocking eventfd (the v1 notification API signals through one).
pub fn eventfd() -> io::Result<File> {
    // SAFETY: plain syscall; a non-negative return is a new fd we own.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd was just created and is owned by nobody else.
    Ok(File::from(unsafe { OwnedFd::from_raw_fd(fd) }))
}

/// Read (and so reset) an eventfd's counter: how many signals since the last read.
pub fn read_eventfd(f: &File) -> io::Result<u64> {
    let mut buf = [0u8; 8];
    (&*f).read_exact(&mut buf)?;
    Ok(u64::from_ne_bytes(buf))
}

/// A non-blocking inotify instance.
pub fn inotify_init() -> io::Result<File> {
    // SAFETY: plain syscall; a non-negative return is a new fd we own.
    let fd = unsafe { libc::inotify_init1(libc::IN_CLOEXEC | libc::IN_NONBLOCK) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: as above.
    Ok(File::from(unsafe { OwnedFd::from_raw_fd(fd) }))
}

/// Watch `path` for `mask`; the watch descriptor identifies its events. Watching the same
/// inode again returns the same descriptor.
pub fn inotify_add_watch(inotify: &File, path: &Path, mask: u32) -> io::Result<i32> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in path"))?;
    // SAFETY: valid fd and NUL-terminated string for the duration of the call.
    let wd = unsafe { libc::inotify_add_watch(inotify.as_raw_fd(), c.as_ptr(), mask) };
    if wd < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(wd)
}

pub fn inotify_rm_watch(inotify: &File, wd: i32) {
    // SAFETY: plain syscall on a valid fd; an unknown wd only yields EINVAL, ignored (the
    // kernel drops watches by itself when the inode goes).
    unsafe { libc::inotify_rm_watch(inotify.as_raw_fd(), wd) };
}

/// (watch descriptor, mask) of each `struct inotify_event` in a read buffer.
pub fn parse_inotify_events(buf: &[u8]) -> Vec<(i32, u32)> {
    const HEADER: usize = 16; // wd: i32, mask: u32, cookie: u32, len: u32, then the name
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(header) = buf.get(at..at + HEADER) {
        // In bounds: the header is HEADER bytes and i + 3 < HEADER for every call below.
        let word = |i: usize| [header[i], header[i + 1], header[i + 2], header[i + 3]];
        let wd = i32::from_ne_bytes(word(0));
        let mask = u32::from_ne_bytes(word(4));
        let name_len = u32::from_ne_bytes(word(12)) as usize;
        out.push((wd, mask));
        at += HEADER + name_len;
    }
    out
}

/// Whether we hold CAP_SYS_RESOURCE, which PSI triggers with windows that are not multiples
/// of 2 s need. Root in a container often lacks it (as on the development machine).
pub fn has_cap_sys_resource() -> bool {
    const CAP_SYS_RESOURCE: u32 = 24; // linux/capability.h; libc does not export it
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let hex = s
                .lines()
                .find_map(|l| l.strip_prefix("CapEff:"))?
                .trim()
                .to_owned();
            u64::from_str_radix(&hex, 16).ok()
        })
        .is_some_and(|caps| caps & (1 << CAP_SYS_RESOURCE) != 0)
}

pub fn is_root() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() == 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eventfd_counts() {
        let f = eventfd().unwrap();
        assert_eq!(
            read_eventfd(&f).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        use std::io::Write;
        (&f).write_all(&3u64.to_ne_bytes()).unwrap();
        (&f).write_all(&2u64.to_ne_bytes()).unwrap();
        assert_eq!(read_eventfd(&f).unwrap(), 5);
    }

    #[test]
    fn inotify_modify() {
        let dir = std::env::temp_dir().join(format!("lt-memcg-inotify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("memory.events");
        std::fs::write(&file, "max 0\n").unwrap();
        let ino = inotify_init().unwrap();
        let wd = inotify_add_watch(&ino, &file, libc::IN_MODIFY).unwrap();
        assert_eq!(inotify_add_watch(&ino, &file, libc::IN_MODIFY).unwrap(), wd);
        std::fs::write(&file, "max 1\n").unwrap();
        let mut buf = [0u8; 4096];
        let n = (&ino).read(&mut buf).unwrap();
        let ev = parse_inotify_events(&buf[..n]);
        assert!(
            ev.iter().any(|&(w, m)| w == wd && m & libc::IN_MODIFY != 0),
            "{ev:?}"
        );
        inotify_rm_watch(&ino, wd);
        let n = (&ino).read(&mut buf).unwrap();
        let ev = parse_inotify_events(&buf[..n]);
        assert!(
            ev.iter()
                .any(|&(w, m)| w == wd && m & libc::IN_IGNORED != 0),
            "{ev:?}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn inotify_buffer_with_names() {
        let mut buf = Vec::new();
        for (wd, mask, name) in [(1i32, 2u32, &b""[..]), (7, 0x8000, &b"abc\0\0\0\0\0"[..])] {
            buf.extend(wd.to_ne_bytes());
            buf.extend(mask.to_ne_bytes());
            buf.extend(0u32.to_ne_bytes());
            buf.extend((name.len() as u32).to_ne_bytes());
            buf.extend(name);
        }
        assert_eq!(parse_inotify_events(&buf), vec![(1, 2), (7, 0x8000)]);
    }
}
