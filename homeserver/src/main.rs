//! `guildhall`: the homeserver binary. The server itself is built by the homeserver-core work;
//! until then the binary only reports the protocol version it will speak.
#![forbid(unsafe_code)]

fn main() {
    println!("guildhall {} ({})", env!("CARGO_PKG_VERSION"), guildhall_spec::PROTOCOL_VERSION);
}
