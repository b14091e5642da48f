//! The store test suite: every case runs against both engines, SQLite (a fresh file) and
//! PostgreSQL (a fresh database on the server `GUILDHALL_TEST_POSTGRES` names; `cargo xtask
//! ci` and `cargo xtask services` start one).

mod engines;

mod e2e;
mod federation;
mod guilds;
mod identity;
mod media;
mod messages;
mod social;
mod trust;
mod users;
