//! The selectable table every list view draws (stores, regions,
//! operators, events): its selected row is the current view's selection
//! in the [`State`], highlighted the same way in each.

use ratatui::layout::Rect;
use ratatui::widgets::{Table, TableState};
use ratatui::Frame;

use crate::top::state::State;
use crate::top::theme;

/// Draws `table` into `area` with the current view's selected row
/// highlighted.
pub fn render_selectable(state: &State, frame: &mut Frame, area: Rect, table: Table<'_>) {
    let table = table.row_highlight_style(theme::SELECTED);
    let mut selection = TableState::default().with_selected(Some(state.selected()));
    frame.render_stateful_widget(table, area, &mut selection);
}
