//! Keys of the live view to [`Action`]s. While the filter is being typed every printable key
//! is text (so `q` and `s` can be searched for); Ctrl-C always quits.
use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use crate::commands::top::state::Action;

/// The action of `key`, None for keys that do nothing (and key releases).
pub fn action(key: KeyEvent, editing_filter: bool) -> Option<Action> {
    if key.kind == KeyEventKind::Release {
        return None;
    }
    if key.modifiers.contains(KeyModifiers::CONTROL) {
        return matches!(key.code, KeyCode::Char('c')).then_some(Action::Quit);
    }
    if editing_filter {
        return match key.code {
            KeyCode::Char(c) => Some(Action::FilterChar(c)),
            KeyCode::Backspace => Some(Action::FilterBackspace),
            KeyCode::Enter => Some(Action::Open),
            KeyCode::Esc => Some(Action::Back),
            _ => None,
        };
    }
    Some(match key.code {
        KeyCode::Up | KeyCode::Char('k') => Action::Up,
        KeyCode::Down | KeyCode::Char('j') => Action::Down,
        KeyCode::PageUp => Action::PageUp,
        KeyCode::PageDown => Action::PageDown,
        KeyCode::Home | KeyCode::Char('g') => Action::First,
        KeyCode::End | KeyCode::Char('G') => Action::Last,
        KeyCode::Enter => Action::Open,
        KeyCode::Esc | KeyCode::Backspace => Action::Back,
        KeyCode::Char('/') => Action::StartFilter,
        KeyCode::Char('s') => Action::CycleSort,
        KeyCode::Char('p') => Action::TogglePods,
        KeyCode::Char('?') | KeyCode::F(1) => Action::Help,
        KeyCode::Char('q') => Action::Quit,
        _ => return None,
    })
}

/// The help screen's lines.
pub const HELP: &[(&str, &str)] = &[
    (
        "↑ ↓  k j",
        "select a process (PgUp PgDn, Home End: by page, to the ends)",
    ),
    (
        "Enter",
        "the selected process's detail: chart, verdict and why, limit, risk, identity",
    ),
    ("Esc", "back to the table (on the table: clear the filter)"),
    (
        "/",
        "filter by command, namespace, pod or container (Enter keeps, Esc drops)",
    ),
    (
        "s",
        "sort: growth (the ranking), private memory, verdict, time to limit",
    ),
    ("p", "show or hide the NAMESPACE and POD columns"),
    ("?", "this help (any key closes it)"),
    ("q  Ctrl-C", "quit"),
];

#[cfg(test)]
mod tests {
    use super::*;

    fn key(code: KeyCode) -> KeyEvent {
        KeyEvent::new(code, KeyModifiers::NONE)
    }

    #[test]
    fn keys_map_to_actions() {
        assert_eq!(action(key(KeyCode::Up), false), Some(Action::Up));
        assert_eq!(action(key(KeyCode::Char('j')), false), Some(Action::Down));
        assert_eq!(action(key(KeyCode::Enter), false), Some(Action::Open));
        assert_eq!(action(key(KeyCode::Esc), false), Some(Action::Back));
        assert_eq!(
            action(key(KeyCode::Char('/')), false),
            Some(Action::StartFilter)
        );
        assert_eq!(
            action(key(KeyCode::Char('s')), false),
            Some(Action::CycleSort)
        );
        assert_eq!(
            action(key(KeyCode::Char('p')), false),
            Some(Action::TogglePods)
        );
        assert_eq!(action(key(KeyCode::Char('?')), false), Some(Action::Help));
        assert_eq!(action(key(KeyCode::Char('q')), false), Some(Action::Quit));
        assert_eq!(action(key(KeyCode::Char('z')), false), None);
    }

    #[test]
    fn while_filtering_letters_are_text_and_ctrl_c_still_quits() {
        assert_eq!(
            action(key(KeyCode::Char('q')), true),
            Some(Action::FilterChar('q'))
        );
        assert_eq!(
            action(key(KeyCode::Backspace), true),
            Some(Action::FilterBackspace)
        );
        let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
        assert_eq!(action(ctrl_c, true), Some(Action::Quit));
        assert_eq!(action(ctrl_c, false), Some(Action::Quit));
    }
}
