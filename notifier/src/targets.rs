//! Where webhooks may go: public addresses over https only. A URL is checked when it is
//! registered and again at every delivery, after DNS resolution, and the request connects to
//! the address that was checked (the client's resolver only ever hands out checked
//! addresses), so a name that resolves to a public address at registration and to
//! 169.254.169.254 later (DNS rebinding) gets nothing. Redirects are not followed and no proxy
//! from the environment is used.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::Url;

/// What the deployment allows besides public https addresses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TargetPolicy {
    /// Loopback, private, link-local and other internal addresses (`SHOP_WEBHOOK_ALLOW_PRIVATE`;
    /// development and the test suite's local receivers only).
    pub allow_private: bool,
    /// Plain `http://` (`SHOP_WEBHOOK_ALLOW_HTTP`).
    pub allow_http: bool,
}

/// Why a target is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("the url is not a valid absolute URL")]
    Malformed,
    #[error("the url must use https")]
    NotHttps,
    #[error("the url must not carry a user name or password")]
    Credentials,
    #[error("the url names an internal address (loopback, private, link-local, metadata or similar)")]
    Internal,
    #[error("the url's host does not resolve")]
    Unresolvable,
}

/// Whether `ip` is an address no webhook may reach: loopback, private, link-local (and so the
/// cloud metadata service), shared (CGNAT), multicast, unspecified, broadcast, reserved or
/// documentation space, also when written as IPv4 inside IPv6.
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => internal_v4(v4),
        IpAddr::V6(v6) => internal_v6(v6),
    }
}

fn internal_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_multicast()
        || ip.is_broadcast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || a >= 240 // reserved
}

fn internal_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return internal_v4(v4);
    }
    let s = ip.segments();
    // NAT64 (64:ff9b::/96) and 6to4 (2002::/16) carry an IPv4 address; IPv4-compatible (::/96)
    // too.
    let embedded = |hi: u16, lo: u16| Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8);
    if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] && internal_v4(embedded(s[6], s[7])) {
        return true;
    }
    if s[0] == 0x2002 && internal_v4(embedded(s[1], s[2])) {
        return true;
    }
    if s[0..6] == [0, 0, 0, 0, 0, 0] {
        return true; // ::, ::1 and the deprecated IPv4-compatible addresses
    }
    ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (s[0] & 0xfe00) == 0xfc00 // unique local, including fd00:ec2::254
        || (s[0] & 0xffc0) == 0xfe80 // link-local
        || (s[0] & 0xffc0) == 0xfec0 // site-local (deprecated)
        || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
}

/// Checks the form of a target URL (scheme, credentials, a literal internal address or a
/// `localhost` name) without resolving it.
pub fn check_url(url: &str, policy: TargetPolicy) -> Result<Url, Refused> {
    let parsed = Url::parse(url).map_err(|_| Refused::Malformed)?;
    match parsed.scheme() {
        "https" => {}
        "http" if policy.allow_http => {}
        _ => return Err(Refused::NotHttps),
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(Refused::Credentials);
    }
    // The URL parser has already read every spelling of an IPv4 address (decimal, octal, hex,
    // short forms) into the address itself.
    match parsed.host() {
        None => return Err(Refused::Malformed),
        Some(url::Host::Ipv4(ip)) if !policy.allow_private && internal_v4(ip) => return Err(Refused::Internal),
        Some(url::Host::Ipv6(ip)) if !policy.allow_private && internal_v6(ip) => return Err(Refused::Internal),
        Some(url::Host::Domain(name)) if !policy.allow_private && is_local_name(name) => return Err(Refused::Internal),
        Some(_) => {}
    }
    Ok(parsed)
}

fn is_local_name(name: &str) -> bool {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    name == "localhost" || name.ends_with(".localhost") || name.ends_with(".internal") || name.ends_with(".local")
}

/// Checks a URL and, for a name, that it resolves to public addresses only.
pub async fn check_target(url: &str, policy: TargetPolicy) -> Result<Url, Refused> {
    let parsed = check_url(url, policy)?;
    if let Some(url::Host::Domain(name)) = parsed.host() {
        let port = parsed.port_or_known_default().unwrap_or(443);
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((name, port)).await.map_err(|_| Refused::Unresolvable)?.collect();
        if addrs.is_empty() {
            return Err(Refused::Unresolvable);
        }
        if !policy.allow_private && addrs.iter().any(|a| is_internal(a.ip())) {
            return Err(Refused::Internal);
        }
    }
    Ok(parsed)
}

/// The dispatcher's resolver: hands out only addresses the policy allows, so the connection
/// goes to an address that was checked.
#[derive(Debug, Clone, Copy)]
pub struct CheckedResolver(pub TargetPolicy);

/// The error a refused name gives, found again in the request's error chain.
#[derive(Debug, thiserror::Error)]
#[error("{name} resolves to an internal address")]
pub struct InternalAddress {
    name: String,
}

impl Resolve for CheckedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.0;
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if !policy.allow_private && (is_local_name(&host) || addrs.iter().any(|a| is_internal(a.ip()))) {
                return Err(Box::new(InternalAddress { name: host }) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

impl CheckedResolver {
    pub fn arc(policy: TargetPolicy) -> Arc<Self> {
        Arc::new(Self(policy))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STRICT: TargetPolicy = TargetPolicy { allow_private: false, allow_http: false };

    #[test]
    fn internal_addresses_in_every_spelling_are_refused() {
        for url in [
            "https://127.0.0.1/",
            "https://2130706433/",
            "https://0x7f000001/",
            "https://0177.0.0.1/",
            "https://127.1/",
            "https://localhost:8443/hook",
            "https://LOCALHOST./",
            "https://api.localhost/",
            "https://[::1]/",
            "https://[::ffff:127.0.0.1]/",
            "https://[::ffff:a9fe:a9fe]/",
            "https://169.254.169.254/latest/meta-data/",
            "https://[fd00:ec2::254]/",
            "https://10.1.2.3/",
            "https://172.16.0.1/",
            "https://192.168.1.1/",
            "https://100.64.0.1/",
            "https://224.0.0.1/",
            "https://0.0.0.0/",
            "https://[::]/",
            "https://[fe80::1]/",
            "https://[64:ff9b::7f00:1]/",
            "https://[2002:7f00:1::]/",
            "https://metadata.google.internal/",
        ] {
            assert_eq!(check_url(url, STRICT).err(), Some(Refused::Internal), "{url}");
        }
    }

    #[test]
    fn plain_http_credentials_and_garbage_are_refused() {
        assert_eq!(check_url("http://example.com/", STRICT).err(), Some(Refused::NotHttps));
        assert_eq!(check_url("ftp://example.com/", STRICT).err(), Some(Refused::NotHttps));
        assert_eq!(check_url("https://user:pw@example.com/", STRICT).err(), Some(Refused::Credentials));
        assert_eq!(check_url("not a url", STRICT).err(), Some(Refused::Malformed));
        assert!(check_url("https://example.com/hook", STRICT).is_ok());
        assert!(check_url("https://93.184.215.14/hook", STRICT).is_ok());
        let dev = TargetPolicy { allow_private: true, allow_http: true };
        assert!(check_url("http://127.0.0.1:9000/hook", dev).is_ok());
    }

    #[tokio::test]
    async fn the_resolver_hands_out_no_internal_address() {
        let strict = CheckedResolver(STRICT);
        let name: Name = "localhost".parse().expect("name");
        assert!(strict.resolve(name).await.is_err());
        let lenient = CheckedResolver(TargetPolicy { allow_private: true, allow_http: true });
        let name: Name = "localhost".parse().expect("name");
        assert!(lenient.resolve(name).await.is_ok());
    }
}
