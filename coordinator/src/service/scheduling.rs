//! Operators and schedulers: listing, adding and cancelling operators,
//! listing the checkers and schedulers, and pausing them. All leader only:
//! operators live in the leader's memory.

use nokv_proto::coordinatorpb::coordinator_command::Cmd;
use nokv_proto::coordinatorpb::{
    AddOperatorRequest, AddOperatorResponse, CancelOperatorRequest, CancelOperatorResponse,
    ErrorType, GetOperatorsRequest, GetOperatorsResponse, GetSchedulersResponse,
    PauseSchedulerRequest, PauseSchedulerResponse,
};
use tonic::Status;
use tracing::info;

use super::{refused, Answer, CoordinatorService, Refused};
use crate::scheduling::{self, Refusal};

impl From<Refusal> for Refused {
    fn from(r: Refusal) -> Self {
        match r {
            Refusal::RegionNotFound(_) => refused(ErrorType::NotFound, r.to_string()),
            Refusal::Invalid(message) => refused(ErrorType::InvalidArgument, message),
        }
    }
}

impl CoordinatorService {
    /// `GetOperators`: the operators in flight (of one region, or all),
    /// with the recent finished ones on request.
    pub(super) async fn get_operators(
        &self,
        req: GetOperatorsRequest,
    ) -> Answer<GetOperatorsResponse> {
        self.require_leader()?;
        Ok(GetOperatorsResponse {
            header: None,
            operators: self
                .view
                .operators()
                .list(req.region_id, req.include_history),
        })
    }

    /// `AddOperator`: checks a manual operator against its region and
    /// starts it.
    pub(super) async fn add_operator(
        &self,
        req: AddOperatorRequest,
    ) -> Answer<AddOperatorResponse> {
        self.require_leader()?;
        let operator = self.scheduling.add_manual_operator(req).await?;
        Ok(AddOperatorResponse {
            header: None,
            operator: Some(operator),
        })
    }

    /// `CancelOperator`: ends an operator in flight as `Cancelled`.
    pub(super) async fn cancel_operator(
        &self,
        req: CancelOperatorRequest,
    ) -> Answer<CancelOperatorResponse> {
        let id = req.operator_id;
        self.require_leader()?;
        if self
            .view
            .operators()
            .cancel(id, "cancelled by request")
            .is_none()
        {
            return Err(refused(
                ErrorType::NotFound,
                format!("operator {id} is not in flight"),
            ));
        }
        Ok(CancelOperatorResponse::default())
    }

    /// `GetSchedulers`: every checker and scheduler with its pause flag,
    /// limit and operators in flight.
    pub(super) async fn get_schedulers(&self) -> Answer<GetSchedulersResponse> {
        self.require_leader()?;
        Ok(GetSchedulersResponse {
            header: None,
            schedulers: self.scheduling.schedulers(),
        })
    }

    /// `PauseScheduler`: pauses or resumes a checker or scheduler; the flag
    /// is replicated.
    pub(super) async fn pause_scheduler(
        &self,
        req: PauseSchedulerRequest,
    ) -> Answer<PauseSchedulerResponse> {
        if !scheduling::ALL.contains(&req.name.as_str()) {
            return Err(Status::invalid_argument(format!(
                "unknown scheduler {:?}; known: {}",
                req.name,
                scheduling::ALL.join(", ")
            ))
            .into());
        }
        self.require_leader()?;
        let (name, pause) = (req.name.clone(), req.pause);
        self.raft
            .propose(Cmd::PauseScheduler(req))
            .await
            .map_err(|e| self.error(e))?;
        info!(scheduler = %name, paused = pause, "scheduler pause changed");
        Ok(PauseSchedulerResponse::default())
    }
}
