//! Running it like production: `/metrics` on every role, worker roles answering `/health` and
//! `/ready`, in both modes.

mod common;

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::json;
use shop::{Application, Config, Roles};

use common::TestApp;

/// The value of the first sample of `text` whose line starts with `prefix` (name and labels).
fn sample(text: &str, prefix: &str) -> Option<f64> {
    text.lines().find(|l| l.starts_with(prefix)).and_then(|l| l.rsplit(' ').next()).and_then(|v| v.parse().ok())
}

async fn metrics(app: &TestApp) -> String {
    let res = app.client.get(format!("{}/metrics", app.base)).send().await.expect("metrics answer");
    assert_eq!(res.status(), StatusCode::OK);
    let kind = res.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    assert!(kind.starts_with("text/plain; version=0.0.4"), "Prometheus text format, got {kind}");
    res.text().await.expect("body")
}

both_modes!(metrics_count_requests_commands_projections_and_mail, |app: TestApp| async move {
    let reg = app.register("metrics@example.com", "correct horse").await;
    assert_eq!(reg.status, StatusCode::CREATED);
    let bad = app.post("/api/v1/auth/register", None, json!({"email": "nope", "password": "correct horse", "name": "X"})).await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    let unknown = app.call(Method::GET, "/no/such/route/12345", None, None, &[]).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);

    // The projections and the notifier catch up in the background: wait for their figures.
    let deadline = Instant::now() + Duration::from_secs(20);
    let text = loop {
        let text = metrics(&app).await;
        let ready = sample(&text, "shop_projection_lag_seconds_count{name=\"users\"}").is_some()
            && sample(&text, "shop_notifier_deliveries_total{channel=\"email\",status=\"sent\"}").is_some();
        if ready {
            break text;
        }
        assert!(Instant::now() < deadline, "projection and notifier metrics never showed:\n{text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // Other tests in this process add to the same counters: at least ours are there.
    let route = "route=\"/api/v1/auth/register\"";
    assert!(
        sample(&text, &format!("shop_http_requests_total{{method=\"POST\",{route},status=\"201\"}}")).is_some_and(|v| v >= 1.0),
        "{text}"
    );
    assert!(sample(&text, &format!("shop_http_requests_total{{method=\"POST\",{route},status=\"422\"}}")).is_some_and(|v| v >= 1.0));
    assert!(sample(&text, "shop_http_requests_total{method=\"GET\",route=\"unmatched\",status=\"404\"}").is_some_and(|v| v >= 1.0));
    assert!(!text.contains("/no/such/route"), "unknown paths do not become labels");
    assert!(sample(&text, &format!("shop_http_request_duration_seconds_bucket{{method=\"POST\",{route},le=\"+Inf\"}}"))
        .is_some_and(|v| v >= 2.0));
    assert!(sample(&text, "shop_commands_total{aggregate=\"user\",outcome=\"ok\"}").is_some_and(|v| v >= 1.0));
    assert!(sample(&text, "shop_command_duration_seconds_count{aggregate=\"user\"}").is_some_and(|v| v >= 1.0));
    assert!(sample(&text, "shop_projection_batch_duration_seconds_count{name=\"users\"}").is_some_and(|v| v >= 1.0));
    assert!(sample(&text, "shop_projection_events_total{name=\"users\"}").is_some_and(|v| v >= 1.0));
    assert!(sample(&text, "shop_notifier_lag_seconds_count{name=\"notifier\"}").is_some_and(|v| v >= 1.0));
});

/// A worker role (`shop project`) serves `/health`, `/ready` and `/metrics`, and nothing else.
#[tokio::test]
async fn worker_roles_answer_health_readiness_and_metrics() {
    let dir = store::testkit::scratch_dir();
    let mut config = Config::embedded(dir.clone());
    config.jwt_secret = Some(common::JWT_SECRET.to_owned());
    let app = Application::build_roles(&config, Roles::Projections).await.expect("builds");
    let base = format!("http://{}", app.addr());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = tokio::spawn(app.run_until(async {
        let _ = stopped.await;
    }));
    let client = reqwest::Client::new();
    for (path, status) in [("/health", 200), ("/ready", 200), ("/metrics", 200), ("/api/v1/products", 404)] {
        let res = client.get(format!("{base}{path}")).send().await.expect("answers");
        assert_eq!(res.status().as_u16(), status, "{path}");
    }
    let _ = stop.send(());
    served.await.expect("joins").expect("stops cleanly");
    let _ = std::fs::remove_dir_all(dir);
}
