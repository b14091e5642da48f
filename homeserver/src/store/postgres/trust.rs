//! trust: the PostgreSQL implementation of [`TrustStore`].

use super::PostgresStore;
use crate::store::trust::*;

#[async_trait::async_trait]
impl TrustStore for PostgresStore {
    async fn trust_version(&self) -> Result<(i64, u64), sqlx::Error> {
        todo!()
    }

    async fn trust_mode(&self) -> Result<Option<String>, sqlx::Error> {
        todo!()
    }

    async fn set_trust_mode(&self, mode: &str, audit: Audit<'_>) -> Result<(), sqlx::Error> {
        todo!()
    }

    async fn trust_entries(&self) -> Result<Vec<TrustEntryRow>, sqlx::Error> {
        todo!()
    }

    async fn put_trust_entry(
        &self,
        entry: &TrustEntryRow,
        audit: Audit<'_>,
    ) -> Result<(), sqlx::Error> {
        todo!()
    }

    async fn delete_trust_entry(
        &self,
        server: &str,
        audit: Audit<'_>,
    ) -> Result<bool, sqlx::Error> {
        todo!()
    }

    async fn replace_trust_policy(
        &self,
        mode: &str,
        entries: &[TrustEntryRow],
        audit: Audit<'_>,
    ) -> Result<(), sqlx::Error> {
        todo!()
    }

    async fn subscriptions(&self) -> Result<Vec<SubscriptionRow>, sqlx::Error> {
        todo!()
    }

    async fn subscription(&self, id: &str) -> Result<Option<SubscriptionRow>, sqlx::Error> {
        todo!()
    }

    async fn add_subscription(
        &self,
        subscription: &SubscriptionRow,
        audit: Audit<'_>,
    ) -> Result<bool, sqlx::Error> {
        todo!()
    }

    async fn delete_subscription(&self, id: &str, audit: Audit<'_>) -> Result<bool, sqlx::Error> {
        todo!()
    }

    async fn accept_trust_list(
        &self,
        id: &str,
        document: &str,
        updated_ts: u64,
        audit: Audit<'_>,
    ) -> Result<bool, sqlx::Error> {
        todo!()
    }

    async fn note_trust_fetch(&self, id: &str, error: Option<&str>) -> Result<(), sqlx::Error> {
        todo!()
    }

    async fn audit(&self, audit: Audit<'_>) -> Result<(), sqlx::Error> {
        todo!()
    }

    async fn audit_log(
        &self,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<AuditRow>, sqlx::Error> {
        todo!()
    }
}
