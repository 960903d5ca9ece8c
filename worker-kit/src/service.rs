//! Calls to a service the operator configured (a payment provider, an SMS provider): one URL
//! policy and one client for all of them.
//!
//! The address is the operator's, so it may be on this host or a private network (unlike a
//! webhook target, which a tenant admin chooses and which must be public). What still holds:
//! - only `http(s)` URLs with a host, and no credentials, query or fragment in them (secrets
//!   go in their own settings, which are never printed);
//! - no redirects (an answer could send the credentials elsewhere) and no proxy from the
//!   environment.

use std::time::Duration;

/// `url` checked for a service `what` (named in the error).
pub fn service_url(what: &str, url: &str) -> Result<reqwest::Url, String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("{what} URL: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
        return Err(format!("{what} URL: an http(s) URL with a host is needed"));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() || parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(format!("{what} URL: no credentials, query or fragment (credentials have their own settings)"));
    }
    Ok(parsed)
}

/// A client for a configured service: rustls, each call bounded by `timeout`, no redirects,
/// no proxy.
pub fn service_client(what: &str, timeout: Duration) -> Result<reqwest::Client, String> {
    client_builder(timeout).build().map_err(|e| format!("{what} HTTP client: {e}"))
}

/// What every outbound client starts from (webhooks and push add their checked resolver):
/// rustls, each call bounded by `timeout`, no redirects, no proxy from the environment.
pub fn client_builder(timeout: Duration) -> reqwest::ClientBuilder {
    reqwest::Client::builder().use_rustls_tls().timeout(timeout).redirect(reqwest::redirect::Policy::none()).no_proxy()
}

/// `User-Agent` of every call: which program and process asked, for the service's logs.
pub fn user_agent() -> String {
    format!("shop/{} (pid {})", env!("CARGO_PKG_VERSION"), std::process::id())
}

/// A transport error without the URL (it names the service's address, not what went wrong).
pub fn without_url(e: reqwest::Error) -> String {
    e.without_url().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_http_urls_with_a_host() {
        assert!(service_url("x", "https://sms.example/2010-04-01/Accounts/AC1/Messages.json").is_ok());
        assert!(service_url("x", "http://127.0.0.1:8080").is_ok());
        for bad in
            ["ftp://a.example", "https://user:pw@a.example", "https://a.example/?k=1", "https://a.example/#f", "not a url", "file:///etc"]
        {
            assert!(service_url("x", bad).is_err(), "{bad}");
        }
    }
}
