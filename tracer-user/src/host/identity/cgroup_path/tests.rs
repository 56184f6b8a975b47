use super::*;
use crate::host::identity::PodNames;
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
    prop_assert_eq!(&id.names, &PodNames::default());
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
