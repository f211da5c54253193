//! The Operators view: the coordinator's scheduling operators, running ones
//! first with their current step, then finished ones with their result.
//! When the coordinator cannot list them (today `GetOperators` answers
//! UNIMPLEMENTED) the view says so in words instead of showing an empty
//! table that would read as "nothing is being scheduled".

use ratatui::layout::{Constraint, Rect};
use ratatui::text::Line;
use ratatui::widgets::{Block, Borders, Cell, Paragraph, Row, Table, Wrap};
use ratatui::Frame;

use super::table::render_selectable;
use crate::survey::{Operator, Operators};
use crate::top::state::State;
use crate::top::theme;

/// Draws the Operators view into `area`.
pub fn render(state: &State, frame: &mut Frame, area: Rect) {
    let Some(survey) = &state.survey else {
        return;
    };
    let block = Block::default().borders(Borders::TOP).title("Operators");
    match &survey.operators {
        Operators::NotAsked => {}
        Operators::Unavailable(why) => {
            let text = vec![
                Line::styled(format!("operators not available: {why}"), theme::WARN),
                Line::raw(""),
                Line::raw(
                    "The coordinator does not list scheduling operators, so none can be shown \
                     in flight or in history. Its replica checker still repairs regions; \
                     peer changes it makes appear in the Events view (4).",
                ),
            ];
            frame.render_widget(
                Paragraph::new(text).wrap(Wrap { trim: true }).block(block),
                area,
            );
        }
        Operators::Listed(ops) if ops.is_empty() => frame.render_widget(
            Paragraph::new("no operators running or in history").block(block),
            area,
        ),
        Operators::Listed(ops) => render_table(state, ops, frame, area, block),
    }
}

fn render_table(state: &State, ops: &[Operator], frame: &mut Frame, area: Rect, block: Block) {
    let header =
        Row::new(["ID", "REGION", "KIND", "STEP", "STATE", "AGE", "RESULT"]).style(theme::HEADER);
    let mut ordered: Vec<&Operator> = ops.iter().collect();
    ordered.sort_by_key(|o| (o.finished_at_ms != 0, std::cmp::Reverse(o.created_at_ms)));
    let rows = ordered.iter().map(|o| {
        let step = o
            .steps
            .get(o.current_step as usize)
            .map(|s| format!("{}/{} {s}", o.current_step + 1, o.steps.len()))
            .unwrap_or_else(|| format!("{}/{}", o.current_step, o.steps.len()));
        let style = match o.state.as_str() {
            "Running" => theme::GOOD,
            "Succeeded" => theme::DIM,
            _ => theme::BAD,
        };
        let end = if o.finished_at_ms == 0 {
            state.now_ms
        } else {
            o.finished_at_ms
        };
        Row::new(vec![
            Cell::from(o.id.to_string()),
            Cell::from(o.region_id.to_string()),
            Cell::from(o.kind.clone()),
            Cell::from(step),
            Cell::from(o.state.clone()).style(style),
            Cell::from(format!("{}s", end.saturating_sub(o.created_at_ms) / 1000)),
            Cell::from(o.message.clone()),
        ])
    });
    let table = Table::new(
        rows,
        [
            Constraint::Length(6),
            Constraint::Length(7),
            Constraint::Length(12),
            Constraint::Min(16),
            Constraint::Length(10),
            Constraint::Length(6),
            Constraint::Min(8),
        ],
    )
    .header(header)
    .block(block);
    render_selectable(state, frame, area, table);
}

#[cfg(test)]
mod tests {
    use crate::survey::{fixture, Operator, Operators};
    use crate::top::state::{State, View};
    use crate::top::theme;
    use crate::top::view::testing::*;

    fn state(ops: Operators) -> State {
        let mut sv = fixture::survey();
        sv.operators = ops;
        let mut s = State::for_tests(Some(sv), View::Operators);
        s.now_ms = 10_000;
        s
    }

    #[test]
    fn unavailable_operators_are_said_honestly() {
        let s = state(Operators::Unavailable(
            "Unimplemented: GetOperators is not implemented".into(),
        ));
        let b = draw(&s, 80, 24);
        let text = screen(&b);
        assert!(
            text.contains("operators not available: Unimplemented: GetOperators"),
            "{text}"
        );
        assert!(text.contains("Events view"), "{text}");
        let (x, y) = find(&b, "operators not available").expect("line");
        assert_eq!(style_at(&b, x, y).fg, theme::WARN.fg);
    }

    #[test]
    fn listed_operators_show_step_and_state_running_first() {
        let op = |id, finished, state: &str| Operator {
            id,
            region_id: 7,
            kind: "add-replica".into(),
            steps: vec!["add learner 9@3".into(), "add voter 9@3".into()],
            current_step: 1,
            state: state.into(),
            source: "replica-checker".into(),
            created_at_ms: 4_000,
            finished_at_ms: finished,
            timeout_ms: 0,
            message: String::new(),
        };
        let s = state(Operators::Listed(vec![
            op(1, 6_000, "TimedOut"),
            op(2, 0, "Running"),
        ]));
        let b = draw(&s, 80, 24);
        let (_, y_run) = find(&b, "Running").expect("running");
        let (x, y_out) = find(&b, "TimedOut").expect("timed out");
        assert!(y_run < y_out, "running operators come first");
        assert!(
            row(&b, y_run).contains("2/2 add voter 9@3"),
            "{}",
            row(&b, y_run)
        );
        assert!(row(&b, y_run).contains("6s"), "{}", row(&b, y_run));
        assert_eq!(style_at(&b, x, y_out).fg, theme::BAD.fg);
        let empty = screen(&draw(&state(Operators::Listed(vec![])), 80, 24));
        assert!(empty.contains("no operators running or in history"));
    }
}
