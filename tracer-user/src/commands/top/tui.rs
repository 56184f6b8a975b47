//! The live full-screen view of `top` (ratatui on crossterm). Restores the terminal on
//! every exit path, including errors.
use std::time::Duration;

use crossterm::{
    event::{self, Event, KeyCode, KeyModifiers},
    execute,
    terminal::{EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode},
};
use ratatui::{
    Terminal,
    backend::CrosstermBackend,
    layout::{Constraint, Layout},
    style::{Modifier, Style},
    text::Line,
    widgets::{Block, Borders, Paragraph, Row as TRow, Table},
};

use crate::{commands::top::Row, model::table::ProcessTable, util::format};

pub struct Tui {
    terminal: Terminal<CrosstermBackend<std::io::Stdout>>,
    active: bool,
}

impl Tui {
    pub fn enter() -> anyhow::Result<Self> {
        enable_raw_mode()?;
        execute!(std::io::stdout(), EnterAlternateScreen)?;
        let terminal = Terminal::new(CrosstermBackend::new(std::io::stdout()))?;
        Ok(Self {
            terminal,
            active: true,
        })
    }

    pub fn draw(
        &mut self,
        rows: &[Row],
        table: &ProcessTable,
        counters: &crate::kernel::health::Health,
        now: f64,
        last_oom: Option<&str>,
        overhead: &crate::kernel::budget::OverheadStatus,
    ) -> anyhow::Result<()> {
        let header = format!(
            " leaktracer — {} processes tracked, {} at risk of their limit, {} ended ({} short-lived), up {} — {} — q to quit",
            table.live.len(),
            crate::commands::top::at_risk_count(rows),
            table.ended.count,
            table.ended.brief,
            format::duration(now),
            crate::commands::top::overhead_line(overhead)
        );
        let lost = counters.losses();
        let health = if lost == 0 {
            " kernel: no losses".to_string()
        } else {
            format!(" kernel: {lost} losses/misses (see record's health lines)")
        };
        let body: Vec<TRow> = rows.iter().map(|r| TRow::new(r.cells())).collect();
        let widths = [
            Constraint::Length(8),
            Constraint::Length(16),
            Constraint::Length(9),
            Constraint::Length(9),
            Constraint::Length(10),
            Constraint::Length(11),
            Constraint::Length(10),
            Constraint::Length(9),
            Constraint::Length(13),
            Constraint::Length(9),
            Constraint::Length(6),
        ];
        self.terminal.draw(|f| {
            let [top, main] =
                Layout::vertical([Constraint::Length(3), Constraint::Min(1)]).areas(f.area());
            f.render_widget(
                Paragraph::new(vec![
                    Line::from(header.clone()),
                    Line::from(health.clone()),
                    Line::from(last_oom.map_or_else(
                        || " no OOM kill seen".to_string(),
                        |o| format!(" last OOM kill: {o}"),
                    )),
                ]),
                top,
            );
            let t = Table::new(body, widths)
                .header(
                    TRow::new(crate::commands::top::COLUMNS)
                        .style(Style::default().add_modifier(Modifier::REVERSED)),
                )
                .block(Block::default().borders(Borders::NONE));
            f.render_widget(t, main);
        })?;
        Ok(())
    }

    /// Non-blocking: true once the user pressed q, Esc or Ctrl-C.
    pub fn quit_requested(&mut self) -> bool {
        while let Ok(true) = event::poll(Duration::ZERO) {
            if let Ok(Event::Key(k)) = event::read() {
                let ctrl_c =
                    k.code == KeyCode::Char('c') && k.modifiers.contains(KeyModifiers::CONTROL);
                if matches!(k.code, KeyCode::Char('q') | KeyCode::Esc) || ctrl_c {
                    return true;
                }
            }
        }
        false
    }

    pub fn leave(mut self) -> anyhow::Result<()> {
        self.restore()
    }

    fn restore(&mut self) -> anyhow::Result<()> {
        if self.active {
            self.active = false;
            disable_raw_mode()?;
            execute!(std::io::stdout(), LeaveAlternateScreen)?;
            self.terminal.show_cursor()?;
        }
        Ok(())
    }
}

impl Drop for Tui {
    fn drop(&mut self) {
        let _ = self.restore();
    }
}
