//! The storefront and the admin console in a real browser: Debian's chromium, headless, driven
//! through chromedriver (WebDriver) against a real `shop serve` on its embedded default. Each
//! page visited is checked with axe-core (no serious or critical violation) and photographed
//! at 375 and 1280 px under `target/screenshots/`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};
use testkit::free_port;

/// What the browser tests need, from the test command (`SHOP_CHROMIUM`, `SHOP_CHROMEDRIVER`,
/// `SHOP_AXE_JS`); outside CI a missing one skips the test, in CI it fails it.
struct Tools {
    chromium: String,
    chromedriver: String,
    axe: String,
}

fn tools() -> Option<Tools> {
    let find = |var: &str, fallback: &str| std::env::var(var).ok().or_else(|| Path::new(fallback).exists().then(|| fallback.to_owned()));
    let chromium = find("SHOP_CHROMIUM", "/usr/bin/chromium");
    let chromedriver = find("SHOP_CHROMEDRIVER", "/usr/bin/chromedriver");
    let axe = std::env::var("SHOP_AXE_JS").ok().and_then(|p| std::fs::read_to_string(p).ok());
    match (chromium, chromedriver, axe) {
        (Some(chromium), Some(chromedriver), Some(axe)) => Some(Tools { chromium, chromedriver, axe }),
        missing if testkit::in_ci() => {
            panic!("chromium, chromedriver and axe-core are required in CI: {:?}", (missing.0, missing.1, missing.2.is_some()))
        }
        _ => {
            eprintln!("skipping: chromium, chromedriver or axe-core (SHOP_AXE_JS) missing; the test command provides them");
            None
        }
    }
}

/// `shop serve` on its embedded default, with the admin `root@example.com`.
async fn shop(dir: &Path) -> (testkit::Running, String) {
    let port = free_port();
    testkit::create_admin(dir, "root@example.com", "root password");
    let base = format!("http://127.0.0.1:{port}");
    let child = testkit::binary(dir, port)
        .env("SHOP_PUBLIC_URL", &base)
        .arg("serve")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("shop starts");
    let process = testkit::Running(child);
    testkit::until_ready(&base).await;
    (process, base)
}

/// chromedriver on a free port.
async fn chromedriver(tools: &Tools) -> (testkit::Running, String) {
    let port = free_port();
    let child = Command::new(&tools.chromedriver)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    let process = testkit::Running(child);
    let url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        assert!(Instant::now() < deadline, "chromedriver did not listen");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (process, url)
}

/// A fresh browser (its own profile: cookies and storage of its own), `width` px wide.
async fn browser(tools: &Tools, driver: &str, downloads: &Path, width: u32) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": tools.chromium,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", format!("--window-size={width},900")],
            "prefs": {"download.default_directory": downloads.to_string_lossy(), "download.prompt_for_download": false},
        }),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(driver)
        .await
        .expect("a chromium session")
}

/// The API beside the browser: setup and checks.
struct Api(testkit::Remote);

impl Api {
    async fn call(&self, method: reqwest::Method, path: &str, token: Option<&str>, body: Option<Value>) -> Value {
        let (status, body) = self.0.call(method, &format!("/api/v1{path}"), token, body).await;
        assert!(status.is_success(), "{path}: {status} {body}");
        body
    }

    /// A published product with `units` in stock (an iPhone is featured); its id.
    async fn product(&self, admin: &str, sku: &str, name: &str, category: &str, amount: i64, units: i64) -> String {
        let attributes = if sku.starts_with("IPHONE") { json!({"featured": "true"}) } else { json!({}) };
        let created = self
            .call(
                reqwest::Method::POST,
                "/products",
                Some(admin),
                Some(json!({"sku": sku, "name": name, "description": format!("{name}, in stock."), "category": category,
                            "price": {"amount": amount, "currency": "EUR"}, "attributes": attributes})),
            )
            .await;
        let id = created["id"].as_str().expect("id").to_owned();
        self.call(reqwest::Method::POST, &format!("/products/{id}/publish"), Some(admin), Some(json!({}))).await;
        self.call(reqwest::Method::POST, &format!("/stock/{sku}/receipts"), Some(admin), Some(json!({"quantity": units}))).await;
        id
    }
}

/// Polls `check` (a script answering a boolean) every 100 ms for up to `limit`.
async fn until(c: &Client, limit: Duration, what: &str, script: &str) {
    let deadline = Instant::now() + limit;
    loop {
        if c.execute(script, vec![]).await.ok().and_then(|v| v.as_bool()) == Some(true) {
            return;
        }
        if Instant::now() > deadline {
            let url = c.current_url().await.map(|u| u.to_string()).unwrap_or_default();
            let text = c.execute("return document.body.innerText", vec![]).await.unwrap_or(Value::Null);
            panic!("{what} within {limit:?}; at {url}: {text}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn text_present(text: &str) -> String {
    format!("return document.body.innerText.includes({})", json!(text))
}

async fn fill(c: &Client, selector: &str, value: &str) {
    let input =
        c.wait().at_most(Duration::from_secs(10)).for_element(Locator::Css(selector)).await.unwrap_or_else(|e| panic!("{selector}: {e}"));
    input.clear().await.expect("clear");
    input.send_keys(value).await.expect("type");
}

/// Page `path`, once it shows its heading and has nothing loading.
async fn visit(c: &Client, base: &str, path: &str) {
    c.goto(&format!("{base}{path}")).await.unwrap_or_else(|e| panic!("{path}: {e}"));
    until(
        c,
        Duration::from_secs(10),
        &format!("{path} shows"),
        "return document.querySelector('main h1') !== null && document.querySelector('[role=status]')?.innerText?.endsWith('…') !== true",
    )
    .await;
}

/// One unit of product `id` into the cart, from its page.
async fn add_one(c: &Client, base: &str, id: &str) {
    c.goto(&format!("{base}/p/{id}")).await.expect("product page");
    click_text(c, "Add to cart").await;
    until(c, Duration::from_secs(5), "added", &text_present("Added 1 to your cart")).await;
}

/// The checkout form's shipping address.
async fn address(c: &Client) {
    fill(c, "#checkout-line1", "Hauptstr. 5").await;
    fill(c, "#checkout-city", "Berlin").await;
    fill(c, "#checkout-postal_code", "10115").await;
}

async fn click(c: &Client, selector: &str) {
    let element =
        c.wait().at_most(Duration::from_secs(10)).for_element(Locator::Css(selector)).await.unwrap_or_else(|e| panic!("{selector}: {e}"));
    element.click().await.unwrap_or_else(|e| panic!("click {selector}: {e}"));
}

async fn click_text(c: &Client, text: &str) {
    let element = c
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::XPath(&format!("//*[self::a or self::button][normalize-space()={}]", json!(text))))
        .await
        .unwrap_or_else(|e| panic!("{text}: {e}"));
    element.click().await.unwrap_or_else(|e| panic!("click {text}: {e}"));
}

/// axe-core on the page as it is: no serious or critical violation.
async fn accessible(c: &Client, axe: &str, page: &str) {
    c.execute(&format!("{axe}\nreturn true;"), vec![]).await.expect("axe-core loads");
    let result = c
        .execute_async(
            "const done = arguments[arguments.length - 1];
             axe.run(document, {resultTypes: ['violations']}).then(r => done(r.violations.map(v => ({id: v.id, impact: v.impact, nodes: v.nodes.map(n => n.target.join(' ')).slice(0, 3)}))), e => done([{id: 'axe failed', impact: 'critical', nodes: [String(e)]}]));",
            vec![],
        )
        .await
        .expect("axe runs");
    let serious: Vec<&Value> =
        result.as_array().into_iter().flatten().filter(|v| matches!(v["impact"].as_str(), Some("serious" | "critical"))).collect();
    assert!(serious.is_empty(), "{page}: serious or critical accessibility violations: {serious:?}");
}

fn screenshots() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/screenshots");
    std::fs::create_dir_all(&dir).expect("screenshot dir");
    dir
}

/// The page at both widths, photographed, and checked with axe-core at each.
async fn look(c: &Client, axe: &str, name: &str) {
    check(c, axe, name, true).await;
}

/// The page at both widths: no sideways scrolling, axe-core at each; photographed if `save`.
async fn check(c: &Client, axe: &str, name: &str, save: bool) {
    for width in [375u32, 1280] {
        c.set_window_size(width, 900).await.expect("resize");
        tokio::time::sleep(Duration::from_millis(150)).await;
        let overflow = c.execute("return document.documentElement.scrollWidth > window.innerWidth + 1", vec![]).await.expect("layout");
        assert_eq!(overflow, Value::Bool(false), "{name} at {width} px scrolls sideways");
        accessible(c, axe, &format!("{name} at {width} px")).await;
        if save {
            let png = c.screenshot().await.expect("screenshot");
            std::fs::write(screenshots().join(format!("{name}-{width}.png")), png).expect("screenshot written");
        }
    }
}

/// Polls directory `dir` every 100 ms for up to `limit` until `find` picks something out of
/// one of its files.
async fn in_dir<T>(dir: &Path, limit: Duration, what: &str, find: impl Fn(&Path) -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(found) = std::fs::read_dir(dir).into_iter().flatten().filter_map(Result::ok).find_map(|e| find(&e.path())) {
            return found;
        }
        assert!(Instant::now() < deadline, "{what} within {limit:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The link starting with `prefix` in a mail of the outbox `dir`.
async fn mailed_link(dir: &Path, prefix: &str) -> String {
    in_dir(dir, Duration::from_secs(10), &format!("a mail with a link to {prefix}"), |path| {
        let text = std::fs::read_to_string(path).ok()?;
        text.split_whitespace().find(|w| w.starts_with(prefix)).map(str::to_owned)
    })
    .await
}

async fn wait_for_file(dir: &Path, limit: Duration) -> PathBuf {
    in_dir(dir, limit, "a downloaded PDF", |path| path.extension().is_some_and(|x| x == "pdf").then(|| path.to_owned())).await
}

/// Waits up to `limit` until the order page shows `status`.
async fn order_status(c: &Client, limit: Duration, what: &str, status: &str) {
    until(c, limit, what, &format!("return document.getElementById('order-status')?.dataset.status === {}", json!(status))).await;
}

/// The five stories, in one shop: a guest who registers and buys, a declined payment,
/// an admin whose new product a second browser finds, a shipment seen live, and a price that
/// moved between cart and checkout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shopper_and_an_admin_use_the_shop_in_a_browser() {
    let Some(tools) = tools() else { return };
    let dir = testkit::scratch_dir();
    let downloads = dir.join("downloads");
    std::fs::create_dir_all(&downloads).expect("downloads dir");
    let (_shop, base) = shop(&dir).await;
    let api = Api(testkit::Remote::new(base.clone()));
    let root = api.0.login("root@example.com", "root password").await["access_token"].as_str().expect("token").to_owned();
    api.call(
        reqwest::Method::PUT,
        "/admin/settings",
        Some(&root),
        Some(json!({"legal_name": "Shop Test GmbH", "address": {"line1": "Hauptstr. 1", "city": "Berlin", "postal_code": "10115", "country": "DE"},
                    "default_currency": "EUR", "tax_rate_bp": 1900, "shipping_amount": 490, "free_shipping_threshold": 10000})),
    )
    .await;
    api.product(&root, "IPHONE-15", "iPhone 15", "phones/apple", 79_900, 20).await;
    api.product(&root, "PIXEL-8", "Pixel 8", "phones/android", 59_900, 20).await;
    let case = api.product(&root, "CASE-1", "Clear Case", "accessories", 1_900, 50).await;
    api.call(
        reqwest::Method::POST,
        "/promotions",
        Some(&root),
        Some(json!({"code": "WELCOME10", "kind": "percentage", "percentage_bp": 1000})),
    )
    .await;
    let (_driver, driver) = chromedriver(&tools).await;
    let c = browser(&tools, &driver, &downloads, 1280).await;

    // 1. A guest browses a category, searches "iphnoe", adds two products, registers.
    let started = Instant::now();
    c.goto(&base).await.expect("home");
    until(&c, Duration::from_secs(1), "the home page shows products", "return document.querySelectorAll('.card').length >= 3").await;
    let rendered = started.elapsed();
    // From the navigation's start, as the page itself measured it.
    let in_page = c.execute("return performance.now()", vec![]).await.expect("clock").as_f64().unwrap_or(f64::MAX);
    assert!(in_page < 1_000.0, "the home page renders its products within 1 s of navigating: {in_page} ms");
    let transferred = c
        .execute(
            "const n = performance.getEntriesByType('navigation')[0]; return performance.getEntriesByType('resource').reduce((s, r) => s + r.transferSize, n.transferSize);",
            vec![],
        )
        .await
        .expect("sizes");
    assert!(transferred.as_f64().is_some_and(|b| b < 150_000.0), "the home page transfers under 150 KB: {transferred}");
    look(&c, &tools.axe, "home").await;
    click(&c, "nav[aria-label=Categories] a[href='/c/phones']").await;
    until(&c, Duration::from_secs(5), "the category lists its phones", &text_present("Pixel 8")).await;
    fill(&c, "#q", "iphnoe").await;
    until(&c, Duration::from_secs(5), "search finds the iPhone despite the typo", "return location.pathname === '/search' && document.querySelector('.card a') !== null && document.querySelector('.card a').innerText.includes('iPhone 15')").await;
    click(&c, ".card a").await;
    until(&c, Duration::from_secs(5), "the product page", &text_present("in stock")).await;
    look(&c, &tools.axe, "product").await;
    click_text(&c, "Add to cart").await;
    until(&c, Duration::from_secs(5), "added", &text_present("Added 1 to your cart")).await;
    c.goto(&format!("{base}/p/{case}")).await.expect("case page");
    fill(&c, "#add-quantity", "2").await;
    click_text(&c, "Add to cart").await;
    until(&c, Duration::from_secs(5), "added", &text_present("Added 2 to your cart")).await;
    click_text(&c, "Sign in").await;
    click_text(&c, "Create an account").await;
    fill(&c, "#register-name", "Ada Shopper").await;
    fill(&c, "#register-email", "ada@example.com").await;
    fill(&c, "#register-password", "a long enough password").await;
    click(&c, "#register button[type=submit]").await;
    until(&c, Duration::from_secs(10), "signed in", &text_present("Ada Shopper")).await;
    click_text(&c, "Cart").await;
    until(&c, Duration::from_secs(5), "the cart survived the sign-in", "return document.querySelectorAll('tr[data-sku]').length === 2")
        .await;

    // Two tabs refreshing at once share one cookie: they take turns, so neither presents a
    // token the other already used (which would end the login for both).
    let turns = c
        .execute_async(
            "const done = arguments[arguments.length - 1];
             const api = document.querySelector('script[type=module]').src.replace(/app\\.js$/, 'api.js');
             import(api).then(m => Promise.all([m.rotateSession(), m.rotateSession(), m.rotateSession()])
               .then(r => m.api('/users/me').then(me => done({rotated: r, me: me.email}))))
               .catch(e => done({error: String(e)}));",
            vec![],
        )
        .await
        .expect("rotations");
    assert_eq!(turns, json!({"rotated": [true, true, true], "me": "ada@example.com"}), "concurrent refreshes keep the session");

    // 2. A discount code, checkout with the approving token, the order page turns confirmed
    // by itself, and the invoice downloads.
    fill(&c, "#discount-code", "WELCOME10").await;
    click(&c, "#discount button[type=submit]").await;
    until(&c, Duration::from_secs(5), "the code applies", &text_present("Code WELCOME10 applied")).await;
    look(&c, &tools.axe, "cart").await;
    click_text(&c, "Check out").await;
    address(&c).await;
    click(&c, "#checkout button[type=submit]").await;
    until(&c, Duration::from_secs(10), "the order page", "return location.pathname.startsWith('/orders/')").await;
    let first_order = c.current_url().await.expect("url").path().trim_start_matches("/orders/").to_owned();
    let navigations = c.execute("return performance.getEntriesByType('navigation').length", vec![]).await.expect("navs");
    order_status(&c, Duration::from_secs(20), "the order turns confirmed without a reload", "confirmed").await;
    let reloaded = c.execute("return performance.getEntriesByType('navigation').length", vec![]).await.expect("navs");
    assert_eq!(navigations, reloaded, "no reload");
    click(&c, "#invoice").await;
    let pdf = wait_for_file(&downloads, Duration::from_secs(10)).await;
    let bytes = std::fs::read(&pdf).expect("pdf");
    assert!(bytes.starts_with(b"%PDF"), "the invoice is a PDF");
    look(&c, &tools.axe, "order").await;

    // 3. With the declining token the order page says the payment was declined.
    add_one(&c, &base, &case).await;
    c.goto(&format!("{base}/checkout")).await.expect("checkout");
    address(&c).await;
    let select = c.wait().for_element(Locator::Css("#checkout-payment_method")).await.expect("payment select");
    select.select_by_value("tok_decline").await.expect("decline token");
    click(&c, "#checkout button[type=submit]").await;
    order_status(&c, Duration::from_secs(20), "the order is cancelled", "cancelled").await;
    until(&c, Duration::from_secs(10), "with the reason in words", &text_present("the payment was declined")).await;

    // 4. An admin creates and publishes a product and receives stock; the shopper's browser
    // finds it within a second; the admin ships the first order, seen live by the shopper.
    let admin = browser(&tools, &driver, &downloads, 1280).await;
    admin.goto(&format!("{base}/signin?next=/admin")).await.expect("admin sign-in");
    fill(&admin, "#signin-email", "root@example.com").await;
    fill(&admin, "#signin-password", "root password").await;
    click(&admin, "#signin button[type=submit]").await;
    until(&admin, Duration::from_secs(10), "the dashboard", "return document.querySelector('svg.chart') !== null").await;
    look(&admin, &tools.axe, "dashboard").await;
    click_text(&admin, "Products").await;
    click(&admin, "details summary").await;
    fill(&admin, "#new-product-sku", "LAMP-1").await;
    fill(&admin, "#new-product-name", "Moon Lamp").await;
    fill(&admin, "#new-product-description", "A lamp like the moon").await;
    fill(&admin, "#new-product-category", "home").await;
    fill(&admin, "#new-product-price", "39.90").await;
    click(&admin, "#new-product button[type=submit]").await;
    click_text(&admin, "Publish").await;
    until(&admin, Duration::from_secs(10), "published", &text_present("Done: publish")).await;
    let published = Instant::now();
    fill(&c, "#q", "moon lamp").await;
    until(&c, Duration::from_secs(1), "the shopper finds the new product", &text_present("Moon Lamp")).await;
    eprintln!("found by search {:?} after publishing", published.elapsed());
    fill(&admin, "#receipt-quantity", "10").await;
    click(&admin, "#receipt button[type=submit]").await;
    until(&admin, Duration::from_secs(10), "received", &text_present("Received 10.")).await;
    check(&admin, &tools.axe, "the product editor", false).await;
    c.goto(&format!("{base}/orders/{first_order}")).await.expect("the first order");
    order_status(&c, Duration::from_secs(10), "the order page", "confirmed").await;
    admin.goto(&format!("{base}/admin/orders/{first_order}")).await.expect("admin order");
    fill(&admin, "#ship-tracking_number", "TRACK-42").await;
    click(&admin, "#ship button[type=submit]").await;
    order_status(&c, Duration::from_secs(10), "the shopper sees it shipped, live", "shipped").await;

    // 5. A price that moves between cart and checkout is shown before any order is placed.
    add_one(&c, &base, &case).await;
    c.goto(&format!("{base}/checkout")).await.expect("checkout");
    address(&c).await;
    let product = api.call(reqwest::Method::GET, &format!("/products/{case}"), None, None).await;
    let version = product["version"].as_i64().expect("version");
    let res = api
        .0
        .http
        .put(format!("{base}/api/v1/products/{case}/price"))
        .bearer_auth(&root)
        .header("if-match", version.to_string())
        .json(&json!({"amount": 2_400, "currency": "EUR"}))
        .send()
        .await
        .expect("price change");
    assert!(res.status().is_success(), "{}", res.status());
    let orders_before =
        api.call(reqwest::Method::GET, "/admin/orders?limit=100", Some(&root), None).await["items"].as_array().map(Vec::len);
    click(&c, "#checkout button[type=submit]").await;
    until(&c, Duration::from_secs(10), "the shopper is told the cart changed", "return document.getElementById('cart-changed') !== null")
        .await;
    until(&c, Duration::from_secs(5), "and which price moved", &text_present("Price changed from")).await;
    assert_eq!(c.current_url().await.expect("url").path(), "/checkout", "no order page");
    let orders_after = api.call(reqwest::Method::GET, "/admin/orders?limit=100", Some(&root), None).await["items"].as_array().map(Vec::len);
    assert_eq!(orders_before, orders_after, "no order was placed");

    // 6. Signed out, the shopper resets the password from the mailed link, signs in with the
    // new one and stops marketing mail.
    click_text(&c, "Sign out").await;
    until(&c, Duration::from_secs(5), "signed out", &text_present("Sign in")).await;
    c.goto(&format!("{base}/reset")).await.expect("reset page");
    fill(&c, "#reset-email", "ada@example.com").await;
    click(&c, "#reset button[type=submit]").await;
    until(&c, Duration::from_secs(5), "the reset is asked", &text_present("a reset link is on its way")).await;
    let link = mailed_link(&dir.join("outbox"), &format!("{base}/reset?token=")).await;
    c.goto(&link).await.expect("the mailed link");
    fill(&c, "#reset-confirm-new_password", "another long password").await;
    click(&c, "#reset-confirm button[type=submit]").await;
    until(&c, Duration::from_secs(5), "the password is changed", &text_present("Your password is changed")).await;
    // A `next` that names another site is not followed.
    c.goto(&format!("{base}/signin?next=//evil.example/account")).await.expect("sign-in");
    fill(&c, "#signin-email", "ada@example.com").await;
    fill(&c, "#signin-password", "a long enough password").await;
    click(&c, "#signin button[type=submit]").await;
    until(
        &c,
        Duration::from_secs(5),
        "the old password is refused next to the form",
        "return document.querySelector('#signin [role=alert]') !== null",
    )
    .await;
    fill(&c, "#signin-password", "another long password").await;
    click(&c, "#signin button[type=submit]").await;
    until(
        &c,
        Duration::from_secs(10),
        "signed in, home, on this shop",
        &format!("return location.href === {} && document.body.innerText.includes('Ada Shopper')", json!(format!("{base}/"))),
    )
    .await;
    c.goto(&format!("{base}/account")).await.expect("account");
    until(&c, Duration::from_secs(10), "the account page", "return document.querySelector('#preferences') !== null").await;
    click(&c, "#preferences-marketing_emails").await;
    click(&c, "#preferences button[type=submit]").await;
    until(&c, Duration::from_secs(5), "saved", &text_present("Saved.")).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let users = api.call(reqwest::Method::GET, "/admin/users?limit=100", Some(&root), None).await;
        let ada = users["items"].as_array().into_iter().flatten().find(|u| u["email"] == "ada@example.com").cloned().unwrap_or_default();
        if ada["marketing_emails"] == Value::Bool(false) {
            break;
        }
        assert!(Instant::now() < deadline, "the preference reached the users' view: {ada}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Every other page, for accessibility: the shopper's and the admin's.
    let pages = ["/c/phones", "/search?q=case", "/cart", "/checkout", "/orders", &format!("/orders/{first_order}"), "/account"];
    for path in pages {
        visit(&c, &base, path).await;
        check(&c, &tools.axe, path, false).await;
    }
    c.goto(&format!("{base}/reset")).await.expect("reset");
    check(&c, &tools.axe, "/reset", false).await;
    let admin_pages = [
        "/admin/products",
        "/admin/stock?sku=CASE-1",
        "/admin/orders",
        &format!("/admin/orders/{first_order}"),
        "/admin/users",
        "/admin/codes",
        "/admin/webhooks",
        "/admin/dead-letters",
        "/admin/mail",
    ];
    for path in admin_pages {
        visit(&admin, &base, path).await;
        check(&admin, &tools.axe, path, false).await;
    }
    admin.goto(&format!("{base}/signin")).await.expect("sign-in page");
    check(&admin, &tools.axe, "/signin", false).await;
    admin.goto(&format!("{base}/register")).await.expect("register page");
    check(&admin, &tools.axe, "/register", false).await;

    eprintln!("home rendered in {rendered:?}, {transferred} bytes");
    let _ = c.close().await;
    let _ = admin.close().await;
    let _ = std::fs::remove_dir_all(&dir);
}
