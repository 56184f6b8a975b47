//! `/proc/<pid>/cgroup` parsing.
//!
//! Each line is `hierarchy-ID:controller-list:cgroup-path` (see cgroups(7)). On cgroup v2 there is
//! one line, `0::/path`; on v1 (and hybrid) there is a line per hierarchy, and the memory
//! controller's is the one whose limits and charges a memory-leak tracer cares about.

#[cfg(test)]
use std::{io, path::Path};

/// The two paths of interest in `/proc/<pid>/cgroup`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProcCgroup {
    /// cgroup v2 (unified hierarchy) path, from the `0::` line.
    pub unified: Option<String>,
    /// cgroup v1 path of the hierarchy that has `memory` among its controllers.
    pub memory_v1: Option<String>,
}

impl ProcCgroup {
    /// The path identity should be computed from: the v1 memory path if present (on hybrid
    /// systems the unified path is often just `/` or systemd's view), else the unified path.
    pub fn memory_path(&self) -> Option<&str> {
        self.memory_v1.as_deref().or(self.unified.as_deref())
    }
}

/// Parse the contents of `/proc/<pid>/cgroup`. Malformed lines are skipped; for each kind of
/// path the first well-formed line wins.
pub fn parse_proc_cgroup(contents: &str) -> ProcCgroup {
    let mut out = ProcCgroup::default();
    for line in contents.lines() {
        // The path may itself contain ':' (k3s's `slice:cri-containerd:id` directories), so split
        // into at most three fields.
        let mut fields = line.splitn(3, ':');
        let (Some(hier), Some(controllers), Some(path)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        if hier.is_empty() || !hier.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        // The kernel marks a v2 cgroup removed while the task still pointed at it with
        // " (deleted)"; that happens exactly for exiting processes, which we still want to name.
        let path = path.strip_suffix(" (deleted)").unwrap_or(path);
        // The kernel always prints an absolute path (with `/..` prefixes under a cgroup
        // namespace); anything else is not a cgroup path.
        if !path.starts_with('/') {
            continue;
        }
        if hier == "0" && controllers.is_empty() {
            out.unified.get_or_insert_with(|| path.to_owned());
        } else if controllers.split(',').any(|c| c == "memory") {
            out.memory_v1.get_or_insert_with(|| path.to_owned());
        }
    }
    out
}

#[cfg(test)]
/// Read and parse `<proc_root>/<pid>/cgroup`. `proc_root` is `/proc`, or where the host's proc is
/// mounted when the tracer runs in a pod (e.g. `/host/proc`).
pub fn read_proc_cgroup(proc_root: &Path, pid: u32) -> io::Result<ProcCgroup> {
    let contents = std::fs::read_to_string(proc_root.join(pid.to_string()).join("cgroup"))?;
    Ok(parse_proc_cgroup(&contents))
}

#[cfg(test)]
mod tests {
    use super::super::{QosClass, parse_cgroup_path};
    use super::*;

    const UID: &str = "1a2b3c4d-5e6f-7081-92a3-b4c5d6e7f809";
    const CID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn v1_real_content() {
        // Shape of a cgroup v1 node (e.g. an older k3s or kubeadm on CentOS 7), hybrid `0::` line
        // included.
        let content = format!(
            "12:hugetlb:/kubepods/burstable/pod{UID}/{CID}\n\
             11:pids:/kubepods/burstable/pod{UID}/{CID}\n\
             10:cpu,cpuacct:/kubepods/burstable/pod{UID}/{CID}\n\
             9:net_cls,net_prio:/kubepods/burstable/pod{UID}/{CID}\n\
             8:memory:/kubepods/burstable/pod{UID}/{CID}\n\
             7:devices:/kubepods/burstable/pod{UID}/{CID}\n\
             6:freezer:/kubepods/burstable/pod{UID}/{CID}\n\
             5:blkio:/kubepods/burstable/pod{UID}/{CID}\n\
             4:cpuset:/kubepods/burstable/pod{UID}/{CID}\n\
             3:perf_event:/kubepods/burstable/pod{UID}/{CID}\n\
             2:rdma:/\n\
             1:name=systemd:/kubepods/burstable/pod{UID}/{CID}\n\
             0::/system.slice/containerd.service\n"
        );
        let p = parse_proc_cgroup(&content);
        let want = format!("/kubepods/burstable/pod{UID}/{CID}");
        assert_eq!(p.memory_v1.as_deref(), Some(want.as_str()));
        assert_eq!(
            p.unified.as_deref(),
            Some("/system.slice/containerd.service")
        );
        assert_eq!(p.memory_path(), Some(want.as_str()));
        let id = parse_cgroup_path(p.memory_path().unwrap());
        assert_eq!(id.qos, Some(QosClass::Burstable));
        assert_eq!(id.container_id.as_deref(), Some(CID));
    }

    #[test]
    fn v1_memory_among_several_controllers() {
        let p = parse_proc_cgroup(
            "4:cpu,memory,pids:/system.slice/kubelet.service\n1:name=systemd:/x\n",
        );
        assert_eq!(
            p.memory_v1.as_deref(),
            Some("/system.slice/kubelet.service")
        );
        assert_eq!(p.unified, None);
        // "name=memory" is a named hierarchy, not the memory controller.
        let p = parse_proc_cgroup("1:name=memory:/x\n3:memory_x:/y\n");
        assert_eq!(p.memory_v1, None);
    }

    #[test]
    fn v2_real_content() {
        let p = parse_proc_cgroup("0::/system.slice/k3s-agent.service\n");
        assert_eq!(
            p.unified.as_deref(),
            Some("/system.slice/k3s-agent.service")
        );
        assert_eq!(p.memory_v1, None);
        assert_eq!(p.memory_path(), Some("/system.slice/k3s-agent.service"));
    }

    #[test]
    fn v2_path_with_colons_and_deleted_marker() {
        let path = format!(
            "/kubepods-besteffort-pod{}.slice:cri-containerd:{CID}",
            UID.replace('-', "_")
        );
        let p = parse_proc_cgroup(&format!("0::{path} (deleted)\r\n"));
        assert_eq!(p.unified.as_deref(), Some(path.as_str()));
        let id = parse_cgroup_path(p.memory_path().unwrap());
        assert_eq!(id.pod_uid.as_deref(), Some(UID));
        assert_eq!(id.container_id.as_deref(), Some(CID));
    }

    #[test]
    fn cgroup_namespace_view() {
        let p = parse_proc_cgroup(
            "0::/../../kubepods-pod1a2b3c4d_5e6f_7081_92a3_b4c5d6e7f809.slice/cri-containerd-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef.scope\n",
        );
        let id = parse_cgroup_path(p.memory_path().unwrap());
        assert_eq!(id.pod_uid.as_deref(), Some(UID));
        assert_eq!(id.qos, Some(QosClass::Guaranteed));
    }

    #[test]
    fn garbage_and_empty() {
        for s in [
            "",
            "\n\n",
            "garbage",
            "0:",
            "0::",
            "0::relative",
            "x::/a",
            ":memory:/a",
            "0:memory",
            "ü:ü:ü",
        ] {
            let p = parse_proc_cgroup(s);
            assert_eq!(p, ProcCgroup::default(), "{s:?}");
            assert_eq!(p.memory_path(), None);
        }
        // First well-formed line wins.
        let p = parse_proc_cgroup("0::/a\n0::/b\n5:memory:/c\n6:memory:/d\n");
        assert_eq!(
            (p.unified.as_deref(), p.memory_v1.as_deref()),
            (Some("/a"), Some("/c"))
        );
    }

    #[test]
    fn reads_from_a_proc_root() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("42")).unwrap();
        std::fs::write(
            dir.path().join("42/cgroup"),
            "0::/system.slice/kubelet.service\n",
        )
        .unwrap();
        let p = read_proc_cgroup(dir.path(), 42).unwrap();
        assert_eq!(p.memory_path(), Some("/system.slice/kubelet.service"));
        assert!(read_proc_cgroup(dir.path(), 43).is_err());
    }
}
