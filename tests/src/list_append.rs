//! A list-append history checker for snapshot-isolation transactions, in
//! the spirit of Jepsen's Elle but without its dependency-graph search.
//!
//! The workload keeps one list of `u64` per integer key and runs
//! transactions of [`Op::Append`] (every appended value unique in the whole
//! history) and [`Op::Read`]. Each transaction ends [`Outcome::Committed`],
//! [`Outcome::Aborted`] or [`Outcome::Unknown`]; after the run the workload
//! reads every key's final list. Because each value is unique and lists only
//! grow, a read names exactly which appends it saw, and [`check`] can judge
//! the history against the final lists directly:
//!
//! - every read by a committed transaction is a prefix of the key's final
//!   list, and every committed append is in it exactly once;
//! - no list shows a value twice, a value nobody appended to that key, or a
//!   value of an aborted transaction (outside that transaction's own reads);
//! - a transaction's appends to one key show up in the order it made them;
//! - a committed reader (and the final lists, which act as one last reader)
//!   sees all of another transaction's appends or none of them;
//! - within a transaction, reads of a key agree with each other and with its
//!   own appends.
//!
//! It leaves out what needs a dependency graph (write skew, cycles across
//! transactions) and real time; the workload records no timestamps.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;

/// One step of a transaction, as the client recorded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Appended `value` to `key`'s list. Values are unique across the
    /// history, so a read tells which appends it saw.
    Append {
        /// The key appended to.
        key: u64,
        /// The value appended.
        value: u64,
    },
    /// Read `key`'s list: the transaction's snapshot followed by its own
    /// earlier appends to `key`.
    Read {
        /// The key read.
        key: u64,
        /// The list seen, oldest append first.
        value: Vec<u64>,
    },
}

/// How a transaction ended, as far as the client knows; it decides which
/// of the transaction's appends may show up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Committed: its appends must be in the final lists, and its reads are
    /// checked against them.
    Committed,
    /// Definitely not committed: its appends must never be seen by others.
    Aborted,
    /// The client cannot tell (a timeout, a lost response): its appends may
    /// or may not show up, but all or none of them.
    Unknown,
}

/// One transaction of a history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Txn {
    /// The workload's id for it, used in anomaly reports; should be unique.
    pub id: usize,
    /// Its operations in the order it issued them.
    pub ops: Vec<Op>,
    /// How it ended.
    pub outcome: Outcome,
}

/// Where a list was observed, so an anomaly can point at it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Location {
    /// A read by the transaction with this id.
    Read {
        /// The reading transaction's id.
        txn: usize,
    },
    /// The final list read after the run.
    Final,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Read { txn } => write!(f, "a read by txn {txn}"),
            Location::Final => write!(f, "the final list"),
        }
    }
}

/// A violation found by [`check`], with the ids, key and values needed to
/// find it in the history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Anomaly {
    /// The history appends one value twice. This breaks the workload's own
    /// uniqueness rule, so reports about that value may blame the wrong txn.
    DuplicateAppend {
        /// The value appended twice.
        value: u64,
        /// The first txn that appended it.
        first: usize,
        /// The second txn that appended it.
        second: usize,
    },
    /// A key that committed txns wrote or saw non-empty has no final list,
    /// so its committed appends and reads cannot be checked.
    MissingFinal {
        /// The key without a final list.
        key: u64,
    },
    /// A committed read is not a prefix of the key's final list: a value
    /// was lost, reordered or inserted after the read saw the list.
    ReadNotPrefixOfFinal {
        /// The committed reader.
        txn: usize,
        /// The key read.
        key: u64,
        /// The first position where read and final list differ.
        index: usize,
        /// The value the read has there.
        read_value: u64,
        /// The value the final list has there (`None`: it is shorter).
        final_value: Option<u64>,
    },
    /// A committed append is missing from the key's final list.
    LostAppend {
        /// The committed writer.
        txn: usize,
        /// The key appended to.
        key: u64,
        /// The value that is missing.
        value: u64,
    },
    /// A list shows the same value more than once.
    DuplicateValue {
        /// The key.
        key: u64,
        /// The repeated value.
        value: u64,
        /// Where the list was seen.
        location: Location,
    },
    /// A list shows a value appended by an aborted txn (other than in that
    /// txn's own reads).
    AbortedValueVisible {
        /// The aborted writer.
        writer: usize,
        /// The key.
        key: u64,
        /// The aborted value.
        value: u64,
        /// Where it was seen.
        location: Location,
    },
    /// A list shows a value that no txn appended to that key.
    GarbageValue {
        /// The key.
        key: u64,
        /// The unexplained value.
        value: u64,
        /// Where it was seen.
        location: Location,
    },
    /// A list shows two appends of one txn to one key in the opposite order
    /// to the one the txn made them in.
    ReorderedAppends {
        /// The txn that appended both.
        writer: usize,
        /// The key.
        key: u64,
        /// The value appended first.
        earlier: u64,
        /// The value appended later but shown first.
        later: u64,
        /// Where the list was seen.
        location: Location,
    },
    /// A reader saw some of a txn's appends but not all of them, which no
    /// snapshot allows.
    FracturedRead {
        /// The reader (a committed txn's reads, or the final lists).
        location: Location,
        /// The txn whose appends were seen in part.
        writer: usize,
        /// A key on which one of the writer's values was seen.
        seen_key: u64,
        /// That value.
        seen_value: u64,
        /// A key the reader read on which some of the writer's values are
        /// missing.
        key: u64,
        /// The writer's values on `key` that the read lacks.
        missing: Vec<u64>,
    },
    /// A txn read a key again and got something other than its earlier read
    /// plus its own appends since.
    InconsistentReread {
        /// The txn.
        txn: usize,
        /// The key.
        key: u64,
        /// The earlier read plus the appends made since.
        expected: Vec<u64>,
        /// What the later read returned.
        read: Vec<u64>,
    },
    /// A txn's first read of a key does not end with its own appends to it
    /// so far, or shows one of its own appends inside the snapshot part.
    OwnAppendsNotVisible {
        /// The txn.
        txn: usize,
        /// The key.
        key: u64,
        /// The txn's appends to `key` before the read, in order.
        own: Vec<u64>,
        /// What the read returned.
        read: Vec<u64>,
    },
}

impl fmt::Display for Anomaly {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Anomaly::DuplicateAppend {
                value,
                first,
                second,
            } => write!(
                f,
                "duplicate append: value {value} appended by txn {first} and by txn {second}"
            ),
            Anomaly::MissingFinal { key } => write!(
                f,
                "missing final: key {key} was written or read by committed txns but has no final list"
            ),
            Anomaly::ReadNotPrefixOfFinal {
                txn,
                key,
                index,
                read_value,
                final_value,
            } => {
                write!(
                    f,
                    "lost or reordered append: txn {txn}'s read of key {key} is not a prefix of \
                     the final list: at index {index} the read has {read_value}, the final list "
                )?;
                match final_value {
                    Some(v) => write!(f, "has {v}"),
                    None => write!(f, "ends"),
                }
            }
            Anomaly::LostAppend { txn, key, value } => write!(
                f,
                "lost append: committed txn {txn} appended {value} to key {key}, \
                 but the final list lacks it"
            ),
            Anomaly::DuplicateValue {
                key,
                value,
                location,
            } => write!(
                f,
                "duplicate value: {location} of key {key} shows {value} more than once"
            ),
            Anomaly::AbortedValueVisible {
                writer,
                key,
                value,
                location,
            } => write!(
                f,
                "aborted write visible: {location} of key {key} shows {value}, \
                 appended by aborted txn {writer}"
            ),
            Anomaly::GarbageValue {
                key,
                value,
                location,
            } => write!(
                f,
                "garbage value: {location} of key {key} shows {value}, which no txn appended to it"
            ),
            Anomaly::ReorderedAppends {
                writer,
                key,
                earlier,
                later,
                location,
            } => write!(
                f,
                "reordered appends: txn {writer} appended {earlier} before {later} to key {key}, \
                 but {location} shows {later} first"
            ),
            Anomaly::FracturedRead {
                location,
                writer,
                seen_key,
                seen_value,
                key,
                missing,
            } => write!(
                f,
                "fractured read: {location} saw txn {writer}'s value {seen_value} on key \
                 {seen_key} but misses its values {missing:?} on key {key}"
            ),
            Anomaly::InconsistentReread {
                txn,
                key,
                expected,
                read,
            } => write!(
                f,
                "inconsistent reread: txn {txn} read key {key} as {read:?}, \
                 expected {expected:?} from its earlier read and own appends"
            ),
            Anomaly::OwnAppendsNotVisible {
                txn,
                key,
                own,
                read,
            } => write!(
                f,
                "own appends not visible: txn {txn} read key {key} as {read:?}, \
                 which does not end with its own appends {own:?} alone"
            ),
        }
    }
}

/// What a passing check looked at, so a test can assert that its run was
/// not trivially empty.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckSummary {
    /// Transactions that committed.
    pub committed: usize,
    /// Transactions that aborted.
    pub aborted: usize,
    /// Transactions with an unknown outcome.
    pub unknown: usize,
    /// Read operations checked (all outcomes).
    pub reads: usize,
    /// Read operations that saw a non-empty list.
    pub nonempty_reads: usize,
    /// Append operations seen (all outcomes).
    pub appends: usize,
    /// Values in all final lists together.
    pub final_values: usize,
}

/// Who appended a value.
#[derive(Clone, Copy)]
struct Write {
    /// Position of the writer in the history.
    txn: usize,
    key: u64,
    /// How many appends the writer made to `key` before this one.
    seq: usize,
}

/// Every append of a history, looked up by value and by writer.
struct Appends {
    by_value: HashMap<u64, Write>,
    /// Per history position: key to the values appended to it, in order.
    by_txn: Vec<BTreeMap<u64, Vec<u64>>>,
}

impl Appends {
    fn index(history: &[Txn], out: &mut Vec<Anomaly>) -> Appends {
        let mut by_value: HashMap<u64, Write> = HashMap::new();
        let mut by_txn = Vec::with_capacity(history.len());
        for (pos, txn) in history.iter().enumerate() {
            let mut mine: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
            for op in &txn.ops {
                if let Op::Append { key, value } = *op {
                    let seq_list = mine.entry(key).or_default();
                    match by_value.get(&value) {
                        Some(first) => out.push(Anomaly::DuplicateAppend {
                            value,
                            first: history[first.txn].id,
                            second: txn.id,
                        }),
                        None => {
                            by_value.insert(
                                value,
                                Write {
                                    txn: pos,
                                    key,
                                    seq: seq_list.len(),
                                },
                            );
                        }
                    }
                    seq_list.push(value);
                }
            }
            by_txn.push(mine);
        }
        Appends { by_value, by_txn }
    }

    /// The append of `value` to `key`, if the history has one.
    fn writer(&self, key: u64, value: u64) -> Option<Write> {
        self.by_value.get(&value).copied().filter(|w| w.key == key)
    }
}

/// Checks a list-append history against the final lists.
///
/// `history` holds every transaction the workload ran, in any order;
/// `finals` maps each key to its list as read after the run. A key with no
/// entry is treated as never read at the end (see
/// [`Anomaly::MissingFinal`]); an empty list should be given as `vec![]`.
///
/// # Errors
///
/// Every anomaly found, in a deterministic order; the check does not stop
/// at the first one.
pub fn check(
    history: &[Txn],
    finals: &BTreeMap<u64, Vec<u64>>,
) -> Result<CheckSummary, Vec<Anomaly>> {
    let mut out = Vec::new();
    let appends = Appends::index(history, &mut out);
    let mut summary = CheckSummary::default();

    check_missing_finals(history, &appends, finals, &mut out);

    for (pos, txn) in history.iter().enumerate() {
        match txn.outcome {
            Outcome::Committed => summary.committed += 1,
            Outcome::Aborted => summary.aborted += 1,
            Outcome::Unknown => summary.unknown += 1,
        }
        let mut reads: Vec<(u64, &[u64])> = Vec::new();
        for op in &txn.ops {
            match op {
                Op::Append { .. } => summary.appends += 1,
                Op::Read { key, value } => {
                    summary.reads += 1;
                    if !value.is_empty() {
                        summary.nonempty_reads += 1;
                    }
                    reads.push((*key, value));
                }
            }
        }
        let location = Location::Read { txn: txn.id };
        for &(key, list) in &reads {
            check_list(history, &appends, key, list, location, Some(pos), &mut out);
        }
        check_internal(txn, &appends.by_txn[pos], &mut out);
        if txn.outcome == Outcome::Committed {
            for &(key, list) in &reads {
                check_prefix_of_final(txn.id, key, list, finals, &mut out);
            }
            check_atomic_visibility(history, &appends, location, Some(pos), &reads, &mut out);
        }
    }

    let final_reads: Vec<(u64, &[u64])> = finals
        .iter()
        .map(|(key, list)| (*key, list.as_slice()))
        .collect();
    for &(key, list) in &final_reads {
        summary.final_values += list.len();
        check_list(
            history,
            &appends,
            key,
            list,
            Location::Final,
            None,
            &mut out,
        );
    }
    check_committed_in_finals(history, &appends, finals, &mut out);
    check_atomic_visibility(
        history,
        &appends,
        Location::Final,
        None,
        &final_reads,
        &mut out,
    );

    if out.is_empty() {
        Ok(summary)
    } else {
        Err(out)
    }
}

/// Keys that committed txns depend on but that have no final list.
fn check_missing_finals(
    history: &[Txn],
    appends: &Appends,
    finals: &BTreeMap<u64, Vec<u64>>,
    out: &mut Vec<Anomaly>,
) {
    let mut needed = BTreeSet::new();
    for (pos, txn) in history.iter().enumerate() {
        if txn.outcome != Outcome::Committed {
            continue;
        }
        needed.extend(appends.by_txn[pos].keys().copied());
        for op in &txn.ops {
            if let Op::Read { key, value } = op {
                if !value.is_empty() {
                    needed.insert(*key);
                }
            }
        }
    }
    for key in needed {
        if !finals.contains_key(&key) {
            out.push(Anomaly::MissingFinal { key });
        }
    }
}

/// Checks one observed list on its own: duplicates, unexplained values,
/// aborted values, and each writer's appends in order. `reader` is the
/// reading txn's position (`None` for a final list); its own aborted appends
/// are allowed in its own reads.
fn check_list(
    history: &[Txn],
    appends: &Appends,
    key: u64,
    list: &[u64],
    location: Location,
    reader: Option<usize>,
    out: &mut Vec<Anomaly>,
) {
    let mut seen = HashSet::with_capacity(list.len());
    let mut reported_dups = HashSet::new();
    // Per writer: the highest sequence number seen so far in this list, with
    // its value, and whether this writer has been reported already.
    let mut last_seq: HashMap<usize, (usize, u64, bool)> = HashMap::new();
    for &value in list {
        if !seen.insert(value) {
            if reported_dups.insert(value) {
                out.push(Anomaly::DuplicateValue {
                    key,
                    value,
                    location,
                });
            }
            continue;
        }
        let Some(w) = appends.writer(key, value) else {
            out.push(Anomaly::GarbageValue {
                key,
                value,
                location,
            });
            continue;
        };
        let writer = &history[w.txn];
        if writer.outcome == Outcome::Aborted && reader != Some(w.txn) {
            out.push(Anomaly::AbortedValueVisible {
                writer: writer.id,
                key,
                value,
                location,
            });
        }
        match last_seq.get_mut(&w.txn) {
            Some((seq, later, reported)) if *seq > w.seq => {
                if !*reported {
                    *reported = true;
                    out.push(Anomaly::ReorderedAppends {
                        writer: writer.id,
                        key,
                        earlier: value,
                        later: *later,
                        location,
                    });
                }
            }
            Some(entry) => {
                entry.0 = w.seq;
                entry.1 = value;
            }
            None => {
                last_seq.insert(w.txn, (w.seq, value, false));
            }
        }
    }
}

/// Checks that a txn's reads of each key agree with each other and with its
/// own appends, whatever its outcome.
fn check_internal(txn: &Txn, own_all: &BTreeMap<u64, Vec<u64>>, out: &mut Vec<Anomaly>) {
    #[derive(Default)]
    struct KeyState {
        /// Own appends to the key so far.
        own: Vec<u64>,
        /// The last read plus the own appends since (`None`: not read yet).
        expected: Option<Vec<u64>>,
    }
    let mut keys: BTreeMap<u64, KeyState> = BTreeMap::new();
    for op in &txn.ops {
        match op {
            Op::Append { key, value } => {
                let st = keys.entry(*key).or_default();
                st.own.push(*value);
                if let Some(expected) = &mut st.expected {
                    expected.push(*value);
                }
            }
            Op::Read { key, value } => {
                let st = keys.entry(*key).or_default();
                match &st.expected {
                    Some(expected) => {
                        if expected != value {
                            out.push(Anomaly::InconsistentReread {
                                txn: txn.id,
                                key: *key,
                                expected: expected.clone(),
                                read: value.clone(),
                            });
                        }
                    }
                    None => {
                        let mine: HashSet<u64> = own_all
                            .get(key)
                            .map(|v| v.iter().copied().collect())
                            .unwrap_or_default();
                        let ok = value.len() >= st.own.len() && {
                            let (snapshot, tail) = value.split_at(value.len() - st.own.len());
                            tail == st.own.as_slice() && !snapshot.iter().any(|v| mine.contains(v))
                        };
                        if !ok {
                            out.push(Anomaly::OwnAppendsNotVisible {
                                txn: txn.id,
                                key: *key,
                                own: st.own.clone(),
                                read: value.clone(),
                            });
                        }
                    }
                }
                st.expected = Some(value.clone());
            }
        }
    }
}

/// Checks that a committed read is a prefix of the key's final list.
fn check_prefix_of_final(
    txn: usize,
    key: u64,
    list: &[u64],
    finals: &BTreeMap<u64, Vec<u64>>,
    out: &mut Vec<Anomaly>,
) {
    // A missing final list is reported once by `check_missing_finals`.
    let Some(fin) = finals.get(&key) else {
        return;
    };
    if let Some(index) = list
        .iter()
        .enumerate()
        .position(|(i, v)| fin.get(i) != Some(v))
    {
        out.push(Anomaly::ReadNotPrefixOfFinal {
            txn,
            key,
            index,
            read_value: list[index],
            final_value: fin.get(index).copied(),
        });
    }
}

/// Checks that every committed append is in its key's final list.
fn check_committed_in_finals(
    history: &[Txn],
    appends: &Appends,
    finals: &BTreeMap<u64, Vec<u64>>,
    out: &mut Vec<Anomaly>,
) {
    let sets: BTreeMap<u64, HashSet<u64>> = finals
        .iter()
        .map(|(k, list)| (*k, list.iter().copied().collect()))
        .collect();
    for (pos, txn) in history.iter().enumerate() {
        if txn.outcome != Outcome::Committed {
            continue;
        }
        for (key, values) in &appends.by_txn[pos] {
            let Some(fin) = sets.get(key) else {
                continue;
            };
            for value in values {
                if !fin.contains(value) {
                    out.push(Anomaly::LostAppend {
                        txn: txn.id,
                        key: *key,
                        value: *value,
                    });
                }
            }
        }
    }
}

/// Checks that a reader that saw any append of another (non-aborted) txn
/// saw all of that txn's appends on every key it read. `reads` are the
/// reader's lists; `reader` is its history position (`None` for the finals,
/// where only unknown writers are checked: committed ones must be there in
/// full, which [`check_committed_in_finals`] reports value by value).
fn check_atomic_visibility(
    history: &[Txn],
    appends: &Appends,
    location: Location,
    reader: Option<usize>,
    reads: &[(u64, &[u64])],
    out: &mut Vec<Anomaly>,
) {
    let sets: Vec<HashSet<u64>> = reads
        .iter()
        .map(|(_, list)| list.iter().copied().collect())
        .collect();
    let mut reads_of_key: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
    for (i, (key, _)) in reads.iter().enumerate() {
        reads_of_key.entry(*key).or_default().push(i);
    }
    // Writer position to the first (key, value) of it this reader saw.
    let mut seen: BTreeMap<usize, (u64, u64)> = BTreeMap::new();
    for &(key, list) in reads {
        for &value in list {
            if let Some(w) = appends.writer(key, value) {
                // Aborted writers are reported as visible already, and in
                // the finals a committed writer's missing values are lost
                // appends; neither needs a second report here.
                let checked = match history[w.txn].outcome {
                    Outcome::Aborted => false,
                    Outcome::Committed => reader.is_some(),
                    Outcome::Unknown => true,
                };
                if checked && Some(w.txn) != reader {
                    seen.entry(w.txn).or_insert((key, value));
                }
            }
        }
    }
    for (writer, (seen_key, seen_value)) in seen {
        for (key, values) in &appends.by_txn[writer] {
            let Some(read_ids) = reads_of_key.get(key) else {
                continue;
            };
            for &i in read_ids {
                let missing: Vec<u64> = values
                    .iter()
                    .copied()
                    .filter(|v| !sets[i].contains(v))
                    .collect();
                if !missing.is_empty() {
                    out.push(Anomaly::FracturedRead {
                        location,
                        writer: history[writer].id,
                        seen_key,
                        seen_value,
                        key: *key,
                        missing,
                    });
                    // One report per writer and key is enough.
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    fn ap(key: u64, value: u64) -> Op {
        Op::Append { key, value }
    }
    fn rd(key: u64, value: &[u64]) -> Op {
        Op::Read {
            key,
            value: value.to_vec(),
        }
    }
    fn txn(id: usize, outcome: Outcome, ops: Vec<Op>) -> Txn {
        Txn { id, ops, outcome }
    }
    fn finals(lists: &[(u64, &[u64])]) -> BTreeMap<u64, Vec<u64>> {
        lists.iter().map(|(k, l)| (*k, l.to_vec())).collect()
    }
    fn anomalies(history: &[Txn], fin: &BTreeMap<u64, Vec<u64>>) -> Vec<Anomaly> {
        match check(history, fin) {
            Ok(s) => panic!("expected anomalies, the check passed: {s:?}"),
            Err(a) => a,
        }
    }
    fn passes(history: &[Txn], fin: &BTreeMap<u64, Vec<u64>>) -> CheckSummary {
        check(history, fin).unwrap_or_else(|a| {
            let lines: Vec<String> = a.iter().map(ToString::to_string).collect();
            panic!("expected a pass, got:\n{}", lines.join("\n"))
        })
    }
    use Outcome::{Aborted, Committed, Unknown};

    // ---- valid histories ----

    #[test]
    fn empty_history_passes() {
        assert_eq!(passes(&[], &BTreeMap::new()), CheckSummary::default());
    }

    #[test]
    fn serial_history_passes_and_is_summarized() {
        let h = vec![
            txn(1, Committed, vec![ap(1, 10), ap(2, 20)]),
            txn(2, Committed, vec![rd(1, &[10]), rd(2, &[20]), ap(1, 11)]),
            txn(3, Committed, vec![rd(1, &[10, 11]), rd(2, &[20])]),
        ];
        let s = passes(&h, &finals(&[(1, &[10, 11]), (2, &[20])]));
        assert_eq!(
            s,
            CheckSummary {
                committed: 3,
                aborted: 0,
                unknown: 0,
                reads: 4,
                nonempty_reads: 4,
                appends: 3,
                final_values: 3,
            }
        );
    }

    #[test]
    fn concurrent_snapshots_pass() {
        // 2 and 3 start from the same snapshot (after 1) and write disjoint
        // keys; 4 started before 2 and 3 committed, so sees neither; 5 sees
        // both.
        let h = vec![
            txn(1, Committed, vec![ap(1, 10), ap(2, 20)]),
            txn(2, Committed, vec![rd(1, &[10]), rd(2, &[20]), ap(1, 11)]),
            txn(3, Committed, vec![rd(1, &[10]), rd(2, &[20]), ap(2, 21)]),
            txn(4, Committed, vec![rd(1, &[10]), rd(2, &[20]), ap(3, 30)]),
            txn(5, Committed, vec![rd(2, &[20, 21]), rd(1, &[10, 11])]),
            // Empty reads before anything was written.
            txn(6, Committed, vec![rd(1, &[]), rd(3, &[])]),
        ];
        passes(&h, &finals(&[(1, &[10, 11]), (2, &[20, 21]), (3, &[30])]));
    }

    #[test]
    fn unknown_outcomes_may_or_may_not_take_effect() {
        // 2 took effect (seen by 3 and in the finals); 4 did not.
        let h = vec![
            txn(1, Committed, vec![ap(1, 10)]),
            txn(2, Unknown, vec![ap(1, 11), ap(2, 20)]),
            txn(3, Committed, vec![rd(1, &[10, 11]), rd(2, &[20])]),
            txn(4, Unknown, vec![rd(1, &[10, 11]), ap(1, 12), ap(2, 21)]),
            txn(5, Committed, vec![rd(1, &[10, 11]), rd(2, &[20])]),
        ];
        let s = passes(&h, &finals(&[(1, &[10, 11]), (2, &[20])]));
        assert_eq!((s.committed, s.unknown), (3, 2));
    }

    #[test]
    fn reads_include_own_appends() {
        let h = vec![
            txn(1, Committed, vec![ap(1, 10)]),
            txn(
                2,
                Committed,
                vec![
                    ap(1, 11),
                    rd(1, &[10, 11]),
                    ap(1, 12),
                    ap(2, 20),
                    rd(1, &[10, 11, 12]),
                    rd(2, &[20]),
                ],
            ),
            // An aborted txn may see its own appends; nobody else may.
            txn(
                3,
                Aborted,
                vec![rd(1, &[10, 11, 12]), ap(1, 13), rd(1, &[10, 11, 12, 13])],
            ),
            // An unknown one that did not take effect also sees its own.
            txn(4, Unknown, vec![ap(3, 30), rd(3, &[30])]),
        ];
        let s = passes(&h, &finals(&[(1, &[10, 11, 12]), (2, &[20]), (3, &[])]));
        assert_eq!(s.aborted, 1);
    }

    // ---- one bad history per anomaly kind ----

    #[test]
    fn duplicate_append_in_history() {
        let h = vec![
            txn(1, Committed, vec![ap(1, 10)]),
            txn(2, Committed, vec![ap(1, 10)]),
        ];
        let a = anomalies(&h, &finals(&[(1, &[10])]));
        assert!(a.contains(&Anomaly::DuplicateAppend {
            value: 10,
            first: 1,
            second: 2
        }));
    }

    #[test]
    fn missing_final_list() {
        let h = vec![txn(1, Committed, vec![ap(7, 10)])];
        assert_eq!(
            anomalies(&h, &BTreeMap::new()),
            vec![Anomaly::MissingFinal { key: 7 }]
        );
    }

    #[test]
    fn committed_read_missing_an_element() {
        let h = vec![
            txn(1, Committed, vec![ap(1, 10)]),
            txn(2, Committed, vec![ap(1, 11)]),
            txn(3, Committed, vec![rd(1, &[11])]),
        ];
        let a = anomalies(&h, &finals(&[(1, &[10, 11])]));
        assert_eq!(
            a,
            vec![Anomaly::ReadNotPrefixOfFinal {
                txn: 3,
                key: 1,
                index: 0,
                read_value: 11,
                final_value: Some(10),
            }]
        );
    }

    #[test]
    fn committed_read_reordered() {
        let h = vec![
            txn(1, Committed, vec![ap(1, 10)]),
            txn(2, Committed, vec![ap(1, 11)]),
            txn(3, Committed, vec![rd(1, &[11, 10])]),
        ];
        let a = anomalies(&h, &finals(&[(1, &[10, 11])]));
        assert!(a.iter().any(|x| matches!(
            x,
            Anomaly::ReadNotPrefixOfFinal {
                txn: 3,
                key: 1,
                index: 0,
                ..
            }
        )));
    }

    #[test]
    fn committed_read_longer_than_final() {
        // The read saw 11 (committed reader), so it must survive.
        let h = vec![
            txn(1, Committed, vec![ap(1, 10)]),
            txn(2, Unknown, vec![ap(1, 11)]),
            txn(3, Committed, vec![rd(1, &[10, 11])]),
        ];
        let a = anomalies(&h, &finals(&[(1, &[10])]));
        assert!(a.contains(&Anomaly::ReadNotPrefixOfFinal {
            txn: 3,
            key: 1,
            index: 1,
            read_value: 11,
            final_value: None,
        }));
    }

    #[test]
    fn committed_append_lost_from_final() {
        let h = vec![
            txn(1, Committed, vec![ap(1, 10)]),
            txn(2, Committed, vec![ap(1, 11)]),
        ];
        assert_eq!(
            anomalies(&h, &finals(&[(1, &[10])])),
            vec![Anomaly::LostAppend {
                txn: 2,
                key: 1,
                value: 11
            }]
        );
        // Half of a committed txn in the finals is reported as lost appends
        // only, not also as a fractured final read.
        let h = vec![txn(1, Committed, vec![ap(1, 10), ap(2, 20), ap(2, 21)])];
        assert_eq!(
            anomalies(&h, &finals(&[(1, &[10]), (2, &[])])),
            vec![
                Anomaly::LostAppend {
                    txn: 1,
                    key: 2,
                    value: 20
                },
                Anomaly::LostAppend {
                    txn: 1,
                    key: 2,
                    value: 21
                },
            ]
        );
    }

    #[test]
    fn duplicate_value_in_read_and_final() {
        let h = vec![
            txn(1, Committed, vec![ap(1, 10)]),
            txn(2, Unknown, vec![rd(1, &[10, 10])]),
        ];
        let a = anomalies(&h, &finals(&[(1, &[10, 10])]));
        assert!(a.contains(&Anomaly::DuplicateValue {
            key: 1,
            value: 10,
            location: Location::Read { txn: 2 }
        }));
        assert!(a.contains(&Anomaly::DuplicateValue {
            key: 1,
            value: 10,
            location: Location::Final
        }));
    }

    #[test]
    fn aborted_value_visible_in_read_and_final() {
        let h = vec![
            txn(1, Aborted, vec![ap(1, 10)]),
            txn(2, Committed, vec![rd(1, &[10])]),
        ];
        let a = anomalies(&h, &finals(&[(1, &[10])]));
        for location in [Location::Read { txn: 2 }, Location::Final] {
            assert!(a.contains(&Anomaly::AbortedValueVisible {
                writer: 1,
                key: 1,
                value: 10,
                location
            }));
        }
    }

    #[test]
    fn garbage_value_nobody_appended() {
        // 99 was never appended; 20 was appended, but to key 2.
        let h = vec![
            txn(1, Committed, vec![ap(2, 20)]),
            txn(2, Unknown, vec![rd(1, &[99])]),
        ];
        let a = anomalies(&h, &finals(&[(1, &[20]), (2, &[20])]));
        assert!(a.contains(&Anomaly::GarbageValue {
            key: 1,
            value: 99,
            location: Location::Read { txn: 2 }
        }));
        assert!(a.contains(&Anomaly::GarbageValue {
            key: 1,
            value: 20,
            location: Location::Final
        }));
    }

    #[test]
    fn reordered_appends_of_one_writer() {
        // Nobody committed read key 1, so only the writer's own order shows
        // the final list is wrong.
        let h = vec![txn(1, Unknown, vec![ap(1, 10), ap(1, 11)])];
        assert_eq!(
            anomalies(&h, &finals(&[(1, &[11, 10])])),
            vec![Anomaly::ReorderedAppends {
                writer: 1,
                key: 1,
                earlier: 10,
                later: 11,
                location: Location::Final
            }]
        );
    }

    #[test]
    fn fractured_read_across_keys() {
        let h = vec![
            txn(1, Committed, vec![ap(1, 10), ap(2, 20)]),
            txn(2, Committed, vec![rd(1, &[10]), rd(2, &[])]),
        ];
        let a = anomalies(&h, &finals(&[(1, &[10]), (2, &[20])]));
        assert_eq!(
            a,
            vec![Anomaly::FracturedRead {
                location: Location::Read { txn: 2 },
                writer: 1,
                seen_key: 1,
                seen_value: 10,
                key: 2,
                missing: vec![20],
            }]
        );
    }

    #[test]
    fn fractured_read_within_one_key() {
        // 1 appended twice to key 1; 2 saw only the first. The final list
        // shows the second was committed, so the read is also a prefix.
        let h = vec![
            txn(1, Unknown, vec![ap(1, 10), ap(1, 11)]),
            txn(2, Committed, vec![rd(1, &[10])]),
        ];
        let a = anomalies(&h, &finals(&[(1, &[10, 11])]));
        assert_eq!(
            a,
            vec![Anomaly::FracturedRead {
                location: Location::Read { txn: 2 },
                writer: 1,
                seen_key: 1,
                seen_value: 10,
                key: 1,
                missing: vec![11],
            }]
        );
    }

    #[test]
    fn unknown_txn_half_applied_in_finals() {
        let h = vec![txn(1, Unknown, vec![ap(1, 10), ap(2, 20)])];
        let a = anomalies(&h, &finals(&[(1, &[]), (2, &[20])]));
        assert_eq!(
            a,
            vec![Anomaly::FracturedRead {
                location: Location::Final,
                writer: 1,
                seen_key: 2,
                seen_value: 20,
                key: 1,
                missing: vec![10],
            }]
        );
    }

    #[test]
    fn inconsistent_reread_within_txn() {
        let h = vec![
            txn(1, Committed, vec![ap(1, 10)]),
            txn(2, Unknown, vec![rd(1, &[]), ap(1, 11), rd(1, &[10, 11])]),
        ];
        let a = anomalies(&h, &finals(&[(1, &[10])]));
        assert!(a.contains(&Anomaly::InconsistentReread {
            txn: 2,
            key: 1,
            expected: vec![11],
            read: vec![10, 11],
        }));
    }

    #[test]
    fn own_appends_missing_or_out_of_place() {
        let h = vec![
            // Own append not visible.
            txn(1, Unknown, vec![ap(1, 10), rd(1, &[])]),
            // A future own append visible before it was made.
            txn(2, Unknown, vec![rd(2, &[20]), ap(2, 20)]),
        ];
        let a = anomalies(&h, &finals(&[(1, &[]), (2, &[])]));
        assert!(a.contains(&Anomaly::OwnAppendsNotVisible {
            txn: 1,
            key: 1,
            own: vec![10],
            read: vec![],
        }));
        assert!(a.contains(&Anomaly::OwnAppendsNotVisible {
            txn: 2,
            key: 2,
            own: vec![],
            read: vec![20],
        }));
    }

    #[test]
    fn all_anomalies_are_collected() {
        let h = vec![
            txn(1, Committed, vec![ap(1, 10), ap(2, 20)]),
            txn(2, Aborted, vec![ap(3, 30)]),
            txn(3, Committed, vec![rd(1, &[10]), rd(2, &[]), rd(3, &[30])]),
        ];
        let a = anomalies(&h, &finals(&[(1, &[10]), (2, &[20]), (3, &[])]));
        assert!(a.iter().any(|x| matches!(x, Anomaly::FracturedRead { .. })));
        assert!(a
            .iter()
            .any(|x| matches!(x, Anomaly::AbortedValueVisible { .. })));
        assert!(a
            .iter()
            .any(|x| matches!(x, Anomaly::ReadNotPrefixOfFinal { .. })));
    }

    #[test]
    fn anomalies_display_their_ids() {
        let h = vec![
            txn(41, Committed, vec![ap(1, 10), ap(2, 20)]),
            txn(42, Committed, vec![rd(1, &[10]), rd(2, &[])]),
        ];
        let a = anomalies(&h, &finals(&[(1, &[10]), (2, &[20])]));
        let text = a[0].to_string();
        assert!(text.starts_with("fractured read"), "{text}");
        assert!(text.contains("txn 41") && text.contains("txn 42"), "{text}");
        assert!(text.contains("[20]"), "{text}");
    }

    // ---- randomized: a simulated SI store, then mutations ----

    /// A serializable-snapshot store in memory: each txn reads from the
    /// commit state when it started, and commits only if no txn committed to
    /// a key it appended to since (first committer wins). Several txns are
    /// open at once, so histories look concurrent.
    struct Sim {
        rng: StdRng,
        keys: u64,
        next_value: u64,
        next_id: usize,
        /// Committed state and its version (bumped per commit).
        db: BTreeMap<u64, Vec<u64>>,
        version: u64,
        /// Version of the last commit that appended to each key.
        last_write: HashMap<u64, u64>,
        history: Vec<Txn>,
    }

    struct Open {
        id: usize,
        start: u64,
        snapshot: BTreeMap<u64, Vec<u64>>,
        ops: Vec<Op>,
        writes: BTreeMap<u64, Vec<u64>>,
    }

    impl Sim {
        fn run(seed: u64, txns: usize) -> (Vec<Txn>, BTreeMap<u64, Vec<u64>>) {
            let mut sim = Sim {
                rng: StdRng::seed_from_u64(seed),
                keys: 6,
                next_value: 1,
                next_id: 0,
                db: BTreeMap::new(),
                version: 0,
                last_write: HashMap::new(),
                history: Vec::new(),
            };
            let mut open: Vec<Open> = Vec::new();
            while sim.next_id < txns || !open.is_empty() {
                if sim.next_id < txns
                    && (open.is_empty() || (open.len() < 4 && sim.rng.random_bool(0.3)))
                {
                    open.push(Open {
                        id: sim.next_id,
                        start: sim.version,
                        snapshot: sim.db.clone(),
                        ops: Vec::new(),
                        writes: BTreeMap::new(),
                    });
                    sim.next_id += 1;
                    continue;
                }
                let i = sim.rng.random_range(0..open.len());
                if open[i].ops.len() >= 8 || sim.rng.random_bool(0.15) {
                    let t = open.swap_remove(i);
                    sim.finish(t);
                } else {
                    sim.step(&mut open[i]);
                }
            }
            let mut finals = sim.db;
            for k in 0..sim.keys {
                finals.entry(k).or_default();
            }
            sim.history.sort_by_key(|t| t.id);
            (sim.history, finals)
        }

        fn step(&mut self, t: &mut Open) {
            let key = self.rng.random_range(0..self.keys);
            if self.rng.random_bool(0.5) {
                let value = self.next_value;
                self.next_value += 1;
                t.writes.entry(key).or_default().push(value);
                t.ops.push(Op::Append { key, value });
            } else {
                let mut value = t.snapshot.get(&key).cloned().unwrap_or_default();
                value.extend(t.writes.get(&key).into_iter().flatten());
                t.ops.push(Op::Read { key, value });
            }
        }

        fn finish(&mut self, t: Open) {
            let roll = self.rng.random_range(0..10);
            let conflict = t
                .writes
                .keys()
                .any(|k| self.last_write.get(k).is_some_and(|v| *v > t.start));
            let outcome = match roll {
                // The client gave up, or the commit timed out before it
                // took effect.
                0 => Aborted,
                1 => Unknown,
                _ if conflict => Aborted,
                _ => {
                    self.version += 1;
                    for (k, values) in &t.writes {
                        self.db.entry(*k).or_default().extend(values);
                        self.last_write.insert(*k, self.version);
                    }
                    // Took effect, but the response was lost.
                    if roll == 2 {
                        Unknown
                    } else {
                        Committed
                    }
                }
            };
            self.history.push(Txn {
                id: t.id,
                ops: t.ops,
                outcome,
            });
        }
    }

    /// Committed reads of at least two values, as (txn position, op index).
    fn long_committed_reads(h: &[Txn]) -> Vec<(usize, usize)> {
        let mut out = Vec::new();
        for (p, t) in h.iter().enumerate() {
            if t.outcome != Committed {
                continue;
            }
            for (o, op) in t.ops.iter().enumerate() {
                if matches!(op, Op::Read { value, .. } if value.len() >= 2) {
                    out.push((p, o));
                }
            }
        }
        out
    }

    fn read_mut(h: &mut [Txn], (p, o): (usize, usize)) -> &mut Vec<u64> {
        match &mut h[p].ops[o] {
            Op::Read { value, .. } => value,
            Op::Append { .. } => unreachable!("positions come from long_committed_reads"),
        }
    }

    fn pick<T: Copy>(rng: &mut StdRng, items: &[T]) -> Option<T> {
        (!items.is_empty()).then(|| items[rng.random_range(0..items.len())])
    }

    #[test]
    fn randomized_si_histories_pass_and_mutations_are_caught() {
        let seed = crate::harness::seed_from_env();
        println!("list_append seed = {seed} (replay with NOKV_SEED={seed})");
        let mut rng = StdRng::seed_from_u64(seed);
        // How many times each mutation could be applied.
        let (mut dropped, mut swapped, mut injected, mut lost) = (0, 0, 0, 0);
        let mut total = CheckSummary::default();
        for round in 0..40 {
            let round_seed: u64 = rng.random();
            let ctx = format!("seed {seed}, round {round}");
            let (h, fin) = Sim::run(round_seed, 120);
            let s = check(&h, &fin).unwrap_or_else(|a| {
                panic!("{ctx}: valid history rejected: {}", a[0]);
            });
            total.committed += s.committed;
            total.aborted += s.aborted;
            total.unknown += s.unknown;
            total.reads += s.reads;
            total.nonempty_reads += s.nonempty_reads;
            total.appends += s.appends;
            total.final_values += s.final_values;

            let reads = long_committed_reads(&h);

            // Drop a non-last element of a committed read.
            if let Some(at) = pick(&mut rng, &reads) {
                let mut bad = h.clone();
                let list = read_mut(&mut bad, at);
                let i = rng.random_range(0..list.len() - 1);
                list.remove(i);
                let a = check(&bad, &fin).expect_err(&ctx);
                assert!(
                    a.iter().any(
                        |x| matches!(x, Anomaly::ReadNotPrefixOfFinal { index, .. } if *index == i)
                    ),
                    "{ctx}: dropped element not caught: {a:?}"
                );
                dropped += 1;
            }

            // Swap two elements of a committed read.
            if let Some(at) = pick(&mut rng, &reads) {
                let mut bad = h.clone();
                let list = read_mut(&mut bad, at);
                let j = rng.random_range(1..list.len());
                let i = rng.random_range(0..j);
                list.swap(i, j);
                let a = check(&bad, &fin).expect_err(&ctx);
                assert!(
                    a.iter().any(
                        |x| matches!(x, Anomaly::ReadNotPrefixOfFinal { index, .. } if *index == i)
                    ),
                    "{ctx}: swap not caught: {a:?}"
                );
                swapped += 1;
            }

            // Inject an aborted txn's value into a final list.
            let aborted: Vec<(usize, u64, u64)> = h
                .iter()
                .filter(|t| t.outcome == Aborted)
                .flat_map(|t| {
                    t.ops.iter().filter_map(move |op| match op {
                        Op::Append { key, value } => Some((t.id, *key, *value)),
                        Op::Read { .. } => None,
                    })
                })
                .collect();
            if let Some((writer, key, value)) = pick(&mut rng, &aborted) {
                let mut bad = fin.clone();
                let list = bad.entry(key).or_default();
                let i = rng.random_range(0..=list.len());
                list.insert(i, value);
                let a = check(&h, &bad).expect_err(&ctx);
                assert!(
                    a.contains(&Anomaly::AbortedValueVisible {
                        writer,
                        key,
                        value,
                        location: Location::Final
                    }),
                    "{ctx}: injected aborted value not caught: {a:?}"
                );
                injected += 1;
            }

            // Drop a committed append from the final lists.
            let committed: Vec<(usize, u64, u64)> = h
                .iter()
                .filter(|t| t.outcome == Committed)
                .flat_map(|t| {
                    t.ops.iter().filter_map(move |op| match op {
                        Op::Append { key, value } => Some((t.id, *key, *value)),
                        Op::Read { .. } => None,
                    })
                })
                .collect();
            if let Some((txn, key, value)) = pick(&mut rng, &committed) {
                let mut bad = fin.clone();
                bad.entry(key).or_default().retain(|v| *v != value);
                let a = check(&h, &bad).expect_err(&ctx);
                assert!(
                    a.contains(&Anomaly::LostAppend { txn, key, value }),
                    "{ctx}: lost append not caught: {a:?}"
                );
                lost += 1;
            }
        }
        println!("checked {total:?}; mutations: {dropped} dropped, {swapped} swapped, {injected} injected, {lost} lost");
        // The simulation must exercise every outcome and every mutation.
        assert!(
            total.committed > 0 && total.aborted > 0 && total.unknown > 0,
            "{total:?}"
        );
        assert!(total.nonempty_reads > 0, "{total:?}");
        assert!(dropped > 0 && swapped > 0 && injected > 0 && lost > 0);
    }
}
