//! Discovery against real DNS and HTTP peers on loopback (spec chapter 03).

use std::net::{Ipv4Addr, SocketAddr};

use guildhall_federation::{Destination, DiscoveryError, Resolver, ResolverSettings};
use guildhall_spec::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::dns::{self, Record};

fn resolver(dns: SocketAddr) -> Resolver {
    Resolver::new(&ResolverSettings {
        danger_allow_plain_http: true,
        dns_servers: vec![dns],
        danger_allow_private_addresses: true,
    })
}

fn name(text: &str) -> ServerName {
    ServerName::parse(text).unwrap()
}

/// Serves `body` as JSON to every HTTP request on `address`; false if the address cannot be
/// bound (port 80 on a loopback alias needs privileges).
async fn serve_json(address: SocketAddr, body: &'static str) -> bool {
    let Ok(listener) = tokio::net::TcpListener::bind(address).await else { return false };
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut request = [0u8; 2048];
            let _ = stream.read(&mut request).await;
            let response = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes()).await;
        }
    });
    true
}

#[tokio::test]
async fn an_srv_record_names_the_target_and_port() {
    let dns = dns::serve(vec![
        ("_guildhall._tcp.chat.test", Record::Srv { port: 8448, target: "node1.chat.test".into() }),
        ("chat.test", Record::A(Ipv4Addr::new(127, 0, 0, 21))),
        ("node1.chat.test", Record::A(Ipv4Addr::LOCALHOST)),
    ])
    .await;
    let destination = resolver(dns).resolve(&name("chat.test")).await.unwrap();
    assert_eq!(
        destination,
        Destination {
            base_url: "http://node1.chat.test:8448".into(),
            authority: "chat.test".into()
        }
    );
}

#[tokio::test]
async fn an_srv_target_of_dot_means_no_federation() {
    let dns = dns::serve(vec![(
        "_guildhall._tcp.closed.test",
        Record::Srv { port: 0, target: ".".into() },
    )])
    .await;
    let outcome = resolver(dns).resolve(&name("closed.test")).await;
    assert!(matches!(outcome, Err(DiscoveryError::NotOffered(_))), "{outcome:?}");
}

#[tokio::test]
async fn without_delegation_or_srv_the_name_is_used_on_port_443() {
    let dns = dns::serve(vec![("plain.test", Record::A(Ipv4Addr::new(127, 0, 0, 22)))]).await;
    let destination = resolver(dns).resolve(&name("plain.test")).await.unwrap();
    assert_eq!(
        destination,
        Destination { base_url: "http://plain.test:443".into(), authority: "plain.test".into() }
    );
}

#[tokio::test]
async fn well_known_delegates_once_and_the_delegated_name_is_the_authority() {
    let address: SocketAddr = "127.0.0.23:80".parse().unwrap();
    if !serve_json(address, r#"{"server": "backend.test:8448"}"#).await {
        eprintln!(
            "skipped: cannot bind {address} (needs root); the SRV and fallback tests still ran"
        );
        return;
    }
    let dns = dns::serve(vec![("delegating.test", Record::A(Ipv4Addr::new(127, 0, 0, 23)))]).await;
    let destination = resolver(dns).resolve(&name("delegating.test")).await.unwrap();
    assert_eq!(
        destination,
        Destination {
            base_url: "http://backend.test:8448".into(),
            authority: "backend.test:8448".into()
        }
    );
}
