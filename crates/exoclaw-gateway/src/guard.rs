//! Which web pages and which addresses the gateway answers, checked before every route (by
//! [`crate::front`]), so no handler can forget it.
//!
//! - **`Origin`**, on every route, whether or not tokens are required: browsers send it with what
//!   a page asks for (other clients send none). A page may call the gateway only when its origin
//!   is in `[gateway] allowed_origins` (or that list holds `*`), or when both the page and the
//!   address it used for the gateway are on this machine. Anything else is a 403
//!   (`forbidden_origin`) that says how to allow it.
//! - **`Host`**, on every route of a gateway that needs no token (`requires_auth` is false): it
//!   must name this machine (`localhost`, 127.0.0.0/8, `[::1]`) or the host of an allowed origin,
//!   else 403 (`forbidden_host`). This is what stops DNS rebinding: a page on `evil.example` that
//!   points its name at 127.0.0.1 talks to the gateway as `Host: evil.example`, and could
//!   otherwise spend the operator's provider keys and read the answers. With tokens, a page
//!   cannot send one (browsers attach no bearer token by themselves), so the name does not matter.
//!
//! Cheap by design: one header lookup for `Origin`, and on an open gateway one parse of `Host`.

use crate::{Gateway, GatewayError};
use axum::http::{HeaderMap, HeaderValue, Uri, header};
use std::net::IpAddr;

/// The configured `allowed_origins`, normalised once, and the host names they imply.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Origins {
    /// Lowercased, without a trailing `/`.
    origins: Vec<String>,
    /// `*` is configured: any origin, and on an open gateway any host.
    any: bool,
    /// The host part of each origin, lowercased, without port or brackets.
    hosts: Vec<String>,
}

impl Origins {
    pub(crate) fn new(configured: Vec<String>) -> Self {
        let origins: Vec<String> =
            configured.iter().map(|o| o.trim().trim_end_matches('/').to_ascii_lowercase()).collect();
        let any = origins.iter().any(|o| o == "*");
        let hosts = origins
            .iter()
            .filter_map(|o| o.split_once("://").map(|(_, authority)| host_name(authority).to_owned()))
            .filter(|h| !h.is_empty())
            .collect();
        Self { origins, any, hosts }
    }

    /// Whether a page from `origin` may call a gateway it reached as `host`: when the origin is
    /// configured (exactly, or `*`), or when both the page and `host` are on this machine, so a
    /// page on another site never drives a local gateway.
    pub(crate) fn allows_origin(&self, origin: &str, host: Option<&str>) -> bool {
        let origin = origin.trim().trim_end_matches('/');
        if self.any || self.origins.iter().any(|a| a.eq_ignore_ascii_case(origin)) {
            return true;
        }
        let page = origin.split_once("://").map(|(_, authority)| authority);
        page.is_some_and(is_loopback_host) && host.is_some_and(is_loopback_host)
    }

    /// Whether an open gateway answers a request addressed to `host` (`name[:port]`).
    pub(crate) fn allows_host(&self, host: &str) -> bool {
        if self.any || is_loopback_host(host) {
            return true;
        }
        let name = host_name(host);
        self.hosts.iter().any(|h| h.eq_ignore_ascii_case(name))
    }
}

/// The host name of an authority (`name[:port]`, `[v6]:port`), without brackets or port.
fn host_name(authority: &str) -> &str {
    match authority.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or_default(),
        None => authority.rsplit_once(':').map_or(authority, |(host, _)| host),
    }
}

/// Whether `authority` (`host[:port]`, `[v6]:port`) names this machine: `localhost`, an address
/// in 127.0.0.0/8, or `::1`.
pub(crate) fn is_loopback_host(authority: &str) -> bool {
    let host = host_name(authority);
    // The names nearly every local client uses, before parsing an address.
    host == "127.0.0.1"
        || host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The request's `Origin` and `Host` checked against the gateway's settings.
pub(crate) fn check(gateway: &Gateway, headers: &HeaderMap, uri: &Uri) -> Result<(), GatewayError> {
    let origin = headers.get(header::ORIGIN);
    let open = !gateway.requires_auth();
    if origin.is_none() && !open {
        return Ok(());
    }
    // A request in absolute form (`GET http://host/…`) names its host in the URI as well.
    let host = headers.get(header::HOST).map(text).or_else(|| uri.authority().map(|a| a.as_str()));
    if let Some(origin) = origin {
        let origin = text(origin);
        if !gateway.origins.allows_origin(origin, host) {
            return Err(GatewayError::ForbiddenOrigin { origin: origin.to_owned() });
        }
    }
    if open
        && let Some(host) = host
        && !gateway.origins.allows_host(host)
    {
        return Err(GatewayError::ForbiddenHost { host: host.to_owned() });
    }
    Ok(())
}

/// A header's text; one that is not visible ASCII is refused as the empty string, which no rule
/// allows.
fn text(value: &HeaderValue) -> &str {
    value.to_str().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_allowed_when_listed_or_both_ends_are_local() {
        let listed = Origins::new(vec!["https://App.Example.com/".to_owned()]);
        assert!(listed.allows_origin("https://app.example.com", Some("gw.example.com")));
        assert!(listed.allows_origin("HTTPS://APP.EXAMPLE.COM/", Some("gw.example.com")));
        assert!(!listed.allows_origin("https://evil.example.com", Some("gw.example.com")));
        let none = Origins::default();
        // A local page talking to a gateway it reached on this machine.
        assert!(none.allows_origin("http://localhost:3000", Some("127.0.0.1:8080")));
        assert!(none.allows_origin("http://[::1]:3000", Some("localhost:8080")));
        assert!(none.allows_origin("http://127.0.0.5", Some("[::1]:7878")));
        // Another site may never drive a local gateway, nor a local page a remote one.
        assert!(!none.allows_origin("https://evil.example.com", Some("127.0.0.1:8080")));
        assert!(!none.allows_origin("http://evil.example:7878", Some("evil.example:7878")));
        assert!(!none.allows_origin("http://localhost:3000", Some("gw.example.com")));
        assert!(!none.allows_origin("http://localhost.evil.example", Some("127.0.0.1")));
        assert!(!none.allows_origin("null", Some("127.0.0.1:8080")));
        assert!(Origins::new(vec!["*".to_owned()]).allows_origin("https://anything.example", None));
    }

    #[test]
    fn an_open_gateway_answers_only_this_machines_names_and_the_allowed_origins_hosts() {
        let none = Origins::default();
        for host in ["localhost", "LOCALHOST:7878", "127.0.0.1:7878", "127.1.2.3", "[::1]:7878", "[::1]"] {
            assert!(none.allows_host(host), "{host}");
        }
        for host in
            ["evil.example:7878", "evil.example", "localhost.evil.example", "0.0.0.0:7878", "[::]:1", ""]
        {
            assert!(!none.allows_host(host), "{host}");
        }
        let listed = Origins::new(vec!["http://devbox.lan:3000".to_owned()]);
        assert!(listed.allows_host("devbox.lan:7878") && listed.allows_host("DEVBOX.LAN"));
        assert!(!listed.allows_host("evil.example"));
        assert!(Origins::new(vec!["*".to_owned()]).allows_host("evil.example"));
    }
}
