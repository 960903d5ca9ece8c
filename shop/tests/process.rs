//! The real binary as operators run it: bad settings stop it naming the variable, a full flow
//! logged as JSON at debug level carries no secret, and SIGTERM lets requests in flight finish,
//! closes open streams after the grace period and exits 0.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use testkit::scratch_dir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use testkit::{binary as shop, free_port};

#[test]
fn a_bad_setting_stops_the_process_naming_the_variable() {
    let dir = scratch_dir();
    let cases = [
        ("SHOP_LOG_FORMAT", "yaml"),
        ("SHOP_LOG", "info,[[[bad"),
        ("SHOP_DB_POOL_SIZE", "0"),
        ("SHOP_HTTP_ADDR", "localhost"),
        ("SHOP_TAX_RATES", "acme=twenty"),
        ("SHOP_ACCESS_TOKEN_TTL_SECS", "86400"),
        ("SHOP_EVENT_SOURCE", "carrier-pigeon"),
        ("SHOP_WEBHOOK_MAX_ATTEMPTS", "-1"),
        ("SHOP_WEBHOOK_CA_FILE", "/nonexistent/ca.pem"),
        ("KAFKA_SECURITY_PROTOCOL", "tls13"),
        ("KAFKA_SASL_MECHANISM", "GSSAPI"),
    ];
    // SASL without its user: the start stops naming what is missing (and prints no password).
    let mut sasl = shop(&dir, free_port());
    sasl.env("KAFKA_BROKERS", "127.0.0.1:9").env("KAFKA_SECURITY_PROTOCOL", "sasl_ssl").env("KAFKA_SASL_PASSWORD", "kafka-pw-6f1e");
    let stderr = refused(sasl.arg("serve"), "KAFKA_SECURITY_PROTOCOL");
    assert!(stderr.contains("KAFKA_SASL_USERNAME") && !stderr.contains("kafka-pw-6f1e"), "{stderr}");
    let mut otlp = shop(&dir, free_port());
    otlp.env("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318").env("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc");
    let runs = cases.iter().map(|(variable, value)| {
        let mut cmd = shop(&dir, free_port());
        cmd.env(variable, value);
        (*variable, cmd)
    });
    for (variable, mut cmd) in runs.chain([("OTEL_EXPORTER_OTLP_PROTOCOL", otlp)]) {
        let stderr = refused(cmd.arg("serve"), variable);
        assert!(stderr.contains(variable), "{variable}: the message names the variable: {stderr}");
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// Runs `cmd`, which must stop by itself with a failure within 20 s (a setting it accepted
/// would have it serve forever: then it is killed and the test fails); its standard error.
fn refused(cmd: &mut Command, variable: &str) -> String {
    let mut child = cmd.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().expect("runs");
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{variable}: the bad value was accepted and shop kept running");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut stderr).expect("stderr");
    assert!(!status.success(), "{variable}: shop exited 0");
    stderr
}

fn text(v: &Value, key: &str) -> String {
    v[key].as_str().unwrap_or_else(|| panic!("{key} in {v:?}")).to_owned()
}

#[tokio::test]
async fn a_full_flow_logs_json_without_secrets_and_sigterm_stops_it_cleanly() {
    let dir = scratch_dir();
    let port = free_port();
    let admin_password = "Adm1n-Pass-7d3f9a";
    let (old_password, new_password) = ("Cust-Pass-41be07", "Cust-Pass-renewed-9c2e");
    let card = "4242424242424242";

    // The first admin, as the README creates it (password on standard input).
    testkit::create_admin(&dir, "admin@example.com", admin_password);

    let log_path = dir.join("shop.log");
    let log = std::fs::File::create(&log_path).expect("log file");
    let filter =
        "info,shop=debug,command_api=debug,query_api=debug,projections=debug,notifier=debug,saga=debug,store=debug,tower_http=debug";
    let mut child = shop(&dir, port)
        .env("SHOP_LOG_FORMAT", "json")
        .env("SHOP_LOG", filter)
        .env("SHOP_READ_WAIT_MS", "1500")
        .env("SHOP_SHUTDOWN_GRACE_SECS", "3")
        .arg("serve")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("shop starts");
    let api = testkit::Remote::new(format!("http://127.0.0.1:{port}"));
    testkit::until_ready(&api.base).await;

    let admin = text(&api.login("admin@example.com", admin_password).await, "access_token");
    let (status, product) = api
        .post(
            "/api/v1/products",
            Some(&admin),
            json!({"sku": "LOG-1", "name": "Lamp", "category": "misc", "price": {"amount": 1500, "currency": "EUR"}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{product:?}");
    let product_id = text(&product, "id");
    assert!(api.post(&format!("/api/v1/products/{product_id}/publish"), Some(&admin), json!({})).await.0.is_success());
    assert!(api.post("/api/v1/stock/LOG-1/receipts", Some(&admin), json!({"quantity": 5})).await.0.is_success());

    let (status, _) =
        api.post("/api/v1/auth/register", None, json!({"email": "ada@example.com", "password": old_password, "name": "Ada"})).await;
    assert_eq!(status, StatusCode::CREATED);
    let first = api.login("ada@example.com", old_password).await;
    let (status, refreshed) = api.post("/api/v1/auth/refresh", None, json!({"refresh_token": text(&first, "refresh_token")})).await;
    assert_eq!(status, StatusCode::OK, "{refreshed:?}");
    assert_eq!(api.post("/api/v1/auth/password-reset", None, json!({"email": "ada@example.com"})).await.0, StatusCode::ACCEPTED);
    let reset_token = {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let mails: Vec<String> = std::fs::read_dir(dir.join("outbox"))
                .map(|d| d.filter_map(Result::ok).filter_map(|e| std::fs::read_to_string(e.path()).ok()).collect())
                .unwrap_or_default();
            let token = mails.iter().flat_map(|m| m.lines()).find_map(|l| l.strip_prefix("Reset token: ")).map(|t| t.trim().to_owned());
            if let Some(token) = token {
                break token;
            }
            assert!(Instant::now() < deadline, "no reset mail");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let confirm = json!({"token": reset_token, "new_password": new_password});
    assert_eq!(api.post("/api/v1/auth/password-reset/confirm", None, confirm).await.0, StatusCode::OK);
    let ada = api.login("ada@example.com", new_password).await;
    let ada_token = text(&ada, "access_token");

    let order = |method: &str| {
        json!({
            "lines": [{"sku": "LOG-1", "quantity": 1}],
            "shipping_address": {"name": "Ada Lovelace", "line1": "1 Main St", "city": "Berlin", "postal_code": "10115", "country": "de"},
            "payment_method": method
        })
    };
    let (status, refused) = api.post("/api/v1/orders", Some(&ada_token), order(card)).await;
    assert_eq!((status, refused["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("payment_method")), "a card number is refused");
    let (status, placed) = api.post("/api/v1/orders", Some(&ada_token), order("tok_approve")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{placed:?}");
    let order_id = text(&placed, "id");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, o) = api.call(Method::GET, &format!("/api/v1/orders/{order_id}"), Some(&ada_token), None).await;
        if o["status"] == "confirmed" {
            break;
        }
        assert!(Instant::now() < deadline, "the order was never confirmed: {o:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // SIGTERM while a request is in flight (its body is half sent) and an event stream is open.
    let stream =
        api.http.get(format!("{}/api/v1/orders/{order_id}/events", api.base)).bearer_auth(&ada_token).send().await.expect("stream opens");
    assert_eq!(stream.status(), StatusCode::OK);
    let body = json!({"email": "ada@example.com", "password": new_password}).to_string();
    let (first_half, second_half) = body.split_at(body.len() / 2);
    let mut in_flight = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.expect("connects");
    let head = format!(
        "POST /api/v1/auth/login HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    in_flight.write_all(format!("{head}{first_half}").as_bytes()).await.expect("first half");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let signalled = Instant::now();
    assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill").success());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(api.http.get(format!("{}/health", api.base)).send().await.is_err(), "no new connections after SIGTERM");
    in_flight.write_all(second_half.as_bytes()).await.expect("second half");
    let mut answer = String::new();
    in_flight.read_to_string(&mut answer).await.expect("the answer, then the connection closes");
    assert!(answer.starts_with("HTTP/1.1 200"), "the request in flight was answered: {answer}");
    assert!(answer.contains("access_token"), "{answer}");
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        assert!(signalled.elapsed() < Duration::from_secs(15), "shop did not stop within the grace period");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "exit status {status:?}");
    assert!(signalled.elapsed() >= Duration::from_secs(3), "the open stream was given the grace period");
    drop(stream);

    // Every line is a JSON object, and no secret is in any of them.
    let log = std::fs::read_to_string(&log_path).expect("log");
    let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(lines.len() > 20, "a debug log of the flow: {log}");
    for line in &lines {
        let entry: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(entry["timestamp"].is_string() && entry["level"].is_string(), "{line}");
    }
    assert!(log.contains("shop started") && log.contains("shutdown requested"), "the log covers the run");
    let jwt_secret = std::fs::read_to_string(dir.join("jwt-secret")).expect("generated key").trim().to_owned();
    let secrets = [
        ("the admin's password", admin_password.to_owned()),
        ("the old password", old_password.to_owned()),
        ("the new password", new_password.to_owned()),
        ("the card number", card.to_owned()),
        ("the reset token", reset_token),
        ("an access token", admin.clone()),
        ("an access token", ada_token.clone()),
        ("a refresh token", text(&first, "refresh_token")),
        ("a refresh token", text(&refreshed, "refresh_token")),
        ("a refresh token", text(&ada, "refresh_token")),
        ("the JWT signing key", jwt_secret),
    ];
    for (what, secret) in secrets {
        assert!(secret.len() >= 8);
        assert!(!log.contains(&secret), "{what} is in the log");
        // A token's signature alone would be enough to leak it.
        if let Some(signature) = secret.rsplit('.').next().filter(|s| s.len() >= 16) {
            assert!(!log.contains(signature), "part of {what} is in the log");
        }
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// Every setting `shop` reads from the environment is in the README's configuration table,
/// with its default where the code gives a literal one.
#[test]
fn every_setting_is_listed_in_the_readme_with_its_default() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = std::fs::read_to_string(root.join("src/config.rs")).expect("config.rs");
    let readme = std::fs::read_to_string(root.join("../README.md")).expect("README.md");
    let mut checked = 0;
    for attribute in config.lines().filter(|l| l.trim_start().starts_with("#[arg(") && l.contains("env = \"")) {
        let variable = attribute.split("env = \"").nth(1).and_then(|s| s.split('"').next()).expect("variable");
        let row = readme
            .lines()
            .find(|l| l.starts_with(&format!("| `{variable}` |")))
            .unwrap_or_else(|| panic!("{variable} is not in the README's table"));
        let default = attribute
            .split("default_value = \"")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .map(str::to_owned)
            .or_else(|| attribute.split("default_value_t = ").nth(1).and_then(|s| s.split([',', ')']).next()).map(|d| d.trim().to_owned()))
            .filter(|d| !d.is_empty() && d.chars().all(|c| c.is_ascii_alphanumeric() || ",=.-_/".contains(c)));
        if let Some(default) = default {
            assert!(row.contains(&format!("`{default}`")), "{variable}: the README should give the default `{default}`: {row}");
        }
        checked += 1;
    }
    assert!(checked >= 30, "found only {checked} settings");
}
