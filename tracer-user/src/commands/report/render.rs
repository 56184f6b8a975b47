//! `report`'s text: the header, the suspects table, the ended processes, OOM kills with
//! their context, memory-cgroup activity, kernel-side losses and the overhead budget.
use crate::{
    commands::report::{Report, RiskRow, SuspectRow},
    trace::OomRecord,
    util::format,
};

/// The rest of an OOM line: cgroup and limit, the victim's growth before death, and the
/// suspects that share its cgroup (they are the likely culprits of a cgroup OOM).
fn oom_context(o: &OomRecord, suspects: &[SuspectRow]) -> String {
    let mut s = String::new();
    if let Some(c) = &o.cgroup {
        s.push_str(&format!("\n             cgroup {c}"));
        if let Some(l) = o.cgroup_limit_bytes {
            s.push_str(&format!(" (limit {})", format::bytes(l as f64)));
        }
    }
    if let (Some(a), Some(b)) = (o.history.first(), o.history.last())
        && b.0 > a.0
    {
        s.push_str(&format!(
            "\n             before death: private {} -> {} in {}",
            format::bytes(a.1 as f64),
            format::bytes(b.1 as f64),
            format::duration(b.0 - a.0)
        ));
    }
    let same: Vec<String> = suspects
        .iter()
        .filter(|x| x.cgroup.is_some() && x.cgroup == o.cgroup && x.suspect.pid != o.victim.pid)
        .map(|x| {
            let s = &x.suspect;
            format!("{} ({}, {})", s.pid, s.comm, s.verdict.as_str())
        })
        .collect();
    if !same.is_empty() {
        s.push_str(&format!(
            "\n             suspects in the same cgroup: {}",
            same.join(", ")
        ));
    }
    s
}

/// The processes whose peaks meet their memory cgroup's limit, whatever their verdict (a
/// saw-tooth that is killed at its limit every night is not leaking, but it is at risk).
fn render_risks(rows: &[RiskRow]) -> String {
    if rows.is_empty() {
        return String::new();
    }
    let mut s = String::from("\nAT RISK OF MEETING THE MEMORY LIMIT (closest first)\n");
    s.push_str(&format!(
        "{:>7} {:<16} {:<12} {:>5} {:>9}  {}\n",
        "PID", "COMMAND", "VERDICT", "PEAK", "LIMIT", "WHY"
    ));
    for row in rows {
        s.push_str(&format!(
            "{:>7} {:<16} {:<12} {:>4.0}% {:>9}  {}{}\n",
            row.pid,
            row.comm,
            row.verdict.as_str(),
            row.risk.peak_ratio * 100.0,
            format::bytes(row.risk.limit_bytes as f64),
            row.risk.reason,
            if row.exited { " (exited)" } else { "" }
        ));
    }
    s
}

pub fn render_text(r: &Report) -> String {
    let h = &r.header;
    let mut s = format!(
        "leaktracer report — host {}, kernel {}, started {}, {} observed at {} ms intervals\n{} processes, {} samples, {} OOM kills\n",
        h.host,
        h.kernel,
        h.start,
        format::duration(r.duration_secs),
        h.interval_ms,
        r.processes,
        r.samples,
        r.oom_kills.len()
    );
    for w in &r.warnings {
        s.push_str(&format!("warning: {w}\n"));
    }
    if r.skipped_lines > 0 {
        s.push_str(&format!(
            "warning: {} bad lines skipped (--lenient)\n",
            r.skipped_lines
        ));
    }
    s.push_str("\nSUSPECTS (leaking first, then by growth rate)\n");
    s.push_str(&format!(
        "{:>7} {:<16} {:<9} {:>5} {:>10} {:>11} {:>9} {:>9} {:>9} {:>12}  {}\n",
        "PID",
        "COMMAND",
        "VERDICT",
        "CONF",
        "GROWTH/s",
        "GROWTH/min",
        "SINCE",
        "PRIVATE",
        "TO LIMIT",
        "MMAP p50/p99",
        "WHY"
    ));
    if r.suspects.is_empty() {
        s.push_str("  (none: no process was judged leaking or growing)\n");
    }
    for row in &r.suspects {
        let x = &row.suspect;
        let mmap = match (row.mmap_size_p50_bytes, row.mmap_size_p99_bytes) {
            (Some(a), Some(b)) => {
                format!("{}/{}", format::bytes(a as f64), format::bytes(b as f64))
            }
            _ => "-".into(),
        };
        s.push_str(&format!(
            "{:>7} {:<16} {:<9} {:>5.2} {:>10} {:>11} {:>9} {:>9} {:>9} {:>12}  {}{}\n",
            x.pid,
            x.comm,
            x.verdict.as_str(),
            x.confidence,
            format::bytes(x.growth_bytes_per_sec),
            format::bytes(x.growth_bytes_per_sec * 60.0),
            x.since_secs
                .map_or("-".into(), |t| format!("+{}", format::duration(t))),
            format::bytes(x.private_bytes as f64),
            row.time_to_limit_secs.map_or("-".into(), format::duration),
            mmap,
            x.reason,
            if x.exited { " (exited)" } else { "" }
        ));
        s.push_str(&render_sites(&row.sites, "grows at"));
        s.push_str(&render_sites(&row.mapped_sites, "maps at "));
    }
    if let Some(g) = &r.growth_sites {
        s.push_str(&render_sampling(g));
    }
    s.push_str(&render_risks(&r.at_risk));
    if r.ended.count > 0 {
        s.push('\n');
        s.push_str(&crate::model::ended::render_text(
            &r.ended,
            &r.ended.largest,
        ));
    }
    if !r.oom_kills.is_empty() {
        s.push_str("\nOOM KILLS\n");
        for o in &r.oom_kills {
            let v = &o.victim;
            s.push_str(&format!(
                "  +{:<8} killed {} ({}) anon {} file {} shmem {}, oom_score_adj {}; triggered by {} ({}){}\n",
                format::duration(o.t),
                v.pid,
                v.comm,
                format::bytes(v.anon_rss_bytes as f64),
                format::bytes(v.file_rss_bytes as f64),
                format::bytes(v.shmem_rss_bytes as f64),
                v.oom_score_adj,
                v.trigger_pid,
                v.trigger_comm,
                oom_context(o, &r.suspects)
            ));
        }
    }
    if !r.memory_cgroups.is_empty() {
        s.push_str(&render_cgroups(&r.memory_cgroups));
    }
    if let Some(node) = &r.node {
        s.push_str(&render_node(node));
    }
    if let Some(sum) = &r.summary {
        let losses: Vec<String> = sum
            .counters
            .iter()
            .filter(|(k, v)| **v > 0 && crate::kernel::health::is_lossy(k))
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        s.push_str(&format!(
            "\nKERNEL SIDE: {}\n",
            if losses.is_empty() {
                "no losses".into()
            } else {
                losses.join(", ")
            }
        ));
    }
    if !r.overhead_budget.is_empty() {
        s.push_str(
            "\nOVERHEAD BUDGET: hooks paused to keep the kernel programs within --max-overhead\n  (a syscall hook's call and byte counts are incomplete while paused; with rss paused, RSS was\n  read from /proc each interval: samples stay exact, peaks between samples may be missed)\n",
        );
        for h in &r.overhead_budget {
            s.push_str(&format!(
                "  {:<8} paused {} time(s), {} in all; programs at up to {:.2}% of the node's CPU when it was paused\n",
                h.hook.as_str(),
                h.pauses,
                format::duration(h.paused_secs),
                h.max_bpf_cpu_share * 100.0
            ));
        }
    }
    s
}

/// The NODE section: what no process owns, and what of it grew.
/// A suspect's growth sites, one per line under its row: share, bytes, the site and the
/// callers that tell its code path apart (brk growth says so).
fn render_sites(sites: &[crate::model::growth::Site], label: &str) -> String {
    let mut s = String::new();
    for (i, site) in sites.iter().enumerate() {
        let at = match (&site.file, site.line) {
            (Some(f), Some(l)) => format!(" ({}:{l})", short_file(f)),
            (Some(f), None) => format!(" ({})", short_file(f)),
            _ => String::new(),
        };
        let callers: String = site.callers.iter().map(|c| format!(" <- {c}")).collect();
        let brk = if site.kind == crate::model::growth::GrowthKind::Brk {
            " [brk]"
        } else {
            ""
        };
        s.push_str(&format!(
            "          {} {:>5.1}% {:>9}  {}{at}{callers}{brk}\n",
            if i == 0 { label } else { "        " },
            site.share * 100.0,
            format::bytes(site.bytes as f64),
            site.function,
        ));
    }
    s
}

/// The last two components of a source path: enough to find it, short enough to read.
fn short_file(path: &str) -> &str {
    let mut cut = path.len();
    for _ in 0..2 {
        match path[..cut].rfind('/') {
            Some(i) => cut = i,
            None => return path,
        }
    }
    &path[cut + 1..]
}

fn render_sampling(g: &super::GrowthSitesReport) -> String {
    let k = &g.kernel;
    format!(
        "\nGROWTH SITES: {} samples of first touches and {} of mmap/brk growth, one per {} on average; {} stacks truncated, {} samples dropped in the kernel, {} stacks not kept, {} processes not sampled (target table full)\n",
        g.samples,
        g.mapped_samples,
        format::bytes(g.mean_bytes as f64),
        k.truncated,
        k.dropped(),
        g.stacks_not_kept,
        g.processes_not_sampled
    )
}

fn render_node(n: &super::NodeReport) -> String {
    let mut s = String::from("\nNODE (memory no process owns)\n");
    for line in crate::commands::node_text::lines(&n.end, false) {
        s.push_str(&format!("  {line}\n"));
    }
    if n.findings.is_empty() {
        s.push_str("  no node series was judged growing or leaking\n");
    }
    for f in &n.findings {
        s.push_str(&format!(
            "  {:<8} from +{:<8} {}\n",
            f.verdict.as_str(),
            format::duration(f.first_t),
            f.sentence
        ));
    }
    s
}

/// The MEMORY CGROUPS section: one line per cgroup, busiest first (at most 20 lines).
fn render_cgroups(cgroups: &[crate::host::memcg::CgroupActivity]) -> String {
    let mut s = String::from("\nMEMORY CGROUPS (limit events, direct reclaim, PSI pressure)\n");
    for a in cgroups.iter().take(20) {
        let counts: Vec<String> = a
            .counts
            .iter()
            .filter(|(k, _)| k.as_str() != "reclaim")
            .map(|(k, n)| format!("{k}={n}"))
            .collect();
        let mut parts = Vec::new();
        if !counts.is_empty() {
            parts.push(counts.join(" "));
        }
        if let Some(runs) = a.counts.get("reclaim") {
            parts.push(format!(
                "reclaim {runs} runs, {} freed, {} stalled",
                format::bytes(a.reclaimed_bytes as f64),
                stall(a.reclaim_stall_ms)
            ));
        }
        if let Some(p) = a.peak_pressure_some_avg10 {
            parts.push(format!("pressure up to {p:.1}% (some avg10)"));
        }
        s.push_str(&format!(
            "  {:<40} +{}..+{}  {}\n",
            a.cgroup,
            format::duration(a.first_t),
            format::duration(a.last_t),
            parts.join("; ")
        ));
    }
    if cgroups.len() > 20 {
        s.push_str(&format!(
            "  ... and {} more (see --format json)\n",
            cgroups.len() - 20
        ));
    }
    s
}

/// A stall time: milliseconds below a second (reclaim stalls are usually short).
fn stall(ms: f64) -> String {
    if ms < 1000.0 {
        format!("{ms:.0}ms")
    } else {
        format::duration(ms / 1e3)
    }
}
