//! Pod names from a REAL CRI server: a private containerd (Debian's package, its built-in CRI
//! plugin, runc, cgroupfs on the v1 memory controller, `native` snapshotter) runs a pod sandbox
//! with cgroup parent `/kubepods/burstable/pod<uid>` and host network, and in it a container
//! `app` running the `leaker`, created through the CRI v1 API the way kubelet does it (with
//! kubelet's `io.kubernetes.*` labels). Images come from no registry: podman builds one from
//! scratch holding the leaker and its shared libraries, `ctr images import` loads it, and it
//! serves both as the app image and as the sandbox ("pause") image (it runs `/leaker 0`, which
//! allocates nothing measurable, as pause).
//!
//! leaktracer gets a host root whose proc/ and sys/ are the real ones and whose
//! run/containerd/containerd.sock is a symlink to that containerd's socket, and NO
//! /var/log/pods: the namespace, pod and container names on the leaker's `top` row can only come
//! from the CRI. A second run with `--cri-socket none` shows them missing. Then a `record` runs
//! while a second container (`late`) starts in the pod: its process record, written once at
//! first sight, must already carry its names (the per-id query path, not the list at start).
// An integration test crate: a panic (unwrap, expect) is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]
use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use leaktracer_tests::*;

const LEAKER: &str = env!("CARGO_BIN_EXE_leaker");
const IMAGE: &str = "localhost/leaktracer-cri:test";
const NAMESPACE: &str = "shop";
const POD: &str = "web-cri-7f9c";
const CONTAINER: &str = "app";

/// CRI v1 messages the test sends (field numbers from k8s.io/cri-api api.proto), only the
/// fields used.
mod pb {
    use std::collections::HashMap;

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct RunPodSandboxRequest {
        #[prost(message, optional, tag = "1")]
        pub config: Option<PodSandboxConfig>,
        #[prost(string, tag = "2")]
        pub runtime_handler: String,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct PodSandboxConfig {
        #[prost(message, optional, tag = "1")]
        pub metadata: Option<PodSandboxMetadata>,
        #[prost(string, tag = "2")]
        pub hostname: String,
        #[prost(string, tag = "3")]
        pub log_directory: String,
        #[prost(map = "string, string", tag = "6")]
        pub labels: HashMap<String, String>,
        #[prost(message, optional, tag = "8")]
        pub linux: Option<LinuxPodSandboxConfig>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct PodSandboxMetadata {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(string, tag = "2")]
        pub uid: String,
        #[prost(string, tag = "3")]
        pub namespace: String,
        #[prost(uint32, tag = "4")]
        pub attempt: u32,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct LinuxPodSandboxConfig {
        #[prost(string, tag = "1")]
        pub cgroup_parent: String,
        #[prost(message, optional, tag = "2")]
        pub security_context: Option<LinuxSandboxSecurityContext>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct LinuxSandboxSecurityContext {
        #[prost(message, optional, tag = "1")]
        pub namespace_options: Option<NamespaceOption>,
    }
    /// NamespaceMode: POD = 0, CONTAINER = 1, NODE = 2, TARGET = 3.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct NamespaceOption {
        #[prost(int32, tag = "1")]
        pub network: i32,
        #[prost(int32, tag = "2")]
        pub pid: i32,
        #[prost(int32, tag = "3")]
        pub ipc: i32,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct RunPodSandboxResponse {
        #[prost(string, tag = "1")]
        pub pod_sandbox_id: String,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct CreateContainerRequest {
        #[prost(string, tag = "1")]
        pub pod_sandbox_id: String,
        #[prost(message, optional, tag = "2")]
        pub config: Option<ContainerConfig>,
        #[prost(message, optional, tag = "3")]
        pub sandbox_config: Option<PodSandboxConfig>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ContainerConfig {
        #[prost(message, optional, tag = "1")]
        pub metadata: Option<ContainerMetadata>,
        #[prost(message, optional, tag = "2")]
        pub image: Option<ImageSpec>,
        #[prost(string, repeated, tag = "3")]
        pub command: Vec<String>,
        #[prost(string, repeated, tag = "4")]
        pub args: Vec<String>,
        #[prost(map = "string, string", tag = "9")]
        pub labels: HashMap<String, String>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ContainerMetadata {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(uint32, tag = "2")]
        pub attempt: u32,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ImageSpec {
        #[prost(string, tag = "1")]
        pub image: String,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct CreateContainerResponse {
        #[prost(string, tag = "1")]
        pub container_id: String,
    }
    /// StartContainerRequest, RemoveContainerRequest (container_id = 1).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ContainerIdRequest {
        #[prost(string, tag = "1")]
        pub container_id: String,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct StopContainerRequest {
        #[prost(string, tag = "1")]
        pub container_id: String,
        #[prost(int64, tag = "2")]
        pub timeout: i64,
    }
    /// StopPodSandboxRequest, RemovePodSandboxRequest (pod_sandbox_id = 1).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct SandboxIdRequest {
        #[prost(string, tag = "1")]
        pub pod_sandbox_id: String,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Empty {}
}

/// A blocking CRI v1 RuntimeService client over a unix socket.
struct Cri {
    rt: tokio::runtime::Runtime,
    grpc: tonic::client::Grpc<tonic::transport::Channel>,
}

impl Cri {
    fn connect(sock: &Path) -> Result<Self, String> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        let sock = sock.to_owned();
        let channel = rt
            .block_on(async {
                tonic::transport::Endpoint::from_static("http://cri.invalid")
                    .connect_timeout(Duration::from_secs(5))
                    .connect_with_connector(tower::service_fn(move |_: tonic::transport::Uri| {
                        let sock = sock.clone();
                        async move {
                            let s = tokio::net::UnixStream::connect(sock).await?;
                            Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(s))
                        }
                    }))
                    .await
            })
            .map_err(|e| e.to_string())?;
        Ok(Self {
            rt,
            grpc: tonic::client::Grpc::new(channel),
        })
    }

    fn call<Req, Resp>(&mut self, method: &'static str, req: Req) -> Result<Resp, String>
    where
        Req: prost::Message + Send + Sync + 'static,
        Resp: prost::Message + Default + Send + Sync + 'static,
    {
        let grpc = &mut self.grpc;
        self.rt.block_on(async {
            grpc.ready().await.map_err(|e| format!("{method}: {e}"))?;
            let path = tonic::codegen::http::uri::PathAndQuery::from_static(method);
            let codec = tonic_prost::ProstCodec::<Req, Resp>::default();
            let fut = grpc.unary(tonic::Request::new(req), path, codec);
            match tokio::time::timeout(Duration::from_secs(60), fut).await {
                Err(_) => Err(format!("{method}: timed out after 60 s")),
                Ok(Err(status)) => Err(format!("{method}: {status}")),
                Ok(Ok(resp)) => Ok(resp.into_inner()),
            }
        })
    }
}

/// A FROM-scratch image holding the leaker and the shared libraries `ldd` lists, saved as a
/// docker archive at `<dir>/image.tar`.
fn build_image(dir: &Path) -> PathBuf {
    let ctx = dir.join("image-context");
    copy_with_libraries(Path::new(LEAKER), &ctx, "leaker");
    // CMD "0": as the sandbox image it runs `/leaker 0` (allocates nothing measurable) as pause.
    std::fs::write(
        dir.join("Containerfile"),
        "FROM scratch\nCOPY . /\nENTRYPOINT [\"/leaker\"]\nCMD [\"0\"]\n",
    )
    .unwrap();
    let store = dir.join("podman");
    std::fs::create_dir_all(store.join("tmp")).unwrap();
    run_checked(
        podman(&store)
            .args(["build", "--network", "none", "-t", IMAGE, "-f"])
            .arg(dir.join("Containerfile"))
            .arg(&ctx),
    );
    let tar = dir.join("image.tar");
    run_checked(
        podman(&store)
            .args(["save", "--format", "docker-archive", "-o"])
            .arg(&tar)
            .arg(IMAGE),
    );
    let _ = podman(&store).args(["rmi", "--all", "--force"]).output();
    let _ = std::fs::remove_dir_all(&store);
    let _ = std::fs::remove_dir_all(&ctx);
    tar
}

/// Fails the test, with what to install, when containerd (with ctr) or podman is missing.
fn require_tools() {
    let version = Command::new("containerd").arg("--version").output();
    assert!(
        version.as_ref().is_ok_and(|o| o.status.success()),
        "containerd is not installed ({:?}): this test needs a real CRI server; \
         `cargo xtask setup` installs it (apt-get install -y containerd)",
        version.err()
    );
    for (tool, package) in [("ctr", "containerd"), ("podman", "podman")] {
        let found = Command::new(tool)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(
            found,
            "{tool} is not installed: `cargo xtask setup` installs it (apt-get install -y {package})"
        );
    }
}

/// A private containerd with its CRI plugin; everything under one temp directory.
struct Containerd {
    dir: PathBuf,
    sock: PathBuf,
    daemon: Option<Proc>,
    /// `/kubepods/burstable/pod<uid>`: runc makes it in every v1 hierarchy (cgroupfs driver).
    cgroup_parent: String,
    /// Directories the test may create outside its temp dir (the parents of the pod's cgroups,
    /// the shims' socket directory /run/containerd/s, which containerd 1.6 does not let one
    /// move) that did not exist before: removed again, if empty, at the end.
    created: Vec<PathBuf>,
    sandbox: Option<String>,
}

/// The cgroup v1 (and v2 "unified") hierarchy roots.
fn hierarchies() -> Vec<PathBuf> {
    std::fs::read_dir("/sys/fs/cgroup")
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| p.join("cgroup.procs").exists())
                .collect()
        })
        .unwrap_or_default()
}

impl Containerd {
    fn start(dir: &Path, cgroup_parent: &str) -> Self {
        let sock = dir.join("containerd.sock");
        let d = dir.display();
        // restrict_oom_score_adj: the sandbox asks for -998, which needs CAP_SYS_RESOURCE.
        let config = format!(
            r#"version = 2
root = "{d}/root"
state = "{d}/state"
[grpc]
  address = "{d}/containerd.sock"
[ttrpc]
  address = "{d}/containerd.sock.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "{d}/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{IMAGE}"
  disable_tcp_service = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  restrict_oom_score_adj = true
  disable_apparmor = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "native"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "runc"
        Root = "{d}/runc"
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{d}/cni/bin"
    conf_dir = "{d}/cni/conf"
"#
        );
        std::fs::write(dir.join("config.toml"), config).unwrap();
        let log = std::fs::File::create(dir.join("containerd.log")).unwrap();
        let daemon = Proc::spawn(
            Command::new("containerd")
                .arg("--config")
                .arg(dir.join("config.toml"))
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log),
        );
        let mut created: Vec<PathBuf> = ["/run/containerd/s", "/run/containerd"]
            .iter()
            .map(PathBuf::from)
            .collect();
        for h in hierarchies() {
            created.push(h.join("kubepods/burstable"));
            created.push(h.join("kubepods"));
        }
        created.retain(|p| !p.exists());
        let me = Self {
            dir: dir.to_owned(),
            sock,
            daemon: Some(daemon),
            cgroup_parent: cgroup_parent.to_owned(),
            created,
            sandbox: None,
        };
        let up = wait_until(Duration::from_secs(30), || {
            Cri::connect(&me.sock)
                .ok()
                .filter(|_| me.sock.exists())
                .map(|_| ())
        });
        assert!(
            up.is_some(),
            "containerd did not serve {} within 30 s; its log:\n{}",
            me.sock.display(),
            me.log()
        );
        me
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("containerd.log")).unwrap_or_default()
    }

    fn ctr(&self) -> Command {
        let mut c = Command::new("ctr");
        c.arg("--address")
            .arg(&self.sock)
            .args(["--namespace", "k8s.io"]);
        c
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        // Sandbox (and its containers) through the CRI, so the shims exit.
        if let (Some(sb), Ok(mut cri)) = (self.sandbox.take(), Cri::connect(&self.sock)) {
            let req = pb::SandboxIdRequest { pod_sandbox_id: sb };
            let r: Result<pb::Empty, _> =
                cri.call("/runtime.v1.RuntimeService/StopPodSandbox", req.clone());
            eprintln!("StopPodSandbox: {r:?}");
            let r: Result<pb::Empty, _> =
                cri.call("/runtime.v1.RuntimeService/RemovePodSandbox", req);
            eprintln!("RemovePodSandbox: {r:?}");
        }
        // Anything left in the pod's cgroups (a failed stop): kill it.
        let pod_cgroups: Vec<PathBuf> = hierarchies()
            .iter()
            .map(|h| h.join(self.cgroup_parent.trim_start_matches('/')))
            .collect();
        for c in &pod_cgroups {
            kill_cgroup_tree(c);
        }
        if let Some(mut d) = self.daemon.take() {
            d.signal(libc::SIGTERM);
            let t = Instant::now();
            while t.elapsed() < Duration::from_secs(10) {
                if d.0.try_wait().ok().flatten().is_some() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        // Mounts containerd or its shims left under the temp dir (rootfs, shm), innermost first.
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mut ours: Vec<&str> = mounts
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|m| Path::new(m).starts_with(&self.dir))
            .collect();
        ours.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in ours {
            let c = std::ffi::CString::new(m).unwrap();
            // SAFETY: unmounting a path under our own temp directory.
            let rc = unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
            eprintln!("umount {m}: {rc}");
        }
        for c in &pod_cgroups {
            remove_cgroup_tree(c);
        }
        for d in &self.created {
            // Only if empty (another test may have started using it meanwhile).
            let _ = std::fs::remove_dir(d);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn kill_cgroup_tree(dir: &Path) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        if e.path().is_dir() {
            kill_cgroup_tree(&e.path());
        }
    }
    for pid in std::fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|p| p.trim().parse::<i32>().ok())
    {
        // SAFETY: killing a process of the test's own pod.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
}

fn remove_cgroup_tree(dir: &Path) {
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.path().is_dir() {
                remove_cgroup_tree(&e.path());
            }
        }
    }
    for _ in 0..50 {
        if std::fs::remove_dir(dir).is_ok() || !dir.exists() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!("could not remove cgroup {}", dir.display());
}

fn labels(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn top_json(host_root: &Path, extra: &[&str]) -> Value {
    let out = Command::new(leaktracer())
        .arg("--host-root")
        .arg(host_root)
        .args(extra)
        .args(["top", "--once", "--format", "json", "--duration", "5s"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// CreateContainer + StartContainer in the sandbox, as kubelet does (its labels included):
/// `/leaker <rate>`. Returns the container id.
fn run_container(
    cri: &mut Cri,
    containerd: &Containerd,
    sandbox_id: &str,
    sandbox_config: &pb::PodSandboxConfig,
    name: &str,
    rate_kib: &str,
) -> String {
    let pod_uid = sandbox_config.metadata.as_ref().unwrap().uid.clone();
    let created: pb::CreateContainerResponse = cri
        .call(
            "/runtime.v1.RuntimeService/CreateContainer",
            pb::CreateContainerRequest {
                pod_sandbox_id: sandbox_id.to_owned(),
                config: Some(pb::ContainerConfig {
                    metadata: Some(pb::ContainerMetadata {
                        name: name.into(),
                        attempt: 0,
                    }),
                    image: Some(pb::ImageSpec {
                        image: IMAGE.into(),
                    }),
                    command: vec!["/leaker".into()],
                    args: vec![rate_kib.into()],
                    labels: labels(&[
                        ("io.kubernetes.pod.name", POD),
                        ("io.kubernetes.pod.namespace", NAMESPACE),
                        ("io.kubernetes.pod.uid", &pod_uid),
                        ("io.kubernetes.container.name", name),
                    ]),
                }),
                sandbox_config: Some(sandbox_config.clone()),
            },
        )
        .unwrap_or_else(|e| panic!("{e}\ncontainerd log:\n{}", containerd.log()));
    let cid = created.container_id;
    let _: pb::Empty = cri
        .call(
            "/runtime.v1.RuntimeService/StartContainer",
            pb::ContainerIdRequest {
                container_id: cid.clone(),
            },
        )
        .unwrap_or_else(|e| panic!("{e}\ncontainerd log:\n{}", containerd.log()));
    cid
}

/// The container's process: its cgroup is <cgroup parent>/<container id> (cgroupfs driver).
fn container_pid(cgroup_parent: &str, cid: &str) -> u32 {
    let procs = PathBuf::from(format!(
        "/sys/fs/cgroup/memory{cgroup_parent}/{cid}/cgroup.procs"
    ));
    wait_until(Duration::from_secs(10), || {
        std::fs::read_to_string(&procs)
            .ok()?
            .lines()
            .next()?
            .trim()
            .parse()
            .ok()
    })
    .unwrap_or_else(|| panic!("no process in {}", procs.display()))
}

fn stop_container(cri: &mut Cri, cid: &str) {
    let _: pb::Empty = cri
        .call(
            "/runtime.v1.RuntimeService/StopContainer",
            pb::StopContainerRequest {
                container_id: cid.to_owned(),
                timeout: 0,
            },
        )
        .expect("StopContainer");
    let _: pb::Empty = cri
        .call(
            "/runtime.v1.RuntimeService/RemoveContainer",
            pb::ContainerIdRequest {
                container_id: cid.to_owned(),
            },
        )
        .expect("RemoveContainer");
}

#[test]
fn pod_names_come_from_a_real_containerd_cri() {
    let Some(_serial) = privileged() else { return };
    require_tools();
    let t0 = Instant::now();
    let pid = std::process::id();
    let pod_uid = format!("7e57c41d-{:04x}-4c0e-8a1d-0123456789ab", pid & 0xffff);
    let dir = std::env::temp_dir().join(format!("leaktracer-cri-{pid}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let cgroup_parent = format!("/kubepods/burstable/pod{pod_uid}");

    let mut containerd = Containerd::start(&dir, &cgroup_parent);
    eprintln!("containerd up after {:.1?}", t0.elapsed());
    let tar = build_image(&dir);
    eprintln!("image built after {:.1?}", t0.elapsed());
    run_checked(
        containerd
            .ctr()
            .args(["images", "import", "--snapshotter", "native"])
            .arg(&tar),
    );
    eprintln!("image imported after {:.1?}", t0.elapsed());

    let mut cri = Cri::connect(&containerd.sock).expect("CRI connection");
    // As kubelet sends it: metadata, its labels, the pod cgroup, host network (no CNI here).
    let sandbox_config = pb::PodSandboxConfig {
        metadata: Some(pb::PodSandboxMetadata {
            name: POD.into(),
            uid: pod_uid.clone(),
            namespace: NAMESPACE.into(),
            attempt: 0,
        }),
        // Empty, as kubelet sends it for host-network pods (no private UTS namespace).
        hostname: String::new(),
        log_directory: String::new(),
        labels: labels(&[
            ("io.kubernetes.pod.name", POD),
            ("io.kubernetes.pod.namespace", NAMESPACE),
            ("io.kubernetes.pod.uid", &pod_uid),
        ]),
        linux: Some(pb::LinuxPodSandboxConfig {
            cgroup_parent: cgroup_parent.clone(),
            security_context: Some(pb::LinuxSandboxSecurityContext {
                namespace_options: Some(pb::NamespaceOption {
                    network: 2, // NODE
                    pid: 0,
                    ipc: 0,
                }),
            }),
        }),
    };
    let sandbox: pb::RunPodSandboxResponse = cri
        .call(
            "/runtime.v1.RuntimeService/RunPodSandbox",
            pb::RunPodSandboxRequest {
                config: Some(sandbox_config.clone()),
                runtime_handler: String::new(),
            },
        )
        .unwrap_or_else(|e| panic!("{e}\ncontainerd log:\n{}", containerd.log()));
    containerd.sandbox = Some(sandbox.pod_sandbox_id.clone());
    eprintln!(
        "sandbox {} running after {:.1?}",
        sandbox.pod_sandbox_id,
        t0.elapsed()
    );
    let cid = run_container(
        &mut cri,
        &containerd,
        &sandbox.pod_sandbox_id,
        &sandbox_config,
        CONTAINER,
        "4096",
    );
    eprintln!("container {cid} started after {:.1?}", t0.elapsed());

    let leaker_pid = container_pid(&cgroup_parent, &cid);

    // Host root: real proc/ and sys/, the CRI socket where containerd's usually is, no /var/log.
    let host_root = dir.join("host");
    std::fs::create_dir_all(host_root.join("run/containerd")).unwrap();
    std::os::unix::fs::symlink("/proc", host_root.join("proc")).unwrap();
    std::os::unix::fs::symlink("/sys", host_root.join("sys")).unwrap();
    std::os::unix::fs::symlink(
        &containerd.sock,
        host_root.join("run/containerd/containerd.sock"),
    )
    .unwrap();
    assert!(!host_root.join("var/log/pods").exists());

    let t_top = Instant::now();
    let doc = top_json(&host_root, &[]);
    eprintln!(
        "leaktracer top (CRI) took {:.1?}; test at {:.1?}",
        t_top.elapsed(),
        t0.elapsed()
    );
    let row = row_of(&doc, leaker_pid)
        .unwrap_or_else(|| panic!("leaker {leaker_pid} missing: {doc:#}"))
        .clone();
    eprintln!("leaker row: {row}");
    assert_eq!(row["namespace"], NAMESPACE, "{row}");
    assert_eq!(row["pod"], POD, "{row}");
    assert_eq!(row["container"], CONTAINER, "{row}");
    assert_eq!(row["pod_uid"], pod_uid.as_str(), "{row}");
    assert_eq!(row["container_id"], cid.as_str(), "{row}");
    assert_eq!(row["qos"], "Burstable", "{row}");

    // Without the CRI the same host root has no names for it: they came from the runtime.
    let doc = top_json(&host_root, &["--cri-socket", "none"]);
    let row = row_of(&doc, leaker_pid)
        .unwrap_or_else(|| panic!("leaker {leaker_pid} missing: {doc:#}"))
        .clone();
    assert!(row["pod"].is_null(), "no CRI, no /var/log/pods: {row}");
    assert_eq!(row["container_id"], cid.as_str(), "{row}");

    // A container started while leaktracer runs (the usual case for a daemon): its process
    // record, written once when the process is first seen, already carries its names.
    let t_rec = Instant::now();
    let rec = Recording::start(
        "cri",
        &[
            "--host-root",
            host_root.to_str().unwrap(),
            "--interval",
            "250ms",
        ],
    );
    let late = run_container(
        &mut cri,
        &containerd,
        &sandbox.pod_sandbox_id,
        &sandbox_config,
        "late",
        "1024",
    );
    let late_pid = container_pid(&cgroup_parent, &late);
    std::thread::sleep(Duration::from_secs(2));
    let trace = rec.stop();
    eprintln!(
        "record with a late container took {:.1?}; test at {:.1?}",
        t_rec.elapsed(),
        t0.elapsed()
    );
    let process = trace
        .iter()
        .find(|r| r["type"] == "process" && r["pid"].as_u64() == Some(u64::from(late_pid)))
        .unwrap_or_else(|| panic!("no process record for the late container's pid {late_pid}"));
    eprintln!("late container's process record: {process}");
    assert_eq!(process["namespace"], NAMESPACE, "{process}");
    assert_eq!(process["pod"], POD, "{process}");
    assert_eq!(process["container"], "late", "{process}");
    assert_eq!(process["pod_uid"], pod_uid.as_str(), "{process}");
    assert_eq!(process["container_id"], late.as_str(), "{process}");

    // Stop and remove the containers through the CRI too (the sandbox goes in Drop).
    stop_container(&mut cri, &late);
    stop_container(&mut cri, &cid);
    drop(cri);
    drop(containerd);
    for h in hierarchies() {
        let c = h.join(cgroup_parent.trim_start_matches('/'));
        assert!(!c.exists(), "pod cgroup {} left behind", c.display());
    }
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(dir.to_str().unwrap()),
        "mounts left under {}",
        dir.display()
    );
    eprintln!("done after {:.1?}", t0.elapsed());
}
