//! The live full-screen view of `top` (ratatui on crossterm): the terminal's set-up and
//! restoration, keys read into the view's state machine (state.rs), and the screens drawn from
//! it. The terminal is restored on every exit path: `q`, Ctrl-C (a key in raw mode), SIGTERM
//! and SIGINT (the session ends and the sink leaves), errors (Drop) and panics (a hook that
//! restores before the panic message is printed).
use std::time::Duration;

use crossterm::{
    cursor::Show,
    event::{self, Event},
    execute,
    terminal::{EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode},
};
use ratatui::{Frame, Terminal, backend::CrosstermBackend};

use crate::commands::top::{
    Row,
    detail_view::{self, Detail},
    keys,
    state::{Screen, ViewState},
    table_view::{self, Header},
    theme::Theme,
};

/// Draw the screen `state` is on.
pub fn render(
    f: &mut Frame,
    state: &ViewState,
    header: &Header,
    detail: Option<&Detail>,
    theme: Theme,
) {
    let area = f.area();
    match state.screen {
        Screen::Table => table_view::render(f, area, state, header, theme),
        Screen::Help => table_view::render_help(f, area, theme),
        Screen::Detail(pid) => match state.row(pid) {
            Some(row) => detail_view::render(f, area, row, detail, theme),
            // It left the table (ended long enough ago): back to the table.
            None => table_view::render(f, area, state, header, theme),
        },
    }
}

/// Put the terminal back as it was (raw mode off, main screen, cursor shown).
fn restore_terminal() {
    let _ = disable_raw_mode();
    let _ = execute!(std::io::stdout(), LeaveAlternateScreen, Show);
}

pub struct Tui {
    terminal: Terminal<CrosstermBackend<std::io::Stdout>>,
    active: bool,
    pub state: ViewState,
    theme: Theme,
    header: Header,
    detail: Option<Detail>,
}

impl Tui {
    pub fn enter() -> anyhow::Result<Self> {
        // A panic must not leave the terminal raw and on the alternate screen: restore it
        // first, then let the default hook print the message where it can be read.
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore_terminal();
            previous(info);
        }));
        enable_raw_mode()?;
        execute!(std::io::stdout(), EnterAlternateScreen)?;
        let terminal = Terminal::new(CrosstermBackend::new(std::io::stdout()))?;
        Ok(Self {
            terminal,
            active: true,
            state: ViewState::default(),
            theme: Theme::from_env(),
            header: Header::default(),
            detail: None,
        })
    }

    /// A round's rows, header and the selected process's detail; redraws.
    pub fn update(
        &mut self,
        rows: Vec<Row>,
        header: Header,
        detail: Option<Detail>,
    ) -> anyhow::Result<()> {
        self.state.set_rows(rows);
        self.header = header;
        self.detail = detail;
        self.draw()
    }

    fn draw(&mut self) -> anyhow::Result<()> {
        let (state, header, detail, theme) =
            (&self.state, &self.header, self.detail.as_ref(), self.theme);
        self.terminal
            .draw(|f| render(f, state, header, detail, theme))?;
        Ok(())
    }

    /// Non-blocking: applies the keys pressed since the last call (redrawing at once, and on
    /// a resize); true once the user asked to quit.
    pub fn handle_input(&mut self) -> anyhow::Result<bool> {
        let mut redraw = false;
        while event::poll(Duration::ZERO)? {
            match event::read()? {
                Event::Key(k) => {
                    if let Some(a) = keys::action(k, self.state.editing_filter) {
                        self.state.apply(a);
                        redraw = true;
                    }
                }
                Event::Resize(..) => redraw = true,
                _ => {}
            }
            if self.state.quit {
                return Ok(true);
            }
        }
        if redraw {
            self.draw()?;
        }
        Ok(false)
    }

    pub fn leave(mut self) -> anyhow::Result<()> {
        self.restore();
        Ok(())
    }

    fn restore(&mut self) {
        if self.active {
            self.active = false;
            restore_terminal();
        }
    }
}

impl Drop for Tui {
    fn drop(&mut self) {
        self.restore();
    }
}

#[cfg(test)]
mod tests {
    use ratatui::{Terminal, backend::TestBackend};

    use super::*;
    use crate::{
        commands::top::{state::Action, tests::row as test_row},
        detector::Verdict,
    };

    fn screen(state: &ViewState, detail: Option<&Detail>, w: u16, h: u16) -> String {
        let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
        let header = Header {
            tracked: 4,
            uptime_secs: 65.0,
            overhead: "BPF 0.10% of CPU".into(),
            ..Header::default()
        };
        t.draw(|f| render(f, state, &header, detail, Theme { color: false }))
            .unwrap();
        let buf = t.backend().buffer().clone();
        let mut out = String::new();
        for y in 0..buf.area.height {
            for x in 0..buf.area.width {
                out.push_str(buf[(x, y)].symbol());
            }
            out.push('\n');
        }
        out
    }

    fn state() -> ViewState {
        let mut a = test_row(101, "leaker", Some(Verdict::Leaking), 300 << 20);
        a.spark = vec![1, 2, 3, 4, 5, 6, 7, 8, 9, 10];
        a.risk = Some(crate::detector::LimitRisk {
            at_risk: true,
            kind: Some(crate::detector::RiskKind::NearLimit),
            peak_ratio: 0.94,
            peak_bytes: 240 << 20,
            limit_bytes: 256 << 20,
            recent_peaks_bytes: vec![240 << 20],
            reason: "Peaks reach 94% of the 256 MiB limit (peak: 240 MiB)".into(),
        });
        let mut b = test_row(202, "webhook", Some(Verdict::Steady), 20 << 20);
        b.kubernetes.names.namespace = Some("shop".into());
        b.kubernetes.names.pod = Some("hooks-1".into());
        let mut s = ViewState::default();
        s.set_rows(vec![a, b]);
        s
    }

    #[test]
    fn the_table_shows_rows_risk_sparkline_pods_and_keys() {
        let s = state();
        let text = screen(&s, None, 150, 12);
        assert!(text.contains("1 at risk of their limit"), "{text}");
        assert!(text.contains("sort: growth"), "{text}");
        assert!(text.contains("NAMESPACE"), "pods shown by default: {text}");
        assert!(text.contains("hooks-1"), "{text}");
        assert!(text.contains("▁▂▃▃▄▅▆▆▇█"), "sparkline: {text}");
        assert!(text.contains("!94%"), "{text}");
        assert!(text.contains("leaking 90%"), "{text}");
        assert!(text.contains("? help"), "{text}");
    }

    #[test]
    fn a_narrow_terminal_keeps_the_essential_columns() {
        let text = screen(&state(), None, 60, 10);
        assert!(text.contains("PID"), "{text}");
        assert!(text.contains("VERDICT"), "{text}");
        assert!(!text.contains("GROWTH/min"), "{text}");
        assert!(!text.contains("RSS "), "{text}");
    }

    #[test]
    fn filter_sort_detail_and_help_screens() {
        let mut s = state();
        s.apply(Action::StartFilter);
        for c in "hook".chars() {
            s.apply(Action::FilterChar(c));
        }
        let text = screen(&s, None, 150, 12);
        assert!(text.contains("filter: hook"), "{text}");
        assert!(text.contains("1 match \"hook\""), "{text}");
        assert!(!text.contains("leaker"), "{text}");
        s.apply(Action::Back);
        s.apply(Action::CycleSort);
        let text = screen(&s, None, 150, 12);
        assert!(text.contains("sort: private"), "{text}");
        assert!(text.contains("PRIVATE▼"), "{text}");
        // The filter had moved the selection to the webhook; the leaker is first by size.
        assert_eq!(s.selected, Some(202));
        s.apply(Action::First);
        s.apply(Action::Open);
        let detail = Detail {
            pid: 101,
            reason: Some("memory rising 1 MiB/s".into()),
            points: (0..30)
                .map(|i| (f64::from(i), f64::from(i) * 1e6))
                .collect(),
            mmap_size_log2: vec![3, 0, 5],
            events: vec!["+1m00s oom_kill +1".into()],
            now: 30.0,
            ..Detail::default()
        };
        let text = screen(&s, Some(&detail), 150, 40);
        assert!(text.contains("101 leaker"), "{text}");
        assert!(text.contains("why: memory rising 1 MiB/s"), "{text}");
        assert!(text.contains("AT RISK — Peaks reach 94%"), "{text}");
        assert!(text.contains("oom_kill +1"), "{text}");
        assert!(text.contains("mmap sizes"), "{text}");
        assert!(text.contains("private memory, last"), "{text}");
        s.apply(Action::Back);
        s.apply(Action::Help);
        let text = screen(&s, None, 150, 20);
        assert!(text.contains("leaktracer top — keys"), "{text}");
    }
}
