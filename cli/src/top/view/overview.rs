//! The Overview: cluster id, the coordinator members with the leader
//! marked, a one-line summary, the store table, and read/write request
//! rate sparklines of the selected store, titled with its read/write bytes
//! per second from its last heartbeat.

use nokv_proto::metapb::StoreState;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Paragraph, Row, Sparkline, Table};
use ratatui::Frame;

use super::table::render_selectable;
use crate::output;
use crate::survey::Survey;
use crate::top::state::State;
use crate::top::theme;

/// Draws the Overview into `area`.
pub fn render(state: &State, frame: &mut Frame, area: Rect) {
    let Some(survey) = &state.survey else {
        return;
    };
    let [head, table, rates] = Layout::vertical([
        Constraint::Length(2),
        Constraint::Min(4),
        Constraint::Length(6),
    ])
    .areas(area);
    frame.render_widget(Paragraph::new(header_lines(state, survey)), head);
    render_stores(state, survey, frame, table);
    render_rates(state, survey, frame, rates);
}

fn header_lines(state: &State, s: &Survey) -> Vec<Line<'static>> {
    let mut members = vec![Span::styled("coordinators ", theme::DIM)];
    for m in &s.members {
        if Some(m.id) == s.leader_member_id {
            members.push(Span::styled(format!("{}* ", m.name), theme::LEADER));
        } else {
            members.push(Span::raw(format!("{} ", m.name)));
        }
    }
    if s.leader_member_id.is_none() {
        members.push(Span::styled("(no leader)", theme::BAD));
    }
    let up = s
        .stores
        .iter()
        .filter(|x| x.state == StoreState::Up)
        .count();
    let led = s.regions.iter().filter(|r| r.leader_store_id != 0).count();
    let lagging: usize = s
        .regions
        .iter()
        .map(|r| {
            r.peers
                .iter()
                .filter(|p| r.is_lagging(p, state.settings.lag_threshold))
                .count()
        })
        .sum();
    let mut summary = vec![
        Span::raw(format!("stores {}/{} Up · ", up, s.stores.len())),
        Span::raw(format!("regions {} ", s.regions.len())),
    ];
    if led < s.regions.len() {
        summary.push(Span::styled(
            format!("({} without leader) ", s.regions.len() - led),
            theme::BAD,
        ));
    }
    summary.push(Span::styled(
        format!("· {lagging} lagging peers"),
        if lagging > 0 { theme::WARN } else { theme::DIM },
    ));
    vec![Line::from(members), Line::from(summary)]
}

fn render_stores(state: &State, s: &Survey, frame: &mut Frame, area: Rect) {
    let header = Row::new([
        "ID", "ADDRESS", "STATE", "CAPACITY", "AVAIL", "REGIONS", "LEADERS", "R/s", "W/s",
    ])
    .style(theme::HEADER);
    let rows = s.stores.iter().map(|st| {
        let rates = state.rates.get(&st.id);
        let last = |q: Option<&std::collections::VecDeque<u64>>| {
            q.and_then(|q| q.back())
                .map(|v| v.to_string())
                .unwrap_or_else(|| "-".into())
        };
        let mut state_cell = Cell::from(st.state.as_str_name()).style(theme::store_state(st.state));
        if st.admin_error.is_some() && st.state == StoreState::Up {
            state_cell = Cell::from("Up?").style(theme::WARN);
        }
        Row::new(vec![
            Cell::from(st.id.to_string()),
            Cell::from(st.address.clone()),
            state_cell,
            Cell::from(if st.capacity_bytes == 0 {
                "-".to_string()
            } else {
                output::bytes(st.capacity_bytes)
            }),
            Cell::from(avail_percent(st.available_bytes, st.capacity_bytes)),
            Cell::from(st.region_count.to_string()),
            Cell::from(st.leader_count.to_string()),
            Cell::from(last(rates.map(|r| &r.reads))),
            Cell::from(last(rates.map(|r| &r.writes))),
        ])
    });
    let table = Table::new(
        rows,
        [
            Constraint::Length(3),
            Constraint::Min(15),
            Constraint::Length(12),
            Constraint::Length(9),
            Constraint::Length(5),
            Constraint::Length(7),
            Constraint::Length(7),
            Constraint::Length(5),
            Constraint::Length(5),
        ],
    )
    .header(header)
    .block(Block::default().borders(Borders::TOP).title("Stores"));
    render_selectable(state, frame, area, table);
}

fn avail_percent(available: u64, capacity: u64) -> String {
    if capacity == 0 {
        return "-".into();
    }
    format!("{}%", available.saturating_mul(100) / capacity)
}

/// Read and write rate sparklines of the selected store, newest on the
/// right; a note instead when its `/metrics` gave no rate yet.
fn render_rates(state: &State, s: &Survey, frame: &mut Frame, area: Rect) {
    let Some(store) = s.stores.get(state.selected()) else {
        return;
    };
    let block = Block::default().borders(Borders::TOP).title(format!(
        "store {} requests per second · {}/s read, {}/s written",
        store.id,
        output::bytes(store.flow.read_bytes_per_sec),
        output::bytes(store.flow.write_bytes_per_sec)
    ));
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let rates = state.rates.get(&store.id);
    if rates.is_none_or(|r| r.reads.is_empty()) {
        let why = if store.requests.is_none() {
            "no rates: the store's /metrics did not answer"
        } else {
            "no rates yet: they need two polls"
        };
        frame.render_widget(Paragraph::new(why).style(theme::DIM), inner);
        return;
    }
    let Some(rates) = rates else {
        return;
    };
    let [r_area, w_area] =
        Layout::vertical([Constraint::Length(2), Constraint::Length(2)]).areas(inner);
    for (area, label, q, style) in [
        (r_area, "read ", &rates.reads, theme::READS),
        (w_area, "write", &rates.writes, theme::WRITES),
    ] {
        let [l, g] = Layout::horizontal([Constraint::Length(14), Constraint::Min(0)]).areas(area);
        let now = q.back().copied().unwrap_or(0);
        frame.render_widget(Paragraph::new(format!("{label} {now:>6}/s")), l);
        let shown = g.width as usize;
        let data: Vec<u64> = q
            .iter()
            .skip(q.len().saturating_sub(shown))
            .copied()
            .collect();
        frame.render_widget(Sparkline::default().data(&data).style(style), g);
    }
}

#[cfg(test)]
mod tests {
    use crate::survey::fixture;
    use crate::top::state::{State, View};
    use crate::top::theme;
    use crate::top::update::{update, Message};
    use crate::top::view::testing::*;

    fn state() -> State {
        let mut s = State::for_tests(None, View::Overview);
        let mut a = fixture::survey();
        update(&mut s, Message::Data(Box::new(a.clone())));
        for _ in 0..3 {
            a.taken_at_ms += 1_000;
            if let Some(r) = a.stores[0].requests.as_mut() {
                r.reads += 30;
                r.writes += 7;
            }
            update(&mut s, Message::Data(Box::new(a.clone())));
        }
        s
    }

    #[test]
    fn overview_lists_members_stores_and_a_down_store() {
        let b = draw(&state(), 80, 24);
        let text = screen(&b);
        assert!(text.contains("coordinator-2*"), "{text}");
        assert!(text.contains("stores 2/3 Up"), "{text}");
        for id in 1..=3 {
            let addr = format!("127.0.0.1:2072{id}");
            let (_, y) = find(&b, &addr).unwrap_or_else(|| panic!("{addr} missing:\n{text}"));
            assert!(
                row(&b, y).trim_start().starts_with(&id.to_string()),
                "{}",
                row(&b, y)
            );
        }
        let (_, y3) = find(&b, "127.0.0.1:20723").expect("store 3");
        let x = find_in_row(&b, y3, "Down").expect("store 3 is Down");
        assert_eq!(style_at(&b, x, y3).fg, theme::BAD.fg);
        let (_, y1) = find(&b, "127.0.0.1:20721").expect("store 1");
        let x = find_in_row(&b, y1, "Up").expect("store 1 is Up");
        assert_eq!(style_at(&b, x, y1).fg, theme::GOOD.fg);
        assert!(text.contains("1 lagging peers"), "{text}");
    }

    #[test]
    fn the_selected_store_shows_its_rates() {
        let b = draw(&state(), 80, 24);
        let text = screen(&b);
        assert!(text.contains("store 1 requests per second"), "{text}");
        assert!(
            text.contains("2.0 KiB/s read, 1.0 KiB/s written"),
            "byte rates from the store's heartbeat: {text}"
        );
        assert!(text.contains("read      30/s"), "{text}");
        assert!(text.contains("write      7/s"), "{text}");
        let (x, y) = find(&b, "read ").expect("read label");
        // The sparkline follows the label on the same row, in the read style.
        let spark_x = (x + 14..80)
            .find(|&cx| b[(cx, y)].symbol() != " ")
            .expect("sparkline drawn");
        assert_eq!(style_at(&b, spark_x, y).fg, theme::READS.fg);
    }

    #[test]
    fn a_store_without_metrics_says_why_it_has_no_rates() {
        let mut s = state();
        s.selected[0] = 2;
        let text = screen(&draw(&s, 80, 24));
        assert!(
            text.contains("no rates: the store's /metrics did not answer"),
            "{text}"
        );
    }
}
