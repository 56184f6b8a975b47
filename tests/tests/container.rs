//! A real container runtime: podman with runc (cgroupfs manager, cgroup v1 here) runs the
//! `leaker` in a container limited to 64 MiB with `--memory`. leaktracer must name the
//! container (its 64-hex id, from the cgroup path podman made) on the process and on the OOM
//! kill, with the container's cgroup and limit. Kubernetes pods are covered by
//! tests/kubernetes.rs on Kubernetes-shaped cgroup paths; no kubelet or CRI runs here.
// An integration test crate: a panic (unwrap, expect) is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]
use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

use leaktracer_tests::*;

const LEAKER: &str = env!("CARGO_BIN_EXE_leaker");

/// podman with a private, throw-away store (as `cargo xtask image` uses it): nothing is left in
/// /var/lib/containers, no image is needed (`--rootfs`), no network, no systemd.
struct Podman {
    dir: PathBuf,
}

impl Podman {
    fn new() -> Self {
        let found = Command::new("podman")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(
            found,
            "podman is not installed: `cargo xtask setup` installs it (apt packages podman, runc)"
        );
        let dir = std::env::temp_dir().join(format!("leaktracer-podman-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("tmp")).expect("podman temp dir");
        Self { dir }
    }

    fn cmd(&self) -> Command {
        podman(&self.dir)
    }

    fn run(&self, args: &[&str]) -> Output {
        let out = self.cmd().args(args).output().expect("running podman");
        eprintln!(
            "podman {}: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
        out
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = self.cmd().args(["rm", "--all", "--force"]).output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A root filesystem holding `binary` at `/<name>` and the shared libraries `ldd` lists.
fn rootfs_with(binary: &Path, name: &str) -> PathBuf {
    let root = std::env::temp_dir().join(format!("leaktracer-rootfs-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    copy_with_libraries(binary, &root, name);
    root
}

#[test]
fn podman_container_is_named_on_its_process_and_its_oom_kill() {
    let Some(_serial) = privileged() else { return };
    let podman = Podman::new();
    let rootfs = rootfs_with(Path::new(LEAKER), "leaker");
    let rec = Recording::start("podman", &["--interval", "250ms"]);
    // 16 MiB/s into a 64 MiB container: a few seconds of growth, then the kernel's OOM kill.
    let out = podman.run(&[
        "run",
        "--detach",
        "--network",
        "none",
        // podman asks for higher limits than this sandbox allows without CAP_SYS_RESOURCE.
        "--ulimit",
        "nofile=1024:1024",
        "--ulimit",
        "nproc=1024:1024",
        "--memory",
        "64m",
        "--memory-swap",
        "64m",
        "--rootfs",
        rootfs.to_str().unwrap(),
        "/leaker",
        "16384",
    ]);
    assert!(out.status.success(), "podman run failed");
    let cid = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert_eq!(cid.len(), 64, "podman printed a container id: {cid:?}");
    let waited = podman.run(&["wait", &cid]);
    let code = String::from_utf8_lossy(&waited.stdout).trim().to_string();
    assert_eq!(code, "137", "the container ends by SIGKILL (OOM)");
    std::thread::sleep(std::time::Duration::from_secs(1));
    let trace = rec.stop();
    let _ = std::fs::remove_dir_all(&rootfs);

    let kill = trace
        .iter()
        .find(|r| r["type"] == "oom_kill" && r["container_id"] == cid.as_str())
        .unwrap_or_else(|| {
            let kills: Vec<_> = trace.iter().filter(|r| r["type"] == "oom_kill").collect();
            panic!("no oom_kill record naming container {cid}; oom_kill records: {kills:?}")
        });
    eprintln!("oom_kill record: {kill}");
    assert_eq!(kill["comm"], "leaker");
    let cgroup = kill["cgroup"].as_str().unwrap_or_default();
    assert!(
        cgroup.ends_with(&format!("libpod-{cid}")),
        "the container's cgroup: {cgroup}"
    );
    assert_eq!(kill["cgroup_limit_bytes"].as_u64(), Some(64 * MIB));
    assert_eq!(kill["cgroup_constrained"], true);
    let history = kill["history"].as_array().map_or(0, Vec::len);
    assert!(history >= 2, "growth before the kill is kept: {kill}");
    let pid = kill["pid"].as_u64().unwrap();
    let process = trace
        .iter()
        .find(|r| r["type"] == "process" && r["pid"].as_u64() == Some(pid))
        .expect("the leaker's process record");
    assert_eq!(
        process["container_id"],
        cid.as_str(),
        "process record: {process}"
    );
}
