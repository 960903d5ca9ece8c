//! The watch over production names only what the shop exports: every PromQL expression of the
//! alert rules (`infra/prometheus/alerts.yml`) and of the dashboards
//! (`infra/grafana/dashboards/*.json`) is checked against the `/metrics` of a running `shop
//! serve` (on the broker, so the relay runs too) after a small flow, so that a renamed metric or
//! label breaks the build rather than a dashboard or an alert.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// Functions, aggregations and keywords of PromQL: never metric names.
const PROMQL_WORDS: &[&str] = &[
    "abs",
    "absent",
    "absent_over_time",
    "acos",
    "acosh",
    "asin",
    "asinh",
    "atan",
    "atanh",
    "avg",
    "avg_over_time",
    "bottomk",
    "ceil",
    "changes",
    "clamp",
    "clamp_max",
    "clamp_min",
    "cos",
    "cosh",
    "count",
    "count_over_time",
    "count_values",
    "day_of_month",
    "day_of_week",
    "day_of_year",
    "days_in_month",
    "deg",
    "delta",
    "deriv",
    "exp",
    "floor",
    "group",
    "histogram_avg",
    "histogram_count",
    "histogram_fraction",
    "histogram_quantile",
    "histogram_sum",
    "holt_winters",
    "hour",
    "idelta",
    "increase",
    "irate",
    "label_join",
    "label_replace",
    "last_over_time",
    "ln",
    "log10",
    "log2",
    "max",
    "max_over_time",
    "min",
    "min_over_time",
    "minute",
    "month",
    "pi",
    "predict_linear",
    "present_over_time",
    "quantile",
    "quantile_over_time",
    "rad",
    "rate",
    "resets",
    "round",
    "scalar",
    "sgn",
    "sin",
    "sinh",
    "sort",
    "sort_desc",
    "sqrt",
    "stddev",
    "stddev_over_time",
    "stdvar",
    "stdvar_over_time",
    "sum",
    "sum_over_time",
    "tan",
    "tanh",
    "time",
    "timestamp",
    "topk",
    "vector",
    "year",
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "inf",
    "nan",
    "start",
    "end",
];

/// Clauses whose parenthesised list names labels.
const LABEL_LISTS: &[&str] = &["by", "without", "on", "ignoring", "group_left", "group_right"];

/// Labels Prometheus adds to every scraped series.
const TARGET_LABELS: &[&str] = &["job", "instance"];

/// What one expression names.
#[derive(Debug, Default, PartialEq)]
struct Names {
    /// Each selector's metric with the labels its matchers name.
    selectors: Vec<(String, Vec<String>)>,
    /// Labels of `by`, `without`, `on`, `ignoring` and `group_*` lists.
    grouping: Vec<String>,
}

/// The metric and label names in a PromQL expression (Grafana's `$variables` and strings
/// skipped). A small lexer, enough for the rules and dashboards of this repository.
fn promql_names(expr: &str) -> Names {
    let chars: Vec<char> = expr.chars().collect();
    let mut names = Names::default();
    let mut i = 0;
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    let skip_ws = |mut j: usize| {
        while j < chars.len() && chars[j].is_whitespace() {
            j += 1;
        }
        j
    };
    // The identifiers up to the closing bracket `close`, strings skipped; `(names, end)`.
    let list = |mut j: usize, close: char| {
        let mut out = Vec::new();
        while j < chars.len() && chars[j] != close {
            let c = chars[j];
            if c == '"' || c == '\'' || c == '`' {
                j += 1;
                while j < chars.len() && chars[j] != c {
                    j += if chars[j] == '\\' { 2 } else { 1 };
                }
                j += 1;
            } else if c.is_ascii_alphabetic() || c == '_' {
                let start = j;
                while j < chars.len() && ident(chars[j]) {
                    j += 1;
                }
                let word: String = chars[start..j].iter().collect();
                // In a matcher list only the word before an operator is a label.
                let next = skip_ws(j);
                if close != '}' || matches!(chars.get(next), Some('=' | '!')) {
                    out.push(word);
                }
            } else {
                j += 1;
            }
        }
        (out, j + 1)
    };
    while i < chars.len() {
        let c = chars[i];
        if c == '"' || c == '\'' || c == '`' {
            i += 1;
            while i < chars.len() && chars[i] != c {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
        } else if c == '$' {
            // A Grafana variable: `$name`, `${name}`, `$__rate_interval`.
            i += 1;
            while i < chars.len() && (ident(chars[i]) || chars[i] == '{' || chars[i] == '}') {
                i += 1;
            }
        } else if c == '[' {
            // A range or subquery: durations only.
            while i < chars.len() && chars[i] != ']' {
                i += 1;
            }
            i += 1;
        } else if c.is_ascii_digit() || c == '.' {
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
        } else if c == '{' {
            // A selector without a name before it (`{__name__=~"..."}`) names no metric.
            let (labels, end) = list(i + 1, '}');
            names.selectors.push((String::new(), labels));
            i = end;
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len() && ident(chars[i]) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let next = skip_ws(i);
            if LABEL_LISTS.contains(&word.as_str()) && chars.get(next) == Some(&'(') {
                let (labels, end) = list(next + 1, ')');
                names.grouping.extend(labels);
                i = end;
            } else if PROMQL_WORDS.contains(&word.as_str()) {
                // A function or a keyword.
            } else if chars.get(next) == Some(&'{') {
                let (labels, end) = list(next + 1, '}');
                names.selectors.push((word, labels));
                i = end;
            } else {
                names.selectors.push((word, Vec::new()));
            }
        } else {
            i += 1;
        }
    }
    names
}

#[test]
fn the_lexer_finds_metrics_and_labels_and_skips_functions_strings_and_variables() {
    let names = promql_names(
        r#"histogram_quantile(0.99, sum by (le, route) (rate(shop_http_request_duration_seconds_bucket{job=~"$job", route!="/metrics"}[$__rate_interval]))) > 0.5 and on(job) up == 1"#,
    );
    assert_eq!(
        names,
        Names {
            selectors: vec![
                ("shop_http_request_duration_seconds_bucket".into(), vec!["job".into(), "route".into()]),
                ("up".into(), vec![])
            ],
            grouping: vec!["le".into(), "route".into(), "job".into()],
        }
    );
    let names = promql_names(r#"changes(shop_process_start_time_seconds[15m]) > 2 or absent(job:shop_http_requests:rate5m) * 1e3"#);
    assert_eq!(names.selectors, vec![("shop_process_start_time_seconds".into(), vec![]), ("job:shop_http_requests:rate5m".into(), vec![])]);
}

/// Metric name → its label names, from the text exposition format.
fn exported(text: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
        let (series, _) = line.rsplit_once(' ').unwrap_or((line, ""));
        let (name, labels) = series.split_once('{').unwrap_or((series, ""));
        let entry = out.entry(name.to_owned()).or_default();
        for pair in labels.trim_end_matches('}').split("\",").filter(|p| !p.is_empty()) {
            if let Some((label, _)) = pair.split_once('=') {
                entry.insert(label.trim().to_owned());
            }
        }
    }
    out
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the workspace").to_path_buf()
}

/// Every string under a key named `key`, anywhere in `v`.
fn strings_under(v: &Value, key: &str, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str() == key, v) {
                    (true, Value::String(s)) => out.push(s.clone()),
                    _ => strings_under(v, key, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| strings_under(v, key, out)),
        _ => {}
    }
}

/// Every expression to check, named by where it is: the alert and recording rules, each
/// dashboard panel's query and each dashboard variable's query. Also the names the rules record.
fn expressions() -> (Vec<(String, String)>, BTreeSet<String>) {
    let mut out = Vec::new();
    let mut recorded = BTreeSet::new();
    let rules_path = repo().join("infra/prometheus/alerts.yml");
    let rules: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(&rules_path).expect("infra/prometheus/alerts.yml")).expect("the rules are YAML");
    let groups = rules["groups"].as_sequence().expect("rule groups");
    for rule in groups.iter().flat_map(|g| g["rules"].as_sequence().into_iter().flatten()) {
        let name = rule["alert"].as_str().or_else(|| rule["record"].as_str()).expect("a rule is an alert or a record").to_owned();
        if let Some(record) = rule["record"].as_str() {
            recorded.insert(record.to_owned());
        }
        out.push((format!("alerts.yml: {name}"), rule["expr"].as_str().expect("a rule's expr").to_owned()));
    }
    let mut dashboards: Vec<PathBuf> = std::fs::read_dir(repo().join("infra/grafana/dashboards"))
        .expect("infra/grafana/dashboards")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    dashboards.sort();
    assert!(dashboards.len() >= 4, "overview, commands, pipeline and business dashboards: {dashboards:?}");
    for path in dashboards {
        let file = path.file_name().expect("a name").to_string_lossy().into_owned();
        let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(&path).expect("dashboard")).expect("dashboard JSON");
        let mut exprs = Vec::new();
        strings_under(&dashboard["panels"], "expr", &mut exprs);
        assert!(!exprs.is_empty(), "{file} has queries");
        let mut variables = Vec::new();
        strings_under(&dashboard["templating"], "query", &mut variables);
        for query in variables {
            // `label_values(metric, label)`: the metric must carry the label.
            if let Some(args) = query.trim().strip_prefix("label_values(").and_then(|a| a.strip_suffix(')')) {
                let (selector, label) = args.rsplit_once(',').unwrap_or(("", args));
                let selector = if selector.is_empty() { format!("{{{}=~\".+\"}}", label.trim()) } else { selector.to_owned() };
                exprs.push(format!("sum by ({}) ({selector})", label.trim()));
            } else if query.contains('_') {
                exprs.push(query);
            }
        }
        out.extend(exprs.into_iter().map(|e| (file.clone(), e)));
    }
    (out, recorded)
}

/// The problems of one expression against what the shop exports (`up` is Prometheus's own).
fn problems(
    expr: &str,
    exported: &BTreeMap<String, BTreeSet<String>>,
    recorded: &BTreeSet<String>,
    all_labels: &BTreeSet<String>,
) -> Vec<String> {
    let names = promql_names(expr);
    let mut problems = Vec::new();
    let mut labels_here: BTreeSet<String> = TARGET_LABELS.iter().map(|l| l.to_string()).collect();
    for (metric, labels) in &names.selectors {
        let known: Option<BTreeSet<String>> = if metric == "up" {
            Some(BTreeSet::new())
        } else if metric.contains(':') {
            // A recorded series: recorded here, its labels any the shop exports.
            if !recorded.contains(metric) {
                problems.push(format!("{metric} is recorded by no rule"));
            }
            Some(all_labels.clone())
        } else if metric.is_empty() {
            Some(all_labels.clone())
        } else {
            exported.get(metric).cloned()
        };
        let Some(known) = known else {
            problems.push(format!("{metric} is not exported"));
            continue;
        };
        labels_here.extend(known.iter().cloned());
        for label in labels {
            let target = TARGET_LABELS.contains(&label.as_str()) || label == "__name__";
            if !target && !known.contains(label) {
                problems.push(format!("{metric} has no label {label} (it has {known:?})"));
            }
        }
    }
    for label in &names.grouping {
        if !labels_here.contains(label) {
            problems.push(format!("grouping by {label}, which no series of the expression has"));
        }
    }
    problems
}

#[tokio::test]
async fn every_alert_and_dashboard_query_names_only_exported_metrics_and_labels() {
    let (expressions, recorded) = expressions();
    let alerts = expressions.iter().filter(|(place, _)| place.starts_with("alerts.yml")).count();
    assert!(alerts >= 10 && expressions.len() >= alerts + 40, "the rules and the dashboards are read: {alerts} of {}", expressions.len());
    // A broker of its own: the consumer groups (`SHOP_EVENT_SOURCE=kafka`) share no member
    // with other tests.
    let Some(broker) = testkit::own_broker() else {
        return; // no tansu outside CI; under CI=true `own_broker()` fails loudly
    };
    let dir = testkit::scratch_dir();
    let port = testkit::free_port();
    testkit::create_admin(&dir, "admin@example.com", "Adm1n-Pass-obs-5e1");
    let mut child = testkit::binary(&dir, port)
        .env("KAFKA_BROKERS", broker.address())
        .env("SHOP_EVENT_SOURCE", "kafka")
        .arg("serve")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("shop starts");
    let api = testkit::Remote::new(format!("http://127.0.0.1:{port}"));
    testkit::until_ready(&api.base).await;

    // A small flow: a product in stock, a customer, an order confirmed and a mail sent.
    let admin = api.login("admin@example.com", "Adm1n-Pass-obs-5e1").await["access_token"].as_str().expect("token").to_owned();
    let product = json!({"sku": "OBS-1", "name": "Lamp", "category": "misc", "price": {"amount": 1500, "currency": "EUR"}});
    let (status, product) = api.post("/api/v1/products", Some(&admin), product).await;
    assert_eq!(status, StatusCode::CREATED, "{product:?}");
    let id = product["id"].as_str().expect("id");
    assert!(api.post(&format!("/api/v1/products/{id}/publish"), Some(&admin), json!({})).await.0.is_success());
    assert!(api.post("/api/v1/stock/OBS-1/receipts", Some(&admin), json!({"quantity": 5})).await.0.is_success());
    let customer = json!({"email": "ada@example.com", "password": "Cust-Pass-obs-77", "name": "Ada"});
    assert_eq!(api.post("/api/v1/auth/register", None, customer).await.0, StatusCode::CREATED);
    let ada = api.login("ada@example.com", "Cust-Pass-obs-77").await["access_token"].as_str().expect("token").to_owned();
    let order = json!({
        "lines": [{"sku": "OBS-1", "quantity": 1}],
        "shipping_address": {"name": "Ada Lovelace", "line1": "1 Main St", "city": "Berlin", "postal_code": "10115", "country": "de"},
        "payment_method": "tok_approve"
    });
    let (status, placed) = api.post("/api/v1/orders", Some(&ada), order).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{placed:?}");
    let order_id = placed["id"].as_str().expect("id").to_owned();

    // Until the order is confirmed and every reader (the relay too) has had a batch.
    let deadline = Instant::now() + Duration::from_secs(60);
    let text = loop {
        let (_, o) = api.call(Method::GET, &format!("/api/v1/orders/{order_id}"), Some(&ada), None).await;
        let text = api.http.get(format!("{}/metrics", api.base)).send().await.expect("metrics").text().await.expect("text");
        let seen = [
            "shop_relay_lag_seconds_count",
            "shop_saga_lag_seconds_count",
            "shop_notifier_lag_seconds_count",
            "shop_order_revenue_minor_total",
        ]
        .iter()
        .all(|m| text.contains(m));
        if o["status"] == "confirmed" && seen {
            break text;
        }
        assert!(Instant::now() < deadline, "the flow never showed in /metrics (order {o:?}):\n{text}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);

    let exported = exported(&text);
    // The scrape-time gauges are there, with the labels the rules use.
    for (metric, label) in [
        ("shop_ready", None),
        ("shop_dependency_up", Some("dependency")),
        ("shop_reader_pending_age_seconds", Some("name")),
        ("shop_reader_lag_events", Some("name")),
        ("shop_reader_position", Some("name")),
        ("shop_store_head_position", None),
        ("shop_dead_letters", Some("name")),
        ("shop_db_pool_connections", Some("state")),
        ("shop_db_pool_max_connections", Some("pool")),
        ("shop_process_start_time_seconds", None),
        ("shop_process_resident_memory_bytes", None),
        ("shop_build_info", Some("role")),
        ("shop_orders_placed_total", None),
    ] {
        let labels = exported.get(metric).unwrap_or_else(|| panic!("{metric} is exported:\n{text}"));
        assert!(label.is_none_or(|l| labels.contains(l)), "{metric} has {label:?}: {labels:?}");
    }
    assert!(text.contains("shop_reader_position{name=\"relay\"}"), "the relay's progress is reported:\n{text}");
    assert!(text.contains("shop_build_info{version=\"") && text.contains("role=\"serve\""), "{text}");

    let all_labels: BTreeSet<String> = exported.values().flatten().cloned().collect();
    let mut failures = Vec::new();
    for (place, expr) in &expressions {
        for problem in problems(expr, &exported, &recorded, &all_labels) {
            failures.push(format!("{place}: {problem}\n    in {expr}"));
        }
    }
    assert!(failures.is_empty(), "queries naming what the shop does not export:\n{}", failures.join("\n"));
    // The check can fail: a renamed metric and a made-up label are caught.
    assert!(!problems("rate(shop_http_requests_totals[5m])", &exported, &recorded, &all_labels).is_empty());
    assert!(!problems("sum by (rout) (rate(shop_http_requests_total[5m]))", &exported, &recorded, &all_labels).is_empty());
    assert!(!problems(r#"shop_reader_lag_events{reader="relay"}"#, &exported, &recorded, &all_labels).is_empty());
}
