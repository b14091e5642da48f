//! Signed requests to other servers.

use std::time::Duration;

use guildhall_spec::request_auth::{self, HttpRequest};
use guildhall_spec::{ServerName, ServerSigningKey, base64url};

use crate::discovery::{DiscoveryError, Resolver};

/// A peer's answer: status and raw body (callers parse and verify what they need).
#[derive(Debug, Clone)]
pub struct Response {
    /// The HTTP status.
    pub status: u16,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// Why a request could not be made or answered.
#[derive(Debug, thiserror::Error)]
pub enum FederationError {
    /// The name did not resolve.
    #[error(transparent)]
    Discovery(#[from] DiscoveryError),
    /// Connecting, sending or reading failed.
    #[error("request to {server} failed: {message}")]
    Network {
        /// The peer.
        server: ServerName,
        /// What happened.
        message: String,
    },
    /// Our trust policy does not allow talking to this server.
    #[error("federation with {0} is not allowed by this server's policy")]
    Denied(ServerName),
    /// The request could not be signed (an invariant broke).
    #[error("could not sign request: {0}")]
    Signing(String),
}

/// Sends `guildhall-fed-v1`-signed requests as this server.
#[derive(Debug, Clone)]
pub struct FederationClient {
    http: reqwest::Client,
    resolver: Resolver,
    key: ServerSigningKey,
    policy: std::sync::Arc<crate::policy::TrustPolicy>,
}

/// The longest a request may take, answer included, unless a caller says otherwise.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The largest response body accepted from a peer.
const MAX_RESPONSE_BYTES: usize = 32 << 20;

impl FederationClient {
    /// A client signing with `key`, talking only to servers `policy` permits.
    pub fn new(
        resolver: Resolver,
        key: ServerSigningKey,
        policy: std::sync::Arc<crate::policy::TrustPolicy>,
    ) -> Self {
        let http = resolver
            .http_builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        Self { http, resolver, key, policy }
    }

    /// This server's name.
    pub fn server_name(&self) -> &ServerName {
        self.key.server_name()
    }

    /// The resolver (shared with the key fetcher).
    pub fn resolver(&self) -> &Resolver {
        &self.resolver
    }

    /// Sends a signed request. `path` is already percent-encoded; `body` is JSON bytes.
    pub async fn request(
        &self,
        method: &str,
        server: &ServerName,
        path: &str,
        query: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> Result<Response, FederationError> {
        self.request_capped(method, server, path, query, body, MAX_RESPONSE_BYTES).await
    }

    /// [`FederationClient::request`] reading at most `cap` bytes of the answer (for answers
    /// known to be small, such as an attestation).
    pub async fn request_capped(
        &self,
        method: &str,
        server: &ServerName,
        path: &str,
        query: Option<&str>,
        body: Option<Vec<u8>>,
        cap: usize,
    ) -> Result<Response, FederationError> {
        self.request_capped_within(method, server, path, query, body, cap, REQUEST_TIMEOUT).await
    }

    /// [`FederationClient::request_capped`] with its own time limit, for answers that may be
    /// large (media).
    #[allow(clippy::too_many_arguments)]
    pub async fn request_capped_within(
        &self,
        method: &str,
        server: &ServerName,
        path: &str,
        query: Option<&str>,
        body: Option<Vec<u8>>,
        cap: usize,
        timeout: Duration,
    ) -> Result<Response, FederationError> {
        if !self.policy.permits(server) {
            return Err(FederationError::Denied(server.clone()));
        }
        let destination = self.resolver.resolve(server).await?;
        let body = body.unwrap_or_default();
        let nonce = base64url::encode(rand::random::<[u8; 18]>());
        let unsigned = HttpRequest {
            method,
            authority: &destination.authority,
            path,
            query,
            headers: &[],
            body: &body,
        };
        let signed = request_auth::sign_request(&unsigned, &self.key, crate::now_secs(), &nonce)
            .map_err(|e| FederationError::Signing(e.to_string()))?;
        let url = match query {
            Some(query) => format!("{}{path}?{query}", destination.base_url),
            None => format!("{}{path}", destination.base_url),
        };
        let method = reqwest::Method::from_bytes(method.as_bytes())
            .map_err(|e| FederationError::Signing(e.to_string()))?;
        let mut request = self
            .http
            .request(method, url)
            .timeout(timeout)
            .header("host", &destination.authority)
            .header("signature-input", signed.signature_input)
            .header("signature", signed.signature);
        if let Some(digest) = signed.content_digest {
            request = request
                .header("content-digest", digest)
                .header("content-type", "application/json")
                .body(body);
        }
        let network = |error: reqwest::Error| FederationError::Network {
            server: server.clone(),
            message: error.to_string(),
        };
        let response = request.send().await.map_err(network)?;
        let status = response.status().as_u16();
        let body = crate::read_capped(response, cap).await.map_err(|e| {
            FederationError::Network { server: server.clone(), message: e.to_string() }
        })?;
        Ok(Response { status, body })
    }

    /// Sends a signed JSON request and parses a successful JSON answer.
    pub async fn request_json<T: serde::de::DeserializeOwned>(
        &self,
        method: &str,
        server: &ServerName,
        path: &str,
        query: Option<&str>,
        body: Option<&serde_json::Value>,
    ) -> Result<Result<T, (u16, Vec<u8>)>, FederationError> {
        let body = body.map(|body| body.to_string().into_bytes());
        let response = self.request(method, server, path, query, body).await?;
        if !response.is_success() {
            return Ok(Err((response.status, response.body)));
        }
        match serde_json::from_slice(&response.body) {
            Ok(value) => Ok(Ok(value)),
            Err(error) => Err(FederationError::Network {
                server: server.clone(),
                message: format!("bad JSON answer: {error}"),
            }),
        }
    }
}
