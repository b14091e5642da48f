#!/usr/bin/env python3
"""Requests signed by a stock RFC 9421 library, for the guildhall-fed-v1 profile.

Signs federation requests with the PyPI package `http-message-signatures`
(`HTTPMessageSigner`, Ed25519), configured only through its public API: label `gh`, the
profile's components, `created`/`expires`/`nonce`/`tag`, and the vector key of
`origin.example` (`ed25519:k1`, see README.md). The library chooses everything else, notably
the order of the parameters (`created;keyid;alg;expires;nonce;tag`, not the order guildhall
signers use), so a verifier that accepts these requests interoperates with it.

Writes spec/vectors/stock_rfc9421.json in the format of http_signatures.json. The output is
deterministic: `created` and `expires` are passed explicitly (the library would otherwise read
the clock), nonces are fixed, and Ed25519 signatures are deterministic.

Usage:
  python3 stock_rfc9421.py           # (re)write the vector file
  python3 stock_rfc9421.py --check   # regenerate in memory; exit 1 if the committed file differs

generate.py writes and checks this file too (and verifies every case with its own verifier).
"""

from __future__ import annotations

import argparse
import base64
import datetime
import hashlib
import json
import sys
from importlib.metadata import version
from pathlib import Path
from types import SimpleNamespace

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from http_message_signatures import HTTPMessageSigner, MappingKeyResolver
from http_message_signatures.algorithms import ED25519

FILE = Path(__file__).resolve().parent.parent / "stock_rfc9421.json"
LIBRARY = "http-message-signatures"

HOST = "host.example"
ORIGIN = "origin.example"
KEY_ID = "ed25519:k1"
KEYID = f"{ORIGIN}#{KEY_ID}"
TAG = "guildhall-fed-v1"
CREATED = 1700000000
EXPIRES = CREATED + 60
NOW = CREATED + 30
GUILD = "%21gh1%3Ahost.example"


def vector_key(server: str, key_id: str) -> Ed25519PrivateKey:
    """The test-vector key convention of README.md."""
    seed = hashlib.sha256(f"guildhall-vector-key:{server}#{key_id}".encode("utf-8")).digest()
    return Ed25519PrivateKey.from_private_bytes(seed)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def at(seconds: int) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(seconds, tz=datetime.timezone.utc)


def signed_request(method: str, uri: str, body: str | None, nonce: str) -> dict:
    """Signs one request with the stock library and returns it in the vectors' request shape."""
    headers = {"Host": HOST}
    if body:
        headers["Content-Type"] = "application/json"
    message = SimpleNamespace(method=method, url=uri, headers=headers)
    signer = HTTPMessageSigner(
        signature_algorithm=ED25519,
        key_resolver=MappingKeyResolver(public_keys={}, private_keys={KEYID: vector_key(ORIGIN, KEY_ID)}),
    )
    # With `body`, the library adds Content-Digest (sha-256) and covers it after the components
    # listed here, which is the profile's component list for a request with a body.
    signer.sign(
        message,
        key_id=KEYID,
        created=at(CREATED),
        expires=at(EXPIRES),
        nonce=nonce,
        label="gh",
        tag=TAG,
        covered_component_ids=("@method", "@authority", "@path", "@query"),
        body=body.encode("utf-8") if body else None,
    )
    return {"method": method, "uri": uri, "headers": [[name, value] for name, value in headers.items()], "body": body}


def build() -> dict:
    cases = []

    def case(name: str, request: dict) -> None:
        cases.append(
            {
                "name": name,
                "profile": TAG,
                "now": NOW,
                "authorities": [HOST],
                "request": request,
                "valid": True,
                "reason": None,
            }
        )

    case(
        "stock_get_with_query",
        signed_request("GET", f"https://{HOST}/_guildhall/v1/guilds/{GUILD}/events?after=10&limit=50", None, "c3RvY2stbm9uY2UtMDAwMQ"),
    )
    case(
        "stock_post_with_body",
        signed_request(
            "POST",
            f"https://{HOST}/_guildhall/v1/guilds/{GUILD}/submit",
            '{"content":{"body":"hello","channel_id":"c1"},"type":"message.create"}',
            "c3RvY2stbm9uY2UtMDAwMg",
        ),
    )
    public = vector_key(ORIGIN, KEY_ID).public_key().public_bytes(
        encoding=serialization.Encoding.Raw, format=serialization.PublicFormat.Raw
    )
    return {
        "notes": (
            f"Requests signed by the stock RFC 9421 library {LIBRARY} {version(LIBRARY)} "
            "(HTTPMessageSigner, ED25519) through its public API; the library chose the parameter "
            "order. Same format as http_signatures.json; every case is valid. "
            "Produced by spec/vectors/tools/stock_rfc9421.py."
        ),
        "public_keys": {ORIGIN: {KEY_ID: b64url(public)}},
        "cases": cases,
    }


def render(doc) -> bytes:
    return (json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if the committed vector file differs")
    args = ap.parse_args(argv)
    data = render(build())
    if args.check:
        if not FILE.is_file() or FILE.read_bytes() != data:
            print(f"out of date: {FILE.name} (run spec/vectors/tools/stock_rfc9421.py)", file=sys.stderr)
            return 1
        print(f"{FILE.name} up to date")
        return 0
    FILE.write_bytes(data)
    print(f"wrote {FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
