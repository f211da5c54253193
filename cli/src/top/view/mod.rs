//! The View of `nokv top`: renders a [`State`] into a frame, with no side
//! effects. The frame is a tab bar, the current view, a help line and a
//! status line; 80×24 is the smallest size it is laid out for.
//!
//! - [`overview`]: cluster id, coordinator members, stores with rates.
//! - [`regions`]: the region table and the selected region's peers.
//! - [`operators`]: scheduling operators, or why there are none.
//! - [`events`]: changes seen between polls.
//! - `table.rs`: the selectable table the list views share.

pub mod events;
pub mod operators;
pub mod overview;
pub mod regions;
mod table;

use nokv_proto::metapb::StoreState;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Tabs};
use ratatui::Frame;

use super::state::{clock, Mode, State, View};
use super::theme;

/// Draws the whole screen.
pub fn render(state: &State, frame: &mut Frame) {
    let [tabs, body, help, status] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(0),
        Constraint::Length(1),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    render_tabs(state, frame, tabs);
    if state.survey.is_none() {
        let text = match &state.poll_error {
            Some(e) => format!("no data yet: {}", e.message),
            None => "waiting for the first poll…".to_string(),
        };
        frame.render_widget(Paragraph::new(text), body);
    } else {
        match state.view {
            View::Overview => overview::render(state, frame, body),
            View::Regions => regions::render(state, frame, body),
            View::Operators => operators::render(state, frame, body),
            View::Events => events::render(state, frame, body),
        }
    }
    render_help(state, frame, help);
    render_status(state, frame, status);
}

fn render_tabs(state: &State, frame: &mut Frame, area: Rect) {
    let titles = View::ALL
        .iter()
        .enumerate()
        .map(|(i, v)| format!("{} {}", i + 1, v.title()));
    let tabs = Tabs::new(titles)
        .select(state.view.index())
        .highlight_style(theme::TAB_ACTIVE)
        .divider("|");
    let [left, right] =
        Layout::horizontal([Constraint::Min(0), Constraint::Length(22)]).areas(area);
    frame.render_widget(tabs, left);
    let id = state
        .survey
        .as_ref()
        .map(|s| format!("cluster {}", s.cluster_id))
        .unwrap_or_default();
    frame.render_widget(Paragraph::new(id).right_aligned().style(theme::DIM), right);
}

fn render_help(state: &State, frame: &mut Frame, area: Rect) {
    let line = if state.mode == Mode::Filter {
        Line::from(vec![
            Span::styled("filter: ", theme::HEADER),
            Span::raw(format!("{}_", state.filter_draft)),
            Span::styled("  Enter apply · Esc cancel", theme::DIM),
        ])
    } else {
        let mut spans = vec![Span::styled(
            format!(
                "tab/1-4 view ↑↓ PgUp/PgDn scroll s sort:{} / filter x hex q quit",
                state.sort.label()
            ),
            theme::DIM,
        )];
        if !state.filter.is_empty() {
            spans.push(Span::styled(
                format!("  filter: {}", state.filter),
                theme::WARN,
            ));
        }
        Line::from(spans)
    };
    frame.render_widget(Paragraph::new(line), area);
}

/// The bottom line: when the data is from and whether polling works; while
/// it fails, the error and the age of the data still shown; otherwise the
/// stores that are not Up or did not answer.
fn render_status(state: &State, frame: &mut Frame, area: Rect) {
    let every = format!("every {:.1}s", state.settings.interval.as_secs_f64());
    let data_at = state.survey.as_ref().map(|s| clock(s.taken_at_ms));
    if let Some(err) = &state.poll_error {
        let text = format!(
            " poll failing since {}: {} · showing data from {} UTC",
            clock(err.since_ms),
            err.message,
            data_at.as_deref().unwrap_or("never")
        );
        frame.render_widget(Paragraph::new(text).style(theme::STATUS_ERROR), area);
        return;
    }
    let Some(survey) = &state.survey else {
        frame.render_widget(
            Paragraph::new(format!(" connecting… ({every})")).style(theme::STATUS_OK),
            area,
        );
        return;
    };
    let leader = survey
        .leader_member_id
        .and_then(|id| survey.members.iter().find(|m| m.id == id))
        .map(|m| m.name.clone())
        .unwrap_or_else(|| "none".into());
    // Trouble first, so it stays visible on a narrow terminal.
    let mut trouble = Vec::new();
    if survey.leader_member_id.is_none() {
        trouble.push("no coordinator leader".to_string());
    }
    for s in &survey.stores {
        if s.state != StoreState::Up && s.state != StoreState::Tombstone {
            trouble.push(format!("store {} {}", s.id, s.state.as_str_name()));
        } else if let Some(e) = &s.admin_error {
            trouble.push(format!("store {} unreachable: {e}", s.id));
        }
    }
    let style = if trouble.is_empty() {
        theme::STATUS_OK
    } else {
        theme::STATUS_ERROR
    };
    let mut spans: Vec<Span> = trouble
        .into_iter()
        .map(|t| Span::raw(format!(" {t} ·")))
        .collect();
    spans.push(Span::raw(format!(
        " updated {} UTC ({every}) · leader {leader}",
        data_at.unwrap_or_default()
    )));
    frame.render_widget(Paragraph::new(Line::from(spans)).style(style), area);
}

#[cfg(test)]
pub(crate) mod testing {
    //! Rendering a state into a [`TestBackend`] and reading the buffer.

    use ratatui::backend::TestBackend;
    use ratatui::buffer::Buffer;
    use ratatui::style::Style;
    use ratatui::Terminal;

    use crate::top::state::State;

    /// Renders `state` at `w`×`h`.
    pub fn draw(state: &State, w: u16, h: u16) -> Buffer {
        let mut t = Terminal::new(TestBackend::new(w, h)).expect("test terminal");
        t.draw(|f| super::render(state, f)).expect("draw");
        t.backend().buffer().clone()
    }

    /// Row `y` as text.
    pub fn row(b: &Buffer, y: u16) -> String {
        (0..b.area.width).map(|x| b[(x, y)].symbol()).collect()
    }

    /// The whole screen, one line per row.
    pub fn screen(b: &Buffer) -> String {
        (0..b.area.height)
            .map(|y| row(b, y))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The first row containing `needle` and the column where it starts
    /// (columns are cells: every symbol here is one cell wide).
    pub fn find(b: &Buffer, needle: &str) -> Option<(u16, u16)> {
        (0..b.area.height).find_map(|y| find_in_row(b, y, needle).map(|x| (x, y)))
    }

    /// The column where `needle` starts in row `y`.
    pub fn find_in_row(b: &Buffer, y: u16, needle: &str) -> Option<u16> {
        let cells: Vec<&str> = (0..b.area.width).map(|x| b[(x, y)].symbol()).collect();
        let n: Vec<String> = needle.chars().map(String::from).collect();
        (0..cells.len().saturating_sub(n.len() - 1))
            .find(|&x| n.iter().enumerate().all(|(i, c)| cells[x + i] == c))
            .map(|x| x as u16)
    }

    /// The style of the cell at `(x, y)`.
    pub fn style_at(b: &Buffer, x: u16, y: u16) -> Style {
        b[(x, y)].style()
    }
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use crate::survey::fixture;
    use crate::top::state::{PollError, State, View};
    use crate::top::theme;

    fn state() -> State {
        State::for_tests(Some(fixture::survey()), View::Overview)
    }

    #[test]
    fn the_frame_has_tabs_help_and_status_at_80x24() {
        let b = draw(&state(), 80, 24);
        let top = row(&b, 0);
        for t in [
            "1 Overview",
            "2 Regions",
            "3 Operators",
            "4 Events",
            "cluster 7001",
        ] {
            assert!(top.contains(t), "{t:?} missing in {top:?}");
        }
        let (x, y) = find(&b, "1 Overview").expect("tab");
        assert_eq!(
            style_at(&b, x + 2, y).fg,
            theme::TAB_ACTIVE.fg,
            "active tab"
        );
        assert!(row(&b, 22).contains("q quit"), "{}", row(&b, 22));
        let status = row(&b, 23);
        assert!(
            status.starts_with(" store 3 Down ·"),
            "trouble first: {status}"
        );
        assert!(status.contains("updated 22:13:20 UTC"), "{status}");
        assert!(status.contains("leader coordinator-2"), "{status}");
        assert_eq!(style_at(&b, 0, 23).bg, theme::STATUS_ERROR.bg);
    }

    #[test]
    fn a_healthy_status_line_is_quiet_and_a_missing_leader_is_said() {
        let mut s = state();
        if let Some(sv) = s.survey.as_mut() {
            sv.stores[2].state = nokv_proto::metapb::StoreState::Up;
            sv.stores[2].admin_error = None;
        }
        let b = draw(&s, 80, 24);
        assert!(row(&b, 23).starts_with(" updated"), "{}", row(&b, 23));
        assert_eq!(style_at(&b, 0, 23).bg, theme::STATUS_OK.bg);
        if let Some(sv) = s.survey.as_mut() {
            sv.leader_member_id = None;
        }
        let b = draw(&s, 80, 24);
        assert!(
            row(&b, 23).starts_with(" no coordinator leader ·"),
            "{}",
            row(&b, 23)
        );
        assert_eq!(style_at(&b, 0, 23).bg, theme::STATUS_ERROR.bg);
    }

    #[test]
    fn a_failing_poll_is_said_and_the_last_data_stays() {
        let mut s = state();
        s.poll_error = Some(PollError {
            message: "coordinator unavailable: no leader".into(),
            since_ms: 1_700_000_002_000,
        });
        let b = draw(&s, 80, 24);
        let status = row(&b, 23);
        assert!(
            status.contains("poll failing since 22:13:22: coordinator unavailable"),
            "{status}"
        );
        assert_eq!(style_at(&b, 1, 23).bg, theme::STATUS_ERROR.bg);
        assert!(find(&b, "127.0.0.1:20721").is_some(), "stores still shown");
    }

    #[test]
    fn before_the_first_poll_the_screen_says_so() {
        let mut s = state();
        s.survey = None;
        let b = draw(&s, 80, 24);
        assert!(screen(&b).contains("waiting for the first poll"));
        s.poll_error = Some(PollError {
            message: "connection refused".into(),
            since_ms: 0,
        });
        s.view = View::Regions;
        assert!(screen(&draw(&s, 80, 24)).contains("no data yet: connection refused"));
    }

    #[test]
    fn filter_mode_shows_the_draft() {
        let mut s = state();
        s.mode = crate::top::state::Mode::Filter;
        s.filter_draft = "@3".into();
        assert!(row(&draw(&s, 80, 24), 22).contains("filter: @3_"));
    }

    #[test]
    fn tiny_terminals_do_not_panic() {
        let mut s = state();
        for v in crate::top::state::View::ALL {
            s.view = v;
            for (w, h) in [(1, 1), (10, 3), (40, 10), (80, 24), (200, 60)] {
                draw(&s, w, h);
            }
        }
    }
}
