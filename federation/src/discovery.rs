//! Finding where a server name is served (spec chapter 03).
//!
//! In order: an IP literal or a name with an explicit port is used directly; otherwise
//! `GET https://<name>/.well-known/guildhall/server` may delegate to another `host[:port]`
//! (which is then resolved by the other steps, never delegated again); otherwise a DNS SRV
//! record `_guildhall._tcp.<name>`; otherwise `<name>:443`. Results are cached for an hour.

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
}

/// Resolver settings from the operator's configuration.
#[derive(Debug, Clone, Default)]
pub struct ResolverSettings {
    /// Use `http://` instead of `https://` (tests on loopback only).
    pub danger_allow_plain_http: bool,
    /// DNS servers to ask; empty = those in `/etc/resolv.conf`.
    pub dns_servers: Vec<SocketAddr>,
}

/// Resolves server names to destinations.
#[derive(Debug, Clone)]
pub struct Resolver {
    http: reqwest::Client,
    address_resolver: Option<HickoryAddresses>,
    dns: Option<TokioResolver>,
    scheme: &'static str,
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
        let address_resolver =
            (!settings.dns_servers.is_empty()).then(|| dns.clone()).flatten().map(HickoryAddresses);
        let http = http_builder(address_resolver.as_ref())
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        Self {
            http,
            address_resolver,
            dns,
            scheme: if settings.danger_allow_plain_http { "http" } else { "https" },
            cache: moka::future::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(Duration::from_secs(3600))
                .build(),
        }
    }

    /// An HTTP client builder that resolves host names the way this resolver does (through the
    /// configured DNS servers, when there are any). Every federation HTTP client is built here.
    pub fn http_builder(&self) -> reqwest::ClientBuilder {
        http_builder(self.address_resolver.as_ref())
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
            return Ok(self.direct(name));
        }
        if let Some(delegated) = self.well_known(name).await {
            tracing::debug!(%name, %delegated, "delegated by .well-known");
            if delegated.is_ip_literal() || delegated.port().is_some() {
                return Ok(self.direct(&delegated));
            }
            return self.srv_or_default(&delegated).await;
        }
        self.srv_or_default(name).await
    }

    fn direct(&self, name: &ServerName) -> Destination {
        let port = name.port().unwrap_or(443);
        Destination {
            base_url: format!("{}://{}:{port}", self.scheme, name.host()),
            authority: name.to_string(),
        }
    }

    async fn well_known(&self, name: &ServerName) -> Option<ServerName> {
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
                        return Ok(Destination {
                            base_url: format!("{}://{target}:{port}", self.scheme),
                            authority: name.to_string(),
                        });
                    }
                }
                Err(error) => tracing::debug!(%name, %error, "no SRV record"),
            }
        }
        Ok(Destination {
            base_url: format!("{}://{}:443", self.scheme, name.host()),
            authority: name.to_string(),
        })
    }
}

fn http_builder(addresses: Option<&HickoryAddresses>) -> reqwest::ClientBuilder {
    let builder = reqwest::Client::builder();
    match addresses {
        Some(addresses) => builder.dns_resolver(std::sync::Arc::new(addresses.clone())),
        None => builder,
    }
}

/// Resolves host names for HTTP connections through hickory (the configured DNS servers).
#[derive(Clone)]
struct HickoryAddresses(TokioResolver);

impl std::fmt::Debug for HickoryAddresses {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HickoryAddresses")
    }
}

impl reqwest::dns::Resolve for HickoryAddresses {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let resolver = self.0.clone();
        let host = format!("{}.", name.as_str().trim_end_matches('.'));
        Box::pin(async move {
            let lookup = resolver
                .lookup_ip(host.as_str())
                .await
                .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)?;
            let addresses: Vec<SocketAddr> =
                lookup.iter().map(|ip| SocketAddr::new(ip, 0)).collect();
            Ok(Box::new(addresses.into_iter()) as reqwest::dns::Addrs)
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

    #[tokio::test]
    async fn ip_literals_and_explicit_ports_are_used_directly() {
        let resolver = Resolver::new(&ResolverSettings {
            danger_allow_plain_http: true,
            dns_servers: Vec::new(),
        });
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
}
