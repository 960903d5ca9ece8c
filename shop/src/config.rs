use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};
use http_kit::Secret;

/// Where readers of events get them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EventSource {
    /// The store's global log.
    Log,
    /// Consumer groups on the relay's topics (builds with the `kafka` feature only).
    Kafka,
}

/// How the Kafka clients talk to the brokers (`security.protocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KafkaSecurity {
    Plaintext,
    /// TLS (the brokers' certificates checked against the system's CAs or `KAFKA_SSL_CA_LOCATION`).
    Ssl,
    #[value(name = "sasl_plaintext")]
    SaslPlaintext,
    /// TLS and SASL: MSK with SCRAM.
    #[value(name = "sasl_ssl")]
    SaslSsl,
}

/// The SASL mechanism (`sasl.mechanisms`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SaslMechanism {
    #[value(name = "PLAIN")]
    Plain,
    #[value(name = "SCRAM-SHA-256")]
    ScramSha256,
    #[value(name = "SCRAM-SHA-512")]
    ScramSha512,
}

/// The payment provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PaymentGateway {
    /// Test payment methods `tok_approve`, `tok_decline`, `tok_capture_fail`, `tok_timeout`.
    Simulated,
    /// A provider over HTTP (`saga::HttpGateway`): `SHOP_PAYMENT_GATEWAY_URL` and
    /// `SHOP_PAYMENT_GATEWAY_KEY`.
    Http,
}

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// For people.
    Text,
    /// One object per line, for log shippers.
    Json,
}

/// Configuration shared by every role; each flag also reads its environment variable. Secrets
/// and URLs that may carry credentials are [`Secret`]s: `{:?}` never prints them.
#[derive(Debug, Clone, Args)]
pub struct Config {
    /// Where embedded mode keeps its SQLite file, the JWT secret and the mail outbox.
    #[arg(long, env = "SHOP_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,

    /// Address the HTTP API listens on (port 0 picks a free port).
    #[arg(long, env = "SHOP_HTTP_ADDR", default_value = "127.0.0.1:8080")]
    pub http_addr: SocketAddr,

    /// `postgres://…` selects PostgreSQL; unset means the embedded SQLite store.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<Secret>,

    /// HS256 key for access tokens. Required with PostgreSQL (every node must share it);
    /// in embedded mode one is generated once and kept in the data directory.
    #[arg(long, env = "SHOP_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<Secret>,

    /// Connections to the store.
    #[arg(long, env = "SHOP_DB_POOL_SIZE", default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub db_pool_size: u32,

    /// Access-token lifetime in seconds (at most 900).
    #[arg(long, env = "SHOP_ACCESS_TOKEN_TTL_SECS", default_value_t = 900, value_parser = clap::value_parser!(u64).range(30..=900))]
    pub access_token_ttl_secs: u64,

    /// `redis://…` keeps product detail documents in Redis; unset keeps them in process.
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<Secret>,

    /// Prefix of every Redis key shop writes.
    #[arg(long, env = "SHOP_REDIS_PREFIX", default_value = "shop")]
    pub redis_prefix: String,

    /// `host:port,…` of the Kafka brokers; when set, `shop serve` also runs the relay (builds
    /// with the `kafka` feature only).
    #[arg(long, env = "KAFKA_BROKERS")]
    pub kafka_brokers: Option<String>,

    /// How the Kafka clients connect: `plaintext`, `ssl`, `sasl_plaintext` or `sasl_ssl`.
    #[arg(long, env = "KAFKA_SECURITY_PROTOCOL", value_enum, default_value_t = KafkaSecurity::Plaintext)]
    pub kafka_security_protocol: KafkaSecurity,

    /// With `sasl_*`: `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512`.
    #[arg(long, env = "KAFKA_SASL_MECHANISM", value_enum)]
    pub kafka_sasl_mechanism: Option<SaslMechanism>,

    /// With `sasl_*`: the user name.
    #[arg(long, env = "KAFKA_SASL_USERNAME")]
    pub kafka_sasl_username: Option<String>,

    /// With `sasl_*`: the password.
    #[arg(long, env = "KAFKA_SASL_PASSWORD", hide_env_values = true)]
    pub kafka_sasl_password: Option<Secret>,

    /// With `ssl` or `sasl_ssl`: a PEM file of the CAs that sign the brokers' certificates
    /// (default: the system's).
    #[arg(long, env = "KAFKA_SSL_CA_LOCATION")]
    pub kafka_ssl_ca_location: Option<PathBuf>,

    /// Topics are `<prefix>.<aggregate type>.v1`.
    #[arg(long, env = "SHOP_KAFKA_TOPIC_PREFIX", default_value = "shop")]
    pub kafka_topic_prefix: String,

    /// Copies of each partition of the topics the relay creates (at most the brokers' number).
    #[arg(long, env = "SHOP_KAFKA_REPLICATION", default_value_t = 1, value_parser = clap::value_parser!(i32).range(1..=5))]
    pub kafka_replication: i32,

    /// Partitions of the topics the relay creates.
    #[arg(long, env = "SHOP_KAFKA_PARTITIONS", default_value_t = 3, value_parser = clap::value_parser!(i32).range(1..=1000))]
    pub kafka_partitions: i32,

    /// Longest wait, in milliseconds, for a read model to reach `X-Min-Position`.
    #[arg(long, env = "SHOP_READ_WAIT_MS", default_value_t = 2000, value_parser = clap::value_parser!(u64).range(0..=30000))]
    pub read_wait_ms: u64,

    /// Where the SQL projections read events: `log` (the store's global log) or `kafka` (a
    /// consumer group on the relay's topics; builds with the `kafka` feature only).
    #[arg(long, env = "SHOP_EVENT_SOURCE", value_enum, default_value_t = EventSource::Log)]
    pub event_source: EventSource,

    /// Consumer group of the projections when `SHOP_EVENT_SOURCE=kafka`.
    #[arg(long, env = "SHOP_KAFKA_GROUP", default_value = "shop-projections")]
    pub kafka_group: String,

    /// Where this node keeps its product search index (default: `<data dir>/search`).
    #[arg(long, env = "SHOP_SEARCH_DIR")]
    pub search_dir: Option<PathBuf>,

    /// Seconds reserved stock waits for payment before the order saga cancels the order
    /// (`reservation_expired`).
    #[arg(long, env = "SHOP_RESERVATION_TTL_SECS", default_value_t = 900, value_parser = clap::value_parser!(u64).range(1..=7 * 24 * 3600))]
    pub reservation_ttl_secs: u64,

    /// Tax rate in basis points (2000 = 20%) for tenants without their own rate.
    #[arg(long, env = "SHOP_TAX_RATE_BP", default_value_t = 2000, value_parser = clap::value_parser!(u32).range(0..=10000))]
    pub tax_rate_bp: u32,

    /// Per-tenant tax rates in basis points: `acme=1900,globex=700`.
    #[arg(long, env = "SHOP_TAX_RATES", default_value = "", value_parser = parse_tax_rates)]
    pub tax_rates: TaxRates,

    /// Flat shipping per order, in minor units of the order's currency.
    #[arg(long, env = "SHOP_SHIPPING_AMOUNT", default_value_t = 0, value_parser = clap::value_parser!(i64).range(0..=100_000_000))]
    pub shipping_amount: i64,

    /// Where people reach the shop's pages: links in mail (a password reset) point there.
    #[arg(long, env = "SHOP_PUBLIC_URL", default_value = "http://127.0.0.1:8080")]
    pub public_url: String,

    /// Seconds a cart's pricing stays fresh: a read later than this prices the cart again
    /// (changes always do).
    #[arg(long, env = "SHOP_CART_PRICE_TTL_SECS", default_value_t = 900, value_parser = clap::value_parser!(u64).range(1..=7 * 24 * 3600))]
    pub cart_price_ttl_secs: u64,

    /// Days an open guest cart stays untouched before it expires.
    #[arg(long, env = "SHOP_GUEST_CART_TTL_DAYS", default_value_t = 7, value_parser = clap::value_parser!(u32).range(1..=3650))]
    pub guest_cart_ttl_days: u32,

    /// Days an open customer cart stays untouched before it expires.
    #[arg(long, env = "SHOP_CUSTOMER_CART_TTL_DAYS", default_value_t = 90, value_parser = clap::value_parser!(u32).range(1..=3650))]
    pub customer_cart_ttl_days: u32,

    /// Hours after which a customer who takes marketing mail is reminded, once, of an untouched
    /// cart; unset: no reminders.
    #[arg(long, env = "SHOP_CART_REMINDER_HOURS", value_parser = clap::value_parser!(u32).range(1..=8760))]
    pub cart_reminder_hours: Option<u32>,

    /// The payment provider: `simulated` (test payment methods `tok_approve`, `tok_decline`,
    /// `tok_capture_fail`, `tok_timeout`, in process) or `http` (a provider behind
    /// `SHOP_PAYMENT_GATEWAY_URL`, the protocol of `saga::HttpGateway`); see
    /// `domain::payment::PaymentGateway` to add another.
    #[arg(long, env = "SHOP_PAYMENT_GATEWAY", value_enum, default_value_t = PaymentGateway::Simulated)]
    pub payment_gateway: PaymentGateway,

    /// Base URL of the payment provider with `SHOP_PAYMENT_GATEWAY=http`.
    #[arg(long, env = "SHOP_PAYMENT_GATEWAY_URL")]
    pub payment_gateway_url: Option<String>,

    /// Bearer key of the payment provider with `SHOP_PAYMENT_GATEWAY=http` (no default).
    #[arg(long, env = "SHOP_PAYMENT_GATEWAY_KEY", hide_env_values = true)]
    pub payment_gateway_key: Option<Secret>,

    /// `smtp://host:port`: mail goes over SMTP; unset, it is written as `.eml` files into
    /// `<data dir>/outbox`.
    #[arg(long, env = "SMTP_URL", hide_env_values = true)]
    pub smtp_url: Option<Secret>,

    /// The Messages endpoint of a Twilio-shaped SMS API (`https://…/Accounts/<sid>/Messages.json`):
    /// order news go there by SMS; unset, each SMS is a JSON file in `<data dir>/outbox/sms`.
    #[arg(long, env = "SHOP_SMS_URL")]
    pub sms_url: Option<String>,

    /// The SMS provider's account (basic-auth user) with `SHOP_SMS_URL`.
    #[arg(long, env = "SHOP_SMS_ACCOUNT")]
    pub sms_account: Option<String>,

    /// The SMS provider's auth token with `SHOP_SMS_URL` (no default; never printed).
    #[arg(long, env = "SHOP_SMS_TOKEN", hide_env_values = true)]
    pub sms_token: Option<Secret>,

    /// The sender of SMS with `SHOP_SMS_URL`: an E.164 number or a sender id the provider knows.
    #[arg(long, env = "SHOP_SMS_FROM")]
    pub sms_from: Option<String>,

    /// The VAPID private key of web push: the 32-byte P-256 private scalar, base64url (no
    /// default; never printed). Unset, embedded mode generates one into
    /// `<data dir>/vapid-private-key` and production sends no push.
    #[arg(long, env = "SHOP_VAPID_PRIVATE_KEY", hide_env_values = true)]
    pub vapid_private_key: Option<Secret>,

    /// The contact push services may write to about this shop's pushes (`mailto:` or `https:`).
    #[arg(long, env = "SHOP_VAPID_SUBJECT", default_value = "mailto:operator@shop.invalid")]
    pub vapid_subject: String,

    /// Admins are told when a SKU's available units fall below this.
    #[arg(long, env = "SHOP_LOW_STOCK_THRESHOLD", default_value_t = 5, value_parser = clap::value_parser!(i64).range(0..=1_000_000))]
    pub low_stock_threshold: i64,

    /// Per-tenant template overrides: `<dir>/<tenant>/<template>.txt` (first line the subject).
    #[arg(long, env = "SHOP_TEMPLATE_DIR")]
    pub template_dir: Option<PathBuf>,

    /// Attempts of one webhook delivery before it is dead-lettered (redeliverable by hand).
    #[arg(long, env = "SHOP_WEBHOOK_MAX_ATTEMPTS", default_value_t = 8, value_parser = clap::value_parser!(i64).range(1..=100))]
    pub webhook_max_attempts: i64,

    /// Seconds a webhook endpoint has to answer one delivery.
    #[arg(long, env = "SHOP_WEBHOOK_TIMEOUT_SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=120))]
    pub webhook_timeout_secs: u64,

    /// PEM file of CA certificates trusted for `https://` webhook endpoints besides the public
    /// roots (a private CA).
    #[arg(long, env = "SHOP_WEBHOOK_CA_FILE")]
    pub webhook_ca_file: Option<PathBuf>,

    /// Let webhooks reach loopback, private, link-local and other internal addresses
    /// (development and local test receivers only; never in production).
    #[arg(long, env = "SHOP_WEBHOOK_ALLOW_PRIVATE", default_value_t = false, action = clap::ArgAction::Set)]
    pub webhook_allow_private: bool,

    /// Let webhooks use plain `http://` (development only).
    #[arg(long, env = "SHOP_WEBHOOK_ALLOW_HTTP", default_value_t = false, action = clap::ArgAction::Set)]
    pub webhook_allow_http: bool,

    /// Webhook endpoints one tenant may register.
    #[arg(long, env = "SHOP_WEBHOOK_MAX_ENDPOINTS", default_value_t = 20, value_parser = clap::value_parser!(i64).range(1..=1000))]
    pub webhook_max_endpoints: i64,

    /// Seconds requests in flight at SIGTERM may take to finish before their connections are
    /// closed (open event streams never finish by themselves).
    #[arg(long, env = "SHOP_SHUTDOWN_GRACE_SECS", default_value_t = 20, value_parser = clap::value_parser!(u64).range(0..=300))]
    pub shutdown_grace_secs: u64,

    /// Log filter (`tracing` EnvFilter syntax, e.g. `info,sqlx=error,shop=debug`).
    #[arg(long, env = "SHOP_LOG", default_value = "info,sqlx=error", value_parser = parse_log_filter)]
    pub log: String,

    /// `text` (for people) or `json` (one object per line, for log shippers).
    #[arg(long, env = "SHOP_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Refresh-token lifetime in seconds.
    #[arg(long, env = "SHOP_REFRESH_TOKEN_TTL_SECS", default_value_t = 30 * 24 * 3600, value_parser = clap::value_parser!(u64).range(60..))]
    pub refresh_token_ttl_secs: u64,

    /// Absolute session lifetime in seconds: refreshing never extends a login past it.
    #[arg(long, env = "SHOP_SESSION_MAX_AGE_SECS", default_value_t = 30 * 24 * 3600, value_parser = clap::value_parser!(u64).range(60..))]
    pub session_max_age_secs: u64,

    /// Requests a minute one client address may make to each auth route (login, registration,
    /// refresh, password reset); 429 with Retry-After beyond.
    #[arg(long, env = "SHOP_AUTH_RATE_PER_CLIENT", default_value_t = 60, value_parser = clap::value_parser!(u32).range(1..))]
    pub auth_rate_per_client: u32,

    /// Requests a minute to each auth route from all clients together.
    #[arg(long, env = "SHOP_AUTH_RATE_TOTAL", default_value_t = 6000, value_parser = clap::value_parser!(u32).range(1..))]
    pub auth_rate_total: u32,

    /// Comma-separated proxies (addresses or networks, `10.0.0.0/8`) whose `X-Forwarded-For`
    /// names the client; without them the client is the socket's peer.
    #[arg(long, env = "SHOP_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Vec<http_kit::limits::Network>,

    /// Comma-separated origins (`https://shop.example.com`) whose pages may call the API from
    /// a browser; without it, no cross-origin request is allowed.
    #[arg(long, env = "SHOP_CORS_ORIGINS", value_delimiter = ',')]
    pub cors_origins: Vec<String>,

    /// Live order streams (`GET /orders/{id}/events`) one user may have open in a process.
    #[arg(long, env = "SHOP_LIVE_STREAMS_PER_USER", default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub live_streams_per_user: u64,

    /// Seconds between the live socket's pings (`GET /api/v1/ws`); a socket silent for three
    /// of them is dropped.
    #[arg(long, env = "SHOP_LIVE_PING_SECS", default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=300))]
    pub live_ping_secs: u64,

    /// Live order streams a process keeps open in all.
    #[arg(long, env = "SHOP_LIVE_STREAMS_MAX", default_value_t = 2000, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub live_streams_max: u64,
}

impl Config {
    /// The default configuration for a data directory (used by tests and tools).
    pub fn embedded(data_dir: PathBuf) -> Self {
        Self {
            data_dir,
            http_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            database_url: None,
            jwt_secret: None,
            db_pool_size: 16,
            access_token_ttl_secs: 900,
            refresh_token_ttl_secs: 30 * 24 * 3600,
            session_max_age_secs: 30 * 24 * 3600,
            auth_rate_per_client: 60,
            auth_rate_total: 6000,
            trusted_proxies: Vec::new(),
            cors_origins: Vec::new(),
            live_streams_per_user: 5,
            live_streams_max: 2000,
            live_ping_secs: 20,
            read_wait_ms: 2000,
            kafka_brokers: None,
            redis_url: None,
            redis_prefix: "shop".to_owned(),
            kafka_topic_prefix: "shop".to_owned(),
            kafka_security_protocol: KafkaSecurity::Plaintext,
            kafka_sasl_mechanism: None,
            kafka_sasl_username: None,
            kafka_sasl_password: None,
            kafka_ssl_ca_location: None,
            kafka_partitions: 3,
            kafka_replication: 1,
            search_dir: None,
            event_source: EventSource::Log,
            kafka_group: "shop-projections".to_owned(),
            reservation_ttl_secs: 900,
            tax_rate_bp: 2000,
            tax_rates: TaxRates::default(),
            shipping_amount: 0,
            cart_price_ttl_secs: 900,
            public_url: "http://127.0.0.1:8080".to_owned(),
            guest_cart_ttl_days: 7,
            customer_cart_ttl_days: 90,
            cart_reminder_hours: None,
            payment_gateway: PaymentGateway::Simulated,
            payment_gateway_url: None,
            payment_gateway_key: None,
            smtp_url: None,
            sms_url: None,
            sms_account: None,
            sms_token: None,
            sms_from: None,
            vapid_private_key: None,
            vapid_subject: "mailto:operator@shop.invalid".to_owned(),
            low_stock_threshold: 5,
            template_dir: None,
            webhook_max_attempts: 8,
            webhook_timeout_secs: 10,
            webhook_ca_file: None,
            webhook_allow_private: false,
            webhook_allow_http: false,
            webhook_max_endpoints: 20,
            shutdown_grace_secs: 20,
            log: "info,sqlx=error".to_owned(),
            log_format: LogFormat::Text,
        }
    }

    pub fn store_url(&self) -> String {
        match &self.database_url {
            Some(url) => url.expose().to_owned(),
            None => format!("sqlite://{}", self.data_dir.join("shop.db").display()),
        }
    }

    /// The librdkafka properties of `KAFKA_SECURITY_PROTOCOL` and its companions. SASL needs
    /// a mechanism, a user and a password, and nothing of SASL or TLS is accepted without the
    /// protocol that uses it: a half-made setting stops the start, naming the variable.
    pub fn kafka_security(&self) -> anyhow::Result<Vec<(String, String)>> {
        let (tls, sasl) = match self.kafka_security_protocol {
            KafkaSecurity::Plaintext => (false, false),
            KafkaSecurity::Ssl => (true, false),
            KafkaSecurity::SaslPlaintext => (false, true),
            KafkaSecurity::SaslSsl => (true, true),
        };
        let protocol = self.kafka_security_protocol.to_possible_value().map(|v| v.get_name().to_owned()).unwrap_or_default();
        let mut out = vec![("security.protocol".to_owned(), protocol.clone())];
        let sasl_given = [self.kafka_sasl_mechanism.is_some(), self.kafka_sasl_username.is_some(), self.kafka_sasl_password.is_some()];
        if sasl {
            let (Some(mechanism), Some(user), Some(password)) =
                (self.kafka_sasl_mechanism, &self.kafka_sasl_username, &self.kafka_sasl_password)
            else {
                anyhow::bail!("KAFKA_SECURITY_PROTOCOL={protocol} needs KAFKA_SASL_MECHANISM, KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD");
            };
            let mechanism = mechanism.to_possible_value().map(|v| v.get_name().to_owned()).unwrap_or_default();
            out.push(("sasl.mechanisms".to_owned(), mechanism));
            out.push(("sasl.username".to_owned(), user.clone()));
            out.push(("sasl.password".to_owned(), password.expose().to_owned()));
        } else if sasl_given.contains(&true) {
            anyhow::bail!("KAFKA_SASL_* is set, but KAFKA_SECURITY_PROTOCOL={protocol} uses no SASL (sasl_ssl or sasl_plaintext)");
        }
        match (&self.kafka_ssl_ca_location, tls) {
            (Some(ca), true) => out.push(("ssl.ca.location".to_owned(), ca.display().to_string())),
            (Some(_), false) => {
                anyhow::bail!("KAFKA_SSL_CA_LOCATION is set, but KAFKA_SECURITY_PROTOCOL={protocol} uses no TLS (ssl or sasl_ssl)")
            }
            (None, _) => {}
        }
        Ok(out)
    }

    /// `SHOP_CORS_ORIGINS` as header values; an origin with a path, a wildcard or no scheme is
    /// refused at start.
    pub fn cors_origins(&self) -> anyhow::Result<Vec<axum::http::HeaderValue>> {
        self.cors_origins
            .iter()
            .map(|o| {
                let o = o.trim().trim_end_matches('/');
                let valid =
                    (o.starts_with("https://") || o.starts_with("http://")) && !o.contains('*') && o.splitn(4, '/').nth(3).is_none();
                anyhow::ensure!(valid, "SHOP_CORS_ORIGINS: {o:?} is not an origin (scheme://host[:port])");
                axum::http::HeaderValue::from_str(o).map_err(|_| anyhow::anyhow!("SHOP_CORS_ORIGINS: {o:?} is not an origin"))
            })
            .collect()
    }

    pub fn search_dir(&self) -> PathBuf {
        self.search_dir.clone().unwrap_or_else(|| self.data_dir.join("search"))
    }

    pub fn is_embedded(&self) -> bool {
        self.database_url.is_none()
    }

    pub fn api(&self) -> command_api::ApiConfig {
        command_api::ApiConfig {
            access_token_ttl: Duration::from_secs(self.access_token_ttl_secs),
            refresh_token_ttl: Duration::from_secs(self.refresh_token_ttl_secs),
            session_max_age: Duration::from_secs(self.session_max_age_secs),
            auth_per_client_per_minute: self.auth_rate_per_client,
            auth_total_per_minute: self.auth_rate_total,
            trusted_proxies: self.trusted_proxies.clone(),
            cart_price_ttl: chrono::Duration::seconds(i64::try_from(self.cart_price_ttl_secs).unwrap_or(900)),
            public_url: self.public_url.trim_end_matches('/').to_owned(),
            orders: command_api::OrderSettings {
                tax_rate_bp: self.tax_rate_bp,
                tenant_tax_rates: self.tax_rates.0.clone(),
                shipping_amount: self.shipping_amount,
            },
            ..command_api::ApiConfig::default()
        }
    }

    /// The webhook dispatcher's settings; fails when the CA file cannot be read.
    pub fn webhooks(&self) -> anyhow::Result<notifier::webhooks::DispatchConfig> {
        let extra_roots_pem = match &self.webhook_ca_file {
            Some(path) => {
                Some(std::fs::read(path).map_err(|e| anyhow::anyhow!("SHOP_WEBHOOK_CA_FILE: cannot read {}: {e}", path.display()))?)
            }
            None => None,
        };
        let timeout = Duration::from_secs(self.webhook_timeout_secs);
        Ok(notifier::webhooks::DispatchConfig {
            max_attempts: self.webhook_max_attempts,
            timeout,
            stale_after: (timeout * 2).max(Duration::from_secs(60)),
            extra_roots_pem,
            policy: self.webhook_policy(),
            ..notifier::webhooks::DispatchConfig::default()
        })
    }

    pub fn live_limits(&self) -> query_api::live::StreamLimits {
        query_api::live::StreamLimits {
            per_user: self.live_streams_per_user as usize,
            total: self.live_streams_max as usize,
            ping_every: Duration::from_secs(self.live_ping_secs),
        }
    }

    pub fn webhook_policy(&self) -> notifier::targets::TargetPolicy {
        notifier::targets::TargetPolicy { allow_private: self.webhook_allow_private, allow_http: self.webhook_allow_http }
    }

    pub fn webhook_rules(&self) -> notifier::webhooks::RegistrationRules {
        notifier::webhooks::RegistrationRules { policy: self.webhook_policy(), max_endpoints: self.webhook_max_endpoints }
    }

    pub fn saga(&self) -> saga::SagaConfig {
        saga::SagaConfig {
            reservation_ttl: chrono::Duration::seconds(self.reservation_ttl_secs as i64),
            guest_cart_ttl: chrono::Duration::days(i64::from(self.guest_cart_ttl_days)),
            customer_cart_ttl: chrono::Duration::days(i64::from(self.customer_cart_ttl_days)),
            cart_reminder: self.cart_reminder_hours.map(|h| chrono::Duration::hours(i64::from(h))),
            ..saga::SagaConfig::default()
        }
    }
}

/// Per-tenant tax rates in basis points.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaxRates(pub BTreeMap<String, u32>);

fn parse_log_filter(raw: &str) -> Result<String, String> {
    tracing_subscriber::EnvFilter::try_new(raw).map(|_| raw.to_owned()).map_err(|e| e.to_string())
}

fn parse_tax_rates(raw: &str) -> Result<TaxRates, String> {
    let mut rates = BTreeMap::new();
    for pair in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (tenant, rate) = pair.split_once('=').ok_or_else(|| format!("{pair:?} is not tenant=basis_points"))?;
        let tenant: domain::TenantId = tenant.trim().parse().map_err(|_| format!("{tenant:?} is not a tenant id"))?;
        let rate: u32 = rate.trim().parse().ok().filter(|r| *r <= 10_000).ok_or_else(|| format!("{rate:?} is not 0-10000 basis points"))?;
        rates.insert(tenant.to_string(), rate);
    }
    Ok(TaxRates(rates))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_and_urls_do_not_print() {
        let mut config = Config::embedded("./data".into());
        config.jwt_secret = Some(Secret::new("jwt-secret-jwt-secret-jwt-secret-0123"));
        config.database_url = Some(Secret::new("postgres://shop:db-password@db/shop"));
        config.redis_url = Some(Secret::new("redis://:redis-password@cache"));
        config.smtp_url = Some(Secret::new("smtp://mail-user:mail-password@mail"));
        config.sms_token = Some(Secret::new("sms-token-0123"));
        config.vapid_private_key = Some(Secret::new("vapid-private-0123"));
        let printed = format!("{config:?}");
        for secret in ["jwt-secret", "db-password", "redis-password", "mail-password", "sms-token", "vapid-private"] {
            assert!(!printed.contains(secret), "{secret} printed: {printed}");
        }
    }

    #[test]
    fn tax_rates_parse_per_tenant_and_refuse_nonsense() {
        assert_eq!(parse_tax_rates("").expect("empty"), TaxRates::default());
        let rates = parse_tax_rates("acme=1900, globex=700").expect("valid");
        assert_eq!(rates.0.get("acme"), Some(&1900));
        assert_eq!(rates.0.get("globex"), Some(&700));
        assert!(parse_tax_rates("acme").is_err());
        assert!(parse_tax_rates("acme=10001").is_err());
        assert!(parse_tax_rates("Bad Tenant=5").is_err());
    }
}
