//! e2e: the PostgreSQL implementation of [`E2eStore`].

use super::PostgresStore;
use crate::store::e2e::*;
use guildhall_spec::UserId;
use serde_json::Value;

#[async_trait::async_trait]
impl E2eStore for PostgresStore {
    async fn put_device_keys(
        &self,
        user_id: &UserId,
        device_id: &str,
        signed_by: &str,
        one_time_keys: &[(String, Value)],
        fallback: Option<&Value>,
        max_unclaimed: i64,
    ) -> Result<Result<(i64, bool), KeysRefused>, sqlx::Error> {
        todo!()
    }

    async fn claim_key(
        &self,
        user_id: &UserId,
        device_id: &str,
    ) -> Result<Option<Claimed>, sqlx::Error> {
        todo!()
    }

    async fn key_counts(
        &self,
        user_id: &UserId,
        device_id: &str,
    ) -> Result<(i64, bool), sqlx::Error> {
        todo!()
    }

    async fn deliver_shares(
        &self,
        shares: &[InboxShare],
        limits: InboxLimits,
    ) -> Result<Vec<ShareOutcome>, sqlx::Error> {
        todo!()
    }

    async fn device_fingerprint(&self, user_id: &UserId) -> Result<String, sqlx::Error> {
        todo!()
    }

    async fn inbox(
        &self,
        user_id: &UserId,
        device_id: &str,
        limit: i64,
    ) -> Result<(Vec<InboxItem>, bool), sqlx::Error> {
        todo!()
    }

    async fn ack_inbox(
        &self,
        user_id: &UserId,
        device_id: &str,
        up_to: i64,
    ) -> Result<u64, sqlx::Error> {
        todo!()
    }

    async fn reserve_txn(
        &self,
        scope: &str,
        txn_id: &str,
        request_hash: &str,
    ) -> Result<Reservation, sqlx::Error> {
        todo!()
    }

    async fn complete_txn(
        &self,
        scope: &str,
        txn_id: &str,
        result: &Value,
    ) -> Result<(), sqlx::Error> {
        todo!()
    }

    async fn release_txn(&self, scope: &str, txn_id: &str) -> Result<(), sqlx::Error> {
        todo!()
    }

    async fn swap_device_list_hash(
        &self,
        user_id: &UserId,
        hash: &str,
    ) -> Result<bool, sqlx::Error> {
        todo!()
    }

    async fn watch_device_lists(&self, users: &[UserId], watcher: &str) -> Result<(), sqlx::Error> {
        todo!()
    }

    async fn device_list_watchers(&self, user_id: &UserId) -> Result<Vec<String>, sqlx::Error> {
        todo!()
    }
}
