//! The table screen of the live view: header lines, the ranked processes with a sparkline of
//! their recent private memory, the selection, and a footer with the keys (or the filter
//! being typed). On a narrow terminal the least important columns go first.
use ratatui::{
    Frame,
    layout::{Constraint, Layout, Rect},
    text::{Line, Span},
    widgets::{Cell, Paragraph, Row as TRow, Table, TableState},
};

use crate::{
    commands::top::{
        Row,
        state::{SortKey, ViewState},
        theme::Theme,
    },
    util::format,
};

/// A column of the live table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Col {
    Pid,
    Command,
    Namespace,
    Pod,
    Rss,
    Private,
    Trend,
    GrowthSec,
    GrowthMin,
    Alloc,
    Growing,
    Verdict,
    ToLimit,
    Risk,
    GoHeap,
    Goroutines,
}

impl Col {
    /// Screen order.
    pub const ALL: [Col; 16] = [
        Col::Pid,
        Col::Command,
        Col::Namespace,
        Col::Pod,
        Col::Rss,
        Col::Private,
        Col::Trend,
        Col::GrowthSec,
        Col::GrowthMin,
        Col::Alloc,
        Col::Growing,
        Col::Verdict,
        Col::ToLimit,
        Col::Risk,
        Col::GoHeap,
        Col::Goroutines,
    ];

    pub fn title(self) -> &'static str {
        match self {
            Col::Pid => "PID",
            Col::Command => "COMMAND",
            Col::Namespace => "NAMESPACE",
            Col::Pod => "POD",
            Col::Rss => "RSS",
            Col::Private => "PRIVATE",
            Col::Trend => "TREND",
            Col::GrowthSec => "GROWTH/s",
            Col::GrowthMin => "GROWTH/min",
            Col::Alloc => "ALLOC/s",
            Col::Growing => "GROWING",
            Col::Verdict => "VERDICT",
            Col::ToLimit => "TO LIMIT",
            Col::Risk => "RISK",
            Col::GoHeap => "GO HEAP",
            Col::Goroutines => "GOROUTINES",
        }
    }

    pub fn width(self) -> u16 {
        match self {
            Col::Pid => 7,
            Col::Command => 16,
            Col::Namespace => 12,
            Col::Pod => 20,
            Col::Rss | Col::Private | Col::GrowthSec | Col::Alloc | Col::ToLimit => 9,
            Col::Trend => 10,
            Col::GrowthMin => 10,
            Col::Growing => 8,
            Col::Verdict => 15,
            Col::Risk => 5,
            Col::GoHeap => 9,
            Col::Goroutines => 10,
        }
    }

    /// Which goes first when the terminal is too narrow: the highest number; 0 never goes.
    fn drop_order(self) -> u8 {
        match self {
            Col::Pid | Col::Command | Col::Private | Col::Verdict => 0,
            Col::Risk => 1,
            Col::ToLimit => 2,
            Col::GrowthSec => 3,
            Col::Trend => 4,
            Col::Pod => 5,
            Col::Namespace => 6,
            // Shown only when a Go process is in view; then worth more than the rates.
            Col::GoHeap => 7,
            Col::Goroutines => 8,
            Col::Growing => 9,
            Col::Alloc => 10,
            Col::GrowthMin => 11,
            Col::Rss => 12,
        }
    }
}

/// The columns that fit in `width` cells (one space between columns), least important
/// dropped first; NAMESPACE and POD only when `pods`, GO HEAP and GOROUTINES only when `go`
/// (a Go process whose runtime is read is in view).
pub fn fit_columns(width: u16, pods: bool, go: bool) -> Vec<Col> {
    let mut cols: Vec<Col> = Col::ALL
        .into_iter()
        .filter(|c| pods || !matches!(c, Col::Namespace | Col::Pod))
        .filter(|c| go || !matches!(c, Col::GoHeap | Col::Goroutines))
        .collect();
    let total = |cols: &[Col]| -> u32 {
        cols.iter().map(|c| u32::from(c.width())).sum::<u32>() + cols.len() as u32 - 1
    };
    while total(&cols) > u32::from(width) {
        let Some((i, _)) = cols
            .iter()
            .enumerate()
            .filter(|(_, c)| c.drop_order() > 0)
            .max_by_key(|(_, c)| c.drop_order())
        else {
            break;
        };
        cols.remove(i);
    }
    cols
}

const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

/// The last `width` values as bars scaled between their own low and high (a flat series is
/// a flat line of the lowest bar).
pub fn sparkline(values: &[u64], width: usize) -> String {
    let tail = &values[values.len().saturating_sub(width)..];
    let (Some(&lo), Some(&hi)) = (tail.iter().min(), tail.iter().max()) else {
        return String::new();
    };
    tail.iter()
        .map(|&v| {
            if hi == lo {
                BARS[0]
            } else {
                BARS[((v - lo) as f64 / (hi - lo) as f64 * 7.0).round() as usize]
            }
        })
        .collect()
}

fn cell<'a>(row: &Row, col: Col, all: &[String; 11], theme: Theme) -> Cell<'a> {
    let dash = || "-".to_string();
    let names = &row.kubernetes.names;
    let text = match col {
        Col::Pid => all[0].clone(),
        Col::Command => all[1].clone(),
        Col::Namespace => names.namespace.clone().unwrap_or_else(dash),
        Col::Pod => names.pod.clone().unwrap_or_else(dash),
        Col::Rss => all[2].clone(),
        Col::Private => all[3].clone(),
        Col::Trend => sparkline(&row.spark, usize::from(Col::Trend.width())),
        Col::GrowthSec => all[4].clone(),
        Col::GrowthMin => all[5].clone(),
        Col::Alloc => all[6].clone(),
        Col::Growing => all[7].clone(),
        Col::Verdict => all[8].clone(),
        Col::ToLimit => all[9].clone(),
        Col::Risk => all[10].clone(),
        // Go's own figures: the heap the last GC left live, and the goroutines.
        Col::GoHeap => row.go_cells()[0].clone(),
        Col::Goroutines => row.go_cells()[1].clone(),
    };
    let style = match col {
        Col::Verdict => theme.verdict(row.verdict),
        Col::Risk => theme.risk(row.risk.as_ref().is_some_and(|r| r.at_risk)),
        _ => Default::default(),
    };
    Cell::from(text).style(style)
}

/// What the header says besides the rows (the sink's knowledge of the session).
#[derive(Clone, Debug, Default)]
pub struct Header {
    pub tracked: usize,
    pub ended: u64,
    pub short_lived: u64,
    pub uptime_secs: f64,
    pub overhead: String,
    pub kernel_losses: u64,
    pub last_oom: Option<String>,
    /// The NODE block: the node's memory no process owns (commands/node_text.rs), with the
    /// node series judged growing or leaking.
    pub node: Vec<(Option<crate::detector::Verdict>, String)>,
}

/// NODE lines the header shows at most (memory, kernel, slab caches, cgroups, 2 verdicts).
const NODE_LINES: usize = 6;

pub fn render(f: &mut Frame, area: Rect, state: &ViewState, header: &Header, theme: Theme) {
    let node_lines = header.node.len().min(NODE_LINES);
    let [top, main, foot] = Layout::vertical([
        Constraint::Length(3 + node_lines as u16),
        Constraint::Min(1),
        Constraint::Length(1),
    ])
    .areas(area);
    let at_risk = crate::commands::top::at_risk_count(state.rows());
    let visible = state.visible();
    let shown = if state.filter.is_empty() {
        String::new()
    } else {
        format!(", {} match \"{}\"", visible.len(), state.filter)
    };
    let health = if header.kernel_losses == 0 {
        " kernel: no losses".to_string()
    } else {
        format!(
            " kernel: {} losses/misses (see record's health lines)",
            header.kernel_losses
        )
    };
    let mut lines = vec![
        Line::from(vec![
            Span::raw(format!(
                " leaktracer — {} processes tracked{shown}, ",
                header.tracked
            )),
            Span::styled(
                format!("{at_risk} at risk of their limit"),
                theme.risk(at_risk > 0),
            ),
            Span::raw(format!(
                ", {} ended ({} short-lived), up {} — sort: {} — {}",
                header.ended,
                header.short_lived,
                format::duration(header.uptime_secs),
                state.sort.label(),
                header.overhead
            )),
        ]),
        Line::from(health),
        Line::from(header.last_oom.as_deref().map_or_else(
            || " no OOM kill seen".to_string(),
            |o| format!(" last OOM kill: {o}"),
        )),
    ];
    lines.extend(header.node.iter().take(node_lines).map(|(verdict, text)| {
        Line::from(vec![
            Span::styled(" NODE ", theme.header()),
            Span::styled(text.clone(), theme.verdict(*verdict)),
        ])
    }));
    f.render_widget(Paragraph::new(lines), top);
    let go = state.rows().iter().any(|r| r.go.is_some());
    let cols = fit_columns(main.width, state.show_pods(), go);
    let sort_col = match state.sort {
        SortKey::Growth => Col::GrowthSec,
        SortKey::Private => Col::Private,
        SortKey::Verdict => Col::Verdict,
        SortKey::TimeToLimit => Col::ToLimit,
    };
    let titles: Vec<String> = cols
        .iter()
        .map(|c| {
            if *c == sort_col {
                format!("{}▼", c.title())
            } else {
                c.title().to_string()
            }
        })
        .collect();
    let body: Vec<TRow> = visible
        .iter()
        .map(|r| {
            let all = r.cells();
            TRow::new(
                cols.iter()
                    .map(|c| cell(r, *c, &all, theme))
                    .collect::<Vec<_>>(),
            )
        })
        .collect();
    let widths: Vec<Constraint> = cols.iter().map(|c| Constraint::Length(c.width())).collect();
    let table = Table::new(body, widths)
        .header(TRow::new(titles).style(theme.header()))
        .row_highlight_style(theme.selected());
    let mut ts = TableState::default().with_selected(state.selected_index());
    f.render_stateful_widget(table, main, &mut ts);
    let footer = if state.editing_filter {
        format!(
            " filter: {}▏ (command, namespace, pod, container; Enter keeps, Esc drops)",
            state.filter
        )
    } else if visible.is_empty() && !state.filter.is_empty() {
        format!(
            " no process matches \"{}\" — Esc clears the filter",
            state.filter
        )
    } else {
        " ↑↓ select  Enter detail  / filter  s sort  p pods  ? help  q quit".to_string()
    };
    f.render_widget(Paragraph::new(footer), foot);
}

/// The help screen.
pub fn render_help(f: &mut Frame, area: Rect, theme: Theme) {
    let mut lines = vec![
        Line::styled(" leaktracer top — keys", theme.header()),
        Line::from(""),
    ];
    for (k, what) in crate::commands::top::keys::HELP {
        lines.push(Line::from(format!("  {k:<12} {what}")));
    }
    lines.push(Line::from(""));
    lines.push(Line::from(
        "  VERDICT: leaking / growing with confidence, steady, sawtooth, shrinking, insufficient (docs/verdicts.md)",
    ));
    lines.push(Line::from(
        "  RISK: highest recent peak as a share of the memory cgroup's limit; ! = at risk (--risk-margin)",
    ));
    lines.push(Line::from(
        "  TREND: private memory over the last minutes; NO_COLOR=1 for monochrome",
    ));
    lines.push(Line::from(""));
    lines.push(Line::from("  any key closes this help"));
    f.render_widget(Paragraph::new(lines), area);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wide_terminals_show_every_column() {
        assert_eq!(fit_columns(250, true, true), Col::ALL.to_vec());
        assert!(!fit_columns(200, false, false).contains(&Col::Pod));
    }

    #[test]
    fn narrow_terminals_drop_the_least_important_first() {
        let cols = fit_columns(80, false, true);
        let total: u16 = cols.iter().map(|c| c.width()).sum::<u16>() + cols.len() as u16 - 1;
        assert!(total <= 80, "{cols:?}");
        for gone in [Col::Rss, Col::GrowthMin, Col::Alloc] {
            assert!(!cols.contains(&gone), "{gone:?} goes first: {cols:?}");
        }
        for kept in [
            Col::Pid,
            Col::Command,
            Col::Private,
            Col::Verdict,
            Col::Risk,
        ] {
            assert!(cols.contains(&kept), "{kept:?} stays: {cols:?}");
        }
        // Very narrow: only the essentials, and never an empty table.
        assert_eq!(
            fit_columns(20, true, true),
            [Col::Pid, Col::Command, Col::Private, Col::Verdict]
        );
    }

    #[test]
    fn sparklines_scale_to_their_own_range() {
        assert_eq!(sparkline(&[1, 2, 3, 4, 5, 6, 7, 8], 8), "▁▂▃▄▅▆▇█");
        assert_eq!(sparkline(&[5, 5, 5], 10), "▁▁▁");
        assert_eq!(sparkline(&[9, 0, 0, 10], 2), "▁█", "the last values");
        assert_eq!(sparkline(&[], 10), "");
    }
}
