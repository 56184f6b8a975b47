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
fn cache_lists_all_first_then_queries_new_ids_once() {
    let t0 = Instant::now();
    let mut c = Cache::new();
    // First round: the whole list.
    assert_eq!(c.next_work(t0), Ok(()));
    assert_eq!(c.awaited_generation(), 1);
    let w = c.take_work();
    assert_eq!(
        w,
        Work {
            full: true,
            ids: vec![]
        }
    );
    assert_eq!(
        c.awaited_generation(),
        2,
        "a miss during a round waits for the next one"
    );
    c.finish_work(
        Some(Ok(vec![
            container("c1", KUBELET, "app"),
            container("ctr-made", &[], "x"),
        ])),
        vec![],
        vec![],
        t0,
    );
    assert_eq!(c.generation(), 1);
    assert_eq!(c.len(), 1, "unlabelled containers are not kept");
    assert_eq!(c.next_work(t0), Err(None), "nothing to do");
    assert!(matches!(c.lookup("c1"), Lookup::Hit(n) if n.container == "app"));
    // New ids: queued once, waited for once; work due at once (no pacing).
    assert_eq!(c.lookup("sandbox"), Lookup::Miss { wait: true });
    assert_eq!(c.lookup("sandbox"), Lookup::Miss { wait: false });
    assert_eq!(c.lookup("c2"), Lookup::Miss { wait: true });
    assert_eq!(c.next_work(t0), Ok(()));
    let w = c.take_work();
    assert_eq!(
        w,
        Work {
            full: false,
            ids: vec!["sandbox".into(), "c2".into()]
        }
    );
    // The sandbox is unknown to ListContainers; c2 is found.
    c.finish_work(
        None,
        vec![container("c2", &KUBELET[..3], "sidecar")],
        vec![],
        t0,
    );
    assert!(matches!(c.lookup("c2"), Lookup::Hit(n) if n.container == "sidecar"));
    assert!(matches!(c.lookup("c1"), Lookup::Hit(_)), "id answers add");
    assert_eq!(
        c.lookup("sandbox"),
        Lookup::Miss { wait: false },
        "never asked again"
    );
    assert_eq!(c.next_work(t0), Err(None));
}

#[test]
fn cache_backs_off_after_errors_and_retries() {
    let t0 = Instant::now();
    let mut c = Cache::new();
    let _ = c.take_work();
    // The whole list failed: wanted again, but only after the backoff.
    c.finish_work(Some(Err(())), vec![], vec![], t0);
    assert_eq!(c.next_work(t0), Err(Some(ERROR_BACKOFF)));
    assert_eq!(c.lookup("c1"), Lookup::Miss { wait: true });
    let t1 = t0 + ERROR_BACKOFF;
    assert_eq!(c.next_work(t1), Ok(()));
    let w = c.take_work();
    assert_eq!(
        w,
        Work {
            full: true,
            ids: vec!["c1".into()]
        }
    );
    // The list worked, the id query failed: the id is retried after the backoff, with
    // nobody waiting for it.
    c.finish_work(
        Some(Ok(vec![container("c0", KUBELET, "app")])),
        vec![],
        vec!["c1".into()],
        t1,
    );
    assert!(matches!(c.lookup("c0"), Lookup::Hit(_)));
    assert_eq!(c.lookup("c1"), Lookup::Miss { wait: false });
    assert!(c.next_work(t1).is_err());
    assert_eq!(c.next_work(t1 + ERROR_BACKOFF), Ok(()));
    let w = c.take_work();
    assert_eq!(w.ids, vec!["c1".to_string()]);
    assert!(!w.full);
    c.finish_work(None, vec![container("c1", KUBELET, "app")], vec![], t1);
    assert!(matches!(c.lookup("c1"), Lookup::Hit(_)));
}

#[test]
fn pending_queue_and_unknown_set_are_bounded() {
    let mut c = Cache::new();
    let mut waited = 0;
    for i in 0..(MAX_PENDING + 10) {
        if c.lookup(&format!("id{i}")) == (Lookup::Miss { wait: true }) {
            waited += 1;
        }
    }
    assert_eq!(waited, MAX_PENDING);
    assert_eq!(c.take_work().ids.len(), MAX_PENDING);
    for i in 0..(MAX_UNKNOWN + 10) {
        let _ = c.lookup(&format!("x{i}"));
        if c.pending.len() >= MAX_PENDING {
            let _ = c.take_work();
            c.finish_work(None, vec![], vec![], Instant::now());
        }
    }
    assert!(c.asked.len() <= MAX_UNKNOWN);
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
    assert_eq!(id.names.pod, None);
    drop(cri);
}
