//! The command side of shop over HTTP (axum): every write goes through here.
//!
//! A handler extracts typed input (`AppJson`, `AuthUser`/`Admin`, `Tenant`, `IfMatch`), turns
//! the body into a domain command (`TryFrom`, so invalid input never reaches an aggregate),
//! executes it through a [`store::Repository`] and answers with the aggregate id, its new
//! version and the global position of its last event ([`CommandAccepted`]).
//!
//! The error type, the extractors and the middleware come from `http-kit`; the mail senders
//! and templates from `mailer`.
//!
//! # Layout
//! - `auth/`: register, login, refresh-token rotation, logout, password reset (the one mail
//!   sent from here: its token exists only in this request); argon2id hashing, the
//!   failed-login limiter.
//! - `users.rs`: `/users/me`, role management; `register_user` for the CLI too.
//! - `products.rs`, `stock.rs`: catalogue and stock commands (admin).
//! - `orders.rs`: place and cancel orders (customers); ship, deliver, refund (admins).
//! - `carts.rs`: guest and customer carts, discount codes on them, checkout into an order,
//!   the guest cart's merge at sign-in.
//! - `promotions.rs`: discount codes (admins).
//! - `settings.rs`: the seller's own settings (admins).
//! - `idempotency.rs`: `Idempotency-Key` replay.
//! - `state.rs`: [`AppState`], [`ApiConfig`], the clock.

pub mod auth;
pub mod carts;
mod idempotency;
mod orders;
mod products;
mod promotions;
mod settings;
mod state;
mod stock;
pub mod users;

use std::fmt::Display;
use std::sync::Arc;

use aide::axum::ApiRouter;
use axum::middleware;
use cqrs_es::Aggregate;
use serde::Serialize;
use store::Committed;

pub use state::*;

/// The answer to every successful command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct CommandAccepted {
    /// The aggregate's id (user id, product id, SKU).
    pub id: String,
    /// The aggregate's version after the command; send it back as `If-Match`.
    pub version: u64,
    /// Global log position of the aggregate's last event; read models that reached it show
    /// this write.
    pub position: i64,
}

impl CommandAccepted {
    pub fn new<A: Aggregate>(id: impl Display, done: &Committed<A>) -> Self {
        Self { id: id.to_string(), version: done.version, position: done.position }
    }
}

/// Where the API's routes live.
pub const API_PREFIX: &str = "/api/v1";

/// The command API's routes (`/api/v1/...`) and their documentation, with `Idempotency-Key`
/// replay; serve it through `http_kit::finish`, alone or merged with the query API.
pub fn router(state: AppState) -> ApiRouter {
    // Every command's answer is stored for `Idempotency-Key` replay, and documented so; the
    // token routes' answers are secrets and are not.
    // Registration, the token routes and guest carts are what an attacker hammers: token
    // buckets per client address and overall.
    let limited = || middleware::from_fn_with_state(state.limits.clone(), http_kit::limits::limit);
    let replayable = ApiRouter::new()
        .merge(auth::registration().with_path_items(http_kit::limits::document).route_layer(limited()))
        .merge(users::router())
        .merge(products::router())
        .merge(stock::router())
        .merge(orders::router())
        .merge(carts::router())
        .merge(promotions::router())
        .merge(settings::router())
        .with_path_items(idempotency::document);
    let statuses = Arc::new(idempotency::SuccessStatuses::of_routes(&replayable, API_PREFIX));
    let replayable = replayable.route_layer(middleware::from_fn_with_state((state.clone(), statuses), idempotency::idempotency));
    ApiRouter::new()
        .nest(
            API_PREFIX,
            replayable
                .merge(auth::tokens().with_path_items(http_kit::limits::document).route_layer(limited()))
                .merge(auth::browser::router().with_path_items(http_kit::limits::document).route_layer(limited()))
                // Anyone may open a guest cart: bounded per client like the auth routes.
                .merge(
                    carts::creation()
                        .with_path_items(http_kit::limits::document)
                        .route_layer(middleware::from_fn_with_state(state.limits.clone(), http_kit::limits::limit_anonymous)),
                ),
        )
        .with_state(state)
}
