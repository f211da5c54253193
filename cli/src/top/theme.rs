//! Every style `nokv top` uses, in one place, so the views agree on what a
//! colour means (and the render tests can name the style they expect).

use nokv_proto::metapb::StoreState;
use ratatui::style::{Color, Modifier, Style};

/// The tab of the view shown.
pub const TAB_ACTIVE: Style = Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD);
/// Table headers.
pub const HEADER: Style = Style::new().fg(Color::Cyan).add_modifier(Modifier::BOLD);
/// The selected row (reversed, so cell colours stay readable).
pub const SELECTED: Style = Style::new().add_modifier(Modifier::REVERSED);
/// Quiet text: labels, hints.
pub const DIM: Style = Style::new().fg(Color::DarkGray);
/// A region's leader peer.
pub const LEADER: Style = Style::new().add_modifier(Modifier::BOLD);
/// A peer more than the lag threshold behind its leader.
pub const LAGGING: Style = Style::new().fg(Color::Black).bg(Color::Yellow);
/// A peer that needs or is receiving a snapshot.
pub const SNAPSHOT: Style = Style::new().fg(Color::Black).bg(Color::Magenta);
/// A peer the coordinator reports down, or on a store that did not answer.
pub const UNREACHABLE: Style = Style::new().fg(Color::Red);
/// Something that needs attention now (no leader, store down).
pub const BAD: Style = Style::new().fg(Color::Red).add_modifier(Modifier::BOLD);
/// Degraded but not failed.
pub const WARN: Style = Style::new().fg(Color::Yellow);
/// Fine.
pub const GOOD: Style = Style::new().fg(Color::Green);
/// The status line while polls fail.
pub const STATUS_ERROR: Style = Style::new().fg(Color::White).bg(Color::Red);
/// The status line while all is well.
pub const STATUS_OK: Style = Style::new().fg(Color::Black).bg(Color::Gray);
/// The read sparkline.
pub const READS: Style = Style::new().fg(Color::Green);
/// The write sparkline.
pub const WRITES: Style = Style::new().fg(Color::Blue);

/// Style of a store state.
pub fn store_state(s: StoreState) -> Style {
    match s {
        StoreState::Up => GOOD,
        StoreState::Disconnected => WARN,
        StoreState::Down => BAD,
        StoreState::Offline | StoreState::Tombstone => DIM,
    }
}
