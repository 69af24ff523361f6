//! How each refusal of the application becomes an HTTP answer ([`ApiError`]).

use ordership_application::{
    CancelOrderError, DeliveryCommandError, GateRefusal, GetDeliveryError, GetOrderError,
    PlaceOrderError, SagaActionError, WaitingRoomError, WatchRefused,
};

use crate::problem::{ApiError, FieldError};

impl From<PlaceOrderError> for ApiError {
    fn from(e: PlaceOrderError) -> Self {
        match e {
            PlaceOrderError::KeyReused => Self::IdempotencyKeyReused,
            PlaceOrderError::NotAdmitted(refusal) => refusal.into(),
            PlaceOrderError::AdmissionUsed => Self::AdmissionUsed,
            PlaceOrderError::SoldOut { left } => Self::SoldOut { left },
            PlaceOrderError::Conflict => {
                Self::Conflict("the order was changed concurrently; retry".into())
            }
            PlaceOrderError::Unavailable(e) => Self::Unavailable(Box::new(e)),
            PlaceOrderError::Unexpected(e) => Self::Internal(e),
        }
    }
}

impl From<GateRefusal> for ApiError {
    fn from(refusal: GateRefusal) -> Self {
        match refusal {
            GateRefusal::Required(why) => Self::AdmissionRequired(why),
            GateRefusal::Expired => Self::AdmissionExpired,
            GateRefusal::Price { line, .. } => Self::BusinessRule(vec![FieldError::new(
                format!("lines[{line}].unit_price"),
                refusal.to_string(),
            )]),
            GateRefusal::Unavailable => Self::WaitingRoomUnavailable(None),
            GateRefusal::RoomsUnavailable => Self::Unavailable(Box::new(refusal)),
        }
    }
}

impl From<WaitingRoomError> for ApiError {
    fn from(e: WaitingRoomError) -> Self {
        match e {
            WaitingRoomError::NotFound => Self::NotFound("waiting room"),
            WaitingRoomError::NotInRoom => Self::NotFound("entry in this waiting room"),
            WaitingRoomError::Closed => Self::WaitingRoomClosed,
            WaitingRoomError::AlreadyOrdered => Self::AlreadyOrdered,
            WaitingRoomError::StockBelowSold => Self::Conflict(e.to_string()),
            WaitingRoomError::QueueUnavailable(e) => Self::WaitingRoomUnavailable(Some(e)),
            WaitingRoomError::StoreUnavailable(e) => Self::Unavailable(Box::new(e)),
            WaitingRoomError::Unexpected(e) => Self::Internal(e),
        }
    }
}

impl From<CancelOrderError> for ApiError {
    fn from(e: CancelOrderError) -> Self {
        match e {
            CancelOrderError::NotFound => Self::NotFound("order"),
            CancelOrderError::NotCancellable { .. } => Self::Conflict(e.to_string()),
            CancelOrderError::KeyReused => Self::IdempotencyKeyReused,
            CancelOrderError::Conflict => {
                Self::Conflict("the order was changed concurrently; retry".into())
            }
            CancelOrderError::Unavailable(e) => Self::Unavailable(Box::new(e)),
            CancelOrderError::Unexpected(e) => Self::Internal(e),
        }
    }
}

impl From<WatchRefused> for ApiError {
    fn from(e: WatchRefused) -> Self {
        match e {
            WatchRefused::CallerFull => Self::TooManyFollowed,
            WatchRefused::InstanceFull => Self::FollowersFull,
        }
    }
}
impl From<GetOrderError> for ApiError {
    fn from(e: GetOrderError) -> Self {
        match e {
            GetOrderError::NotFound => Self::NotFound("order"),
            GetOrderError::Unavailable(e) => Self::Unavailable(Box::new(e)),
            GetOrderError::Unexpected(e) => Self::Internal(e),
        }
    }
}

impl From<GetDeliveryError> for ApiError {
    fn from(e: GetDeliveryError) -> Self {
        match e {
            GetDeliveryError::NotFound => Self::NotFound("delivery"),
            GetDeliveryError::Unavailable(e) => Self::Unavailable(Box::new(e)),
            GetDeliveryError::Unexpected(e) => Self::Internal(e),
        }
    }
}

impl From<DeliveryCommandError> for ApiError {
    fn from(e: DeliveryCommandError) -> Self {
        match e {
            DeliveryCommandError::NotFound => Self::NotFound("delivery"),
            DeliveryCommandError::InvalidTransition(t) => Self::Conflict(format!("delivery: {t}")),
            DeliveryCommandError::Conflict => {
                Self::Conflict("the delivery was changed concurrently; retry".into())
            }
            DeliveryCommandError::Unavailable(e) => Self::Unavailable(Box::new(e)),
            DeliveryCommandError::Unexpected(e) => Self::Internal(e),
        }
    }
}

impl From<SagaActionError> for ApiError {
    fn from(e: SagaActionError) -> Self {
        match e {
            SagaActionError::NotFound => Self::NotFound("saga"),
            SagaActionError::NotAllowed(refusal) => Self::Conflict(refusal.to_string()),
            SagaActionError::Conflict => {
                Self::Conflict("the saga was changed concurrently; retry".into())
            }
            SagaActionError::Unavailable(e) => Self::Unavailable(Box::new(e)),
            SagaActionError::Unexpected(e) => Self::Internal(e),
        }
    }
}
