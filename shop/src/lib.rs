//! The `shop` binary's library: configuration, start-up and the operator commands, so tests
//! and tools start exactly what production starts.
//!
//! # Layout
//! - `config.rs`: [`Config`], every setting with its environment variable and default.
//! - [`Application`]: connects and migrates the store and the read models, builds the APIs
//!   and the projection workers for the chosen [`Roles`], binds, serves until SIGTERM or
//!   Ctrl-C.
//! - [`create_user`]: `shop user create`.

mod config;
pub mod kafka;
pub mod openapi;
pub mod openapi_ops;
pub mod telemetry;

use std::future::{Future, IntoFuture};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context};
use axum::Router;
use command_api::auth::{JwtKeys, Registration, Secret};
use command_api::mail::{Mailer, OutboxMailer, SmtpMailer};
use command_api::{AppState, CommandAccepted, SystemClock};
use domain::user::Role;
use domain::TenantId;
use projections::own::{self, OwnCheckpoint};
use projections::search::ProductSearch;
use projections::{ReadDb, Runner};
use query_api::QueryState;
use std::time::Duration;
use store::{EventStore, Metadata};
use tokio::net::TcpListener;

pub use config::Config;

/// Connects to the configured store and applies migrations.
pub async fn connect_store(config: &Config) -> anyhow::Result<EventStore> {
    if config.is_embedded() {
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("failed to create data directory {}", config.data_dir.display()))?;
    }
    let store = EventStore::connect(&config.store_url(), config.db_pool_size).await.context("failed to connect to the event store")?;
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
    Ok(AppState::new(store, jwt, mailer(config)?, Arc::new(SystemClock), config.api()))
}

/// SMTP when `SMTP_URL` is set, else the outbox directory.
fn mailer(config: &Config) -> anyhow::Result<Arc<dyn Mailer>> {
    Ok(match &config.smtp_url {
        Some(url) => Arc::new(SmtpMailer::new(url).map_err(|e| anyhow::anyhow!("SMTP_URL: {e}"))?),
        None => Arc::new(OutboxMailer::new(command_api::default_outbox(&config.data_dir))),
    })
}

/// The product search index of this node.
fn open_search(config: &Config, store: &EventStore) -> anyhow::Result<ProductSearch> {
    let dir = config.search_dir();
    ProductSearch::open(store.clone(), &dir).with_context(|| format!("failed to open the search index in {}", dir.display()))
}

/// Which roles a process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Roles {
    /// Everything in one process (`shop serve`).
    All,
    CommandApi,
    QueryApi,
    /// Projection workers only, no HTTP (`shop project`).
    Projections,
    /// The relay to Kafka only, no HTTP (`shop relay`).
    Relay,
    /// The order saga only, no HTTP (`shop saga`).
    Saga,
    /// The notifier only, no HTTP (`shop notify`).
    Notifier,
}

impl Roles {
    fn projections(self) -> bool {
        matches!(self, Roles::All | Roles::Projections)
    }

    fn saga(self) -> bool {
        matches!(self, Roles::All | Roles::Saga)
    }

    fn notifier(self) -> bool {
        matches!(self, Roles::All | Roles::Notifier)
    }
}

/// A bound, ready-to-serve shop.
pub struct Application {
    listener: TcpListener,
    state: AppState,
    runner: Arc<Runner>,
    /// Set when this process publishes to Kafka (`shop relay`, or `shop serve` with brokers).
    relay: Option<Arc<kafka::KafkaWorker>>,
    /// Set with `SHOP_EVENT_SOURCE=kafka`: the consumer feeding the projections.
    source: Option<Arc<kafka::KafkaWorker>>,
    details: Arc<projections::detail::ProductDetails>,
    /// Whether this process keeps the product detail documents up to date.
    run_details: bool,
    search: Arc<ProductSearch>,
    roles: Roles,
    read_wait: Duration,
    /// After SIGTERM, how long in-flight requests (and open event streams) may go on.
    shutdown_grace: Duration,
    /// Set when this process runs the order saga.
    saga: Option<Arc<saga::OrderSaga>>,
    /// Set when this process runs the notifier.
    notifier: Option<Arc<notifier::Notifier>>,
    /// Set with `SHOP_EVENT_SOURCE=kafka`: the consumer feeding the notifier.
    notifier_source: Option<Arc<kafka::KafkaWorker>>,
    /// Set when this process runs the notifier: sends webhook deliveries.
    dispatcher: Option<Arc<notifier::webhooks::Dispatcher>>,
}

impl Application {
    /// Every role (`shop serve`).
    pub async fn build(config: &Config) -> anyhow::Result<Self> {
        Self::build_roles(config, Roles::All).await
    }

    pub async fn build_roles(config: &Config, roles: Roles) -> anyhow::Result<Self> {
        command_api::metrics::install();
        let store = connect_store(config).await?;
        let read_db =
            ReadDb::connect(&config.store_url(), config.db_pool_size).await.context("failed to connect to the read-model database")?;
        let all = projections::all();
        read_db.migrate(&all).await.context("failed to create the read-model tables")?;
        saga::OrderSaga::migrate(&read_db).await.context("failed to create the order saga's table")?;
        notifier::Notifier::migrate(&read_db).await.context("failed to create the notifier's table")?;
        let saga_db = read_db.clone();
        let notifier_db = read_db.clone();
        let relay = match roles {
            Roles::All | Roles::Relay => kafka::relay(config, &store, &read_db)?.map(Arc::new),
            _ => None,
        };
        if roles == Roles::Relay && relay.is_none() {
            bail!("shop relay needs KAFKA_BROKERS");
        }
        let runner = Arc::new(Runner::new(store.clone(), read_db, all));
        let source = match roles {
            Roles::All | Roles::Projections | Roles::QueryApi => kafka::event_source(config, &runner, roles.projections()).await?,
            _ => None,
        };
        let details = Arc::new(
            projections::detail::ProductDetails::connect(store.clone(), config.redis_url.as_deref(), &config.redis_prefix)
                .await
                .context("failed to connect to Redis")?,
        );
        // In-process documents exist only in the process that serves them.
        let run_details = roles.projections() || (roles == Roles::QueryApi && config.redis_url.is_none());
        let search = Arc::new(open_search(config, &store)?);
        let state = app_state(config, store.clone())?;
        // The relay and Kafka-fed workers cannot work without the brokers; `shop serve` and
        // the APIs can (the log is the outbox), so for them the brokers are only reported.
        let needs_brokers = match roles {
            Roles::Relay => true,
            Roles::Projections | Roles::Notifier => config.event_source == "kafka",
            _ => false,
        };
        if let Some(check) = kafka::broker_check(config, needs_brokers)? {
            state.add_ready_check(check);
        }
        let saga = roles.saga().then(|| {
            // The saga shares the command API's repositories: one cache and one lock per
            // aggregate in this process.
            let repos = saga::Repos {
                orders: state.orders.clone(),
                payments: state.payments.clone(),
                stock: state.stock.clone(),
                invoices: store::Repository::new(store.clone(), ()),
            };
            let gateway: Arc<dyn domain::payment::PaymentGateway> = Arc::new(domain::payment::SimulatedGateway::new());
            Arc::new(saga::OrderSaga::new(store.clone(), saga_db, repos, gateway, state.clock.clone(), config.saga()))
        });
        let notifier = match roles.notifier() {
            true => Some(Arc::new(notifier::Notifier::new(
                store.clone(),
                notifier_db,
                mailer(config)?,
                notifier::Templates { dir: config.template_dir.clone() },
                notifier::NotifierConfig { low_stock_threshold: config.low_stock_threshold, ..notifier::NotifierConfig::default() },
            ))),
            false => None,
        };
        let notifier_source = match &notifier {
            Some(n) => kafka::notifier_source(config, n).await?.map(Arc::new),
            None => None,
        };
        let dispatcher = match &notifier {
            Some(_) => Some(Arc::new(notifier::webhooks::Dispatcher::new(runner.db().clone(), config.webhooks()?)?)),
            None => None,
        };
        // Worker roles serve only /health, /ready and /metrics on it.
        let listener = TcpListener::bind(config.http_addr).await.with_context(|| format!("failed to bind {}", config.http_addr))?;
        let backends = if config.is_embedded() {
            format!("sqlite file {}", config.data_dir.join("shop.db").display())
        } else {
            "postgresql (DATABASE_URL)".to_owned()
        };
        tracing::info!(
            mode = if config.is_embedded() { "embedded" } else { "production" },
            roles = ?roles,
            store = %backends,
            read_models = %backends,
            event_delivery = if source.is_some() { "kafka consumer group (SHOP_EVENT_SOURCE=kafka)" } else { "tail of the store's global log" },
            kafka = %config.kafka_brokers.as_deref().filter(|_| relay.is_some()).unwrap_or("off"),
            mail = %match &config.smtp_url {
                Some(_) => "smtp (SMTP_URL)".to_owned(),
                None => format!("outbox {}", command_api::default_outbox(&config.data_dir).display()),
            },
            cache = "in-process aggregate cache",
            product_detail = details.backend_name(),
            search = %search.dir().display(),
            order_saga = if saga.is_some() { "running (payment gateway: simulated)" } else { "off" },
            notifier = match (&notifier, &config.smtp_url) {
                (None, _) => "off",
                (Some(_), Some(_)) => "running (smtp)",
                (Some(_), None) => "running (outbox)",
            },
            addr = %listener.local_addr().map_or("none".to_owned(), |a| a.to_string()),
            "shop started"
        );
        Ok(Self {
            listener,
            state,
            runner,
            relay,
            source,
            details,
            run_details,
            search,
            roles,
            read_wait: Duration::from_millis(config.read_wait_ms),
            shutdown_grace: Duration::from_secs(config.shutdown_grace_secs),
            saga,
            notifier,
            notifier_source,
            dispatcher,
        })
    }

    /// The bound HTTP address (worker roles serve only `/health`, `/ready` and `/metrics`).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    pub fn addr(&self) -> SocketAddr {
        self.local_addr().expect("an HTTP role is bound to an address")
    }

    pub fn port(&self) -> u16 {
        self.addr().port()
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    pub fn runner(&self) -> &Arc<Runner> {
        &self.runner
    }

    /// Serves until SIGTERM or Ctrl-C, then finishes in-flight requests.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        self.run_until(shutdown_signal()).await
    }

    pub async fn run_until(self, stop: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let store = self.state.store.clone();
        let (stop_workers, workers_stopped) = tokio::sync::watch::channel(false);
        let workers = self.roles.projections().then(|| match self.source.clone() {
            Some(source) => {
                let stopped = workers_stopped.clone();
                tokio::spawn(async move { source.run(stopped).await })
            }
            None => tokio::spawn(Arc::clone(&self.runner).run(workers_stopped.clone())),
        });
        let relay = self.relay.clone().map(|relay| {
            let stopped = workers_stopped.clone();
            tokio::spawn(async move { relay.run(stopped).await })
        });
        let saga = self.saga.clone().map(|saga| tokio::spawn(saga.run(workers_stopped.clone())));
        let notifier = match (self.notifier.clone(), self.notifier_source.clone()) {
            (Some(_), Some(source)) => {
                let stopped = workers_stopped.clone();
                Some(tokio::spawn(async move { source.run(stopped).await }))
            }
            (Some(n), None) => Some(tokio::spawn(n.run(workers_stopped.clone()))),
            (None, _) => None,
        };
        let dispatcher = self.dispatcher.clone().map(|dispatcher| {
            // Rounds only start endpoint tasks, so there is never "more work at once": every
            // round is followed by the 100 ms pause.
            let (stopped, never) = (workers_stopped.clone(), Arc::new(tokio::sync::Notify::new()));
            let idle = Duration::from_millis(100);
            tokio::spawn(projections::run_rounds("webhooks", stopped, never, idle, Duration::ZERO, move || {
                let dispatcher = Arc::clone(&dispatcher);
                async move { dispatcher.round().await.map(|_| false) }
            }))
        });
        let details = self.run_details.then(|| tokio::spawn(own::run(Arc::clone(&self.details), workers_stopped.clone())));
        // The search index lives on the disk of the node that serves it.
        let serves_queries = matches!(self.roles, Roles::All | Roles::QueryApi);
        let search = serves_queries.then(|| tokio::spawn(own::run(Arc::clone(&self.search), workers_stopped)));
        let query = QueryState {
            runner: Arc::clone(&self.runner),
            details: Arc::clone(&self.details),
            search: Arc::clone(&self.search),
            jwt: self.state.jwt.clone(),
            read_wait: self.read_wait,
        };
        let webhooks = || {
            let api = notifier::routes::WebhookApi { db: self.runner.db().clone(), jwt: self.state.jwt.clone() };
            Router::new().nest("/api/v1", notifier::routes::router(api))
        };
        let router = match self.roles {
            Roles::All => {
                command_api::router(self.state.clone()).merge(query_api::router(query)).merge(webhooks()).merge(openapi::router())
            }
            Roles::CommandApi => command_api::router(self.state.clone()).merge(webhooks()).merge(openapi::router()),
            Roles::QueryApi => query_api::router(query.clone()).merge(query_api::health_router(query)).merge(openapi::router()),
            Roles::Projections | Roles::Relay | Roles::Saga | Roles::Notifier => {
                command_api::health::router().with_state(self.state.clone())
            }
        };
        let app = command_api::finish(router).into_make_service_with_connect_info::<SocketAddr>();
        // On the signal the listener closes at once; requests in flight get `shutdown_grace`
        // to finish, then their connections are dropped (an open event stream never ends).
        let (stopping, mut stopped) = tokio::sync::watch::channel(false);
        let server = axum::serve(self.listener, app).with_graceful_shutdown(async move {
            stop.await;
            let _ = stopping.send(true);
        });
        let grace = self.shutdown_grace;
        tokio::select! {
            served = server.into_future() => served.context("server failed")?,
            _ = async move {
                let _ = stopped.wait_for(|s| *s).await;
                tokio::time::sleep(grace).await;
            } => tracing::warn!(grace_secs = grace.as_secs(), "requests still open after the shutdown grace; closing them"),
        }
        let _ = stop_workers.send(true);
        // Workers finish their current batch (or abandon it uncommitted) and return.
        for worker in [workers, relay, saga, notifier, dispatcher, details, search].into_iter().flatten() {
            let _ = worker.await;
        }
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

/// Runs one rebuild under a progress bar (events done, events/s, ETA) and prints what it did;
/// `how` says what happened to the live model (`swapped in`, `rewritten in place`).
async fn rebuild_with_progress<Fut>(
    name: &str,
    head: i64,
    how: &str,
    rebuild: impl FnOnce(Box<dyn FnMut(i64, i64) + Send>) -> Fut,
) -> anyhow::Result<()>
where
    Fut: Future<Output = Result<projections::RebuildReport, projections::ProjectionError>>,
{
    let bar = indicatif::ProgressBar::new(head.max(1) as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{prefix:>14} [{bar:40}] {pos}/{len} events  {per_sec}  eta {eta}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_prefix(name.to_owned());
    let shown = bar.clone();
    let report = rebuild(Box::new(move |done, head| {
        shown.set_length(head.max(done).max(1) as u64);
        shown.set_position(done as u64);
    }))
    .await
    .with_context(|| format!("failed to rebuild {name}"))?;
    bar.finish();
    let rate = report.events as f64 / report.elapsed.as_secs_f64().max(1e-9);
    println!("{name}: {} events in {:.2?} ({rate:.0} events/s), {how}", report.events, report.elapsed);
    Ok(())
}

/// `shop replay`: rebuilds one projection (or all) with a progress bar. SQL read models are
/// rebuilt into a shadow table, the search index into a new directory; each is swapped in once
/// it has caught up with the log.
pub async fn replay(config: &Config, projection: Option<&str>, all: bool, dry_run: bool) -> anyhow::Result<()> {
    let store = connect_store(config).await?;
    let read_db = ReadDb::connect(&config.store_url(), 4).await.context("failed to connect to the read-model database")?;
    let known = projections::all();
    read_db.migrate(&known).await.context("failed to create the read-model tables")?;
    let chosen: Vec<_> = known.iter().filter(|p| all || Some(p.name()) == projection).cloned().collect();
    let rebuild_search = all || projection == Some(projections::search::NAME);
    let rebuild_details = all || projection == Some(projections::detail::NAME);
    if chosen.is_empty() && !rebuild_search && !rebuild_details {
        let names: Vec<_> = known.iter().map(|p| p.name()).chain([projections::detail::NAME, projections::search::NAME]).collect();
        bail!("unknown projection {:?}; known: {}", projection.unwrap_or_default(), names.join(", "));
    }
    let runner = Runner::new(store.clone(), read_db, known);
    let head = store.head_position().await?;
    for p in &chosen {
        let (cursor, events) = runner.checkpoint(p.name()).await?;
        if dry_run {
            println!(
                "{}: would rebuild table {} from {head} log events (now at position {}, {events} events processed)",
                p.name(),
                p.table(),
                cursor.position
            );
            continue;
        }
        rebuild_with_progress(p.name(), head, "swapped in", |progress| runner.rebuild(p.as_ref(), progress)).await?;
    }
    if rebuild_details {
        let name = projections::detail::NAME;
        if config.redis_url.is_none() {
            println!("{name}: kept in process (no REDIS_URL) and rebuilt from the log at every start; nothing to replay");
        } else if dry_run {
            println!("{name}: would rewrite every product document in Redis from {head} log events");
        } else {
            let details = projections::detail::ProductDetails::connect(store.clone(), config.redis_url.as_deref(), &config.redis_prefix)
                .await
                .context("failed to connect to Redis")?;
            rebuild_with_progress(name, head, "rewritten in place", |progress| details.rebuild(progress)).await?;
        }
    }
    if rebuild_search {
        let search = open_search(config, &store)?;
        let name = projections::search::NAME;
        let (cursor, events) = search.checkpoint().await?.unwrap_or_default();
        if dry_run {
            println!(
                "{name}: would rebuild the index in {} from {head} log events (now at position {}, {events} events processed)",
                search.dir().display(),
                cursor.position
            );
        } else {
            rebuild_with_progress(name, head, "swapped in", |progress| search.rebuild(progress)).await?;
        }
    }
    store.close().await;
    Ok(())
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
    let metadata =
        Metadata { tenant: Some(tenant.to_string()), correlation_id: Some(uuid::Uuid::now_v7().to_string()), ..Metadata::default() };
    let result = command_api::users::register_user(&state, &tenant, registration, roles, &metadata).await;
    store.close().await;
    result.map_err(|e| anyhow::anyhow!("{} ({})", e.detail, e.code.as_str()))
}
