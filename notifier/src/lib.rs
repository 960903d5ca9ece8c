//! The notifier: reads events and tells people — welcome mail, order confirmed, shipped,
//! cancelled (with the reason in words), refund issued, low stock to the tenant's admins, and
//! new products to the users who take marketing mail (`PUT /users/me/preferences`).
//!
//! # Layout
//! - [`Notifier`] (this file): a consumer of the log on the worker kit's driver
//!   ([`Notifier::driver`]), or of consumer group `notifier` (`SourcedConsumer`); planning each
//!   event's messages from its typed payload; claiming and sending mail; retries.
//! - [`webhooks`]: endpoints, signed deliveries and the [`webhooks::Dispatcher`].
//! - [`sms`]: text messages and their senders (outbox files, a Twilio-shaped HTTP API).
//! - [`push`]: web push subscriptions, the VAPID key and the encrypted sends.
//! - [`routes`]: `/api/v1/admin/webhooks…`, `/api/v1/admin/deliveries…` and `/api/v1/admin/mail`.
//!
//! # How it is built
//! - It reads the store's global log from its own checkpoint (`notifier` in
//!   `projection_checkpoints`), like the order saga, in both modes.
//! - Each (event, channel, recipient, template) is one row of `notifier_deliveries`, keyed by
//!   the event's log position. A message is *claimed* by inserting its row (`sending`) before
//!   it is sent, and marked `sent` after: a re-delivered event, or a restart after a crash
//!   anywhere in a batch, finds the row and sends nothing new. A crash between the claim and
//!   the send leaves the row `sending` (shown to operators; never sent twice, at most once in
//!   effect). Every message carries a stable `Message-ID` made from its key.
//! - A batch's messages go out stream by stream, up to 4 streams side by side, each stream's
//!   events in log order. A user's event (preferences, phone, erasure) waits for everything
//!   before it and holds back everything after it, since later messages read what it keeps.
//!   Webhooks are queued first, in log order.
//! - A failed send is kept `failed` with its rendered text and retried with backoff by later
//!   rounds, then `dead` after `max_attempts` (or at once when the provider refuses it for
//!   good); it never holds the log back. Admins list every channel's deliveries and send a
//!   failed or dead one again (`/api/v1/admin/deliveries`).
//! - Order shipped and cancelled also go by SMS to customers who gave a phone number and opted
//!   in (`PATCH /users/me {phone}`, `PUT /users/me/preferences {sms: true}`); the notifier
//!   keeps both, as it read them from the log, in `notifier_preferences`.
//! - Order confirmed, shipped and cancelled are pushed to each of the customer's browsers that
//!   subscribed (`POST /users/me/push-subscriptions`); a subscription the push service says
//!   is gone is removed.
//! - Templates come from the `mailer` crate: text files with per-tenant overrides, compiled
//!   once at start.
//! - Password-reset mail is not here: its token exists only in the request that made it, so
//!   the command API sends it itself, always.

pub mod push;
pub mod routes;
pub mod sms;
pub mod targets;
pub mod webhooks;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use cqrs_es::Aggregate;
use domain::cart::{Cart, CartEvent, CartStatus};
use domain::order::{CancelReason, Order, OrderEvent};
use domain::product::Product;
use domain::stock::{Stock, StockEvent};
use domain::user::User;
use domain::{Email, Name, Phone, TenantId};
use mailer::{Mail, Mailer, TemplateError, Templates};
use serde::Deserialize;
use serde_json::{json, Value};
use sqlx::Row as _;
use store::{EventStore, LogEvent, Repository, StoreError};
use worker_kit::{advance_checkpoint, Checkpoint, Consumer, ConsumerError, Driver, ReadDb, Sourced, SourcedConsumer, WorkerError};

/// The notifier's checkpoint name.
pub const NAME: &str = "notifier";

#[derive(Debug, Clone)]
pub struct NotifierConfig {
    /// Admins hear when a SKU's available units fall below this (`SHOP_LOW_STOCK_THRESHOLD`).
    pub low_stock_threshold: i64,
    /// Sends of one message before it is `dead`.
    pub max_attempts: i64,
    pub batch_size: u32,
}

impl Default for NotifierConfig {
    fn default() -> Self {
        Self { low_stock_threshold: 5, max_attempts: 8, batch_size: 200 }
    }
}

/// A way a message leaves (`notifier_deliveries.channel`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    Email,
    Sms,
    Push,
    Webhook,
}

impl Channel {
    pub const ALL: [Channel; 4] = [Channel::Email, Channel::Sms, Channel::Push, Channel::Webhook];

    pub const fn as_str(self) -> &'static str {
        match self {
            Channel::Email => "email",
            Channel::Sms => "sms",
            Channel::Push => "push",
            Channel::Webhook => "webhook",
        }
    }
}

impl std::str::FromStr for Channel {
    type Err = sqlx::Error;

    fn from_str(s: &str) -> Result<Self, sqlx::Error> {
        Channel::ALL.into_iter().find(|c| c.as_str() == s).ok_or_else(|| sqlx::Error::Decode(format!("unknown channel {s:?}").into()))
    }
}

/// Counts one delivery attempt's outcome: `shop_notifier_deliveries_total{channel, status}`,
/// status `sent`, `failed` (retried later) or `dead`.
pub(crate) fn delivered(channel: &'static str, status: DeliveryStatus) {
    metrics::counter!("shop_notifier_deliveries_total", "channel" => channel, "status" => status.as_str()).increment(1);
}

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Checkpoint(#[from] WorkerError),
    #[error("notifier database: {0}")]
    Db(#[from] sqlx::Error),
    #[error(transparent)]
    Template(#[from] TemplateError),
    #[error("unreadable event at position {position}: {reason}")]
    Malformed { position: i64, reason: String },
    /// Something the message needs is not visible yet (a user the users view has not caught
    /// up with); the batch is tried again.
    #[error("not yet visible: {0}")]
    NotYet(String),
    /// Raised by [`Notifier::crash_after`] and [`webhooks::Dispatcher::crash_after`]: stands in
    /// for the process dying at that point.
    #[cfg(feature = "faults")]
    #[error("injected crash")]
    Injected,
    /// A setting that cannot be used (a webhook CA file without certificates).
    #[error("{0}")]
    Config(String),
}

impl ConsumerError for NotifyError {
    fn is_concurrent(&self) -> bool {
        matches!(self, NotifyError::Checkpoint(WorkerError::Concurrent))
    }
}

/// Where one delivery stands (`notifier_deliveries.status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// Planned (webhooks), not yet claimed by a sender.
    Pending,
    /// Claimed by a sender; after a crash it stays so (never sent twice by itself).
    Sending,
    Sent,
    /// The last attempt failed; tried again at `next_attempt_ms`.
    Failed,
    /// Every attempt failed; redeliverable by hand (webhooks).
    Dead,
}

impl DeliveryStatus {
    pub const fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Sending => "sending",
            DeliveryStatus::Sent => "sent",
            DeliveryStatus::Failed => "failed",
            DeliveryStatus::Dead => "dead",
        }
    }
}

impl std::str::FromStr for DeliveryStatus {
    type Err = sqlx::Error;

    fn from_str(s: &str) -> Result<Self, sqlx::Error> {
        use DeliveryStatus::*;
        [Pending, Sending, Sent, Failed, Dead]
            .into_iter()
            .find(|d| d.as_str() == s)
            .ok_or_else(|| sqlx::Error::Decode(format!("unknown delivery status {s:?}").into()))
    }
}

/// What the notifier reads of user events: the published fields only (a password hash never
/// leaves the store, so a Kafka-fed notifier would not have it).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case")]
enum UserFacts {
    Registered { email: Email, name: Name },
    Erased,
    MarketingEmailsSet { allowed: bool },
    PhoneChanged { phone: Option<Phone> },
    SmsSet { allowed: bool },
}

/// Order news that also go by SMS or push: (mail template, SMS template, push template).
const ORDER_NEWS: [(&str, Option<&str>, Option<&str>); 3] = [
    ("order_confirmed", None, Some("push/order_confirmed")),
    ("order_shipped", Some("sms/order_shipped"), Some("push/order_shipped")),
    ("order_cancelled", Some("sms/order_cancelled"), Some("push/order_cancelled")),
];

/// Streams whose messages go out side by side within one batch. Each holds at most one
/// connection of the read-model pool at a time, which `shop serve`'s other roles share (16
/// connections, seven of them the SQL projections' transactions), so a backlog of messages
/// takes a quarter of it at most.
const STREAMS_AT_ONCE: usize = 4;

/// Whether handling `e` writes what the handling of other events reads: a user's events keep
/// their preferences, phone number and erasure in the notifier's tables, which every later
/// order, cart and product message of theirs reads.
fn writes_what_others_read(e: &LogEvent) -> bool {
    e.aggregate_type == User::TYPE
}

/// `events` (in log order) as turns to handle one after the other, each turn a list of
/// streams that may go side by side, each stream its events in log order. An event that
/// [writes what others read](writes_what_others_read) is a turn of its own: everything before
/// it is done before it, and everything after it starts after it.
fn in_turns<'a>(events: &[&'a LogEvent]) -> Vec<Vec<Vec<&'a LogEvent>>> {
    let mut turns = Vec::new();
    let mut turn: Vec<Vec<&LogEvent>> = Vec::new();
    let mut streams: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for &event in events {
        if writes_what_others_read(event) {
            if !turn.is_empty() {
                turns.push(std::mem::take(&mut turn));
                streams.clear();
            }
            turns.push(vec![vec![event]]);
            continue;
        }
        match streams.get(event.aggregate_id.as_str()) {
            Some(&i) => turn[i].push(event),
            None => {
                streams.insert(&event.aggregate_id, turn.len());
                turn.push(vec![event]);
            }
        }
    }
    if !turn.is_empty() {
        turns.push(turn);
    }
    turns
}

const IDLE: Duration = Duration::from_millis(100);
const GATHER: Duration = Duration::from_millis(10);

/// One message to send.
#[derive(Debug, Clone, PartialEq)]
struct Notification {
    channel: Channel,
    template: &'static str,
    tenant: String,
    to: String,
    /// The user it goes to, if it goes to one: what erasure scrubs their deliveries by.
    user: Option<String>,
    context: Value,
}

pub struct Notifier {
    store: EventStore,
    db: ReadDb,
    mailer: Arc<dyn Mailer>,
    /// Without one, no SMS is planned.
    sms: Option<Arc<dyn sms::SmsSender>>,
    /// Without it, nothing is pushed.
    push: Option<Arc<push::WebPush>>,
    templates: Arc<Templates>,
    orders: Repository<Order>,
    products: Repository<Product>,
    carts: Repository<Cart>,
    config: NotifierConfig,
    /// Steps left before an injected crash (tests).
    #[cfg(feature = "faults")]
    budget: worker_kit::CrashBudget,
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// `out_of_stock` in words, for the customer.
pub fn reason_in_words(reason: CancelReason) -> &'static str {
    match reason {
        CancelReason::OutOfStock => "an item you ordered is out of stock",
        CancelReason::PaymentDeclined => "the payment was declined",
        CancelReason::PaymentTimeout => "the payment provider did not answer in time",
        CancelReason::ReservationExpired => "the order was not paid in time",
        CancelReason::CancelledByCustomer => "you cancelled it",
    }
}

impl Notifier {
    pub fn new(store: EventStore, db: ReadDb, mailer: Arc<dyn Mailer>, templates: Arc<Templates>, config: NotifierConfig) -> Self {
        // Every outcome of every channel exists from the start (the first dead one is an increase).
        for channel in Channel::ALL {
            for status in [DeliveryStatus::Sent, DeliveryStatus::Failed, DeliveryStatus::Dead] {
                metrics::counter!("shop_notifier_deliveries_total", "channel" => channel.as_str(), "status" => status.as_str())
                    .increment(0);
            }
        }
        let orders = Repository::new(store.clone(), ());
        let products = Repository::new(store.clone(), ());
        let carts = Repository::new(store.clone(), ());
        Self {
            carts,
            store,
            db,
            mailer,
            sms: None,
            push: None,
            templates,
            orders,
            products,
            config,
            #[cfg(feature = "faults")]
            budget: worker_kit::CrashBudget::default(),
        }
    }

    /// Order news also go by SMS, through `sender`, to customers who opted in.
    pub fn with_sms(mut self, sender: Arc<dyn sms::SmsSender>) -> Self {
        self.sms = Some(sender);
        self
    }

    /// Order news are also pushed, with `sender`, to the customers' subscribed browsers.
    pub fn with_push(mut self, sender: Arc<push::WebPush>) -> Self {
        self.push = Some(sender);
        self
    }

    /// The notifier on the consumer driver, with its batch size.
    pub fn driver(self: Arc<Self>) -> Driver<Notifier> {
        let (store, batch_size, db) = (self.store.clone(), self.config.batch_size, self.db.clone());
        Driver::single("notifier", store, self).with_batch_size(batch_size).with_pacing(IDLE, GATHER).with_health_db(db)
    }

    /// Fails with [`NotifyError::Injected`] before the `steps + 1`-th send (tests).
    #[cfg(feature = "faults")]
    pub fn crash_after(&self, steps: u32) {
        self.budget.set(steps);
    }

    fn tick(&self) -> Result<(), NotifyError> {
        #[cfg(feature = "faults")]
        if !self.budget.tick() {
            return Err(NotifyError::Injected);
        }
        Ok(())
    }

    /// Sends what `events` (in log order) call for and queues their webhooks; safe to repeat
    /// (the deliveries are keyed by the events' log positions). Fails with the first failing
    /// event's position.
    ///
    /// Webhooks are queued first, one event after the other, since an endpoint gets its
    /// deliveries in log order. The messages then go [`in_turns`]: the streams of a turn side
    /// by side, each stream's events one after the other. Every stream of a turn runs to its
    /// end or its first failure before the batch fails, so a message is never left claimed
    /// and unsent because another stream failed (a user the users view has not caught up with).
    async fn handle_all<'a>(&'a self, events: &[&'a LogEvent]) -> Result<(), (i64, NotifyError)> {
        use futures::StreamExt as _;
        let endpoints = webhooks::all_endpoints(&self.db).await.map_err(|e| (events.first().map_or(0, |e| e.cursor.position), e))?;
        for event in events {
            self.queue_webhooks(event, &endpoints).await.map_err(|e| (event.cursor.position, e))?;
        }
        for turn in in_turns(events) {
            // Each stream's future is made when a place is free, so at most four are alive.
            // Boxed: with the closure's type in the future, rustc cannot prove `async_trait`'s
            // `Send` for every lifetime of the events ("FnOnce is not general enough").
            let streams: futures::stream::BoxStream<'a, Result<(), (i64, NotifyError)>> =
                futures::stream::iter(turn).map(|stream| self.handle_stream(stream)).buffer_unordered(STREAMS_AT_ONCE).boxed();
            let done: Vec<Result<(), (i64, NotifyError)>> = streams.collect().await;
            if let Some(first) = done.into_iter().filter_map(Result::err).min_by_key(|(position, _)| *position) {
                return Err(first);
            }
        }
        Ok(())
    }

    /// Sends what one stream's events call for, in their order, up to the first failure.
    async fn handle_stream(&self, stream: Vec<&LogEvent>) -> Result<(), (i64, NotifyError)> {
        for event in stream {
            self.handle(event).await.map_err(|e| (event.cursor.position, e))?;
        }
        Ok(())
    }

    /// Sends what one event calls for.
    async fn handle(&self, event: &LogEvent) -> Result<(), NotifyError> {
        use tracing::Instrument as _;
        // Continues the trace of the write that produced the event.
        let span =
            store::trace::span(|| tracing::info_span!("notifier.handle", event = %event.event_type, position = event.cursor.position));
        store::trace::continue_from(&span, store::trace::of_metadata(&event.metadata));
        async {
            for notification in self.plan(event).await? {
                self.deliver(event, notification).await?;
            }
            Ok(())
        }
        .instrument(span)
        .await
    }

    /// The messages `event` calls for, read from its typed payload (a renamed or missing
    /// field fails the batch loudly instead of sending a message with a blank in it).
    async fn plan(&self, e: &LogEvent) -> Result<Vec<Notification>, NotifyError> {
        let malformed = |reason: String| NotifyError::Malformed { position: e.cursor.position, reason };
        let Ok(domain::StreamId { tenant, key }) = domain::StreamId::parse(&e.aggregate_id) else {
            return Ok(Vec::new());
        };
        let one = |template, user: String, to: String, context| {
            Ok(vec![Notification { channel: Channel::Email, template, tenant: tenant.to_owned(), to, user: Some(user), context }])
        };
        let typed = |what: &str, e: &LogEvent| format!("{what} {}: payload does not read", e.event_type);
        match e.aggregate_type.as_str() {
            User::TYPE
                if matches!(e.event_type.as_str(), "registered" | "marketing_emails_set" | "phone_changed" | "sms_set" | "erased") =>
            {
                match UserFacts::deserialize(&e.payload).map_err(|err| malformed(format!("{}: {err}", typed("user", e))))? {
                    UserFacts::MarketingEmailsSet { allowed } => {
                        sqlx::query(
                            "INSERT INTO notifier_preferences (tenant, user_id, marketing_opt_out) VALUES ($1, $2, $3) \
                             ON CONFLICT (tenant, user_id) DO UPDATE SET marketing_opt_out = excluded.marketing_opt_out",
                        )
                        .bind(tenant)
                        .bind(key)
                        .bind(i64::from(!allowed))
                        .execute(&self.db.pool)
                        .await?;
                        Ok(Vec::new())
                    }
                    // A new number (or none) clears the opt-in, as it does on the aggregate.
                    UserFacts::PhoneChanged { phone } => {
                        sqlx::query(
                            "INSERT INTO notifier_preferences (tenant, user_id, marketing_opt_out, phone, sms) VALUES ($1, $2, 0, $3, 0) \
                             ON CONFLICT (tenant, user_id) DO UPDATE SET phone = excluded.phone, sms = 0",
                        )
                        .bind(tenant)
                        .bind(key)
                        .bind(phone.map(String::from))
                        .execute(&self.db.pool)
                        .await?;
                        Ok(Vec::new())
                    }
                    UserFacts::SmsSet { allowed } => {
                        sqlx::query(
                            "INSERT INTO notifier_preferences (tenant, user_id, marketing_opt_out, sms) VALUES ($1, $2, 0, $3) \
                             ON CONFLICT (tenant, user_id) DO UPDATE SET sms = excluded.sms",
                        )
                        .bind(tenant)
                        .bind(key)
                        .bind(i64::from(allowed))
                        .execute(&self.db.pool)
                        .await?;
                        Ok(Vec::new())
                    }
                    UserFacts::Registered { email, name } => {
                        let (email, name) = (email.to_string(), name.to_string());
                        one("welcome", key.to_owned(), email.clone(), json!({"user": {"name": name, "email": email}}))
                    }
                    UserFacts::Erased => {
                        self.scrub(tenant, key).await?;
                        Ok(Vec::new())
                    }
                }
            }
            Product::TYPE if e.event_type == "published" => {
                let (product, _) = self.products.read(&e.aggregate_id).await?;
                let (Some(details), Some(price)) = (product.details, product.price) else {
                    return Ok(Vec::new());
                };
                let product = json!({"name": details.name.to_string(), "price": price.money().to_string()});
                Ok(self
                    .marketing_audience(tenant)
                    .await?
                    .into_iter()
                    .map(|(user, to, name)| Notification {
                        channel: Channel::Email,
                        template: "new_product",
                        tenant: tenant.to_owned(),
                        user: Some(user),
                        context: json!({"user": {"name": name, "email": to}, "product": product}),
                        to,
                    })
                    .collect())
            }
            Order::TYPE => {
                let event = OrderEvent::deserialize(&e.payload).map_err(|err| malformed(format!("{}: {err}", typed("order", e))))?;
                let (template, extra) = match event {
                    OrderEvent::Confirmed => ("order_confirmed", None),
                    OrderEvent::Shipped { carrier, tracking_number } => {
                        ("order_shipped", Some(("shipment", json!({"carrier": carrier, "tracking_number": tracking_number}))))
                    }
                    OrderEvent::Refunded { amount, refunded_total } => {
                        ("refund_issued", Some(("refund", json!({"amount": amount.to_string(), "total": refunded_total.to_string()}))))
                    }
                    OrderEvent::StockRejected { .. } => {
                        ("order_cancelled", Some(("reason", json!(reason_in_words(CancelReason::OutOfStock)))))
                    }
                    OrderEvent::Cancelled { reason } | OrderEvent::PaymentFailed { reason } => {
                        ("order_cancelled", Some(("reason", json!(reason_in_words(reason)))))
                    }
                    _ => return Ok(Vec::new()),
                };
                let (order, _) = self.orders.read(&e.aggregate_id).await?;
                let customer = order.customer.ok_or_else(|| malformed("order without customer".into()))?;
                let (email, name) = self.user(tenant, &customer.to_string()).await?;
                let mut context = json!({
                    "user": {"name": name, "email": email},
                    "order": {
                        "id": key,
                        "short_id": key.get(key.len().saturating_sub(8)..).unwrap_or(key),
                        "total": order.total.map(|t| t.to_string()),
                        "lines": order.lines.iter().map(|l| json!({"sku": l.sku.to_string(), "quantity": l.quantity, "unit_price": l.unit_price.to_string()})).collect::<Vec<_>>(),
                    },
                });
                if let Some((field, value)) = extra {
                    context[field] = value;
                }
                let (_, text, pushed) = ORDER_NEWS.iter().copied().find(|(mail, ..)| *mail == template).unwrap_or((template, None, None));
                let phone = match text {
                    Some(_) if self.sms.is_some() => self.sms_number(tenant, &customer.to_string()).await?,
                    _ => None,
                };
                let mut out = vec![Notification {
                    channel: Channel::Email,
                    template,
                    tenant: tenant.to_owned(),
                    to: email,
                    user: Some(customer.to_string()),
                    context: context.clone(),
                }];
                if let (Some(template), Some(to)) = (text, phone) {
                    let user = Some(customer.to_string());
                    out.push(Notification {
                        channel: Channel::Sms,
                        template,
                        tenant: tenant.to_owned(),
                        to,
                        user,
                        context: context.clone(),
                    });
                }
                if let (Some(template), Some(_)) = (pushed, &self.push) {
                    for device in push::subscriptions(&self.db, tenant, &customer.to_string()).await? {
                        let to = device.id;
                        out.push(Notification {
                            channel: Channel::Push,
                            template,
                            tenant: tenant.to_owned(),
                            to,
                            user: Some(customer.to_string()),
                            context: context.clone(),
                        });
                    }
                }
                Ok(out)
            }
            Cart::TYPE if e.event_type == "reminder_due" => {
                let CartEvent::ReminderDue { customer, .. } =
                    CartEvent::deserialize(&e.payload).map_err(|err| malformed(format!("{}: {err}", typed("cart", e))))?
                else {
                    return Ok(Vec::new());
                };
                let (cart, _) = self.carts.read(&e.aggregate_id).await?;
                // Only to customers who take marketing mail, and only while the cart is open.
                if cart.status != CartStatus::Open || !self.takes_marketing(tenant, &customer.to_string()).await? {
                    return Ok(Vec::new());
                }
                let (email, name) = self.user(tenant, &customer.to_string()).await?;
                let lines: Vec<Value> = cart
                    .lines
                    .iter()
                    .map(|(sku, l)| json!({"sku": sku.to_string(), "quantity": l.quantity, "unit_price": l.unit_price.to_string()}))
                    .collect();
                one(
                    "cart_reminder",
                    customer.to_string(),
                    email.clone(),
                    json!({"user": {"name": name, "email": email}, "cart": {"lines": lines}}),
                )
            }
            Stock::TYPE => {
                let event = StockEvent::deserialize(&e.payload).map_err(|err| malformed(format!("{}: {err}", typed("stock", e))))?;
                // Available units after the event, and the change that led there.
                let (after, change) = match event {
                    StockEvent::Received { quantity, available, .. } => (available, quantity),
                    StockEvent::Adjusted { delta, available, .. } => (available, delta),
                    StockEvent::Reserved { quantity, available, .. } => (available, -quantity),
                    StockEvent::Committed { available, .. } => (available, 0),
                    StockEvent::Released { .. } => return Ok(Vec::new()),
                };
                let before = after - change;
                let threshold = self.config.low_stock_threshold;
                if !(before >= threshold && after < threshold) {
                    return Ok(Vec::new());
                }
                let context = json!({"stock": {"sku": key, "available": after, "threshold": threshold}});
                Ok(self
                    .admins(tenant)
                    .await?
                    .into_iter()
                    .map(|(user, to)| Notification {
                        channel: Channel::Email,
                        template: "low_stock",
                        tenant: tenant.to_owned(),
                        to,
                        user: Some(user),
                        context: context.clone(),
                    })
                    .collect())
            }
            _ => Ok(Vec::new()),
        }
    }

    /// What the notifier kept of an erased user: their deliveries' recipient and text, their
    /// phone number, their push subscriptions.
    async fn scrub(&self, tenant: &str, user: &str) -> Result<(), NotifyError> {
        let erased = domain::personal::ERASED_TEXT;
        // Blanked, and never sent again: a failed delivery is dead, its error (which may echo
        // the address) gone.
        sqlx::query(
            "UPDATE notifier_deliveries SET recipient = $1, subject = $1, body = $1, last_error = NULL, next_attempt_ms = NULL, \
             status = CASE WHEN status = 'sent' THEN status ELSE 'dead' END WHERE tenant = $2 AND user_id = $3",
        )
        .bind(erased)
        .bind(tenant)
        .bind(user)
        .execute(&self.db.pool)
        .await?;
        sqlx::query("UPDATE notifier_preferences SET phone = NULL, sms = 0 WHERE tenant = $1 AND user_id = $2")
            .bind(tenant)
            .bind(user)
            .execute(&self.db.pool)
            .await?;
        sqlx::query("DELETE FROM push_subscriptions WHERE tenant = $1 AND user_id = $2")
            .bind(tenant)
            .bind(user)
            .execute(&self.db.pool)
            .await?;
        Ok(())
    }

    /// A user's e-mail address and name from the users view.
    async fn user(&self, tenant: &str, user_id: &str) -> Result<(String, String), NotifyError> {
        let row = sqlx::query("SELECT email, name FROM rm_users WHERE tenant = $1 AND user_id = $2")
            .bind(tenant)
            .bind(user_id)
            .fetch_optional(&self.db.pool)
            .await?
            .ok_or_else(|| NotifyError::NotYet(format!("user {user_id} of {tenant} in the users view")))?;
        Ok((row.try_get(0)?, row.try_get(1)?))
    }

    /// The phone number of an active user who takes order news by SMS.
    async fn sms_number(&self, tenant: &str, user_id: &str) -> Result<Option<String>, NotifyError> {
        let row = sqlx::query(
            "SELECT p.phone FROM notifier_preferences p JOIN rm_users u ON u.tenant = p.tenant AND u.user_id = p.user_id \
             WHERE p.tenant = $1 AND p.user_id = $2 AND p.sms = 1 AND u.active = 1",
        )
        .bind(tenant)
        .bind(user_id)
        .fetch_optional(&self.db.pool)
        .await?;
        Ok(row.map(|r| r.try_get::<Option<String>, _>(0)).transpose()?.flatten())
    }

    /// Whether the user is active and takes marketing mail.
    async fn takes_marketing(&self, tenant: &str, user_id: &str) -> Result<bool, NotifyError> {
        let row = sqlx::query(
            "SELECT u.active, COALESCE(p.marketing_opt_out, 0) FROM rm_users u LEFT JOIN notifier_preferences p \
             ON p.tenant = u.tenant AND p.user_id = u.user_id WHERE u.tenant = $1 AND u.user_id = $2",
        )
        .bind(tenant)
        .bind(user_id)
        .fetch_optional(&self.db.pool)
        .await?
        .ok_or_else(|| NotifyError::NotYet(format!("user {user_id} of {tenant} in the users view")))?;
        Ok(row.try_get::<i64, _>(0)? == 1 && row.try_get::<i64, _>(1)? == 0)
    }

    /// The tenant's active users who take marketing mail: (user id, e-mail, name).
    async fn marketing_audience(&self, tenant: &str) -> Result<Vec<(String, String, String)>, NotifyError> {
        let rows = sqlx::query(
            "SELECT u.user_id, u.email, u.name FROM rm_users u LEFT JOIN notifier_preferences p ON p.tenant = u.tenant AND p.user_id = u.user_id \
             WHERE u.tenant = $1 AND u.active = 1 AND COALESCE(p.marketing_opt_out, 0) = 0 ORDER BY u.email",
        )
        .bind(tenant)
        .fetch_all(&self.db.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
            .collect::<Result<Vec<_>, sqlx::Error>>()
            .map_err(NotifyError::from)
    }

    /// The tenant's active admins: (user id, e-mail address).
    async fn admins(&self, tenant: &str) -> Result<Vec<(String, String)>, NotifyError> {
        let rows = sqlx::query("SELECT user_id, email, roles FROM rm_users WHERE tenant = $1 AND active = 1 ORDER BY email")
            .bind(tenant)
            .fetch_all(&self.db.pool)
            .await?;
        let mut out = Vec::new();
        for r in rows {
            let roles: String = r.try_get(2)?;
            if roles.split(',').any(|role| role == "admin") {
                out.push((r.try_get(0)?, r.try_get(1)?));
            }
        }
        Ok(out)
    }

    /// A `pending` delivery of `event`'s public envelope to every endpoint of its tenant that
    /// takes its type (the [`webhooks::Dispatcher`] sends them).
    async fn queue_webhooks(&self, e: &LogEvent, endpoints: &[(String, webhooks::Endpoint)]) -> Result<(), NotifyError> {
        if !worker_kit::envelope::PUBLIC_TYPES.contains(&e.aggregate_type.as_str()) {
            return Ok(());
        }
        let Ok(domain::StreamId { tenant, .. }) = domain::StreamId::parse(&e.aggregate_id) else {
            return Ok(());
        };
        let mut envelope = None;
        for (_, endpoint) in endpoints.iter().filter(|(t, _)| t == tenant) {
            let event_type = format!("{}.{}", e.aggregate_type, e.event_type);
            if !endpoint.event_types.iter().any(|p| webhooks::matches(p, &event_type)) {
                continue;
            }
            let envelope = match &envelope {
                Some(env) => env,
                None => {
                    // Webhooks carry personal fields as the topics do: sealed, with their key ids.
                    let mut published = e.clone();
                    self.store.seal_event(&mut published).await?;
                    envelope.insert(
                        worker_kit::envelope::Envelope::from_event(&published)
                            .map_err(|reason| NotifyError::Malformed { position: e.cursor.position, reason })?,
                    )
                }
            };
            let now = now_ms();
            sqlx::query(
                "INSERT INTO notifier_deliveries (id, tenant, channel, recipient, template, event_position, subject, body, status, \
                 attempts, last_error, next_attempt_ms, created_at_ms, updated_at_ms) \
                 VALUES ($1, $2, 'webhook', $3, $4, $5, $6, $7, 'pending', 0, NULL, $8, $8, $8) ON CONFLICT (id) DO NOTHING",
            )
            .bind(format!("{}:webhook:{}", e.cursor.position, endpoint.id))
            .bind(tenant)
            .bind(&endpoint.id)
            .bind(&envelope.event_type)
            .bind(e.cursor.position)
            .bind(&envelope.id)
            .bind(&envelope.value)
            .bind(now)
            .execute(&self.db.pool)
            .await?;
        }
        Ok(())
    }

    /// Claims, renders and sends one message, once.
    async fn deliver(&self, e: &LogEvent, n: Notification) -> Result<(), NotifyError> {
        // An erased person's address reads as erased: nothing goes there.
        if n.to == domain::personal::ERASED_EMAIL {
            return Ok(());
        }
        // The key names the recipient by a keyed hash, never in clear.
        let recipient = self.store.personal().blind_index(&n.tenant, &n.to).await?;
        let id = format!("{}:{}:{}:{}", e.cursor.position, n.channel.as_str(), &recipient[..32], n.template);
        let (subject, body) = match n.channel {
            Channel::Sms => (String::new(), self.templates.render_text(&n.tenant, n.template, &n.context)?),
            // What the service worker shows: title, text, and the page to open.
            Channel::Push => {
                let (title, text) = self.templates.render(&n.tenant, n.template, &n.context)?;
                let url = n.context["order"]["id"].as_str().map(|id| format!("/orders/{id}"));
                let payload = json!({"title": title, "body": text.trim(), "url": url, "tag": e.aggregate_id});
                (title, payload.to_string())
            }
            _ => self.templates.render(&n.tenant, n.template, &n.context)?,
        };
        // Checked at start over the longest context; an event older than the limits it
        // assumed can still exceed them: such a message is dead, never cut.
        let too_long = n.channel == Channel::Sms && body.chars().count() > sms::MAX_LENGTH;
        let (status, attempts, error) = match too_long {
            true => {
                (DeliveryStatus::Dead, 0, Some(format!("renders to {} characters, more than {}", body.chars().count(), sms::MAX_LENGTH)))
            }
            false => (DeliveryStatus::Sending, 1, None),
        };
        let now = now_ms();
        let claimed = sqlx::query(
            "INSERT INTO notifier_deliveries (id, tenant, channel, recipient, template, event_position, subject, body, status, \
             attempts, last_error, next_attempt_ms, created_at_ms, updated_at_ms, user_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, NULL, $12, $12, $13) ON CONFLICT (id) DO NOTHING",
        )
        .bind(&id)
        .bind(&n.tenant)
        .bind(n.channel.as_str())
        .bind(&n.to)
        .bind(n.template)
        .bind(e.cursor.position)
        .bind(&subject)
        .bind(&body)
        .bind(status.as_str())
        .bind(attempts)
        .bind(&error)
        .bind(now)
        .bind(&n.user)
        .execute(&self.db.pool)
        .await?
        .rows_affected();
        if claimed == 0 {
            return Ok(());
        }
        if too_long {
            tracing::warn!(delivery = %id, error = error.as_deref().unwrap_or_default(), "sms not sent");
            delivered(n.channel.as_str(), DeliveryStatus::Dead);
            return Ok(());
        }
        self.send(n.channel, &id, &n.to, subject, body, 1).await
    }

    async fn send(&self, channel: Channel, id: &str, to: &str, subject: String, body: String, attempts: i64) -> Result<(), NotifyError> {
        self.tick()?;
        // (error, whether trying again could help)
        let outcome: Result<(), (String, bool)> = match channel {
            Channel::Sms => match &self.sms {
                Some(sender) => sender
                    .send(&sms::Sms { id: id.to_owned(), to: to.to_owned(), body })
                    .await
                    .map_err(|e| (e.to_string(), matches!(e, sms::SmsError::Transient(_)))),
                None => Err(("no SMS sender is configured".to_owned(), true)),
            },
            Channel::Push => match &self.push {
                Some(sender) => sender.send(&self.db, to, body.as_bytes()).await.map_err(|e| {
                    let again = matches!(e, push::PushError::Transient(_));
                    (e.to_string(), again)
                }),
                None => Err(("web push is not configured".to_owned(), true)),
            },
            _ => {
                let message_id = format!("{}@shop.invalid", id.replace(['@', ':', '+'], "."));
                let mail = Mail { to: to.to_owned(), subject, body, message_id: Some(message_id) };
                self.mailer.send(mail).await.map_err(|e| (e.to_string(), true))
            }
        };
        let (status, error, next) = match outcome {
            Ok(()) => (DeliveryStatus::Sent, None, None),
            Err((e, again)) => {
                let dead = !again || attempts >= self.config.max_attempts;
                tracing::warn!(delivery = id, channel = channel.as_str(), attempts, error = %e, dead, "message not sent");
                let backoff = 1_000 * (1i64 << attempts.min(10));
                (if dead { DeliveryStatus::Dead } else { DeliveryStatus::Failed }, Some(e), (!dead).then(|| now_ms() + backoff))
            }
        };
        sqlx::query("UPDATE notifier_deliveries SET status = $1, last_error = $2, next_attempt_ms = $3, updated_at_ms = $4 WHERE id = $5")
            .bind(status.as_str())
            .bind(error)
            .bind(next)
            .bind(now_ms())
            .bind(id)
            .execute(&self.db.pool)
            .await?;
        delivered(channel.as_str(), status);
        Ok(())
    }

    /// Sends again the failed messages (mail, SMS and push) that are due, each claimed first so two
    /// notifiers never both send one.
    pub async fn retry_failed(&self) -> Result<(), NotifyError> {
        let rows = sqlx::query(
            "SELECT id, channel, recipient, subject, body, attempts FROM notifier_deliveries \
             WHERE channel IN ('email', 'sms', 'push') AND status = 'failed' AND next_attempt_ms <= $1 ORDER BY next_attempt_ms LIMIT 50",
        )
        .bind(now_ms())
        .fetch_all(&self.db.pool)
        .await?;
        for r in rows {
            let (id, channel, to, subject, body, attempts): (String, String, String, String, String, i64) =
                (r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?, r.try_get(4)?, r.try_get(5)?);
            let claimed = sqlx::query(
                "UPDATE notifier_deliveries SET status = 'sending', attempts = attempts + 1, updated_at_ms = $1 WHERE id = $2 AND status = 'failed'",
            )
            .bind(now_ms())
            .bind(&id)
            .execute(&self.db.pool)
            .await?
            .rows_affected();
            if claimed == 1 {
                self.send(channel.parse()?, &id, &to, subject, body, attempts + 1).await?;
            }
        }
        Ok(())
    }
}

/// The longest context an SMS template can be rendered over: every value at the longest it
/// can be (a Name of 200 characters, a shipment's texts at their limit, the longest reason).
pub fn longest_sms_context() -> Value {
    let longest_reason = [
        CancelReason::OutOfStock,
        CancelReason::PaymentDeclined,
        CancelReason::PaymentTimeout,
        CancelReason::ReservationExpired,
        CancelReason::CancelledByCustomer,
    ]
    .into_iter()
    .map(reason_in_words)
    .max_by_key(|r| r.chars().count())
    .unwrap_or_default();
    let shipment_text = "W".repeat(domain::order::SHIPMENT_TEXT_MAX);
    json!({
        "user": {"name": "W".repeat(200), "email": format!("{}@{}.example", "w".repeat(64), "w".repeat(180))},
        "order": {
            "id": "W".repeat(64),
            "short_id": "WWWWWWWW",
            "total": "9999999999999.99 EUR",
            "lines": [{"sku": "W".repeat(64), "quantity": 1_000_000, "unit_price": "9999999999999.99 EUR"}],
        },
        "shipment": {"carrier": shipment_text, "tracking_number": shipment_text},
        "reason": longest_reason,
    })
}

/// Every SMS template, built-in and each tenant's override, fits [`sms::MAX_LENGTH`] over
/// [`longest_sms_context`]; called at start.
pub fn check_sms_templates(templates: &Templates) -> Result<(), TemplateError> {
    for name in ORDER_NEWS.iter().filter_map(|(_, sms, _)| *sms) {
        templates.check_length(name, &longest_sms_context(), sms::MAX_LENGTH)?;
    }
    Ok(())
}

/// A delivery as operators see it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, schemars::JsonSchema)]
pub struct Delivery {
    pub id: String,
    pub channel: Channel,
    /// An e-mail address, a webhook endpoint's id, a phone number with all but its first and
    /// last two digits hidden, or a push device by the end of its id.
    pub recipient: String,
    /// The template, or a webhook's event type.
    pub template: String,
    pub status: DeliveryStatus,
    pub attempts: i64,
    pub last_error: Option<String>,
    /// When a failed delivery is tried again (ms since the epoch).
    pub next_attempt_ms: Option<i64>,
    pub created_at_ms: i64,
}

/// Which deliveries to list.
#[derive(Debug, Clone, Copy, Default)]
pub struct DeliveryFilter {
    pub channel: Option<Channel>,
    pub status: Option<DeliveryStatus>,
}

/// The deliveries of `tenant` that `filter` takes, newest first (at most `limit`); phone
/// numbers and devices masked. The ids of a delivery name its recipient, so the listed id is masked too.
pub async fn deliveries(db: &ReadDb, tenant: &TenantId, filter: DeliveryFilter, limit: i64) -> Result<Vec<Delivery>, NotifyError> {
    let rows = sqlx::query(
        "SELECT id, channel, recipient, template, status, attempts, last_error, next_attempt_ms, created_at_ms \
         FROM notifier_deliveries WHERE tenant = $1 AND ($2 = '' OR channel = $2) AND ($3 = '' OR status = $3) \
         ORDER BY event_position DESC, id LIMIT $4",
    )
    .bind(tenant.as_str())
    .bind(filter.channel.map_or("", Channel::as_str))
    .bind(filter.status.map_or("", DeliveryStatus::as_str))
    .bind(limit)
    .fetch_all(&db.pool)
    .await?;
    rows.iter()
        .map(|r| {
            let channel: Channel = r.try_get::<String, _>(1)?.parse()?;
            let (id, recipient): (String, String) = (r.try_get(0)?, r.try_get(2)?);
            let (id, recipient) = (mask_id(&id), mask_recipient(channel, &recipient));
            Ok(Delivery {
                id,
                channel,
                recipient,
                template: r.try_get(3)?,
                status: r.try_get::<String, _>(4)?.parse()?,
                attempts: r.try_get(5)?,
                last_error: r.try_get(6)?,
                next_attempt_ms: r.try_get(7)?,
                created_at_ms: r.try_get(8)?,
            })
        })
        .collect()
}

/// Queues a failed or dead delivery of `tenant` to be sent again now, with its attempts
/// counted afresh; `id` as [`deliveries`] lists it. False if there is no such delivery in
/// either state (a sent one is not sent twice by this).
pub async fn redeliver(db: &ReadDb, tenant: &TenantId, id: &str) -> Result<bool, NotifyError> {
    // Listed ids of SMS and push hide the recipient: compare each candidate of that event as
    // listed.
    let Some(position) = id.split(':').next().and_then(|p| p.parse::<i64>().ok()) else {
        return Ok(false);
    };
    let stored = sqlx::query_scalar::<_, String>(
        "SELECT id FROM notifier_deliveries WHERE tenant = $1 AND event_position = $2 AND status IN ('failed', 'dead')",
    )
    .bind(tenant.as_str())
    .bind(position)
    .fetch_all(&db.pool)
    .await?
    .into_iter()
    .find(|stored| mask_id(stored) == id);
    let Some(stored) = stored else {
        return Ok(false);
    };
    // Webhooks go back to their dispatcher as pending; mail, SMS and push to the notifier's
    // retries.
    let done = sqlx::query(
        "UPDATE notifier_deliveries SET status = CASE WHEN channel = 'webhook' THEN 'pending' ELSE 'failed' END, \
         attempts = 0, next_attempt_ms = $1, updated_at_ms = $1 WHERE id = $2 AND tenant = $3 AND status IN ('failed', 'dead')",
    )
    .bind(now_ms())
    .bind(&stored)
    .bind(tenant.as_str())
    .execute(&db.pool)
    .await?
    .rows_affected();
    Ok(done == 1)
}

/// A delivery's id as listed: `<position>:<channel>:<masked recipient>:<template>`.
fn mask_id(id: &str) -> String {
    let parts: Vec<&str> = id.splitn(4, ':').collect();
    match parts.as_slice() {
        [position, channel, recipient, template] => match channel.parse::<Channel>() {
            Ok(c @ (Channel::Sms | Channel::Push)) => format!("{position}:{channel}:{}:{template}", mask_recipient(c, recipient)),
            _ => id.to_owned(),
        },
        _ => id.to_owned(),
    }
}

/// A recipient as operators see it: phone numbers and push subscriptions (which stand for a
/// person's device) masked.
fn mask_recipient(channel: Channel, recipient: &str) -> String {
    match channel {
        Channel::Sms => domain::mask_phone(recipient),
        // Subscription ids are ASCII (uuids).
        Channel::Push => format!("device …{}", recipient.get(recipient.len().saturating_sub(4)..).unwrap_or(recipient)),
        _ => recipient.to_owned(),
    }
}

#[async_trait]
impl Consumer for Notifier {
    type Error = NotifyError;

    fn name(&self) -> &'static str {
        NAME
    }

    async fn checkpoint(&self) -> Result<Checkpoint, NotifyError> {
        Ok(self.db.checkpoint(NAME).await?)
    }

    /// Sends what each event calls for and queues its webhooks (each delivery claimed once,
    /// keyed by the event's position), then moves the checkpoint.
    async fn consume(&self, from: Checkpoint, events: &[LogEvent]) -> Result<(), NotifyError> {
        let Some(last) = events.last() else {
            return Ok(());
        };
        self.handle_all(&events.iter().collect::<Vec<_>>()).await.map_err(|(_, e)| e)?;
        let mut tx = self.db.begin().await?;
        advance_checkpoint(&mut tx, NAME, from.map(|(c, _)| c), last.cursor, events.len() as i64).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Sends again the failed mail that is due.
    async fn tick(&self) -> Result<bool, NotifyError> {
        self.retry_failed().await?;
        Ok(false)
    }
}

/// The notifier as a member of consumer group `notifier` (`SHOP_EVENT_SOURCE=kafka`): each
/// message is handled as its stored event; the group's committed offsets say where it is.
#[async_trait]
impl SourcedConsumer for Notifier {
    fn name(&self) -> &'static str {
        NAME
    }

    fn handles(&self, _aggregate_type: &str) -> bool {
        true
    }

    async fn start_offsets(&self) -> Result<Option<worker_kit::Offsets>, WorkerError> {
        Ok(None)
    }

    async fn consume_sourced(&self, batch: &[Sourced]) -> Result<(), String> {
        worker_kit::observed_sourced("notifier", NAME, batch, async {
            let events: Vec<&LogEvent> = batch.iter().map(|m| &m.event).collect();
            self.handle_all(&events).await.map_err(|(position, e)| format!("event at position {position}: {e}"))?;
            self.retry_failed().await.map_err(|e| e.to_string())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(position: i64, aggregate_type: &str, stream: &str) -> LogEvent {
        LogEvent {
            cursor: store::LogCursor { transaction_id: 0, position },
            aggregate_type: aggregate_type.into(),
            aggregate_id: stream.into(),
            sequence: position,
            event_type: "any".into(),
            event_version: "1".into(),
            payload: Value::Null,
            metadata: Value::Null,
            recorded_at: chrono::Utc::now(),
        }
    }

    #[test]
    fn a_users_event_is_a_turn_of_its_own_and_each_stream_keeps_its_order() {
        let log = [
            event(1, Order::TYPE, "acme:o1"),
            event(2, Stock::TYPE, "acme:LAMP"),
            event(3, Order::TYPE, "acme:o2"),
            event(4, Order::TYPE, "acme:o1"),
            event(5, User::TYPE, "acme:u1"),
            event(6, User::TYPE, "acme:u1"),
            event(7, Order::TYPE, "acme:o1"),
            event(8, Product::TYPE, "acme:p1"),
            event(9, Order::TYPE, "acme:o1"),
        ];
        let events: Vec<&LogEvent> = log.iter().collect();
        let turns: Vec<Vec<Vec<i64>>> = in_turns(&events)
            .into_iter()
            .map(|turn| turn.into_iter().map(|stream| stream.into_iter().map(|e| e.cursor.position).collect()).collect())
            .collect();
        assert_eq!(turns, vec![vec![vec![1, 4], vec![2], vec![3]], vec![vec![5]], vec![vec![6]], vec![vec![7, 9], vec![8]]]);
        assert!(in_turns(&[]).is_empty());
    }
}
