//! `leaktracer oom`: the OOM post-mortems the session builds (pipeline/postmortem.rs), filtered
//! and printed as they come, as readable blocks or JSON Lines.
use std::io::Write as _;

use crate::{
    model::table::ProcessTable,
    pipeline::context::Context,
    pipeline::filter::Filter,
    pipeline::sink::{Happening, SessionEnd, SessionInfo, Sink},
    trace::OomRecord,
    util::format,
};

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
    let names = &r.pod.names;
    if names.pod.is_some() || r.pod.pod_uid.is_some() {
        let short_id = r.pod.container_id.as_deref().map(|c| &c[..c.len().min(12)]);
        s.push_str(&format!(
            "  pod        {}/{}/{}\n",
            names.namespace.as_deref().unwrap_or("?"),
            names
                .pod
                .as_deref()
                .or(r.pod.pod_uid.as_deref())
                .unwrap_or("?"),
            names.container.as_deref().or(short_id).unwrap_or("?")
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
    info: Option<SessionInfo>,
    pub seen: u64,
    filter: Filter,
}

impl OomSink {
    pub fn new(format: OomFormat, filter: Filter) -> Self {
        Self {
            format,
            filter,
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

    fn handle(
        &mut self,
        ctx: &mut Context,
        table: &ProcessTable,
        what: Happening<'_>,
    ) -> anyhow::Result<()> {
        let Happening::Oom(rec) = what else {
            return Ok(());
        };
        let Some(info) = &self.info else {
            return Ok(());
        };
        let v = &rec.victim;
        let wanted = match table.find(v.pid) {
            Some(p) => self.filter.wants(p, &mut ctx.ids),
            // Never seen alive: no identity to match a Kubernetes filter against.
            None => self.filter.matches(v.pid, &v.comm) && !self.filter.has_identity_filters(),
        };
        if !wanted {
            return Ok(());
        }
        self.seen += 1;
        let mut out = std::io::stdout().lock();
        match self.format {
            OomFormat::Json => {
                serde_json::to_writer(&mut out, rec)?;
                out.write_all(b"\n")?;
            }
            OomFormat::Text => writeln!(out, "{}", render_block(rec, info.start_unix_ms))?,
        }
        out.flush()?;
        Ok(())
    }

    fn finish(
        &mut self,
        _ctx: &mut Context,
        _table: &ProcessTable,
        _end: SessionEnd,
    ) -> anyhow::Result<()> {
        eprintln!("leaktracer: {} OOM kill(s) seen", self.seen);
        Ok(())
    }
}
