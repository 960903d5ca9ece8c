use std::sync::Arc;
use std::time::Duration;

use domain::admins::AdminRoster;
use domain::cart::{Cart, CustomerCarts};
use domain::claim::{EmailClaim, SkuClaim};
use domain::order::{Order, OrderEvent};
use domain::payment::Payment;
use domain::product::Product;
use domain::promotion::Promotion;
use domain::session::Session;
use domain::settings::TenantSettings;
use domain::stock::Stock;
use domain::user::{User, UserServices};
use store::{EventStore, Repository};

use http_kit::limits::RateLimits;
use http_kit::JwtKeys;
use mailer::{Mailer, Templates};

use crate::auth::{Argon2Hasher, LoginLimiter};

pub use domain::{Clock, SystemClock};

/// Settings of the command API, with their defaults in [`ApiConfig::default`].
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// Lifetime of access tokens (capped at 15 minutes).
    pub access_token_ttl: Duration,
    /// Lifetime of a refresh token; each rotation starts it again, up to `session_max_age`.
    pub refresh_token_ttl: Duration,
    /// Absolute lifetime of a login, which rotation never extends.
    pub session_max_age: Duration,
    /// How long a password-reset token stays valid.
    pub reset_token_ttl: Duration,
    /// Failed logins per account before it is refused for `login_window`.
    pub login_max_failures: u32,
    pub login_window: Duration,
    /// Requests a minute per client address to each of the auth routes (login, registration,
    /// refresh, password reset), and in all.
    pub auth_per_client_per_minute: u32,
    pub auth_total_per_minute: u32,
    /// Proxies whose `X-Forwarded-For` names the client.
    pub trusted_proxies: Vec<http_kit::limits::Network>,
    /// Events per Stock snapshot.
    pub stock_snapshot_every: u64,
    /// A cart read later than this after its last pricing is priced again
    /// (`SHOP_CART_PRICE_TTL_SECS`).
    pub cart_price_ttl: chrono::Duration,
    /// Where people reach the shop's pages, without a trailing slash (`SHOP_PUBLIC_URL`):
    /// the password-reset mail links to `<public_url>/reset?token=…`.
    pub public_url: String,
    pub orders: OrderSettings,
}

/// How orders are priced beyond their lines.
#[derive(Debug, Clone)]
pub struct OrderSettings {
    /// Tax rate in basis points (2000 = 20%) for tenants without their own
    /// (`SHOP_TAX_RATE_BP`).
    pub tax_rate_bp: u32,
    /// Per-tenant tax rates (`SHOP_TAX_RATES=acme=1900,globex=700`).
    pub tenant_tax_rates: std::collections::BTreeMap<String, u32>,
    /// Flat shipping per order in minor units of the order's currency (`SHOP_SHIPPING_AMOUNT`).
    pub shipping_amount: i64,
}

impl Default for OrderSettings {
    fn default() -> Self {
        Self { tax_rate_bp: 2000, tenant_tax_rates: Default::default(), shipping_amount: 0 }
    }
}

impl OrderSettings {
    pub fn tax_rate_bp(&self, tenant: &domain::TenantId) -> u32 {
        self.tenant_tax_rates.get(tenant.as_str()).copied().unwrap_or(self.tax_rate_bp)
    }
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            access_token_ttl: Duration::from_secs(15 * 60),
            refresh_token_ttl: Duration::from_secs(30 * 24 * 3600),
            session_max_age: Duration::from_secs(30 * 24 * 3600),
            reset_token_ttl: Duration::from_secs(3600),
            login_max_failures: 10,
            login_window: Duration::from_secs(15 * 60),
            auth_per_client_per_minute: 60,
            auth_total_per_minute: 6000,
            trusted_proxies: Vec::new(),
            stock_snapshot_every: 100,
            cart_price_ttl: chrono::Duration::minutes(15),
            public_url: "http://127.0.0.1:8080".to_owned(),
            orders: OrderSettings::default(),
        }
    }
}

/// Everything a handler may use; cheap to clone.
#[derive(Clone)]
pub struct AppState(pub Arc<Services>);

pub struct Services {
    pub store: EventStore,
    pub users: Repository<User>,
    pub emails: Repository<EmailClaim>,
    pub products: Repository<Product>,
    pub skus: Repository<SkuClaim>,
    pub stock: Repository<Stock>,
    pub sessions: Repository<Session>,
    pub admins: Repository<AdminRoster>,
    pub orders: Repository<Order>,
    pub payments: Repository<Payment>,
    pub carts: Repository<Cart>,
    pub customer_carts: Repository<CustomerCarts>,
    /// Discount codes: hot at checkout, so snapshotted like stock.
    pub promotions: Repository<Promotion>,
    /// Each tenant's own settings (tax, shipping, the seller on invoices).
    pub settings: Repository<TenantSettings>,
    pub jwt: JwtKeys,
    pub hasher: Argon2Hasher,
    pub limiter: LoginLimiter,
    pub limits: Arc<RateLimits>,
    pub clock: Arc<dyn Clock>,
    /// Sends the password-reset mail, whose token exists only in the request that made it.
    pub mailer: Arc<dyn Mailer>,
    pub templates: Arc<Templates>,
    pub config: ApiConfig,
}

impl axum::extract::FromRef<AppState> for JwtKeys {
    fn from_ref(state: &AppState) -> JwtKeys {
        state.jwt.clone()
    }
}

impl std::ops::Deref for AppState {
    type Target = Services;
    fn deref(&self) -> &Services {
        &self.0
    }
}

/// Orders as they commit in this process (placed by the command API, confirmed or cancelled
/// by the saga): `shop_orders_placed_total`, `shop_orders_confirmed_total`,
/// `shop_orders_cancelled_total`, and `shop_order_revenue_minor_total{currency}` (the totals of
/// confirmed orders, in minor units).
fn count_orders(order: &Order, events: &[OrderEvent]) {
    for event in events {
        match event {
            OrderEvent::Placed { .. } => metrics::counter!("shop_orders_placed_total").increment(1),
            OrderEvent::Confirmed => {
                metrics::counter!("shop_orders_confirmed_total").increment(1);
                if let Some(total) = order.total.filter(|t| t.amount > 0) {
                    metrics::counter!("shop_order_revenue_minor_total", "currency" => total.currency.to_string())
                        .increment(total.amount as u64);
                }
            }
            OrderEvent::Cancelled { .. } => metrics::counter!("shop_orders_cancelled_total").increment(1),
            _ => {}
        }
    }
}

/// The order counters exist from the start, so that the first order shows as an increase.
fn register_order_counters() {
    for name in ["shop_orders_placed_total", "shop_orders_confirmed_total", "shop_orders_cancelled_total"] {
        metrics::counter!(name).increment(0);
    }
}

impl AppState {
    pub fn new(
        store: EventStore,
        jwt: JwtKeys,
        mailer: Arc<dyn Mailer>,
        templates: Arc<Templates>,
        clock: Arc<dyn Clock>,
        config: ApiConfig,
    ) -> Self {
        register_order_counters();
        let hasher = Argon2Hasher::owasp();
        let user_services = UserServices { hasher: Arc::new(hasher.clone()) };
        Self(Arc::new(Services {
            users: Repository::new(store.clone(), user_services),
            emails: Repository::new(store.clone(), ()),
            products: Repository::new(store.clone(), ()),
            skus: Repository::new(store.clone(), ()),
            stock: Repository::new(store.clone(), ()).with_snapshots(config.stock_snapshot_every),
            sessions: Repository::new(store.clone(), ()),
            admins: Repository::new(store.clone(), ()),
            orders: Repository::new(store.clone(), ()).with_observer(count_orders),
            payments: Repository::new(store.clone(), ()),
            carts: Repository::new(store.clone(), ()),
            customer_carts: Repository::new(store.clone(), ()),
            promotions: Repository::new(store.clone(), ()).with_snapshots(config.stock_snapshot_every),
            settings: Repository::new(store.clone(), ()),
            store,
            jwt,
            hasher,
            limiter: LoginLimiter::new(config.login_max_failures, config.login_window),
            limits: RateLimits::new(config.auth_per_client_per_minute, config.auth_total_per_minute, config.trusted_proxies.clone()),
            clock,
            mailer,
            templates,
            config,
        }))
    }
}
