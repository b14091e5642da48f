//! Authenticating incoming federation requests (spec chapter 05).
//!
//! Order: the stateless profile checks (`guildhall_spec::request_auth::check_request`), then the
//! trust policy (403 `server_denied`), then the origin's current key (fetched if unknown), the
//! signature, and last the nonce: a nonce is remembered only once its signature verified, so
//! a forger cannot burn someone else's nonces.

use std::sync::Arc;
use std::time::Duration;

use guildhall_spec::ServerName;
use guildhall_spec::request_auth::{self, HttpRequest, RequestAuthError};

use crate::keys::KeyFetcher;
use crate::policy::TrustPolicy;

/// Authenticates incoming requests for the names this server answers to.
#[derive(Debug, Clone)]
pub struct InboundAuth {
    authorities: Arc<Vec<String>>,
    keys: KeyFetcher,
    policy: Arc<TrustPolicy>,
    nonces: moka::future::Cache<String, ()>,
}

impl InboundAuth {
    /// `authorities` are this server's name and any public addresses it is reached at.
    pub fn new(authorities: Vec<String>, keys: KeyFetcher, policy: Arc<TrustPolicy>) -> Self {
        // A signature lives at most 300 s plus 60 s of skew; remember nonces a little longer.
        let nonces = moka::future::Cache::builder()
            .max_capacity(1_000_000)
            .time_to_live(Duration::from_secs(420))
            .build();
        Self { authorities: Arc::new(authorities), keys, policy, nonces }
    }

    /// The trust policy.
    pub fn policy(&self) -> &Arc<TrustPolicy> {
        &self.policy
    }

    /// Checks a request; on success returns the origin server.
    pub async fn authenticate(
        &self,
        request: &HttpRequest<'_>,
    ) -> Result<ServerName, RequestAuthError> {
        let authorities: Vec<&str> = self.authorities.iter().map(String::as_str).collect();
        let checked = request_auth::check_request(request, crate::now_secs(), &authorities)?;
        let origin = checked.origin().clone();
        let outcome = self.authenticate_checked(&checked, &origin).await;
        match &outcome {
            Ok(()) => self.policy.count_accepted(&origin),
            Err(error) => self.policy.count_refused(&origin, error.code()),
        }
        outcome.map(|()| origin)
    }

    async fn authenticate_checked(
        &self,
        checked: &request_auth::CheckedRequest,
        origin: &ServerName,
    ) -> Result<(), RequestAuthError> {
        let origin = origin.clone();
        if !self.policy.permits(&origin) {
            return Err(RequestAuthError::ServerDenied(origin));
        }
        let key = self.keys.current_key(&origin, checked.key_id()).await.ok_or_else(|| {
            RequestAuthError::UnknownKey {
                origin: origin.clone(),
                key_id: checked.key_id().clone(),
            }
        })?;
        checked.verify(&key)?;
        let nonce_key = format!("{origin}\n{}", checked.nonce());
        let entry = self.nonces.entry(nonce_key).or_insert(()).await;
        if !entry.is_fresh() {
            return Err(RequestAuthError::ReplayedNonce);
        }
        Ok(())
    }
}
