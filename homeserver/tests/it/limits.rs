//! Resource limits an anonymous peer cannot get around: request body sizes, how many bodies of
//! unauthenticated senders are read at once, and how long a body may take.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::*;

/// Opens a connection and sends the head of a request with `declared` body bytes plus the first
/// `sent` of them; the rest never comes.
async fn stall(
    server: &Server,
    method: &str,
    path: &str,
    declared: usize,
    sent: usize,
) -> TcpStream {
    let address = server.base_url().trim_start_matches("http://").to_owned();
    let mut stream = TcpStream::connect(&address).await.expect("connect");
    let head = format!(
        "{method} {path} HTTP/1.1\r\nhost: {address}\r\ncontent-type: application/json\r\ncontent-length: {declared}\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.expect("send the head");
    stream.write_all(&vec![b' '; sent]).await.expect("send part of the body");
    stream
}

/// The status line of the answer on a stalled connection.
async fn status_line(stream: &mut TcpStream, within: Duration) -> String {
    let mut answer = vec![0; 512];
    let read = tokio::time::timeout(within, stream.read(&mut answer))
        .await
        .expect("an answer in time")
        .expect("read the answer");
    String::from_utf8_lossy(&answer[..read]).lines().next().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn an_oversized_key_query_is_refused_without_being_read() {
    let server = Server::start().await;

    // Declared too large: refused from the head alone.
    let mut declared = stall(&server, "POST", "/_guildhall/v1/keys/query", 400 << 20, 0).await;
    let line = status_line(&mut declared, Duration::from_secs(20)).await;
    assert!(line.contains("413"), "{line}");

    // Streamed without a length: cut off at the limit.
    let address = server.base_url().trim_start_matches("http://").to_owned();
    let mut chunked = TcpStream::connect(&address).await.expect("connect");
    let head = format!(
        "POST /_guildhall/v1/keys/query HTTP/1.1\r\nhost: {address}\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n"
    );
    chunked.write_all(head.as_bytes()).await.expect("send the head");
    let chunk = format!("10000\r\n{}\r\n", " ".repeat(1 << 16));
    for _ in 0..64 {
        // The server may answer and stop reading before the 4 MiB are through.
        if chunked.write_all(chunk.as_bytes()).await.is_err() {
            break;
        }
    }
    let line = status_line(&mut chunked, Duration::from_secs(20)).await;
    assert!(line.contains("413"), "{line}");

    // A query of the right size is still answered.
    let url = format!("{}/_guildhall/v1/keys/query", server.base_url());
    let query = json!({"server_keys": {"example.org": {}}});
    let response = reqwest::Client::new().post(&url).json(&query).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn unauthenticated_body_reads_are_bounded_in_number_and_time() {
    let server = Server::builder()
        .env("GUILDHALL_LIMITS__MAX_UNAUTHENTICATED_BODY_READS", "3")
        .env("GUILDHALL_LIMITS__MAX_UNAUTHENTICATED_BODY_READS_PER_ADDRESS", "3")
        .env("GUILDHALL_LIMITS__BODY_READ_TIMEOUT_SECS", "6")
        .start()
        .await;
    let mut stalled = Vec::new();
    for index in 0..3 {
        let path = format!("/_guildhall/v1/send/stalled{index}");
        stalled.push(stall(&server, "PUT", &path, 1 << 20, 100).await);
    }

    // While they hold every permit, another unauthenticated body is not read.
    let client = reqwest::Client::new();
    let url = format!("{}/_guildhall/v1/send/another", server.base_url());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let refused = loop {
        let response = client.put(&url).json(&json!({})).send().await.expect("an answer");
        if response.status() == StatusCode::SERVICE_UNAVAILABLE {
            let body: Value = response.json().await.unwrap();
            break body["code"] == "busy";
        }
        if tokio::time::Instant::now() > deadline {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(refused, "a fourth unauthenticated body read was not refused");

    // The stalled senders are cut off, and the server reads bodies again.
    for stream in &mut stalled {
        let line = status_line(stream, Duration::from_secs(30)).await;
        assert!(line.contains("408"), "{line}");
    }
    let response = client.put(&url).json(&json!({})).send().await.expect("an answer");
    assert_eq!(
        response.status(),
        StatusCode::UNAUTHORIZED,
        "an unsigned request, read and refused"
    );
}
