//! The saga's own admin route, `GET /api/v1/admin/orders/{id}/saga` (admins of the tenant).

use aide::axum::routing::get_with;
use aide::axum::ApiRouter;
use axum::extract::{FromRef, State};
use axum::Json;
use domain::OrderId;
use http_kit::{Admin, ApiError, ErrorCode, Id, JwtKeys, Problems};
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

/// The route and its documentation, to nest under `/api/v1`.
pub fn router(state: SagaApi) -> ApiRouter {
    ApiRouter::new()
        .api_route(
            "/admin/orders/{id}/saga",
            get_with(saga_state, |op| {
                op.describe("get_order_saga", "orders", "Where the order saga stands with an order.").problems(&[ErrorCode::NotFound])
            }),
        )
        .with_state(state)
}

/// Where the order saga stands with an order of the admin's tenant: its step, when it looks
/// again by itself (expiry or retry), and its last error.
async fn saga_state(State(state): State<SagaApi>, Admin(admin): Admin, Id(order_id): Id<OrderId>) -> Result<Json<SagaState>, ApiError> {
    let stream = domain::stream_id(&admin.tenant, order_id);
    let found = OrderSaga::state(&state.db, &stream).await.map_err(ApiError::failure)?;
    found.map(Json).ok_or_else(|| ApiError::not_found("order"))
}
