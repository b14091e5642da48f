//! The store test suite: every case runs against both engines, SQLite (a fresh file) and
//! PostgreSQL (a fresh database on the server `GUILDHALL_TEST_POSTGRES` names; `cargo xtask
//! ci` and `cargo xtask services` start one).
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![allow(missing_docs, unreachable_pub)]

mod engines;

mod bots;
mod e2e;
mod federation;
mod guilds;
mod identity;
mod media;
mod messages;
mod social;
mod trust;
mod users;
