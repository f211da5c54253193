//! A Wing–Gong–Lowe linearizability checker for single-key register
//! histories: puts, gets and compare-and-swaps.
//!
//! Each operation has an invoke time and a completion time; an operation
//! whose outcome is unknown (the client timed out) completes at
//! `u64::MAX`: it may have taken effect at any point after its invocation,
//! or never. The search linearizes operations one at a time in an order
//! consistent with real time, backtracking when a read disagrees with the
//! register, and memoizes (set of linearized operations, register value)
//! pairs it has already explored (Lowe's improvement).

use std::collections::{HashMap, HashSet};

/// What an operation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegisterOp {
    /// Wrote the value.
    Put(Vec<u8>),
    /// Read the value (`None`: the key was absent).
    Get(Option<Vec<u8>>),
    /// Set the register to `new` if it held `expected` (`None`: absent).
    Cas {
        /// The value it had to hold.
        expected: Option<Vec<u8>>,
        /// The value it was set to.
        new: Vec<u8>,
        /// Whether it swapped and the value it found; `None` when the
        /// outcome is unknown (then it may have swapped, or not).
        outcome: Option<(bool, Option<Vec<u8>>)>,
    },
}

/// An operation with its values interned (0 = absent).
#[derive(Clone, Copy)]
enum Step {
    Put(u32),
    Get(u32),
    Cas {
        expected: u32,
        new: u32,
        outcome: Option<(bool, u32)>,
    },
}

impl Step {
    /// Whether the operation can take effect on a register holding
    /// `state`, and the state after it.
    fn apply(self, state: u32) -> (bool, u32) {
        match self {
            Step::Put(v) => (true, v),
            Step::Get(v) => (state == v, state),
            Step::Cas {
                expected,
                new,
                outcome: None,
            } => (true, if state == expected { new } else { state }),
            Step::Cas {
                expected,
                new,
                outcome: Some((true, found)),
            } => (state == expected && found == expected, new),
            Step::Cas {
                expected,
                outcome: Some((false, found)),
                ..
            } => (state != expected && state == found, state),
        }
    }
}

/// One operation of a history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    /// Which client issued it (for messages only).
    pub client: usize,
    /// The operation and its result.
    pub op: RegisterOp,
    /// When it was invoked.
    pub invoke: u64,
    /// When it completed; `u64::MAX` when the outcome is unknown.
    pub complete: u64,
}

#[derive(Clone, Copy)]
struct Entry {
    op: usize,
    is_call: bool,
    prev: usize,
    next: usize,
}

/// Whether `history` is linearizable for a register that starts absent.
pub fn is_linearizable(history: &[Operation]) -> bool {
    let n = history.len();
    if n == 0 {
        return true;
    }
    // Intern values so register states are small integers (0 = absent).
    let mut ids: HashMap<Vec<u8>, u32> = HashMap::new();
    let mut intern = |v: &Vec<u8>| -> u32 {
        let next = ids.len() as u32 + 1;
        *ids.entry(v.clone()).or_insert(next)
    };
    let mut intern_opt = |v: &Option<Vec<u8>>| v.as_ref().map_or(0, &mut intern);
    let ops: Vec<Step> = history
        .iter()
        .map(|o| match &o.op {
            RegisterOp::Put(v) => Step::Put(intern_opt(&Some(v.clone()))),
            RegisterOp::Get(v) => Step::Get(intern_opt(v)),
            RegisterOp::Cas {
                expected,
                new,
                outcome,
            } => Step::Cas {
                expected: intern_opt(expected),
                new: intern_opt(&Some(new.clone())),
                outcome: outcome
                    .as_ref()
                    .map(|(swapped, found)| (*swapped, intern_opt(found))),
            },
        })
        .collect();

    // Events sorted by time; calls before returns at equal times.
    let mut events: Vec<(u64, bool, usize)> = Vec::with_capacity(2 * n);
    for (i, o) in history.iter().enumerate() {
        events.push((o.invoke, true, i));
        events.push((o.complete, false, i));
    }
    events.sort_by_key(|(t, is_call, i)| (*t, !*is_call, *i));

    // A doubly linked list over the events, with a head sentinel at index 0.
    let head = 0;
    let mut list: Vec<Entry> = Vec::with_capacity(2 * n + 1);
    list.push(Entry {
        op: usize::MAX,
        is_call: false,
        prev: usize::MAX,
        next: 1,
    });
    let mut call_at = vec![0usize; n];
    let mut ret_at = vec![0usize; n];
    for (k, (_, is_call, op)) in events.iter().enumerate() {
        let idx = k + 1;
        let next = if k + 1 == events.len() {
            usize::MAX
        } else {
            idx + 1
        };
        list.push(Entry {
            op: *op,
            is_call: *is_call,
            prev: idx - 1,
            next,
        });
        if *is_call {
            call_at[*op] = idx;
        } else {
            ret_at[*op] = idx;
        }
    }

    let unlink = |list: &mut Vec<Entry>, idx: usize| {
        let Entry { prev, next, .. } = list[idx];
        list[prev].next = next;
        if next != usize::MAX {
            list[next].prev = prev;
        }
    };
    let relink = |list: &mut Vec<Entry>, idx: usize| {
        let Entry { prev, next, .. } = list[idx];
        list[prev].next = idx;
        if next != usize::MAX {
            list[next].prev = idx;
        }
    };

    let words = n.div_ceil(64);
    let mut linearized = vec![0u64; words];
    let mut cache: HashSet<(Vec<u64>, u32)> = HashSet::new();
    let mut stack: Vec<(usize, u32)> = Vec::new();
    let mut state: u32 = 0;
    let mut entry = list[head].next;
    loop {
        if list[head].next == usize::MAX {
            return true;
        }
        if entry == usize::MAX {
            // Walked past every remaining call without progress.
            match stack.pop() {
                None => return false,
                Some((op, prev_state)) => {
                    state = prev_state;
                    linearized[op / 64] &= !(1 << (op % 64));
                    relink(&mut list, ret_at[op]);
                    relink(&mut list, call_at[op]);
                    entry = list[call_at[op]].next;
                    continue;
                }
            }
        }
        let e = list[entry];
        if e.is_call {
            let (ok, new_state) = ops[e.op].apply(state);
            if ok {
                let mut next_lin = linearized.clone();
                next_lin[e.op / 64] |= 1 << (e.op % 64);
                if cache.insert((next_lin.clone(), new_state)) {
                    stack.push((e.op, state));
                    state = new_state;
                    linearized = next_lin;
                    unlink(&mut list, call_at[e.op]);
                    unlink(&mut list, ret_at[e.op]);
                    entry = list[head].next;
                    continue;
                }
            }
            entry = e.next;
        } else {
            // A return whose call is not linearized yet: backtrack.
            match stack.pop() {
                None => return false,
                Some((op, prev_state)) => {
                    state = prev_state;
                    linearized[op / 64] &= !(1 << (op % 64));
                    relink(&mut list, ret_at[op]);
                    relink(&mut list, call_at[op]);
                    entry = list[call_at[op]].next;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(v: &str, invoke: u64, complete: u64) -> Operation {
        Operation {
            client: 0,
            op: RegisterOp::Put(v.as_bytes().to_vec()),
            invoke,
            complete,
        }
    }
    fn get(v: Option<&str>, invoke: u64, complete: u64) -> Operation {
        Operation {
            client: 1,
            op: RegisterOp::Get(v.map(|s| s.as_bytes().to_vec())),
            invoke,
            complete,
        }
    }

    #[test]
    fn sequential_and_concurrent_histories_that_are_linearizable() {
        assert!(is_linearizable(&[]));
        assert!(is_linearizable(&[put("a", 0, 10), get(Some("a"), 20, 30)]));
        assert!(is_linearizable(&[
            get(None, 0, 5),
            put("a", 10, 20),
            get(Some("a"), 25, 30)
        ]));
        // A read concurrent with a write may see either value.
        assert!(is_linearizable(&[
            put("a", 0, 10),
            put("b", 20, 40),
            get(Some("a"), 25, 30)
        ]));
        assert!(is_linearizable(&[
            put("a", 0, 10),
            put("b", 20, 40),
            get(Some("b"), 25, 30)
        ]));
        // Concurrent writes may land in either order.
        assert!(is_linearizable(&[
            put("1", 0, 100),
            put("2", 0, 100),
            get(Some("1"), 110, 120),
            get(Some("1"), 130, 140),
        ]));
    }

    #[test]
    fn stale_and_invented_reads_are_caught() {
        // The write completed before the read began: the read must see it.
        assert!(!is_linearizable(&[put("a", 0, 10), get(None, 20, 30)]));
        // A value nobody wrote.
        assert!(!is_linearizable(&[put("a", 0, 10), get(Some("z"), 20, 30)]));
        // Two later reads disagree on the order of two concurrent writes.
        assert!(!is_linearizable(&[
            put("1", 0, 100),
            put("2", 0, 100),
            get(Some("2"), 110, 120),
            get(Some("1"), 130, 140),
        ]));
        // Reading the older value after the newer one was observed.
        assert!(!is_linearizable(&[
            put("a", 0, 10),
            put("b", 20, 30),
            get(Some("b"), 40, 50),
            get(Some("a"), 60, 70),
        ]));
    }

    #[test]
    fn unknown_outcomes_may_or_may_not_have_happened() {
        // A timed-out write may have applied...
        assert!(is_linearizable(&[
            put("a", 0, u64::MAX),
            get(Some("a"), 50, 60)
        ]));
        // ...or not.
        assert!(is_linearizable(&[put("a", 0, u64::MAX), get(None, 50, 60)]));
        // But not before it was invoked.
        assert!(!is_linearizable(&[
            get(Some("a"), 0, 10),
            put("a", 20, u64::MAX)
        ]));
        // Nor un-happen once seen.
        assert!(!is_linearizable(&[
            put("a", 0, u64::MAX),
            get(Some("a"), 50, 60),
            get(None, 70, 80),
        ]));
    }

    fn cas(
        expected: Option<&str>,
        new: &str,
        outcome: Option<(bool, Option<&str>)>,
        invoke: u64,
        complete: u64,
    ) -> Operation {
        Operation {
            client: 2,
            op: RegisterOp::Cas {
                expected: expected.map(|s| s.as_bytes().to_vec()),
                new: new.as_bytes().to_vec(),
                outcome: outcome.map(|(ok, found)| (ok, found.map(|s| s.as_bytes().to_vec()))),
            },
            invoke,
            complete,
        }
    }

    #[test]
    fn compare_and_swaps_are_checked_against_the_register() {
        // A swap from absent, seen by a later read.
        assert!(is_linearizable(&[
            cas(None, "a", Some((true, None)), 0, 10),
            get(Some("a"), 20, 30),
        ]));
        // A failed swap reports the value it found.
        assert!(is_linearizable(&[
            put("a", 0, 10),
            cas(Some("x"), "b", Some((false, Some("a"))), 20, 30),
            get(Some("a"), 40, 50),
        ]));
        // A failed swap must not have changed anything.
        assert!(!is_linearizable(&[
            put("a", 0, 10),
            cas(Some("x"), "b", Some((false, Some("a"))), 20, 30),
            get(Some("b"), 40, 50),
        ]));
        // A swap reported as failed that found its own new value: the
        // signature of a retried swap whose first attempt applied.
        assert!(!is_linearizable(&[
            put("a", 0, 10),
            cas(Some("a"), "b", Some((false, Some("b"))), 20, 30),
        ]));
        // A swap cannot succeed against a value the register did not hold.
        assert!(!is_linearizable(&[
            put("a", 0, 10),
            cas(Some("z"), "b", Some((true, Some("z"))), 20, 30),
        ]));
        // An unknown swap may have happened (if the register held its
        // expected value) or not.
        assert!(is_linearizable(&[
            put("a", 0, 10),
            cas(Some("a"), "b", None, 20, u64::MAX),
            get(Some("b"), 40, 50),
        ]));
        assert!(is_linearizable(&[
            put("a", 0, 10),
            cas(Some("a"), "b", None, 20, u64::MAX),
            get(Some("a"), 40, 50),
        ]));
        assert!(!is_linearizable(&[
            put("a", 0, 10),
            cas(Some("x"), "b", None, 20, u64::MAX),
            get(Some("b"), 40, 50),
        ]));
    }

    #[test]
    fn a_put_that_took_effect_twice_is_caught() {
        // The history of the exactly-once issue: v1 is read, v2 is written
        // and read, then v1 is back; its put, retried inside the SDK,
        // was still running, but one put cannot take effect twice.
        assert!(!is_linearizable(&[
            put("v1", 0, 100),
            get(Some("v1"), 30, 35),
            put("v2", 50, 60),
            get(Some("v2"), 61, 62),
            get(Some("v1"), 63, 64),
        ]));
    }

    #[test]
    fn a_long_sequential_history_checks_quickly() {
        let mut h = Vec::new();
        for i in 0..500u64 {
            h.push(put(&i.to_string(), i * 10, i * 10 + 3));
            h.push(get(Some(&i.to_string()), i * 10 + 5, i * 10 + 8));
        }
        assert!(is_linearizable(&h));
        h.push(get(Some("3"), 10_000, 10_001));
        assert!(!is_linearizable(&h));
    }
}
