//! cgroup path -> pod uid, container id, runtime, QoS class or systemd unit.
//!
//! The path is walked component by component, outermost first, and each component that means
//! something (a kubepods level, a pod, a container, a unit) updates the result. Inner components
//! override outer ones, because the innermost thing is what the process is: in kind, a pod's
//! container sits inside the node's docker container (`/docker/<node>/kubelet.slice/…`).
//!
//! Parsing is strict on purpose: a wrong identity is worse than none, so a uid or id is only
//! accepted in the exact shape kubelet and the runtimes write (lowercase hex, exact length).

use super::{Identity, QosClass, Runtime};

/// Runtime prefixes of container cgroups: `<prefix>-<id>.scope` (systemd driver), `<prefix>-<id>`
/// (CRI-O with cgroupfs), and `<slice>:<prefix>:<id>` (systemd-style cgroupsPath taken literally
/// by a cgroupfs manager, seen on k3s).
/// Podman writes `libpod-<id>.scope` (systemd) and `/libpod_parent/libpod-<id>` (cgroupfs).
const RUNTIME_PREFIXES: [(&str, Runtime); 4] = [
    ("cri-containerd", Runtime::Containerd),
    ("crio", Runtime::Crio),
    ("docker", Runtime::Docker),
    ("libpod", Runtime::Podman),
];

/// CRI-O puts each container's monitor in `crio-conmon-<id>.scope`, next to the container's own
/// scope (podman likewise in `libpod-conmon-<id>.scope`). Its id is the container's, but the
/// process is conmon, so it must not be attributed to the container.
const CONMON_PREFIXES: [&str; 2] = ["crio-conmon", "libpod-conmon"];

/// Longest unit name systemd accepts (UNIT_NAME_MAX); longer is not a unit.
const UNIT_NAME_MAX: usize = 256;

/// What the previous meaningful component was; only a few shapes depend on their parent.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Prev {
    Other,
    /// cgroupfs `kubepods`: a `pod<uid>` right under it is Guaranteed.
    Kubepods,
    /// cgroupfs `burstable` / `besteffort`.
    QosDir(QosClass),
    /// cgroupfs `docker`: a bare id under it is a plain docker container.
    Docker,
    /// A pod cgroup: a bare id under it is a container (runtime unknown).
    Pod,
}

/// Parse a cgroup path (as found in `/proc/<pid>/cgroup`) into an [`Identity`].
///
/// Never fails: anything unrecognised just leaves fields `None`; `cgroup` is always `path`.
/// `..` components (paths seen from a private cgroup namespace, `/../../kubepods-…`) and `.` or
/// empty components (trailing or doubled slashes) are skipped.
pub fn parse_cgroup_path(path: &str) -> Identity {
    let mut walk = Walk {
        id: Identity {
            cgroup: path.to_owned(),
            ..Default::default()
        },
        prev: Prev::Other,
    };
    for comp in path
        .split('/')
        .filter(|c| !c.is_empty() && *c != "." && *c != "..")
    {
        walk.component(comp);
    }
    walk.id
}

struct Walk {
    id: Identity,
    prev: Prev,
}

impl Walk {
    fn component(&mut self, comp: &str) {
        // `kubepods-besteffort-pod<uid>.slice:cri-containerd:<id>`: a pod slice and a container
        // folded into one directory name.
        if let Some((slice, runtime, cid)) = split_colon_form(comp) {
            self.component(slice);
            match runtime {
                Some(rt) => self.container(cid, Some(rt)),
                None => self.skip_conmon(),
            }
            return;
        }

        let prev = std::mem::replace(&mut self.prev, Prev::Other);
        match comp {
            "kubepods" => {
                self.enter_kubepods_level();
                self.prev = Prev::Kubepods;
                return;
            }
            // Not required to sit right under `kubepods`: through a cgroup namespace the path
            // may start at `/../burstable/pod<uid>`. It only means something before a pod.
            "burstable" | "besteffort" => {
                self.prev = Prev::QosDir(if comp == "burstable" {
                    QosClass::Burstable
                } else {
                    QosClass::BestEffort
                });
                return;
            }
            "docker" => {
                self.prev = Prev::Docker;
                return;
            }
            _ => {}
        }

        // cgroupfs pod: `pod<uid>`, dashed uid.
        if let Some(uid) = comp.strip_prefix("pod").and_then(parse_pod_uid) {
            let qos = match prev {
                Prev::Kubepods => Some(QosClass::Guaranteed),
                Prev::QosDir(q) => Some(q),
                // Seen through a cgroup namespace, the QoS parent may be cut off: unknown.
                _ => None,
            };
            self.enter_pod(uid, qos);
            return;
        }

        // Bare 64-hex id: a container only where the parent says so, since a hex-named directory
        // elsewhere could be anything.
        if let Some(cid) = parse_container_id(comp) {
            match prev {
                Prev::Docker => self.container(cid, Some(Runtime::Docker)),
                // containerd (k3s), CRI-O and cri-dockerd with cgroupfs all write this shape.
                Prev::Pod => self.container(cid, None),
                _ => {}
            }
            return;
        }

        if let Some(stem) = comp.strip_suffix(".slice") {
            self.slice(stem);
            return;
        }

        // `<prefix>-<id>.scope` (systemd driver) or `<prefix>-<id>` (CRI-O cgroupfs).
        let bare = comp.strip_suffix(".scope").unwrap_or(comp);
        if CONMON_PREFIXES.iter().any(|prefix| {
            bare.strip_prefix(prefix)
                .and_then(|r| r.strip_prefix('-'))
                .and_then(parse_container_id)
                .is_some()
        }) {
            self.skip_conmon();
            return;
        }
        for (prefix, rt) in RUNTIME_PREFIXES {
            if let Some(cid) = bare
                .strip_prefix(prefix)
                .and_then(|r| r.strip_prefix('-'))
                .and_then(parse_container_id)
            {
                self.container(cid, Some(rt));
                return;
            }
        }

        if is_unit_name(comp) {
            // Replaces any outer unit (innermost wins) but keeps an enclosing container: a unit
            // inside a container is a service of that container (kind node, systemd-in-pod).
            self.id.systemd_unit = Some(comp.to_owned());
        }
    }

    /// systemd-driver slices: `kubepods.slice`, `kubepods-burstable.slice`,
    /// `kubepods-burstable-pod<uid_with_underscores>.slice`, `kubepods-pod<uid>.slice`, possibly
    /// with a kubelet cgroup-root prefix (kind: `kubelet-kubepods-…`). systemd spells nesting as
    /// '-' in slice names, which is why kubelet writes the uid with '_' there.
    fn slice(&mut self, stem: &str) {
        let tokens: Vec<&str> = stem.split('-').collect();
        let Some(k) = tokens.iter().rposition(|t| *t == "kubepods") else {
            return;
        };
        let qos_of = |t: &str| match t {
            "burstable" => Some(QosClass::Burstable),
            "besteffort" => Some(QosClass::BestEffort),
            _ => None,
        };
        let pod_of = |t: &str| t.strip_prefix("pod").and_then(parse_pod_uid);
        match &tokens[k + 1..] {
            [] => self.enter_kubepods_level(),
            [q] if qos_of(q).is_some() => self.enter_kubepods_level(),
            [p] => {
                if let Some(uid) = pod_of(p) {
                    self.enter_pod(uid, Some(QosClass::Guaranteed));
                }
            }
            [q, p] => {
                if let (Some(qos), Some(uid)) = (qos_of(q), pod_of(p)) {
                    self.enter_pod(uid, Some(qos));
                }
            }
            _ => {}
        }
    }

    /// A kubepods root or QoS level: whatever was found outside (a kind node's docker container)
    /// is not what processes in here are.
    fn enter_kubepods_level(&mut self) {
        self.id.pod_uid = None;
        self.id.qos = None;
        self.clear_container_and_unit();
    }

    fn enter_pod(&mut self, uid: String, qos: Option<QosClass>) {
        self.id.pod_uid = Some(uid);
        self.id.qos = qos;
        self.clear_container_and_unit();
        self.prev = Prev::Pod;
    }

    fn container(&mut self, cid: &str, runtime: Option<Runtime>) {
        self.id.container_id = Some(cid.to_owned());
        self.id.runtime = runtime;
        // An outer unit (`system.slice/docker-<id>.scope` has none, but `containerd.service/…`
        // can) is the container's parent, not the process's identity.
        self.id.systemd_unit = None;
    }

    /// conmon of a CRI-O container: keep the pod (it is that pod's overhead), drop any container
    /// or unit from outer levels.
    fn skip_conmon(&mut self) {
        self.clear_container_and_unit();
    }

    fn clear_container_and_unit(&mut self) {
        self.id.container_id = None;
        self.id.runtime = None;
        self.id.systemd_unit = None;
    }
}

/// `<slice>.slice:<prefix>:<id>`. Returns the slice component, the runtime (`None` for conmon)
/// and the id; `None` unless all three parts have the expected shape, so unit names that happen
/// to contain ':' are left alone.
fn split_colon_form(comp: &str) -> Option<(&str, Option<Runtime>, &str)> {
    let mut parts = comp.splitn(3, ':');
    let (slice, prefix, cid) = (parts.next()?, parts.next()?, parts.next()?);
    if !slice.ends_with(".slice") {
        return None;
    }
    let cid = parse_container_id(cid)?;
    if CONMON_PREFIXES.contains(&prefix) {
        return Some((slice, None, cid));
    }
    let (_, rt) = RUNTIME_PREFIXES.iter().find(|(p, _)| *p == prefix)?;
    Some((slice, Some(*rt), cid))
}

/// A pod uid as kubelet writes it in cgroup names, returned in canonical dashed lowercase form.
///
/// Accepts `8-4-4-4-12` with '-' (cgroupfs) or '_' (systemd slices) as separator, and 32 hex
/// digits (static pods: kubelet uses an md5 of the manifest as uid), which is given dashes so
/// every uid has one shape. Uppercase is rejected: kubelet never writes it, so an uppercase
/// "uid" is something else.
pub fn parse_pod_uid(s: &str) -> Option<String> {
    let b = s.as_bytes();
    match b.len() {
        36 => {
            let sep = b[8];
            if sep != b'-' && sep != b'_' {
                return None;
            }
            let ok = b.iter().enumerate().all(|(i, &c)| match i {
                8 | 13 | 18 | 23 => c == sep,
                _ => is_lower_hex(c),
            });
            // All bytes checked ASCII, so the replace cannot split a character.
            ok.then(|| s.replace('_', "-"))
        }
        32 if b.iter().all(|&c| is_lower_hex(c)) => Some(format!(
            "{}-{}-{}-{}-{}",
            &s[..8],
            &s[8..12],
            &s[12..16],
            &s[16..20],
            &s[20..]
        )),
        _ => None,
    }
}

/// A runtime container id: exactly 64 lowercase hex digits (containerd, CRI-O and docker all use
/// a sha256-sized id), returned as a borrowed slice of `s`.
pub fn parse_container_id(s: &str) -> Option<&str> {
    (s.len() == 64 && s.bytes().all(is_lower_hex)).then_some(s)
}

fn is_lower_hex(c: u8) -> bool {
    c.is_ascii_digit() || (b'a'..=b'f').contains(&c)
}

/// A systemd `.service` or `.scope` unit name in the characters systemd allows
/// (`[A-Za-z0-9:_.\-@\\]`, `\` for `\x2d`-style escapes). Slices are not units a process can be
/// in, so they are not considered.
fn is_unit_name(comp: &str) -> bool {
    let Some(stem) = comp
        .strip_suffix(".service")
        .or_else(|| comp.strip_suffix(".scope"))
    else {
        return false;
    };
    !stem.is_empty()
        && comp.len() <= UNIT_NAME_MAX
        && comp
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || b":_.-@\\".contains(&c))
}

#[cfg(test)]
mod tests;
