//! OOM post-mortem: one record saying who was killed, who triggered it, in which cgroup,
//! how big the victim was, the cgroup's limit and usage, and how the victim grew in the
//! minutes before — from what the process table kept, since the victim (and often its
//! container) is gone by the time anyone looks.
use std::io::Write as _;

use crate::{
    host::identity::parse_proc_cgroup,
    host::memcg::CgroupRoots,
    kernel::events::OomVictim,
    model::table::ProcessTable,
    pipeline::session::{EndReason, Happening, SessionInfo, Sink},
    trace::{OomRecord, round_ms},
    util::format,
};

/// How much of the victim's history goes into the record, and at what resolution.
const HISTORY_SECS: f64 = 300.0;
const HISTORY_POINTS: usize = 60;

/// Build the record from the table's memory of the victim (cgroup at first sight, series,
/// verdict) and the cgroup's state now.
pub fn post_mortem(table: &ProcessTable, v: &OomVictim, t: f64, roots: &CgroupRoots) -> OomRecord {
    let victim = table.find(v.pid);
    let memory_path = |raw: Option<&str>| {
        raw.map(parse_proc_cgroup)
            .and_then(|c| c.memory_path().map(str::to_string))
    };
    let cgroup = memory_path(victim.and_then(|p| p.cgroup_raw.as_deref()));
    let trigger_cgroup = memory_path(
        table
            .find(v.trigger_pid)
            .and_then(|p| p.cgroup_raw.as_deref()),
    );
    let limit = cgroup.as_deref().and_then(|c| roots.limit_of(c));
    let usage = cgroup.as_deref().and_then(|c| roots.usage_of(c));
    let history = victim
        .map(|p| {
            let end = p.exited_at.unwrap_or(t);
            let pts: Vec<(f64, u64)> = p
                .fine
                .iter()
                .filter(|s| s.t >= end - HISTORY_SECS)
                .map(|s| (round_ms(s.t), s.private()))
                .collect();
            let step = pts.len().div_ceil(HISTORY_POINTS).max(1);
            let mut out: Vec<(f64, u64)> = pts.iter().step_by(step).copied().collect();
            if let (Some(last), Some(kept)) = (pts.last(), out.last())
                && last != kept
            {
                out.push(*last);
            }
            out
        })
        .unwrap_or_default();
    let assessment = victim.and_then(|p| p.assessment.as_ref());
    OomRecord {
        t: round_ms(t),
        victim: v.clone(),
        cgroup_constrained: limit.is_some(),
        cgroup,
        cgroup_limit_bytes: limit,
        cgroup_usage_bytes: usage,
        history,
        last_verdict: assessment.map(|a| a.verdict),
        last_growth_bytes_per_sec: assessment.map(|a| a.growth_bytes_per_sec.round()),
        trigger_cgroup,
        pod: Default::default(),
    }
}

/// A readable block for `leaktracer oom`.
pub fn render_block(r: &OomRecord, start_unix_ms: u64) -> String {
    let v = &r.victim;
    let when = crate::util::clock::rfc3339(start_unix_ms + (r.t * 1000.0) as u64);
    let mut s = format!("OOM KILL at {when}\n");
    s.push_str(&format!(
        "  victim     {} ({}) uid {} oom_score_adj {}\n",
        v.pid, v.comm, v.uid, v.oom_score_adj
    ));
    s.push_str(&format!(
        "  memory     anon {}  file {}  shmem {}  page tables {}  virtual {}\n",
        format::bytes(v.anon_rss_bytes as f64),
        format::bytes(v.file_rss_bytes as f64),
        format::bytes(v.shmem_rss_bytes as f64),
        format::bytes(v.pgtables_bytes as f64),
        format::bytes(v.total_vm_bytes as f64)
    ));
    s.push_str(&format!(
        "  triggered  by {} ({})\n",
        v.trigger_pid, v.trigger_comm
    ));
    if r.pod.pod.is_some() || r.pod.pod_uid.is_some() {
        let short_id = r.pod.container_id.as_deref().map(|c| &c[..c.len().min(12)]);
        s.push_str(&format!(
            "  pod        {}/{}/{}\n",
            r.pod.namespace.as_deref().unwrap_or("?"),
            r.pod
                .pod
                .as_deref()
                .or(r.pod.pod_uid.as_deref())
                .unwrap_or("?"),
            r.pod.container.as_deref().or(short_id).unwrap_or("?")
        ));
    }
    match (&r.cgroup, r.cgroup_limit_bytes) {
        (Some(c), Some(l)) => s.push_str(&format!(
            "  cgroup     {c}  limit {}  usage now {}\n",
            format::bytes(l as f64),
            r.cgroup_usage_bytes
                .map_or("-".into(), |u| format::bytes(u as f64))
        )),
        (Some(c), None) => s.push_str(&format!(
            "  cgroup     {c} (no memory limit: a node-wide OOM)\n"
        )),
        _ => s.push_str("  cgroup     unknown (the victim was never seen alive by leaktracer)\n"),
    }
    if let (Some(first), Some(last)) = (r.history.first(), r.history.last()) {
        let dt = last.0 - first.0;
        s.push_str(&format!(
            "  before     private memory {} -> {} over {}{}\n",
            format::bytes(first.1 as f64),
            format::bytes(last.1 as f64),
            format::duration(dt),
            if dt > 0.0 {
                format!(
                    " ({}/s)",
                    format::bytes((last.1 as f64 - first.1 as f64) / dt)
                )
            } else {
                String::new()
            }
        ));
    }
    if let Some(verdict) = r.last_verdict {
        s.push_str(&format!(
            "  verdict    {} at {}/s before the kill\n",
            verdict.as_str(),
            format::bytes(r.last_growth_bytes_per_sec.unwrap_or(0.0))
        ));
    }
    s
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OomFormat {
    Text,
    Json,
}

/// `leaktracer oom`: follow OOM kills live.
pub struct OomSink {
    pub format: OomFormat,
    roots: CgroupRoots,
    info: Option<SessionInfo>,
    pub seen: u64,
    filter: crate::pipeline::session::Filter,
    ids: crate::host::identity::Resolver,
}

impl OomSink {
    pub fn new(
        format: OomFormat,
        roots: CgroupRoots,
        filter: crate::pipeline::session::Filter,
        ids: crate::host::identity::Resolver,
    ) -> Self {
        Self {
            format,
            roots,
            filter,
            ids,
            info: None,
            seen: 0,
        }
    }
}

impl Sink for OomSink {
    fn start(&mut self, info: &SessionInfo) -> anyhow::Result<()> {
        self.info = Some(info.clone());
        // On stderr whatever the format: stdout stays a clean stream of records.
        eprintln!("leaktracer: following OOM kills on this node (Ctrl-C to stop)");
        Ok(())
    }

    fn handle(&mut self, table: &ProcessTable, what: Happening<'_>) -> anyhow::Result<()> {
        let Happening::Kernel(crate::kernel::events::KernelEvent::OomVictim(v)) = what else {
            return Ok(());
        };
        let Some(info) = &self.info else {
            return Ok(());
        };
        let mut rec = post_mortem(table, v, v.t_mono - info.t0_mono, &self.roots);
        if let Some(p) = table.find(v.pid) {
            if !self.filter.wants(p, &mut self.ids) {
                return Ok(());
            }
            rec = rec.with_identity(&self.ids.get(p));
        } else if !self.filter.matches(v.pid, &v.comm) || self.filter.has_identity_filters() {
            return Ok(());
        }
        self.seen += 1;
        let mut out = std::io::stdout().lock();
        match self.format {
            OomFormat::Json => {
                serde_json::to_writer(&mut out, &rec)?;
                out.write_all(b"\n")?;
            }
            OomFormat::Text => writeln!(out, "{}", render_block(&rec, info.start_unix_ms))?,
        }
        out.flush()?;
        Ok(())
    }

    fn finish(&mut self, _table: &ProcessTable, _reason: EndReason) -> anyhow::Result<()> {
        eprintln!("leaktracer: {} OOM kill(s) seen", self.seen);
        Ok(())
    }
}
