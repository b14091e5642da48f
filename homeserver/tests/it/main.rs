//! Integration tests of the homeserver: each test runs the real `guildhall` binary on loopback
//! in a fresh data directory and talks to it over HTTP and the WebSocket gateway.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![allow(missing_docs, unreachable_pub)]

mod harness;

mod accounts;
mod bad_input;
mod channels;
mod client;
mod cluster;
mod discord;
mod federation;
mod gateway;
mod gateway_sessions;
mod guilds;
mod invites;
mod limits;
mod media;
mod messages;
mod operations;
mod profile;
mod redis;
mod roles;
mod social;
mod web;
