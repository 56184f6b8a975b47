//! The replay source: a recorded trace read line by line (bounded memory, whatever its
//! size) and said as the steps a live session took. The samples of one round (one run of
//! sample lines sharing a `t`) become one snapshot; an exit line with the sample just before
//! it becomes an exit with final counters; OOM records are post-mortems already and go on as
//! they are; exec, memory-cgroup and budget lines become their steps. The identities the
//! trace recorded at first sight (command line, cgroup, limit, pod names) are applied when the
//! process enters the table, since there is no /proc to read them from.
use std::{
    collections::{HashMap, VecDeque},
    io::BufRead,
    time::Duration,
};

use crate::{
    host::identity::Identity,
    kernel::budget::OverheadStatus,
    kernel::loader::RssSource,
    kernel::sampler::Snapshot,
    model::counters::Counters,
    model::table::{ProcessTable, TableLimits},
    pipeline::core::Pipeline,
    pipeline::sink::{EndReason, SessionEnd, SessionInfo},
    pipeline::step::Step,
    trace::{Header, ProcessInfo, Record, SampleRecord, Summary, reader::TraceReader},
    util::error::UsageError,
};

/// Process lines kept for processes not sampled yet; a trace whose processes never get a
/// sample (filtered out, or a damaged trace) cannot grow it beyond this.
const MAX_WAITING_INFOS: usize = 4096;

/// Slab caches a replay follows at most (a kernel has 150–300).
const MAX_SLAB_CACHES: usize = 4096;

/// Traces larger than this get a progress bar (on a terminal).
const PROGRESS_MIN_BYTES: u64 = 64 << 20;

pub struct ReplaySource {
    reader: TraceReader<Box<dyn BufRead>>,
    lenient: bool,
    header: Header,
    /// The round being gathered: samples sharing `pending_t`.
    pending: Vec<(u32, Counters)>,
    /// The Go runtime figures of the round being gathered.
    pending_go: Vec<(u32, crate::model::go::GoFigures)>,
    pending_t: f64,
    /// Steps read but not handed on yet, in trace order.
    queue: VecDeque<Step>,
    /// First-sight identities of processes not in the table yet.
    infos: HashMap<u32, ProcessInfo>,
    /// Sample lines read.
    samples: u64,
    /// Latest sample time.
    last_t: f64,
    summary: Option<Summary>,
    /// Whether the reader has reached the end.
    read_all: bool,
    /// Each slab cache's last value in the trace's node records.
    node_slabs: std::collections::BTreeMap<String, crate::host::node::slabinfo::SlabCache>,
    progress: Option<indicatif::ProgressBar>,
}

/// What the replay learnt of the trace besides its steps, for the report.
pub struct ReplayStats<'a> {
    pub samples: u64,
    pub summary: Option<&'a Summary>,
    /// Lines skipped under `--lenient`.
    pub skipped_lines: u64,
    /// The reader's warnings (bad lines under `--lenient`, a second header).
    pub warnings: &'a [String],
}

impl ReplaySource {
    /// Read the header and check the schema. `size` (bytes, 0 if unknown) and `progress`
    /// give a progress bar for large traces.
    pub fn open(
        input: Box<dyn BufRead>,
        size: u64,
        lenient: bool,
        progress: bool,
    ) -> anyhow::Result<Self> {
        let mut reader = TraceReader::new(input, lenient);
        let header = match reader.next_record()? {
            Some(Record::Header(h)) => h,
            Some(_) => {
                return Err(UsageError::new(
                    "line 1: not a leaktracer trace (the first line must be the header)",
                )
                .into());
            }
            None => return Err(UsageError::new("empty trace: no header line").into()),
        };
        if header.schema > crate::trace::SCHEMA_VERSION {
            return Err(UsageError::new(format!(
                "trace schema {} is newer than this leaktracer understands ({}): upgrade leaktracer",
                header.schema,
                crate::trace::SCHEMA_VERSION
            ))
            .into());
        }
        let progress = (progress && size > PROGRESS_MIN_BYTES).then(|| {
            let b = indicatif::ProgressBar::new(size);
            b.set_style(
                indicatif::ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {eta}")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            b
        });
        Ok(Self {
            reader,
            lenient,
            header,
            pending: Vec::new(),
            pending_go: Vec::new(),
            pending_t: 0.0,
            queue: VecDeque::new(),
            infos: HashMap::new(),
            samples: 0,
            last_t: 0.0,
            summary: None,
            read_all: false,
            node_slabs: std::collections::BTreeMap::new(),
            progress,
        })
    }

    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The table the trace is replayed into: its times are session times already.
    pub fn table(&self) -> ProcessTable {
        ProcessTable::new(TableLimits::default(), 0.0)
    }

    pub fn info(&self) -> SessionInfo {
        SessionInfo {
            start_unix_ms: self.header.start_unix_ms,
            t0_mono: 0.0,
            interval: Duration::from_millis(self.header.interval_ms),
            rss_source: if self.header.rss_source == "raw" {
                RssSource::Raw
            } else {
                RssSource::Tracepoint
            },
            attached: Vec::new(),
        }
    }

    /// The next step, or None at the end of the trace.
    pub fn next_step(&mut self) -> anyhow::Result<Option<Step>> {
        loop {
            if let Some(step) = self.queue.pop_front() {
                return Ok(Some(step));
            }
            if self.read_all {
                return Ok(None);
            }
            match self.reader.next_record()? {
                Some(rec) => self.read(rec)?,
                None => {
                    self.end_round();
                    self.read_all = true;
                    if let Some(b) = self.progress.take() {
                        b.finish_and_clear();
                    }
                }
            }
            if let Some(b) = &self.progress
                && self.reader.line().is_multiple_of(10_000)
            {
                b.set_position(self.reader.bytes_read);
            }
        }
    }

    /// The end of the trace: the later of its summary and its last sample (a recording
    /// killed before its summary ends at its last sample).
    pub fn end(&self) -> SessionEnd {
        SessionEnd {
            reason: EndReason::EndOfTrace,
            t: self
                .summary
                .as_ref()
                .map_or(self.last_t, |s| s.t.max(self.last_t)),
        }
    }

    /// What the replay counted and found besides the steps.
    pub fn stats(&self) -> ReplayStats<'_> {
        ReplayStats {
            samples: self.samples,
            summary: self.summary.as_ref(),
            skipped_lines: self.reader.skipped,
            warnings: &self.reader.warnings,
        }
    }

    /// One line of the trace. Samples gather into the round; any other line ends it first,
    /// so steps keep the trace's order.
    fn read(&mut self, rec: Record) -> anyhow::Result<()> {
        if let Record::Sample(s) = rec {
            self.gather(&s);
            return Ok(());
        }
        // An exit comes right after its process's final sample: together they are the exit
        // with final counters, not a round. (An exit line without that sample, as traces
        // written before exits carried counters have, changes nothing: the process's final
        // sample ends it when it comes.)
        let exit = match &rec {
            Record::Exit(e) => self.take_pending(e.pid, e.t).map(|st| Step::Exit {
                pid: e.pid,
                comm: e.comm.clone(),
                t_mono: e.t,
                // A final sample without `exited` repeats the last counters of a process the
                // kernel had none for at its end.
                counters: st.exited.then_some(st),
            }),
            _ => None,
        };
        self.end_round();
        let step = match rec {
            Record::Exit(_) => exit,
            Record::Process(info) => {
                self.infos.insert(info.pid, info);
                None
            }
            Record::Exec {
                t,
                pid,
                comm,
                cmdline,
                cgroup,
            } => Some(Step::Exec {
                pid,
                comm,
                t_mono: t,
                cmdline,
                cgroup,
            }),
            Record::OomKill(o) => Some(Step::OomRecord(o)),
            Record::Memcg { t, event } => Some(Step::Memcg { t_mono: t, event }),
            Record::Budget { t, event } => Some(Step::Budget { t_mono: t, event }),
            Record::Summary(s) => {
                self.summary = Some(s);
                None
            }
            Record::Header(_) => {
                let msg = format!(
                    "line {}: a second header (concatenated traces?)",
                    self.reader.line()
                );
                if !self.lenient {
                    return Err(UsageError::new(format!(
                        "{msg} (use --lenient to skip bad lines)"
                    ))
                    .into());
                }
                self.reader.warnings.push(msg);
                None
            }
            Record::Cgroup { t, mut change } => {
                change.t_mono = t;
                Some(Step::Cgroup(change))
            }
            Record::Stacks { t, update } => Some(Step::Stacks { t_mono: t, update }),
            Record::Node(n) => Some(Step::Node {
                t_mono: n.t,
                reading: self.node_reading(n),
            }),
            // Verdicts are judged again from the samples, so replayed and live ones agree.
            Record::Sample(_)
            | Record::Health(_)
            | Record::Verdict(_)
            | Record::Risk(_)
            | Record::NodeVerdict(_) => None,
        };
        self.queue.extend(step);
        Ok(())
    }

    /// A node record's full reading: its slab caches are the ones that changed, so each
    /// cache keeps its last value (bounded: a damaged trace cannot grow the map without end).
    fn node_reading(&mut self, n: crate::trace::NodeRecord) -> crate::host::node::NodeReading {
        for c in n.slabs {
            if self.node_slabs.len() < MAX_SLAB_CACHES || self.node_slabs.contains_key(&c.name) {
                self.node_slabs.insert(c.name.clone(), c);
            }
        }
        crate::host::node::NodeReading {
            memory: n.memory,
            slabs: self.node_slabs.values().cloned().collect(),
            zombies: n.zombies,
            held: n.held,
        }
    }

    /// A sample joins the round of its `t`; one of another `t` starts a new round.
    fn gather(&mut self, s: &SampleRecord) {
        if s.t != self.pending_t {
            self.end_round();
            self.pending_t = s.t;
        }
        self.last_t = self.last_t.max(s.t);
        self.samples += 1;
        self.pending.push((s.pid, s.to_counters()));
        if let Some(go) = &s.go {
            self.pending_go.push((s.pid, go.clone()));
        }
    }

    /// The counters of `pid` gathered at `t`, taken out of the round.
    fn take_pending(&mut self, pid: u32, t: f64) -> Option<Counters> {
        if t != self.pending_t {
            return None;
        }
        let i = self.pending.iter().rposition(|(p, _)| *p == pid)?;
        Some(self.pending.remove(i).1)
    }

    /// The round gathered so far becomes a step.
    fn end_round(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let snap = Snapshot {
            t_mono: self.pending_t,
            procs: std::mem::take(&mut self.pending),
            counters: Default::default(),
            procs_capacity: 0,
            go: std::mem::take(&mut self.pending_go),
        };
        self.queue.push_back(Step::Round {
            snap,
            overhead: OverheadStatus::default(),
        });
    }

    /// Processes that just entered the table get what the trace recorded at their first
    /// sight: parent, name, command line, cgroup, limit and Kubernetes identity.
    pub fn describe_new(&mut self, p: &mut Pipeline, pids: &[u32]) {
        for pid in pids {
            let Some(info) = self.infos.remove(pid) else {
                continue;
            };
            let cgroup = info.cgroup.map(|c| p.table.strings.intern(c));
            let cmdline = info.cmdline.map(|c| p.table.cmdlines.intern(c));
            let Some(proc_) = p.table.find_mut(*pid) else {
                continue;
            };
            proc_.ppid = info.ppid;
            proc_.comm = info.comm;
            proc_.cmdline = cmdline;
            proc_.cgroup_raw = cgroup;
            proc_.limit_bytes = info.limit_bytes;
            proc_.limit_from_cgroup = info.limit_cgroup.is_some();
            let id = Identity::from(info.pod);
            p.ctx.ids.remember(proc_, id);
        }
        // Infos whose process never got a sample (filtered or short-lived): dropped, bounded.
        if self.infos.len() > MAX_WAITING_INFOS {
            self.infos.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = r#"{"type":"header","schema":1,"tool":"leaktracer","version":"0.1.0","host":"h","kernel":"k","start_unix_ms":0,"start":"","interval_ms":1000,"rss_source":"raw","page_size":4096}"#;

    fn sample(t: f64, pid: u32, exited: bool) -> String {
        format!(
            r#"{{"type":"sample","t":{t},"pid":{pid},"comm":"p{pid}","rss_anon":{pid},"rss_file":0,"rss_shmem":0,"rss_swap":0,"mapped_anon":0,"mapped_file":0,"reserved":0,"unmapped":0,"released":0,"brk_grown":0,"brk_shrunk":0,"mremap_grown":0,"mremap_shrunk":0,"calls":{{"mmap":0,"munmap":0,"brk":0,"mremap":0,"madvise":0}},"failed_calls":0,"exited":{exited}}}"#
        )
    }

    /// Each step, in a word: what kind, when, and for whom.
    fn steps(lines: &[String]) -> Vec<String> {
        let text = format!("{HEADER}\n{}\n", lines.join("\n"));
        let mut src = ReplaySource::open(
            Box::new(std::io::Cursor::new(text.into_bytes())),
            0,
            false,
            false,
        )
        .unwrap();
        assert_eq!(src.info().rss_source, RssSource::Raw);
        let mut out = Vec::new();
        while let Some(step) = src.next_step().unwrap() {
            out.push(match step {
                Step::Round { snap, .. } => format!(
                    "round {} {:?}",
                    snap.t_mono,
                    snap.procs.iter().map(|(pid, _)| *pid).collect::<Vec<_>>()
                ),
                Step::Exec { pid, t_mono, .. } => format!("exec {t_mono} {pid}"),
                Step::Exit {
                    pid,
                    t_mono,
                    counters,
                    ..
                } => format!(
                    "exit {t_mono} {pid} {}",
                    counters.map_or("-".into(), |c| c.rss.anon.to_string())
                ),
                Step::OomRecord(o) => format!("oom {} {}", o.t, o.victim.pid),
                Step::OomVictim(_) => "a victim to examine".into(),
                Step::Memcg { t_mono, .. } => format!("memcg {t_mono}"),
                Step::Budget { t_mono, .. } => format!("budget {t_mono}"),
                Step::Node { t_mono, reading } => format!(
                    "node {t_mono} {}",
                    reading
                        .slabs
                        .iter()
                        .map(|c| format!("{}={}", c.name, c.bytes))
                        .collect::<Vec<_>>()
                        .join(",")
                ),
                Step::Cgroup(c) => format!("cgroup {} {:?} {}", c.t_mono, c.action, c.path),
                Step::Stacks { t_mono, update } => {
                    format!("stacks {t_mono} {}", update.stacks.len())
                }
            });
        }
        out
    }

    #[test]
    fn node_records_keep_each_slab_cache_s_last_value() {
        let slab = |name: &str, bytes: u64| {
            format!(
                r#"{{"name":"{name}","active_objects":1,"objects":1,"object_size":64,"bytes":{bytes}}}"#
            )
        };
        let got = steps(&[
            format!(
                r#"{{"type":"node","t":1.0,"memory":{{"total":100}},"slabs":[{},{}]}}"#,
                slab("dentry", 10),
                slab("kmalloc-64", 5)
            ),
            r#"{"type":"cgroup","t":1.5,"action":"rmdir","id":7,"level":1,"path":"/z"}"#.into(),
            format!(
                r#"{{"type":"node","t":2.0,"memory":{{"total":100}},"slabs":[{}]}}"#,
                slab("dentry", 30)
            ),
            r#"{"type":"node_verdict","t":2.0,"series":"slab:dentry","verdict":"growing","previous":null,"confidence":0.5,"growth_per_sec":20.0,"since":1.0,"reason":"r"}"#.into(),
        ]);
        assert_eq!(
            got,
            [
                "node 1 dentry=10,kmalloc-64=5",
                "cgroup 1.5 Rmdir /z",
                "node 2 dentry=30,kmalloc-64=5"
            ]
        );
    }

    #[test]
    fn the_trace_is_said_as_the_steps_a_live_session_took() {
        let oom = r#"{"type":"oom_kill","t":2.7,"pid":6,"comm":"p6","trigger_pid":6,"trigger_comm":"p6","uid":0,"total_vm_bytes":0,"anon_rss_bytes":0,"file_rss_bytes":0,"shmem_rss_bytes":0,"pgtables_bytes":0,"oom_score_adj":0}"#;
        let got = steps(&[
            r#"{"type":"process","t":1.0,"pid":5,"ppid":1,"comm":"p5"}"#.into(),
            sample(1.0, 5, false),
            sample(1.0, 6, false),
            r#"{"type":"health","t":1.0,"counters":{},"procs_in_map":2,"procs_capacity":9,"own_rss_bytes":0}"#.into(),
            r#"{"type":"exec","t":1.5,"pid":5,"comm":"p5b"}"#.into(),
            sample(2.0, 5, false),
            sample(2.0, 6, false),
            // An exit at a round's time: the round without it, then the exit.
            sample(2.0, 7, true),
            r#"{"type":"exit","t":2.0,"pid":7,"comm":"p7","peak_private_bytes":7}"#.into(),
            // An exit between rounds, with its final counters.
            sample(2.5, 6, true),
            r#"{"type":"exit","t":2.5,"pid":6,"comm":"p6","peak_private_bytes":6}"#.into(),
            oom.into(),
            r#"{"type":"budget","t":2.8,"hook":"rss","action":"pause","bpf_cpu_share":0.1,"hook_cpu_share":0.1,"budget":0.01,"hold_secs":15.0}"#.into(),
            // Final counters of an exit whose line was lost (ring buffer full): in the round.
            sample(3.0, 5, false),
            sample(3.0, 8, true),
            r#"{"type":"memcg","t":3.2,"kind":"threshold","ts_ms":1,"cgroup":"/c","usage_bytes":95,"limit_bytes":100,"threshold_bytes":90}"#.into(),
            // An exit without counters: the last ones repeated, not flagged exited.
            sample(3.5, 5, false),
            r#"{"type":"exit","t":3.5,"pid":5,"comm":"p5","peak_private_bytes":0}"#.into(),
            // An exit line alone (older traces): nothing to do.
            r#"{"type":"exit","t":3.7,"pid":9,"comm":"p9","peak_private_bytes":0}"#.into(),
            sample(4.0, 10, false),
        ]);
        assert_eq!(
            got,
            [
                "round 1 [5, 6]",
                "exec 1.5 5",
                "round 2 [5, 6]",
                "exit 2 7 7",
                "exit 2.5 6 6",
                "oom 2.7 6",
                "budget 2.8",
                "round 3 [5, 8]",
                "memcg 3.2",
                "exit 3.5 5 -",
                "round 4 [10]",
            ]
        );
    }

    #[test]
    fn the_end_is_the_later_of_the_summary_and_the_last_sample() {
        let text = format!(
            "{HEADER}\n{}\n{}\n",
            sample(4.0, 1, false),
            r#"{"type":"summary","t":4.5,"end_unix_ms":0,"rounds":1,"samples":1,"processes_seen":1,"exits":0,"oom_kills":0,"dropped_records":0,"counters":{},"ended_by":"signal","top_growers":[]}"#
        );
        let mut src = ReplaySource::open(
            Box::new(std::io::Cursor::new(text.into_bytes())),
            0,
            false,
            false,
        )
        .unwrap();
        while src.next_step().unwrap().is_some() {}
        assert_eq!(src.end().t, 4.5);
        assert_eq!(src.end().reason, EndReason::EndOfTrace);
        let stats = src.stats();
        assert_eq!((stats.samples, stats.skipped_lines), (1, 0));
        assert!(stats.summary.is_some());
    }

    #[test]
    fn not_a_trace_is_refused() {
        let open = |text: &str| {
            ReplaySource::open(
                Box::new(std::io::Cursor::new(text.as_bytes().to_vec())),
                0,
                false,
                false,
            )
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
        };
        assert!(open("").contains("empty trace"));
        assert!(open(&sample(1.0, 1, false)).contains("the first line must be the header"));
        assert!(open(&HEADER.replace("\"schema\":1", "\"schema\":99")).contains("newer"));
    }
}
