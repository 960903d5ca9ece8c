//! The notifier against real stores and a real SMTP server (a small one inside the test,
//! spoken to by lettre over TCP): each template reaches the right people, once, also when the
//! notifier dies part-way and when events are delivered again.

mod common;

use std::sync::{Arc, Mutex};

use chrono::Utc;
use domain::order::{CancelReason, Order, OrderCommand};
use domain::stock::{Stock, StockCommand};
use domain::user::{Role, User, UserCommand, UserServices};
use domain::{stream_id, Money, OrderId, PaymentId, Price, Quantity, QuantityDelta, TenantId, UserId};
use mailer::SmtpMailer;
use mailer::Templates;
use notifier::{DeliveryStatus, Notifier, NotifierConfig, NotifyError};
use projections::Runner;
use store::{Metadata, Repository};
use testkit::both_backends;
use testkit::{PlainHasher, TestStore};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use worker_kit::Driver;
use worker_kit::ReadDb;

/// One message as the SMTP server received it.
#[derive(Debug, Clone)]
struct Received {
    to: String,
    data: String,
}

impl Received {
    /// The text with quoted-printable soft line breaks and `=3D` undone.
    fn text(&self) -> String {
        self.data.replace("=\n", "").replace("=3D", "=")
    }

    fn subject(&self) -> &str {
        self.data.lines().find_map(|l| l.strip_prefix("Subject: ")).unwrap_or("")
    }
}

/// A minimal SMTP server on 127.0.0.1: accepts every message and keeps it.
async fn smtp_server() -> (u16, Arc<Mutex<Vec<Received>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let inbox = Arc::new(Mutex::new(Vec::new()));
    let kept = inbox.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let inbox = kept.clone();
            tokio::spawn(async move {
                let (read, mut write) = socket.into_split();
                let mut lines = BufReader::new(read).lines();
                let _ = write.write_all(b"220 test smtp\r\n").await;
                let mut to = String::new();
                while let Ok(Some(line)) = lines.next_line().await {
                    let upper = line.to_ascii_uppercase();
                    let reply: &[u8] = if upper.starts_with("EHLO") || upper.starts_with("HELO") {
                        b"250 test\r\n"
                    } else if upper.starts_with("RCPT TO:") {
                        to = line[8..].trim().trim_matches(['<', '>']).to_owned();
                        b"250 ok\r\n"
                    } else if upper.starts_with("DATA") {
                        let _ = write.write_all(b"354 go on\r\n").await;
                        let mut data = String::new();
                        while let Ok(Some(l)) = lines.next_line().await {
                            if l == "." {
                                break;
                            }
                            data.push_str(&l);
                            data.push('\n');
                        }
                        inbox.lock().expect("inbox").push(Received { to: to.clone(), data });
                        b"250 queued\r\n"
                    } else if upper.starts_with("QUIT") {
                        let _ = write.write_all(b"221 bye\r\n").await;
                        return;
                    } else {
                        b"250 ok\r\n"
                    };
                    if write.write_all(reply).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (port, inbox)
}

fn tenant() -> TenantId {
    "acme".parse().expect("valid")
}

fn eur(n: i64) -> Money {
    Money::new(n, "EUR".parse().expect("valid"))
}

async fn register(t: &TestStore, n: u128, email: &str, admin: bool) -> UserId {
    let users = Repository::<User>::new(t.store.clone(), UserServices { hasher: Arc::new(PlainHasher) });
    let id = UserId::from_uuid(uuid::Uuid::from_u128(n));
    let roles = if admin { [Role::Customer, Role::Admin].into_iter().collect() } else { [Role::Customer].into_iter().collect() };
    let command = UserCommand::Register {
        tenant: tenant(),
        user_id: id,
        email: email.parse().expect("valid"),
        name: format!("User {n}").parse().expect("valid"),
        password: "correct horse".parse().expect("valid"),
        roles,
    };
    users.execute(&stream_id(&tenant(), id), command, None, &Metadata::default()).await.expect("register");
    id
}

/// An admin, a customer, stock falling below the threshold, and orders that are confirmed,
/// shipped, refunded, and cancelled.
async fn write_shop(t: &TestStore) {
    let meta = Metadata::default();
    register(t, 1, "boss@acme.example", true).await;
    let ada = register(t, 2, "ada@example.com", false).await;
    // Ada says no to marketing mail: her order mail still comes.
    let users = Repository::<User>::new(t.store.clone(), UserServices { hasher: Arc::new(PlainHasher) });
    users
        .execute(&stream_id(&tenant(), ada), UserCommand::SetPreferences { marketing_emails: Some(false), sms: None }, None, &meta)
        .await
        .expect("opt out");
    let stock = Repository::<Stock>::new(t.store.clone(), ());
    let sku: domain::Sku = "LAMP-1".parse().expect("valid");
    let stream = stream_id(&tenant(), &sku);
    stock
        .execute(
            &stream,
            StockCommand::Receive { tenant: tenant(), sku: sku.clone(), quantity: Quantity::try_from(10).expect("valid") },
            None,
            &meta,
        )
        .await
        .expect("receive");
    // 10 → 4 available: below the threshold of 5 once; 4 → 3 stays below: no second mail.
    for delta in [-6, -1] {
        let command = StockCommand::Adjust {
            tenant: tenant(),
            sku: sku.clone(),
            delta: QuantityDelta::try_from(delta).expect("valid"),
            reason: "count".parse().expect("valid"),
        };
        stock.execute(&stream, command, None, &meta).await.expect("adjust");
    }
    let orders = Repository::<Order>::new(t.store.clone(), ());
    let place =
        |n: u128| testkit::placement(&tenant(), OrderId::from_uuid(uuid::Uuid::from_u128(n)), ada, &[("LAMP-1", 2)], 0, "tok_approve");
    let paid = stream_id(&tenant(), OrderId::from_uuid(uuid::Uuid::from_u128(100)));
    let until = Utc::now() + chrono::Duration::minutes(15);
    for command in [
        place(100),
        OrderCommand::MarkStockReserved { expires_at: until },
        OrderCommand::MarkPaymentAuthorised { payment_id: PaymentId::from_uuid(uuid::Uuid::from_u128(100)) },
        OrderCommand::Confirm,
        OrderCommand::Ship { carrier: "DHL".parse().expect("valid"), tracking_number: "JD0001".parse().expect("valid") },
        OrderCommand::Refund { amount: eur(500) },
    ] {
        orders.execute(&paid, command, None, &meta).await.expect("order step");
    }
    let cancelled = stream_id(&tenant(), OrderId::from_uuid(uuid::Uuid::from_u128(101)));
    orders.execute(&cancelled, place(101), None, &meta).await.expect("place");
    orders.execute(&cancelled, OrderCommand::Cancel { reason: CancelReason::PaymentDeclined }, None, &meta).await.expect("cancel");

    // A product is published: only the boss hears of it (Ada said no to marketing mail).
    let kettle = testkit::TestProduct {
        tenant: "acme",
        n: 500,
        sku: "KETTLE-1",
        name: "Kettle",
        description: "boils",
        category: "kitchen",
        price: 2_500,
        featured: false,
    };
    testkit::write_product(&t.store, &kettle, vec![domain::product::ProductCommand::Publish], &meta).await;
}

struct Setup {
    db: ReadDb,
    runner: Runner,
    port: u16,
    inbox: Arc<Mutex<Vec<Received>>>,
}

async fn setup(t: &TestStore) -> Setup {
    let db = ReadDb::connect(&t.url, 4).await.expect("read db");
    db.migrate().await.expect("schema");
    let runner = Runner::new(t.store.clone(), db.clone(), projections::all());
    let (port, inbox) = smtp_server().await;
    Setup { db, runner, port, inbox }
}

/// A notifier process on its driver.
fn notifier(t: &TestStore, s: &Setup) -> Driver<Notifier> {
    let mailer = Arc::new(SmtpMailer::new(&format!("smtp://127.0.0.1:{}", s.port)).expect("smtp url"));
    Arc::new(Notifier::new(t.store.clone(), s.db.clone(), mailer, Arc::new(Templates::default()), NotifierConfig::default())).driver()
}

/// Runs the users view and the notifier until the notifier has passed the whole log (or
/// crashed).
async fn drive(t: &TestStore, s: &Setup, n: &Driver<Notifier>) -> Result<(), NotifyError> {
    common::drive(t, &s.db, &s.runner, n).await
}

/// (recipient, subject) of every message, sorted.
fn mails(inbox: &Arc<Mutex<Vec<Received>>>) -> Vec<(String, String)> {
    let mut out: Vec<_> = inbox.lock().expect("inbox").iter().map(|m| (m.to.clone(), m.subject().to_owned())).collect();
    out.sort();
    out
}

const EXPECTED: usize = 8;

both_backends!(every_template_reaches_the_right_people_once, |t: TestStore| async move {
    write_shop(&t).await;
    let s = setup(&t).await;
    let n = notifier(&t, &s);
    drive(&t, &s, &n).await.expect("notifier");
    let got = mails(&s.inbox);
    let short = "00000064"; // the last 8 hex digits of order 100
    assert_eq!(
        got,
        vec![
            ("ada@example.com".to_owned(), "A refund of 5.00 EUR is on its way".to_owned()),
            ("ada@example.com".to_owned(), "Welcome to shop".to_owned()),
            ("ada@example.com".to_owned(), format!("Your order {short} has shipped")),
            ("ada@example.com".to_owned(), format!("Your order {short} is confirmed")),
            ("ada@example.com".to_owned(), "Your order 00000065 was cancelled".to_owned()),
            ("boss@acme.example".to_owned(), "Low stock: LAMP-1 (4 left)".to_owned()),
            ("boss@acme.example".to_owned(), "New at shop".to_owned()),
            ("boss@acme.example".to_owned(), "Welcome to shop".to_owned()),
        ]
    );
    let inbox = s.inbox.lock().expect("inbox").clone();
    let cancelled = inbox.iter().find(|m| m.subject().contains("cancelled")).expect("cancel mail");
    assert!(cancelled.text().contains("the payment was declined"), "the reason in words: {}", cancelled.data);
    let confirmed = inbox.iter().find(|m| m.subject().contains("confirmed")).expect("confirm mail");
    assert!(confirmed.text().contains("Total: 24.00 EUR") && confirmed.text().contains("2 x LAMP-1"), "{}", confirmed.data);
    assert!(inbox.iter().any(|m| m.text().contains("Tracking number: JD0001")));
    assert!(inbox.iter().all(|m| m.data.contains("Message-ID: <")), "every message has a stable id");

    // Every event delivered again: nothing new is sent.
    sqlx::query("DELETE FROM projection_checkpoints WHERE name = 'notifier'").execute(&s.db.pool).await.expect("reset");
    drive(&t, &s, &n).await.expect("again");
    assert_eq!(mails(&s.inbox).len(), EXPECTED, "a re-delivered event sends nothing new");
    let rows = notifier::deliveries(&s.db, &tenant(), notifier::DeliveryFilter::default(), 100).await.expect("deliveries");
    assert_eq!(rows.len(), EXPECTED);
    assert!(rows.iter().all(|d| d.status == DeliveryStatus::Sent), "{rows:?}");
});

both_backends!(a_notifier_killed_mid_batch_sends_no_duplicate, |t: TestStore| async move {
    write_shop(&t).await;
    let s = setup(&t).await;
    let mut crashes = 0;
    for budget in 0..EXPECTED as u32 {
        let first = notifier(&t, &s);
        first.members()[0].crash_after(budget);
        match drive(&t, &s, &first).await {
            Err(NotifyError::Injected) => crashes += 1,
            other => other.expect("notifier"),
        }
    }
    drive(&t, &s, &notifier(&t, &s)).await.expect("a last notifier finishes");
    let got = mails(&s.inbox);
    let mut unique = got.clone();
    unique.dedup();
    assert_eq!(got, unique, "no message twice");
    // Each crash loses the messages it was about to send (one per stream in flight: the
    // order, stock and product streams go side by side after the users' turns), so fewer are
    // left to crash on: a crash in the users' turns and one among the streams at least.
    assert!(crashes >= 2, "the crash points were reached ({crashes})");
    // Each crash lands between a claim and its send: that message is never sent (at most
    // once), and the operators see it as `sending`.
    let rows = notifier::deliveries(&s.db, &tenant(), notifier::DeliveryFilter::default(), 100).await.expect("deliveries");
    let sending = rows.iter().filter(|d| d.status == DeliveryStatus::Sending).count();
    assert_eq!(rows.len(), EXPECTED);
    assert_eq!(got.len() + sending, EXPECTED, "{rows:?}");
});

both_backends!(the_notifier_moves_past_batches_without_events_to_tell, |t: TestStore| async move {
    let s = setup(&t).await;
    let n = notifier(&t, &s);
    testkit::moves_past_foreign_events(&t, Arc::clone(&n.members()[0]), 120).await;
});

both_backends!(a_cart_reminder_reaches_only_customers_who_take_marketing_mail, |t: TestStore| async move {
    use domain::cart::{Cart, CartCommand, Offer, Pricing};
    let meta = Metadata::default();
    let ada = register(&t, 2, "ada@example.com", false).await;
    let bob = register(&t, 3, "bob@example.com", false).await;
    let users = Repository::<User>::new(t.store.clone(), UserServices { hasher: Arc::new(PlainHasher) });
    users
        .execute(&stream_id(&tenant(), bob), UserCommand::SetPreferences { marketing_emails: Some(false), sms: None }, None, &meta)
        .await
        .expect("opt out");
    let carts = Repository::<Cart>::new(t.store.clone(), ());
    let now = Utc::now();
    let offer = Offer::Priced { unit_price: Price::try_from(eur(1_250)).expect("valid"), available: 5 };
    let pricing = Pricing { offers: [("LAMP-1".parse().expect("valid"), offer)].into_iter().collect(), promotion: None, at: now };
    for customer in [ada, bob] {
        let cart_id = domain::CartId::new();
        let id = stream_id(&tenant(), cart_id);
        let create = CartCommand::Create { tenant: tenant(), cart_id, customer: Some(customer), token_hash: None, at: now };
        let add = CartCommand::AddLine {
            sku: "LAMP-1".parse().expect("valid"),
            quantity: Quantity::try_from(2).expect("valid"),
            pricing: pricing.clone(),
        };
        let remind = CartCommand::Remind { cutoff: now, at: now };
        for command in [create, add, remind] {
            carts.execute(&id, command, None, &meta).await.expect("cart step");
        }
    }
    let s = setup(&t).await;
    drive(&t, &s, &notifier(&t, &s)).await.expect("notifier");
    let got = mails(&s.inbox);
    assert_eq!(
        got,
        vec![
            ("ada@example.com".to_owned(), "Welcome to shop".to_owned()),
            ("ada@example.com".to_owned(), "You left something in your cart".to_owned()),
            ("bob@example.com".to_owned(), "Welcome to shop".to_owned()),
        ]
    );
    let inbox = s.inbox.lock().expect("inbox").clone();
    let reminder = inbox.iter().find(|m| m.subject().contains("cart")).expect("the reminder");
    assert!(reminder.text().contains("LAMP-1 at 12.50 EUR"), "{}", reminder.text());
});
