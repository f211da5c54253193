//! The Model of `nokv top`: plain data with no I/O. The latest [`Survey`]
//! (kept when a poll fails), the events derived from successive surveys,
//! per-store request rate history for the sparklines, and what the user
//! selected: view, row, sort, filter.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use crate::output;
use crate::status_http::RequestTotals;
use crate::survey::{Region, Survey};

/// Events kept for the Events view; older ones are dropped.
pub const MAX_EVENTS: usize = 1000;

/// Rate samples kept per store (the sparklines show the newest that fit).
pub const MAX_RATE_SAMPLES: usize = 240;

/// The four screens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    /// Cluster id, coordinator members, stores.
    Overview,
    /// The region table with per-peer raft progress.
    Regions,
    /// Scheduling operators (or why they are unavailable).
    Operators,
    /// Changes seen between polls.
    Events,
}

impl View {
    /// Every view, in tab order (the number keys are positions + 1).
    pub const ALL: [View; 4] = [View::Overview, View::Regions, View::Operators, View::Events];

    /// Position in [`View::ALL`].
    pub fn index(self) -> usize {
        View::ALL.iter().position(|v| *v == self).unwrap_or(0)
    }

    /// Tab title.
    pub fn title(self) -> &'static str {
        match self {
            View::Overview => "Overview",
            View::Regions => "Regions",
            View::Operators => "Operators",
            View::Events => "Events",
        }
    }
}

/// What keys do right now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// Keys switch views, scroll, sort.
    Browse,
    /// Keys edit the filter text.
    Filter,
    /// The user asked to leave; the run loop stops.
    Quit,
}

/// Order of the region table, cycled with `s`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegionSort {
    /// Key order (the coordinator's order).
    StartKey,
    /// Region id, ascending.
    Id,
    /// Approximate size, largest first.
    Size,
    /// Approximate keys, most first.
    Keys,
    /// Largest peer lag first.
    Lag,
    /// Leader's store id, ascending (no leader first).
    Leader,
    /// Read plus write bytes per second, busiest first.
    Flow,
}

impl RegionSort {
    /// The next order in the `s` cycle.
    pub fn next(self) -> Self {
        match self {
            RegionSort::StartKey => RegionSort::Id,
            RegionSort::Id => RegionSort::Size,
            RegionSort::Size => RegionSort::Keys,
            RegionSort::Keys => RegionSort::Lag,
            RegionSort::Lag => RegionSort::Leader,
            RegionSort::Leader => RegionSort::Flow,
            RegionSort::Flow => RegionSort::StartKey,
        }
    }

    /// Shown in the help line.
    pub fn label(self) -> &'static str {
        match self {
            RegionSort::StartKey => "key",
            RegionSort::Id => "id",
            RegionSort::Size => "size",
            RegionSort::Keys => "keys",
            RegionSort::Lag => "lag",
            RegionSort::Leader => "leader",
            RegionSort::Flow => "flow",
        }
    }
}

/// What an event is about, for its colour and the KIND column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// A region's leader moved, appeared or was lost.
    Leader,
    /// A region split (a new region inside an old one's range).
    Split,
    /// A region appeared or disappeared otherwise.
    Region,
    /// A region's peers or their roles changed.
    Peer,
    /// A store's state changed or a store appeared.
    Store,
    /// The coordinator leader changed.
    Coordinator,
    /// Polling failed or recovered.
    Poll,
}

impl EventKind {
    /// The KIND column.
    pub fn label(self) -> &'static str {
        match self {
            EventKind::Leader => "leader",
            EventKind::Split => "split",
            EventKind::Region => "region",
            EventKind::Peer => "peer",
            EventKind::Store => "store",
            EventKind::Coordinator => "coordinator",
            EventKind::Poll => "poll",
        }
    }
}

/// One change seen between two polls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Unix ms of the poll that saw it.
    pub at_ms: u64,
    /// What it is about.
    pub kind: EventKind,
    /// In words.
    pub text: String,
}

/// Request rates of one store, one sample per successful poll.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StoreRates {
    /// Read requests per second, oldest first.
    pub reads: VecDeque<u64>,
    /// Write requests per second, oldest first.
    pub writes: VecDeque<u64>,
    last: Option<(u64, RequestTotals)>,
}

impl StoreRates {
    /// Adds the sample implied by `totals` at `at_ms`. A missing scrape
    /// breaks the series; counters going backwards (the node restarted)
    /// restart it without a sample.
    pub fn record(&mut self, at_ms: u64, totals: Option<RequestTotals>) {
        let Some(now) = totals else {
            self.last = None;
            return;
        };
        if let Some((then_ms, then)) = self.last {
            let dt = at_ms.saturating_sub(then_ms);
            if dt > 0 && now.reads >= then.reads && now.writes >= then.writes {
                push_capped(&mut self.reads, (now.reads - then.reads) * 1000 / dt);
                push_capped(&mut self.writes, (now.writes - then.writes) * 1000 / dt);
            }
        }
        self.last = Some((at_ms, now));
    }
}

fn push_capped(q: &mut VecDeque<u64>, v: u64) {
    if q.len() == MAX_RATE_SAMPLES {
        q.pop_front();
    }
    q.push_back(v);
}

/// The last poll failure, while polls keep failing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PollError {
    /// What went wrong, one line.
    pub message: String,
    /// Unix ms of the first failure in this run of failures.
    pub since_ms: u64,
}

/// Settings from the command line.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Time between polls.
    pub interval: Duration,
    /// A peer more than this many log entries behind its leader is shown
    /// as lagging.
    pub lag_threshold: u64,
}

/// Everything `nokv top` shows.
#[derive(Debug, Clone)]
pub struct State {
    /// From the command line.
    pub settings: Settings,
    /// The screen shown.
    pub view: View,
    /// What keys do.
    pub mode: Mode,
    /// The last successful survey; kept while polls fail.
    pub survey: Option<Survey>,
    /// Set while polls fail.
    pub poll_error: Option<PollError>,
    /// Wall clock of the last message that carried one (unix ms).
    pub now_ms: u64,
    /// Request rates per store id.
    pub rates: BTreeMap<u64, StoreRates>,
    /// Newest last.
    pub events: VecDeque<Event>,
    /// Order of the region table.
    pub sort: RegionSort,
    /// Applied filter of the Regions and Events views ("" = none).
    pub filter: String,
    /// The filter being typed in [`Mode::Filter`].
    pub filter_draft: String,
    /// Show region keys in hex instead of escaped text.
    pub hex_keys: bool,
    /// Selected row of each view, by [`View::index`].
    pub selected: [usize; 4],
    /// Rows a page scroll moves (follows the terminal height).
    pub page_rows: usize,
}

impl State {
    /// A state with no data yet, showing the Overview.
    pub fn new(settings: Settings) -> Self {
        State {
            settings,
            view: View::Overview,
            mode: Mode::Browse,
            survey: None,
            poll_error: None,
            now_ms: 0,
            rates: BTreeMap::new(),
            events: VecDeque::new(),
            sort: RegionSort::StartKey,
            filter: String::new(),
            filter_draft: String::new(),
            hex_keys: false,
            selected: [0; 4],
            page_rows: 10,
        }
    }

    /// The selected row of the current view.
    pub fn selected(&self) -> usize {
        self.selected[self.view.index()]
    }

    /// Regions after the filter, in the chosen order.
    pub fn visible_regions(&self) -> Vec<&Region> {
        let Some(s) = &self.survey else {
            return Vec::new();
        };
        let needle = self.filter.to_lowercase();
        let mut out: Vec<&Region> = s
            .regions
            .iter()
            .filter(|r| needle.is_empty() || region_text(r).contains(&needle))
            .collect();
        match self.sort {
            RegionSort::StartKey => {}
            RegionSort::Id => out.sort_by_key(|r| r.id),
            RegionSort::Size => out.sort_by_key(|r| std::cmp::Reverse(r.approximate_size_bytes)),
            RegionSort::Keys => out.sort_by_key(|r| std::cmp::Reverse(r.approximate_keys)),
            RegionSort::Lag => out.sort_by_key(|r| std::cmp::Reverse(r.max_lag())),
            RegionSort::Leader => out.sort_by_key(|r| (r.leader_store_id, r.id)),
            RegionSort::Flow => out.sort_by_key(|r| {
                std::cmp::Reverse(r.flow.read_bytes_per_sec + r.flow.write_bytes_per_sec)
            }),
        }
        out
    }

    /// Events after the filter, newest first.
    pub fn visible_events(&self) -> Vec<&Event> {
        let needle = self.filter.to_lowercase();
        self.events
            .iter()
            .rev()
            .filter(|e| {
                needle.is_empty()
                    || e.text.to_lowercase().contains(&needle)
                    || e.kind.label().contains(&needle)
            })
            .collect()
    }

    /// Rows of the current view (what the selection moves over).
    pub fn row_count(&self) -> usize {
        match self.view {
            View::Overview => self.survey.as_ref().map_or(0, |s| s.stores.len()),
            View::Regions => self.visible_regions().len(),
            View::Operators => match self.survey.as_ref().map(|s| &s.operators) {
                Some(crate::survey::Operators::Listed(ops)) => ops.len(),
                _ => 0,
            },
            View::Events => self.visible_events().len(),
        }
    }

    /// Appends an event, dropping the oldest beyond [`MAX_EVENTS`].
    pub fn push_event(&mut self, e: Event) {
        if self.events.len() == MAX_EVENTS {
            self.events.pop_front();
        }
        self.events.push_back(e);
    }
}

/// What the filter of the Regions view is matched against: the id, the
/// keys as shown, and every peer as `<peer>@<store>`, lowercased.
fn region_text(r: &Region) -> String {
    let mut s = format!(
        "{} {} {} {} {}",
        r.id,
        output::key(&r.start_key, ""),
        output::key(&r.end_key, ""),
        output::hex(&r.start_key),
        output::hex(&r.end_key)
    );
    for p in &r.peers {
        s.push_str(&format!(" {}@{}", p.id, p.store_id));
    }
    s.to_lowercase()
}

/// `HH:MM:SS` (UTC) of a unix ms timestamp.
pub fn clock(ms: u64) -> String {
    let secs = ms / 1000 % 86_400;
    format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60)
}

#[cfg(test)]
impl State {
    /// What the tests start from: polls every 2 s, a lag threshold of 100
    /// entries, showing `view` of `survey` (`None`: nothing polled yet).
    pub(crate) fn for_tests(survey: Option<Survey>, view: View) -> Self {
        let mut s = State::new(Settings {
            interval: Duration::from_secs(2),
            lag_threshold: 100,
        });
        s.survey = survey;
        s.view = view;
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::survey::fixture;

    fn state() -> State {
        State::for_tests(Some(fixture::survey()), View::Overview)
    }

    #[test]
    fn rates_come_from_counter_differences() {
        let mut r = StoreRates::default();
        r.record(
            1_000,
            Some(RequestTotals {
                reads: 10,
                writes: 0,
            }),
        );
        assert!(r.reads.is_empty(), "one scrape is no rate yet");
        r.record(
            3_000,
            Some(RequestTotals {
                reads: 30,
                writes: 8,
            }),
        );
        assert_eq!(r.reads, [10]);
        assert_eq!(r.writes, [4]);
        // A restart (counters reset) gives no sample, then rates resume.
        r.record(
            4_000,
            Some(RequestTotals {
                reads: 2,
                writes: 1,
            }),
        );
        assert_eq!(r.reads.len(), 1);
        r.record(
            5_000,
            Some(RequestTotals {
                reads: 7,
                writes: 1,
            }),
        );
        assert_eq!(r.reads, [10, 5]);
        // A failed scrape breaks the series.
        r.record(6_000, None);
        r.record(
            7_000,
            Some(RequestTotals {
                reads: 100,
                writes: 100,
            }),
        );
        assert_eq!(r.reads.len(), 2);
    }

    #[test]
    fn rate_history_is_bounded() {
        let mut r = StoreRates::default();
        for i in 0..(MAX_RATE_SAMPLES as u64 + 10) {
            r.record(
                i * 1000,
                Some(RequestTotals {
                    reads: i,
                    writes: i,
                }),
            );
        }
        assert_eq!(r.reads.len(), MAX_RATE_SAMPLES);
    }

    #[test]
    fn filter_matches_ids_keys_and_peers() {
        let mut s = state();
        s.filter = "@3".into();
        assert_eq!(
            s.visible_regions().iter().map(|r| r.id).collect::<Vec<_>>(),
            [2]
        );
        s.filter = "M".into();
        assert_eq!(s.visible_regions().len(), 2, "both touch key m");
        s.filter = "nothing".into();
        assert!(s.visible_regions().is_empty());
    }

    #[test]
    fn sorts_order_the_region_table() {
        let mut s = state();
        let ids = |s: &State| s.visible_regions().iter().map(|r| r.id).collect::<Vec<_>>();
        assert_eq!(ids(&s), [1, 2]);
        s.sort = RegionSort::Lag;
        assert_eq!(ids(&s), [2, 1]);
        s.sort = RegionSort::Size;
        assert_eq!(ids(&s), [1, 2]);
        s.sort = RegionSort::Leader;
        assert_eq!(ids(&s), [1, 2]);
        if let Some(sv) = s.survey.as_mut() {
            sv.regions[0].flow = Default::default();
            sv.regions[1].flow.read_bytes_per_sec = 10;
        }
        s.sort = RegionSort::Flow;
        assert_eq!(ids(&s), [2, 1], "the busiest region first");
        let mut order = vec![RegionSort::StartKey];
        while order.len() < 8 {
            order.push(order[order.len() - 1].next());
        }
        assert_eq!(order[7], RegionSort::StartKey, "the cycle has seven orders");
    }

    #[test]
    fn events_are_bounded_and_newest_first() {
        let mut s = state();
        for i in 0..(MAX_EVENTS as u64 + 5) {
            s.push_event(Event {
                at_ms: i,
                kind: EventKind::Poll,
                text: format!("e{i}"),
            });
        }
        assert_eq!(s.events.len(), MAX_EVENTS);
        assert_eq!(s.visible_events()[0].at_ms, MAX_EVENTS as u64 + 4);
    }

    #[test]
    fn clock_is_utc_time_of_day() {
        assert_eq!(clock(0), "00:00:00");
        assert_eq!(clock((13 * 3600 + 4 * 60 + 5) * 1000 + 999), "13:04:05");
    }
}
