//! The live view's state as a pure state machine: the latest rows, the selection (by pid,
//! so it follows its process as the ranking moves), the filter, the sort, the NAMESPACE/POD
//! columns and which screen is up. Keys become [`Action`]s (keys.rs); nothing here draws or
//! touches the terminal, so every transition is unit-tested.
use crate::{commands::top::Row, detector::Verdict};

/// What the table is ordered by; `s` cycles through them in this order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SortKey {
    /// The one ranking: leaking, then growing, then by growth rate.
    Growth,
    /// Largest private memory first.
    Private,
    /// By verdict severity (leaking, growing, then the rest), the ranking within each.
    Verdict,
    /// Soonest at its memory limit first; processes with no time to limit last.
    TimeToLimit,
}

impl SortKey {
    pub fn next(self) -> Self {
        match self {
            Self::Growth => Self::Private,
            Self::Private => Self::Verdict,
            Self::Verdict => Self::TimeToLimit,
            Self::TimeToLimit => Self::Growth,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::Growth => "growth",
            Self::Private => "private",
            Self::Verdict => "verdict",
            Self::TimeToLimit => "time to limit",
        }
    }
}

/// Which screen is up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Screen {
    Table,
    /// The detail of this pid.
    Detail(u32),
    Help,
}

/// What a key asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Up,
    Down,
    PageUp,
    PageDown,
    First,
    Last,
    /// Enter: the selected process's detail (or end the filter's editing).
    Open,
    /// Esc: back to the table (or cancel the filter's editing).
    Back,
    StartFilter,
    FilterChar(char),
    FilterBackspace,
    CycleSort,
    TogglePods,
    Help,
    Quit,
}

/// Rows a page key moves by.
const PAGE: usize = 10;

#[derive(Clone, Debug)]
pub struct ViewState {
    /// The latest rows, in the one ranking.
    rows: Vec<Row>,
    pub selected: Option<u32>,
    pub filter: String,
    /// `/` was pressed: keys type into the filter until Enter or Esc.
    pub editing_filter: bool,
    pub sort: SortKey,
    /// `p` pressed: shown or hidden by the user; None follows the default (shown when any
    /// tracked process is in a pod).
    pods_override: Option<bool>,
    pub screen: Screen,
    pub quit: bool,
}

impl Default for ViewState {
    fn default() -> Self {
        Self {
            rows: Vec::new(),
            selected: None,
            filter: String::new(),
            editing_filter: false,
            sort: SortKey::Growth,
            pods_override: None,
            screen: Screen::Table,
            quit: false,
        }
    }
}

/// Verdict severity for the verdict sort and colours: lower is more urgent.
pub fn severity(v: Option<Verdict>) -> u8 {
    match v {
        Some(Verdict::Leaking) => 0,
        Some(Verdict::Growing) => 1,
        Some(Verdict::Sawtooth) => 2,
        Some(Verdict::Shrinking) => 3,
        Some(Verdict::Steady) => 4,
        Some(Verdict::Insufficient) => 5,
        None => 6,
    }
}

impl ViewState {
    /// New rows from a round; the selection stays on its process while it is visible, else
    /// moves to the first visible row.
    pub fn set_rows(&mut self, rows: Vec<Row>) {
        self.rows = rows;
        self.keep_selection_visible();
    }

    pub fn rows(&self) -> &[Row] {
        &self.rows
    }

    /// The rows the table shows: the filter applied, in the chosen order.
    pub fn visible(&self) -> Vec<&Row> {
        let needle = self.filter.to_lowercase();
        let mut out: Vec<&Row> = self
            .rows
            .iter()
            .filter(|r| needle.is_empty() || matches_filter(r, &needle))
            .collect();
        // Stable sorts: ties keep the one ranking's order.
        match self.sort {
            SortKey::Growth => {}
            SortKey::Private => out.sort_by_key(|r| std::cmp::Reverse(r.private_bytes)),
            SortKey::Verdict => out.sort_by_key(|r| severity(r.verdict)),
            SortKey::TimeToLimit => {
                out.sort_by(|a, b| match (a.time_to_limit_secs, b.time_to_limit_secs) {
                    (Some(x), Some(y)) => x.total_cmp(&y),
                    (Some(_), None) => std::cmp::Ordering::Less,
                    (None, Some(_)) => std::cmp::Ordering::Greater,
                    (None, None) => std::cmp::Ordering::Equal,
                })
            }
        }
        out
    }

    /// Whether the NAMESPACE/POD columns are shown.
    pub fn show_pods(&self) -> bool {
        self.pods_override
            .unwrap_or_else(|| self.rows.iter().any(|r| r.kubernetes.names.pod.is_some()))
    }

    /// Index of the selected row among the visible ones.
    pub fn selected_index(&self) -> Option<usize> {
        let pid = self.selected?;
        self.visible().iter().position(|r| r.pid == pid)
    }

    /// The selected row, if visible.
    pub fn selected_row(&self) -> Option<&Row> {
        let pid = self.selected?;
        self.visible().into_iter().find(|r| r.pid == pid)
    }

    /// The row of `pid` (the detail screen's process), whether or not it is filtered out.
    pub fn row(&self, pid: u32) -> Option<&Row> {
        self.rows.iter().find(|r| r.pid == pid)
    }

    pub fn apply(&mut self, action: Action) {
        if self.editing_filter {
            self.apply_editing(action);
            return;
        }
        match (self.screen, action) {
            (_, Action::Quit) => self.quit = true,
            (Screen::Help, _) => self.screen = Screen::Table,
            (_, Action::Help) => self.screen = Screen::Help,
            (Screen::Detail(_), Action::Back) => self.screen = Screen::Table,
            (Screen::Table, Action::Back) => {
                // Esc on the table clears a filter (there is nothing to go back to).
                self.filter.clear();
                self.keep_selection_visible();
            }
            (Screen::Table, Action::Open) => {
                if let Some(r) = self.selected_row() {
                    self.screen = Screen::Detail(r.pid);
                }
            }
            (_, Action::Up) => self.move_by(-1),
            (_, Action::Down) => self.move_by(1),
            (_, Action::PageUp) => self.move_by(-(PAGE as isize)),
            (_, Action::PageDown) => self.move_by(PAGE as isize),
            (_, Action::First) => self.move_by(isize::MIN / 2),
            (_, Action::Last) => self.move_by(isize::MAX / 2),
            (Screen::Table, Action::StartFilter) => self.editing_filter = true,
            (_, Action::CycleSort) => {
                self.sort = self.sort.next();
            }
            (_, Action::TogglePods) => self.pods_override = Some(!self.show_pods()),
            _ => {}
        }
        // In the detail, up/down move to the neighbour's detail.
        if let (Screen::Detail(_), Some(pid)) = (self.screen, self.selected) {
            self.screen = Screen::Detail(pid);
        }
    }

    fn apply_editing(&mut self, action: Action) {
        match action {
            Action::FilterChar(c) => self.filter.push(c),
            Action::FilterBackspace => {
                self.filter.pop();
            }
            // Enter keeps the filter; Esc drops it.
            Action::Open => self.editing_filter = false,
            Action::Back => {
                self.editing_filter = false;
                self.filter.clear();
            }
            Action::Quit => self.quit = true,
            _ => {}
        }
        self.keep_selection_visible();
    }

    fn move_by(&mut self, delta: isize) {
        let visible = self.visible();
        if visible.is_empty() {
            return;
        }
        let at = self
            .selected
            .and_then(|pid| visible.iter().position(|r| r.pid == pid))
            .unwrap_or(0) as isize;
        let to = at
            .saturating_add(delta)
            .clamp(0, visible.len() as isize - 1) as usize;
        self.selected = Some(visible[to].pid);
    }

    fn keep_selection_visible(&mut self) {
        let visible = self.visible();
        let still = self
            .selected
            .is_some_and(|pid| visible.iter().any(|r| r.pid == pid));
        if !still {
            self.selected = visible.first().map(|r| r.pid);
        }
    }
}

/// Case-insensitive substring of the command, namespace, pod or container (`needle` is
/// lower-case already).
fn matches_filter(r: &Row, needle: &str) -> bool {
    let names = &r.kubernetes.names;
    std::iter::once(Some(&r.comm))
        .chain([&names.namespace, &names.pod, &names.container].map(Option::as_ref))
        .flatten()
        .any(|s| s.to_lowercase().contains(needle))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::top::tests::row as test_row;

    fn rows() -> Vec<Row> {
        let mut a = test_row(1, "leaker", Some(Verdict::Leaking), 100);
        a.time_to_limit_secs = Some(300.0);
        let mut b = test_row(2, "webhook", Some(Verdict::Steady), 900);
        b.kubernetes.names.namespace = Some("shop".into());
        b.kubernetes.names.pod = Some("hooks-1".into());
        let mut c = test_row(3, "cache", Some(Verdict::Growing), 50);
        c.time_to_limit_secs = Some(60.0);
        let d = test_row(4, "bash", None, 10);
        vec![a, b, c, d]
    }

    fn state() -> ViewState {
        let mut s = ViewState::default();
        s.set_rows(rows());
        s
    }

    fn pids(s: &ViewState) -> Vec<u32> {
        s.visible().iter().map(|r| r.pid).collect()
    }

    #[test]
    fn the_first_row_is_selected_and_arrows_move_within_bounds() {
        let mut s = state();
        assert_eq!(s.selected, Some(1));
        s.apply(Action::Up);
        assert_eq!(s.selected, Some(1), "stays at the top");
        s.apply(Action::Down);
        s.apply(Action::Down);
        assert_eq!(s.selected, Some(3));
        s.apply(Action::PageDown);
        assert_eq!(s.selected, Some(4), "stops at the bottom");
        s.apply(Action::First);
        assert_eq!(s.selected, Some(1));
        s.apply(Action::Last);
        assert_eq!(s.selected, Some(4));
    }

    #[test]
    fn the_selection_follows_its_process_across_rounds() {
        let mut s = state();
        s.apply(Action::Down);
        assert_eq!(s.selected, Some(2));
        let mut moved = rows();
        moved.reverse();
        s.set_rows(moved);
        assert_eq!(s.selected, Some(2));
        assert_eq!(s.selected_index(), Some(2));
        // Gone: the first row is selected.
        s.set_rows(rows().into_iter().filter(|r| r.pid != 2).collect());
        assert_eq!(s.selected, Some(1));
    }

    #[test]
    fn sort_cycles_growth_private_verdict_time_to_limit() {
        let mut s = state();
        assert_eq!(pids(&s), [1, 2, 3, 4]);
        s.apply(Action::CycleSort);
        assert_eq!(s.sort, SortKey::Private);
        assert_eq!(pids(&s), [2, 1, 3, 4]);
        s.apply(Action::CycleSort);
        assert_eq!(s.sort, SortKey::Verdict);
        assert_eq!(pids(&s), [1, 3, 2, 4]);
        s.apply(Action::CycleSort);
        assert_eq!(s.sort, SortKey::TimeToLimit);
        assert_eq!(pids(&s), [3, 1, 2, 4]);
        s.apply(Action::CycleSort);
        assert_eq!(s.sort, SortKey::Growth);
    }

    #[test]
    fn the_filter_matches_command_namespace_pod_and_container() {
        let mut s = state();
        s.apply(Action::StartFilter);
        assert!(s.editing_filter);
        for c in "SHOP".chars() {
            s.apply(Action::FilterChar(c));
        }
        assert_eq!(pids(&s), [2], "namespace, case-insensitive");
        assert_eq!(
            s.selected,
            Some(2),
            "the selection moves into the filtered rows"
        );
        s.apply(Action::Open);
        assert!(!s.editing_filter, "Enter ends editing and keeps the filter");
        assert_eq!(s.filter, "SHOP");
        s.apply(Action::Back);
        assert_eq!(s.filter, "", "Esc on the table clears it");
        s.apply(Action::StartFilter);
        for c in "cach".chars() {
            s.apply(Action::FilterChar(c));
        }
        assert_eq!(pids(&s), [3]);
        s.apply(Action::FilterBackspace);
        s.apply(Action::FilterChar('x'));
        assert!(pids(&s).is_empty());
        s.apply(Action::Quit);
        assert!(s.quit, "Ctrl-C quits even while typing");
    }

    #[test]
    fn typing_q_into_the_filter_does_not_quit() {
        let mut s = state();
        s.apply(Action::StartFilter);
        s.apply(Action::FilterChar('q'));
        assert!(!s.quit);
        assert_eq!(s.filter, "q");
        s.apply(Action::Back);
        assert!(!s.editing_filter);
        assert_eq!(s.filter, "", "Esc while typing drops the filter");
    }

    #[test]
    fn enter_opens_the_detail_and_esc_goes_back() {
        let mut s = state();
        s.apply(Action::Down);
        s.apply(Action::Open);
        assert_eq!(s.screen, Screen::Detail(2));
        s.apply(Action::Down);
        assert_eq!(s.screen, Screen::Detail(3), "arrows page through details");
        s.apply(Action::Back);
        assert_eq!(s.screen, Screen::Table);
        assert!(!s.quit);
    }

    #[test]
    fn help_opens_and_any_key_closes_it_but_q_quits() {
        let mut s = state();
        s.apply(Action::Help);
        assert_eq!(s.screen, Screen::Help);
        s.apply(Action::Down);
        assert_eq!(s.screen, Screen::Table);
        assert_eq!(
            s.selected,
            Some(1),
            "the key that closed help did nothing else"
        );
        s.apply(Action::Help);
        s.apply(Action::Quit);
        assert!(s.quit);
    }

    #[test]
    fn pod_columns_default_to_shown_when_a_process_is_in_a_pod_and_p_toggles() {
        let mut s = state();
        assert!(s.show_pods());
        s.apply(Action::TogglePods);
        assert!(!s.show_pods());
        s.apply(Action::TogglePods);
        assert!(s.show_pods());
        let mut bare = ViewState::default();
        bare.set_rows(rows().into_iter().filter(|r| r.pid != 2).collect());
        assert!(!bare.show_pods());
        bare.apply(Action::TogglePods);
        assert!(bare.show_pods());
    }

    #[test]
    fn no_rows_no_selection_and_no_panic() {
        let mut s = ViewState::default();
        for a in [
            Action::Up,
            Action::Down,
            Action::Open,
            Action::Back,
            Action::CycleSort,
            Action::Last,
        ] {
            s.apply(a);
        }
        assert_eq!(s.selected, None);
        assert_eq!(s.screen, Screen::Table);
    }
}
