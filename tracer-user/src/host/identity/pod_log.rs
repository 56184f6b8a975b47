//! Pod and container names from the kubelet's log directories.
//!
//! kubelet keeps, on every node and whatever the runtime:
//! - `/var/log/pods/<namespace>_<pod>_<pod-uid>/<container-name>/<restart>.log`
//! - `/var/log/containers/<pod>_<namespace>_<container-name>-<container-id>.log`, a symlink into
//!   the above.
//!
//! Namespaces, pod names and container names are DNS labels/subdomains and cannot contain '_',
//! so both names split unambiguously. Reading these gives names without the API server or the
//! CRI socket. The directories are scanned into a cache, re-scanned at most every
//! `rescan_interval` and only on a miss, and the cache is bounded so a node with a pathological
//! number of log directories cannot grow the tracer without limit.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{Identity, parse_container_id, parse_pod_uid};

/// Default minimum time between two scans. Pods start every few seconds at most on a busy node;
/// a miss within this window stays a miss (names stay `None`) until the next scan.
pub const DEFAULT_RESCAN_INTERVAL: Duration = Duration::from_secs(10);
/// Default bound on pods kept. Kubelet's default max-pods is 110, large nodes run a few hundred;
/// directories of deleted pods linger until their logs are removed.
pub const DEFAULT_MAX_PODS: usize = 4096;
/// Containers kept per pod (including init containers and ephemeral debug containers).
const MAX_CONTAINERS_PER_POD: usize = 256;

#[derive(Clone, Debug)]
struct PodEntry {
    namespace: String,
    pod: String,
    /// Container directory names, sorted.
    containers: Vec<String>,
}

#[derive(Clone, Debug)]
struct LinkEntry {
    namespace: String,
    pod: String,
    container: String,
    /// Uid key of the pod directory the symlink points into, when it could be read: tells apart
    /// two generations of a same-named pod (StatefulSets) whose logs coexist for a while.
    pod_uid_key: Option<String>,
}

/// Cache of the kubelet's pod log directories, for filling [`Identity`] names.
#[derive(Debug)]
pub struct PodLogIndex {
    host_root: PathBuf,
    rescan_interval: Duration,
    max_pods: usize,
    last_scan: Option<Instant>,
    /// Keyed by the pod uid's 32 hex digits (dashes removed), so dashed uids and static pods'
    /// undashed md5 uids compare equal to the canonical form in [`Identity::pod_uid`].
    pods: HashMap<String, PodEntry>,
    /// Keyed by 64-hex container id.
    links: HashMap<String, LinkEntry>,
}

impl PodLogIndex {
    /// `host_root` is `/` when the tracer runs on the host, or where the host filesystem is
    /// mounted (e.g. `/host`) when it runs in a pod. Nothing is read until the first `resolve`.
    pub fn new(host_root: &Path) -> Self {
        PodLogIndex {
            host_root: host_root.to_owned(),
            rescan_interval: DEFAULT_RESCAN_INTERVAL,
            max_pods: DEFAULT_MAX_PODS,
            last_scan: None,
            pods: HashMap::new(),
            links: HashMap::new(),
        }
    }

    #[cfg(test)]
    /// Minimum time between scans (`Duration::ZERO`: scan on every miss).
    pub fn with_rescan_interval(mut self, interval: Duration) -> Self {
        self.rescan_interval = interval;
        self
    }

    #[cfg(test)]
    /// Bound on pods kept; container links are bounded to `MAX_CONTAINERS_PER_POD` times that.
    pub fn with_max_pods(mut self, max_pods: usize) -> Self {
        self.max_pods = max_pods;
        self
    }

    #[cfg(test)]
    /// Pods currently in the cache.
    pub fn len(&self) -> usize {
        self.pods.len()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.pods.is_empty()
    }

    /// Fill `namespace`, `pod` and, when it can be told, `container` of `id` from its pod uid.
    ///
    /// Leaves `id` untouched when it has no pod uid or the pod has no log directory. The
    /// container is the pod's only container directory, or else the one whose
    /// `/var/log/containers` symlink carries `id.container_id`; otherwise it stays `None`.
    /// Scans on a miss (pod unknown, or container undecided), at most once per rescan interval.
    pub fn resolve(&mut self, id: &mut Identity) {
        let Some(key) = id.pod_uid.as_deref().and_then(uid_key) else {
            return;
        };
        let cid = id.container_id.as_deref();
        let mut found = self.lookup(&key, cid);
        if found.as_ref().is_none_or(|f| f.2.is_none()) && self.scan_due() {
            self.rescan();
            found = self.lookup(&key, cid);
        }
        if let Some((namespace, pod, container)) = found {
            id.names.namespace = Some(namespace);
            id.names.pod = Some(pod);
            id.names.container = container;
        }
    }

    fn scan_due(&self) -> bool {
        self.last_scan
            .is_none_or(|t| t.elapsed() >= self.rescan_interval)
    }

    fn lookup(&self, key: &str, cid: Option<&str>) -> Option<(String, String, Option<String>)> {
        let entry = self.pods.get(key)?;
        let by_link = cid.and_then(|c| self.links.get(c)).filter(|l| {
            l.namespace == entry.namespace
                && l.pod == entry.pod
                && l.pod_uid_key.as_deref().is_none_or(|k| k == key)
        });
        let container = match (by_link, entry.containers.as_slice()) {
            (Some(link), _) => Some(link.container.clone()),
            // One container directory: it is the container. (Caveat: the pod's sandbox/pause
            // process has no log directory and would be named after it too; it holds ~1 MiB.)
            (None, [only]) => Some(only.clone()),
            _ => None,
        };
        Some((entry.namespace.clone(), entry.pod.clone(), container))
    }

    /// Re-read both directories now, replacing the cache. Missing or unreadable directories
    /// give an empty cache (a node without kubelet, or a host root not mounted).
    pub fn rescan(&mut self) {
        self.last_scan = Some(Instant::now());
        self.pods = self.scan_pods();
        self.links = self.scan_links();
    }

    fn scan_pods(&self) -> HashMap<String, PodEntry> {
        let mut pods = HashMap::new();
        let Ok(dir) = fs::read_dir(self.host_root.join("var/log/pods")) else {
            return pods;
        };
        for entry in dir.flatten() {
            if pods.len() >= self.max_pods {
                break;
            }
            let name = entry.file_name();
            let Some((namespace, pod, key)) = name.to_str().and_then(parse_pod_dir_name) else {
                continue;
            };
            let Ok(sub) = fs::read_dir(entry.path()) else {
                continue;
            };
            let mut containers: Vec<String> = sub
                .flatten()
                // `metadata` follows symlinks, for hosts that relocate log directories.
                .filter(|c| fs::metadata(c.path()).is_ok_and(|m| m.is_dir()))
                .filter_map(|c| c.file_name().into_string().ok())
                .take(MAX_CONTAINERS_PER_POD)
                .collect();
            containers.sort();
            pods.insert(
                key,
                PodEntry {
                    namespace: namespace.to_owned(),
                    pod: pod.to_owned(),
                    containers,
                },
            );
        }
        pods
    }

    fn scan_links(&self) -> HashMap<String, LinkEntry> {
        let mut links = HashMap::new();
        let Ok(dir) = fs::read_dir(self.host_root.join("var/log/containers")) else {
            return links;
        };
        let max = self.max_pods.saturating_mul(MAX_CONTAINERS_PER_POD);
        for entry in dir.flatten() {
            if links.len() >= max {
                break;
            }
            let name = entry.file_name();
            let Some((pod, namespace, container, cid)) =
                name.to_str().and_then(parse_container_link_name)
            else {
                continue;
            };
            // Target is `/var/log/pods/<ns>_<pod>_<uid>/<container>/<n>.log` (absolute on the
            // host, so only its components are used, not the path itself).
            let pod_uid_key = fs::read_link(entry.path()).ok().and_then(|t| {
                let pod_dir = t.parent()?.parent()?.file_name()?.to_str()?.to_owned();
                parse_pod_dir_name(&pod_dir).map(|(_, _, k)| k)
            });
            links.insert(
                cid.to_owned(),
                LinkEntry {
                    namespace: namespace.to_owned(),
                    pod: pod.to_owned(),
                    container: container.to_owned(),
                    pod_uid_key,
                },
            );
        }
        links
    }
}

/// The 32 hex digits of a pod uid, the cache key.
fn uid_key(uid: &str) -> Option<String> {
    parse_pod_uid(uid).map(|canonical| canonical.replace('-', ""))
}

/// `<namespace>_<pod>_<uid>` -> (namespace, pod, uid key).
fn parse_pod_dir_name(name: &str) -> Option<(&str, &str, String)> {
    let (rest, uid) = name.rsplit_once('_')?;
    let (namespace, pod) = rest.split_once('_')?;
    if namespace.is_empty() || pod.is_empty() || pod.contains('_') {
        return None;
    }
    Some((namespace, pod, uid_key(uid)?))
}

/// `<pod>_<namespace>_<container>-<64hex>.log` -> (pod, namespace, container, id).
fn parse_container_link_name(name: &str) -> Option<(&str, &str, &str, &str)> {
    let stem = name.strip_suffix(".log")?;
    // The id is the last 64 bytes; check the boundary is ASCII before slicing.
    let split = stem.len().checked_sub(65)?;
    if !stem.is_char_boundary(split) || stem.as_bytes()[split] != b'-' {
        return None;
    }
    let (head, cid) = (&stem[..split], parse_container_id(&stem[split + 1..])?);
    let mut parts = head.split('_');
    let (pod, namespace, container) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || pod.is_empty() || namespace.is_empty() || container.is_empty() {
        return None;
    }
    Some((pod, namespace, container, cid))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    const UID: &str = "1a2b3c4d-5e6f-7081-92a3-b4c5d6e7f809";
    const UID2: &str = "99999999-8888-7777-6666-555555555555";
    const CID1: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    const CID2: &str = "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210";
    const CID3: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

    fn pod_dir(root: &Path, ns: &str, pod: &str, uid: &str, containers: &[&str]) -> PathBuf {
        let dir = root.join(format!("var/log/pods/{ns}_{pod}_{uid}"));
        for c in containers {
            fs::create_dir_all(dir.join(c)).unwrap();
            fs::write(dir.join(c).join("0.log"), "log line\n").unwrap();
        }
        dir
    }

    /// The symlink kubelet makes: absolute target on the host, which need not exist here.
    fn link(root: &Path, ns: &str, pod: &str, uid: &str, container: &str, cid: &str) {
        let links = root.join("var/log/containers");
        fs::create_dir_all(&links).unwrap();
        symlink(
            format!("/var/log/pods/{ns}_{pod}_{uid}/{container}/0.log"),
            links.join(format!("{pod}_{ns}_{container}-{cid}.log")),
        )
        .unwrap();
    }

    fn ident(uid: &str, cid: Option<&str>) -> Identity {
        Identity {
            pod_uid: Some(uid.into()),
            container_id: cid.map(str::to_owned),
            ..Default::default()
        }
    }

    fn names(id: &Identity) -> (Option<&str>, Option<&str>, Option<&str>) {
        (
            id.names.namespace.as_deref(),
            id.names.pod.as_deref(),
            id.names.container.as_deref(),
        )
    }

    #[test]
    fn single_container_pod() {
        let root = tempfile::tempdir().unwrap();
        pod_dir(root.path(), "default", "web-7f9c", UID, &["nginx"]);
        let mut index = PodLogIndex::new(root.path());
        let mut id = ident(UID, Some(CID1));
        index.resolve(&mut id);
        assert_eq!(
            names(&id),
            (Some("default"), Some("web-7f9c"), Some("nginx"))
        );
        assert_eq!(id.label(), "default/web-7f9c/nginx");
        // No container id at all (pod-level cgroup): the only container is still the answer.
        let mut id = ident(UID, None);
        index.resolve(&mut id);
        assert_eq!(
            names(&id),
            (Some("default"), Some("web-7f9c"), Some("nginx"))
        );
    }

    #[test]
    fn two_containers_disambiguated_by_links() {
        let root = tempfile::tempdir().unwrap();
        pod_dir(root.path(), "shop", "api-5d8b", UID, &["app", "envoy"]);
        link(root.path(), "shop", "api-5d8b", UID, "app", CID1);
        link(root.path(), "shop", "api-5d8b", UID, "envoy", CID2);
        let mut index = PodLogIndex::new(root.path());

        let mut a = ident(UID, Some(CID1));
        index.resolve(&mut a);
        assert_eq!(names(&a), (Some("shop"), Some("api-5d8b"), Some("app")));
        let mut b = ident(UID, Some(CID2));
        index.resolve(&mut b);
        assert_eq!(names(&b), (Some("shop"), Some("api-5d8b"), Some("envoy")));

        // Unknown id (the sandbox, or a container started after the scan): pod known, container not.
        let mut c = ident(UID, Some(CID3));
        index.resolve(&mut c);
        assert_eq!(names(&c), (Some("shop"), Some("api-5d8b"), None));
        assert_eq!(c.label(), "shop/api-5d8b/aaaaaaaaaaaa");
        let mut d = ident(UID, None);
        index.resolve(&mut d);
        assert_eq!(names(&d), (Some("shop"), Some("api-5d8b"), None));
    }

    #[test]
    fn link_of_another_pod_generation_is_not_used() {
        // StatefulSet pod recreated under the same name: both generations' logs exist, and the
        // link for CID1 points into the old generation.
        let root = tempfile::tempdir().unwrap();
        pod_dir(root.path(), "db", "pg-0", UID, &["postgres", "exporter"]);
        pod_dir(root.path(), "db", "pg-0", UID2, &["postgres", "exporter"]);
        link(root.path(), "db", "pg-0", UID, "postgres", CID1);
        let mut index = PodLogIndex::new(root.path());
        let mut old = ident(UID, Some(CID1));
        index.resolve(&mut old);
        assert_eq!(old.names.container.as_deref(), Some("postgres"));
        let mut new = ident(UID2, Some(CID1));
        index.resolve(&mut new);
        assert_eq!(names(&new), (Some("db"), Some("pg-0"), None));
    }

    #[test]
    fn missing_directories_and_unknown_pods() {
        let root = tempfile::tempdir().unwrap();
        let mut index = PodLogIndex::new(&root.path().join("does/not/exist"));
        let mut id = ident(UID, Some(CID1));
        let before = id.clone();
        index.resolve(&mut id);
        assert_eq!(id, before);
        assert!(index.is_empty());

        // Directory present, but no entry for this uid.
        pod_dir(root.path(), "default", "web-7f9c", UID2, &["nginx"]);
        let mut index = PodLogIndex::new(root.path());
        index.resolve(&mut id);
        assert_eq!(id, before);
        assert_eq!(index.len(), 1);

        // No pod uid at all (a node daemon): nothing to do, and no scan needed.
        let mut daemon = Identity {
            systemd_unit: Some("kubelet.service".into()),
            ..Default::default()
        };
        index.resolve(&mut daemon);
        assert_eq!(daemon.names.namespace, None);
    }

    #[test]
    fn odd_entries_are_skipped() {
        let root = tempfile::tempdir().unwrap();
        let pods = root.path().join("var/log/pods");
        fs::create_dir_all(&pods).unwrap();
        // Old (pre-1.14) layout keyed by uid only, a file, a truncated uid, extra underscores.
        fs::create_dir_all(pods.join(UID).join("c")).unwrap();
        fs::write(pods.join(format!("ns_file_{UID2}")), "").unwrap();
        fs::create_dir_all(pods.join("ns_pod_1234/c")).unwrap();
        fs::create_dir_all(pods.join(format!("ns_po_d_{UID2}/c"))).unwrap();
        let links = root.path().join("var/log/containers");
        fs::create_dir_all(&links).unwrap();
        for bad in [
            "x.log",
            "p_n_c-short.log",
            "pn_c-0123.log",
            "ü_ü_ü-ü.log",
            &format!("p_n-{CID1}.log"),
        ] {
            fs::write(links.join(bad), "").unwrap();
        }
        let mut index = PodLogIndex::new(root.path());
        index.rescan();
        assert!(index.is_empty());
        assert!(index.links.is_empty());
        let mut id = ident(UID2, None);
        index.resolve(&mut id);
        assert_eq!(id.names.namespace, None);
    }

    #[test]
    fn static_pod_uid_matches_directory() {
        // kubelet names static pods' directories with the 32-hex md5 uid; the cgroup parser
        // hands out the dashed form of the same digits.
        let root = tempfile::tempdir().unwrap();
        let md5 = "d41d8cd98f00b204e9800998ecf8427e";
        pod_dir(root.path(), "kube-system", "etcd-node1", md5, &["etcd"]);
        let mut id = super::super::parse_cgroup_path(&format!(
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{md5}.slice/cri-containerd-{CID1}.scope"
        ));
        PodLogIndex::new(root.path()).resolve(&mut id);
        assert_eq!(id.label(), "kube-system/etcd-node1/etcd");
    }

    #[test]
    fn rescans_are_rate_limited() {
        let root = tempfile::tempdir().unwrap();
        let mut index =
            PodLogIndex::new(root.path()).with_rescan_interval(Duration::from_secs(3600));
        let mut id = ident(UID, None);
        index.resolve(&mut id); // first call scans: nothing there yet
        pod_dir(root.path(), "default", "web-7f9c", UID, &["nginx"]);
        index.resolve(&mut id); // within the interval: no scan, still unknown
        assert_eq!(id.names.pod, None);
        index.rescan(); // an explicit rescan always reads
        index.resolve(&mut id);
        assert_eq!(id.names.pod.as_deref(), Some("web-7f9c"));

        // With a zero interval, every miss scans; a removed pod disappears on the next scan.
        let mut index = PodLogIndex::new(root.path()).with_rescan_interval(Duration::ZERO);
        pod_dir(root.path(), "default", "late", UID2, &["c"]);
        let mut late = ident(UID2, None);
        index.resolve(&mut late);
        assert_eq!(late.names.pod.as_deref(), Some("late"));
        fs::remove_dir_all(
            root.path()
                .join(format!("var/log/pods/default_late_{UID2}")),
        )
        .unwrap();
        index.rescan();
        assert_eq!(index.len(), 1);
    }

    #[test]
    fn cache_is_bounded() {
        let root = tempfile::tempdir().unwrap();
        for i in 0..20u32 {
            let uid = format!("{i:08x}-0000-0000-0000-000000000000");
            pod_dir(root.path(), "ns", &format!("p{i}"), &uid, &["c"]);
        }
        let mut index = PodLogIndex::new(root.path()).with_max_pods(5);
        index.rescan();
        assert_eq!(index.len(), 5);
    }

    #[test]
    fn name_parsers() {
        assert_eq!(
            parse_pod_dir_name(&format!("default_web-7f9c_{UID}")),
            Some(("default", "web-7f9c", UID.replace('-', "")))
        );
        assert_eq!(parse_pod_dir_name("default_web"), None);
        assert_eq!(parse_pod_dir_name(&format!("_web_{UID}")), None);
        assert_eq!(
            parse_container_link_name(&format!("web-7f9c_default_nginx-{CID1}.log")),
            Some(("web-7f9c", "default", "nginx", CID1))
        );
        assert_eq!(
            parse_container_link_name(&format!("a_b_c_d-{CID1}.log")),
            None
        );
        assert_eq!(
            parse_container_link_name(&format!("a_b_c-{CID1}.txt")),
            None
        );
        assert_eq!(
            parse_container_link_name(&format!("a_b_c-{}.log", CID1.to_uppercase())),
            None
        );
        // Multi-byte character straddling the split point: no panic.
        assert_eq!(parse_container_link_name(&format!("a_b_é{CID1}.log")), None);
    }
}
