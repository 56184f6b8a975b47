//! Workload identity: which Kubernetes container, or which systemd unit, a process belongs to.
//!
//! Operators want answers in Kubernetes terms ("default/web-7f9c/nginx") or as a node daemon's unit
//! ("k3s-agent.service"), not as PIDs. Everything here is computed from a process's cgroup path
//! (read from `/proc/<pid>/cgroup`) and, for names, from the node's CRI runtime socket or the
//! kubelet's log directories on the host. Neither needs the API server, so it works on a
//! partitioned node and is cheap enough to run when a process is first seen, before it exits and
//! its `/proc` entry is gone.
//!
//! Pieces:
//! - [`parse_proc_cgroup`] picks the relevant line out of `/proc/<pid>/cgroup` (v1 and v2).
//! - [`parse_cgroup_path`] turns a cgroup path into pod uid, container id, runtime, QoS, or unit.
//! - [`cri::CriResolver`] fills namespace/pod/container names from the CRI runtime's socket
//!   (containerd, k3s, CRI-O) when one is reachable: `ListContainers` and kubelet's labels.
//! - [`PodLogIndex`] fills them from `/var/log/pods` otherwise (no socket, or a container the
//!   runtime does not know).
//!
//! Apart from the CRI client (a thread of its own, see [`cri`]), nothing here touches global state
//! or logs; callers own caching of the resulting [`Identity`].

mod cgroup_path;
pub mod cri;
pub mod pod_log;
mod proc_cgroup;
mod resolver;

use std::fmt;

use serde::{Deserialize, Serialize};

pub use cgroup_path::{parse_cgroup_path, parse_container_id, parse_pod_uid};
pub use pod_log::PodLogIndex;
pub use proc_cgroup::parse_proc_cgroup;
pub use resolver::Resolver;

/// Container runtime, as far as the cgroup path reveals it.
///
/// Only set when the path names it (`cri-containerd-…`, `crio-…`, `docker-…`, `/docker/<id>`).
/// The cgroupfs form `/kubepods/<qos>/pod<uid>/<id>` is written identically by containerd (k3s),
/// CRI-O and cri-dockerd, so there it stays `None` rather than guessing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Runtime {
    Containerd,
    Crio,
    Docker,
    Podman,
}

impl fmt::Display for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Runtime::Containerd => "containerd",
            Runtime::Crio => "cri-o",
            Runtime::Docker => "docker",
            Runtime::Podman => "podman",
        })
    }
}

/// Kubernetes QoS class of the pod; spelled as Kubernetes spells it (`status.qosClass`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum QosClass {
    Guaranteed,
    Burstable,
    BestEffort,
}

impl fmt::Display for QosClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            QosClass::Guaranteed => "Guaranteed",
            QosClass::Burstable => "Burstable",
            QosClass::BestEffort => "BestEffort",
        })
    }
}

/// Who a process is, in the terms an operator uses.
///
/// Produced by [`parse_cgroup_path`]; `namespace`, `pod` and `container` are filled afterwards by
/// [`cri::CriResolver::resolve`] or, failing that, [`PodLogIndex::resolve`]. `#[serde(default)]` so that reports written by an older build, or
/// with fields missing, still load.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Identity {
    /// The path it was computed from (memory controller path on v1, unified on v2), unchanged.
    pub cgroup: String,
    /// Canonical dashed form: 8-4-4-4-12 lowercase hex. Static pods, whose uid is a 32-hex md5,
    /// are given in the same dashed form (same 128 bits), so every pod uid has one shape.
    pub pod_uid: Option<String>,
    /// 64 lowercase hex digits, the runtime's container id (equal to the CRI container id).
    pub container_id: Option<String>,
    pub runtime: Option<Runtime>,
    pub qos: Option<QosClass>,
    /// Innermost `*.service` / `*.scope` unit that is not itself a container scope, e.g.
    /// `k3s-agent.service` or `session-3.scope`. Usually only set for non-containers; it is also
    /// set for a unit nested *inside* a container (a kind node's `kubelet.service`).
    pub systemd_unit: Option<String>,
    /// Filled by the pod-name resolver.
    #[serde(flatten)]
    pub names: PodNames,
}

/// The Kubernetes names of a process's workload, each absent when unknown (outside pods, or
/// before the runtime or the kubelet's log directories named it). Declared once and
/// flattened wherever a record or a view shows them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodNames {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
}

impl Identity {
    /// Identity from the contents of `/proc/<pid>/cgroup`: uses the v1 memory controller path if
    /// present, else the unified path; `None` when the file has neither.
    pub fn from_proc_cgroup(contents: &str) -> Option<Identity> {
        parse_proc_cgroup(contents)
            .memory_path()
            .map(parse_cgroup_path)
    }

    /// The process runs in a container (a Kubernetes container or a plain docker container).
    ///
    /// Keyed on the container id alone: a pod-level cgroup or CRI-O's conmon carry a pod uid but
    /// are not containers.
    pub fn is_container(&self) -> bool {
        self.container_id.is_some()
    }

    /// First 12 hex digits of the container id, as `docker ps` / `crictl ps` show it.
    pub fn short_container_id(&self) -> Option<&str> {
        // `get` rather than slicing: fields are public and may hold anything after deserializing.
        self.container_id
            .as_deref()
            .map(|id| id.get(..12).unwrap_or(id))
    }

    /// Human label, most specific form available:
    /// `namespace/pod/container` (or `namespace/pod/<id12>`, `namespace/pod`) when names are
    /// known; `pod-uid/<id12>` (or `pod-uid`) when only the uid is; `docker-<id12>` for a
    /// container outside any pod (plus `/unit` if a unit runs inside it); the systemd unit; and
    /// finally the cgroup path itself.
    pub fn label(&self) -> String {
        let short = self.short_container_id();
        if let (Some(ns), Some(pod)) = (&self.names.namespace, &self.names.pod) {
            return match (&self.names.container, short) {
                (Some(c), _) => format!("{ns}/{pod}/{c}"),
                (None, Some(id)) => format!("{ns}/{pod}/{id}"),
                (None, None) => format!("{ns}/{pod}"),
            };
        }
        if let Some(uid) = &self.pod_uid {
            return match short {
                Some(id) => format!("{uid}/{id}"),
                None => uid.clone(),
            };
        }
        if let Some(id) = short {
            let rt = self.runtime.map_or("container", |r| match r {
                Runtime::Containerd => "containerd",
                Runtime::Crio => "crio",
                Runtime::Docker => "docker",
                Runtime::Podman => "podman",
            });
            return match &self.systemd_unit {
                Some(unit) => format!("{rt}-{id}/{unit}"),
                None => format!("{rt}-{id}"),
            };
        }
        if let Some(unit) = &self.systemd_unit {
            return unit.clone();
        }
        if self.cgroup.is_empty() {
            // An empty label would vanish in tables; say plainly that nothing is known.
            "(unknown)".to_owned()
        } else {
            self.cgroup.clone()
        }
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.label())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const UID: &str = "1a2b3c4d-5e6f-7081-92a3-b4c5d6e7f809";
    const CID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn label_prefers_names_then_uid_then_unit_then_path() {
        let mut id = Identity {
            cgroup: "/x".into(),
            pod_uid: Some(UID.into()),
            container_id: Some(CID.into()),
            ..Default::default()
        };
        assert_eq!(id.label(), format!("{UID}/0123456789ab"));
        id.names.namespace = Some("default".into());
        id.names.pod = Some("web-7f9c".into());
        assert_eq!(id.label(), "default/web-7f9c/0123456789ab");
        id.names.container = Some("nginx".into());
        assert_eq!(id.label(), "default/web-7f9c/nginx");
        assert_eq!(id.to_string(), "default/web-7f9c/nginx");

        let pod_only = Identity {
            pod_uid: Some(UID.into()),
            ..Default::default()
        };
        assert_eq!(pod_only.label(), UID);

        let docker = Identity {
            container_id: Some(CID.into()),
            runtime: Some(Runtime::Docker),
            ..Default::default()
        };
        assert_eq!(docker.label(), "docker-0123456789ab");
        let nested = Identity {
            systemd_unit: Some("kubelet.service".into()),
            ..docker
        };
        assert_eq!(nested.label(), "docker-0123456789ab/kubelet.service");

        let unit = Identity {
            cgroup: "/system.slice/k3s-agent.service".into(),
            systemd_unit: Some("k3s-agent.service".into()),
            ..Default::default()
        };
        assert_eq!(unit.label(), "k3s-agent.service");
        assert_eq!(
            Identity {
                cgroup: "/".into(),
                ..Default::default()
            }
            .label(),
            "/"
        );
        assert_eq!(Identity::default().label(), "(unknown)");
    }

    #[test]
    fn label_survives_odd_public_fields() {
        // Fields are public and deserializable: a short or non-ASCII id must not panic the label.
        let id = Identity {
            container_id: Some("ünï".into()),
            ..Default::default()
        };
        assert_eq!(id.label(), "container-ünï");
    }

    #[test]
    fn is_container_means_container_id() {
        assert!(!Identity::default().is_container());
        assert!(
            !Identity {
                pod_uid: Some(UID.into()),
                ..Default::default()
            }
            .is_container()
        );
        assert!(
            Identity {
                container_id: Some(CID.into()),
                ..Default::default()
            }
            .is_container()
        );
    }

    #[test]
    fn serde_round_trip_and_defaults() {
        let id = parse_cgroup_path(&format!(
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice/cri-containerd-{CID}.scope",
            UID.replace('-', "_")
        ));
        let json = serde_json::to_string(&id).unwrap();
        assert!(json.contains("\"runtime\":\"containerd\""), "{json}");
        assert!(json.contains("\"qos\":\"Burstable\""), "{json}");
        let back: Identity = serde_json::from_str(&json).unwrap();
        assert_eq!(back, id);
        let sparse: Identity = serde_json::from_str(r#"{"cgroup":"/"}"#).unwrap();
        assert_eq!(
            sparse,
            Identity {
                cgroup: "/".into(),
                ..Default::default()
            }
        );
    }

    #[test]
    fn from_proc_cgroup_uses_memory_path() {
        let content = format!(
            "12:memory:/kubepods/besteffort/pod{UID}/{CID}\n1:name=systemd:/system.slice/containerd.service\n0::/\n"
        );
        let id = Identity::from_proc_cgroup(&content).unwrap();
        assert_eq!(id.pod_uid.as_deref(), Some(UID));
        assert_eq!(id.container_id.as_deref(), Some(CID));
        assert_eq!(id.qos, Some(QosClass::BestEffort));
        assert_eq!(Identity::from_proc_cgroup("garbage"), None);
    }
}
