//! A Wing–Gong–Lowe linearizability checker for single-key register
//! histories.
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
    let ops: Vec<(bool, u32)> = history
        .iter()
        .map(|o| match &o.op {
            RegisterOp::Put(v) => (true, intern(v)),
            RegisterOp::Get(None) => (false, 0),
            RegisterOp::Get(Some(v)) => (false, intern(v)),
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
            let (is_put, value) = ops[e.op];
            let (ok, new_state) = if is_put {
                (true, value)
            } else {
                (state == value, state)
            };
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
