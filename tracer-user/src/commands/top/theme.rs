//! Colours of the live view: verdicts by severity, risk in red, and a monochrome mode for
//! `NO_COLOR` (https://no-color.org: set and not empty) that keeps bold and reverse video, so
//! the selection and the header still stand out.
use ratatui::style::{Color, Modifier, Style};

use crate::detector::Verdict;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Theme {
    pub color: bool,
}

impl Theme {
    /// Colour unless `NO_COLOR` is set to something.
    pub fn from_env() -> Self {
        Self {
            color: std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
        }
    }

    fn fg(self, c: Color) -> Style {
        if self.color {
            Style::default().fg(c)
        } else {
            Style::default()
        }
    }

    pub fn verdict(self, v: Option<Verdict>) -> Style {
        match v {
            Some(Verdict::Leaking) => self.fg(Color::Red).add_modifier(Modifier::BOLD),
            Some(Verdict::Growing) => self.fg(Color::Yellow),
            Some(Verdict::Sawtooth) => self.fg(Color::Cyan),
            Some(Verdict::Shrinking) => self.fg(Color::Blue),
            Some(Verdict::Steady) => self.fg(Color::Green),
            Some(Verdict::Insufficient) | None => {
                self.fg(Color::DarkGray).add_modifier(Modifier::DIM)
            }
        }
    }

    pub fn risk(self, at_risk: bool) -> Style {
        if at_risk {
            self.fg(Color::Red).add_modifier(Modifier::BOLD)
        } else {
            Style::default()
        }
    }

    pub fn header(self) -> Style {
        Style::default().add_modifier(Modifier::REVERSED | Modifier::BOLD)
    }

    pub fn selected(self) -> Style {
        Style::default().add_modifier(Modifier::REVERSED)
    }

    pub fn chart(self) -> Style {
        self.fg(Color::Cyan)
    }

    pub fn trough(self) -> Style {
        self.fg(Color::Yellow).add_modifier(Modifier::BOLD)
    }
}
