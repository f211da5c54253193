//! The Events view: what changed between polls, newest first, with the
//! time of the poll that saw it.

use ratatui::layout::{Constraint, Rect};
use ratatui::widgets::{Block, Borders, Cell, Paragraph, Row, Table};
use ratatui::Frame;

use super::table::render_selectable;
use crate::top::state::{clock, EventKind, State};
use crate::top::theme;

/// Draws the Events view into `area`.
pub fn render(state: &State, frame: &mut Frame, area: Rect) {
    let events = state.visible_events();
    let block = Block::default().borders(Borders::TOP).title(format!(
        "Events {} · times UTC · seen by diffing polls",
        events.len()
    ));
    if events.is_empty() {
        let text = if state.filter.is_empty() {
            "no changes seen yet".to_string()
        } else {
            format!("no event matches the filter {:?}", state.filter)
        };
        frame.render_widget(Paragraph::new(text).style(theme::DIM).block(block), area);
        return;
    }
    let header = Row::new(["TIME", "KIND", "WHAT"]).style(theme::HEADER);
    let rows = events.iter().map(|e| {
        let style = match e.kind {
            EventKind::Leader | EventKind::Split | EventKind::Region | EventKind::Peer => {
                ratatui::style::Style::new()
            }
            EventKind::Store | EventKind::Coordinator => theme::WARN,
            EventKind::Poll => theme::BAD,
        };
        Row::new(vec![
            Cell::from(clock(e.at_ms)),
            Cell::from(e.kind.label()).style(style),
            Cell::from(e.text.clone()),
        ])
    });
    let table = Table::new(
        rows,
        [
            Constraint::Length(8),
            Constraint::Length(11),
            Constraint::Min(20),
        ],
    )
    .header(header)
    .block(block);
    render_selectable(state, frame, area, table);
}

#[cfg(test)]
mod tests {
    use crate::survey::fixture;
    use crate::top::state::{State, View};
    use crate::top::update::{update, Message};
    use crate::top::view::testing::*;
    use nokv_proto::metapb::StoreState;

    #[test]
    fn events_from_successive_polls_are_listed_newest_first() {
        let mut s = State::for_tests(None, View::Events);
        let a = fixture::survey();
        let mut b = a.clone();
        b.taken_at_ms += 1_000;
        b.regions[0].leader_store_id = 2;
        let mut c = b.clone();
        c.taken_at_ms += 1_000;
        c.stores[0].state = StoreState::Disconnected;
        for sv in [a, b, c] {
            update(&mut s, Message::Data(Box::new(sv)));
        }
        let buf = draw(&s, 80, 24);
        let (_, y_store) = find(&buf, "store 1 Up -> Disconnected").expect("store event");
        let (_, y_leader) = find(&buf, "region 1 leader store 1 -> 2").expect("leader event");
        assert!(y_store < y_leader, "newest first");
        assert!(
            row(&buf, y_store).contains("22:13:22"),
            "{}",
            row(&buf, y_store)
        );
        assert!(row(&buf, y_leader).contains("22:13:21"));
        s.filter = "leader".into();
        let text = screen(&draw(&s, 80, 24));
        assert!(!text.contains("Up -> Disconnected"), "{text}");
        assert!(text.contains("Events 1"), "{text}");
    }

    #[test]
    fn no_events_is_said() {
        let s = State::for_tests(Some(fixture::survey()), View::Events);
        assert!(screen(&draw(&s, 80, 24)).contains("no changes seen yet"));
    }
}
