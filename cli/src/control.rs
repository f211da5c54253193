//! Manual topology control: `split`, `merge`, `transfer-leader`,
//! `add-peer` and `remove-peer`. Each finds the region's leader through the coordinator,
//! calls the leader store's Admin service (following NotLeader hints), and
//! reports what happened.

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail};
use nokv_client::CoordinatorClient;
use nokv_proto::adminpb::admin_client::AdminClient;
use nokv_proto::adminpb::{
    ChangePeerRequest, MergeRegionRequest, PeerChange, RegionStatusRequest, SplitRegionRequest,
    TransferLeaderRequest,
};
use nokv_proto::errorpb::{region_error::Kind, RegionError};
use nokv_proto::metapb::{Peer, PeerRole, Region};
use serde::Serialize;
use tonic::transport::Channel;

use crate::inspect::{region_row, RegionRow};
use crate::output::{self, Format};

/// Finds and talks to a region's leader store.
struct Leader<'a> {
    coordinator: &'a CoordinatorClient,
    region_id: u64,
    store_id: u64,
    deadline: Instant,
}

impl<'a> Leader<'a> {
    async fn find(
        coordinator: &'a CoordinatorClient,
        region_id: u64,
    ) -> anyhow::Result<Leader<'a>> {
        let deadline = Instant::now() + coordinator.timeout();
        loop {
            let r = coordinator.get_region_by_id(region_id).await?;
            if let Some(l) = r.leader.filter(|l| l.store_id != 0) {
                return Ok(Leader {
                    coordinator,
                    region_id,
                    store_id: l.store_id,
                    deadline,
                });
            }
            if Instant::now() > deadline {
                bail!("region {region_id} has no known leader");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Wraps `msg` with the time left before the deadline.
    fn request<T>(&self, msg: T) -> tonic::Request<T> {
        let mut r = tonic::Request::new(msg);
        r.set_timeout(
            self.deadline
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(100)),
        );
        r
    }

    async fn client(&self) -> anyhow::Result<AdminClient<Channel>> {
        let store = self.coordinator.get_store(self.store_id).await?;
        let addr = store
            .store
            .map(|s| s.address)
            .ok_or_else(|| anyhow!("store {} unknown", self.store_id))?;
        let ch = self.coordinator.channel_to(&addr, Duration::from_secs(2))?;
        Ok(AdminClient::new(ch))
    }

    /// Follows a NotLeader hint; returns false when the error is final.
    async fn follow(&mut self, e: &RegionError) -> bool {
        match &e.kind {
            Some(Kind::NotLeader(nl)) if Instant::now() < self.deadline => {
                match nl.leader {
                    Some(l) if l.store_id != 0 => self.store_id = l.store_id,
                    _ => {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        if let Ok(l) = Leader::find(self.coordinator, self.region_id).await {
                            self.store_id = l.store_id;
                        }
                    }
                }
                true
            }
            _ => false,
        }
    }
}

fn region_error(e: RegionError) -> anyhow::Error {
    anyhow!("region error: {}", e.message)
}

/// `nokv split`
pub async fn split(
    coordinator: &CoordinatorClient,
    region_id: u64,
    key: Option<String>,
    half: bool,
    format: Format,
) -> anyhow::Result<()> {
    if key.is_some() == half {
        bail!("give exactly one of --key and --half");
    }
    let mut leader = Leader::find(coordinator, region_id).await?;
    loop {
        let resp = leader
            .client()
            .await?
            .split_region(leader.request(SplitRegionRequest {
                region_id,
                split_key: key.clone().unwrap_or_default().into_bytes(),
                half,
            }))
            .await?
            .into_inner();
        match resp.region_error {
            Some(e) if leader.follow(&e).await => continue,
            Some(e) => return Err(region_error(e)),
            None => return print_regions(&resp.regions, leader.store_id, format),
        }
    }
}

/// `nokv merge`: asks the source region's leader store to fold the source
/// into the adjacent target, and prints the grown target once the merge
/// committed. The store waits up to 30 s for the commit.
pub async fn merge(
    coordinator: &CoordinatorClient,
    source: u64,
    target: u64,
    format: Format,
) -> anyhow::Result<()> {
    if source == target {
        bail!("--source and --target must name two different regions");
    }
    let mut leader = Leader::find(coordinator, source).await?;
    loop {
        let mut req = tonic::Request::new(MergeRegionRequest {
            source_region_id: source,
            target_region_id: target,
        });
        req.set_timeout(Duration::from_secs(40));
        let resp = leader.client().await?.merge_region(req).await?.into_inner();
        match resp.region_error {
            Some(e) if leader.follow(&e).await => continue,
            Some(e) => return Err(region_error(e)),
            None => {
                let region = resp
                    .region
                    .ok_or_else(|| anyhow!("the store answered without the merged region"))?;
                return print_regions(&[region], leader.store_id, format);
            }
        }
    }
}

fn print_regions(regions: &[Region], leader_store: u64, format: Format) -> anyhow::Result<()> {
    let rows: Vec<RegionRow> = regions
        .iter()
        .map(|r| {
            let leader = r.peers.iter().find(|p| p.store_id == leader_store);
            region_row(r, leader, &[])
        })
        .collect();
    crate::inspect::emit_regions(&rows, format)
}

#[derive(Serialize)]
struct TransferOutcome {
    region_id: u64,
    from_store_id: u64,
    to_store_id: u64,
    leader_store_id: u64,
    took_ms: u64,
}

/// `nokv transfer-leader`: starts the transfer, then waits until the
/// coordinator sees the new leader.
pub async fn transfer_leader(
    coordinator: &CoordinatorClient,
    region_id: u64,
    to_store: u64,
    format: Format,
) -> anyhow::Result<()> {
    let start = Instant::now();
    let mut leader = Leader::find(coordinator, region_id).await?;
    let from = leader.store_id;
    if from != to_store {
        loop {
            let resp = leader
                .client()
                .await?
                .transfer_leader(leader.request(TransferLeaderRequest {
                    region_id,
                    to_store_id: to_store,
                }))
                .await?
                .into_inner();
            match resp.region_error {
                Some(e) if leader.follow(&e).await => continue,
                Some(e) => return Err(region_error(e)),
                None => break,
            }
        }
    }
    let now_leader = loop {
        let r = coordinator.get_region_by_id(region_id).await?;
        let store = r.leader.map(|l| l.store_id).unwrap_or(0);
        if store == to_store {
            break store;
        }
        if Instant::now() > leader.deadline {
            bail!("leadership of region {region_id} did not move to store {to_store} in time (leader is on store {store})");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let out = TransferOutcome {
        region_id,
        from_store_id: from,
        to_store_id: to_store,
        leader_store_id: now_leader,
        took_ms: start.elapsed().as_millis() as u64,
    };
    output::emit(format, &out, || {
        let mut t = output::table(&["REGION", "FROM STORE", "TO STORE", "LEADER NOW", "TOOK"]);
        t.add_row(vec![
            out.region_id.to_string(),
            out.from_store_id.to_string(),
            out.to_store_id.to_string(),
            out.leader_store_id.to_string(),
            format!("{} ms", out.took_ms),
        ]);
        t
    })
}

async fn change_peer(
    leader: &mut Leader<'_>,
    change: PeerChange,
    store_id: u64,
    peer_id: u64,
) -> anyhow::Result<Region> {
    loop {
        let resp = leader
            .client()
            .await?
            .change_peer(leader.request(ChangePeerRequest {
                region_id: leader.region_id,
                change: change as i32,
                store_id,
                peer_id,
            }))
            .await?
            .into_inner();
        match resp.region_error {
            Some(e) if leader.follow(&e).await => continue,
            Some(e) => return Err(region_error(e)),
            None => {
                return resp
                    .region
                    .ok_or_else(|| anyhow!("no region in the answer"))
            }
        }
    }
}

/// `nokv add-peer`: adds a learner on the store and, unless `learner_only`,
/// promotes it once the leader reports it caught up.
pub async fn add_peer(
    coordinator: &CoordinatorClient,
    region_id: u64,
    store_id: u64,
    learner_only: bool,
    format: Format,
) -> anyhow::Result<()> {
    let mut leader = Leader::find(coordinator, region_id).await?;
    let region = change_peer(&mut leader, PeerChange::AddLearner, store_id, 0).await?;
    let peer: Peer = *region
        .peers
        .iter()
        .find(|p| p.store_id == store_id)
        .ok_or_else(|| anyhow!("the new peer is missing from the region"))?;
    let region = if learner_only || peer.role() == PeerRole::Voter {
        region
    } else {
        loop {
            let status = leader
                .client()
                .await?
                .region_status(leader.request(RegionStatusRequest { region_id }))
                .await?
                .into_inner();
            let caught_up = status
                .regions
                .first()
                .is_some_and(|s| s.is_leader && !s.pending_peers.iter().any(|p| p.id == peer.id));
            if caught_up {
                break;
            }
            if Instant::now() > leader.deadline {
                bail!(
                    "peer {} on store {store_id} did not catch up in time; it stays a learner",
                    peer.id
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        change_peer(&mut leader, PeerChange::AddVoter, store_id, peer.id).await?
    };
    print_regions(&[region], leader.store_id, format)
}

/// `nokv remove-peer`
pub async fn remove_peer(
    coordinator: &CoordinatorClient,
    region_id: u64,
    store_id: u64,
    format: Format,
) -> anyhow::Result<()> {
    let mut leader = Leader::find(coordinator, region_id).await?;
    let region = change_peer(&mut leader, PeerChange::Remove, store_id, 0).await?;
    print_regions(&[region], leader.store_id, format)
}
