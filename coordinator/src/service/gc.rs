//! The GC safe point: MVCC versions below it that no reader needs may be
//! dropped by the stores. It only moves forward, by request
//! (`UpdateGcSafePoint`) or on the leader every second to now minus
//! `gc_life_time_secs`.

use nokv_proto::coordinatorpb::coordinator_command::Cmd;
use nokv_proto::coordinatorpb::{
    GetGcSafePointResponse, UpdateGcSafePointRequest, UpdateGcSafePointResponse,
};
use tonic::Status;

use super::{Answer, CoordinatorService};
use crate::tso::{self, LOGICAL_BITS};
use crate::Error;

impl CoordinatorService {
    /// Raises the GC safe point to `wanted` (never lowers it); returns the
    /// safe point in force.
    ///
    /// # Errors
    /// The proposal's error when the raise could not be replicated.
    pub async fn raise_gc_safe_point(&self, wanted: u64) -> Result<u64, Error> {
        if wanted > self.raft.read_state(|s| s.gc_safe_point) {
            self.raft.propose(Cmd::RaiseGcSafePoint(wanted)).await?;
        }
        Ok(self.raft.read_state(|s| s.gc_safe_point))
    }

    /// On the leader, moves the GC safe point to now minus the configured
    /// life time.
    pub async fn advance_gc_safe_point(&self) {
        let life_ms = self.config.gc_life_time_secs.saturating_mul(1000);
        if life_ms == 0 || !self.raft.leadership().ready_leader {
            return;
        }
        let Some(physical) = tso::now_ms().checked_sub(life_ms) else {
            return;
        };
        if let Err(e) = self.raise_gc_safe_point(physical << LOGICAL_BITS).await {
            tracing::debug!(err = %e, "GC safe point not advanced");
        }
    }

    /// `GetGcSafePoint` (leader only): the safe point in force.
    pub(super) async fn get_gc_safe_point(&self) -> Answer<GetGcSafePointResponse> {
        self.require_leader()?;
        Ok(GetGcSafePointResponse {
            header: None,
            safe_point: self.raft.read_state(|s| s.gc_safe_point),
        })
    }

    /// `UpdateGcSafePoint` (leader only): raises the safe point, never into
    /// the future.
    pub(super) async fn update_gc_safe_point(
        &self,
        req: UpdateGcSafePointRequest,
    ) -> Answer<UpdateGcSafePointResponse> {
        let wanted = req.safe_point;
        if wanted >> LOGICAL_BITS > tso::now_ms() {
            return Err(Status::invalid_argument(
                "safe point is in the future: versions live transactions read would be dropped",
            )
            .into());
        }
        self.require_leader()?;
        let new_safe_point = self
            .raise_gc_safe_point(wanted)
            .await
            .map_err(|e| self.error(e))?;
        Ok(UpdateGcSafePointResponse {
            header: None,
            new_safe_point,
        })
    }
}
