//! The JSON Lines trace schema (documented in docs/trace-format.md). One enum, used both to
//! write (`record`) and to read back (`report`), so the two cannot drift apart.
pub mod reader;
use std::collections::BTreeMap;

pub use crate::model::counters::Calls;
use crate::util::clock::round_ms;
use crate::{
    host::identity::PodNames,
    kernel::events::OomVictim,
    model::counters::{Counters, Rss},
};
use serde::{Deserialize, Serialize};

pub const SCHEMA_VERSION: u32 = 1;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Record {
    Header(Header),
    Process(ProcessInfo),
    Sample(SampleRecord),
    Exec {
        t: f64,
        pid: u32,
        comm: String,
        /// Identity re-read at exec (runtimes move a process into its cgroup before exec).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cmdline: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cgroup: Option<String>,
    },
    Exit(ExitRecord),
    OomKill(OomRecord),
    Verdict(VerdictRecord),
    /// A process started or stopped being at risk of meeting its memory cgroup's limit.
    Risk(RiskRecord),
    /// A memory-cgroup event (v1 OOM notification, v2 memory.events) or node pressure.
    Memcg {
        t: f64,
        #[serde(flatten)]
        event: crate::host::memcg::MemcgEvent,
    },
    Health(Health),
    /// The overhead budget paused or resumed a hook.
    Budget {
        t: f64,
        #[serde(flatten)]
        event: crate::kernel::budget::BudgetEvent,
    },
    /// The node's own memory at a round (kinds, slab caches that changed, zombie cgroups).
    Node(NodeRecord),
    /// A node series' verdict changed (a kind, a slab cache, the zombie cgroup count).
    NodeVerdict(NodeVerdictRecord),
    /// A memory cgroup made, removed or freed by the kernel.
    Cgroup {
        t: f64,
        #[serde(flatten)]
        change: crate::model::cgroups::CgroupChange,
    },
    /// Growth-site stacks that are new (with their named frames) or gained samples
    /// (`record --stacks`).
    Stacks {
        t: f64,
        #[serde(flatten)]
        update: crate::model::sites::StackUpdate,
    },
    Summary(Summary),
}

/// The node's memory at time `t`. Slab caches are written when they change (all of them in
/// the first node record), so a reader keeps each cache's last value: a full slabinfo every
/// interval would dwarf the rest of the trace.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeRecord {
    pub t: f64,
    pub memory: crate::host::node::meminfo::NodeMemory,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub slabs: Vec<crate::host::node::slabinfo::SlabCache>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zombies: Option<crate::host::node::zombies::Zombies>,
    /// Page cache that removed children hold, under the parents with most zombies.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub held: Vec<crate::host::node::HeldCache>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeVerdictRecord {
    pub t: f64,
    /// `anon`, `file`, ..., `unattributed`, `memcg_zombies`, `slab:NAME`.
    pub series: String,
    pub verdict: crate::detector::Verdict,
    pub previous: Option<crate::detector::Verdict>,
    pub confidence: f64,
    /// Bytes per second (`memcg_zombies`: cgroups per second).
    pub growth_per_sec: f64,
    pub since: Option<f64>,
    pub reason: String,
}

impl NodeVerdictRecord {
    pub fn from_change(t: f64, c: &crate::model::node::NodeVerdictChange) -> Self {
        Self {
            t,
            series: c.series.name(),
            verdict: c.now.verdict,
            previous: c.previous,
            confidence: crate::detector::round_confidence(c.now.confidence),
            growth_per_sec: c.now.growth_bytes_per_sec,
            since: c.now.since,
            reason: c.sentence.clone(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Header {
    pub schema: u32,
    pub tool: String,
    pub version: String,
    pub host: String,
    pub kernel: String,
    /// Wall clock at session start (unix milliseconds and RFC 3339); every `t` in the
    /// trace is seconds since this instant.
    pub start_unix_ms: u64,
    pub start: String,
    pub interval_ms: u64,
    pub rss_source: String,
    pub page_size: u64,
    #[serde(default)]
    pub filter_pids: Vec<u32>,
    #[serde(default)]
    pub filter_comms: Vec<String>,
}

/// First sight of a process: identity captured while it is alive.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProcessInfo {
    pub t: f64,
    pub pid: u32,
    pub ppid: u32,
    pub comm: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmdline: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<String>,
    /// The memory limit that applies (tightest memory cgroup limit, else the node's memory)
    /// and the cgroup holding it (absent for the node), at first sight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit_cgroup: Option<String>,
    /// Kubernetes identity, when the process runs in a pod.
    #[serde(flatten)]
    pub pod: PodRef,
}

/// A process's Kubernetes identity as written in records (from its cgroup path and the
/// kubelet's log directories); every field is absent outside pods.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodRef {
    #[serde(flatten)]
    pub names: PodNames,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_uid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_id: Option<String>,
}

impl From<crate::host::identity::Identity> for PodRef {
    fn from(id: crate::host::identity::Identity) -> Self {
        Self {
            names: id.names,
            pod_uid: id.pod_uid,
            container_id: id.container_id,
        }
    }
}

impl From<PodRef> for crate::host::identity::Identity {
    /// What a record says of a process's identity (offline, nothing else is known of it).
    fn from(p: PodRef) -> Self {
        Self {
            names: p.names,
            pod_uid: p.pod_uid,
            container_id: p.container_id,
            ..Self::default()
        }
    }
}

/// Cumulative kernel counters of one process at time `t`; written when they changed.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SampleRecord {
    pub t: f64,
    pub pid: u32,
    pub comm: String,
    pub rss_anon: u64,
    pub rss_file: u64,
    pub rss_shmem: u64,
    pub rss_swap: u64,
    pub mapped_anon: u64,
    pub mapped_file: u64,
    pub reserved: u64,
    pub unmapped: u64,
    pub released: u64,
    pub brk_grown: u64,
    pub brk_shrunk: u64,
    pub mremap_grown: u64,
    pub mremap_shrunk: u64,
    pub calls: Calls,
    pub failed_calls: u64,
    /// Highest private memory (anon + shmem + swap) since first seen, bytes (absent in
    /// traces written before it was recorded).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub peak_private_bytes: u64,
    /// Counts of mmap requests per power-of-two size class, from 4 KiB (index 0) upwards;
    /// trailing zeros omitted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mmap_size_log2: Vec<u32>,
    /// The process's final counters (it exited); present only when true.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub exited: bool,
    /// Its limit-risk judgement at this sample (absent without a memory cgroup limit, and in
    /// traces written before it was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub risk: Option<crate::detector::LimitRisk>,
    /// A Go process's runtime at this sample (absent for other processes and for Go
    /// runtimes that cannot be read): see docs/go-runtime.md.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub go: Option<crate::model::go::GoFigures>,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

impl SampleRecord {
    pub fn from_counters(t: f64, pid: u32, st: &Counters) -> Self {
        let mut hist: Vec<u32> = st.mmap_size_hist.to_vec();
        while hist.last() == Some(&0) {
            hist.pop();
        }
        Self {
            t: round_ms(t),
            pid,
            comm: st.comm(),
            rss_anon: st.rss.anon,
            rss_file: st.rss.file,
            rss_shmem: st.rss.shmem,
            rss_swap: st.rss.swap,
            mapped_anon: st.mapped_anon,
            mapped_file: st.mapped_file,
            reserved: st.reserved,
            unmapped: st.unmapped,
            released: st.released,
            brk_grown: st.brk_grown,
            brk_shrunk: st.brk_shrunk,
            mremap_grown: st.mremap_grown,
            mremap_shrunk: st.mremap_shrunk,
            calls: st.calls,
            failed_calls: st.failed_calls,
            peak_private_bytes: st.peak_private,
            mmap_size_log2: hist,
            exited: st.exited,
            risk: None,
            go: None,
        }
    }

    /// Back to counters, so `report` feeds the same process table as live runs. (What a
    /// sample does not record stays 0; its RSS is what was recorded, so exact.)
    pub fn to_counters(&self) -> Counters {
        let mut st = Counters {
            rss: Rss {
                anon: self.rss_anon,
                file: self.rss_file,
                shmem: self.rss_shmem,
                swap: self.rss_swap,
            },
            calls: self.calls,
            exited: self.exited,
            rss_exact: true,
            ..Counters::default()
        };
        st.set_comm(&self.comm);
        st.mapped_anon = self.mapped_anon;
        st.mapped_file = self.mapped_file;
        st.reserved = self.reserved;
        st.unmapped = self.unmapped;
        st.released = self.released;
        st.brk_grown = self.brk_grown;
        st.brk_shrunk = self.brk_shrunk;
        st.mremap_grown = self.mremap_grown;
        st.mremap_shrunk = self.mremap_shrunk;
        st.failed_calls = self.failed_calls;
        st.peak_private = self.peak_private_bytes;
        for (slot, v) in st.mmap_size_hist.iter_mut().zip(&self.mmap_size_log2) {
            *slot = *v;
        }
        st
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExitRecord {
    pub t: f64,
    pub pid: u32,
    pub comm: String,
    /// Last RSS by kind (bytes) when the kernel still had the process's counters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_rss: Option<Rss>,
    pub peak_private_bytes: u64,
}

/// An OOM kill (filled further by the OOM post-mortem work).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OomRecord {
    pub t: f64,
    #[serde(flatten)]
    pub victim: OomVictim,
    /// The victim's memory cgroup, as known before the kill (after it /proc shows the root).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<String>,
    /// Whether the kill was constrained by a memory cgroup limit (else a global OOM).
    #[serde(default)]
    pub cgroup_constrained: bool,
    /// That cgroup's limit and usage when the kill was observed (bytes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup_limit_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup_usage_bytes: Option<u64>,
    /// The victim's private memory in the minutes before the kill: [t, bytes] pairs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<(f64, u64)>,
    /// The victim's last leak verdict.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_verdict: Option<crate::detector::Verdict>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_growth_bytes_per_sec: Option<f64>,
    /// The trigger's own cgroup-constrained context: its comm and pid are in `trigger_*`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger_cgroup: Option<String>,
    /// Kubernetes identity, when the process runs in a pod.
    #[serde(flatten)]
    pub pod: PodRef,
}

/// A process's leak verdict changed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VerdictRecord {
    pub t: f64,
    pub pid: u32,
    pub comm: String,
    pub verdict: crate::detector::Verdict,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<crate::detector::Verdict>,
    pub confidence: f64,
    pub growth_bytes_per_sec: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<f64>,
    pub reason: String,
}

impl VerdictRecord {
    /// The record of a verdict change (the same in traces and on the daemon's stdout).
    pub fn from_change(t: f64, comm: &str, v: &crate::detector::VerdictChange) -> Self {
        Self {
            t,
            pid: v.pid,
            comm: comm.to_string(),
            verdict: v.now.verdict,
            previous: v.previous,
            confidence: crate::detector::round_confidence(v.now.confidence),
            growth_bytes_per_sec: v.now.growth_bytes_per_sec.round(),
            since: v.now.since.map(round_ms),
            reason: v.now.reason.clone(),
        }
    }
}

/// A process started (`risk.at_risk` true) or stopped being at risk of meeting its memory
/// cgroup's limit (the same in traces and on the daemon's stdout).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RiskRecord {
    pub t: f64,
    pub pid: u32,
    pub comm: String,
    pub risk: crate::detector::LimitRisk,
}

impl RiskRecord {
    pub fn from_change(t: f64, comm: &str, c: &crate::model::risk::RiskChange) -> Self {
        Self {
            t,
            pid: c.pid,
            comm: comm.to_string(),
            risk: c.risk.clone(),
        }
    }
}

/// Kernel-side health: never silent about losses.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Health {
    pub t: f64,
    pub counters: BTreeMap<String, u64>,
    pub procs_in_map: usize,
    pub procs_capacity: u32,
    pub own_rss_bytes: u64,
    /// The kernel programs' share of the node's CPU in the last measurement window (0..1;
    /// absent before the first window closes, or with the budget off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bpf_cpu_share: Option<f64>,
    /// Hooks the overhead budget has paused (a syscall hook's counts are incomplete
    /// meanwhile; with `rss` paused, RSS is read from /proc each interval).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paused_hooks: Vec<crate::kernel::budget::Hook>,
    /// Processes whose RSS this round came from /proc/PID/status instead of the kernel's
    /// rss_stat figures (rss paused, or resumed since their last RSS change).
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub rss_from_proc: u32,
}

fn is_zero_u32(n: &u32) -> bool {
    *n == 0
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub t: f64,
    pub end_unix_ms: u64,
    pub rounds: u64,
    pub samples: u64,
    pub processes_seen: u64,
    pub exits: u64,
    pub oom_kills: u64,
    /// Records that could not be written (never expected; counted, not hidden).
    pub dropped_records: u64,
    /// Times the overhead budget paused a syscall hook (see the `budget` records).
    #[serde(default)]
    pub budget_pauses: u64,
    pub counters: BTreeMap<String, u64>,
    /// Why the recording ended: "duration", "signal" (SIGINT/SIGTERM) or "error".
    pub ended_by: String,
    /// The fastest-growing processes at the end, fastest first.
    pub top_growers: Vec<Grower>,
    /// Processes judged `leaking` or `growing` at the end, leaking first.
    #[serde(default)]
    pub suspects: Vec<SuspectBrief>,
}

/// A suspect as the summary records it (the trace's schema; built from the one suspect,
/// [`crate::model::suspect::Suspect`]). `since` is session seconds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SuspectBrief {
    pub pid: u32,
    pub comm: String,
    pub verdict: crate::detector::Verdict,
    pub confidence: f64,
    pub growth_bytes_per_sec: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<f64>,
}

impl From<&crate::model::suspect::Suspect> for SuspectBrief {
    /// The summary's line of a suspect: the one suspect, briefly.
    fn from(s: &crate::model::suspect::Suspect) -> Self {
        Self {
            pid: s.pid,
            comm: s.comm.clone(),
            verdict: s.verdict,
            confidence: s.confidence,
            growth_bytes_per_sec: s.growth_bytes_per_sec,
            since: s.since_secs,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Grower {
    pub pid: u32,
    pub comm: String,
    pub growth_bytes_per_sec: f64,
    pub private_bytes: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_roundtrips_through_json_and_counters() {
        let mut st = Counters {
            rss: Rss {
                file: 1,
                anon: 2,
                swap: 3,
                shmem: 4,
            },
            mapped_anon: 10,
            calls: Calls {
                mmap: 1,
                munmap: 2,
                brk: 3,
                mremap: 4,
                madvise: 5,
            },
            rss_exact: true,
            ..Counters::default()
        };
        st.set_comm("leak");
        st.mmap_size_hist[3] = 7;
        let rec = Record::Sample(SampleRecord::from_counters(1.23456, 42, &st));
        let line = serde_json::to_string(&rec).unwrap();
        assert!(
            line.starts_with("{\"type\":\"sample\",\"t\":1.235,"),
            "{line}"
        );
        assert!(
            line.contains("\"rss_anon\":2,\"rss_file\":1,\"rss_shmem\":4,\"rss_swap\":3,"),
            "{line}"
        );
        assert!(
            line.contains(
                "\"calls\":{\"mmap\":1,\"munmap\":2,\"brk\":3,\"mremap\":4,\"madvise\":5}"
            ),
            "{line}"
        );
        let back: Record = serde_json::from_str(&line).unwrap();
        let Record::Sample(s) = back else { panic!() };
        assert_eq!(s.mmap_size_log2, vec![0, 0, 0, 7]);
        assert_eq!(s.to_counters(), st);
    }

    #[test]
    fn exit_record_rss_keeps_its_field_order() {
        let rec = Record::Exit(ExitRecord {
            t: 1.0,
            pid: 1,
            comm: "x".into(),
            last_rss: Some(Rss {
                anon: 1,
                file: 2,
                shmem: 3,
                swap: 4,
            }),
            peak_private_bytes: 0,
        });
        let line = serde_json::to_string(&rec).unwrap();
        assert!(
            line.contains("\"last_rss\":{\"anon\":1,\"file\":2,\"shmem\":3,\"swap\":4}"),
            "{line}"
        );
    }

    /// The records that carry a process's Kubernetes identity and the summary's suspects:
    /// field names and order as written.
    #[test]
    fn identity_and_suspect_records_keep_their_shape() {
        let pod = PodRef {
            names: PodNames {
                namespace: Some("shop".into()),
                pod: Some("web-1".into()),
                container: Some("app".into()),
            },
            pod_uid: Some("uid".into()),
            container_id: Some("cid".into()),
        };
        let info = Record::Process(ProcessInfo {
            t: 1.0,
            pid: 42,
            ppid: 1,
            comm: "web".into(),
            cmdline: Some("/bin/web".into()),
            cgroup: Some("0::/x".into()),
            limit_bytes: Some(100),
            limit_cgroup: Some("/x".into()),
            pod: pod.clone(),
        });
        let line = serde_json::to_string(&info).unwrap();
        assert_eq!(
            line,
            r#"{"type":"process","t":1.0,"pid":42,"ppid":1,"comm":"web","cmdline":"/bin/web","cgroup":"0::/x","limit_bytes":100,"limit_cgroup":"/x","namespace":"shop","pod":"web-1","container":"app","pod_uid":"uid","container_id":"cid"}"#
        );
        assert_eq!(serde_json::from_str::<Record>(&line).unwrap(), info);
        let bare = r#"{"type":"process","t":1.0,"pid":42,"ppid":1,"comm":"web"}"#;
        let Record::Process(back) = serde_json::from_str::<Record>(bare).unwrap() else {
            panic!("not a process record")
        };
        assert_eq!(back.pod, PodRef::default());
        assert_eq!(serde_json::to_string(&Record::Process(back)).unwrap(), bare);

        let oom = Record::OomKill(OomRecord {
            t: 2.0,
            victim: OomVictim {
                pid: 42,
                comm: "web".into(),
                trigger_pid: 43,
                trigger_comm: "x".into(),
                uid: 0,
                total_vm_bytes: 1,
                anon_rss_bytes: 2,
                file_rss_bytes: 3,
                shmem_rss_bytes: 4,
                pgtables_bytes: 5,
                oom_score_adj: 6,
                t_mono: 0.0,
            },
            cgroup: Some("/x".into()),
            cgroup_constrained: true,
            cgroup_limit_bytes: Some(7),
            cgroup_usage_bytes: None,
            history: vec![(1.0, 8)],
            last_verdict: Some(crate::detector::Verdict::Growing),
            last_growth_bytes_per_sec: Some(9.0),
            trigger_cgroup: None,
            pod,
        });
        let line = serde_json::to_string(&oom).unwrap();
        assert_eq!(
            line,
            r#"{"type":"oom_kill","t":2.0,"pid":42,"comm":"web","trigger_pid":43,"trigger_comm":"x","uid":0,"total_vm_bytes":1,"anon_rss_bytes":2,"file_rss_bytes":3,"shmem_rss_bytes":4,"pgtables_bytes":5,"oom_score_adj":6,"cgroup":"/x","cgroup_constrained":true,"cgroup_limit_bytes":7,"history":[[1.0,8]],"last_verdict":"growing","last_growth_bytes_per_sec":9.0,"namespace":"shop","pod":"web-1","container":"app","pod_uid":"uid","container_id":"cid"}"#
        );
        assert_eq!(serde_json::from_str::<Record>(&line).unwrap(), oom);

        let brief = SuspectBrief {
            pid: 42,
            comm: "web".into(),
            verdict: crate::detector::Verdict::Leaking,
            confidence: 0.93,
            growth_bytes_per_sec: 1024.0,
            since: Some(3.5),
        };
        assert_eq!(
            serde_json::to_string(&brief).unwrap(),
            r#"{"pid":42,"comm":"web","verdict":"leaking","confidence":0.93,"growth_bytes_per_sec":1024.0,"since":3.5}"#
        );
        let no_since = SuspectBrief {
            since: None,
            ..brief
        };
        assert_eq!(
            serde_json::to_string(&no_since).unwrap(),
            r#"{"pid":42,"comm":"web","verdict":"leaking","confidence":0.93,"growth_bytes_per_sec":1024.0}"#
        );
    }

    #[test]
    fn unknown_type_is_an_error() {
        assert!(serde_json::from_str::<Record>("{\"type\":\"nope\"}").is_err());
    }
}
