//! The detail screen of one process: its private memory over the window (with the troughs
//! the verdict was judged on, when it was), the verdict with its confidence and why, since
//! when, time to limit and limit risk, its identity, its mmap sizes and the recent memory
//! cgroup events and OOM kills of its cgroup.
use ratatui::{
    Frame,
    layout::{Constraint, Layout, Rect},
    symbols::Marker,
    text::{Line, Span},
    widgets::{Axis, Block, Borders, Chart, Dataset, GraphType, Paragraph, Wrap},
};

use crate::{
    commands::top::{Row, theme::Theme},
    model::table::Process,
    util::format,
};

/// What the detail shows beyond its row, taken from the process table at a round.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Detail {
    pub pid: u32,
    pub cmdline: Option<String>,
    /// The verdict's one sentence, and where its growth began (session seconds).
    pub reason: Option<String>,
    pub since_secs: Option<f64>,
    /// (session seconds, private bytes) over the window.
    pub points: Vec<(f64, f64)>,
    /// The troughs the verdict was judged on (empty when it judged the samples).
    pub troughs: Vec<(f64, f64)>,
    pub mmap_size_log2: Vec<u32>,
    /// Recent memory-cgroup events and OOM kills of its cgroup, newest last.
    pub events: Vec<String>,
    pub now: f64,
}

impl Detail {
    /// `p`'s detail at `now`; `events` are the recent lines about its cgroup.
    pub fn of(p: &Process, now: f64, events: Vec<String>) -> Self {
        let cfg = crate::detector::DetectorConfig::default();
        let pts = crate::model::verdicts::fine_points(p, now);
        let a = p.assessment.as_ref();
        let troughs = if a.is_some_and(|a| a.troughs >= cfg.min_troughs) {
            crate::detector::troughs_of(&pts, &cfg)
                .iter()
                .map(|t| (t.t, t.bytes))
                .collect()
        } else {
            Vec::new()
        };
        Self {
            pid: p.pid,
            cmdline: p.cmdline.as_deref().map(str::to_owned),
            reason: a.map(|a| a.reason.clone()),
            since_secs: a.and_then(|a| a.since),
            points: pts.iter().map(|x| (x.t, x.bytes)).collect(),
            troughs,
            mmap_size_log2: p.counters.mmap_size_hist.to_vec(),
            events,
            now,
        }
    }
}

fn mib(b: f64) -> f64 {
    b / (1024.0 * 1024.0)
}

fn chart<'a>(
    d: &'a Detail,
    data: &'a [(f64, f64)],
    troughs: &'a [(f64, f64)],
    theme: Theme,
) -> Chart<'a> {
    let t0 = d.points.first().map_or(0.0, |p| p.0);
    let t1 = d.points.last().map_or(1.0, |p| p.0).max(t0 + 1.0);
    let hi = data.iter().map(|p| p.1).fold(1.0, f64::max) * 1.1;
    let mut sets = vec![
        Dataset::default()
            .name("private MiB")
            .marker(Marker::Braille)
            .graph_type(GraphType::Line)
            .style(theme.chart())
            .data(data),
    ];
    if !troughs.is_empty() {
        sets.push(
            Dataset::default()
                .name("troughs judged")
                .marker(Marker::Dot)
                .graph_type(GraphType::Scatter)
                .style(theme.trough())
                .data(troughs),
        );
    }
    Chart::new(sets)
        .block(Block::default().borders(Borders::ALL).title(format!(
            " private memory, last {} ",
            format::duration(t1 - t0)
        )))
        .x_axis(Axis::default().bounds([t0, t1]).labels([
            Span::raw(format!("-{}", format::duration(d.now - t0))),
            Span::raw("now"),
        ]))
        .y_axis(
            Axis::default()
                .bounds([0.0, hi])
                .labels([Span::raw("0"), Span::raw(format!("{hi:.0} MiB"))]),
        )
}

/// The mmap size classes that were used: "  4 KiB  ████ 120".
fn mmap_lines(hist: &[u32]) -> Vec<Line<'static>> {
    let max = hist.iter().copied().max().unwrap_or(0);
    if max == 0 {
        return vec![Line::from("  no mmap calls")];
    }
    hist.iter()
        .enumerate()
        .filter(|(_, n)| **n > 0)
        .map(|(i, &n)| {
            let size = (1u64 << (i as u32 + crate::model::counters::MMAP_SIZE_MIN_SHIFT)) as f64;
            let bar = "█".repeat(((f64::from(n) / f64::from(max)) * 16.0).ceil() as usize);
            Line::from(format!("  ≥{:>8} {bar:<16} {n}", format::bytes(size)))
        })
        .collect()
}

pub fn render(f: &mut Frame, area: Rect, row: &Row, detail: Option<&Detail>, theme: Theme) {
    let [title, chart_area, rest, foot] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Percentage(45),
        Constraint::Min(4),
        Constraint::Length(1),
    ])
    .areas(area);
    let verdict = row.verdict.map_or("not judged yet".to_string(), |v| {
        format!("{} (confidence {:.0}%)", v.as_str(), row.confidence * 100.0)
    });
    f.render_widget(
        Paragraph::new(Line::from(vec![
            Span::styled(format!(" {} {} ", row.pid, row.comm), theme.header()),
            Span::raw(" "),
            Span::styled(verdict.clone(), theme.verdict(row.verdict)),
        ])),
        title,
    );
    let d = detail.filter(|d| d.pid == row.pid);
    match d {
        Some(d) => {
            let data: Vec<(f64, f64)> = d.points.iter().map(|p| (p.0, mib(p.1))).collect();
            let troughs: Vec<(f64, f64)> = d.troughs.iter().map(|p| (p.0, mib(p.1))).collect();
            f.render_widget(chart(d, &data, &troughs, theme), chart_area);
        }
        None => f.render_widget(
            Paragraph::new(" (the chart comes with the next refresh)")
                .block(Block::default().borders(Borders::ALL)),
            chart_area,
        ),
    }
    let [left, right] =
        Layout::horizontal([Constraint::Percentage(60), Constraint::Percentage(40)]).areas(rest);
    let dash = || "-".to_string();
    let names = &row.kubernetes.names;
    let mut facts = vec![
        Line::from(vec![
            Span::raw(" verdict: "),
            Span::styled(verdict, theme.verdict(row.verdict)),
        ]),
        Line::from(format!(
            " why: {}",
            d.and_then(|d| d.reason.clone()).unwrap_or_else(dash)
        )),
        Line::from(format!(
            " since: {}   growing for {}   growth {}/s",
            d.and_then(|d| d.since_secs)
                .map_or_else(dash, |t| format!("+{}", format::duration(t))),
            format::duration(row.growing_for_secs),
            format::bytes(row.growth_bytes_per_sec)
        )),
        Line::from(format!(
            " private {}   RSS {}   limit {}   time to limit {}",
            format::bytes(row.private_bytes as f64),
            format::bytes(row.rss_bytes as f64),
            row.limit_bytes
                .map_or_else(dash, |l| format::bytes(l as f64)),
            row.time_to_limit_secs.map_or_else(dash, format::duration)
        )),
        match &row.risk {
            Some(r) => Line::from(vec![
                Span::raw(" risk: "),
                Span::styled(
                    if r.at_risk { "AT RISK — " } else { "" },
                    theme.risk(r.at_risk),
                ),
                Span::raw(r.reason.clone()),
            ]),
            None => Line::from(" risk: - (no memory cgroup limit)"),
        },
        Line::from(""),
        Line::from(format!(
            " pod {}/{}   container {}",
            names.namespace.clone().unwrap_or_else(dash),
            names.pod.clone().unwrap_or_else(dash),
            names.container.clone().unwrap_or_else(dash)
        )),
        Line::from(format!(
            " unit {}   cgroup {}",
            row.systemd_unit.clone().unwrap_or_else(dash),
            row.cgroup.clone().unwrap_or_else(dash)
        )),
        Line::from(format!(
            " cmdline {}",
            d.and_then(|d| d.cmdline.clone()).unwrap_or_else(dash)
        )),
    ];
    if row.observed_secs > 0.0 {
        facts.push(Line::from(format!(
            " observed for {}",
            format::duration(row.observed_secs)
        )));
    }
    if let Some(g) = &row.go {
        let bytes = |b: Option<u64>| b.map_or_else(dash, |b| format::bytes(b as f64));
        facts.push(Line::from(format!(
            " {}: live heap after GC {}, goal {}, {} GCs, limit {}, {} goroutines",
            g.go_version,
            bytes(g.live_heap_bytes),
            bytes(g.heap_goal_bytes),
            g.gc_cycles,
            bytes(g.memory_limit_bytes),
            g.goroutines
        )));
    }
    f.render_widget(
        Paragraph::new(facts).wrap(Wrap { trim: false }).block(
            Block::default()
                .borders(Borders::TOP)
                .title(" judgement and identity "),
        ),
        left,
    );
    let mut side = vec![Line::styled(" mmap sizes", theme.header())];
    side.extend(mmap_lines(d.map_or(&[][..], |d| &d.mmap_size_log2)));
    side.push(Line::from(""));
    side.push(Line::styled(
        " memory cgroup events, OOM kills",
        theme.header(),
    ));
    match d.map(|d| &d.events) {
        Some(ev) if !ev.is_empty() => {
            side.extend(ev.iter().rev().take(8).map(|e| Line::from(format!(" {e}"))));
        }
        _ => side.push(Line::from(" none seen in its cgroup")),
    }
    f.render_widget(
        Paragraph::new(side)
            .wrap(Wrap { trim: false })
            .block(Block::default().borders(Borders::TOP | Borders::LEFT)),
        right,
    );
    f.render_widget(
        Paragraph::new(" Esc back  ↑↓ previous/next process  ? help  q quit"),
        foot,
    );
}
