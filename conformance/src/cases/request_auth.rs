//! The `guildhall-fed-v1` request-signature profile (spec chapter 05): every rejection rule,
//! each isolated in one request. The suite builds signature bases itself (not through the
//! spec crate's signer), so a shared mistake cannot hide.

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use guildhall_spec::base64url;
use serde_json::json;

use super::Case;
use crate::peer::{Prepared, unix_now};
use crate::{CaseResult, Context, Profile, ensure};

/// How to build one request.
#[derive(Clone)]
struct Recipe {
    /// Components, in order.
    components: Vec<&'static str>,
    /// Parameters, in order, as `name=value` already serialized (strings quoted).
    params: Vec<(String, String)>,
    /// The authority signed and sent as Host.
    authority: Option<String>,
    /// Send with a body (a harmless transaction).
    body: bool,
    /// Change the body after signing.
    tamper_body: bool,
    /// Drop the Content-Digest header.
    drop_digest: bool,
    /// Flip a bit of the signature.
    flip_signature: bool,
    /// Drop both signature headers.
    unsigned: bool,
    /// Replace Signature-Input with this text.
    raw_signature_input: Option<String>,
    /// Sign the base with the stranger's key instead of the peer's.
    sign_as_stranger: bool,
    /// Add a second, valid signature label.
    second_label: bool,
}

fn params(ctx: &Context, created: u64, expires: u64, nonce: &str) -> Vec<(String, String)> {
    vec![
        ("created".into(), created.to_string()),
        ("expires".into(), expires.to_string()),
        ("nonce".into(), format!("\"{nonce}\"")),
        ("alg".into(), "\"ed25519\"".into()),
        ("keyid".into(), format!("\"{}#{}\"", ctx.peer.name(), ctx.peer.key.key_id())),
        ("tag".into(), "\"guildhall-fed-v1\"".into()),
    ]
}

fn fresh_nonce() -> String {
    base64url::encode(rand::random::<[u8; 18]>())
}

fn recipe(ctx: &Context, body: bool) -> Recipe {
    let now = unix_now();
    let mut components = vec!["@method", "@authority", "@path", "@query"];
    if body {
        components.push("content-digest");
    }
    Recipe {
        components,
        params: params(ctx, now, now + 60, &fresh_nonce()),
        authority: None,
        body,
        tamper_body: false,
        drop_digest: false,
        flip_signature: false,
        unsigned: false,
        raw_signature_input: None,
        sign_as_stranger: false,
        second_label: false,
    }
}

fn set_param(recipe: &mut Recipe, name: &str, value: String) {
    if let Some(param) = recipe.params.iter_mut().find(|(n, _)| n == name) {
        param.1 = value;
    }
}

/// Puts the parameters in the order of `names`.
fn reorder(recipe: &mut Recipe, names: &[&str]) {
    let mut reordered = Vec::new();
    for name in names {
        if let Some(index) = recipe.params.iter().position(|(n, _)| n == name) {
            reordered.push(recipe.params.remove(index));
        }
    }
    reordered.append(&mut recipe.params);
    recipe.params = reordered;
}

/// Builds the request: GET an unknown invite (no body) or PUT an empty transaction (body).
fn build(ctx: &Context, recipe: &Recipe) -> Prepared {
    let authority = recipe.authority.clone().unwrap_or_else(|| ctx.target.name.clone());
    let (method, path) = if recipe.body {
        ("PUT", format!("/_guildhall/v1/send/auth{}", crate::context::unique()))
    } else {
        ("GET", "/_guildhall/v1/invites/nosuchcode".to_owned())
    };
    let body = if recipe.body {
        json!({"origin": ctx.peer.name(), "origin_ts": unix_now() * 1000, "events": [], "ephemeral": []}).to_string().into_bytes()
    } else {
        Vec::new()
    };
    let digest = format!("sha-256=:{}:", STANDARD.encode(sha256(&body)));
    let inner = format!(
        "({}){}",
        recipe.components.iter().map(|c| format!("\"{c}\"")).collect::<Vec<_>>().join(" "),
        recipe.params.iter().map(|(n, v)| format!(";{n}={v}")).collect::<String>()
    );
    let mut base = String::new();
    for component in &recipe.components {
        let value = match *component {
            "@method" => method.to_owned(),
            "@authority" => authority.to_ascii_lowercase(),
            "@path" => path.clone(),
            "@query" => "?".to_owned(),
            "content-digest" => digest.clone(),
            _ => String::new(),
        };
        base.push_str(&format!("\"{component}\": {value}\n"));
    }
    base.push_str(&format!("\"@signature-params\": {inner}"));
    let signer = if recipe.sign_as_stranger { &ctx.stranger.key } else { &ctx.peer.key };
    let mut signature = signer.sign_bytes(base.as_bytes());
    if recipe.flip_signature {
        signature[0] ^= 1;
    }
    let mut headers = Vec::new();
    if !recipe.unsigned {
        let mut input = recipe.raw_signature_input.clone().unwrap_or_else(|| format!("gh={inner}"));
        let mut value = format!("gh=:{}:", STANDARD.encode(signature));
        if recipe.second_label {
            input.push_str(&format!(", gh2={inner}"));
            value.push_str(&format!(", gh2=:{}:", STANDARD.encode(signature)));
        }
        headers.push(("signature-input".to_owned(), input));
        headers.push(("signature".to_owned(), value));
    }
    if recipe.body && !recipe.drop_digest {
        headers.push(("content-digest".to_owned(), digest));
        headers.push(("content-type".to_owned(), "application/json".to_owned()));
    }
    let mut body = body;
    if recipe.tamper_body {
        body.extend(b" ");
    }
    Prepared { method: method.to_owned(), path, query: None, headers, body }
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    use sha2::Digest as _;
    sha2::Sha256::digest(bytes).into()
}

/// Sends the request (with the recipe's Host) and checks the expected status and code.
async fn expect(ctx: &Context, recipe: &Recipe, status: u16, code: Option<&str>) -> CaseResult {
    let prepared = build(ctx, recipe);
    let (got, body) = send_with_host(ctx, &prepared, recipe.authority.as_deref()).await;
    match code {
        Some(code) => ensure!(
            got == status && body["code"] == code,
            "expected {status} {code}, got {got} {body}"
        ),
        None => ensure!(got == status, "expected {status}, got {got} {body}"),
    }
    Ok(())
}

async fn send_with_host(
    ctx: &Context,
    prepared: &Prepared,
    host: Option<&str>,
) -> (u16, serde_json::Value) {
    let client = reqwest::Client::new();
    let method =
        reqwest::Method::from_bytes(prepared.method.as_bytes()).unwrap_or(reqwest::Method::GET);
    let mut request = client
        .request(method, format!("{}{}", ctx.target.base, prepared.path))
        .header("host", host.unwrap_or(&ctx.target.name));
    for (name, value) in &prepared.headers {
        request = request.header(name, value);
    }
    crate::target::answer(request.body(prepared.body.clone()).send().await).await
}

type Mutation = fn(&Context, &mut Recipe);

/// (name, body?, mutation, expected status, expected code)
const RULES: &[(&str, bool, Mutation, u16, Option<&str>)] = &[
    ("valid_get_is_authenticated", false, |_, _| {}, 404, Some("unknown_invite")),
    ("valid_put_with_body_is_authenticated", true, |_, _| {}, 200, None),
    ("missing_signature", false, |_, r| r.unsigned = true, 401, Some("missing_signature")),
    (
        "unparseable_signature_input",
        false,
        |_, r| r.raw_signature_input = Some("gh=(((".into()),
        401,
        Some("malformed_signature"),
    ),
    (
        "wrong_tag",
        false,
        |_, r| set_param(r, "tag", "\"activitypub\"".into()),
        401,
        Some("wrong_tag"),
    ),
    (
        "alg_other_than_ed25519",
        false,
        |_, r| set_param(r, "alg", "\"hmac-sha256\"".into()),
        401,
        Some("malformed_signature"),
    ),
    (
        "query_not_covered",
        false,
        |_, r| r.components.retain(|c| *c != "@query"),
        401,
        Some("wrong_components"),
    ),
    (
        "authority_not_covered",
        false,
        |_, r| r.components.retain(|c| *c != "@authority"),
        401,
        Some("wrong_components"),
    ),
    (
        "content_digest_not_covered",
        true,
        |_, r| r.components.retain(|c| *c != "content-digest"),
        401,
        Some("wrong_components"),
    ),
    (
        "validity_over_300_seconds",
        false,
        |_, r| {
            let now = unix_now();
            set_param(r, "created", now.to_string());
            set_param(r, "expires", (now + 301).to_string());
        },
        401,
        Some("validity_too_long"),
    ),
    (
        "expires_not_after_created",
        false,
        |_, r| {
            let now = unix_now();
            set_param(r, "created", now.to_string());
            set_param(r, "expires", now.to_string());
        },
        401,
        Some("malformed_signature"),
    ),
    (
        "created_in_the_future",
        false,
        |_, r| {
            let now = unix_now();
            set_param(r, "created", (now + 120).to_string());
            set_param(r, "expires", (now + 180).to_string());
        },
        401,
        Some("created_in_future"),
    ),
    (
        "expired",
        false,
        |_, r| {
            let now = unix_now();
            set_param(r, "created", (now - 200).to_string());
            set_param(r, "expires", (now - 100).to_string());
        },
        401,
        Some("signature_expired"),
    ),
    (
        "nonce_too_short",
        false,
        |_, r| set_param(r, "nonce", "\"abc\"".into()),
        401,
        Some("malformed_signature"),
    ),
    (
        "keyid_without_server",
        false,
        |_, r| set_param(r, "keyid", "\"ed25519:peer\"".into()),
        401,
        Some("malformed_signature"),
    ),
    (
        // RFC 9421 leaves the order to the signer; this is the order of Python's stock
        // `http-message-signatures`. The signature base carries the parameters as sent.
        "parameters_in_a_stock_library_order_are_accepted",
        false,
        |_, r| reorder(r, &["created", "keyid", "alg", "expires", "nonce", "tag"]),
        404,
        Some("unknown_invite"),
    ),
    ("parameters_reversed_are_accepted", true, |_, r| r.params.reverse(), 200, None),
    (
        "parameter_repeated",
        false,
        |_, r| {
            let nonce = r.params[2].clone();
            r.params.push(nonce);
        },
        401,
        Some("malformed_signature"),
    ),
    (
        "unknown_parameter",
        false,
        |_, r| r.params.push(("purpose".into(), "\"federation\"".into())),
        401,
        Some("malformed_signature"),
    ),
    (
        "addressed_to_another_server",
        false,
        |_, r| r.authority = Some("elsewhere.example".into()),
        401,
        Some("wrong_authority"),
    ),
    (
        "body_changed_after_signing",
        true,
        |_, r| r.tamper_body = true,
        401,
        Some("bad_content_digest"),
    ),
    (
        "body_without_content_digest",
        true,
        |_, r| r.drop_digest = true,
        401,
        Some("missing_content_digest"),
    ),
    (
        "unknown_key_id",
        false,
        |ctx, r| set_param(r, "keyid", format!("\"{}#ed25519:nosuchkey\"", ctx.peer.name())),
        401,
        Some("unknown_key"),
    ),
    ("tampered_signature", false, |_, r| r.flip_signature = true, 401, Some("bad_signature")),
    (
        "signed_by_another_servers_key",
        false,
        |_, r| r.sign_as_stranger = true,
        401,
        Some("bad_signature"),
    ),
    ("two_signatures", false, |_, r| r.second_label = true, 401, Some("malformed_signature")),
];

/// One case per rule, plus replay.
pub(super) fn cases() -> Vec<Case> {
    let mut cases: Vec<Case> = RULES
        .iter()
        .map(|&(name, body, mutation, status, code)| Case {
            id: format!("request_auth.{name}"),
            profile: Profile::Core,
            run: Box::new(move |ctx: Arc<Context>| {
                Box::pin(async move {
                    let mut recipe = recipe(&ctx, body);
                    mutation(&ctx, &mut recipe);
                    expect(&ctx, &recipe, status, code).await
                })
            }),
        })
        .collect();
    cases.push(Case {
        id: "request_auth.replayed_nonce".into(),
        profile: Profile::Core,
        run: Box::new(|ctx: Arc<Context>| {
            Box::pin(async move {
                let prepared = build(&ctx, &recipe(&ctx, false));
                let (first, body) = send_with_host(&ctx, &prepared, None).await;
                ensure!(
                    first == 404,
                    "first request: expected 404 unknown_invite, got {first} {body}"
                );
                let (second, body) = send_with_host(&ctx, &prepared, None).await;
                ensure!(
                    second == 401 && body["code"] == "replayed_nonce",
                    "replay: expected 401 replayed_nonce, got {second} {body}"
                );
                Ok(())
            })
        }),
    });
    cases
}
