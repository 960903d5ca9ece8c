//! The storefront and the admin console: build-free JavaScript modules (Preact with `htm`,
//! vendored from npm with their licences) embedded in the binary, a client of `/api/v1` only.
//!
//! Every asset is served under `/assets/<hash>/`, where the hash covers all of them: a page
//! asks for the files of its own build, which browsers may keep for a year; the page itself is
//! never cached. Pages load only from this origin (their own content security policy).

use std::sync::LazyLock;

use axum::extract::Path;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use sha2::{Digest, Sha256};

/// The pages' policy: scripts, styles, images and requests from this origin only; no inline
/// script or style, no framing, no plugins.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; connect-src 'self'; \
                       font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

macro_rules! assets {
    ($($path:literal => $mime:literal),* $(,)?) => {
        &[$(($path, $mime, include_bytes!(concat!("../assets/web/", $path)) as &[u8]),)*]
    };
}

/// Path under `shop/assets/web/`, content type, content.
const ASSETS: &[(&str, &str, &[u8])] = assets![
    "app.js" => "text/javascript; charset=utf-8",
    "api.js" => "text/javascript; charset=utf-8",
    "ui.js" => "text/javascript; charset=utf-8",
    "store.js" => "text/javascript; charset=utf-8",
    "admin.js" => "text/javascript; charset=utf-8",
    "style.css" => "text/css; charset=utf-8",
    "favicon.svg" => "image/svg+xml",
    "vendor/preact-htm.module.js" => "text/javascript; charset=utf-8",
    "vendor/LICENSE-htm" => "text/plain; charset=utf-8",
    "vendor/LICENSE-preact" => "text/plain; charset=utf-8",
];

const INDEX: &str = include_str!("../assets/web/index.html");

/// The build's hash: the first 16 hex digits of SHA-256 over every asset.
pub static BUILD: LazyLock<String> = LazyLock::new(|| {
    let mut hash = Sha256::new();
    for (path, _, bytes) in ASSETS {
        hash.update(path.as_bytes());
        hash.update((bytes.len() as u64).to_le_bytes());
        hash.update(bytes);
    }
    hex::encode(hash.finalize())[..16].to_owned()
});

static PAGE: LazyLock<String> = LazyLock::new(|| INDEX.replace("__ASSETS__", &format!("/assets/{}", *BUILD)));

/// The paths the pages answer (the page decides what to show).
const PAGES: &[&str] = &[
    "/",
    "/c/{*category}",
    "/p/{id}",
    "/search",
    "/cart",
    "/checkout",
    "/orders",
    "/orders/{id}",
    "/signin",
    "/register",
    "/reset",
    "/account",
    "/admin",
    "/admin/{*section}",
];

pub fn router() -> Router {
    let mut router = Router::new().route("/assets/{build}/{*path}", get(asset));
    for path in PAGES {
        router = router.route(path, get(page));
    }
    router.layer(tower_http::compression::CompressionLayer::new())
}

async fn page() -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8")),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP)),
        ],
        PAGE.as_str(),
    )
        .into_response()
}

async fn asset(Path((build, path)): Path<(String, String)>) -> Response {
    let found = ASSETS.iter().find(|(p, _, _)| *p == path);
    match found {
        Some((_, mime, bytes)) if build == *BUILD => (
            [
                (header::CONTENT_TYPE, HeaderValue::from_static(mime)),
                (header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=31536000, immutable")),
            ],
            *bytes,
        )
            .into_response(),
        // An asset of another build (a page open across an upgrade): reload for the new one.
        _ => http_kit::ApiError::new(http_kit::ErrorCode::NotFound, "no such asset in this build").into_response(),
    }
}
