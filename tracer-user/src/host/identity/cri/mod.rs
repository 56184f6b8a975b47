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
//! The resolver is called synchronously by the sinks, from inside the session's tokio runtime
//! (where `block_on` panics), once per new process or exec. So the gRPC client lives on a thread
//! of its own with a small current-thread tokio runtime, and shares a map `container id -> names`
//! with the resolver: a lookup is a hash map read under a mutex. At start the thread lists all
//! containers (`ListContainers`), so containers already running are known before the first
//! lookup. On a miss for an id not asked about before, the resolver queues that id and waits at
//! most [`MISS_WAIT`] while the thread asks for it alone (`ListContainers` filtered by id, a
//! small reply), so a container started while leaktracer runs is named on its process's first
//! record. Per-id queries rather than a paced whole-list refresh: a pod starts its sandbox
//! (pause, unknown to `ListContainers`) and then its containers within a second, and a paced
//! refresh spent on the sandbox would miss them. Ids that stay unknown (sandboxes, podman
//! containers, containers already gone) are never queried or waited for again, so the cost is
//! one small RPC per new container id. Every call has a [`RPC_TIMEOUT`] deadline; after a failure
//! (no socket, refused, timed out) nothing is asked for [`ERROR_BACKOFF`] and lookups do not
//! wait, so a hung runtime costs the session at most `MISS_WAIT` once. Errors are logged once
//! (warn) and never fatal; names then come from `/var/log/pods`.

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
/// After a failed call (no socket, refused, timed out), no call for this long.
pub const ERROR_BACKOFF: Duration = Duration::from_secs(10);
/// Longest the resolver waits for a refresh on a miss (once per unknown container id).
pub const MISS_WAIT: Duration = Duration::from_millis(300);
/// Bound on containers kept (a node runs a few hundred; a list larger than this is cut).
const MAX_CONTAINERS: usize = 16384;
/// Bound on remembered unknown ids before that set is cleared.
const MAX_UNKNOWN: usize = 16384;
/// Ids queried in one round at most (one small RPC each).
const MAX_PENDING: usize = 256;

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

/// Container-id-keyed names and the bookkeeping of what to ask the runtime: the logic, without
/// I/O, for unit tests.
#[derive(Debug, Default)]
pub struct Cache {
    names: HashMap<String, CriNames>,
    /// Ids missed once: queued for a query, and never waited for again.
    asked: HashSet<String>,
    /// Ids to query (`ListContainers` filtered by id), bounded by [`MAX_PENDING`].
    pending: Vec<String>,
    /// Ids whose query failed (not: found nothing), queried again after [`ERROR_BACKOFF`].
    retry: Vec<String>,
    /// The whole list is wanted (at start, and after it failed).
    full_wanted: bool,
    last_error: Option<Instant>,
    /// Completed rounds of work (successful or not).
    generation: u64,
    /// A round is running (taken, not finished).
    busy: bool,
}

/// Result of [`Cache::lookup`].
#[derive(Debug, PartialEq, Eq)]
pub enum Lookup {
    Hit(CriNames),
    /// Unknown; `wait`: first miss for this id, worth waiting for the query it queued.
    Miss {
        wait: bool,
    },
}

/// One round of work for the refresh thread.
#[derive(Debug, PartialEq, Eq)]
pub struct Work {
    /// List every container (and replace the map).
    pub full: bool,
    /// Then query these ids one by one.
    pub ids: Vec<String>,
}

impl Cache {
    /// Ready for the first round: the whole list.
    pub fn new() -> Self {
        Cache {
            full_wanted: true,
            ..Cache::default()
        }
    }

    pub fn lookup(&mut self, container_id: &str) -> Lookup {
        if let Some(n) = self.names.get(container_id) {
            return Lookup::Hit(n.clone());
        }
        if self.asked.contains(container_id) {
            return Lookup::Miss { wait: false };
        }
        if self.asked.len() >= MAX_UNKNOWN {
            self.asked.clear();
        }
        if self.pending.len() >= MAX_PENDING {
            // A burst of new containers beyond what one round asks about: this one stays
            // unnamed by the CRI (the log directories may still name it).
            return Lookup::Miss { wait: false };
        }
        self.asked.insert(container_id.to_owned());
        self.pending.push(container_id.to_owned());
        Lookup::Miss { wait: true }
    }

    /// Work to do now, or how long until there may be (`Err(None)`: nothing to do until a
    /// lookup misses). After an error everything waits `ERROR_BACKOFF`.
    pub fn next_work(&self, now: Instant) -> Result<(), Option<Duration>> {
        let retry_due = !self.retry.is_empty();
        if !self.full_wanted && self.pending.is_empty() && !retry_due {
            return Err(None);
        }
        match self.last_error {
            Some(t) if now.duration_since(t) < ERROR_BACKOFF => {
                Err(Some(ERROR_BACKOFF - now.duration_since(t)))
            }
            _ => Ok(()),
        }
    }

    /// Take the work [`Cache::next_work`] said is due.
    pub fn take_work(&mut self) -> Work {
        self.busy = true;
        let mut ids = std::mem::take(&mut self.retry);
        ids.append(&mut self.pending);
        Work {
            full: std::mem::take(&mut self.full_wanted),
            ids,
        }
    }

    /// A round ended: `full` is the whole list if one was taken and succeeded (`Err(())` when
    /// it failed), `found` the containers the id queries returned, `failed` the ids whose query
    /// failed (or was not attempted after a failure).
    pub fn finish_work(
        &mut self,
        full: Option<Result<Vec<proto::Container>, ()>>,
        found: Vec<proto::Container>,
        failed: Vec<String>,
        now: Instant,
    ) {
        match full {
            Some(Ok(list)) => {
                self.names = list
                    .iter()
                    .filter_map(|c| Some((c.id.clone(), names_from_container(c)?)))
                    .take(MAX_CONTAINERS)
                    .collect();
            }
            Some(Err(())) => {
                self.full_wanted = true;
                self.last_error = Some(now);
            }
            None => {}
        }
        for c in &found {
            if let Some(n) = names_from_container(c) {
                if self.names.len() >= MAX_CONTAINERS {
                    // Bounded: start over; the next full list (wanted now) repopulates it.
                    self.names.clear();
                    self.full_wanted = true;
                }
                self.names.insert(c.id.clone(), n);
            }
        }
        if !failed.is_empty() {
            self.last_error = Some(now);
            self.retry = failed;
        }
        self.generation += 1;
        self.busy = false;
    }

    /// The generation a miss made now must wait for: the next round to *begin* after it (one
    /// already running did not take this id).
    pub fn awaited_generation(&self) -> u64 {
        self.generation + 1 + u64::from(self.busy)
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.names.len()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Where to find the runtime's socket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SocketChoice {
    /// The first of [`DEFAULT_SOCKETS`] that exists under this host root: looked up at start
    /// (none there: CRI lookups stay off) and again at each reconnect.
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
}

impl CriResolver {
    /// Starts the refresh thread, which lists containers once right away (so names are usually
    /// known before the first lookup). `None` when disabled, or no socket is found on a node
    /// without a CRI runtime (checked once here).
    pub fn start(choice: SocketChoice) -> Option<Self> {
        let first = choice.locate()?;
        log::debug!("CRI: names from {}", first.display());
        let shared = Arc::new(Shared {
            cache: Mutex::new(Cache::new()),
            cond: Condvar::new(),
            stop: Mutex::new(false),
        });
        let worker = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("cri-names".into())
            .spawn(move || refresh_loop(&worker, &choice))
            .map_err(|e| log::warn!("CRI: cannot start its thread: {e}"))
            .ok()?;
        Some(CriResolver { shared })
    }

    /// Names for `container_id`, waiting at most `MISS_WAIT` on the first miss for this id.
    pub fn names(&self, container_id: &str) -> Option<CriNames> {
        let mut cache = self.shared.cache.lock().unwrap_or_else(|e| e.into_inner());
        let target = cache.awaited_generation();
        match cache.lookup(container_id) {
            Lookup::Hit(n) => return Some(n),
            Lookup::Miss { wait: false } => return None,
            Lookup::Miss { wait: true } => self.shared.cond.notify_all(),
        }
        // Pointless to wait when an error backoff holds the query back longer than we would.
        if let Err(Some(d)) = cache.next_work(Instant::now())
            && d > MISS_WAIT
        {
            return None;
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
        id.names.namespace = Some(n.namespace);
        id.names.pod = Some(n.pod);
        id.names.container = Some(n.container);
        true
    }
}

impl Drop for CriResolver {
    fn drop(&mut self) {
        // Not joined: an RPC in flight may take up to RPC_TIMEOUT, which must not delay exit
        // (the daemon stops within a second of SIGTERM). The thread ends after it.
        *self.shared.stop.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.shared.cond.notify_all();
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
        let work = {
            let mut cache = shared.cache.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                if *shared.stop.lock().unwrap_or_else(|e| e.into_inner()) {
                    return;
                }
                match cache.next_work(Instant::now()) {
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
            cache.take_work()
        };
        let mut error: Option<anyhow::Error> = None;
        let mut full = None;
        let mut found = Vec::new();
        let mut failed = Vec::new();
        rt.block_on(async {
            if client.is_none() {
                match choice.locate() {
                    None => error = Some(anyhow::anyhow!("no CRI socket found")),
                    Some(path) => match Client::connect(&path).await {
                        Ok(c) => client = Some(c),
                        Err(e) => error = Some(e),
                    },
                }
            }
            if work.full {
                full = Some(match (&mut client, &error) {
                    (Some(c), None) => c.list_containers(None).await.map_err(|e| {
                        error = Some(e);
                    }),
                    _ => Err(()),
                });
            }
            for id in work.ids {
                match (&mut client, &error) {
                    (Some(c), None) => match c.list_containers(Some(&id)).await {
                        Ok(list) => found.extend(list),
                        Err(e) => {
                            error = Some(e);
                            failed.push(id);
                        }
                    },
                    // After an error, the rest is retried after the backoff.
                    _ => failed.push(id),
                }
            }
        });
        match &error {
            None => {
                if let Some(Ok(list)) = &full {
                    log::debug!("CRI: {} containers listed", list.len());
                }
                warned = false;
            }
            Some(e) => {
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
            }
        }
        let mut cache = shared.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache.finish_work(full, found, failed, Instant::now());
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

    /// All containers, or only the one with this id (none when the runtime does not know it).
    pub async fn list_containers(
        &mut self,
        id: Option<&str>,
    ) -> anyhow::Result<Vec<proto::Container>> {
        let request = proto::ListContainersRequest {
            filter: id.map(|id| proto::ContainerFilter { id: id.to_owned() }),
        };
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
                .unary(tonic::Request::new(request), path, codec)
                .await?;
            anyhow::Ok(resp.into_inner().containers)
        };
        tokio::time::timeout(RPC_TIMEOUT, call)
            .await
            .map_err(|_| anyhow::anyhow!("ListContainers timed out"))?
    }
}

#[cfg(test)]
mod tests;
