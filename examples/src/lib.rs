//! Runnable examples of Guildhall. Each lives in this folder and is listed in `Cargo.toml`;
//! run one with `cargo run -p guildhall-examples --example <name>`. CI runs them all.
//!
//! The examples that talk to a server do it through the client library (`guildhall-client`),
//! as any client program would; `sign_event` shows the protocol crate alone.
#![forbid(unsafe_code)]
