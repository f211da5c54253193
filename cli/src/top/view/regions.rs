//! The Regions view: the region table (filtered and sorted by the State,
//! with each leader's read/write bytes per second) and, under it, the
//! selected region's peers with their raft progress.
//! Lagging peers and peers that need a snapshot are highlighted in both.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Paragraph, Row, Table};
use ratatui::Frame;

use nokv_proto::metapb::PeerRole;

use super::table::render_selectable;
use crate::output;
use crate::survey::{Peer, Region};
use crate::top::state::State;
use crate::top::theme;

/// Draws the Regions view into `area`.
pub fn render(state: &State, frame: &mut Frame, area: Rect) {
    let regions = state.visible_regions();
    let selected = regions.get(state.selected()).copied();
    let detail_rows = selected.map_or(1, |r| r.peers.len().max(1)) as u16 + 2;
    let [table, detail] =
        Layout::vertical([Constraint::Min(4), Constraint::Length(detail_rows)]).areas(area);
    render_table(state, &regions, frame, table);
    match selected {
        Some(r) => render_peers(state, r, frame, detail),
        None => frame.render_widget(
            Paragraph::new(if state.filter.is_empty() {
                "no regions".to_string()
            } else {
                format!(
                    "no region matches the filter {:?} (Esc clears it)",
                    state.filter
                )
            })
            .style(theme::DIM),
            detail,
        ),
    }
}

fn key_text(state: &State, k: &[u8], empty: &str) -> String {
    if k.is_empty() {
        empty.to_string()
    } else if state.hex_keys {
        output::hex(k)
    } else {
        output::key(k, empty)
    }
}

/// The style a peer is drawn in, by urgency: snapshot, lagging, down or
/// unknown, leader.
pub fn peer_style(state: &State, r: &Region, p: &Peer) -> Style {
    if p.needs_snapshot() {
        theme::SNAPSHOT
    } else if r.is_lagging(p, state.settings.lag_threshold) || p.pending {
        theme::LAGGING
    } else if p.down {
        theme::UNREACHABLE
    } else if p.id == r.leader_peer_id {
        theme::LEADER
    } else {
        Style::new()
    }
}

fn peer_label(r: &Region, p: &Peer) -> String {
    let mark = if p.id == r.leader_peer_id { "*" } else { "" };
    let role = match p.role {
        PeerRole::Voter => "",
        PeerRole::Learner => "(L)",
        PeerRole::IncomingVoter => "(+V)",
        PeerRole::DemotingVoter => "(-V)",
    };
    format!("{mark}{}@{}{role}", p.id, p.store_id)
}

fn render_table(state: &State, regions: &[&Region], frame: &mut Frame, area: Rect) {
    let header = Row::new([
        "ID", "START", "END", "LEADER", "PEERS", "EPOCH", "SIZE", "KEYS", "R/W B/s",
    ])
    .style(theme::HEADER);
    let rows = regions.iter().map(|r| {
        let mut peers = Vec::new();
        for (i, p) in r.peers.iter().enumerate() {
            if i > 0 {
                peers.push(Span::raw(" "));
            }
            peers.push(Span::styled(peer_label(r, p), peer_style(state, r, p)));
        }
        let leader = if r.leader_store_id == 0 {
            Cell::from("none").style(theme::BAD)
        } else {
            Cell::from(format!("s{}", r.leader_store_id))
        };
        Row::new(vec![
            Cell::from(r.id.to_string()),
            Cell::from(key_text(state, &r.start_key, "-inf")),
            Cell::from(key_text(state, &r.end_key, "+inf")),
            leader,
            Cell::from(Line::from(peers)),
            Cell::from(format!("v{}/c{}", r.version, r.conf_ver)),
            Cell::from(output::bytes(r.approximate_size_bytes)),
            Cell::from(r.approximate_keys.to_string()),
            Cell::from(format!(
                "{}/{}",
                output::bytes_compact(r.flow.read_bytes_per_sec),
                output::bytes_compact(r.flow.write_bytes_per_sec)
            )),
        ])
    });
    let widest_peers = regions
        .iter()
        .map(|r| {
            r.peers
                .iter()
                .map(|p| peer_label(r, p).len() + 1)
                .sum::<usize>()
        })
        .max()
        .unwrap_or(5)
        .clamp(5, 40) as u16;
    let title = format!(
        "Regions {}{} · sorted by {}",
        regions.len(),
        state
            .survey
            .as_ref()
            .filter(|_| !state.filter.is_empty())
            .map(|s| format!(" of {}", s.regions.len()))
            .unwrap_or_default(),
        state.sort.label()
    );
    let table = Table::new(
        rows,
        [
            Constraint::Length(5),
            Constraint::Fill(1),
            Constraint::Fill(1),
            Constraint::Length(6),
            Constraint::Length(widest_peers),
            Constraint::Length(7),
            Constraint::Length(9),
            Constraint::Length(7),
            // Two compact rates: at most "999.9K/999.9K".
            Constraint::Length(11),
        ],
    )
    .header(header)
    .block(Block::default().borders(Borders::TOP).title(title));
    render_selectable(state, frame, area, table);
}

fn index(v: Option<u64>) -> String {
    v.map(|i| i.to_string()).unwrap_or_else(|| "?".into())
}

/// The selected region's peers: role, the leader's matched index for it,
/// its own commit and applied index, lag and replication state.
fn render_peers(state: &State, r: &Region, frame: &mut Frame, area: Rect) {
    let header = Row::new([
        "PEER", "STORE", "ROLE", "MATCH", "COMMIT", "APPLIED", "LAG", "STATE",
    ])
    .style(theme::HEADER);
    let rows = r.peers.iter().map(|p| {
        let role = match p.role {
            PeerRole::Voter => "voter",
            PeerRole::Learner => "learner",
            PeerRole::IncomingVoter => "incoming",
            PeerRole::DemotingVoter => "demoting",
        };
        let lag = r.lag(p);
        let what = if p.id == r.leader_peer_id {
            "leader".to_string()
        } else if p.needs_snapshot() {
            "snapshot".to_string()
        } else if p.down {
            "down".to_string()
        } else if p.pending {
            "pending".to_string()
        } else {
            p.progress_state
                .clone()
                .unwrap_or_else(|| "?".into())
                .to_lowercase()
        };
        Row::new(vec![
            Cell::from(p.id.to_string()),
            Cell::from(p.store_id.to_string()),
            Cell::from(role),
            Cell::from(index(p.matched)),
            Cell::from(index(p.commit_index)),
            Cell::from(index(p.applied_index)),
            Cell::from(index(lag)),
            Cell::from(what),
        ])
        .style(peer_style(state, r, p))
    });
    let table = Table::new(
        rows,
        [
            Constraint::Length(8),
            Constraint::Length(6),
            Constraint::Length(8),
            Constraint::Length(9),
            Constraint::Length(9),
            Constraint::Length(9),
            Constraint::Length(7),
            Constraint::Min(8),
        ],
    )
    .header(header)
    .block(Block::default().borders(Borders::TOP).title(format!(
        "region {} peers · lag threshold {} entries",
        r.id, state.settings.lag_threshold
    )));
    frame.render_widget(table, area);
}

#[cfg(test)]
mod tests {
    use crate::survey::fixture;
    use crate::top::state::{State, View};
    use crate::top::theme;
    use crate::top::view::testing::*;

    fn state() -> State {
        State::for_tests(Some(fixture::survey()), View::Regions)
    }

    #[test]
    fn regions_are_rows_with_range_leader_peers_and_epoch() {
        let b = draw(&state(), 80, 24);
        let text = screen(&b);
        let (_, y1) = find(&b, "-inf").expect("region 1 row");
        let r1 = row(&b, y1);
        for part in [
            "1", "m", "s1", "*11@1", "12@2", "v2/c3", "64.0 KiB", "1000", "0/3.0M",
        ] {
            assert!(r1.contains(part), "{part:?} missing in {r1:?}");
        }
        let (_, y2) = find(&b, "+inf").expect("region 2 row");
        assert!(row(&b, y2).contains("*22@2"), "{}", row(&b, y2));
        assert!(text.contains("Regions 2 · sorted by key"), "{text}");
    }

    #[test]
    fn a_lagging_peer_is_highlighted_in_the_table_and_the_detail() {
        let mut s = state();
        s.selected[View::Regions.index()] = 1;
        let b = draw(&s, 80, 24);
        let text = screen(&b);
        // In the region table: the peer's label carries the lagging style.
        let (x, y) = find(&b, "23@3").expect("peer 23 in the table");
        assert_eq!(
            style_at(&b, x, y).bg,
            theme::LAGGING.bg,
            "lagging peer cell:\n{text}"
        );
        // A peer that keeps up is not highlighted.
        let x_ok = find_in_row(&b, y, "21@1").expect("peer 21");
        assert_ne!(style_at(&b, x_ok, y).bg, theme::LAGGING.bg);
        // In the detail pane: the whole row of peer 23, with lag 500.
        assert!(text.contains("region 2 peers"), "{text}");
        let (_, dy) = (y + 1..24)
            .find_map(|yy| {
                find_in_row(&b, yy, "23 ")
                    .filter(|&x| x < 3)
                    .map(|x| (x, yy))
            })
            .expect("peer 23 in the detail");
        let detail = row(&b, dy);
        assert!(detail.contains("500"), "{detail}");
        assert!(detail.contains("?"), "commit and applied unknown: {detail}");
        assert_eq!(style_at(&b, 0, dy).bg, theme::LAGGING.bg);
    }

    #[test]
    fn a_snapshot_peer_and_a_leaderless_region_stand_out() {
        let mut s = state();
        if let Some(sv) = s.survey.as_mut() {
            sv.regions[0].peers[1].progress_state = Some("Snapshot".into());
            sv.regions[1].leader_store_id = 0;
            sv.regions[1].leader_peer_id = 0;
        }
        let b = draw(&s, 80, 24);
        let (x, y) = find(&b, "12@2").expect("peer 12");
        assert_eq!(style_at(&b, x, y).bg, theme::SNAPSHOT.bg);
        let (x, y) = find(&b, "none").expect("no leader");
        assert_eq!(style_at(&b, x, y).fg, theme::BAD.fg);
    }

    #[test]
    fn hex_keys_and_filter_change_the_rows() {
        let mut s = state();
        s.hex_keys = true;
        let b = draw(&s, 80, 24);
        assert!(find(&b, "6d").is_some(), "m in hex");
        s.hex_keys = false;
        s.filter = "zzz".into();
        let text = screen(&draw(&s, 80, 24));
        assert!(
            text.contains("no region matches the filter \"zzz\""),
            "{text}"
        );
        assert!(text.contains("Regions 0 of 2"), "{text}");
    }
}
