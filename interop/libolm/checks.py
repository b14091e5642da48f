"""What a client checks before it trusts a key its server passed on (spec 17.3).

The signature formats come from the independent Python implementation of the wire rules,
`spec/vectors/tools/generate.py` (JCS by `rfc8785`, Ed25519 by `cryptography`), imported here so
that this peer shares no code with the Rust implementation it is tested against.
"""

from __future__ import annotations

import hashlib
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "spec" / "vectors" / "tools"))

import generate  # noqa: E402  (the vector generator, found through the path above)

jcs = generate.jcs
b64url = generate.b64url
b64url_decode = generate.b64url_decode
user_signature_ok = generate.user_signature_ok


class CheckError(Exception):
    """A key, certificate or list that must not be used."""


@dataclass(frozen=True)
class DeviceKeys:
    """A certified device of a user: its id and its keys, base64url as on the wire."""

    device_id: str
    curve25519: str
    ed25519: str


@dataclass(frozen=True)
class UserDevices:
    """A user's devices, checked against the user's current attestation."""

    user_id: str
    identity_key: str
    devices: dict[str, DeviceKeys]
    device_list_hash: str


def url_from_olm(text: str) -> str:
    """libolm's unpadded standard base64 as the wire's unpadded base64url."""
    return text.replace("+", "-").replace("/", "_")


def olm_from_url(text: str) -> str:
    """The wire's unpadded base64url as libolm's unpadded standard base64."""
    b64url_decode(text)
    return text.replace("-", "+").replace("_", "/")


def now_ms() -> int:
    return int(time.time() * 1000)


def server_keys(document: dict, server: str) -> dict[str, dict[str, str]]:
    """The key map `{server: {key id: key}}` of a key document (spec 4.2), self-signature checked.

    Old keys are kept with their `expired_ts`, for `attestation_keys` to judge.
    """
    if document.get("server_name", "").lower() != server.lower():
        raise CheckError(f"key document of {document.get('server_name')!r}, not {server}")
    body = {k: v for k, v in document.items() if k != "signatures"}
    signed = document.get("signatures", {}).get(document["server_name"], {})
    current = {kid: entry["key"] for kid, entry in document["verify_keys"].items()}
    checked = [kid for kid in signed if kid in current]
    if not checked or not all(
        generate.ed25519_verify(current[kid], b64url_decode(signed[kid]), jcs(body))
        for kid in checked
    ):
        raise CheckError(f"key document of {server}: bad self-signature")
    return {"current": current, "old": document.get("old_verify_keys", {})}


def attestation_keys(keys: dict, home: str, issued_ts: int) -> dict[str, dict[str, str]]:
    """The keys of `home` usable for an attestation issued at `issued_ts` (spec 4.3)."""
    usable = dict(keys["current"])
    for kid, entry in keys["old"].items():
        if entry.get("expired_ts", 0) > issued_ts:
            usable[kid] = entry["key"]
    return {home: usable}


def check_user(user_id: str, answer: dict, home_keys: dict) -> UserDevices:
    """A key-query answer for one user, checked end to end (spec 17.3).

    The attestation against the home server's keys (and the identity key's consent), every
    certificate against the attestation, and the device-list hash against the certificates.
    """
    attestation = answer["attestation"]
    if attestation.get("user_id") != user_id:
        raise CheckError(f"attestation of {attestation.get('user_id')} for {user_id}")
    home = user_id.split(":", 1)[1]
    keys = attestation_keys(home_keys, home, attestation.get("issued_ts", 0))
    if not generate.verify_attestation(attestation, keys, now_ms()):
        raise CheckError(f"attestation of {user_id} does not verify")
    if attestation.get("revoked", False):
        raise CheckError(f"{user_id} has no usable identity key")
    devices: dict[str, DeviceKeys] = {}
    for certificate in answer["devices"]:
        reason = generate.verify_device_certificate(certificate, attestation, now_ms())
        if reason is not None:
            raise CheckError(f"certificate of {user_id}: {reason}")
        keys_of = certificate["device_keys"]
        device = DeviceKeys(certificate["device_id"], keys_of["curve25519"], keys_of["ed25519"])
        devices[device.device_id] = device
    expected = device_list_hash(devices.values())
    if answer["device_list_hash"] != expected:
        raise CheckError(f"device-list hash of {user_id} does not match its certificates")
    return UserDevices(user_id, attestation["identity_key"], devices, expected)


def device_list_hash(devices) -> str:
    """Spec 17.2: base64url(SHA-256(JCS(the devices' ids and keys, sorted by id)))."""
    listed = sorted(devices, key=lambda device: device.device_id.encode("utf-8"))
    entries = [
        {"device_id": d.device_id, "curve25519": d.curve25519, "ed25519": d.ed25519} for d in listed
    ]
    return b64url(hashlib.sha256(jcs(entries)).digest())


def check_key_object(key_object: dict, user_id: str, device: DeviceKeys) -> str:
    """A claimed one-time or fallback key, signed by the device (spec 17.2); its key."""
    expected = {"key_id", "key", "fallback", "signatures"}
    if set(key_object) != expected or set(key_object["signatures"]) != {user_id}:
        raise CheckError(f"key object of {device.device_id} has another shape")
    if set(key_object["signatures"][user_id]) != {f"ed25519:{device.device_id}"}:
        raise CheckError(f"key object of {device.device_id} signed by another key")
    if not user_signature_ok(key_object, user_id, f"ed25519:{device.device_id}", device.ed25519):
        raise CheckError(f"key object of {device.device_id}: bad signature")
    if len(b64url_decode(key_object["key"])) != 32:
        raise CheckError(f"key object of {device.device_id}: not a 32-byte key")
    return key_object["key"]
