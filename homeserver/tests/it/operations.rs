//! What operators watch: liveness, readiness and Prometheus metrics.

use std::net::TcpListener;

use crate::harness::{Encoding, Gateway, Server, StatusCode};

/// A loopback address for the metrics listener.
fn metrics_address() -> String {
    let probe = TcpListener::bind("127.0.0.1:0").unwrap();
    probe.local_addr().unwrap().to_string()
}

async fn scrape(address: &str) -> String {
    let response = reqwest::get(format!("http://{address}/metrics")).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.text().await.unwrap()
}

/// The value of one series, if present.
fn value(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
}

#[tokio::test]
async fn readiness_reports_the_database_and_metrics_count_what_happens_on_their_own_port() {
    let address = metrics_address();
    let server = Server::builder().env("GUILDHALL_METRICS__LISTEN", &address).start().await;
    let (status, body) = server.client().get_absolute("/ready").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["database"], "ok");

    let alice = server.register("alice").await;
    let (_gateway, _) = Gateway::identified(&server, &alice.token, Encoding::Json).await;
    let metrics = scrape(&address).await;
    let registered = value(
        &metrics,
        "guildhall_http_requests_total{method=\"POST\",route=\"/api/v1/auth/register\",status=\"201\"}",
    );
    assert_eq!(registered, Some(1.0), "one registration counted by its route");
    assert_eq!(value(&metrics, "guildhall_gateway_sessions"), Some(1.0));
    assert!(
        !metrics.contains(&alice.id),
        "no user ids in metrics (routes are patterns, not paths)"
    );
    // Never on the public port.
    let (status, _) = server.client().get_absolute("/metrics").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn without_a_metrics_address_nothing_serves_metrics() {
    let server = Server::start().await;
    let (status, _) = server.client().get_absolute("/metrics").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}
