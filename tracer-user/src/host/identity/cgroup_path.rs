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
mod tests {
    use super::*;
    use proptest::prelude::*;

    const UID: &str = "1a2b3c4d-5e6f-7081-92a3-b4c5d6e7f809";
    const UID_US: &str = "1a2b3c4d_5e6f_7081_92a3_b4c5d6e7f809";
    const CID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    const CID2: &str = "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210";
    const STATIC_UID: &str = "d41d8cd98f00b204e9800998ecf8427e";
    const STATIC_UID_DASHED: &str = "d41d8cd9-8f00-b204-e980-0998ecf8427e";

    /// Expected fields for one path; `None` everywhere unless stated.
    #[derive(Default)]
    struct Want {
        pod_uid: Option<&'static str>,
        container_id: Option<&'static str>,
        runtime: Option<Runtime>,
        qos: Option<QosClass>,
        unit: Option<&'static str>,
    }

    fn pod(qos: Option<QosClass>) -> Want {
        Want {
            pod_uid: Some(UID),
            qos,
            ..Default::default()
        }
    }

    fn in_pod(qos: Option<QosClass>, runtime: Option<Runtime>) -> Want {
        Want {
            pod_uid: Some(UID),
            container_id: Some(CID),
            runtime,
            qos,
            ..Default::default()
        }
    }

    fn unit(u: &'static str) -> Want {
        Want {
            unit: Some(u),
            ..Default::default()
        }
    }

    fn nothing() -> Want {
        Want::default()
    }

    use QosClass::{BestEffort, Burstable, Guaranteed};
    use Runtime::{Containerd, Crio, Docker, Podman};

    /// Every path shape we claim to understand, with what it must yield. `{uid}`, `{uid_}`,
    /// `{cid}`, `{cid2}` and `{static}` are substituted before parsing.
    fn table() -> Vec<(&'static str, &'static str, Want)> {
        vec![
            // --- containerd, systemd driver, cgroup v2
            (
                "containerd systemd burstable",
                "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{uid_}.slice/cri-containerd-{cid}.scope",
                in_pod(Some(Burstable), Some(Containerd)),
            ),
            (
                "containerd systemd besteffort",
                "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{uid_}.slice/cri-containerd-{cid}.scope",
                in_pod(Some(BestEffort), Some(Containerd)),
            ),
            (
                "containerd systemd guaranteed",
                "/kubepods.slice/kubepods-pod{uid_}.slice/cri-containerd-{cid}.scope",
                in_pod(Some(Guaranteed), Some(Containerd)),
            ),
            // --- k3s / cgroupfs driver (v2 unified path, and the same path on v1 memory)
            (
                "cgroupfs burstable",
                "/kubepods/burstable/pod{uid}/{cid}",
                in_pod(Some(Burstable), None),
            ),
            (
                "cgroupfs besteffort (also cri-dockerd)",
                "/kubepods/besteffort/pod{uid}/{cid}",
                in_pod(Some(BestEffort), None),
            ),
            (
                "cgroupfs guaranteed",
                "/kubepods/pod{uid}/{cid}",
                in_pod(Some(Guaranteed), None),
            ),
            (
                "cgroupfs with kubelet cgroup-root",
                "/kubelet/kubepods/burstable/pod{uid}/{cid}",
                in_pod(Some(Burstable), None),
            ),
            // --- k3s systemd-style cgroupsPath taken literally: `slice:prefix:id`
            (
                "k3s colon form besteffort",
                "/kubepods-besteffort-pod{uid_}.slice:cri-containerd:{cid}",
                in_pod(Some(BestEffort), Some(Containerd)),
            ),
            (
                "k3s colon form nested under slices",
                "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{uid_}.slice:cri-containerd:{cid}",
                in_pod(Some(Burstable), Some(Containerd)),
            ),
            (
                "colon form crio",
                "/kubepods-pod{uid_}.slice:crio:{cid}",
                in_pod(Some(Guaranteed), Some(Crio)),
            ),
            (
                "colon form conmon",
                "/kubepods-pod{uid_}.slice:crio-conmon:{cid}",
                pod(Some(Guaranteed)),
            ),
            (
                "colon form, bad id: slice part not taken apart",
                "/kubepods-pod{uid_}.slice:cri-containerd:nothex",
                nothing(),
            ),
            (
                "colon form, unknown prefix",
                "/kubepods-pod{uid_}.slice:runx:{cid}",
                nothing(),
            ),
            // --- CRI-O
            (
                "crio systemd",
                "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{uid_}.slice/crio-{cid}.scope",
                in_pod(Some(Burstable), Some(Crio)),
            ),
            (
                "crio conmon: pod kept, no container",
                "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{uid_}.slice/crio-conmon-{cid}.scope",
                pod(Some(Burstable)),
            ),
            (
                "crio cgroupfs",
                "/kubepods/burstable/pod{uid}/crio-{cid}",
                in_pod(Some(Burstable), Some(Crio)),
            ),
            (
                "crio cgroupfs conmon",
                "/kubepods/burstable/pod{uid}/crio-conmon-{cid}",
                pod(Some(Burstable)),
            ),
            // --- docker / cri-dockerd
            (
                "cri-dockerd systemd",
                "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{uid_}.slice/docker-{cid}.scope",
                in_pod(Some(BestEffort), Some(Docker)),
            ),
            (
                "plain docker, cgroupfs",
                "/docker/{cid}",
                Want {
                    container_id: Some(CID),
                    runtime: Some(Docker),
                    ..Default::default()
                },
            ),
            // --- podman (the real runtime the e2e tests run containers with)
            (
                "podman cgroupfs",
                "/libpod_parent/libpod-{cid}",
                Want {
                    container_id: Some(CID),
                    runtime: Some(Podman),
                    ..Default::default()
                },
            ),
            (
                "podman systemd",
                "/machine.slice/libpod-{cid}.scope",
                Want {
                    container_id: Some(CID),
                    runtime: Some(Podman),
                    ..Default::default()
                },
            ),
            (
                "podman conmon: no container",
                "/machine.slice/libpod-conmon-{cid}.scope",
                Want::default(),
            ),
            (
                "plain docker under systemd",
                "/system.slice/docker-{cid}.scope",
                Want {
                    container_id: Some(CID),
                    runtime: Some(Docker),
                    ..Default::default()
                },
            ),
            // --- private cgroup namespace
            (
                "cgroupns systemd pod",
                "/../../kubepods-burstable-pod{uid_}.slice/cri-containerd-{cid}.scope",
                in_pod(Some(Burstable), Some(Containerd)),
            ),
            (
                "cgroupns cgroupfs, QoS parent cut off",
                "/../../pod{uid}/{cid}",
                in_pod(None, None),
            ),
            (
                "cgroupns cgroupfs, QoS parent visible",
                "/../burstable/pod{uid}/{cid}",
                in_pod(Some(Burstable), None),
            ),
            ("cgroupns nothing", "/../..", nothing()),
            // --- pod-level cgroups
            (
                "pod slice",
                "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{uid_}.slice",
                pod(Some(Burstable)),
            ),
            (
                "pod dir cgroupfs",
                "/kubepods/besteffort/pod{uid}",
                pod(Some(BestEffort)),
            ),
            (
                "guaranteed pod dir",
                "/kubepods/pod{uid}/",
                pod(Some(Guaranteed)),
            ),
            (
                "qos level only",
                "/kubepods.slice/kubepods-burstable.slice",
                nothing(),
            ),
            ("kubepods root", "/kubepods", nothing()),
            // --- static pods: md5 uid
            (
                "static pod cgroupfs",
                "/kubepods/burstable/pod{static}/{cid}",
                Want {
                    pod_uid: Some(STATIC_UID_DASHED),
                    container_id: Some(CID),
                    qos: Some(Burstable),
                    ..Default::default()
                },
            ),
            (
                "static pod systemd",
                "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{static}.slice/cri-containerd-{cid}.scope",
                Want {
                    pod_uid: Some(STATIC_UID_DASHED),
                    container_id: Some(CID),
                    runtime: Some(Containerd),
                    qos: Some(Burstable),
                    ..Default::default()
                },
            ),
            // --- kind: pods inside a docker "node" container; innermost wins
            (
                "kind pod container",
                "/docker/{cid2}/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-burstable.slice/kubelet-kubepods-burstable-pod{uid_}.slice/cri-containerd-{cid}.scope",
                in_pod(Some(Burstable), Some(Containerd)),
            ),
            (
                "kind pod slice drops node container",
                "/docker/{cid2}/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod{uid_}.slice",
                pod(Some(BestEffort)),
            ),
            (
                "kind node kubelet",
                "/docker/{cid2}/system.slice/kubelet.service",
                Want {
                    container_id: Some(CID2),
                    runtime: Some(Docker),
                    unit: Some("kubelet.service"),
                    ..Default::default()
                },
            ),
            (
                "pods nested under a daemon's unit",
                "/system.slice/containerd.service/kubepods-besteffort-pod{uid_}.slice:cri-containerd:{cid}",
                in_pod(Some(BestEffort), Some(Containerd)),
            ),
            // --- node daemons
            (
                "k3s agent",
                "/system.slice/k3s-agent.service",
                unit("k3s-agent.service"),
            ),
            (
                "k3s server",
                "/system.slice/k3s.service",
                unit("k3s.service"),
            ),
            (
                "containerd",
                "/system.slice/containerd.service",
                unit("containerd.service"),
            ),
            (
                "kubelet",
                "/system.slice/kubelet.service",
                unit("kubelet.service"),
            ),
            (
                "user session",
                "/user.slice/user-1000.slice/session-3.scope",
                unit("session-3.scope"),
            ),
            (
                "user manager service, innermost",
                "/user.slice/user-1000.slice/user@1000.service/app.slice/dbus.service",
                unit("dbus.service"),
            ),
            (
                "template unit",
                "/system.slice/system-getty.slice/getty@tty1.service",
                unit("getty@tty1.service"),
            ),
            ("init scope", "/init.scope", unit("init.scope")),
            (
                "unit with trailing slash",
                "/system.slice/kubelet.service/",
                unit("kubelet.service"),
            ),
            ("v1 systemd-less daemon dir", "/system.slice", nothing()),
            // --- garbage: no panic, no false identity
            ("root", "/", nothing()),
            ("empty", "", nothing()),
            ("spaces", "   ", nothing()),
            ("garbage", "a:b::c//..//zz", nothing()),
            (
                "truncated uid",
                "/kubepods/burstable/pod1234/{cid}",
                nothing(),
            ),
            (
                "uid one digit short",
                "/kubepods/burstable/pod1a2b3c4d-5e6f-7081-92a3-b4c5d6e7f80/{cid}",
                nothing(),
            ),
            (
                "uid mixed separators",
                "/kubepods/burstable/pod1a2b3c4d-5e6f_7081-92a3-b4c5d6e7f809/{cid}",
                nothing(),
            ),
            (
                "uid non-hex",
                "/kubepods/burstable/pod1a2b3c4d-5e6f-7081-92a3-b4c5d6e7f8zz/{cid}",
                nothing(),
            ),
            (
                "uid uppercase",
                "/kubepods/burstable/pod1A2B3C4D-5E6F-7081-92A3-B4C5D6E7F809/{cid}",
                nothing(),
            ),
            (
                "dashed uid in a systemd slice (impossible) is not split",
                "/kubepods.slice/kubepods-pod{uid}.slice/cri-containerd-{cid}.scope",
                Want {
                    container_id: Some(CID),
                    runtime: Some(Containerd),
                    ..Default::default()
                },
            ),
            (
                "non-hex container id",
                "/kubepods/burstable/pod{uid}/0123456789abcdefg123456789abcdef0123456789abcdef0123456789abcdef",
                pod(Some(Burstable)),
            ),
            (
                "uppercase container id",
                "/kubepods/burstable/pod{uid}/0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF",
                pod(Some(Burstable)),
            ),
            (
                "63-digit container id in scope: still a valid unit name",
                "/kubepods.slice/kubepods-pod{uid_}.slice/cri-containerd-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde.scope",
                Want {
                    pod_uid: Some(UID),
                    qos: Some(Guaranteed),
                    unit: Some(
                        "cri-containerd-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde.scope",
                    ),
                    ..Default::default()
                },
            ),
            (
                "bare id without a pod or docker parent",
                "/foo/{cid}",
                nothing(),
            ),
            ("bare id at root", "/{cid}", nothing()),
            ("pod prefix alone", "/kubepods/pod", nothing()),
            (
                "unicode",
                "/kübepods/burstable/pöd{uid}/✓.service",
                nothing(),
            ),
            ("unicode unit", "/system.slice/dämon.service", nothing()),
            (
                "bare suffix is no unit",
                "/system.slice/.service",
                nothing(),
            ),
            (
                "trailing and doubled slashes",
                "//kubepods//burstable//pod{uid}//{cid}//",
                in_pod(Some(Burstable), None),
            ),
            (
                "dot components",
                "/./kubepods/./burstable/pod{uid}/./{cid}",
                in_pod(Some(Burstable), None),
            ),
        ]
    }

    fn expand(p: &str) -> String {
        p.replace("{uid_}", UID_US)
            .replace("{uid}", UID)
            .replace("{cid2}", CID2)
            .replace("{cid}", CID)
            .replace("{static}", STATIC_UID)
    }

    #[test]
    fn path_shapes() {
        let table = table();
        let mut failures = Vec::new();
        for (name, pattern, want) in &table {
            let path = expand(pattern);
            let got = parse_cgroup_path(&path);
            let expected = Identity {
                cgroup: path.clone(),
                pod_uid: want.pod_uid.map(str::to_owned),
                container_id: want.container_id.map(str::to_owned),
                runtime: want.runtime,
                qos: want.qos,
                systemd_unit: want.unit.map(str::to_owned),
                ..Default::default()
            };
            if got != expected {
                failures.push(format!(
                    "{name}: {path}\n  got  {got:?}\n  want {expected:?}"
                ));
            }
        }
        assert!(
            failures.is_empty(),
            "{} of {} rows failed:\n{}",
            failures.len(),
            table.len(),
            failures.join("\n")
        );
    }

    #[test]
    fn very_long_path() {
        // Deep nesting (cgroup v2 allows it): linear, no recursion on depth, and the innermost
        // container still found.
        let mut path = "/a".repeat(100_000);
        path.push_str(&expand("/kubepods/burstable/pod{uid}/{cid}"));
        let id = parse_cgroup_path(&path);
        assert_eq!(id.container_id.as_deref(), Some(CID));
        let junk = "x".repeat(1 << 20);
        assert_eq!(
            parse_cgroup_path(&junk),
            Identity {
                cgroup: junk.clone(),
                ..Default::default()
            }
        );
        let long_unit = format!("/system.slice/{}.service", "u".repeat(300));
        assert_eq!(parse_cgroup_path(&long_unit).systemd_unit, None);
    }

    #[test]
    fn uid_forms() {
        assert_eq!(parse_pod_uid(UID).as_deref(), Some(UID));
        assert_eq!(parse_pod_uid(UID_US).as_deref(), Some(UID));
        assert_eq!(
            parse_pod_uid(STATIC_UID).as_deref(),
            Some(STATIC_UID_DASHED)
        );
        assert_eq!(parse_pod_uid(""), None);
        assert_eq!(parse_pod_uid("1234"), None);
        assert_eq!(parse_pod_uid(&UID.to_uppercase()), None);
        // 36 bytes but multi-byte chars: must not panic on slicing.
        assert_eq!(parse_pod_uid("ééééééééééééééééé-u"), None);
        assert_eq!(parse_pod_uid("éééééééééééééééé"), None); // 32 bytes, non-ASCII
        assert_eq!(parse_container_id(CID), Some(CID));
        assert_eq!(parse_container_id(&CID[1..]), None);
        assert_eq!(parse_container_id(&CID.to_uppercase()), None);
    }

    fn check_invariants(id: &Identity, input: &str) -> Result<(), TestCaseError> {
        prop_assert_eq!(&id.cgroup, input);
        if let Some(uid) = &id.pod_uid {
            prop_assert_eq!(uid.len(), 36);
            for (i, c) in uid.bytes().enumerate() {
                if matches!(i, 8 | 13 | 18 | 23) {
                    prop_assert_eq!(c, b'-');
                } else {
                    prop_assert!(is_lower_hex(c), "uid {:?}", uid);
                }
            }
        }
        if let Some(cid) = &id.container_id {
            prop_assert_eq!(cid.len(), 64);
            prop_assert!(cid.bytes().all(is_lower_hex), "cid {:?}", cid);
        }
        if id.qos.is_some() {
            prop_assert!(id.pod_uid.is_some(), "qos without pod: {:?}", id);
        }
        if id.runtime.is_some() {
            prop_assert!(
                id.container_id.is_some(),
                "runtime without container: {:?}",
                id
            );
        }
        // Names are only ever filled by the resolver.
        prop_assert!(id.namespace.is_none() && id.pod.is_none() && id.container.is_none());
        let _ = id.label();
        Ok(())
    }

    /// Components near the shapes we parse, so random paths hit the interesting branches far
    /// more often than arbitrary strings would.
    fn component() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("kubepods".to_owned()),
            Just("burstable".to_owned()),
            Just("besteffort".to_owned()),
            Just("docker".to_owned()),
            Just("..".to_owned()),
            Just("kubepods.slice".to_owned()),
            Just("system.slice".to_owned()),
            "[a-z0-9@-]{1,12}\\.(service|scope|slice)",
            "pod[0-9a-fA-F_-]{30,38}",
            "pod[0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12}",
            "(kubelet-)?kubepods(-burstable|-besteffort)?(-pod[0-9a-f_]{30,38})?\\.slice",
            "(kubepods-pod[0-9a-f_]{36}\\.slice:)?(cri-containerd|crio|docker|crio-conmon)[-:][0-9a-fA-F]{62,66}(\\.scope)?",
            "[0-9a-fA-F]{63,65}",
            ".{0,20}",
        ]
    }

    proptest! {
        #[test]
        fn arbitrary_strings_never_panic(s in ".*") {
            check_invariants(&parse_cgroup_path(&s), &s)?;
        }

        #[test]
        fn near_miss_paths_hold_invariants(parts in proptest::collection::vec(component(), 0..10), slash in any::<bool>()) {
            let mut path = format!("/{}", parts.join("/"));
            if slash { path.push('/'); }
            check_invariants(&parse_cgroup_path(&path), &path)?;
        }

        #[test]
        fn arbitrary_proc_cgroup_never_panics(s in ".*", lines in proptest::collection::vec("[0-9]{0,2}:[a-z,=_]{0,20}:.{0,40}", 0..6)) {
            for content in [s.clone(), lines.join("\n")] {
                let p = super::super::parse_proc_cgroup(&content);
                for path in [p.unified.as_deref(), p.memory_v1.as_deref(), p.memory_path()].into_iter().flatten() {
                    check_invariants(&parse_cgroup_path(path), path)?;
                }
            }
        }

        #[test]
        fn generated_pods_round_trip(uid in "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", cid in "[0-9a-f]{64}", qos in 0u8..3) {
            let (slice_qos, want_qos) = match qos {
                0 => ("", QosClass::Guaranteed),
                1 => ("-burstable", QosClass::Burstable),
                _ => ("-besteffort", QosClass::BestEffort),
            };
            let path = format!("/kubepods.slice/kubepods{slice_qos}-pod{}.slice/cri-containerd-{cid}.scope", uid.replace('-', "_"));
            let id = parse_cgroup_path(&path);
            prop_assert_eq!(id.pod_uid.as_deref(), Some(uid.as_str()));
            prop_assert_eq!(id.container_id.as_deref(), Some(cid.as_str()));
            prop_assert_eq!(id.qos, Some(want_qos));
            prop_assert_eq!(id.runtime, Some(Runtime::Containerd));
        }
    }
}
