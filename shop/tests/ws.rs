//! The live socket (`GET /api/v1/ws`) with a real WebSocket client (tokio-tungstenite) against
//! a whole shop on each backend: authentication first and within time, each caller sees only
//! what it may read, a reconnect with `since` misses nothing and repeats nothing, the
//! per-user limit, and the close when the token expires.

use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use reqwest::StatusCode;
use serde_json::{json, Value};
use testkit::both_modes;
use testkit::TestApp;
use tokio_tungstenite::tungstenite::Message;

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(app: &TestApp) -> Socket {
    let url = format!("{}/api/v1/ws", app.base.replacen("http", "ws", 1));
    tokio_tungstenite::connect_async(url).await.expect("the socket opens").0
}

async fn send(socket: &mut Socket, message: Value) {
    socket.send(Message::Text(message.to_string().into())).await.expect("send");
}

/// What the server sent next: a JSON message, or its close code (`None` when closed without).
#[derive(Debug, Clone, PartialEq)]
enum Got {
    Json(Value),
    Closed(Option<u16>),
}

async fn next(socket: &mut Socket, within: Duration) -> Option<Got> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let frame = match tokio::time::timeout_at(deadline, socket.next()).await {
            Err(_) => return None,
            Ok(frame) => frame,
        };
        return Some(match frame {
            None | Some(Err(_)) => Got::Closed(None),
            Some(Ok(Message::Close(frame))) => Got::Closed(frame.map(|f| u16::from(f.code))),
            Some(Ok(Message::Text(t))) => Got::Json(serde_json::from_str(t.as_str()).expect("json")),
            Some(Ok(_)) => continue,
        });
    }
}

async fn json(socket: &mut Socket) -> Value {
    match next(socket, Duration::from_secs(20)).await {
        Some(Got::Json(v)) => v,
        other => panic!("expected a message, got {other:?}"),
    }
}

/// Authenticates and subscribes; returns the `subscribed` answer (after any errors before it).
async fn open(app: &TestApp, token: &str, subscribe: Value) -> (Socket, Vec<Value>) {
    let mut socket = connect(app).await;
    send(&mut socket, json!({"type": "auth", "token": token})).await;
    let ready = json(&mut socket).await;
    assert_eq!(ready["type"], "ready", "{ready}");
    send(&mut socket, subscribe).await;
    let mut answers = Vec::new();
    loop {
        let answer = json(&mut socket).await;
        let done = answer["type"] == "subscribed";
        answers.push(answer);
        if done {
            return (socket, answers);
        }
    }
}

/// Events of `topic` until `enough` holds for them.
async fn events_until(socket: &mut Socket, topic: &str, enough: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = Vec::new();
    while !enough(&seen) {
        assert!(Instant::now() < deadline, "not enough {topic} events: {seen:?}");
        let message = json(socket).await;
        assert_eq!(message["type"], "event", "{message}");
        if message["topic"] == topic {
            seen.push(message);
        }
    }
    seen
}

async fn placed_order(app: &TestApp, token: &str, sku: &str) -> String {
    let body = json!({
        "lines": [{"sku": sku, "quantity": 1}],
        "shipping_address": {"name": "Ada Lovelace", "line1": "1 Main St", "city": "Berlin", "postal_code": "10115", "country": "de"},
        "payment_method": "tok_approve"
    });
    let placed = app.post("/api/v1/orders", Some(token), body).await;
    assert_eq!(placed.status, StatusCode::ACCEPTED, "{:?}", placed.body);
    placed.body["id"].as_str().expect("id").to_owned()
}

fn invoiced(order: &str) -> impl Fn(&[Value]) -> bool + '_ {
    move |seen: &[Value]| seen.iter().any(|e| e["data"]["order_id"] == order && e["data"]["event"] == "invoiced")
}

both_modes!(a_socket_authenticates_first_and_each_caller_sees_only_its_own, |app: TestApp| async move {
    // Anything but a valid token first closes the socket with 4401.
    for first in [json!({"type": "subscribe", "topics": ["orders"]}), json!({"type": "auth", "token": "forged"})] {
        let mut socket = connect(&app).await;
        send(&mut socket, first).await;
        assert_eq!(json(&mut socket).await["code"], "unauthenticated");
        assert_eq!(next(&mut socket, Duration::from_secs(5)).await, Some(Got::Closed(Some(4401))));
    }
    let mut silent = connect(&app).await;
    let started = Instant::now();
    assert_eq!(json(&mut silent).await["code"], "unauthenticated");
    assert_eq!(next(&mut silent, Duration::from_secs(5)).await, Some(Got::Closed(Some(4401))));
    assert!(started.elapsed() >= Duration::from_secs(4), "closed after the 5 s allowed, not before");

    let admin = app.admin_token().await;
    app.stocked(&admin, "LAMP-1", 1_000, 5).await;
    let ada = app.customer_token("ada@example.com").await;
    let bob = app.customer_token("bob@example.com").await;
    let (mut ada_socket, answers) = open(&app, &ada, json!({"type": "subscribe", "topics": ["orders", "admin.orders"]})).await;
    assert_eq!(answers[0]["code"], "forbidden", "{answers:?}");
    assert_eq!(answers[1]["topics"], json!(["orders"]), "{answers:?}");
    let (mut bob_socket, _) = open(&app, &bob, json!({"type": "subscribe", "topics": ["orders"]})).await;
    let (mut admin_socket, answers) =
        open(&app, &admin, json!({"type": "subscribe", "topics": ["admin.orders", "admin.low_stock", "admin.dead_letters"]})).await;
    assert_eq!(answers, vec![json!({"type": "subscribed", "topics": ["admin.orders", "admin.low_stock", "admin.dead_letters"]})]);

    let order = placed_order(&app, &ada, "LAMP-1").await;
    let seen = events_until(&mut ada_socket, "orders", invoiced(&order)).await;
    let steps: Vec<&str> = seen.iter().filter_map(|e| e["data"]["event"].as_str()).collect();
    for step in ["placed", "stock_reserved", "confirmed", "invoiced"] {
        assert!(steps.contains(&step), "{step} in {steps:?}");
    }
    let positions: Vec<i64> = seen.iter().filter_map(|e| e["position"].as_i64()).collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "positions rise: {positions:?}");

    // The admin hears of the new order and of the stock falling under 5 (5 → 4 available).
    let placed = events_until(&mut admin_socket, "admin.orders", |s| !s.is_empty()).await;
    assert_eq!((placed[0]["data"]["order_id"].as_str(), placed[0]["data"]["event"].as_str()), (Some(order.as_str()), Some("placed")));
    let low = events_until(&mut admin_socket, "admin.low_stock", |s| s.iter().any(|e| e["data"]["available"] == 4)).await;
    assert_eq!(low.last().map(|e| e["data"]["sku"].clone()), Some(json!("LAMP-1")));

    // A projection parks an event of this tenant, and one of another tenant: the admin hears
    // of this tenant's only.
    let db = worker_kit::ReadDb::connect(&app.url, 1).await.expect("read db");
    let head = app.state.store.head_position().await.expect("head");
    for (id, stream) in [("orders:ws-1", format!("default:{order}")), ("orders:ws-2", format!("globex:{order}"))] {
        sqlx::query(
            "INSERT INTO projection_dead_letters (id, projection, aggregate_id, tx, position, error, parked_at_ms) \
             VALUES ($1, 'orders', $2, 0, $3, 'injected by the test', 0)",
        )
        .bind(id)
        .bind(stream)
        .bind(head + 1)
        .execute(&db.pool)
        .await
        .expect("park");
    }
    let parked = events_until(&mut admin_socket, "admin.dead_letters", |s| !s.is_empty()).await;
    assert_eq!(parked.len(), 1, "{parked:?}");
    assert_eq!(parked[0]["data"]["id"], "orders:ws-1");
    assert_eq!(
        next(&mut admin_socket, Duration::from_millis(1_500)).await.and_then(|g| match g {
            Got::Json(v) if v["topic"] == "admin.dead_letters" => Some(v),
            _ => None,
        }),
        None,
        "not the other tenant's"
    );

    // Bob's socket stays quiet: Ada's order is not his.
    assert_eq!(next(&mut bob_socket, Duration::from_millis(800)).await, None, "nothing for Bob");
});

both_modes!(a_client_that_reconnects_with_since_misses_nothing_and_gets_nothing_twice, |app: TestApp| async move {
    let admin = app.admin_token().await;
    app.stocked(&admin, "LAMP-1", 1_000, 50).await;
    let ada = app.customer_token("ada@example.com").await;
    let first = placed_order(&app, &ada, "LAMP-1").await;
    let (mut socket, _) = open(&app, &ada, json!({"type": "subscribe", "topics": ["orders"]})).await;
    let everything = events_until(&mut socket, "orders", invoiced(&first)).await;
    drop(socket);

    // Gone after the second entry; meanwhile a second order is placed and settles.
    let since = everything[1]["position"].as_i64().expect("position");
    let second = placed_order(&app, &ada, "LAMP-1").await;
    let (mut socket, _) = open(&app, &ada, json!({"type": "subscribe", "topics": ["orders"], "since": {"orders": since}})).await;
    let again = events_until(&mut socket, "orders", invoiced(&second)).await;
    assert_eq!(&again[..everything.len() - 2], &everything[2..], "the same entries after `since`, in the same order");
    let positions: Vec<i64> = again.iter().filter_map(|e| e["position"].as_i64()).collect();
    let mut unique = positions.clone();
    unique.dedup();
    assert_eq!(positions, unique, "nothing twice");
    assert!(positions.iter().all(|p| *p > since));
    assert!(again.iter().any(|e| e["data"]["order_id"] == second && e["data"]["event"] == "placed"));
});

both_modes!(sockets_count_toward_the_users_stream_limit, |app: TestApp| async move {
    let ada = app.customer_token("ada@example.com").await;
    let mut open_sockets = Vec::new();
    for _ in 0..5 {
        open_sockets.push(open(&app, &ada, json!({"type": "subscribe", "topics": ["orders"]})).await.0);
    }
    let mut sixth = connect(&app).await;
    send(&mut sixth, json!({"type": "auth", "token": ada})).await;
    assert_eq!(json(&mut sixth).await["code"], "rate_limited");
    assert_eq!(next(&mut sixth, Duration::from_secs(5)).await, Some(Got::Closed(Some(1013))));
    // One closes: a place is free again (the server notices the close first).
    let mut gone = open_sockets.pop().expect("socket");
    gone.close(None).await.expect("close");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut again = connect(&app).await;
        send(&mut again, json!({"type": "auth", "token": ada})).await;
        if json(&mut again).await["type"] == "ready" {
            break;
        }
        assert!(Instant::now() < deadline, "the closed socket's place never came free");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
});

both_modes!(
    the_socket_closes_when_the_token_expires_unless_a_fresh_one_comes,
    configure = |c: &mut shop::Config| c.access_token_ttl_secs = 4,
    |app: TestApp| async move {
        let ada = app.customer_token("ada@example.com").await;
        let (mut kept, _) = open(&app, &ada, json!({"type": "subscribe", "topics": ["orders"]})).await;
        let (mut lapsed, _) = open(&app, &ada, json!({"type": "subscribe", "topics": ["orders"]})).await;
        let bob = app.customer_token("bob@example.com").await;
        let (mut swapped, _) = open(&app, &ada, json!({"type": "subscribe", "topics": ["orders"]})).await;
        // Another user's token does not take over a socket.
        send(&mut swapped, json!({"type": "auth", "token": bob})).await;
        assert_eq!(json(&mut swapped).await["code"], "unauthenticated");
        assert_eq!(next(&mut swapped, Duration::from_secs(5)).await, Some(Got::Closed(Some(4401))));
        // A fresh token of the same user before the expiry keeps the socket open past it.
        tokio::time::sleep(Duration::from_millis(2_000)).await;
        let fresh = app.login("ada@example.com", "correct horse").await.body["access_token"].as_str().expect("token").to_owned();
        send(&mut kept, json!({"type": "auth", "token": fresh})).await;
        assert_eq!(json(&mut kept).await["type"], "ready");
        assert_eq!(next(&mut lapsed, Duration::from_secs(5)).await, Some(Got::Closed(Some(4401))), "closed at the expiry");
        assert_eq!(next(&mut kept, Duration::from_millis(500)).await, None, "still open");
    }
);

both_modes!(
    the_server_pings_and_drops_a_socket_that_never_answers,
    configure = |c: &mut shop::Config| c.live_ping_secs = 1,
    |app: TestApp| async move {
        let ada = app.customer_token("ada@example.com").await;
        let (mut answering, _) = open(&app, &ada, json!({"type": "subscribe", "topics": ["orders"]})).await;
        let (mut silent, _) = open(&app, &ada, json!({"type": "subscribe", "topics": ["orders"]})).await;
        // Reading answers each ping with a pong (tungstenite does): the socket stays open.
        let mut pings = 0;
        let until = tokio::time::Instant::now() + Duration::from_secs(5);
        while let Ok(frame) = tokio::time::timeout_at(until, answering.next()).await {
            match frame {
                Some(Ok(Message::Ping(_))) => pings += 1,
                Some(Ok(Message::Text(_))) => {}
                other => panic!("the answering socket ended: {other:?}"),
            }
        }
        assert!(pings >= 3, "pinged every second: {pings}");
        // The other one read nothing for those 5 s, so it never answered: the server ended it
        // (with 1001, going away, if the close frame is still readable: the server stopped
        // waiting for this client's answer long ago).
        let ended = loop {
            match tokio::time::timeout(Duration::from_secs(5), silent.next()).await.expect("the server ended the silent socket") {
                Some(Ok(Message::Close(frame))) => break frame.map(|f| u16::from(f.code)),
                Some(Ok(_)) => {}
                Some(Err(_)) | None => break None,
            }
        };
        assert!(ended.is_none_or(|code| code == 1001), "{ended:?}");
    }
);
