//! The saga's own admin route, `GET /api/v1/admin/orders/{id}/saga` (admins of the tenant).

use axum::extract::{FromRef, State};
use axum::routing::get;
use axum::{Json, Router};
use domain::OrderId;
use http_kit::{Admin, ApiError, Id, JwtKeys};
use worker_kit::ReadDb;

use crate::{OrderSaga, SagaState};

#[derive(Clone)]
pub struct SagaApi {
    pub db: ReadDb,
    pub jwt: JwtKeys,
}

impl FromRef<SagaApi> for JwtKeys {
    fn from_ref(state: &SagaApi) -> JwtKeys {
        state.jwt.clone()
    }
}

/// The route, to nest under `/api/v1`.
pub fn router(state: SagaApi) -> Router {
    Router::new().route("/admin/orders/{id}/saga", get(saga_state)).with_state(state)
}

/// Where the order saga stands with an order of the admin's tenant: its step, when it looks
/// again by itself (expiry or retry), and its last error.
async fn saga_state(State(state): State<SagaApi>, Admin(admin): Admin, Id(order_id): Id<OrderId>) -> Result<Json<SagaState>, ApiError> {
    let stream = domain::stream_id(&admin.tenant, order_id);
    let found = OrderSaga::state(&state.db, &stream).await.map_err(ApiError::internal)?;
    found.map(Json).ok_or_else(|| ApiError::not_found("order"))
}
