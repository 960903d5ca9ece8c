//! Web push against real stores and a local push service that checks the VAPID token and
//! decrypts each payload as a browser would: every subscribed device hears of its orders, a
//! device the service says is gone is removed, the limits and target rules of subscriptions
//! hold, and an event delivered twice pushes nothing new.

mod common;

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use domain::order::{Order, OrderCommand};
use domain::{stream_id, OrderId, PaymentId, TenantId, UserId};
use mailer::{OutboxMailer, Templates};
use notifier::push::{InvalidSubscription, SubscriptionKeys, VapidKey, WebPush, MAX_PER_USER};
use notifier::targets::TargetPolicy;
use notifier::{Channel, DeliveryFilter, DeliveryStatus, Notifier, NotifierConfig};
use projections::Runner;
use store::{Metadata, Repository};
use testkit::{both_backends, PushService, PushSubscription, TestStore};
use worker_kit::{Driver, ReadDb};

const LOCAL: TargetPolicy = TargetPolicy { allow_private: true, allow_http: true };

fn tenant() -> TenantId {
    "acme".parse().expect("valid")
}

async fn customer(t: &TestStore, n: u128) -> UserId {
    common::customer(t, n, Vec::new()).await
}

async fn order_steps(t: &TestStore, n: u128, steps: Vec<OrderCommand>) {
    let orders = Repository::<Order>::new(t.store.clone(), ());
    for command in steps {
        let id = stream_id(&tenant(), OrderId::from_uuid(uuid::Uuid::from_u128(n)));
        orders.execute(&id, command, None, &Metadata::default()).await.expect("order step");
    }
}

fn keys(device: &PushSubscription) -> SubscriptionKeys {
    SubscriptionKeys { p256dh: device.p256dh.clone(), auth: device.auth.clone() }
}

async fn subscribe(db: &ReadDb, user: UserId, device: &PushSubscription) -> String {
    let stored = notifier::push::subscribe(db, "acme", &user.to_string(), &device.endpoint, &keys(device), LOCAL).await.expect("db");
    stored.expect("accepted").id
}

both_backends!(every_device_hears_of_its_orders_and_a_gone_one_is_removed, |t: TestStore| async move {
    let ada = customer(&t, 2).await;
    let db = ReadDb::connect(&t.url, 4).await.expect("read db");
    db.migrate().await.expect("schema");
    let runner = Runner::new(t.store.clone(), db.clone(), projections::all());
    let service = PushService::start().await;
    let (phone, laptop) = (service.subscribe(), service.subscribe());
    subscribe(&db, ada, &phone).await;
    let laptop_id = subscribe(&db, ada, &laptop).await;

    let key = VapidKey::generate("mailto:ops@shop.example");
    let public = key.public_key();
    let push = Arc::new(WebPush::new(key, LOCAL, Duration::from_secs(5)).expect("client"));
    let dir = std::env::temp_dir().join(format!("shop-push-{}", uuid::Uuid::new_v4().simple()));
    let mailer = Arc::new(OutboxMailer::new(dir.clone()));
    let n = Notifier::new(t.store.clone(), db.clone(), mailer, Arc::new(Templates::default()), NotifierConfig::default());
    let n: Driver<Notifier> = Arc::new(n.with_push(push)).driver();

    let place = testkit::placement(&tenant(), OrderId::from_uuid(uuid::Uuid::from_u128(100)), ada, &[("LAMP-1", 1)], 0, "tok_approve");
    order_steps(
        &t,
        100,
        vec![
            place,
            OrderCommand::MarkStockReserved { expires_at: Utc::now() + chrono::Duration::minutes(15) },
            OrderCommand::MarkPaymentAuthorised { payment_id: PaymentId::from_uuid(uuid::Uuid::from_u128(100)) },
            OrderCommand::Confirm,
        ],
    )
    .await;
    common::drive(&t, &db, &runner, &n).await.expect("notifier");
    let pushed = service.pushed();
    assert_eq!(pushed.len(), 2, "both devices: {pushed:?} refused {:?}", service.refused());
    for p in &pushed {
        assert_eq!(p.payload["title"], "Order 00000064 is confirmed", "{p:?}");
        assert_eq!(p.payload["url"], format!("/orders/{}", OrderId::from_uuid(uuid::Uuid::from_u128(100))));
        assert_eq!(p.vapid_key, public, "signed with the shop's key");
        assert_eq!(p.ttl, Some(86_400));
    }

    // The laptop's subscription ended: the shipment reaches the phone, and the laptop's
    // subscription is removed.
    service.gone(&laptop.token);
    order_steps(
        &t,
        100,
        vec![OrderCommand::Ship { carrier: "DHL".parse().expect("valid"), tracking_number: "JD0001".parse().expect("valid") }],
    )
    .await;
    common::drive(&t, &db, &runner, &n).await.expect("notifier");
    let shipped: Vec<_> = service.pushed().into_iter().filter(|p| p.payload["title"] == "Order 00000064 has shipped").collect();
    assert_eq!(shipped.len(), 1);
    assert_eq!(shipped[0].token, phone.token);
    assert!(shipped[0].payload["body"].as_str().is_some_and(|b| b.contains("DHL") && b.contains("JD0001")), "{:?}", shipped[0]);
    let left = notifier::push::subscriptions(&db, "acme", &ada.to_string()).await.expect("list");
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(left.iter().all(|s| s.id != laptop_id));
    let filter = DeliveryFilter { channel: Some(Channel::Push), status: Some(DeliveryStatus::Dead) };
    let dead = notifier::deliveries(&db, &tenant(), filter, 10).await.expect("deliveries");
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert!(dead[0].last_error.as_deref().is_some_and(|e| e.contains("gone")), "{dead:?}");
    assert!(dead[0].recipient.starts_with("device …") && !dead[0].id.contains(&laptop_id), "masked: {dead:?}");

    // Every event delivered again: nothing new is pushed.
    let before = service.pushed().len();
    sqlx::query("DELETE FROM projection_checkpoints WHERE name = 'notifier'").execute(&db.pool).await.expect("reset");
    common::drive(&t, &db, &runner, &n).await.expect("again");
    assert_eq!(service.pushed().len(), before);
    assert!(service.refused().is_empty(), "{:?}", service.refused());
    let _ = std::fs::remove_dir_all(dir);
});

both_backends!(subscriptions_are_checked_limited_and_owned, |t: TestStore| async move {
    let ada = customer(&t, 2).await;
    let bob = customer(&t, 3).await;
    let db = ReadDb::connect(&t.url, 4).await.expect("read db");
    db.migrate().await.expect("schema");
    Runner::new(t.store.clone(), db.clone(), projections::all()).catch_up().await.expect("users view");
    let service = PushService::start().await;
    let device = service.subscribe();
    let try_subscribe = |endpoint: String, keys: SubscriptionKeys, policy| {
        let db = db.clone();
        async move { notifier::push::subscribe(&db, "acme", &ada.to_string(), &endpoint, &keys, policy).await.expect("db") }
    };
    // Public https only by default: a loopback or plain-http endpoint is refused.
    let refused = try_subscribe(device.endpoint.clone(), keys(&device), TargetPolicy::default()).await;
    assert!(matches!(refused, Err(InvalidSubscription::Endpoint(_))), "{refused:?}");
    for endpoint in ["https://169.254.169.254/push/x", "https://localhost/push/x", "https://10.0.0.1/push/x"] {
        let refused = try_subscribe(endpoint.into(), keys(&device), TargetPolicy { allow_private: false, allow_http: true }).await;
        assert!(matches!(refused, Err(InvalidSubscription::Endpoint(_))), "{endpoint}: {refused:?}");
    }
    let bad = SubscriptionKeys { p256dh: "AAAA".into(), auth: device.auth.clone() };
    assert!(matches!(try_subscribe(device.endpoint.clone(), bad, LOCAL).await, Err(InvalidSubscription::Keys(_))));
    let short_auth = SubscriptionKeys { p256dh: device.p256dh.clone(), auth: "AAAA".into() };
    assert!(matches!(try_subscribe(device.endpoint.clone(), short_auth, LOCAL).await, Err(InvalidSubscription::Keys(_))));

    // At most MAX_PER_USER, also when subscribed at once; the same endpoint again replaces.
    let devices: Vec<_> = (0..MAX_PER_USER + 5).map(|_| service.subscribe()).collect();
    let tries = devices.iter().map(|d| try_subscribe(d.endpoint.clone(), keys(d), LOCAL));
    let accepted = futures::future::join_all(tries).await.into_iter().filter(Result::is_ok).count();
    assert_eq!(accepted as i64, MAX_PER_USER);
    assert_eq!(notifier::push::subscriptions(&db, "acme", &ada.to_string()).await.expect("list").len() as i64, MAX_PER_USER);
    let again = try_subscribe(devices[0].endpoint.clone(), keys(&devices[0]), LOCAL).await;
    let listed = notifier::push::subscriptions(&db, "acme", &ada.to_string()).await.expect("list");
    if let Ok(s) = &again {
        assert!(listed.iter().any(|l| l.id == s.id), "the same endpoint keeps its subscription");
    }
    // Bob cannot remove Ada's.
    assert!(!notifier::push::unsubscribe(&db, "acme", &bob.to_string(), &listed[0].id).await.expect("db"));
    assert!(notifier::push::unsubscribe(&db, "acme", &ada.to_string(), &listed[0].id).await.expect("db"));
});

#[test]
fn the_vapid_key_is_made_once_kept_private_and_checked() {
    let dir = std::env::temp_dir().join(format!("shop-vapid-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("vapid-private-key");
    let first = VapidKey::load_or_generate(&path, "mailto:ops@shop.example").expect("made");
    let again = VapidKey::load_or_generate(&path, "mailto:ops@shop.example").expect("read");
    assert_eq!(first.public_key(), again.public_key(), "generated once, then read");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777, 0o600);
    }
    assert!(!format!("{first:?}").contains(&first.private_encoded()), "the private key is never printed");
    std::fs::write(&path, "garbage").expect("write");
    assert!(VapidKey::load_or_generate(&path, "mailto:ops@shop.example").is_err(), "a broken key stops the start");
    let _ = std::fs::remove_dir_all(&dir);
    for bad in ["", "AAAA", "not base64!"] {
        assert!(VapidKey::from_private(bad, "mailto:ops@shop.example").is_err(), "{bad:?}");
    }
    assert!(VapidKey::from_private(&first.private_encoded(), "ops@shop.example").is_err(), "the subject is a mailto: or https: URL");
}
