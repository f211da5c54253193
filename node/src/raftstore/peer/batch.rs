//! Proposal batching: the writes one region receives during a raftstore
//! round are proposed as a single raft entry when the round ends. Under
//! concurrent load that turns N log appends, N raft messages per follower
//! and N applies into one of each; a lone write waits for nothing, since a
//! round ends as soon as the inbox is drained.
//!
//! Only data writes batch, and only with writes sent against the same
//! region epoch and peer (the header the combined entry carries). The
//! combined response is cut back into one response per write, in order; an
//! error for the entry (epoch changed, leader lost) goes to every write.
//! Each write keeps its own entry in the command's `writes` (its session
//! and how many requests are its), so apply can still tell the writes and
//! their sessions apart; the command's stamp is the largest of theirs.

use nokv_proto::errorpb::RegionError;
use nokv_proto::raft_cmdpb::{
    RaftCmdRequest, RaftCmdResponse, RaftRequestHeader, Request, SessionWrite,
};
use prost::Message as _;

use crate::raftstore::msg::CmdCallback;

/// Most writes combined into one entry.
pub const MAX_BATCH_COMMANDS: usize = 256;
/// Most encoded bytes combined into one entry (a larger write goes alone).
pub const MAX_BATCH_BYTES: usize = 512 * 1024;

/// Writes waiting for the end of the round.
#[derive(Default)]
pub struct ProposalBatch {
    header: Option<RaftRequestHeader>,
    requests: Vec<Request>,
    /// One entry per write, so apply can tell the writes (and their
    /// sessions) apart again.
    writes: Vec<SessionWrite>,
    /// The largest stamp of the writes, and the session policy they carry.
    stamp_ms: u64,
    session_idle_ms: u64,
    max_sessions: u32,
    /// Each write's callback and how many requests it added.
    callbacks: Vec<(usize, CmdCallback)>,
    bytes: usize,
}

impl ProposalBatch {
    /// Writes waiting.
    pub fn len(&self) -> usize {
        self.callbacks.len()
    }

    /// Nothing waits.
    pub fn is_empty(&self) -> bool {
        self.callbacks.is_empty()
    }

    /// Whether `cmd` may join the writes already waiting (otherwise they
    /// must be proposed first).
    pub fn fits(&self, cmd: &RaftCmdRequest) -> bool {
        self.is_empty()
            || (self.header == cmd.header
                && self.callbacks.len() < MAX_BATCH_COMMANDS
                && self.bytes + cmd.encoded_len() <= MAX_BATCH_BYTES)
    }

    /// Adds a data write (no admin request) and its callback.
    pub fn push(&mut self, cmd: RaftCmdRequest, cb: CmdCallback) {
        self.bytes += cmd.encoded_len();
        if self.header.is_none() {
            self.header = cmd.header;
        }
        let counted: usize = cmd.writes.iter().map(|w| w.requests as usize).sum();
        self.writes.extend(cmd.writes);
        if counted < cmd.requests.len() {
            self.writes.push(SessionWrite {
                session_id: 0,
                sequence: 0,
                requests: (cmd.requests.len() - counted) as u32,
            });
        }
        self.stamp_ms = self.stamp_ms.max(cmd.stamp_ms);
        self.session_idle_ms = self.session_idle_ms.max(cmd.session_idle_ms);
        self.max_sessions = self.max_sessions.max(cmd.max_sessions);
        self.callbacks.push((cmd.requests.len(), cb));
        self.requests.extend(cmd.requests);
    }

    /// The combined command and the callback that answers every write.
    pub fn take(&mut self) -> Option<(RaftCmdRequest, CmdCallback)> {
        if self.is_empty() {
            return None;
        }
        let batch = std::mem::take(self);
        let cmd = RaftCmdRequest {
            header: batch.header,
            requests: batch.requests,
            admin_request: None,
            writes: batch.writes,
            stamp_ms: batch.stamp_ms,
            session_idle_ms: batch.session_idle_ms,
            max_sessions: batch.max_sessions,
        };
        let mut callbacks = batch.callbacks;
        if callbacks.len() == 1 {
            let (_, cb) = callbacks.remove(0);
            return Some((cmd, cb));
        }
        Some((cmd, Box::new(move |r| split_response(r, callbacks))))
    }
}

/// Hands each write its slice of the combined response.
fn split_response(r: Result<RaftCmdResponse, RegionError>, callbacks: Vec<(usize, CmdCallback)>) {
    match r {
        Err(e) => {
            for (_, cb) in callbacks {
                cb(Err(e.clone()));
            }
        }
        Ok(resp) if resp.header.as_ref().is_some_and(|h| h.error.is_some()) => {
            for (_, cb) in callbacks {
                cb(Ok(RaftCmdResponse {
                    header: resp.header.clone(),
                    ..Default::default()
                }));
            }
        }
        Ok(resp) => {
            let mut responses = resp.responses.into_iter();
            for (n, cb) in callbacks {
                cb(Ok(RaftCmdResponse {
                    header: resp.header.clone(),
                    responses: responses.by_ref().take(n).collect(),
                    admin_response: None,
                }));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use nokv_proto::raft_cmdpb::{
        request, response, CompareAndSwapResponse, PutRequest, RaftResponseHeader, Response,
    };

    use super::*;

    fn put(key: &str, epoch_version: u64) -> RaftCmdRequest {
        RaftCmdRequest {
            header: Some(RaftRequestHeader {
                region_id: 1,
                region_epoch: Some(nokv_proto::metapb::RegionEpoch {
                    conf_ver: 1,
                    version: epoch_version,
                }),
                ..Default::default()
            }),
            requests: vec![Request {
                cmd: Some(request::Cmd::Put(PutRequest {
                    cf: "raw".into(),
                    key: key.as_bytes().to_vec(),
                    value: b"v".to_vec(),
                })),
            }],
            admin_request: None,
            ..Default::default()
        }
    }

    type Seen = Arc<Mutex<Vec<(usize, Result<RaftCmdResponse, RegionError>)>>>;

    fn recorder(seen: &Seen, i: usize) -> CmdCallback {
        let seen = seen.clone();
        Box::new(move |r| seen.lock().expect("lock").push((i, r)))
    }

    #[test]
    fn each_write_keeps_its_session_and_the_batch_takes_the_latest_stamp() {
        let mut b = ProposalBatch::default();
        let mut with_session = put("a", 1);
        with_session.writes = vec![SessionWrite {
            session_id: 77,
            sequence: 3,
            requests: 1,
        }];
        with_session.stamp_ms = 500;
        with_session.session_idle_ms = 60_000;
        b.push(with_session, Box::new(|_| {}));
        let mut later = put("b", 1);
        later.stamp_ms = 900;
        b.push(later, Box::new(|_| {}));
        let (cmd, _) = b.take().expect("a batch");
        assert_eq!(
            cmd.writes,
            vec![
                SessionWrite {
                    session_id: 77,
                    sequence: 3,
                    requests: 1
                },
                SessionWrite {
                    session_id: 0,
                    sequence: 0,
                    requests: 1
                }
            ]
        );
        assert_eq!(cmd.stamp_ms, 900);
        assert_eq!(cmd.session_idle_ms, 60_000);
    }

    #[test]
    fn writes_of_one_epoch_combine_and_each_gets_its_own_responses() {
        let seen: Seen = Arc::default();
        let mut b = ProposalBatch::default();
        let mut two = put("a", 1);
        two.requests.extend(put("b", 1).requests);
        b.push(two, recorder(&seen, 0));
        assert!(b.fits(&put("c", 1)));
        assert!(
            !b.fits(&put("c", 2)),
            "another epoch waits for its own entry"
        );
        b.push(put("c", 1), recorder(&seen, 1));
        assert_eq!(b.len(), 2);
        let (cmd, cb) = b.take().expect("a batch");
        assert!(b.is_empty() && b.take().is_none());
        assert_eq!(cmd.requests.len(), 3);
        let writes: Vec<u32> = cmd.writes.iter().map(|w| w.requests).collect();
        assert_eq!(writes, vec![2, 1], "apply can tell the two writes apart");
        let marked = |n: u8| Response {
            cmd: Some(response::Cmd::CompareAndSwap(CompareAndSwapResponse {
                previous_value: vec![n],
                ..Default::default()
            })),
            ..Default::default()
        };
        cb(Ok(RaftCmdResponse {
            header: Some(RaftResponseHeader::default()),
            responses: vec![marked(1), marked(2), marked(3)],
            admin_response: None,
        }));
        let seen = seen.lock().expect("lock");
        let got: Vec<(usize, Vec<Response>)> = seen
            .iter()
            .map(|(i, r)| (*i, r.clone().expect("ok").responses))
            .collect();
        assert_eq!(
            got,
            vec![(0, vec![marked(1), marked(2)]), (1, vec![marked(3)])]
        );
    }

    #[test]
    fn an_error_for_the_entry_reaches_every_write() {
        let seen: Seen = Arc::default();
        let mut b = ProposalBatch::default();
        b.push(put("a", 1), recorder(&seen, 0));
        b.push(put("b", 1), recorder(&seen, 1));
        let (_, cb) = b.take().expect("a batch");
        let err = RegionError {
            message: "epoch not match".into(),
            kind: None,
        };
        cb(Ok(RaftCmdResponse {
            header: Some(RaftResponseHeader {
                error: Some(err.clone()),
                ..Default::default()
            }),
            ..Default::default()
        }));
        let seen = seen.lock().expect("lock");
        assert_eq!(seen.len(), 2);
        for (_, r) in seen.iter() {
            let h = r.as_ref().expect("ok").header.clone().expect("header");
            assert_eq!(h.error, Some(err.clone()));
        }
    }

    #[test]
    fn size_and_count_limits_close_a_batch() {
        let seen: Seen = Arc::default();
        let mut b = ProposalBatch::default();
        for i in 0..MAX_BATCH_COMMANDS {
            assert!(b.fits(&put("k", 1)));
            b.push(put("k", 1), recorder(&seen, i));
        }
        assert!(!b.fits(&put("k", 1)));
        let mut big = put("k", 1);
        if let Some(request::Cmd::Put(p)) = big.requests[0].cmd.as_mut() {
            p.value = vec![0; MAX_BATCH_BYTES];
        }
        let mut fresh = ProposalBatch::default();
        assert!(fresh.fits(&big), "a large write goes alone");
        fresh.push(put("k", 1), recorder(&seen, 0));
        assert!(!fresh.fits(&big));
    }
}
