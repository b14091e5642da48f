//! Runnable examples of Guildhall. Each lives in this folder and is listed in `Cargo.toml`;
//! run one with `cargo run -p guildhall-examples --example <name>`. CI runs them all.
#![forbid(unsafe_code)]
