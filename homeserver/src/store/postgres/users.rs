//! users: the PostgreSQL implementation of [`UserStore`].

use super::PostgresStore;
use crate::store::users::*;
use guildhall_spec::UserId;

#[async_trait::async_trait]
impl UserStore for PostgresStore {
    async fn create_user(
        &self,
        user_id: &UserId,
        password_hash: &str,
    ) -> Result<Option<UserRow>, sqlx::Error> {
        todo!()
    }

    async fn user(&self, user_id: &UserId) -> Result<Option<UserRow>, sqlx::Error> {
        todo!()
    }

    async fn update_profile(
        &self,
        user_id: &UserId,
        display_name: Option<Option<&str>>,
        avatar: Option<Option<&str>>,
    ) -> Result<(), sqlx::Error> {
        todo!()
    }

    async fn make_admin(&self, user_id: &UserId) -> Result<bool, sqlx::Error> {
        todo!()
    }

    async fn create_session(
        &self,
        user_id: &UserId,
        session_id: &str,
        token_hash: &[u8],
        user_agent: Option<&str>,
        ip: Option<&str>,
    ) -> Result<(), sqlx::Error> {
        todo!()
    }

    async fn session_user(
        &self,
        token_hash: &[u8],
    ) -> Result<Option<(UserId, String)>, sqlx::Error> {
        todo!()
    }

    async fn touch_session(&self, session_id: &str) -> Result<(), sqlx::Error> {
        todo!()
    }

    async fn sessions(&self, user_id: &UserId) -> Result<Vec<SessionRow>, sqlx::Error> {
        todo!()
    }

    async fn delete_session(
        &self,
        user_id: &UserId,
        session_id: &str,
    ) -> Result<bool, sqlx::Error> {
        todo!()
    }
}
