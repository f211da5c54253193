//! Stores: registration (`PutStore`), heartbeats, lookups with the live
//! state the leader works out, and decommissioning (`DeleteStore`).

use std::time::Instant;

use nokv_proto::coordinatorpb::coordinator_command::Cmd;
use nokv_proto::coordinatorpb::{
    DeleteStoreRequest, DeleteStoreResponse, ErrorType, GetAllStoresRequest, GetAllStoresResponse,
    GetStoreRequest, GetStoreResponse, PutStoreRequest, PutStoreResponse, StoreHeartbeatRequest,
    StoreHeartbeatResponse,
};
use nokv_proto::metapb::{Store, StoreState};
use tonic::Status;
use tracing::info;

use super::{refused, Answer, CoordinatorService};
use crate::state::ApplyResult;

impl CoordinatorService {
    /// `PutStore` (leader only): registers a store or updates its address;
    /// a store being decommissioned stays Offline, a tombstone is refused.
    pub(super) async fn put_store(&self, req: PutStoreRequest) -> Answer<PutStoreResponse> {
        let Some(mut store) = req.store else {
            return Err(Status::invalid_argument("missing store").into());
        };
        if store.id == 0 || store.address.is_empty() {
            return Err(Status::invalid_argument("store id and address are required").into());
        }
        self.require_leader()?;
        let conflict = self.raft.read_state(|s| {
            s.stores.values().any(|o| {
                o.id != store.id && o.address == store.address && o.state() != StoreState::Tombstone
            })
        });
        if conflict {
            return Err(refused(
                ErrorType::InvalidArgument,
                format!("address {} is used by another store", store.address),
            ));
        }
        // A store being decommissioned stays Offline when it restarts.
        let offline = self.raft.read_state(|s| {
            s.stores
                .get(&store.id)
                .is_some_and(|o| o.state() == StoreState::Offline)
        });
        store.state = if offline {
            StoreState::Offline
        } else {
            StoreState::Up
        } as i32;
        store.last_heartbeat_ms = 0;
        let id = store.id;
        let res = self.raft.propose(Cmd::PutStore(store)).await;
        match res.map_err(|e| self.error(e))? {
            ApplyResult::Ok => {
                self.view.touch_store(id, None, Instant::now());
                Ok(PutStoreResponse::default())
            }
            ApplyResult::StoreTombstone => Err(refused(
                ErrorType::StoreTombstone,
                format!("store {id} is a tombstone"),
            )),
            other => Err(refused(ErrorType::Unknown, format!("{other:?}"))),
        }
    }

    /// `GetStore`: one store with its live state and stats.
    pub(super) async fn get_store(&self, req: GetStoreRequest) -> Answer<GetStoreResponse> {
        let id = req.store_id;
        let Some(store) = self.raft.read_state(|s| s.stores.get(&id).cloned()) else {
            return Err(refused(
                ErrorType::NotFound,
                format!("store {id} not found"),
            ));
        };
        let info = self.store_info(&store);
        Ok(GetStoreResponse {
            header: None,
            store: info.store,
            stats: info.stats,
        })
    }

    /// `GetAllStores`: every store (tombstones on request) with its live
    /// state and stats.
    pub(super) async fn get_all_stores(
        &self,
        req: GetAllStoresRequest,
    ) -> Answer<GetAllStoresResponse> {
        let exclude = req.exclude_tombstone;
        let stores = self
            .raft
            .read_state(|s| s.stores.values().cloned().collect::<Vec<_>>());
        let stores = stores
            .iter()
            .filter(|s| !(exclude && s.state() == StoreState::Tombstone))
            .map(|s| self.store_info(s))
            .collect();
        Ok(GetAllStoresResponse {
            header: None,
            stores,
        })
    }

    fn store_info(&self, store: &Store) -> nokv_proto::coordinatorpb::StoreInfo {
        let ready = self.raft.leadership().ready_leader;
        self.view.store_info(store, ready, Instant::now())
    }

    /// `StoreHeartbeat` (leader only): the store is alive, with these
    /// stats.
    pub(super) async fn store_heartbeat(
        &self,
        req: StoreHeartbeatRequest,
    ) -> Answer<StoreHeartbeatResponse> {
        let stats = req.stats.unwrap_or_default();
        self.require_leader()?;
        let known = self
            .raft
            .read_state(|s| s.stores.get(&stats.store_id).map(|s| s.state()));
        match known {
            None => Err(refused(
                ErrorType::NotFound,
                format!("store {} is not registered", stats.store_id),
            )),
            Some(StoreState::Tombstone) => Err(refused(
                ErrorType::StoreTombstone,
                format!("store {} is a tombstone", stats.store_id),
            )),
            Some(_) => {
                self.view
                    .touch_store(stats.store_id, Some(stats), Instant::now());
                Ok(StoreHeartbeatResponse::default())
            }
        }
    }

    /// `DeleteStore` (leader only): marks the store Offline so the replica
    /// checker moves its replicas away; refused when too few stores would
    /// be left for the replica count.
    pub(super) async fn delete_store(
        &self,
        req: DeleteStoreRequest,
    ) -> Answer<DeleteStoreResponse> {
        let id = req.store_id;
        self.require_leader()?;
        let (store, others) = self.raft.read_state(|s| {
            let others = s
                .stores
                .values()
                .filter(|o| o.id != id)
                .filter(|o| !matches!(o.state(), StoreState::Offline | StoreState::Tombstone))
                .count();
            (s.stores.get(&id).cloned(), others)
        });
        let Some(mut store) = store else {
            return Err(refused(
                ErrorType::NotFound,
                format!("store {id} not found"),
            ));
        };
        match store.state() {
            StoreState::Tombstone => {
                return Err(refused(
                    ErrorType::StoreTombstone,
                    format!("store {id} is already a tombstone"),
                ))
            }
            // Already being decommissioned.
            StoreState::Offline => return Ok(DeleteStoreResponse::default()),
            _ => {}
        }
        if others < self.config.max_replicas {
            return Err(refused(
                ErrorType::InvalidArgument,
                format!(
                    "deleting store {id} would leave {others} stores for {} replicas per region",
                    self.config.max_replicas
                ),
            ));
        }
        store.state = StoreState::Offline as i32;
        let res = self.raft.propose(Cmd::PutStore(store)).await;
        match res.map_err(|e| self.error(e))? {
            ApplyResult::Ok => {
                info!(store_id = id, "store is offline: moving its replicas away");
                Ok(DeleteStoreResponse::default())
            }
            other => Err(refused(ErrorType::Unknown, format!("{other:?}"))),
        }
    }
}
