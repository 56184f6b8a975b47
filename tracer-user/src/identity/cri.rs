//! Pod, namespace and container names from the node's CRI runtime (containerd, k3s, CRI-O).
//!
//! kubelet labels every container it creates through the CRI with `io.kubernetes.pod.name`,
//! `io.kubernetes.pod.namespace`, `io.kubernetes.pod.uid` and `io.kubernetes.container.name`;
//! `runtime.v1.RuntimeService/ListContainers` returns them with the container id, which is the id
//! the cgroup path carries. That is more direct than the kubelet's log directories (which need
//! `/var/log/pods` mounted and cannot always tell containers of one pod apart), so names from
//! here win; the log directories stay the fallback (no socket, or a container it does not know).
//!
//! Only the few CRI v1 messages and fields needed are written out below, as prost structs with
//! the field numbers of k8s.io/cri-api `pkg/apis/runtime/v1/api.proto` (no protoc at build time);
//! unknown fields in replies are skipped by prost.
//!
//! # Threading and cost
//!
//! The resolver is called synchronously from the session loop (which runs on tokio, but also from
//! plain threads in `top`), so the gRPC client lives on its own thread with a small current-thread
//! tokio runtime, and shares a map `container id -> names` with the resolver. A lookup is a hash
//! map read under a mutex. On a miss for a container id not asked about before, the resolver asks
//! for a refresh and waits at most [`MISS_WAIT`] for it (so a process seen in its first second
//! still gets its names on its first record); ids that stay unknown (a podman container, a
//! container already gone) are never waited for again. A refresh is one `ListContainers` call
//! with a [`RPC_TIMEOUT`] deadline, done at most every [`MIN_REFRESH_INTERVAL`], and only when
//! some lookup missed. A background thread was preferred over `block_on` at the call site: the
//! call site may itself be inside a tokio runtime (where `block_on` panics), and a slow or hung
//! runtime socket then costs the session loop at most `MISS_WAIT` once per new container.
//! Errors (no socket, connection refused, unimplemented) are logged once and never fatal.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::Identity;

/// Sockets tried, in order, under the host root when no `--cri-socket` is given.
pub const DEFAULT_SOCKETS: &[&str] = &[
    "run/k3s/containerd/containerd.sock",
    "run/containerd/containerd.sock",
    "var/run/crio/crio.sock",
    "run/crio/crio.sock",
];
/// Deadline of one connect or RPC.
pub const RPC_TIMEOUT: Duration = Duration::from_secs(2);
/// Minimum time between two `ListContainers` calls.
pub const MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(5);
/// Longest the resolver waits for a refresh on a miss (once per unknown container id).
pub const MISS_WAIT: Duration = Duration::from_millis(300);
/// Bound on containers kept (a node runs a few hundred; a list larger than this is cut).
const MAX_CONTAINERS: usize = 16384;
/// Bound on remembered unknown ids before that set is cleared.
const MAX_UNKNOWN: usize = 16384;

pub const LABEL_POD_NAME: &str = "io.kubernetes.pod.name";
pub const LABEL_POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";
pub const LABEL_POD_UID: &str = "io.kubernetes.pod.uid";
pub const LABEL_CONTAINER_NAME: &str = "io.kubernetes.container.name";

/// CRI v1 messages, only the fields used (field numbers from cri-api's api.proto).
pub mod proto {
    use std::collections::HashMap;

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ListContainersRequest {
        #[prost(message, optional, tag = "1")]
        pub filter: Option<ContainerFilter>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ContainerFilter {
        #[prost(string, tag = "1")]
        pub id: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ListContainersResponse {
        #[prost(message, repeated, tag = "1")]
        pub containers: Vec<Container>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Container {
        #[prost(string, tag = "1")]
        pub id: String,
        #[prost(string, tag = "2")]
        pub pod_sandbox_id: String,
        #[prost(message, optional, tag = "3")]
        pub metadata: Option<ContainerMetadata>,
        #[prost(map = "string, string", tag = "8")]
        pub labels: HashMap<String, String>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ContainerMetadata {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(uint32, tag = "2")]
        pub attempt: u32,
    }
}

/// What the CRI says about one container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CriNames {
    pub namespace: String,
    pub pod: String,
    pub container: String,
    pub pod_uid: Option<String>,
}

/// Names of a listed container from kubelet's labels; the container name falls back to the CRI
/// metadata name (kubelet sets both equal). `None` without pod name and namespace labels (a
/// container not made by kubelet, e.g. created with `ctr` in the k8s.io namespace).
pub fn names_from_container(c: &proto::Container) -> Option<CriNames> {
    let label = |k: &str| c.labels.get(k).filter(|v| !v.is_empty()).cloned();
    let namespace = label(LABEL_POD_NAMESPACE)?;
    let pod = label(LABEL_POD_NAME)?;
    let container = label(LABEL_CONTAINER_NAME).or_else(|| {
        c.metadata
            .as_ref()
            .map(|m| m.name.clone())
            .filter(|n| !n.is_empty())
    })?;
    Some(CriNames {
        namespace,
        pod,
        container,
        pod_uid: label(LABEL_POD_UID),
    })
}

/// Container-id-keyed names, refresh bookkeeping: the logic, without I/O, for unit tests.
#[derive(Debug, Default)]
pub struct Cache {
    names: HashMap<String, CriNames>,
    /// Ids looked up and missed since the last refresh began (asked for, not waited again).
    unknown: HashSet<String>,
    last_refresh: Option<Instant>,
    /// Completed refresh attempts (successful or not).
    generation: u64,
    /// A lookup missed since the last refresh began.
    wanted: bool,
    /// A refresh is running (begun, not finished).
    refreshing: bool,
}

/// Result of [`Cache::lookup`].
#[derive(Debug, PartialEq, Eq)]
pub enum Lookup {
    Hit(CriNames),
    /// Unknown; `wait`: first miss for this id, worth waiting for the refresh it requested.
    Miss {
        wait: bool,
    },
}

impl Cache {
    pub fn lookup(&mut self, container_id: &str) -> Lookup {
        if let Some(n) = self.names.get(container_id) {
            return Lookup::Hit(n.clone());
        }
        self.wanted = true;
        if self.unknown.len() >= MAX_UNKNOWN {
            self.unknown.clear();
        }
        Lookup::Miss {
            wait: self.unknown.insert(container_id.to_owned()),
        }
    }

    /// A refresh is wanted and the minimum interval since the last one has passed; else how
    /// long to wait before it is (`Err(None)`: nothing wanted).
    pub fn refresh_due(
        &self,
        now: Instant,
        min_interval: Duration,
    ) -> Result<(), Option<Duration>> {
        if !self.wanted {
            return Err(None);
        }
        match self.last_refresh {
            Some(t) if now.duration_since(t) < min_interval => {
                Err(Some(min_interval - now.duration_since(t)))
            }
            _ => Ok(()),
        }
    }

    /// A refresh starts now: clears the request (misses from now on ask again).
    pub fn begin_refresh(&mut self, now: Instant) {
        self.wanted = false;
        self.refreshing = true;
        self.last_refresh = Some(now);
    }

    /// A refresh ended; `list` is `None` when it failed (the old names are kept then).
    pub fn finish_refresh(&mut self, list: Option<Vec<proto::Container>>) {
        if let Some(list) = list {
            self.names = list
                .iter()
                .filter_map(|c| Some((c.id.clone(), names_from_container(c)?)))
                .take(MAX_CONTAINERS)
                .collect();
        }
        self.generation += 1;
        self.refreshing = false;
    }

    /// The generation a miss made now must wait for: the next refresh to *begin* after it
    /// (one already running may have listed before the container existed).
    pub fn awaited_generation(&self) -> u64 {
        self.generation + 1 + u64::from(self.refreshing)
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.names.len()
    }
}

static FLAG: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();

/// Record `--cri-socket` once at startup (from `main`); [`super::Resolver::new`] reads it.
pub fn set_socket_flag(flag: Option<PathBuf>) {
    let _ = FLAG.set(flag);
}

/// The socket choice for `host_root`, from `--cri-socket` if `main` recorded one.
pub fn configured(host_root: &Path) -> SocketChoice {
    SocketChoice::from_flag(FLAG.get().and_then(|f| f.as_deref()), host_root)
}

/// Where to find the runtime's socket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SocketChoice {
    /// The first of [`DEFAULT_SOCKETS`] that exists under this host root (checked at each
    /// refresh, so a runtime started after leaktracer is found).
    Discover(PathBuf),
    Path(PathBuf),
    Disabled,
}

impl SocketChoice {
    /// From `--cri-socket`: absent -> discover under `host_root`; `none` -> disabled; else the path.
    pub fn from_flag(flag: Option<&Path>, host_root: &Path) -> Self {
        match flag {
            None => SocketChoice::Discover(host_root.to_owned()),
            Some(p) if p.as_os_str() == "none" => SocketChoice::Disabled,
            Some(p) => SocketChoice::Path(p.to_owned()),
        }
    }

    fn locate(&self) -> Option<PathBuf> {
        match self {
            SocketChoice::Discover(root) => DEFAULT_SOCKETS
                .iter()
                .map(|s| root.join(s))
                .find(|p| p.exists()),
            SocketChoice::Path(p) => Some(p.clone()),
            SocketChoice::Disabled => None,
        }
    }
}

struct Shared {
    cache: Mutex<Cache>,
    cond: Condvar,
    stop: Mutex<bool>,
}

/// Handle to the CRI name cache and its refresh thread (stopped when dropped).
pub struct CriResolver {
    shared: Arc<Shared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl CriResolver {
    /// Starts the refresh thread, which lists containers once right away (so names are usually
    /// known before the first lookup). `None` when disabled, or no socket is found on a node
    /// without a CRI runtime (checked once here).
    pub fn start(choice: SocketChoice) -> Option<Self> {
        let first = choice.locate()?;
        log::debug!("CRI: names from {}", first.display());
        let shared = Arc::new(Shared {
            cache: Mutex::new(Cache {
                wanted: true,
                ..Cache::default()
            }),
            cond: Condvar::new(),
            stop: Mutex::new(false),
        });
        let worker = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("cri-names".into())
            .spawn(move || refresh_loop(&worker, &choice))
            .map_err(|e| log::warn!("CRI: cannot start its thread: {e}"))
            .ok()?;
        Some(CriResolver {
            shared,
            thread: Some(thread),
        })
    }

    /// Names for `container_id`, waiting at most `MISS_WAIT` on the first miss for this id.
    pub fn names(&self, container_id: &str) -> Option<CriNames> {
        let mut cache = self.shared.cache.lock().unwrap_or_else(|e| e.into_inner());
        let target = cache.awaited_generation();
        match cache.lookup(container_id) {
            Lookup::Hit(n) => return Some(n),
            Lookup::Miss { wait: false } => {
                self.shared.cond.notify_all();
                return None;
            }
            Lookup::Miss { wait: true } => self.shared.cond.notify_all(),
        }
        // Pointless to wait when the pacing holds the next refresh back longer than we would.
        if let Err(Some(d)) = cache.refresh_due(Instant::now(), MIN_REFRESH_INTERVAL) {
            if d > MISS_WAIT {
                return None;
            }
        }
        let deadline = Instant::now() + MISS_WAIT;
        while cache.generation() < target {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            cache = self
                .shared
                .cond
                .wait_timeout(cache, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        match cache.lookup(container_id) {
            Lookup::Hit(n) => Some(n),
            Lookup::Miss { .. } => None,
        }
    }

    /// Fill `id`'s names from the CRI when it knows its container. Returns whether it did.
    pub fn resolve(&self, id: &mut Identity) -> bool {
        let Some(cid) = id.container_id.as_deref() else {
            return false;
        };
        let Some(n) = self.names(cid) else {
            return false;
        };
        if id.pod_uid.is_none() {
            id.pod_uid = n.pod_uid;
        }
        id.namespace = Some(n.namespace);
        id.pod = Some(n.pod);
        id.container = Some(n.container);
        true
    }
}

impl Drop for CriResolver {
    fn drop(&mut self) {
        *self.shared.stop.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.shared.cond.notify_all();
        if let Some(t) = self.thread.take() {
            // At most one RPC_TIMEOUT (an RPC in flight) plus a connect.
            let _ = t.join();
        }
    }
}

fn refresh_loop(shared: &Shared, choice: &SocketChoice) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            log::warn!("CRI: no runtime for its client: {e}");
            return;
        }
    };
    let mut client: Option<Client> = None;
    let mut warned = false;
    loop {
        {
            let mut cache = shared.cache.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                if *shared.stop.lock().unwrap_or_else(|e| e.into_inner()) {
                    return;
                }
                match cache.refresh_due(Instant::now(), MIN_REFRESH_INTERVAL) {
                    Ok(()) => break,
                    Err(wait) => {
                        let wait = wait.unwrap_or(Duration::from_secs(3600));
                        cache = shared
                            .cond
                            .wait_timeout(cache, wait)
                            .unwrap_or_else(|e| e.into_inner())
                            .0;
                    }
                }
            }
            cache.begin_refresh(Instant::now());
        }
        let result = rt.block_on(async {
            if client.is_none() {
                let path = choice
                    .locate()
                    .ok_or_else(|| anyhow::anyhow!("no CRI socket found"))?;
                client = Some(Client::connect(&path).await?);
            }
            let c = client.as_mut().expect("connected above");
            c.list_containers().await
        });
        let list = match result {
            Ok(list) => {
                log::debug!("CRI: {} containers listed", list.len());
                warned = false;
                Some(list)
            }
            Err(e) => {
                // Reconnect next time (the runtime may have restarted).
                client = None;
                if !warned {
                    log::warn!(
                        "CRI: listing containers failed (names fall back to /var/log/pods): {e:#}"
                    );
                    warned = true;
                } else {
                    log::debug!("CRI: listing containers failed: {e:#}");
                }
                None
            }
        };
        let mut cache = shared.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache.finish_refresh(list);
        drop(cache);
        shared.cond.notify_all();
    }
}

/// A CRI v1 RuntimeService client over a unix socket, without TLS.
pub struct Client {
    grpc: tonic::client::Grpc<tonic::transport::Channel>,
}

impl Client {
    pub async fn connect(path: &Path) -> anyhow::Result<Self> {
        let path = path.to_owned();
        let shown = path.display().to_string();
        // The URI is a placeholder: the connector ignores it and dials the socket.
        let endpoint = tonic::transport::Endpoint::from_static("http://cri.invalid")
            .connect_timeout(RPC_TIMEOUT)
            .timeout(RPC_TIMEOUT);
        let channel =
            endpoint.connect_with_connector(tower::service_fn(move |_: tonic::transport::Uri| {
                let path = path.clone();
                async move {
                    let s = tokio::net::UnixStream::connect(path).await?;
                    Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(s))
                }
            }));
        let channel = tokio::time::timeout(RPC_TIMEOUT, channel)
            .await
            .map_err(|_| anyhow::anyhow!("connecting to {shown}: timed out"))?
            .map_err(|e| anyhow::anyhow!("connecting to {shown}: {e}"))?;
        Ok(Client {
            grpc: tonic::client::Grpc::new(channel),
        })
    }

    pub async fn list_containers(&mut self) -> anyhow::Result<Vec<proto::Container>> {
        let call = async {
            self.grpc.ready().await?;
            let path = tonic::codegen::http::uri::PathAndQuery::from_static(
                "/runtime.v1.RuntimeService/ListContainers",
            );
            let codec = tonic_prost::ProstCodec::<
                proto::ListContainersRequest,
                proto::ListContainersResponse,
            >::default();
            let resp = self
                .grpc
                .unary(
                    tonic::Request::new(proto::ListContainersRequest::default()),
                    path,
                    codec,
                )
                .await?;
            anyhow::Ok(resp.into_inner().containers)
        };
        tokio::time::timeout(RPC_TIMEOUT, call)
            .await
            .map_err(|_| anyhow::anyhow!("ListContainers timed out"))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message as _;

    fn container(id: &str, labels: &[(&str, &str)], name: &str) -> proto::Container {
        proto::Container {
            id: id.into(),
            pod_sandbox_id: "sb".into(),
            metadata: Some(proto::ContainerMetadata {
                name: name.into(),
                attempt: 0,
            }),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    const KUBELET: &[(&str, &str)] = &[
        (LABEL_POD_NAME, "web-7f9c"),
        (LABEL_POD_NAMESPACE, "shop"),
        (LABEL_POD_UID, "3f1c2a7e-5b6d-4e8f-9a0b-1c2d3e4f5a6b"),
        (LABEL_CONTAINER_NAME, "app"),
    ];

    #[test]
    fn labels_map_to_names() {
        let n = names_from_container(&container("c1", KUBELET, "ignored")).unwrap();
        assert_eq!(
            n,
            CriNames {
                namespace: "shop".into(),
                pod: "web-7f9c".into(),
                container: "app".into(),
                pod_uid: Some("3f1c2a7e-5b6d-4e8f-9a0b-1c2d3e4f5a6b".into()),
            }
        );
        // Container name label missing: the CRI metadata name.
        let n = names_from_container(&container("c1", &KUBELET[..3], "sidecar")).unwrap();
        assert_eq!(n.container, "sidecar");
        // Not made by kubelet (no pod labels, or empty ones): nothing.
        assert_eq!(names_from_container(&container("c1", &[], "x")), None);
        assert_eq!(
            names_from_container(&container(
                "c1",
                &[(LABEL_POD_NAME, ""), (LABEL_POD_NAMESPACE, "ns")],
                "x"
            )),
            None
        );
        assert_eq!(
            names_from_container(&container("c1", &KUBELET[..2], "")),
            None,
            "no container name at all"
        );
    }

    #[test]
    fn wire_format_matches_cri_field_numbers() {
        // Bytes as a CRI server sends them: Container{id=1, metadata=3{name=1}, labels=8}.
        let c = container("abc", &[(LABEL_POD_NAME, "p")], "app");
        let resp = proto::ListContainersResponse {
            containers: vec![c.clone()],
        };
        let bytes = resp.encode_to_vec();
        // field 1 (containers), wire type 2 -> 0x0a; inside, field 1 (id) -> 0x0a 0x03 "abc".
        assert_eq!(bytes[0], 0x0a);
        assert_eq!(&bytes[2..7], b"\x0a\x03abc");
        // metadata is field 3, wire type 2 -> 0x1a; labels field 8 -> 0x42.
        assert!(bytes.contains(&0x1a) && bytes.contains(&0x42));
        let back = proto::ListContainersResponse::decode(bytes.as_slice()).unwrap();
        assert_eq!(back.containers, vec![c]);
        // Unknown fields (image=4, state=6, created_at=7, annotations=9) are skipped.
        let mut extra = Vec::new();
        prost::encoding::string::encode(4, &"docker.io/x".to_string(), &mut extra);
        prost::encoding::int64::encode(7, &12345, &mut extra);
        prost::encoding::string::encode(1, &"zz".to_string(), &mut extra);
        let got = proto::Container::decode(extra.as_slice()).unwrap();
        assert_eq!(got.id, "zz");
    }

    #[test]
    fn cache_hits_misses_and_refresh_pacing() {
        let t0 = Instant::now();
        let iv = Duration::from_secs(5);
        let mut c = Cache::default();
        assert_eq!(c.refresh_due(t0, iv), Err(None), "nothing wanted yet");
        // First miss: wait for the refresh; the same id again: do not wait again.
        assert_eq!(c.lookup("c1"), Lookup::Miss { wait: true });
        assert_eq!(c.lookup("c1"), Lookup::Miss { wait: false });
        assert_eq!(c.refresh_due(t0, iv), Ok(()), "never refreshed: due now");
        assert_eq!(c.awaited_generation(), 1);
        c.begin_refresh(t0);
        assert_eq!(
            c.awaited_generation(),
            2,
            "a miss now waits for the next refresh"
        );
        assert_eq!(c.refresh_due(t0, iv), Err(None), "request taken");
        c.finish_refresh(Some(vec![
            container("c1", KUBELET, "app"),
            container("pause", &[], "POD"),
        ]));
        assert_eq!(c.generation(), 1);
        assert_eq!(c.len(), 1, "unlabelled containers are not kept");
        assert!(matches!(c.lookup("c1"), Lookup::Hit(n) if n.container == "app"));
        // A new id within the interval: wanted but paced.
        assert_eq!(c.lookup("c2"), Lookup::Miss { wait: true });
        let t1 = t0 + Duration::from_secs(2);
        assert_eq!(c.refresh_due(t1, iv), Err(Some(Duration::from_secs(3))));
        assert_eq!(c.refresh_due(t0 + iv, iv), Ok(()));
        // A failed refresh keeps the old names.
        c.begin_refresh(t0 + iv);
        c.finish_refresh(None);
        assert_eq!(c.generation(), 2);
        assert!(matches!(c.lookup("c1"), Lookup::Hit(_)));
        // A successful one replaces them (c1 gone, c2 there).
        c.begin_refresh(t0 + iv * 2);
        c.finish_refresh(Some(vec![container("c2", KUBELET, "app")]));
        assert!(matches!(c.lookup("c1"), Lookup::Miss { .. }));
        assert!(matches!(c.lookup("c2"), Lookup::Hit(_)));
    }

    #[test]
    fn unknown_set_is_bounded() {
        let mut c = Cache::default();
        for i in 0..(MAX_UNKNOWN + 10) {
            let _ = c.lookup(&format!("id{i}"));
        }
        assert!(c.unknown.len() <= MAX_UNKNOWN);
    }

    #[test]
    fn socket_choice() {
        let root = tempfile::tempdir().unwrap();
        assert_eq!(
            SocketChoice::from_flag(Some(Path::new("none")), root.path()),
            SocketChoice::Disabled
        );
        let d = SocketChoice::from_flag(None, root.path());
        assert_eq!(d.locate(), None, "no runtime on this root");
        assert!(CriResolver::start(d.clone()).is_none());
        std::fs::create_dir_all(root.path().join("run/containerd")).unwrap();
        std::fs::create_dir_all(root.path().join("var/run/crio")).unwrap();
        std::fs::write(root.path().join("var/run/crio/crio.sock"), "").unwrap();
        assert_eq!(d.locate(), Some(root.path().join("var/run/crio/crio.sock")));
        std::fs::write(root.path().join("run/containerd/containerd.sock"), "").unwrap();
        assert_eq!(
            d.locate(),
            Some(root.path().join("run/containerd/containerd.sock")),
            "containerd before CRI-O"
        );
    }

    #[test]
    fn unreachable_socket_costs_one_bounded_wait_per_id() {
        // A path that exists but is no socket: connecting fails fast; lookups return None and
        // the second lookup of the same id does not wait.
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("not-a-socket");
        std::fs::write(&sock, "").unwrap();
        let cri = CriResolver::start(SocketChoice::Path(sock)).unwrap();
        let t = Instant::now();
        assert_eq!(cri.names("c1"), None);
        assert!(t.elapsed() <= MISS_WAIT + Duration::from_millis(200));
        let t = Instant::now();
        assert_eq!(cri.names("c1"), None);
        assert!(t.elapsed() < Duration::from_millis(50), "{:?}", t.elapsed());
        let mut id = Identity {
            container_id: Some("c1".into()),
            ..Default::default()
        };
        assert!(!cri.resolve(&mut id));
        assert_eq!(id.pod, None);
        drop(cri);
    }
}
