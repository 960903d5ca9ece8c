//! Order news by SMS against real stores and a local provider that speaks Twilio's Messages
//! API: only opted-in numbers get them, a changed number needs a new opt-in, a rate-limited or
//! failing provider is tried again, a refused number is dead until an admin sends it again,
//! and an event delivered twice sends nothing new.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use domain::order::{CancelReason, Order, OrderCommand};
use domain::user::UserCommand;
use domain::{stream_id, OrderId, PaymentId, TenantId, UserId};
use mailer::{OutboxMailer, Templates};
use notifier::sms::{HttpSms, HttpSmsConfig, OutboxSms, SmsSender};
use notifier::{Channel, DeliveryFilter, DeliveryStatus, Notifier, NotifierConfig};
use projections::Runner;
use store::{Metadata, Repository};
use testkit::{both_backends, SmsServer, TestStore};
use worker_kit::{Driver, ReadDb};

fn tenant() -> TenantId {
    "acme".parse().expect("valid")
}

async fn user(t: &TestStore, n: u128, commands: Vec<UserCommand>) -> UserId {
    common::customer(t, n, commands).await
}

fn phone(number: &str) -> UserCommand {
    UserCommand::ChangeProfile { name: None, phone: Some(Some(number.parse().expect("valid"))) }
}

fn sms_on() -> UserCommand {
    UserCommand::SetPreferences { marketing_emails: None, sms: Some(true) }
}

/// Order `n` of `customer`, taken to `last` (`"shipped"` or `"cancelled"`).
async fn order(t: &TestStore, n: u128, customer: UserId, last: &str) {
    let orders = Repository::<Order>::new(t.store.clone(), ());
    let id = OrderId::from_uuid(uuid::Uuid::from_u128(n));
    let place = testkit::placement(&tenant(), id, customer, &[("LAMP-1", 1)], 0, "tok_approve");
    let steps = match last {
        "shipped" => vec![
            place,
            OrderCommand::MarkStockReserved { expires_at: Utc::now() + chrono::Duration::minutes(15) },
            OrderCommand::MarkPaymentAuthorised { payment_id: PaymentId::from_uuid(uuid::Uuid::from_u128(n)) },
            OrderCommand::Confirm,
            OrderCommand::Ship { carrier: "DHL".parse().expect("valid"), tracking_number: format!("JD{n:04}").parse().expect("valid") },
        ],
        _ => vec![place, OrderCommand::Cancel { reason: CancelReason::CancelledByCustomer }],
    };
    for command in steps {
        orders.execute(&stream_id(&tenant(), id), command, None, &Metadata::default()).await.expect("order step");
    }
}

struct Setup {
    db: ReadDb,
    runner: Runner,
    dir: std::path::PathBuf,
}

async fn setup(t: &TestStore) -> Setup {
    let db = ReadDb::connect(&t.url, 4).await.expect("read db");
    db.migrate().await.expect("schema");
    let runner = Runner::new(t.store.clone(), db.clone(), projections::all());
    let dir = std::env::temp_dir().join(format!("shop-sms-{}", uuid::Uuid::new_v4().simple()));
    Setup { db, runner, dir }
}

fn notifier(t: &TestStore, s: &Setup, sms: Arc<dyn SmsSender>) -> Driver<Notifier> {
    let mailer = Arc::new(OutboxMailer::new(s.dir.join("mail")));
    let n = Notifier::new(t.store.clone(), s.db.clone(), mailer, Arc::new(Templates::default()), NotifierConfig::default());
    Arc::new(n.with_sms(sms)).driver()
}

/// Runs the users view and the notifier until the notifier has passed the whole log.
async fn drive(t: &TestStore, s: &Setup, n: &Driver<Notifier>) {
    common::drive(t, &s.db, &s.runner, n).await.expect("notifier");
}

async fn sms_rows(s: &Setup, status: Option<DeliveryStatus>) -> Vec<notifier::Delivery> {
    let filter = DeliveryFilter { channel: Some(Channel::Sms), status };
    notifier::deliveries(&s.db, &tenant(), filter, 100).await.expect("deliveries")
}

/// Retries until no SMS is `failed` any more (backoff: 2 s after the first attempt).
async fn settle(n: &Driver<Notifier>, s: &Setup) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !sms_rows(s, Some(DeliveryStatus::Failed)).await.is_empty() {
        assert!(Instant::now() < deadline, "failed messages were not sent again: {:?}", sms_rows(s, None).await);
        n.members()[0].retry_failed().await.expect("retry");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

const ADA: &str = "+4915100000002";
const DEE: &str = "+4915100000005";

both_backends!(order_news_go_by_sms_to_opted_in_numbers_once_through_a_failing_provider, |t: TestStore| async move {
    let ada = user(&t, 2, vec![phone(ADA), sms_on()]).await;
    let bob = user(&t, 3, vec![phone("+4915100000003")]).await; // a number, no opt-in
    let cy = user(&t, 4, vec![phone("+4915100000004"), sms_on(), phone("+4915100000044")]).await; // new number: opt-in gone
    let dee = user(&t, 5, vec![phone(DEE), sms_on()]).await;
    order(&t, 100, ada, "shipped").await;
    order(&t, 101, ada, "cancelled").await;
    order(&t, 102, bob, "shipped").await;
    order(&t, 103, cy, "shipped").await;
    order(&t, 104, dee, "shipped").await;

    let provider = SmsServer::start().await;
    provider.answer_next(&[429, 500]);
    provider.refuse(DEE);
    let config = HttpSmsConfig {
        url: provider.url.clone(),
        account: provider.account.clone(),
        token: provider.token.clone(),
        from: "+15005550006".into(),
        timeout: Duration::from_secs(5),
    };
    let s = setup(&t).await;
    let n = notifier(&t, &s, Arc::new(HttpSms::new(config).expect("settings")));
    drive(&t, &s, &n).await;
    settle(&n, &s).await;

    let sent = provider.sent();
    let mut got: Vec<(String, String)> = sent.iter().map(|r| (r.to.clone(), r.body.clone())).collect();
    got.sort();
    assert_eq!(
        got,
        vec![
            (ADA.to_owned(), "shop: your order 00000064 has shipped with DHL. Tracking number: JD0100".to_owned()),
            (ADA.to_owned(), "shop: your order 00000065 was cancelled: you cancelled it. Anything charged is refunded.".to_owned()),
        ],
        "only opted-in numbers, and Cy's new number was never opted in"
    );
    let requests = provider.requests();
    assert!(requests.iter().all(|r| r.authorised && r.from == "+15005550006"), "{requests:?}");
    assert_eq!(requests.iter().filter(|r| r.status == 429 || r.status == 500).count(), 2, "{requests:?}");
    for r in &sent {
        assert_eq!(requests.iter().filter(|q| q.key == r.key && q.status == 201).count(), 1, "sent once: {}", r.key);
        let tries = requests.iter().filter(|q| q.key == r.key).count();
        assert!((1..=2).contains(&tries), "{} asked {tries} times", r.key);
    }

    // The refused number is dead at once (trying again changes nothing), listed masked.
    let dead = sms_rows(&s, Some(DeliveryStatus::Dead)).await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0].recipient, "+49*********05");
    assert!(!dead[0].id.contains(DEE), "the listed id hides the number: {}", dead[0].id);
    assert!(dead[0].last_error.as_deref().is_some_and(|e| e.contains("400")), "{dead:?}");
    // (Orders go side by side, so Dee's first request may be one the provider rate-limited.)
    assert_eq!(requests.iter().filter(|r| r.to == DEE && r.status == 400).count(), 1, "a refusal is not asked again by itself");

    // An admin sends it again once the number works; a sent message is not sent again so.
    provider.accept(DEE);
    assert!(notifier::redeliver(&s.db, &tenant(), &dead[0].id).await.expect("redeliver"));
    settle(&n, &s).await;
    assert_eq!(provider.sent().iter().filter(|r| r.to == DEE).count(), 1);
    let delivered = sms_rows(&s, Some(DeliveryStatus::Sent)).await;
    assert_eq!(delivered.len(), 3, "{delivered:?}");
    for d in &delivered {
        assert!(!notifier::redeliver(&s.db, &tenant(), &d.id).await.expect("redeliver"), "{} was sent", d.id);
    }

    // Every event delivered again: nothing new is sent.
    let before = provider.requests().len();
    sqlx::query("DELETE FROM projection_checkpoints WHERE name = 'notifier'").execute(&s.db.pool).await.expect("reset");
    drive(&t, &s, &n).await;
    n.members()[0].retry_failed().await.expect("retry");
    assert_eq!(provider.requests().len(), before, "a re-delivered event sends nothing new");
    let _ = std::fs::remove_dir_all(&s.dir);
});

both_backends!(embedded_mode_writes_each_sms_as_a_private_json_file, |t: TestStore| async move {
    let ada = user(&t, 2, vec![phone(ADA), sms_on()]).await;
    order(&t, 100, ada, "shipped").await;
    let s = setup(&t).await;
    let outbox = s.dir.join("outbox/sms");
    drive(&t, &s, &notifier(&t, &s, Arc::new(OutboxSms::new(outbox.clone())))).await;
    let files: Vec<_> = std::fs::read_dir(&outbox).expect("outbox").filter_map(Result::ok).collect();
    assert_eq!(files.len(), 1, "one message, no temporary file left");
    let text = std::fs::read_to_string(files[0].path()).expect("read");
    let message: serde_json::Value = serde_json::from_str(&text).expect("json");
    assert_eq!(message["to"], ADA);
    assert!(message["body"].as_str().is_some_and(|b| b.contains("has shipped with DHL")), "{message}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(files[0].metadata().expect("meta").permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::metadata(&outbox).expect("meta").permissions().mode() & 0o777, 0o700);
    }
    let _ = std::fs::remove_dir_all(&s.dir);
});

/// Records every text and how many were being sent at once; each send takes a while, so the
/// messages of other orders are in flight while a user's event is handled.
#[derive(Default)]
struct SlowSms {
    sent: std::sync::Mutex<Vec<notifier::sms::Sms>>,
    in_flight: std::sync::atomic::AtomicUsize,
    most_at_once: std::sync::atomic::AtomicUsize,
}

#[async_trait::async_trait]
impl SmsSender for SlowSms {
    async fn send(&self, sms: &notifier::sms::Sms) -> Result<(), notifier::sms::SmsError> {
        use std::sync::atomic::Ordering::SeqCst;
        let now = self.in_flight.fetch_add(1, SeqCst) + 1;
        self.most_at_once.fetch_max(now, SeqCst);
        tokio::time::sleep(Duration::from_millis(20)).await;
        self.in_flight.fetch_sub(1, SeqCst);
        self.sent.lock().expect("sent").push(sms.clone());
        Ok(())
    }

    fn describe(&self) -> String {
        "slow test sender".into()
    }
}

both_backends!(
    a_users_opt_in_and_erasure_count_from_their_place_in_the_log_while_other_orders_go_side_by_side,
    |t: TestStore| async move {
        let eve_phone = "+4915100000007";
        let ada = user(&t, 2, vec![phone(ADA), sms_on()]).await;
        let eve = user(&t, 7, vec![phone(eve_phone), sms_on()]).await;
        let mut others = Vec::new();
        for n in 10..34 {
            others.push(user(&t, n, vec![phone(&format!("+49151000000{n}")), sms_on()]).await);
        }
        let s = setup(&t).await;
        s.runner.catch_up().await.expect("users view");
        // Ada's texts follow her switch: on for 200, off for 201, on again for 202. Eve's order 300
        // is mailed before her erasure, which then blanks what was kept of it. Around them, other
        // customers' orders.
        let users =
            Repository::<domain::user::User>::new(t.store.clone(), domain::user::UserServices { hasher: Arc::new(testkit::PlainHasher) });
        let set_sms = |on: bool| UserCommand::SetPreferences { marketing_emails: None, sms: Some(on) };
        for (i, customer) in others.iter().enumerate().take(12) {
            order(&t, 1_000 + i as u128, *customer, "shipped").await;
        }
        order(&t, 200, ada, "shipped").await;
        users.execute(&stream_id(&tenant(), ada), set_sms(false), None, &Metadata::default()).await.expect("sms off");
        order(&t, 201, ada, "shipped").await;
        users.execute(&stream_id(&tenant(), ada), set_sms(true), None, &Metadata::default()).await.expect("sms on");
        order(&t, 202, ada, "shipped").await;
        order(&t, 300, eve, "shipped").await;
        users.execute(&stream_id(&tenant(), eve), UserCommand::Erase { password: None }, None, &Metadata::default()).await.expect("erase");
        for (i, customer) in others.iter().enumerate().skip(12) {
            order(&t, 1_000 + i as u128, *customer, "shipped").await;
        }

        // The notifier alone, in batches as large as the log: the users view still shows Eve as
        // she was before her erasure, so her order's messages are planned and sent.
        let sender = Arc::new(SlowSms::default());
        let mailer = Arc::new(OutboxMailer::new(s.dir.join("mail")));
        let config = NotifierConfig { batch_size: 1_000, ..NotifierConfig::default() };
        let n =
            Arc::new(Notifier::new(t.store.clone(), s.db.clone(), mailer, Arc::new(Templates::default()), config).with_sms(sender.clone()))
                .driver();
        common::drive_alone(&t, &s.db, &n).await.expect("notifier");

        let sent = sender.sent.lock().expect("sent").clone();
        let to_ada: Vec<&str> = sent.iter().filter(|m| m.to == ADA).map(|m| m.body.as_str()).collect();
        assert_eq!(to_ada.len(), 2, "{to_ada:?}");
        assert!(to_ada.iter().any(|b| b.contains("000000c8")) && to_ada.iter().any(|b| b.contains("000000ca")), "{to_ada:?}");
        assert!(!to_ada.iter().any(|b| b.contains("000000c9")), "order 201 came while Ada had texts switched off: {to_ada:?}");
        // Her number left the log with her key, so she gets no text (her mail address is still in
        // the users view, which has not read her erasure yet).
        assert_eq!(sent.iter().filter(|m| m.to == eve_phone).count(), 0);
        assert_eq!(sent.iter().filter(|m| m.to != ADA && m.to != eve_phone).count(), others.len());
        assert!(sender.most_at_once.load(std::sync::atomic::Ordering::SeqCst) > 1, "other orders' texts went side by side");

        // Nothing of Eve is left in the deliveries: her erasure, after her order's messages in the
        // log, blanked them after they were written.
        let eve_rows: Vec<(String, String)> =
            sqlx::query_as("SELECT recipient, body FROM notifier_deliveries WHERE user_id = $1 ORDER BY id")
                .bind(eve.to_string())
                .fetch_all(&s.db.pool)
                .await
                .expect("rows");
        assert_eq!(eve_rows.len(), 2, "order 300's confirmed and shipped mails: {eve_rows:?}");
        let erased = domain::personal::ERASED_TEXT;
        assert!(eve_rows.iter().all(|(to, body)| to == erased && body == erased), "{eve_rows:?}");
        let _ = std::fs::remove_dir_all(&s.dir);
    }
);

#[test]
fn an_sms_template_that_could_exceed_320_characters_stops_the_start() {
    notifier::check_sms_templates(&Templates::default()).expect("the built-in texts fit over the longest context");
    let dir = std::env::temp_dir().join(format!("shop-sms-templates-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("acme/sms")).expect("dir");
    // Fits for a short name, but not for a name of 200 characters.
    std::fs::write(
        dir.join("acme/sms/order_shipped.txt"),
        "Hi {{ user.name }}, order {{ order.short_id }} is with {{ shipment.carrier }} ({{ shipment.tracking_number }}).",
    )
    .expect("write");
    let templates = Templates::load(Some(&dir)).expect("compiles");
    let _ = std::fs::remove_dir_all(&dir);
    let err = notifier::check_sms_templates(&templates).expect_err("too long for the longest name");
    assert!(err.to_string().contains("sms/order_shipped of tenant acme"), "{err}");
}

#[test]
fn the_provider_settings_are_checked_and_the_token_never_printed() {
    let config = |url: &str, token: &str| HttpSmsConfig {
        url: url.into(),
        account: "AC1".into(),
        token: token.into(),
        from: "+15005550006".into(),
        timeout: Duration::from_secs(1),
    };
    assert!(HttpSms::new(config("https://sms.example/Messages.json", "t0ken-secret")).is_ok());
    for bad in ["https://AC1:t0ken@sms.example/Messages.json", "https://sms.example/Messages.json?x=1", "ftp://sms.example"] {
        assert!(HttpSms::new(config(bad, "t0ken-secret")).is_err(), "{bad}");
    }
    assert!(HttpSms::new(config("https://sms.example/Messages.json", " ")).is_err(), "an empty token");
    assert!(!format!("{:?}", config("https://sms.example/Messages.json", "t0ken-secret")).contains("t0ken-secret"));
}
