//! The Update of `nokv top`: every input (a key, a poll result, a clock
//! tick, a resize) is a [`Message`], and [`update`] applies one to the
//! [`State`]. It never draws and never calls the cluster, so it is tested
//! without a terminal.

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use super::diff::diff;
use super::state::{Event, EventKind, Mode, PollError, State, View};
use crate::survey::Survey;

/// Rows the screen spends outside a view's table: tab bar, help and status
/// lines, the table's border and header. Used to size page scrolls.
const CHROME_ROWS: usize = 7;

/// Something that happened.
#[derive(Debug)]
pub enum Message {
    /// A key press.
    Key(KeyEvent),
    /// The clock, for the "updated … ago" parts of the screen (unix ms).
    Tick(u64),
    /// A poll succeeded.
    Data(Box<Survey>),
    /// A poll failed.
    Error {
        /// One line.
        message: String,
        /// Unix ms.
        at_ms: u64,
    },
    /// The terminal is now this many rows tall.
    Resize(u16),
    /// Leave.
    Quit,
}

/// Applies `msg` to `state`; returns a follow-up message when there is one
/// (a quit key answers [`Message::Quit`]).
pub fn update(state: &mut State, msg: Message) -> Option<Message> {
    match msg {
        Message::Key(key) => return on_key(state, key),
        Message::Tick(now) => state.now_ms = now,
        Message::Data(survey) => on_data(state, *survey),
        Message::Error { message, at_ms } => on_error(state, message, at_ms),
        Message::Resize(rows) => {
            state.page_rows = (rows as usize).saturating_sub(CHROME_ROWS).max(1);
        }
        Message::Quit => state.mode = Mode::Quit,
    }
    None
}

fn on_data(state: &mut State, survey: Survey) {
    let at = survey.taken_at_ms;
    state.now_ms = state.now_ms.max(at);
    if let Some(err) = state.poll_error.take() {
        state.push_event(Event {
            at_ms: at,
            kind: EventKind::Poll,
            text: format!(
                "polling works again (failing since {})",
                super::state::clock(err.since_ms)
            ),
        });
    }
    if let Some(prev) = &state.survey {
        for e in diff(prev, &survey) {
            state.push_event(e);
        }
    }
    for s in &survey.stores {
        state.rates.entry(s.id).or_default().record(at, s.requests);
    }
    state
        .rates
        .retain(|id, _| survey.stores.iter().any(|s| s.id == *id));
    state.survey = Some(survey);
    clamp_selection(state);
}

fn on_error(state: &mut State, message: String, at_ms: u64) {
    state.now_ms = state.now_ms.max(at_ms);
    match &mut state.poll_error {
        Some(e) => e.message = message,
        None => {
            state.push_event(Event {
                at_ms,
                kind: EventKind::Poll,
                text: format!("poll failed: {message}"),
            });
            state.poll_error = Some(PollError {
                message,
                since_ms: at_ms,
            });
        }
    }
}

fn on_key(state: &mut State, key: KeyEvent) -> Option<Message> {
    if key.kind == KeyEventKind::Release {
        return None;
    }
    if key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c') {
        return Some(Message::Quit);
    }
    if state.mode == Mode::Filter {
        match key.code {
            KeyCode::Enter => {
                state.filter = std::mem::take(&mut state.filter_draft);
                state.mode = Mode::Browse;
                reset_list_selection(state);
            }
            KeyCode::Esc => {
                state.filter_draft.clear();
                state.mode = Mode::Browse;
            }
            KeyCode::Backspace => {
                state.filter_draft.pop();
            }
            KeyCode::Char(c) => state.filter_draft.push(c),
            _ => {}
        }
        return None;
    }
    let rows = state.row_count();
    let page = state.page_rows.max(1);
    match key.code {
        KeyCode::Char('q') => return Some(Message::Quit),
        KeyCode::Tab => state.view = View::ALL[(state.view.index() + 1) % View::ALL.len()],
        KeyCode::BackTab => {
            state.view = View::ALL[(state.view.index() + View::ALL.len() - 1) % View::ALL.len()]
        }
        KeyCode::Char(c @ '1'..='4') => state.view = View::ALL[(c as u8 - b'1') as usize],
        KeyCode::Up | KeyCode::Char('k') => move_selection(state, rows, -1),
        KeyCode::Down | KeyCode::Char('j') => move_selection(state, rows, 1),
        KeyCode::PageUp => move_selection(state, rows, -(page as i64)),
        KeyCode::PageDown => move_selection(state, rows, page as i64),
        KeyCode::Home | KeyCode::Char('g') => move_selection(state, rows, i64::MIN / 2),
        KeyCode::End | KeyCode::Char('G') => move_selection(state, rows, i64::MAX / 2),
        KeyCode::Char('s') => {
            state.sort = state.sort.next();
            state.selected[View::Regions.index()] = 0;
        }
        KeyCode::Char('x') => state.hex_keys = !state.hex_keys,
        KeyCode::Char('/') => {
            state.filter_draft = state.filter.clone();
            state.mode = Mode::Filter;
        }
        KeyCode::Esc if !state.filter.is_empty() => {
            state.filter.clear();
            reset_list_selection(state);
        }
        _ => {}
    }
    None
}

fn move_selection(state: &mut State, rows: usize, by: i64) {
    let i = state.view.index();
    let max = rows.saturating_sub(1) as i64;
    state.selected[i] = (state.selected[i] as i64).saturating_add(by).clamp(0, max) as usize;
}

fn reset_list_selection(state: &mut State) {
    state.selected[View::Regions.index()] = 0;
    state.selected[View::Events.index()] = 0;
}

/// Keeps every view's selection on an existing row after the data changed.
fn clamp_selection(state: &mut State) {
    let current = state.view;
    for v in View::ALL {
        state.view = v;
        let rows = state.row_count();
        state.selected[v.index()] = state.selected[v.index()].min(rows.saturating_sub(1));
    }
    state.view = current;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::survey::fixture;
    use crate::top::state::{RegionSort, Settings};
    use nokv_proto::metapb::StoreState;
    use std::time::Duration;

    fn state() -> State {
        State::new(Settings {
            interval: Duration::from_secs(1),
            lag_threshold: 100,
        })
    }

    fn key(c: KeyCode) -> Message {
        Message::Key(KeyEvent::new(c, KeyModifiers::NONE))
    }

    fn run(s: &mut State, msg: Message) {
        let mut next = Some(msg);
        while let Some(m) = next {
            next = update(s, m);
        }
    }

    #[test]
    fn q_and_ctrl_c_quit() {
        let mut s = state();
        assert!(matches!(
            update(&mut s, key(KeyCode::Char('q'))),
            Some(Message::Quit)
        ));
        assert_eq!(s.mode, Mode::Browse, "quitting is the follow-up message");
        run(&mut s, key(KeyCode::Char('q')));
        assert_eq!(s.mode, Mode::Quit);
        let mut s = state();
        run(
            &mut s,
            Message::Key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL)),
        );
        assert_eq!(s.mode, Mode::Quit);
    }

    #[test]
    fn tab_and_numbers_switch_views() {
        let mut s = state();
        run(&mut s, key(KeyCode::Tab));
        assert_eq!(s.view, View::Regions);
        run(&mut s, key(KeyCode::BackTab));
        run(&mut s, key(KeyCode::BackTab));
        assert_eq!(s.view, View::Events);
        run(&mut s, key(KeyCode::Char('3')));
        assert_eq!(s.view, View::Operators);
        run(&mut s, key(KeyCode::Char('1')));
        assert_eq!(s.view, View::Overview);
    }

    #[test]
    fn scrolling_stays_within_the_rows() {
        let mut s = state();
        run(&mut s, Message::Data(Box::new(fixture::survey())));
        run(&mut s, key(KeyCode::Down));
        run(&mut s, key(KeyCode::Down));
        run(&mut s, key(KeyCode::Down));
        assert_eq!(s.selected(), 2, "three stores");
        run(&mut s, key(KeyCode::PageUp));
        assert_eq!(s.selected(), 0);
        run(&mut s, key(KeyCode::End));
        assert_eq!(s.selected(), 2);
        run(&mut s, key(KeyCode::Char('2')));
        run(&mut s, key(KeyCode::PageDown));
        assert_eq!(s.selected(), 1, "two regions");
        run(&mut s, Message::Resize(30));
        assert_eq!(s.page_rows, 30 - CHROME_ROWS);
    }

    #[test]
    fn s_cycles_the_sort_and_slash_edits_the_filter() {
        let mut s = state();
        run(&mut s, Message::Data(Box::new(fixture::survey())));
        run(&mut s, key(KeyCode::Char('s')));
        assert_eq!(s.sort, RegionSort::Id);
        run(&mut s, key(KeyCode::Char('/')));
        assert_eq!(s.mode, Mode::Filter);
        for c in "@3x".chars() {
            run(&mut s, key(KeyCode::Char(c)));
        }
        run(&mut s, key(KeyCode::Backspace));
        assert_eq!(s.filter_draft, "@3");
        assert_eq!(s.filter, "", "not applied before Enter");
        // In filter mode q is text, not quit.
        run(&mut s, key(KeyCode::Enter));
        assert_eq!((s.mode.clone(), s.filter.as_str()), (Mode::Browse, "@3"));
        assert_eq!(s.visible_regions().len(), 1);
        run(&mut s, key(KeyCode::Char('/')));
        run(&mut s, key(KeyCode::Char('q')));
        run(&mut s, key(KeyCode::Esc));
        assert_eq!((s.mode.clone(), s.filter.as_str()), (Mode::Browse, "@3"));
        run(&mut s, key(KeyCode::Esc));
        assert_eq!(s.filter, "", "Esc in browse mode clears the filter");
        run(&mut s, key(KeyCode::Char('x')));
        assert!(s.hex_keys);
    }

    #[test]
    fn failed_polls_keep_the_data_and_are_reported_once() {
        let mut s = state();
        let first = fixture::survey();
        run(&mut s, Message::Data(Box::new(first.clone())));
        for at in [5, 6] {
            run(
                &mut s,
                Message::Error {
                    message: format!("coordinator unavailable {at}"),
                    at_ms: at,
                },
            );
        }
        assert_eq!(s.survey.as_ref(), Some(&first), "last data is kept");
        let err = s.poll_error.clone().expect("error shown");
        assert_eq!(
            (err.since_ms, err.message.as_str()),
            (5, "coordinator unavailable 6")
        );
        assert_eq!(s.events.len(), 1, "one event per run of failures");

        let mut next = first.clone();
        next.taken_at_ms += 2_000;
        next.stores[1].state = StoreState::Down;
        run(&mut s, Message::Data(Box::new(next)));
        assert!(s.poll_error.is_none());
        let texts: Vec<&str> = s.events.iter().map(|e| e.text.as_str()).collect();
        assert_eq!(texts[1], "polling works again (failing since 00:00:00)");
        assert_eq!(texts[2], "store 2 Up -> Down");
    }

    #[test]
    fn data_feeds_the_rate_history() {
        let mut s = state();
        let mut a = fixture::survey();
        run(&mut s, Message::Data(Box::new(a.clone())));
        a.taken_at_ms += 2_000;
        if let Some(r) = a.stores[0].requests.as_mut() {
            r.reads += 40;
            r.writes += 10;
        }
        run(&mut s, Message::Data(Box::new(a)));
        let r = &s.rates[&1];
        assert_eq!((r.reads.back(), r.writes.back()), (Some(&20), Some(&5)));
        assert!(s.rates[&3].reads.is_empty(), "store 3 has no metrics");
    }
}
