//! The `shop` binary's library: configuration, start-up and the operator commands, so tests
//! and tools start exactly what production starts.
//!
//! # Layout
//! - `config.rs`: [`Config`], every setting with its environment variable and default.
//! - [`Application`]: connects and migrates the store, builds the API, binds, serves until
//!   SIGTERM or Ctrl-C.
//! - [`create_user`]: `shop user create`.

mod config;

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context};
use command_api::auth::{JwtKeys, Registration, Secret};
use command_api::mail::OutboxMailer;
use command_api::{AppState, CommandAccepted, SystemClock};
use domain::user::Role;
use domain::TenantId;
use store::{EventStore, Metadata};
use tokio::net::TcpListener;

pub use config::Config;

/// Connects to the configured store and applies migrations.
pub async fn connect_store(config: &Config) -> anyhow::Result<EventStore> {
    if config.is_embedded() {
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("failed to create data directory {}", config.data_dir.display()))?;
    }
    let store = EventStore::connect(&config.store_url(), config.db_pool_size)
        .await
        .context("failed to connect to the event store")?;
    store.migrate().await.context("failed to migrate the event store")?;
    Ok(store)
}

/// The configured JWT secret, or in embedded mode the one kept in the data directory
/// (created on first start).
fn jwt_secret(config: &Config) -> anyhow::Result<Secret> {
    if let Some(s) = &config.jwt_secret {
        if s.len() < 32 {
            bail!("SHOP_JWT_SECRET must be at least 32 characters");
        }
        return Ok(Secret::new(s.clone()));
    }
    if !config.is_embedded() {
        bail!("SHOP_JWT_SECRET is required when DATABASE_URL is set (every node must share it)");
    }
    let path = config.data_dir.join("jwt-secret");
    if let Ok(s) = std::fs::read_to_string(&path) {
        return Ok(Secret::new(s.trim().to_owned()));
    }
    let secret = hex::encode(rand::random::<[u8; 32]>());
    write_private(&path, &secret).with_context(|| format!("failed to write {}", path.display()))?;
    Ok(Secret::new(secret))
}

fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(contents.as_bytes())
}

/// Builds the application state on an open store.
pub fn app_state(config: &Config, store: EventStore) -> anyhow::Result<AppState> {
    let jwt = JwtKeys::new(&jwt_secret(config)?, config.api().access_token_ttl);
    let mailer = Arc::new(OutboxMailer::new(command_api::default_outbox(&config.data_dir)));
    Ok(AppState::new(store, jwt, mailer, Arc::new(SystemClock), config.api()))
}

/// A bound, ready-to-serve shop.
pub struct Application {
    listener: TcpListener,
    state: AppState,
}

impl Application {
    pub async fn build(config: &Config) -> anyhow::Result<Self> {
        let store = connect_store(config).await?;
        let state = app_state(config, store)?;
        let listener = TcpListener::bind(config.http_addr)
            .await
            .with_context(|| format!("failed to bind {}", config.http_addr))?;
        let backends = if config.is_embedded() {
            format!("sqlite file {}", config.data_dir.join("shop.db").display())
        } else {
            "postgresql (DATABASE_URL)".to_owned()
        };
        tracing::info!(
            mode = if config.is_embedded() { "embedded" } else { "production" },
            store = %backends,
            mail = %format!("outbox {}", command_api::default_outbox(&config.data_dir).display()),
            cache = "in-process aggregate cache",
            addr = %listener.local_addr().context("failed to read the bound address")?,
            "shop started"
        );
        Ok(Self { listener, state })
    }

    pub fn addr(&self) -> SocketAddr {
        // The listener is bound; a local address is always there.
        self.listener.local_addr().expect("a bound listener has a local address")
    }

    pub fn port(&self) -> u16 {
        self.addr().port()
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until SIGTERM or Ctrl-C, then finishes in-flight requests.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        self.run_until(shutdown_signal()).await
    }

    pub async fn run_until(self, stop: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let store = self.state.store.clone();
        let app = command_api::router(self.state).into_make_service_with_connect_info::<SocketAddr>();
        axum::serve(self.listener, app).with_graceful_shutdown(stop).await.context("server failed")?;
        store.close().await;
        tracing::info!("shop stopped");
        Ok(())
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown requested");
}

/// `shop user create`: registers a user with the given role, for the first admin.
pub async fn create_user(
    config: &Config,
    tenant: &str,
    email: &str,
    name: Option<&str>,
    role: &str,
    password: &str,
) -> anyhow::Result<CommandAccepted> {
    let tenant: TenantId = tenant.parse().context("invalid --tenant")?;
    let role: Role = role.parse().context("invalid --role")?;
    let registration = Registration {
        email: email.parse().context("invalid --email")?,
        password: password.parse().context("invalid password on standard input")?,
        name: name.unwrap_or_else(|| email.split('@').next().unwrap_or(email)).parse().context("invalid --name")?,
    };
    let store = connect_store(config).await?;
    let state = app_state(config, store.clone())?;
    let roles = [Role::Customer, role].into_iter().collect();
    let metadata = Metadata { tenant: Some(tenant.to_string()), correlation_id: Some(uuid::Uuid::now_v7().to_string()), ..Metadata::default() };
    let result = command_api::users::register_user(&state, &tenant, registration, roles, &metadata).await;
    store.close().await;
    result.map_err(|e| anyhow::anyhow!("{} ({})", e.detail, e.code.as_str()))
}
