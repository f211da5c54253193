//! Tests of the peer driver: proposals, ReadIndex retries and timeouts,
//! lease reads.

use super::*;
use crate::engine::{self, CF_META, CF_RAFT};
use raft::prelude::{ConfState, MessageType};
use std::sync::{Arc, Mutex};

type Got = Arc<Mutex<Vec<std::result::Result<u64, ProposeError>>>>;
type Cb = Box<dyn FnOnce(std::result::Result<u64, ProposeError>) + Send>;

fn single_voter() -> (tempfile::TempDir, Arc<rocksdb::DB>, RaftPeer<u64>) {
    single_voter_with(RaftPeerConfig::new(1, 0))
}

/// Peer 1 of a fresh group of `voters`, on its own RocksDB.
fn peer_of(
    voters: Vec<u64>,
    cfg: RaftPeerConfig,
) -> (tempfile::TempDir, Arc<rocksdb::DB>, RaftPeer<u64>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = engine::open(dir.path(), &[CF_RAFT, CF_META]).expect("db");
    let cs = ConfState {
        voters,
        ..Default::default()
    };
    let log = RocksRaftLog::open(db.clone(), 9, cs, (0, 0), None).expect("log");
    let logger = slog::Logger::root(slog::Discard, slog::o!());
    let peer = RaftPeer::new(cfg, log, &logger).expect("peer");
    (dir, db, peer)
}

fn single_voter_with(cfg: RaftPeerConfig) -> (tempfile::TempDir, Arc<rocksdb::DB>, RaftPeer<u64>) {
    let (dir, db, mut peer) = peer_of(vec![1], cfg);
    peer.raw.campaign().expect("campaign");
    (dir, db, peer)
}

/// One raftstore-style round: persist, then apply every committed entry
/// by answering its proposal with the entry index.
fn round(db: &rocksdb::DB, peer: &mut RaftPeer<u64>) -> usize {
    peer.flush_reads();
    let mut wb = WriteBatch::default();
    let Some((pending, _msgs)) = peer.collect_ready(&mut wb).expect("ready") else {
        return 0;
    };
    db.write(wb).expect("persist");
    let mut apply_wb = WriteBatch::default();
    let out = peer.finish_ready(pending, &mut apply_wb).expect("finish");
    db.write(apply_wb).expect("apply");
    let n = out.committed.len();
    let mut last = 0;
    for e in out.committed {
        if let Some(cb) = peer.take_proposal(e.index, e.term) {
            cb(Ok(e.index));
        }
        last = e.index;
    }
    if last > 0 {
        peer.advance_apply(last);
    }
    n
}

fn recorder() -> (Got, Cb) {
    let got: Got = Arc::new(Mutex::new(Vec::new()));
    let g = got.clone();
    (got, Box::new(move |r| g.lock().unwrap().push(r)))
}

#[test]
fn proposal_is_answered_once_applied() {
    let (_d, db, mut peer) = single_voter();
    while round(&db, &mut peer) > 0 || peer.has_ready() {}
    assert!(peer.is_leader());
    let (got, cb) = recorder();
    peer.propose(b"x".to_vec(), cb);
    assert!(got.lock().unwrap().is_empty(), "not answered before apply");
    while peer.has_ready() {
        round(&db, &mut peer);
    }
    let got = got.lock().unwrap();
    assert_eq!(got.len(), 1);
    assert!(matches!(got[0], Ok(i) if i > 1));
}

#[test]
fn read_index_is_released_at_an_applied_index() {
    let (_d, db, mut peer) = single_voter();
    while peer.has_ready() {
        round(&db, &mut peer);
    }
    let (got, cb) = recorder();
    peer.read_index(cb);
    for _ in 0..5 {
        round(&db, &mut peer);
        peer.advance_apply(peer.raw.raft.raft_log.applied);
    }
    let got = got.lock().unwrap();
    assert_eq!(got.len(), 1, "exactly one answer");
    assert!(got[0].is_ok());
}

#[test]
fn a_read_round_grants_a_lease_but_not_once_a_transfer_started() {
    let mut cfg = RaftPeerConfig::new(1, 0);
    cfg.lease = Some(std::time::Duration::from_secs(600));
    let (_d, db, mut peer) = single_voter_with(cfg);
    while peer.has_ready() {
        round(&db, &mut peer);
    }
    let (_, cb) = recorder();
    let cb = peer.try_lease_read(cb).expect("no lease before a round");
    peer.read_index(cb);
    round(&db, &mut peer);
    let (got, cb) = recorder();
    assert!(peer.try_lease_read(cb).is_none(), "served from the lease");
    assert!(matches!(got.lock().unwrap().as_slice(), [Ok(_)]));

    // Peer 2 is not a member, so raft-rs ignores the transfer and this
    // peer keeps leading in the same term; still, a round sent from now
    // on must not grant a lease.
    peer.transfer_leader(2);
    let (_, cb) = recorder();
    let cb = peer
        .try_lease_read(cb)
        .expect("the transfer ended the lease");
    peer.read_index(cb);
    round(&db, &mut peer);
    assert!(peer.is_leader());
    let (_, cb) = recorder();
    assert!(
        peer.try_lease_read(cb).is_some(),
        "a round sent during a transfer granted a lease"
    );
}

#[test]
fn reads_in_one_round_share_one_read_index() {
    let (_d, db, mut peer) = single_voter();
    while peer.has_ready() {
        round(&db, &mut peer);
    }
    let mut all = Vec::new();
    for _ in 0..5 {
        let (got, cb) = recorder();
        peer.read_index(cb);
        all.push(got);
    }
    let before = peer.next_read_id;
    round(&db, &mut peer);
    for _ in 0..5 {
        round(&db, &mut peer);
        peer.advance_apply(peer.raw.raft.raft_log.applied);
    }
    assert_eq!(
        peer.next_read_id, before,
        "one raft ReadIndex for the batch"
    );
    for got in all {
        assert!(matches!(got.lock().unwrap().as_slice(), [Ok(_)]));
    }
}

#[test]
fn follower_answers_proposals_and_reads_with_not_leader_at_once() {
    let (_dir, _db, mut peer) = peer_of(vec![1, 2, 3], RaftPeerConfig::new(1, 0));
    let (got, cb) = recorder();
    peer.propose(b"x".to_vec(), cb);
    assert_eq!(
        got.lock().unwrap()[0],
        Err(ProposeError::NotLeader { leader_id: 0 })
    );
    let (got, cb) = recorder();
    peer.read_index(cb);
    assert_eq!(
        got.lock().unwrap().len(),
        1,
        "answered at once, not left hanging"
    );
}

/// Peer 1 of three voters, made leader by hand; nobody else answers.
fn lone_leader_of_three(
    cfg: RaftPeerConfig,
) -> (tempfile::TempDir, Arc<rocksdb::DB>, RaftPeer<u64>) {
    let (dir, db, mut peer) = peer_of(vec![1, 2, 3], cfg);
    peer.raw.raft.become_candidate();
    peer.raw.raft.become_leader();
    (dir, db, peer)
}

/// A round that returns the messages raft wants sent.
fn round_with_messages(db: &rocksdb::DB, peer: &mut RaftPeer<u64>) -> Vec<Message> {
    peer.flush_reads();
    let mut wb = WriteBatch::default();
    let Some((pending, mut msgs)) = peer.collect_ready(&mut wb).expect("ready") else {
        return Vec::new();
    };
    db.write(wb).expect("persist");
    let mut apply_wb = WriteBatch::default();
    let out = peer.finish_ready(pending, &mut apply_wb).expect("finish");
    db.write(apply_wb).expect("apply");
    if let Some(last) = out.committed.last() {
        peer.advance_apply(last.index);
    }
    msgs.extend(out.messages);
    msgs
}

fn read_heartbeat_to_2(msgs: &[Message]) -> Option<Message> {
    msgs.iter()
        .find(|m| {
            m.get_msg_type() == MessageType::MsgHeartbeat && m.to == 2 && !m.context.is_empty()
        })
        .cloned()
}

#[test]
fn a_read_index_raft_dropped_is_sent_again_and_then_answered() {
    let mut cfg = RaftPeerConfig::new(1, 0);
    cfg.read_retry_ticks = 2;
    let (_d, db, mut peer) = lone_leader_of_three(cfg);
    round_with_messages(&db, &mut peer);
    // Nothing of this term is committed yet: raft-rs drops the read
    // without a word.
    let (got, cb) = recorder();
    peer.read_index(cb);
    let msgs = round_with_messages(&db, &mut peer);
    assert!(
        read_heartbeat_to_2(&msgs).is_none(),
        "raft-rs kept the read"
    );
    // Peer 2 acknowledges the leader's entry: it commits.
    let raft = &peer.raw.raft;
    let (term, last) = (raft.term, raft.raft_log.last_index());
    let mut ack = Message::default();
    ack.set_msg_type(MessageType::MsgAppendResponse);
    (ack.from, ack.to, ack.term, ack.index) = (2, 1, term, last);
    peer.step(ack).expect("step");
    round_with_messages(&db, &mut peer);
    assert_eq!(peer.raw.raft.raft_log.committed, last);
    assert!(
        got.lock().unwrap().is_empty(),
        "the dropped read still waits"
    );
    // The retry sends the read again; peer 2's answer releases it.
    let mut heartbeat = None;
    for _ in 0..3 {
        peer.tick();
        heartbeat = read_heartbeat_to_2(&round_with_messages(&db, &mut peer));
        if heartbeat.is_some() {
            break;
        }
    }
    let heartbeat = heartbeat.expect("the read was sent again within the retry interval");
    let mut reply = Message::default();
    reply.set_msg_type(MessageType::MsgHeartbeatResponse);
    (reply.from, reply.to, reply.term) = (2, 1, term);
    reply.context = heartbeat.context;
    peer.step(reply).expect("step");
    round_with_messages(&db, &mut peer);
    let got = got.lock().unwrap();
    assert_eq!(got.len(), 1);
    assert!(matches!(got[0], Ok(i) if i == last), "{:?}", got[0]);
}

#[test]
fn a_read_index_that_never_gets_a_quorum_times_out() {
    let mut cfg = RaftPeerConfig::new(1, 0);
    cfg.read_retry_ticks = 2;
    cfg.request_timeout_ticks = 6;
    let (_d, db, mut peer) = lone_leader_of_three(cfg);
    round_with_messages(&db, &mut peer);
    let (got, cb) = recorder();
    peer.read_index(cb);
    round_with_messages(&db, &mut peer);
    for _ in 0..5 {
        peer.tick();
        round_with_messages(&db, &mut peer);
    }
    assert!(
        got.lock().unwrap().is_empty(),
        "answered before the timeout"
    );
    peer.tick();
    assert!(peer.is_leader(), "check-quorum has not stepped it down yet");
    assert_eq!(
        got.lock().unwrap().as_slice(),
        &[Err(ProposeError::TimedOut)]
    );
}
