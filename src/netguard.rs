//! Which addresses recast may reach for URLs that come from outside: a manifest's media (probed
//! by `recast plan`, `run` and the daemon) and the provider's answers (clip links and their
//! redirects). By default they may not reach loopback, private, link-local, shared, unique-local
//! or unspecified addresses (169.254.169.254, 127.0.0.1, [::1], 0.0.0.0, 10/8, ...), checked
//! after DNS resolution and on every redirect, so a name or a redirect cannot lead there either.
//! Endpoints the operator writes in the settings (the provider's base URL) are not covered.
//!
//! `allow_private_networks: true`, `--allow-private-networks` or
//! `RECAST_ALLOW_PRIVATE_NETWORKS=1` turn the check off; `--simulate` allows its own loopback
//! server. May not: fetch anything itself.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// The setting that lifts the check, named in every refusal.
pub const SETTING: &str =
    "allow_private_networks (--allow-private-networks, RECAST_ALLOW_PRIVATE_NETWORKS=1)";

/// How many redirects a fetch follows at most.
const MAX_REDIRECTS: usize = 5;

/// Whether `ip` is an address on the public internet.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_documentation()
                || v4.is_multicast()
                || a == 0
                // 100.64.0.0/10, carrier-grade NAT: shared, not public
                || (a == 100 && (64..128).contains(&b))
                // 198.18.0.0/15 (benchmarking) and 240.0.0.0/4 (reserved)
                || (a == 198 && (b == 18 || b == 19))
                || a >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                // fc00::/7 unique local, fe80::/10 link local
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80)
        }
    }
}

/// A URL's host, if it is an IP literal that is not public (decimal and hex forms included:
/// the URL parser reads them as the addresses they are).
fn literal_private_host(url: &url::Url) -> Option<String> {
    let ip = match url.host()? {
        url::Host::Ipv4(v4) => IpAddr::V4(v4),
        url::Host::Ipv6(v6) => IpAddr::V6(v6),
        url::Host::Domain(_) => return None,
    };
    (!is_public(ip)).then(|| ip.to_string())
}

/// Refuse `raw` before anything is sent when its host is a non-public IP literal.
pub fn check_url(raw: &str, allow_private: bool) -> Result<(), String> {
    if allow_private {
        return Ok(());
    }
    let url = url::Url::parse(raw).map_err(|e| format!("not a URL ({e})"))?;
    match literal_private_host(&url) {
        Some(ip) => Err(refusal(&ip)),
        None => Ok(()),
    }
}

fn refusal(what: &str) -> String {
    format!("it leads to {what}, a private or local address; set {SETTING} to allow that")
}

/// Resolves names like the system does, then drops every non-public address.
struct PublicOnly;

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let all: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let public: Vec<SocketAddr> = all.into_iter().filter(|a| is_public(a.ip())).collect();
            if public.is_empty() {
                return Err(refusal(&format!("`{host}`, which resolves only to")).into());
            }
            Ok(Box::new(public.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// A client builder for URLs from outside: at most [`MAX_REDIRECTS`] redirects, and (unless
/// `allow_private`) no connection to a non-public address, by name, literal or redirect.
pub fn client_builder(allow_private: bool) -> reqwest::ClientBuilder {
    let builder = reqwest::Client::builder();
    if allow_private {
        return builder.redirect(reqwest::redirect::Policy::limited(MAX_REDIRECTS));
    }
    builder
        .dns_resolver(Arc::new(PublicOnly))
        .redirect(reqwest::redirect::Policy::custom(|attempt| {
            if attempt.previous().len() >= MAX_REDIRECTS {
                return attempt.error(format!("more than {MAX_REDIRECTS} redirects"));
            }
            match literal_private_host(attempt.url()) {
                Some(ip) => attempt.error(refusal(&ip)),
                None => attempt.follow(),
            }
        }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_and_local_addresses_are_refused_in_every_spelling() {
        for url in [
            "http://169.254.169.254/latest/meta-data/",
            "http://127.0.0.1:8080/x",
            "http://[::1]/x",
            "http://0.0.0.0/x",
            "http://2130706433/x",
            "http://0x7f000001/x",
            "http://10.1.2.3/x",
            "http://[::ffff:127.0.0.1]/x",
            "http://[fd00::1]/x",
            "http://100.64.0.1/x",
        ] {
            let refused = check_url(url, false).unwrap_err();
            assert!(
                refused.contains("allow_private_networks"),
                "{url}: {refused}"
            );
            assert!(check_url(url, true).is_ok());
        }
        for url in [
            "https://cdn.example.com/a.png",
            "http://93.184.216.34/x",
            "http://[2606:4700::1]/",
        ] {
            assert!(check_url(url, false).is_ok(), "{url}");
        }
    }
}
