//! identity: the PostgreSQL implementation of [`IdentityStore`].

use super::PostgresStore;
use crate::store::identity::*;
use guildhall_spec::UserId;

#[async_trait::async_trait]
impl IdentityStore for PostgresStore {
    async fn put_attestation(
        &self,
        user_id: &UserId,
        identity_key: Option<&str>,
        issued_ts: u64,
        attestation: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<bool, sqlx::Error> {
        todo!()
    }

    async fn remember_attested_key(
        &self,
        user_id: &UserId,
        identity_key: &str,
    ) -> Result<(), sqlx::Error> {
        todo!()
    }

    async fn was_attested(
        &self,
        user_id: &UserId,
        identity_key: &str,
    ) -> Result<bool, sqlx::Error> {
        todo!()
    }

    async fn attestation(&self, user_id: &UserId) -> Result<Option<AttestationRow>, sqlx::Error> {
        todo!()
    }

    async fn identity_keys(
        &self,
        users: &[&UserId],
    ) -> Result<std::collections::HashMap<UserId, String>, sqlx::Error> {
        todo!()
    }

    async fn linked_account(&self, remote_user: &UserId) -> Result<Option<UserId>, sqlx::Error> {
        todo!()
    }

    async fn create_linked_account(
        &self,
        account: &UserId,
        remote_user: &UserId,
    ) -> Result<Option<crate::store::UserRow>, sqlx::Error> {
        todo!()
    }

    async fn delete_linked_account(&self, account: &UserId) -> Result<(), sqlx::Error> {
        todo!()
    }

    async fn put_rotation(
        &self,
        user_id: &UserId,
        ts: u64,
        statement: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<(), sqlx::Error> {
        todo!()
    }

    async fn rotations(&self, user_id: &UserId) -> Result<Vec<serde_json::Value>, sqlx::Error> {
        todo!()
    }

    async fn use_challenge(&self, challenge: &str, expires_ts: u64) -> Result<bool, sqlx::Error> {
        todo!()
    }

    async fn put_move(
        &self,
        from: &UserId,
        to: &UserId,
        ts: u64,
        statement: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<bool, sqlx::Error> {
        todo!()
    }

    async fn moved_to(&self, user_id: &UserId) -> Result<Option<UserId>, sqlx::Error> {
        todo!()
    }

    async fn put_device(
        &self,
        user_id: &UserId,
        device_id: &str,
        session_id: &str,
        certificate: &serde_json::Map<String, serde_json::Value>,
        max_devices: i64,
    ) -> Result<bool, sqlx::Error> {
        todo!()
    }

    async fn devices(&self, user_id: &UserId) -> Result<Vec<DeviceRow>, sqlx::Error> {
        todo!()
    }

    async fn device_session(
        &self,
        user_id: &UserId,
        device_id: &str,
    ) -> Result<Option<String>, sqlx::Error> {
        todo!()
    }
}
