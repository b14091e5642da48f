//! Finding where a server name is served (spec chapter 03).
//!
//! In order: an IP literal or a name with an explicit port is used directly; otherwise
//! `GET https://<name>/.well-known/guildhall/server` may delegate to another `host[:port]`
//! (which is then resolved by the other steps, never delegated again); otherwise a DNS SRV
//! record `_guildhall._tcp.<name>`; otherwise `<name>:443`. Results are cached for an hour.
//!
//! Server names come from the network (a `keyid`, an invite's `?server=`), so where they lead
//! is guarded: unless `danger_allow_private_addresses` is set, no federation request connects
//! to a loopback, private, link-local, shared, multicast or unspecified address, whether the
//! name is an IP literal, an SRV target or a host name that resolves there. Every federation
//! HTTP client is built by [`Resolver::http_builder`], whose address resolver enforces it.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use guildhall_spec::ServerName;
use hickory_resolver::TokioResolver;
use hickory_resolver::config::{NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::{RData, RecordType};
use serde::Deserialize;

/// Where to send requests for a server name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    /// `scheme://host:port` to connect to.
    pub base_url: String,
    /// The authority requests are addressed to (`Host` and the signature's `@authority`): the
    /// name that was looked up, never an SRV target.
    pub authority: String,
}

/// Why a server name could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    /// DNS failed.
    #[error("DNS lookup for {0} failed: {1}")]
    Dns(String, String),
    /// The SRV record says the service is not offered.
    #[error("{0} does not offer guildhall federation (SRV target \".\")")]
    NotOffered(String),
    /// The name leads to an address federation never connects to.
    #[error("{0} is a loopback, private or otherwise internal address")]
    InternalAddress(String),
}

/// Resolver settings from the operator's configuration.
#[derive(Debug, Clone, Default)]
pub struct ResolverSettings {
    /// Use `http://` instead of `https://` (tests on loopback only).
    pub danger_allow_plain_http: bool,
    /// DNS servers to ask; empty = those in `/etc/resolv.conf`.
    pub dns_servers: Vec<SocketAddr>,
    /// Connect to loopback and private addresses too (tests on loopback only).
    pub danger_allow_private_addresses: bool,
}

/// Resolves server names to destinations.
#[derive(Debug, Clone)]
pub struct Resolver {
    http: reqwest::Client,
    address_resolver: GuardedAddresses,
    dns: Option<TokioResolver>,
    scheme: &'static str,
    allow_private: bool,
    cache: moka::future::Cache<ServerName, Destination>,
}

#[derive(Debug, Deserialize)]
struct WellKnown {
    server: String,
}

impl Resolver {
    /// A resolver with the given settings.
    pub fn new(settings: &ResolverSettings) -> Self {
        let dns = build_dns(&settings.dns_servers);
        // With configured DNS servers, host names are resolved by them too (not the system's).
        let address_resolver = GuardedAddresses {
            dns: (!settings.dns_servers.is_empty()).then(|| dns.clone()).flatten(),
            allow_private: settings.danger_allow_private_addresses,
        };
        let http = address_resolver
            .http_builder()
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        Self {
            http,
            address_resolver,
            dns,
            scheme: if settings.danger_allow_plain_http { "http" } else { "https" },
            allow_private: settings.danger_allow_private_addresses,
            cache: moka::future::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(Duration::from_secs(3600))
                .build(),
        }
    }

    /// An HTTP client builder that resolves host names the way this resolver does (through the
    /// configured DNS servers, when there are any) and never to an internal address unless
    /// allowed. Every federation HTTP client is built here.
    pub fn http_builder(&self) -> reqwest::ClientBuilder {
        self.address_resolver.http_builder()
    }

    /// Whether plain HTTP is allowed (tests on loopback only).
    pub fn allows_plain_http(&self) -> bool {
        self.scheme == "http"
    }

    /// Fetches an address an operator configured (a subscribed trust list): `https` only
    /// (unless plain HTTP is allowed), never an internal address unless allowed, no redirects,
    /// at most `cap` bytes within 30 seconds. Returns the status and the body.
    pub async fn get_url(&self, url: &str, cap: usize) -> Result<(u16, Vec<u8>), String> {
        let parsed = url::Url::parse(url).map_err(|e| format!("bad URL: {e}"))?;
        if parsed.scheme() != "https" && !(parsed.scheme() == "http" && self.scheme == "http") {
            return Err(format!("{} URLs are not fetched", parsed.scheme()));
        }
        let host = parsed.host_str().ok_or("the URL has no host")?;
        self.check_literal(host).map_err(|e| e.to_string())?;
        let response = self
            .http
            .get(parsed)
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        let body = crate::read_capped(response, cap).await.map_err(|e| e.to_string())?;
        Ok((status, body))
    }

    /// The destination for `name`.
    pub async fn resolve(&self, name: &ServerName) -> Result<Destination, DiscoveryError> {
        if let Some(cached) = self.cache.get(name).await {
            return Ok(cached);
        }
        let destination = self.resolve_uncached(name).await?;
        self.cache.insert(name.clone(), destination.clone()).await;
        Ok(destination)
    }

    /// Forgets a cached destination (e.g. after the peer moved).
    pub async fn forget(&self, name: &ServerName) {
        self.cache.invalidate(name).await;
    }

    async fn resolve_uncached(&self, name: &ServerName) -> Result<Destination, DiscoveryError> {
        if name.is_ip_literal() || name.port().is_some() {
            return self.direct(name, name);
        }
        if let Some(delegated) = self.well_known(name).await {
            tracing::debug!(%name, %delegated, "delegated by .well-known");
            if delegated.is_ip_literal() || delegated.port().is_some() {
                return self.direct(&delegated, &delegated);
            }
            return self.srv_or_default(&delegated).await;
        }
        self.srv_or_default(name).await
    }

    /// Requests for `authority` go to `target`'s host and port (443 if none). An IP literal is
    /// checked here, as the HTTP client resolves only names.
    fn direct(
        &self,
        target: &ServerName,
        authority: &ServerName,
    ) -> Result<Destination, DiscoveryError> {
        self.check_literal(target.host())?;
        let port = target.port().unwrap_or(443);
        Ok(Destination {
            base_url: format!("{}://{}:{port}", self.scheme, target.host()),
            authority: authority.to_string(),
        })
    }

    fn check_literal(&self, host: &str) -> Result<(), DiscoveryError> {
        match literal_address(host) {
            Some(ip) if !self.allow_private && is_internal(ip) => {
                Err(DiscoveryError::InternalAddress(host.to_owned()))
            }
            _ => Ok(()),
        }
    }

    async fn well_known(&self, name: &ServerName) -> Option<ServerName> {
        self.check_literal(name.host()).ok()?;
        let url = format!("{}://{}/.well-known/guildhall/server", self.scheme, name.host());
        let response = self.http.get(url).send().await.ok()?;
        if !response.status().is_success() {
            return None;
        }
        let bytes = crate::read_capped(response, 4096).await.ok()?;
        let document: WellKnown = serde_json::from_slice(&bytes).ok()?;
        ServerName::parse(&document.server).ok()
    }

    async fn srv_or_default(&self, name: &ServerName) -> Result<Destination, DiscoveryError> {
        if let Some(dns) = &self.dns {
            let query = format!("_guildhall._tcp.{}.", name.host());
            match dns.lookup(query.as_str(), RecordType::SRV).await {
                Ok(lookup) => {
                    let mut records: Vec<_> = lookup
                        .answers()
                        .iter()
                        .filter_map(|record| match &record.data {
                            RData::SRV(srv) => Some((
                                srv.priority,
                                std::cmp::Reverse(srv.weight),
                                srv.target.to_ascii(),
                                srv.port,
                            )),
                            _ => None,
                        })
                        .collect();
                    records.sort();
                    if let Some((_, _, target, port)) = records.into_iter().next() {
                        let target = target.trim_end_matches('.').to_owned();
                        if target.is_empty() {
                            return Err(DiscoveryError::NotOffered(name.to_string()));
                        }
                        self.check_literal(&target)?;
                        return Ok(Destination {
                            base_url: format!("{}://{target}:{port}", self.scheme),
                            authority: name.to_string(),
                        });
                    }
                }
                Err(error) => tracing::debug!(%name, %error, "no SRV record"),
            }
        }
        self.check_literal(name.host())?;
        Ok(Destination {
            base_url: format!("{}://{}:443", self.scheme, name.host()),
            authority: name.to_string(),
        })
    }
}

/// The address a host connects to without any name lookup, as the HTTP client reads it: not
/// only `127.0.0.1` and `[::1]` but every form URL parsing turns into an address (`127.1`,
/// `2130706433`, `0x7f.1`, `0177.0.0.1`), which a name grammar may let through.
fn literal_address(host: &str) -> Option<IpAddr> {
    let url = reqwest::Url::parse(&format!("http://{host}/")).ok()?;
    match url.host()? {
        url::Host::Ipv4(v4) => Some(IpAddr::V4(v4)),
        url::Host::Ipv6(v6) => Some(IpAddr::V6(v6)),
        url::Host::Domain(_) => None,
    }
}

/// Whether federation must never connect to `ip` on a peer's say-so: loopback, unspecified,
/// private (RFC 1918, unique local), link-local, shared (RFC 6598), multicast, broadcast and
/// documentation ranges, and IPv4 addresses inside IPv6 mapped or compatible forms.
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_loopback()
                || v4.is_unspecified()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_multicast()
                || v4.is_broadcast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
                || (a == 192 && b == 0 && v4.octets()[2] == 0)
                || a >= 240
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4() {
                return is_internal(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || (first & 0xffc0) == 0xfec0
                || first == 0x2001 && v6.segments()[1] == 0x0db8
                || first == 0x0064 && v6.segments()[1] == 0xff9b
        }
    }
}

/// Resolves host names for federation HTTP connections (through hickory when DNS servers are
/// configured, else the system's resolver) and drops internal addresses unless allowed.
#[derive(Clone)]
struct GuardedAddresses {
    dns: Option<TokioResolver>,
    allow_private: bool,
}

impl GuardedAddresses {
    fn http_builder(&self) -> reqwest::ClientBuilder {
        reqwest::Client::builder().dns_resolver(std::sync::Arc::new(self.clone()))
    }
}

impl std::fmt::Debug for GuardedAddresses {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuardedAddresses").field("allow_private", &self.allow_private).finish()
    }
}

impl reqwest::dns::Resolve for GuardedAddresses {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let (resolver, allow_private) = (self.dns.clone(), self.allow_private);
        let host = name.as_str().trim_end_matches('.').to_owned();
        Box::pin(async move {
            let failed = |e: String| Box::<dyn std::error::Error + Send + Sync>::from(e);
            let found: Vec<IpAddr> = match resolver {
                Some(resolver) => resolver
                    .lookup_ip(format!("{host}.").as_str())
                    .await
                    .map_err(|e| failed(e.to_string()))?
                    .iter()
                    .collect(),
                None => tokio::net::lookup_host((host.as_str(), 0))
                    .await
                    .map_err(|e| failed(e.to_string()))?
                    .map(|address| address.ip())
                    .collect(),
            };
            let allowed: Vec<SocketAddr> = found
                .into_iter()
                .filter(|ip| allow_private || !is_internal(*ip))
                .map(|ip| SocketAddr::new(ip, 0))
                .collect();
            if allowed.is_empty() {
                return Err(failed(format!("{host} resolves only to internal addresses")));
            }
            Ok(Box::new(allowed.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

fn build_dns(servers: &[SocketAddr]) -> Option<TokioResolver> {
    let servers: Vec<SocketAddr> =
        if servers.is_empty() { system_name_servers() } else { servers.to_vec() };
    if servers.is_empty() {
        return None;
    }
    let configs = servers
        .iter()
        .map(|address| {
            let mut config = NameServerConfig::udp_and_tcp(address.ip());
            for connection in &mut config.connections {
                connection.port = address.port();
            }
            config
        })
        .collect();
    let mut builder = TokioResolver::builder_with_config(
        ResolverConfig::from_name_servers(configs),
        TokioRuntimeProvider::default(),
    );
    builder.options_mut().timeout = Duration::from_secs(3);
    builder.options_mut().attempts = 2;
    builder.build().ok()
}

/// The `nameserver` lines of `/etc/resolv.conf`.
fn system_name_servers() -> Vec<SocketAddr> {
    let text = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    text.lines()
        .filter_map(|line| line.trim().strip_prefix("nameserver"))
        .filter_map(|address| address.trim().parse::<IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, 53))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolver(allow_private: bool) -> Resolver {
        Resolver::new(&ResolverSettings {
            danger_allow_plain_http: true,
            dns_servers: Vec::new(),
            danger_allow_private_addresses: allow_private,
        })
    }

    #[tokio::test]
    async fn ip_literals_and_explicit_ports_are_used_directly() {
        let resolver = resolver(true);
        let name = ServerName::parse("127.0.0.1:8448").unwrap();
        let destination = resolver.resolve(&name).await.unwrap();
        assert_eq!(
            destination,
            Destination {
                base_url: "http://127.0.0.1:8448".into(),
                authority: "127.0.0.1:8448".into()
            }
        );
        let name = ServerName::parse("[::1]").unwrap();
        assert_eq!(resolver.resolve(&name).await.unwrap().base_url, "http://[::1]:443");
    }

    #[tokio::test]
    async fn internal_addresses_are_refused_unless_allowed() {
        let resolver = resolver(false);
        let names = [
            "127.0.0.1:8448",
            "10.1.2.3",
            "[::1]:80",
            "192.168.0.1:22",
            "[::ffff:127.0.0.1]",
            // IPv4 in the other spellings URL parsing accepts.
            "127.1:8448",
            "2130706433",
            "0x7f.1",
            "0177.0.0.1:80",
        ];
        for name in names {
            // A spelling the name grammar refuses can never be named; every other is refused.
            let Ok(name) = ServerName::parse(name) else { continue };
            let refused = resolver.resolve(&name).await;
            assert!(
                matches!(refused, Err(DiscoveryError::InternalAddress(_))),
                "{name}: {refused:?}"
            );
        }
        assert!(resolver.resolve(&ServerName::parse("93.184.215.14:8448").unwrap()).await.is_ok());
    }

    #[tokio::test]
    async fn host_names_that_resolve_to_internal_addresses_are_not_connected_to() {
        use reqwest::dns::Resolve;
        let guarded = GuardedAddresses { dns: None, allow_private: false };
        let name = || "localhost".parse::<reqwest::dns::Name>().unwrap();
        assert!(guarded.resolve(name()).await.is_err(), "localhost must not resolve");
        let allowed = GuardedAddresses { dns: None, allow_private: true };
        assert!(allowed.resolve(name()).await.is_ok());
    }

    #[test]
    fn internal_ranges() {
        let internal = [
            "127.0.0.1",
            "0.0.0.0",
            "10.0.0.1",
            "172.16.5.4",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fc00::1",
            "fe80::1",
            "::ffff:10.0.0.1",
            "64:ff9b::7f00:1",
        ];
        for ip in internal {
            assert!(is_internal(ip.parse().unwrap()), "{ip} is internal");
        }
        for ip in ["93.184.215.14", "1.1.1.1", "2606:4700::1111", "172.32.0.1", "100.128.0.1"] {
            assert!(!is_internal(ip.parse().unwrap()), "{ip} is public");
        }
    }
}
