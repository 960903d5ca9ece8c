//! The payment provider over HTTP (`saga::HttpGateway`) against a real HTTP server with the
//! simulated provider's answers: each answer maps to the saga's outcome, a repeated key moves
//! no money twice, the key is required, and bad settings are refused up front.

use std::time::Duration;

use domain::payment::{GatewayError, PaymentGateway};
use domain::Money;
use saga::HttpGateway;
use testkit::GatewayServer;

fn eur(n: i64) -> Money {
    Money::new(n, "EUR".parse().expect("valid"))
}

#[tokio::test]
async fn answers_map_to_the_sagas_outcomes_and_a_repeated_key_moves_no_money_twice() {
    let server = GatewayServer::start().await;
    let gateway = HttpGateway::new(&server.url, &server.key, Duration::from_secs(5)).expect("valid settings");

    let reference = gateway.authorise("o1:authorise:p1", eur(1200), "tok_approve").await.expect("approved");
    assert_eq!(gateway.authorise("o1:authorise:p1", eur(1200), "tok_approve").await, Ok(reference.clone()), "the first answer again");
    assert_eq!(gateway.capture("o1:capture:p1", &reference, eur(1200)).await, Ok(()));
    assert_eq!(gateway.capture("o1:capture:p1", &reference, eur(1200)).await, Ok(()));
    assert_eq!(gateway.refund("o1:refund:r1", &reference, eur(200)).await, Ok(()));
    assert_eq!(gateway.authorise("o2:authorise:p2", eur(5), "tok_decline").await, Err(GatewayError::Declined("card_declined".into())));
    assert_eq!(gateway.authorise("o3:authorise:p3", eur(5), "tok_timeout").await, Err(GatewayError::Timeout));
    assert_eq!(gateway.void("o3:void:p3", "").await, Ok(()));
    let refused = gateway.authorise("o4:authorise:p4", eur(5), "tok_capture_fail").await.expect("approved");
    assert!(matches!(gateway.capture("o4:capture:p4", &refused, eur(5)).await, Err(GatewayError::Declined(_))));

    let totals = server.ledger.totals();
    assert_eq!((totals.authorised, totals.captured, totals.refunded, totals.voided), (2, 1, 1, 1), "{totals:?}");
    let calls = server.calls();
    assert_eq!(calls.len(), 10);
    assert!(calls.iter().all(|c| c.pid() == Some(std::process::id())), "every call names this process");
    assert_eq!(calls[0].key, "o1:authorise:p1", "the idempotency key is sent");

    // A wrong key is not a decline: the call waits and is retried, and nothing moved.
    let wrong = HttpGateway::new(&server.url, "sk_wrong", Duration::from_secs(5)).expect("valid settings");
    assert!(matches!(wrong.authorise("o5:authorise:p5", eur(5), "tok_approve").await, Err(GatewayError::Unavailable(_))));
    assert_eq!(server.ledger.totals().authorised, 2);

    // No provider there: unavailable, retried later.
    let port = testkit::free_port();
    let away = HttpGateway::new(&format!("http://127.0.0.1:{port}"), "k", Duration::from_secs(5)).expect("valid settings");
    assert!(matches!(away.capture("o6:capture:p6", "r", eur(5)).await, Err(GatewayError::Unavailable(_))));
}

#[test]
fn bad_settings_are_refused_before_any_call() {
    let t = Duration::from_secs(1);
    for url in ["ftp://pay.example", "not a url", "https://user:pw@pay.example", "https://pay.example/?key=1", "https://pay.example/#x"] {
        assert!(HttpGateway::new(url, "key", t).is_err(), "{url} refused");
    }
    assert!(HttpGateway::new("https://pay.example", " ", t).is_err(), "an empty key is refused");
    let ok = HttpGateway::new("https://pay.example/base/", "sk_live_secret", t).expect("valid");
    assert!(!format!("{ok:?}").contains("sk_live_secret"), "the key never prints");
}
