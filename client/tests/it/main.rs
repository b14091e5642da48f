//! The client library against a fake server on loopback: the requests it makes and how it
//! reads the answers. The real server's side is tested in `homeserver/tests/it/client.rs`.

// A fake server that cannot start, or answers wrongly, should fail the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod e2e;
mod fake;
mod gateway;
mod session;
