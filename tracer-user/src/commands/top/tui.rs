//! The live full-screen view of `top` (ratatui on crossterm): the terminal's set-up and
//! restoration, keys read into the view's state machine (state.rs), and the screens drawn from
//! it. A thread reads the keys and redraws at once from what the last round showed, so keys
//! do not wait for the next sampling round. The terminal is restored on every exit path: `q`, Ctrl-C (a key in raw mode), SIGTERM
//! and SIGINT (the session ends and the sink leaves), errors (Drop) and panics (a hook that
//! restores before the panic message is printed).
use std::{
    sync::{
        Arc, Mutex, MutexGuard, PoisonError,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use anyhow::Context as _;

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

/// What the key reader and the rounds share: the terminal and what it shows.
struct View {
    terminal: Terminal<CrosstermBackend<std::io::Stdout>>,
    state: ViewState,
    theme: Theme,
    header: Header,
    detail: Option<Detail>,
}

impl View {
    fn draw(&mut self) -> std::io::Result<()> {
        let (state, header, detail, theme) =
            (&self.state, &self.header, self.detail.as_ref(), self.theme);
        self.terminal
            .draw(|f| render(f, state, header, detail, theme))?;
        Ok(())
    }

    /// One terminal event: a key into the state machine, a resize; redrawn at once.
    fn on_event(&mut self, ev: Event) -> std::io::Result<()> {
        let redraw = match ev {
            Event::Key(k) => keys::action(k, self.state.editing_filter)
                .map(|a| self.state.apply(a))
                .is_some(),
            Event::Resize(..) => true,
            _ => false,
        };
        if redraw && !self.state.quit {
            self.draw()?;
        }
        Ok(())
    }
}

/// The view survives a panic elsewhere (the panic hook has restored the terminal already).
fn lock(view: &Mutex<View>) -> MutexGuard<'_, View> {
    view.lock().unwrap_or_else(PoisonError::into_inner)
}

/// How often the key reader checks that the view is still up.
const KEY_POLL: Duration = Duration::from_millis(100);

pub struct Tui {
    view: Arc<Mutex<View>>,
    stop: Arc<AtomicBool>,
    /// Reads keys and redraws at once, so keys do not wait for the next sampling round.
    reader: Option<std::thread::JoinHandle<()>>,
    active: bool,
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
        enable_raw_mode().context("switching the terminal to raw mode")?;
        execute!(std::io::stdout(), EnterAlternateScreen)
            .context("entering the alternate screen")?;
        let terminal = Terminal::new(CrosstermBackend::new(std::io::stdout()))?;
        let view = Arc::new(Mutex::new(View {
            terminal,
            state: ViewState::default(),
            theme: Theme::from_env(),
            header: Header::default(),
            detail: None,
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let reader = {
            let (view, stop) = (view.clone(), stop.clone());
            std::thread::Builder::new()
                .name("top-keys".into())
                .spawn(move || read_keys(&view, &stop))
                .context("starting the key reader")?
        };
        Ok(Self {
            view,
            stop,
            reader: Some(reader),
            active: true,
        })
    }

    /// A round's rows, header and the selected process's detail; redraws.
    pub fn update(
        &mut self,
        rows: Vec<Row>,
        header: Header,
        detail: Option<Detail>,
    ) -> anyhow::Result<()> {
        let mut v = lock(&self.view);
        v.state.set_rows(rows);
        v.header = header;
        v.detail = detail;
        if !v.state.quit {
            v.draw()?;
        }
        Ok(())
    }

    /// The selected process (its detail is prepared every round).
    pub fn selected(&self) -> Option<u32> {
        lock(&self.view).state.selected
    }

    /// True once the user asked to quit.
    pub fn quit_requested(&self) -> bool {
        lock(&self.view).state.quit
    }

    pub fn leave(mut self) -> anyhow::Result<()> {
        self.restore();
        Ok(())
    }

    fn restore(&mut self) {
        if self.active {
            self.active = false;
            self.stop.store(true, Ordering::Relaxed);
            if let Some(r) = self.reader.take() {
                let _ = r.join();
            }
            restore_terminal();
        }
    }
}

/// The key reader: terminal events into the view until it is closed or the user quits. A
/// terminal that cannot be read any more quits too (nothing could be typed).
fn read_keys(view: &Mutex<View>, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        match event::poll(KEY_POLL) {
            Ok(false) => continue,
            Ok(true) => {}
            Err(_) => {
                lock(view).state.quit = true;
                return;
            }
        }
        let Ok(ev) = event::read() else {
            lock(view).state.quit = true;
            return;
        };
        let mut v = lock(view);
        // A failed draw is retried by the next event or round.
        let _ = v.on_event(ev);
        if v.state.quit {
            return;
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
