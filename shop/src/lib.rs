//! The `shop` binary's library: configuration, start-up and the operator commands, so tests
//! and tools start exactly what production starts.
//!
//! It is the composition root: the only crate that depends on the role crates (command API,
//! query API, saga, notifier, Kafka adapter) and wires them to each other through the worker
//! kit's traits.
//!
//! # Layout
//! - `config.rs`: [`Config`], every setting with its environment variable and default.
//! - [`Application`] (this file): connects and migrates the store and the read side, builds the
//!   APIs and the workers for the chosen [`Roles`], binds, serves until SIGTERM or Ctrl-C.
//! - `kafka.rs`: the relay and the consumer groups (feature `kafka`).
//! - `gauges.rs`: what `/metrics` reads at each scrape (pools, readers' progress, dead letters).
//! - `openapi.rs`: `/openapi.json` and `/docs`.
//! - `telemetry.rs`: logs and OTLP traces.
//! - [`replay`], [`migrate`], [`create_user`]: the operator commands.

mod config;
mod gauges;
pub mod kafka;
pub mod openapi;
pub mod telemetry;
pub mod web;

use std::future::{Future, IntoFuture};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use aide::axum::ApiRouter;
use anyhow::{bail, Context};
use axum::Router;
use command_api::auth::Registration;
use command_api::{AppState, CommandAccepted, SystemClock};
use domain::user::Role;
use domain::TenantId;
use http_kit::{JwtKeys, Readiness, ReadyCheck, Secret};
use mailer::{Mailer, OutboxMailer, SmtpMailer, Templates};
use projections::detail::ProductDetails;
use projections::search::ProductSearch;
use projections::{ReadModels, Runner};
use query_api::QueryState;
use store::{EventStore, Metadata};
use tokio::net::TcpListener;
use tokio::sync::watch;
use worker_kit::{Driver, ReadDb};

pub use config::{Config, EventSource, KafkaSecurity, LogFormat, PaymentGateway, SaslMechanism};

/// A worker of this process, started by [`Application::run_until`] with the stop signal.
pub type Spawn = Box<dyn FnOnce(watch::Receiver<bool>) -> tokio::task::JoinHandle<()> + Send>;

/// Connects to the configured store and applies its migrations.
pub async fn connect_store(config: &Config) -> anyhow::Result<EventStore> {
    if config.is_embedded() {
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("failed to create data directory {}", config.data_dir.display()))?;
    }
    let store = EventStore::connect(&config.store_url(), config.db_pool_size).await.context("failed to connect to the event store")?;
    store.migrate().await.context("failed to migrate the event store")?;
    if config.is_embedded() {
        restrict_data_dir(config)?;
    }
    Ok(store)
}

/// Connects to the read side's database (the store's database) and applies its migrations.
pub async fn connect_read_db(config: &Config, pool_size: u32) -> anyhow::Result<ReadDb> {
    let db = ReadDb::connect(&config.store_url(), pool_size).await.context("failed to connect to the read-model database")?;
    db.migrate().await.context("failed to migrate the read-model database")?;
    Ok(db)
}

/// `shop migrate`: every migration of both sides.
pub async fn migrate(config: &Config) -> anyhow::Result<()> {
    let store = connect_store(config).await?;
    let db = connect_read_db(config, 2).await?;
    db.pool.close().await;
    store.close().await;
    Ok(())
}

/// Sample keys this repository ships (docker-compose.yml, infra/k8s/secret.yaml): known to
/// everyone, so never accepted.
const SAMPLE_SECRETS: [&str; 2] = ["local-trial-secret-change-me-local-trial", "change-me-to-32-or-more-random-characters"];

/// A key that is long enough and not a published sample; `source` names where it came from.
fn checked_secret(secret: &str, source: &str) -> anyhow::Result<Secret> {
    if secret.len() < 32 {
        bail!("{source}: the JWT key must be at least 32 bytes (it has {})", secret.len());
    }
    if SAMPLE_SECRETS.contains(&secret) {
        bail!("{source}: this is a sample key published with the shop; generate your own (openssl rand -hex 32)");
    }
    Ok(Secret::new(secret.to_owned()))
}

/// The configured JWT secret, or in embedded mode the one kept in the data directory
/// (created on first start, readable by its owner only).
fn jwt_secret(config: &Config) -> anyhow::Result<Secret> {
    if let Some(s) = &config.jwt_secret {
        return checked_secret(s.expose(), "SHOP_JWT_SECRET");
    }
    if !config.is_embedded() {
        bail!("SHOP_JWT_SECRET is required when DATABASE_URL is set (every node must share it)");
    }
    let path = config.data_dir.join("jwt-secret");
    match std::fs::read_to_string(&path) {
        Ok(s) => return checked_secret(s.trim(), &path.display().to_string()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("failed to read {}", path.display())),
    }
    let secret = hex::encode(rand::random::<[u8; 32]>());
    match write_private(&path, &secret) {
        Ok(()) => Ok(Secret::new(secret)),
        // Another process starting on the same directory wrote it first: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            checked_secret(std::fs::read_to_string(&path)?.trim(), &path.display().to_string())
        }
        Err(e) => Err(e).with_context(|| format!("failed to write {}", path.display())),
    }
}

/// Writes a new file readable by its owner only, atomically: the contents go to a temporary
/// file first, which is then linked to `path` (failing if `path` exists), so no reader ever
/// sees an empty or half-written key.
fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension(format!("tmp-{}", uuid::Uuid::now_v7()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let written = options.open(&tmp).and_then(|mut f| {
        f.write_all(contents.as_bytes())?;
        f.sync_all()
    });
    let linked = written.and_then(|()| std::fs::hard_link(&tmp, path));
    let _ = std::fs::remove_file(&tmp);
    linked
}

/// The embedded data directory and the database files in it: owner only.
fn restrict_data_dir(config: &Config) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let set = |path: &Path, mode: u32| match std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(e).with_context(|| format!("failed to restrict the permissions of {}", path.display()))
            }
            _ => Ok(()),
        };
        set(&config.data_dir, 0o700)?;
        for file in ["shop.db", "shop.db-wal", "shop.db-shm", "jwt-secret", "vapid-private-key"] {
            set(&config.data_dir.join(file), 0o600)?;
        }
    }
    Ok(())
}

/// The message templates: built-ins and `SHOP_TEMPLATE_DIR` overrides, compiled once.
fn templates(config: &Config) -> anyhow::Result<Arc<Templates>> {
    let templates = Templates::load(config.template_dir.as_deref()).context("SHOP_TEMPLATE_DIR: a template does not compile")?;
    notifier::check_sms_templates(&templates).context("SHOP_TEMPLATE_DIR: an SMS template does not fit")?;
    Ok(Arc::new(templates))
}

/// Builds the application state on an open store.
pub fn app_state(config: &Config, store: EventStore) -> anyhow::Result<AppState> {
    let principals = http_kit::Principals::start(store.clone());
    let jwt = JwtKeys::new(&jwt_secret(config)?, config.api().access_token_ttl).with_principals(principals);
    Ok(AppState::new(store, jwt, mailer(config)?, templates(config)?, Arc::new(SystemClock), config.api()))
}

/// SMTP when `SMTP_URL` is set, else the outbox directory.
fn mailer(config: &Config) -> anyhow::Result<Arc<dyn Mailer>> {
    Ok(match &config.smtp_url {
        Some(url) => Arc::new(SmtpMailer::new(url.expose()).map_err(|e| anyhow::anyhow!("SMTP_URL: {e}"))?),
        None => Arc::new(OutboxMailer::new(mailer::default_outbox(&config.data_dir))),
    })
}

/// The SMS provider at `SHOP_SMS_URL`, else the outbox directory.
fn sms(config: &Config) -> anyhow::Result<Arc<dyn notifier::sms::SmsSender>> {
    let Some(url) = &config.sms_url else {
        if config.sms_account.is_some() || config.sms_token.is_some() || config.sms_from.is_some() {
            bail!("SHOP_SMS_ACCOUNT, SHOP_SMS_TOKEN and SHOP_SMS_FROM need SHOP_SMS_URL");
        }
        return Ok(Arc::new(notifier::sms::OutboxSms::new(notifier::sms::default_outbox(&config.data_dir))));
    };
    let sms = notifier::sms::HttpSms::new(notifier::sms::HttpSmsConfig {
        url: url.clone(),
        account: config.sms_account.clone().unwrap_or_default(),
        token: config.sms_token.as_ref().map(|t| t.expose().to_owned()).unwrap_or_default(),
        from: config.sms_from.clone().unwrap_or_default(),
        timeout: Duration::from_secs(10),
    });
    Ok(Arc::new(sms.map_err(anyhow::Error::msg)?))
}

/// Web push with `SHOP_VAPID_PRIVATE_KEY`, or in embedded mode with a key generated once into
/// the data directory; `None` in production without a key.
fn web_push(config: &Config) -> anyhow::Result<Option<Arc<notifier::push::WebPush>>> {
    let key = match &config.vapid_private_key {
        Some(key) => notifier::push::VapidKey::from_private(key.expose(), &config.vapid_subject)
            .map_err(|e| anyhow::anyhow!("SHOP_VAPID_PRIVATE_KEY: {e}"))?,
        None if config.is_embedded() => {
            notifier::push::VapidKey::load_or_generate(&config.data_dir.join("vapid-private-key"), &config.vapid_subject)
                .map_err(|e| anyhow::anyhow!("the VAPID key: {e}"))?
        }
        None => return Ok(None),
    };
    let push = notifier::push::WebPush::new(key, config.webhook_policy(), Duration::from_secs(10)).map_err(anyhow::Error::msg)?;
    Ok(Some(Arc::new(push)))
}

/// The payment provider `SHOP_PAYMENT_GATEWAY` names.
fn gateway(config: &Config) -> anyhow::Result<Arc<dyn domain::payment::PaymentGateway>> {
    Ok(match config.payment_gateway {
        PaymentGateway::Simulated => Arc::new(domain::payment::SimulatedGateway::new()),
        PaymentGateway::Http => {
            let Some(url) = &config.payment_gateway_url else { bail!("SHOP_PAYMENT_GATEWAY=http needs SHOP_PAYMENT_GATEWAY_URL") };
            let Some(key) = &config.payment_gateway_key else { bail!("SHOP_PAYMENT_GATEWAY=http needs SHOP_PAYMENT_GATEWAY_KEY") };
            // The saga bounds each call by its own timeout; the client's is a backstop.
            let timeout = config.saga().gateway_timeout + Duration::from_secs(1);
            Arc::new(saga::HttpGateway::new(url, key.expose(), timeout).map_err(anyhow::Error::msg)?)
        }
    })
}

/// The product search index of this node.
fn open_search(config: &Config, store: &EventStore) -> anyhow::Result<ProductSearch> {
    let dir = config.search_dir();
    ProductSearch::open(store.clone(), &dir).with_context(|| format!("failed to open the search index in {}", dir.display()))
}

/// The product detail documents (Redis with `REDIS_URL`, else in process).
async fn connect_details(config: &Config, store: &EventStore) -> anyhow::Result<ProductDetails> {
    ProductDetails::connect(store.clone(), config.redis_url.as_ref().map(Secret::expose), &config.redis_prefix)
        .await
        .context("failed to connect to Redis")
}

/// The consumer group of the order saga with `SHOP_EVENT_SOURCE=kafka`.
pub const SAGA_GROUP: &str = "order-saga";

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
    /// The command that runs these roles (`shop_build_info{role}`).
    pub fn name(self) -> &'static str {
        match self {
            Roles::All => "serve",
            Roles::CommandApi => "command-api",
            Roles::QueryApi => "query-api",
            Roles::Projections => "project",
            Roles::Relay => "relay",
            Roles::Saga => "saga",
            Roles::Notifier => "notify",
        }
    }

    fn projections(self) -> bool {
        matches!(self, Roles::All | Roles::Projections)
    }

    fn saga(self) -> bool {
        matches!(self, Roles::All | Roles::Saga)
    }

    fn notifier(self) -> bool {
        matches!(self, Roles::All | Roles::Notifier)
    }

    fn serves_queries(self) -> bool {
        matches!(self, Roles::All | Roles::QueryApi)
    }
}

/// A worker on the consumer driver, as a [`Spawn`].
fn spawn_driver<C: worker_kit::Consumer>(driver: Arc<Driver<C>>) -> Spawn {
    Box::new(move |stop| tokio::spawn(driver.run(stop)))
}

/// A bound, ready-to-serve shop.
pub struct Application {
    listener: TcpListener,
    state: AppState,
    read: ReadModels,
    readiness: Arc<Readiness>,
    roles: Roles,
    read_wait: Duration,
    /// After SIGTERM, how long in-flight requests (and open event streams) may go on.
    shutdown_grace: Duration,
    /// Cross-origin requests from `SHOP_CORS_ORIGINS` only; none without it.
    cors: Option<tower_http::cors::CorsLayer>,
    /// What webhook registration allows.
    webhook_rules: notifier::webhooks::RegistrationRules,
    /// The VAPID public key when web push is on.
    push_key: Option<String>,
    /// The feed and limits of the live order streams.
    live: Arc<query_api::live::LiveFeed>,
    /// What this process runs beside its HTTP server.
    workers: Vec<Spawn>,
    /// Topics are `<prefix>.<type>.v1` (the contract at `/asyncapi.json` says so).
    topic_prefix: String,
}

impl Application {
    /// Every role (`shop serve`).
    pub async fn build(config: &Config) -> anyhow::Result<Self> {
        Self::build_roles(config, Roles::All).await
    }

    pub async fn build_roles(config: &Config, roles: Roles) -> anyhow::Result<Self> {
        http_kit::metrics::install();
        let store = connect_store(config).await?;
        let read_db = connect_read_db(config, config.db_pool_size).await?;
        let state = app_state(config, store.clone())?;
        let readiness = Arc::new(Readiness::new(Some(store.backend_name())));
        readiness.add(store_check(&store));
        if roles == Roles::QueryApi {
            readiness.add(read_db_check(&read_db));
        }
        // The relay and Kafka-fed workers cannot work without the brokers; `shop serve` and
        // the APIs can (the log is the outbox), so for them the brokers are only reported.
        let needs_brokers = match roles {
            Roles::Relay => true,
            Roles::Projections | Roles::Notifier | Roles::Saga => config.event_source == EventSource::Kafka,
            _ => false,
        };
        if let Some(check) = kafka::broker_check(config, needs_brokers)? {
            readiness.add(check);
        }
        let mut workers: Vec<Spawn> = Vec::new();

        let relay = match roles {
            Roles::All | Roles::Relay => kafka::relay(config, &store, &read_db)?,
            _ => None,
        };
        if roles == Roles::Relay && relay.is_none() {
            bail!("shop relay needs KAFKA_BROKERS");
        }
        workers.extend(relay);

        let runner = Arc::new(Runner::new(store.clone(), read_db.clone(), projections::all()));
        let source = match roles {
            Roles::All | Roles::Projections | Roles::QueryApi => {
                let reader = Arc::clone(&runner) as Arc<dyn worker_kit::SourcedConsumer>;
                kafka::group(config, reader, &config.kafka_group, roles.projections(), &store, &read_db).await?
            }
            _ => None,
        };
        let kafka_fed = source.is_some();
        match source {
            Some((source, worker)) => {
                runner.use_source(source);
                workers.extend(worker);
            }
            None if roles.projections() => workers.push(spawn_driver(Arc::clone(runner.driver()))),
            None => {}
        }

        let details = Arc::new(
            Driver::single("projection", store.clone(), Arc::new(connect_details(config, &store).await?))
                .with_batch_size(1000)
                .with_health_db(read_db.clone()),
        );
        // In-process documents exist only in the process that serves them.
        if roles.projections() || (roles == Roles::QueryApi && config.redis_url.is_none()) {
            workers.push(spawn_driver(Arc::clone(&details)));
        }
        let search = Arc::new(
            Driver::single("projection", store.clone(), Arc::new(open_search(config, &store)?))
                .with_batch_size(1000)
                .with_health_db(read_db.clone()),
        );
        // The search index lives on the disk of the node that serves it.
        if roles.serves_queries() {
            workers.push(spawn_driver(Arc::clone(&search)));
        }

        if roles.saga() {
            // The saga shares the command API's repositories: one cache and one lock per
            // aggregate in this process.
            let repos = saga::Repos {
                orders: state.orders.clone(),
                payments: state.payments.clone(),
                stock: state.stock.clone(),
                invoices: store::Repository::new(store.clone(), ()),
                promotions: state.promotions.clone(),
                carts: state.carts.clone(),
            };
            let saga =
                Arc::new(saga::OrderSaga::new(store.clone(), read_db.clone(), repos, gateway(config)?, state.clock.clone(), config.saga()));
            let reader = Arc::clone(&saga) as Arc<dyn worker_kit::SourcedConsumer>;
            match kafka::group(config, reader, SAGA_GROUP, true, &store, &read_db).await? {
                // A member reconciles only the orders of its partitions: no eager look at
                // commits of this process, whose orders another member may hold.
                Some((_, worker)) => workers.extend(worker),
                None => {
                    // Orders placed in this process are reconciled at once; the log brings the rest.
                    let eager = Arc::clone(&saga);
                    workers.push(Box::new(move |stop| tokio::spawn(eager.follow_commits(stop))));
                    workers.push(spawn_driver(Arc::new(saga.driver())));
                }
            }
        }

        let sms = sms(config)?;
        let push = web_push(config)?;
        if roles.notifier() {
            let mut notifier = notifier::Notifier::new(
                store.clone(),
                read_db.clone(),
                mailer(config)?,
                Arc::clone(&state.templates),
                notifier::NotifierConfig { low_stock_threshold: config.low_stock_threshold, ..notifier::NotifierConfig::default() },
            )
            .with_sms(Arc::clone(&sms));
            if let Some(push) = &push {
                notifier = notifier.with_push(Arc::clone(push));
            }
            let notifier = Arc::new(notifier);
            let reader = Arc::clone(&notifier) as Arc<dyn worker_kit::SourcedConsumer>;
            match kafka::group(config, reader, "notifier", true, &store, &read_db).await? {
                Some((_, worker)) => workers.extend(worker),
                None => workers.push(spawn_driver(Arc::new(notifier.driver()))),
            }
            let dispatcher = Arc::new(notifier::webhooks::Dispatcher::new(read_db.clone(), config.webhooks()?)?);
            workers.push(Box::new(move |stop| tokio::spawn(dispatcher.run(Duration::from_millis(100), stop))));
        }

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
            event_delivery = if kafka_fed { "kafka consumer group (SHOP_EVENT_SOURCE=kafka)" } else { "tail of the store's global log" },
            kafka = %config.kafka_brokers.as_deref().filter(|_| matches!(roles, Roles::All | Roles::Relay)).unwrap_or("off"),
            mail = %match &config.smtp_url {
                Some(_) => "smtp (SMTP_URL)".to_owned(),
                None => format!("outbox {}", mailer::default_outbox(&config.data_dir).display()),
            },
            cache = "in-process aggregate cache",
            product_detail = details.members()[0].backend_name(),
            search = %config.search_dir().display(),
            order_saga = match (roles.saga(), kafka_fed || config.event_source == EventSource::Kafka) {
                (false, _) => "off",
                (true, false) => "running on the log",
                (true, true) => "running in consumer group order-saga",
            },
            payment_gateway = ?config.payment_gateway,
            sms = %sms.describe(),
            push = if push.is_some() { "web push (VAPID)" } else { "off (no SHOP_VAPID_PRIVATE_KEY)" },
            notifier = match (roles.notifier(), &config.smtp_url) {
                (false, _) => "off",
                (true, Some(_)) => "running (smtp)",
                (true, None) => "running (outbox)",
            },
            addr = %listener.local_addr().map_or("none".to_owned(), |a| a.to_string()),
            "shop started"
        );
        http_kit::metrics::build_info(env!("CARGO_PKG_VERSION"), roles.name());
        gauges::pools(&readiness, &store, &read_db);
        let read = ReadModels { sql: runner, details, search };
        // The index (and, without Redis, the documents) is kept by the node that serves it.
        if roles.serves_queries() {
            gauges::readers(&readiness, &read);
        }
        Ok(Self {
            listener,
            state,
            read,
            readiness,
            roles,
            read_wait: Duration::from_millis(config.read_wait_ms),
            shutdown_grace: Duration::from_secs(config.shutdown_grace_secs),
            cors: http_kit::cors(&config.cors_origins()?),
            webhook_rules: config.webhook_rules(),
            push_key: push.as_ref().map(|p| p.public_key()),
            live: if roles.serves_queries() {
                query_api::live::LiveFeed::start(
                    read_db.clone(),
                    config.database_url.as_ref().map(|u| u.expose().to_owned()),
                    config.live_limits(),
                )
            } else {
                query_api::live::LiveFeed::manual(config.live_limits())
            },
            workers,
            topic_prefix: config.kafka_topic_prefix.clone(),
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
        &self.read.sql
    }

    /// Serves until SIGTERM or Ctrl-C, then finishes in-flight requests.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        self.run_until(shutdown_signal()).await
    }

    /// The routes this process serves, with their OpenAPI document.
    fn router(&self) -> Router {
        let db = self.read.sql.db().clone();
        let jwt = self.state.jwt.clone();
        let query = || QueryState { read: self.read.clone(), jwt: jwt.clone(), read_wait: self.read_wait, live: Arc::clone(&self.live) };
        let webhooks = || {
            ApiRouter::new().nest(
                "/api/v1",
                notifier::routes::router(notifier::routes::WebhookApi {
                    db: db.clone(),
                    jwt: jwt.clone(),
                    rules: self.webhook_rules,
                    push_key: self.push_key.clone(),
                }),
            )
        };
        let saga = || ApiRouter::new().nest("/api/v1", saga::routes::router(saga::routes::SagaApi { db: db.clone(), jwt: jwt.clone() }));
        let health = http_kit::health::router(Arc::clone(&self.readiness));
        let api = match self.roles {
            Roles::All => command_api::router(self.state.clone()).merge(query_api::router(query())).merge(webhooks()).merge(saga()),
            Roles::CommandApi => command_api::router(self.state.clone()).merge(webhooks()),
            Roles::QueryApi => query_api::router(query()).merge(saga()),
            // Worker roles serve only /health, /ready and /metrics.
            Roles::Projections | Roles::Relay | Roles::Saga | Roles::Notifier => return health.into(),
        };
        let web = matches!(self.roles, Roles::All | Roles::QueryApi);
        let router = openapi::finish(api.merge(health), &self.topic_prefix);
        if web {
            router.merge(web::router())
        } else {
            router
        }
    }

    pub async fn run_until(self, stop: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let store = self.state.store.clone();
        let (stop_workers, workers_stopped) = watch::channel(false);
        let mut router = http_kit::finish(self.router());
        if let Some(cors) = self.cors.clone() {
            router = router.layer(cors);
        }
        let app = router.into_make_service_with_connect_info::<SocketAddr>();
        let workers: Vec<_> = self.workers.into_iter().map(|spawn| spawn(workers_stopped.clone())).collect();
        // On the signal the listener closes at once; requests in flight get `shutdown_grace`
        // to finish, then their connections are dropped (an open event stream never ends).
        let (stopping, mut stopped) = watch::channel(false);
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
        for worker in workers {
            let _ = worker.await;
        }
        store.close().await;
        tracing::info!("shop stopped");
        Ok(())
    }
}

/// `/ready` asks the event store.
fn store_check(store: &EventStore) -> ReadyCheck {
    let store = store.clone();
    ReadyCheck::new("store", true, move || {
        let store = store.clone();
        Box::pin(async move { store.ping().await.map_err(|e| e.to_string()) })
    })
}

/// `/ready` of a query node asks the read-model database.
fn read_db_check(db: &ReadDb) -> ReadyCheck {
    let db = db.clone();
    ReadyCheck::new("read_models", true, move || {
        let db = db.clone();
        Box::pin(async move { sqlx::query("SELECT 1").execute(&db.pool).await.map(|_| ()).map_err(|e| e.to_string()) })
    })
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
    let read_db = connect_read_db(config, 4).await?;
    let known = projections::all();
    let chosen: Vec<_> = known.iter().filter(|p| all || Some(p.name()) == projection).cloned().collect();
    let rebuild_search = all || projection == Some(projections::search::NAME);
    let rebuild_details = all || projection == Some(projections::detail::NAME);
    if chosen.is_empty() && !rebuild_search && !rebuild_details {
        let names: Vec<_> = known.iter().map(|p| p.name()).chain([projections::detail::NAME, projections::search::NAME]).collect();
        bail!("unknown projection {:?}; known: {}", projection.unwrap_or_default(), names.join(", "));
    }
    let runner = Runner::new(store.clone(), read_db, known.clone());
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
            let details = connect_details(config, &store).await?;
            rebuild_with_progress(name, head, "rewritten in place", |progress| details.rebuild(progress)).await?;
        }
    }
    if rebuild_search {
        let search = open_search(config, &store)?;
        let name = projections::search::NAME;
        let (cursor, events) = worker_kit::Consumer::checkpoint(&search).await?.unwrap_or_default();
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
