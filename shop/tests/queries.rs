//! The query API over real HTTP in both modes: what each viewer sees, filters, sorting,
//! pagination, read-your-writes, ETags and tenant isolation.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use testkit::both_modes;
use testkit::{Answer, TestApp};

/// Creates a product and returns (id, position of its last event).
async fn product(app: &TestApp, token: &str, sku: &str, category: &str, amount: i64, publish: bool, featured: bool) -> (String, i64) {
    let attributes = if featured { json!({"featured": "true"}) } else { json!({}) };
    let created = app
        .post(
            "/api/v1/products",
            Some(token),
            json!({"sku": sku, "name": format!("Item {sku}"), "category": category, "price": {"amount": amount, "currency": "EUR"}, "attributes": attributes}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
    let id = created.body["id"].as_str().expect("id").to_owned();
    let mut position = created.body["position"].as_i64().expect("position");
    if publish {
        position =
            app.post(&format!("/api/v1/products/{id}/publish"), Some(token), json!({})).await.body["position"].as_i64().expect("position");
    }
    (id, position)
}

async fn get(app: &TestApp, path: &str, token: Option<&str>, min: i64) -> Answer {
    let min = min.to_string();
    app.call(Method::GET, path, token, None, &[("x-min-position", &min)]).await
}

fn skus(page: &Value) -> Vec<String> {
    page["items"].as_array().expect("items").iter().map(|p| p["sku"].as_str().expect("sku").to_owned()).collect()
}

both_modes!(the_catalogue_shows_customers_published_products_only, |app: TestApp| async move {
    let admin = app.admin_token().await;
    product(&app, &admin, "A-1", "electronics/phones", 300, true, true).await;
    product(&app, &admin, "A-2", "electronics/laptops", 100, true, false).await;
    let (hidden, last) = product(&app, &admin, "A-3", "books", 200, false, false).await;

    let anonymous = get(&app, "/api/v1/products", None, last).await;
    assert_eq!(anonymous.status, StatusCode::OK, "{:?}", anonymous.body);
    assert_eq!(skus(&anonymous.body), ["A-1", "A-2"]);
    let admin_view = get(&app, "/api/v1/products", Some(&admin), last).await;
    assert_eq!(skus(&admin_view.body), ["A-1", "A-2", "A-3"]);
    let unpublished = get(&app, "/api/v1/products?published=false", Some(&admin), last).await;
    assert_eq!(skus(&unpublished.body), ["A-3"]);

    assert_eq!(get(&app, &format!("/api/v1/products/{hidden}"), None, last).await.status, StatusCode::NOT_FOUND);
    let seen = get(&app, &format!("/api/v1/products/{hidden}"), Some(&admin), last).await;
    assert_eq!((seen.status, seen.body["published"].as_bool()), (StatusCode::OK, Some(false)));
});

both_modes!(the_catalogue_filters_sorts_and_pages, |app: TestApp| async move {
    let admin = app.admin_token().await;
    let mut last = 0;
    for (sku, category, amount, featured) in [
        ("P-1", "electronics/phones", 500, true),
        ("P-2", "electronics/phones/android", 300, false),
        ("P-3", "electronics/laptops", 900, false),
        ("P-4", "garden", 100, true),
        ("P-5", "electronics", 700, false),
    ] {
        last = product(&app, &admin, sku, category, amount, true, featured).await.1;
    }
    let phones = get(&app, "/api/v1/products?category=electronics/phones", None, last).await;
    assert_eq!(skus(&phones.body), ["P-1", "P-2"], "sub-categories included");
    let electronics = get(&app, "/api/v1/products?category=electronics&sort=price", None, last).await;
    assert_eq!(skus(&electronics.body), ["P-2", "P-1", "P-5", "P-3"]);
    let range = get(&app, "/api/v1/products?min_price=300&max_price=700&sort=price", None, last).await;
    assert_eq!(skus(&range.body), ["P-2", "P-1", "P-5"]);
    let featured = get(&app, "/api/v1/products?featured=true", None, last).await;
    assert_eq!(skus(&featured.body), ["P-1", "P-4"]);
    let newest = get(&app, "/api/v1/products?sort=newest&limit=2", None, last).await;
    assert_eq!(skus(&newest.body), ["P-5", "P-4"]);

    // Walk every page of two: each product exactly once, in order.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/products?sort=price&limit=2&cursor={c}"),
            None => "/api/v1/products?sort=price&limit=2".to_owned(),
        };
        let page = get(&app, &path, None, last).await;
        seen.extend(skus(&page.body));
        match page.body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen, ["P-4", "P-2", "P-1", "P-5", "P-3"]);

    let bad = get(&app, "/api/v1/products?limit=1000", None, last).await;
    assert_eq!((bad.status, bad.body["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("limit")));
    let bad_sort = get(&app, "/api/v1/products?sort=colour", None, last).await;
    assert_eq!((bad_sort.status, bad_sort.code()), (StatusCode::BAD_REQUEST, "malformed_body"));
    let bad_cursor = get(&app, "/api/v1/products?cursor=zz", None, last).await;
    assert_eq!(bad_cursor.status, StatusCode::UNPROCESSABLE_ENTITY);

    let tree = get(&app, "/api/v1/categories", None, last).await;
    let electronics = tree.body.as_array().expect("tree").iter().find(|c| c["path"] == "electronics").expect("electronics");
    assert_eq!(electronics["count"], 4);
    let phones = electronics["children"].as_array().expect("children").iter().find(|c| c["name"] == "phones").expect("phones");
    assert_eq!((phones["count"].as_i64(), phones["children"][0]["path"].as_str()), (Some(2), Some("electronics/phones/android")));
});

both_modes!(a_product_detail_has_an_etag_and_follows_changes, |app: TestApp| async move {
    let admin = app.admin_token().await;
    let (id, last) = product(&app, &admin, "E-1", "misc", 100, true, false).await;
    let path = format!("/api/v1/products/{id}");
    let first = get(&app, &path, None, last).await;
    assert_eq!((first.status, first.body["price"]["amount"].as_i64()), (StatusCode::OK, Some(100)));
    let etag = first.headers["etag"].to_str().expect("etag").to_owned();
    // At the same position as the first read: without it this read may reach the documents
    // while they are still behind the catalogue that answered first (a 404 in one CI run).
    let at = last.to_string();
    let same = app.call(Method::GET, &path, None, None, &[("if-none-match", &etag), ("x-min-position", &at)]).await;
    assert_eq!(same.status, StatusCode::NOT_MODIFIED);
    let changed = app.call(Method::PUT, &format!("{path}/price"), Some(&admin), Some(json!({"amount": 80, "currency": "EUR"})), &[]).await;
    let position = changed.body["position"].as_i64().expect("position");
    let min = position.to_string();
    let fresh = app.call(Method::GET, &path, None, None, &[("if-none-match", &etag), ("x-min-position", &min)]).await;
    assert_eq!((fresh.status, fresh.body["price"]["amount"].as_i64()), (StatusCode::OK, Some(80)));
    assert_ne!(fresh.headers["etag"].to_str().expect("etag"), etag);
});

both_modes!(stock_availability_reads_your_writes, |app: TestApp| async move {
    let admin = app.admin_token().await;
    product(&app, &admin, "S-1", "misc", 100, true, false).await;
    let receipt = app.post("/api/v1/stock/S-1/receipts", Some(&admin), json!({"quantity": 7})).await;
    let position = receipt.body["position"].as_i64().expect("position");
    let public = get(&app, "/api/v1/stock/s-1", None, position).await;
    assert_eq!((public.status, public.body["available"].as_i64()), (StatusCode::OK, Some(7)));
    assert!(public.body.get("on_hand").is_none(), "customers see availability only");
    let admin_view = get(&app, "/api/v1/stock/S-1", Some(&admin), position).await;
    assert_eq!((admin_view.body["on_hand"].as_i64(), admin_view.body["reserved"].as_i64()), (Some(7), Some(0)));
    assert_eq!(get(&app, "/api/v1/stock/NOPE", None, position).await.status, StatusCode::NOT_FOUND);
    let too_far = get(&app, "/api/v1/stock/S-1", None, position + 1_000_000).await;
    // A position no command has answered yet cannot be waited for: refused at once.
    assert_eq!(
        (too_far.status, too_far.code(), too_far.body["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_value", Some("X-Min-Position"))
    );
    let bad = app.call(Method::GET, "/api/v1/stock/S-1", None, None, &[("x-min-position", "soon")]).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
});

both_modes!(users_see_themselves_and_admins_see_everyone, |app: TestApp| async move {
    let admin = app.admin_token().await;
    let registered = app.register("ada@example.com", "correct horse").await;
    let position = registered.body["position"].as_i64().expect("position");
    let ada = app.login("ada@example.com", "correct horse").await.body["access_token"].as_str().expect("token").to_owned();
    let me = get(&app, "/api/v1/users/me", Some(&ada), position).await;
    assert_eq!((me.status, me.body["email"].as_str()), (StatusCode::OK, Some("ada@example.com")));
    assert_eq!(me.body["roles"], json!(["customer"]));
    assert!(me.body.get("password_hash").is_none());
    assert_eq!(get(&app, "/api/v1/users/me", None, position).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(get(&app, "/api/v1/admin/users", Some(&ada), position).await.status, StatusCode::FORBIDDEN);
    let first = get(&app, "/api/v1/admin/users?limit=1", Some(&admin), position).await;
    assert_eq!(first.body["items"].as_array().map(Vec::len), Some(1));
    let cursor = first.body["next_cursor"].as_str().expect("a second page").to_owned();
    let second = get(&app, &format!("/api/v1/admin/users?limit=1&cursor={cursor}"), Some(&admin), position).await;
    let emails: Vec<_> = [&first, &second].iter().map(|p| p.body["items"][0]["email"].as_str().expect("email").to_owned()).collect();
    assert_eq!(emails, ["admin@example.com", "ada@example.com"]);
    assert!(second.body["next_cursor"].is_null());

    // The order saga and the notifier are listed once they have passed their first events.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let names = loop {
        let status = get(&app, "/api/v1/admin/projections", Some(&admin), position).await;
        let names: Vec<_> = status.body.as_array().expect("list").iter().map(|p| p["name"].as_str().expect("name").to_owned()).collect();
        let started = ["order_saga", "notifier"].iter().all(|r| names.iter().any(|n| n == r));
        if started || std::time::Instant::now() > deadline {
            break names;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(
        names,
        ["catalogue", "stock", "users", "orders", "carts", "promotions", "settings", "order_saga", "notifier", "product_detail", "search"]
    );
    assert_eq!(get(&app, "/api/v1/admin/projections", Some(&ada), position).await.status, StatusCode::FORBIDDEN);
});

both_modes!(no_query_crosses_tenants, |app: TestApp| async move {
    let acme = app.admin_token_in("acme", "admin@acme.example").await;
    let globex = app.admin_token_in("globex", "admin@globex.example").await;
    let (id, _) = product(&app, &acme, "ACME-1", "tools", 100, true, false).await;
    let receipt = app.post("/api/v1/stock/ACME-1/receipts", Some(&acme), json!({"quantity": 3})).await;
    let last = receipt.body["position"].as_i64().expect("position");
    for path in ["/api/v1/products", "/api/v1/categories", "/api/v1/products/search?q=item", "/api/v1/products/search?q=acme"] {
        let theirs = get(&app, path, Some(&globex), last).await;
        assert_eq!(theirs.status, StatusCode::OK);
        assert!(!theirs.body.to_string().contains("ACME-1") && !theirs.body.to_string().contains("tools"), "{path}: {:?}", theirs.body);
        let anonymous = app.call(Method::GET, path, None, None, &[("x-tenant", "globex"), ("x-min-position", &last.to_string())]).await;
        assert!(!anonymous.body.to_string().contains("tools"));
    }
    assert_eq!(get(&app, &format!("/api/v1/products/{id}"), Some(&globex), last).await.status, StatusCode::NOT_FOUND);
    assert_eq!(get(&app, "/api/v1/stock/ACME-1", Some(&globex), last).await.status, StatusCode::NOT_FOUND);
    let users = get(&app, "/api/v1/admin/users", Some(&globex), last).await;
    assert_eq!(users.body["items"].as_array().map(Vec::len), Some(1));
    let acme_public = app.call(Method::GET, &format!("/api/v1/products/{id}"), None, None, &[("x-tenant", "acme")]).await;
    assert_eq!(acme_public.status, StatusCode::OK);
});

both_modes!(search_reads_your_writes_with_typos_and_facets, |app: TestApp| async move {
    let admin = app.admin_token().await;
    product(&app, &admin, "LAMP-1", "home/lighting", 2_500, true, false).await;
    product(&app, &admin, "LAMP-2", "home/lighting", 60_000, true, true).await;
    let (_, last) = product(&app, &admin, "SOFA-1", "home/furniture", 120_000, false, false).await;

    // "Item LAMP-1": a typo in "item" still finds both lamps; the unpublished sofa is hidden.
    let found = get(&app, "/api/v1/products/search?q=itme%20lamp", None, last).await;
    assert_eq!(found.status, StatusCode::OK, "{:?}", found.body);
    assert_eq!(found.body["total"], 2, "{:?}", found.body);
    assert_eq!(found.body["facets"]["categories"], json!([{"category": "home", "count": 2}]));
    let buckets: Vec<i64> =
        found.body["facets"]["price"].as_array().expect("buckets").iter().map(|b| b["count"].as_i64().unwrap_or(-1)).collect();
    assert_eq!(buckets, [0, 1, 0, 0, 1]);
    let featured = get(&app, "/api/v1/products/search?q=lam&featured=true&category=home/lighting", None, last).await;
    assert_eq!(skus(&featured.body), ["LAMP-2"]);
    let admin_view = get(&app, "/api/v1/products/search?q=sofa&published=false", Some(&admin), last).await;
    assert_eq!(skus(&admin_view.body), ["SOFA-1"]);
    let customer_view = get(&app, "/api/v1/products/search?q=sofa", None, last).await;
    assert_eq!(customer_view.body["total"], 0);

    for bad in ["limit=0", "offset=10001", "min_price=-1", "category=Not%20A%20Path!", "colour=red"] {
        let answer = get(&app, &format!("/api/v1/products/search?q=x&{bad}"), None, 0).await;
        assert!(matches!(answer.status.as_u16(), 400 | 422), "{bad}: {:?}", answer.body);
        assert!(answer.body["code"].is_string(), "{bad}: {:?}", answer.body);
    }
});

both_modes!(dead_letters_are_for_admins_of_the_tenant, |app: TestApp| async move {
    let admin = app.admin_token().await;
    let customer = app.customer_token("ada@example.com").await;
    let list = app.call(Method::GET, "/api/v1/admin/dead-letters", Some(&admin), None, &[]).await;
    assert_eq!((list.status, list.body.clone()), (StatusCode::OK, json!([])));
    assert_eq!(app.call(Method::GET, "/api/v1/admin/dead-letters", Some(&customer), None, &[]).await.status, StatusCode::FORBIDDEN);
    let retry = app.post("/api/v1/admin/dead-letters/catalogue:1/retry", Some(&admin), json!({})).await;
    assert_eq!((retry.status, retry.code()), (StatusCode::NOT_FOUND, "not_found"));
});
