//! QEMU guests for the tests that the host kernel cannot run: cgroup v2 with the memory
//! controller (memory.max OOM kills, memory.events, PSI) and older kernels' tracepoint layouts.
//!
//! Each run boots a Debian cloud kernel under TCG (`/dev/kvm` does not work on our machines) with
//! a hand-made initramfs: busybox-static with its applet links, the binaries under test and their
//! shared libraries, extra files, and an `/init` that mounts proc, sysfs, devtmpfs, cgroup2,
//! tracefs, bpffs and debugfs, runs the test script, prints `GUEST-EXIT=<code>` and powers off.
//! Facts and timings: ../shared/TOOLCHAIN.md. Host needs: qemu-system-x86_64 (Debian
//! `qemu-system-x86`), a busybox (`busybox-static`), `ldd` (libc-bin), `apt-get`/`dpkg-deb` for
//! the kernels, and optionally `objcopy` (binutils) to strip debug info from the binaries.
mod cpio;
pub mod guest_tests;
mod kernels;

use std::{
    io::Read as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU32, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

/// The marker `/init` prints after the test script; the host reads the exit code from it.
pub const EXIT_MARKER: &str = "GUEST-EXIT=";

#[derive(Debug, Clone)]
pub struct Kernel {
    /// The kernel release, e.g. `6.1.0-56-cloud-amd64`.
    pub name: String,
    pub vmlinuz: PathBuf,
}

/// Download (apt-get download + dpkg -x) and cache the two Debian cloud kernels (6.1 and 6.12)
/// under `<root>/target/qemu/`. Offline once cached.
pub fn kernels(root: &Path) -> anyhow::Result<Vec<Kernel>> {
    kernels::kernels(root)
}

#[derive(Debug, Clone)]
pub struct GuestRun {
    /// The test script's exit code.
    pub exit_code: i32,
    /// Everything the guest printed on its serial console (kernel messages included), with `\r`
    /// removed.
    pub console: String,
    /// Wall time from starting QEMU to its exit.
    pub duration: Duration,
}

impl GuestRun {
    /// The lines printed between a line `begin` and a line `end` (first such section), e.g. the
    /// `=====OOM-JSON-BEGIN=====` / `=====OOM-JSON-END=====` sections of tests/guest/*.sh.
    pub fn section(&self, begin: &str, end: &str) -> Option<Vec<&str>> {
        let mut lines = self.console.lines();
        lines.by_ref().find(|l| l.trim() == begin)?;
        let mut out = Vec::new();
        for l in lines {
            if l.trim() == end {
                return Some(out);
            }
            out.push(l);
        }
        None
    }
}

const INIT: &str = r#"#!/bin/sh
# leaktracer guest /init (xtask/src/qemu): mount the kernel filesystems, run /test.sh, report.
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
export HOME=/root
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mkdir -p /dev/pts /dev/shm
mount -t tmpfs tmpfs /tmp
mount -t cgroup2 cgroup2 /sys/fs/cgroup
mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
mount -t bpf bpf /sys/fs/bpf 2>/dev/null
ip link set lo up 2>/dev/null
echo "GUEST-KERNEL=$(uname -r) CPUS=$(grep -c ^processor /proc/cpuinfo)"
cd /
sh /test.sh </dev/null
code=$?
if [ "$code" != 0 ]; then
    echo "=====GUEST-DMESG-BEGIN====="
    dmesg | tail -n 80
    echo "=====GUEST-DMESG-END====="
fi
sync
echo "GUEST-EXIT=$code"
poweroff -f
"#;

/// Boot `kernel` with an initramfs holding busybox, `binaries` (copied to /bin without their
/// debug sections, plus their shared libraries and the dynamic loader at their host paths) and
/// `files` ((guest path, host path); a host directory is copied recursively), run `script` with
/// busybox `sh` as the test (as /test.sh, stdin /dev/null, from /), and return its exit code and
/// the console output. On `timeout` QEMU is killed and the error holds the console output so
/// far; so does the error when the guest dies without the exit marker. The guest: 1 GiB RAM, no
/// swap, 2 CPUs, no network, rootfs on tmpfs (so mapped binaries count as shmem), kernel console
/// at loglevel 3 (OOM reports stay out of the output; /init prints dmesg's tail on failure).
pub fn run_in_guest(
    root: &Path,
    kernel: &Kernel,
    binaries: &[PathBuf],
    files: &[(String, PathBuf)],
    script: &str,
    timeout: Duration,
) -> anyhow::Result<GuestRun> {
    static RUN: AtomicU32 = AtomicU32::new(0);
    let runs = kernels::cache_dir(root).join("runs");
    std::fs::create_dir_all(&runs).with_context(|| format!("creating {}", runs.display()))?;
    let work = runs.join(format!(
        "run-{}-{}",
        std::process::id(),
        RUN.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    let _cleanup = RemoveOnDrop(work.clone());
    let initrd = work.join("initramfs.cpio");
    build_initramfs(&work, binaries, files, script)
        .and_then(|a| a.write_to(&initrd))
        .context("building the guest initramfs")?;
    boot(kernel, &initrd, timeout)
}

struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A copy of `bin` without debug sections (symbols kept) in `work`, when `objcopy` (binutils)
/// can make one: the debug leaktracer shrinks from ~90 MB to ~18 MB, which the guest kernel
/// unpacks seconds faster under TCG. Otherwise `bin` itself.
fn without_debug_info(work: &Path, bin: &Path, name: &str) -> PathBuf {
    let out = work.join(name);
    let ok = Command::new("objcopy")
        .arg("--strip-debug")
        .arg(bin)
        .arg(&out)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if ok { out } else { bin.to_path_buf() }
}

fn build_initramfs(
    work: &Path,
    binaries: &[PathBuf],
    files: &[(String, PathBuf)],
    script: &str,
) -> anyhow::Result<cpio::Archive> {
    let mut a = cpio::Archive::new();
    for d in [
        "/proc",
        "/sys",
        "/dev",
        "/tmp",
        "/root",
        "/etc",
        "/run",
        "/var/tmp",
        "/bin",
        "/sbin",
        "/usr/bin",
        "/usr/sbin",
    ] {
        a.dir(d)?;
    }
    // The kernel opens /dev/console for init's stdio before devtmpfs is mounted.
    a.char_dev("/dev/console", 5, 1)?;
    a.char_dev("/dev/null", 1, 3)?;
    a.bytes("/etc/passwd", "root:x:0:0:root:/root:/bin/sh\n", 0o644)?;
    a.bytes("/etc/group", "root:x:0:\n", 0o644)?;

    let busybox = find_busybox()?;
    a.host_path("/bin/busybox", &busybox)?;
    add_libraries(&mut a, &busybox)?;
    let list = Command::new(&busybox)
        .arg("--list-full")
        .output()
        .with_context(|| format!("running {} --list-full", busybox.display()))?;
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        let applet = applet.trim();
        if applet.is_empty() || applet.rsplit('/').next() == Some("busybox") {
            continue;
        }
        a.symlink(&format!("/{applet}"), "/bin/busybox")?;
    }

    for bin in binaries {
        let name = bin
            .file_name()
            .and_then(|n| n.to_str())
            .with_context(|| format!("bad binary path {}", bin.display()))?;
        if !bin.is_file() {
            bail!("{} does not exist (not built?)", bin.display());
        }
        a.host_path(
            &format!("/bin/{name}"),
            &without_debug_info(work, bin, name),
        )?;
        add_libraries(&mut a, bin)?;
    }
    for (guest, host) in files {
        a.host_path(guest, host)
            .with_context(|| format!("adding {} as {guest}", host.display()))?;
    }
    a.bytes("/init", INIT, 0o755)?;
    a.bytes("/test.sh", script, 0o755)?;
    Ok(a)
}

fn find_busybox() -> anyhow::Result<PathBuf> {
    for p in [
        "/bin/busybox",
        "/usr/bin/busybox",
        "/usr/lib/busybox/busybox",
    ] {
        let p = Path::new(p);
        if p.is_file() {
            return Ok(p.to_path_buf());
        }
    }
    bail!("busybox not found: apt-get install -y busybox-static")
}

/// The shared libraries `bin` needs, per `ldd` (nothing for a static binary), stored at their
/// host paths with symlinks resolved; the dynamic loader included.
fn add_libraries(a: &mut cpio::Archive, bin: &Path) -> anyhow::Result<()> {
    let out = Command::new("ldd")
        .arg(bin)
        .output()
        .context("running ldd (libc-bin)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        // "not a dynamic executable" (static): no libraries.
        return Ok(());
    }
    for lib in parse_ldd(&text).with_context(|| format!("ldd {}", bin.display()))? {
        if !a.contains(&lib) {
            a.host_path(&lib, Path::new(&lib))?;
        }
    }
    Ok(())
}

fn parse_ldd(text: &str) -> anyhow::Result<Vec<String>> {
    let mut libs = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.contains("statically linked") {
            continue;
        }
        let path = match line.split_once("=>") {
            Some((name, rest)) => {
                let rest = rest.trim();
                if rest.starts_with("not found") {
                    bail!("library {} not found", name.trim());
                }
                rest.split_whitespace().next().unwrap_or("")
            }
            // The loader: `/lib64/ld-linux-x86-64.so.2 (0x...)`; the vDSO has no path.
            None => line.split_whitespace().next().unwrap_or(""),
        };
        if path.starts_with('/') {
            libs.push(path.to_string());
        }
    }
    Ok(libs)
}

/// Boot attempts when the guest kernel itself dies of TCG's text patching (see `boot`).
const BOOT_ATTEMPTS: usize = 3;

/// Boot, retrying a guest whose kernel died of an int3 Oops: under TCG on 2 vCPUs, Debian's
/// 6.12 kernel sometimes traps on a breakpoint it has just patched out of its own text. Seen
/// during its own start-up, before any test code ran; while a tracepoint was being enabled
/// (at `mm_trace_rss_stat`, when leaktracer attached its rss_stat program); and while the
/// kernel's BPF statistics were flipped (tests/guest/repro-bpf-stats-flips.sh). Each run is a
/// fresh guest that starts its scenario from scratch, so booting again repeats the whole test;
/// every retry is printed. Any other failure is never retried.
fn boot(kernel: &Kernel, initrd: &Path, timeout: Duration) -> anyhow::Result<GuestRun> {
    let mut attempt = 1;
    loop {
        match boot_once(kernel, initrd, timeout) {
            Err(e) if attempt < BOOT_ATTEMPTS && died_of_text_patching(&format!("{e:#}")) => {
                eprintln!(
                    "xtask: guest {}: the kernel died of an int3 Oops (TCG and kernel text patching; attempt {attempt} of {BOOT_ATTEMPTS}); booting again",
                    kernel.name
                );
                attempt += 1;
            }
            r => return r,
        }
    }
}

/// The console shows a kernel panic that followed an int3 Oops (a breakpoint the kernel did
/// not place, or no longer recognises: its text-patching breakpoints).
fn died_of_text_patching(console: &str) -> bool {
    console.contains("Kernel panic") && console.contains("Oops: int3")
}

fn boot_once(kernel: &Kernel, initrd: &Path, timeout: Duration) -> anyhow::Result<GuestRun> {
    let start = Instant::now();
    let mut child = Command::new("qemu-system-x86_64")
        .args(["-accel", "tcg", "-cpu", "max", "-m", "1G", "-smp", "2"])
        .args(["-nographic", "-no-reboot", "-nic", "none"])
        .arg("-kernel")
        .arg(&kernel.vmlinuz)
        .arg("-initrd")
        .arg(initrd)
        // loglevel=3: only critical kernel messages (panics, oopses) reach the console, so the
        // OOM killer's reports (warning and error levels) do not cut into the script's output
        // lines; /init prints the tail of dmesg when the script fails.
        .args(["-append", "console=ttyS0 panic=-1 quiet loglevel=3"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting qemu-system-x86_64 (apt-get install -y qemu-system-x86)")?;
    let console = Arc::new(Mutex::new(Vec::<u8>::new()));
    let stdout = child.stdout.take().context("qemu's stdout was not piped")?;
    let reader = {
        let console = Arc::clone(&console);
        std::thread::spawn(move || {
            let mut stdout = stdout;
            let mut buf = [0u8; 8192];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 {
                    break;
                }
                // A poisoned lock only means another thread panicked: the bytes are whole.
                console
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .extend_from_slice(&buf[..n]);
            }
        })
    };
    let mut stderr = child.stderr.take().context("qemu's stderr was not piped")?;
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let text = |c: &Mutex<Vec<u8>>| {
        let bytes = c.lock().unwrap_or_else(PoisonError::into_inner);
        clean_console(&String::from_utf8_lossy(&bytes))
    };

    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if start.elapsed() >= timeout {
            let _ = child.kill();
            let _ = child.wait();
            let _ = reader.join();
            let qemu_err = err_reader.join().unwrap_or_default();
            bail!(
                "guest {} timed out after {:.0?}; qemu stderr: {}\n----- console so far -----\n{}",
                kernel.name,
                timeout,
                qemu_err.trim(),
                text(&console)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let duration = start.elapsed();
    let _ = reader.join();
    let qemu_err = err_reader.join().unwrap_or_default();
    let console = text(&console);
    let Some(exit_code) = exit_code(&console) else {
        bail!(
            "guest {} ended ({status}) without {EXIT_MARKER}<code>; qemu stderr: {}\n----- console -----\n{}",
            kernel.name,
            qemu_err.trim(),
            console
        );
    };
    Ok(GuestRun {
        exit_code,
        console,
        duration,
    })
}

/// The console without `\r` and the terminal escapes (`ESC c`, `ESC [ ... letter`) the firmware
/// and the kernel print.
fn clean_console(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        match c {
            '\r' => {}
            '\u{1b}' => match chars.next() {
                Some('[') => {
                    for c in chars.by_ref() {
                        if ('@'..='~').contains(&c) {
                            break;
                        }
                    }
                }
                // A terminal reset (the kernel's console taking over from the firmware's): on a
                // line of its own, even when it raced ahead of the firmware's line end.
                Some('c') if !out.is_empty() && !out.ends_with('\n') => out.push('\n'),
                _ => {}
            },
            c => out.push(c),
        }
    }
    out
}

fn exit_code(console: &str) -> Option<i32> {
    console
        .lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix(EXIT_MARKER)?.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldd_output() {
        let text = "\tlinux-vdso.so.1 (0x00007ff6ef5e7000)\n\
            \tlibgcc_s.so.1 => /lib/x86_64-linux-gnu/libgcc_s.so.1 (0x00007ff6ef559000)\n\
            \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007ff6ef377000)\n\
            \t/lib64/ld-linux-x86-64.so.2 (0x00007ff6ef5e9000)\n";
        assert_eq!(
            parse_ldd(text).unwrap(),
            [
                "/lib/x86_64-linux-gnu/libgcc_s.so.1",
                "/lib/x86_64-linux-gnu/libc.so.6",
                "/lib64/ld-linux-x86-64.so.2"
            ]
        );
        assert!(parse_ldd("\tlibfoo.so.1 => not found\n").is_err());
        assert!(parse_ldd("\tstatically linked\n").unwrap().is_empty());
    }

    #[test]
    fn exit_marker_and_sections() {
        let run = GuestRun {
            exit_code: 0,
            console: "boot\n=====A=====\n{\"x\":1}\n=====B=====\nGUEST-EXIT=3\n".into(),
            duration: Duration::ZERO,
        };
        assert_eq!(exit_code(&run.console), Some(3));
        assert_eq!(
            run.section("=====A=====", "=====B====="),
            Some(vec!["{\"x\":1}"])
        );
        assert_eq!(run.section("=====B=====", "=====C====="), None);
        assert_eq!(exit_code("GUEST-EXIT=<code>\n"), None);
        assert!(died_of_text_patching(
            "[ 1.6] Oops: int3\n[ 1.7] Kernel panic - not syncing"
        ));
        assert!(died_of_text_patching(
            "GUEST-KERNEL=6.12 CPUS=2\n[ 7.0] Oops: int3: 0000 [#1]\n[ 7.1] Kernel panic - not syncing"
        ));
        assert!(!died_of_text_patching(
            "GUEST-KERNEL=6.12 CPUS=2\n[ 9.0] BUG: kernel NULL pointer dereference\n[ 9.1] Kernel panic - not syncing"
        ));
        assert!(!died_of_text_patching(
            "GUEST-KERNEL=6.12 CPUS=2\nGUEST-EXIT=1\n"
        ));
        assert_eq!(
            clean_console("\u{1b}c\u{1b}[?7l\u{1b}[2J\u{1b}[0mSeaBIOS\r\nGUEST-EXIT=0\r\n"),
            "SeaBIOS\nGUEST-EXIT=0\n"
        );
        assert_eq!(
            clean_console("Booting from ROM...\u{1b}c\u{1b}[2JGUEST-KERNEL=x\r\n"),
            "Booting from ROM...\nGUEST-KERNEL=x\n"
        );
    }
}
