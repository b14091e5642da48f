"""One device's end-to-end encryption with libolm (spec 17): its Olm account, its certificate and
published keys, Olm sessions with other devices, sending to every device of every recipient and
opening what arrives in its inbox."""

from __future__ import annotations

import contextlib
import json
import uuid
from dataclasses import dataclass

import olm

from checks import (
    CheckError,
    DeviceKeys,
    UserDevices,
    check_key_object,
    check_user,
    jcs,
    olm_from_url,
    server_keys,
    url_from_olm,
)
from identity import Identity
from rest import Api

OLM_MESSAGE_TYPE = "olm.v1"
OLM_ALGORITHM = "olm.v1.curve25519-aes-sha2"
INNER_TYPES = ("dm.message", "dm.reset")
# One-time keys kept on the server; fewer than LOW after a read, and the device uploads more.
KEY_TARGET = 50
KEY_LOW = 20
# A send refused as `stale` is encrypted again for the new list at most this many times.
SEND_ATTEMPTS = 3


@dataclass(frozen=True)
class Me:
    """Who this device is: its user, server and device id."""

    user_id: str
    server_name: str
    device_id: str


class Device:
    """A device of a user, with a new libolm account."""

    def __init__(self, api: Api, me: Me, identity: Identity) -> None:
        self.api = api
        self.me = me
        self.identity = identity
        self.account = olm.Account()
        keys = self.account.identity_keys
        self.keys = DeviceKeys(
            me.device_id, url_from_olm(keys["curve25519"]), url_from_olm(keys["ed25519"])
        )
        # Olm sessions by the other device's Curve25519 key (base64url), newest first.
        self.sessions: dict[str, list[olm.Session]] = {}
        # Checked device lists; another user's is fetched again when a send comes back stale.
        self.known: dict[str, UserDevices] = {}
        self.processed: set[int] = set()

    # -- publishing keys ---------------------------------------------------------------------

    def register(self) -> None:
        """Certifies the device with the identity key and registers it for this login."""
        certificate = {
            "user_id": self.me.user_id,
            "device_id": self.me.device_id,
            "device_keys": {"curve25519": self.keys.curve25519, "ed25519": self.keys.ed25519},
            "identity_key": self.identity.public,
        }
        signed = jcs(certificate)
        certificate["signatures"] = {
            self.me.user_id: {
                "ed25519:identity": self.identity.sign(signed),
                f"ed25519:{self.me.device_id}": url_from_olm(self.account.sign(signed)),
            }
        }
        path = f"/users/@me/devices/{self.me.device_id}"
        self.api.v1("PUT", path, {"certificate": certificate})

    def upload_keys(self, count: int, fallback: bool) -> dict:
        """Generates and uploads `count` signed one-time keys (and a new fallback key)."""
        self.account.generate_one_time_keys(count)
        body: dict = {
            "one_time_keys": [
                self._key_object(key_id, key, False)
                for key_id, key in self.account.one_time_keys["curve25519"].items()
            ]
        }
        if fallback:
            self.account.generate_fallback_key()
            ((key_id, key),) = self.account.fallback_key["curve25519"].items()
            body["fallback_key"] = self._key_object(key_id, key, True)
        counts = self.api.v1("POST", "/keys/upload", body)
        self.account.mark_keys_as_published()
        return counts

    def replenish(self) -> dict:
        """Tops the server's one-time keys up to KEY_TARGET once fewer than KEY_LOW are left."""
        counts = self.api.v1("POST", "/keys/upload", {})
        if counts["one_time_key_count"] < KEY_LOW:
            counts = self.upload_keys(KEY_TARGET - counts["one_time_key_count"], False)
        return counts

    def _key_object(self, key_id: str, key: str, fallback: bool) -> dict:
        body = {"key_id": url_from_olm(key_id), "key": url_from_olm(key), "fallback": fallback}
        signature = url_from_olm(self.account.sign(jcs(body)))
        return {
            **body,
            "signatures": {self.me.user_id: {f"ed25519:{self.me.device_id}": signature}},
        }

    # -- other users' devices ----------------------------------------------------------------

    def devices_of(self, user_ids: list[str], refresh: bool = False) -> dict[str, UserDevices]:
        """The checked device lists of `user_ids`, from the cache unless `refresh`."""
        wanted = [u for u in user_ids if refresh or u not in self.known]
        if wanted:
            answer = self.api.v1("POST", "/keys/query", {"users": wanted})
            if answer.get("failures"):
                raise CheckError(f"key query failed: {json.dumps(answer['failures'])}")
            for user_id in wanted:
                home = self._home_keys(user_id.split(":", 1)[1])
                self.known[user_id] = check_user(user_id, answer["users"][user_id], home)
        return {u: self.known[u] for u in user_ids}

    def _home_keys(self, server: str) -> dict:
        """A server's signing keys, through this device's own server as notary (spec 4.5)."""
        answer = self.api.expect("POST", "/_guildhall/v1/keys/query", {"server_keys": {server: {}}})
        for document in answer["server_keys"]:
            if document.get("server_name", "").lower() == server.lower():
                return server_keys(document, server)
        raise CheckError(f"no key document of {server}")

    def _sender(self, user_id: str, device_id: str) -> DeviceKeys:
        """The certified keys of a sending device, fetched again once if not known yet."""
        devices = self.devices_of([user_id])[user_id].devices
        if device_id not in devices:
            devices = self.devices_of([user_id], refresh=True)[user_id].devices
        if device_id not in devices:
            raise CheckError(f"{user_id} has no certified device {device_id}")
        return devices[device_id]

    # -- sending -----------------------------------------------------------------------------

    def send(self, recipients: list[str], inner_type: str, content: dict) -> dict:
        """Encrypts for every device of every recipient and of this user, and sends.

        A share refused as `stale` is encrypted again, for the list as fetched anew, under a new
        transaction. This user's own list is fetched on every send: when it holds no other
        device it is not named in the send, so it could never come back stale.
        """
        others = sorted(set(recipients) - {self.me.user_id})
        self.devices_of([self.me.user_id], refresh=True)
        pending = others + [self.me.user_id]
        report: dict = {"results": {}, "stale": [], "devices": {}}
        for _ in range(SEND_ATTEMPTS):
            answer = self._send_once(pending, inner_type, content, report)
            pending = [u for u, r in answer.items() if r["status"] == "stale"]
            report["stale"].extend(pending)
            self.devices_of(pending, refresh=True)
            if not pending:
                break
        return report

    def _send_once(self, users: list[str], inner_type: str, content: dict, report: dict) -> dict:
        lists = self.devices_of(users)
        targets = {u: self._targets(lists[u]) for u in users}
        self._ensure_sessions(targets)
        messages, device_lists = [], {}
        for user_id, devices in targets.items():
            if not devices:
                continue
            device_lists[user_id] = lists[user_id].device_list_hash
            report["devices"][user_id] = sorted(d.device_id for d in devices)
            for device in devices:
                messages.append(self._message(user_id, device, inner_type, content))
        if not messages:
            return {}
        txn = f"py-{uuid.uuid4().hex}"
        body = {"messages": messages, "device_lists": device_lists}
        results = self.api.v1("PUT", f"/users/@me/to_device/{txn}", body)["results"]
        report["results"].update({u: r["status"] for u, r in results.items()})
        return results

    def _targets(self, devices: UserDevices) -> list[DeviceKeys]:
        return [d for d in devices.devices.values() if d.curve25519 != self.keys.curve25519]

    def _ensure_sessions(self, targets: dict[str, list[DeviceKeys]]) -> None:
        """Claims a key of each target device without a session and starts one with it."""
        wanted = {
            user_id: [d.device_id for d in devices if d.curve25519 not in self.sessions]
            for user_id, devices in targets.items()
        }
        wanted = {u: ids for u, ids in wanted.items() if ids}
        if not wanted:
            return
        claimed = self.api.v1("POST", "/keys/claim", {"one_time_keys": wanted})
        for user_id, device_ids in wanted.items():
            for device_id in device_ids:
                device = self.known[user_id].devices[device_id]
                key_object = claimed["one_time_keys"].get(user_id, {}).get(device_id)
                if key_object is None:
                    raise CheckError(f"no key to claim for {user_id} {device_id}")
                key = check_key_object(key_object, user_id, device)
                session = olm.OutboundSession(
                    self.account, olm_from_url(device.curve25519), olm_from_url(key)
                )
                self.sessions.setdefault(device.curve25519, []).insert(0, session)

    def _message(self, user_id: str, device: DeviceKeys, inner_type: str, content: dict) -> dict:
        plaintext = {
            "type": inner_type,
            "content": content,
            "sender": self.me.user_id,
            "sender_device": self.me.device_id,
            "keys": {"ed25519": self.keys.ed25519},
            "recipient": user_id,
            "recipient_keys": {"ed25519": device.ed25519},
        }
        session = self.sessions[device.curve25519][0]
        encrypted = session.encrypt(json.dumps(plaintext, ensure_ascii=False))
        ciphertext = {"type": encrypted.message_type, "body": url_from_olm(encrypted.ciphertext)}
        return {
            "recipient": user_id,
            "device_id": device.device_id,
            # A conversation message carries its id inside the encryption too (spec 17.7).
            "message_id": content.get("message_id") or uuid.uuid4().hex,
            "message_type": OLM_MESSAGE_TYPE,
            "content": {
                "algorithm": OLM_ALGORITHM,
                "sender_key": self.keys.curve25519,
                "ciphertext": {device.curve25519: ciphertext},
            },
        }

    # -- receiving ---------------------------------------------------------------------------

    def receive(self) -> tuple[list[dict], list[dict]]:
        """Reads the inbox, opens every new message and acknowledges: (opened, rejected)."""
        opened: list[dict] = []
        rejected: list[dict] = []
        more = True
        while more:
            page = self.api.v1("GET", "/users/@me/to_device?limit=100")
            more = bool(page.get("more"))
            items = [item for item in page["messages"] if item["id"] not in self.processed]
            for item in items:
                try:
                    opened.append(self.open(item))
                except (
                    CheckError,
                    olm.OlmSessionError,
                    olm.OlmAccountError,
                    ValueError,
                    KeyError,
                    TypeError,
                ) as error:
                    rejected.append(_rejection(item, error))
                self.processed.add(item["id"])
            if page["messages"]:
                up_to = max(item["id"] for item in page["messages"])
                self.api.v1("POST", "/users/@me/to_device/ack", {"up_to": up_to})
        return opened, rejected

    def open(self, item: dict) -> dict:
        """Decrypts an inbox item and checks it against the sender's certificate (spec 17.7)."""
        if item["message_type"] != OLM_MESSAGE_TYPE:
            raise CheckError(f"message type {item['message_type']!r}")
        content = item["content"]
        if set(content) != {"algorithm", "sender_key", "ciphertext"}:
            raise CheckError("olm.v1 content of another shape")
        if content["algorithm"] != OLM_ALGORITHM:
            raise CheckError(f"algorithm {content['algorithm']!r}")
        sender = self._sender(item["sender"], item["sender_device"])
        if content["sender_key"] != sender.curve25519:
            raise CheckError("sender key is not the sending device's")
        if list(content["ciphertext"]) != [self.keys.curve25519]:
            raise CheckError("not encrypted for this device")
        ciphertext = content["ciphertext"][self.keys.curve25519]
        plaintext = json.loads(self._decrypt(sender.curve25519, ciphertext))
        inner = check_envelope(plaintext, item, sender, self.me, self.keys)
        return {
            "id": item["id"],
            "sender": item["sender"],
            "sender_device": item["sender_device"],
            "type": plaintext["type"],
            "prekey": ciphertext["type"] == 0,
            **inner,
        }

    def _decrypt(self, sender_key: str, ciphertext: dict) -> str:
        """Olm: a pre-key message matching no session starts a new inbound one (spec 17.7)."""
        body, identity_key = olm_from_url(ciphertext["body"]), olm_from_url(sender_key)
        sessions = self.sessions.setdefault(sender_key, [])
        if ciphertext["type"] == 0:
            message = olm.OlmPreKeyMessage(body)
            for session in sessions:
                if session.matches(message, identity_key):
                    return session.decrypt(message, unicode_errors="strict")
            session = olm.InboundSession(self.account, message, identity_key)
            plaintext = session.decrypt(message, unicode_errors="strict")
            _forget_one_time_key(self.account, session)
            sessions.insert(0, session)
            return plaintext
        if ciphertext["type"] != 1:
            raise CheckError(f"Olm message type {ciphertext['type']!r}")
        message = olm.OlmMessage(body)
        for session in sessions:
            try:
                return session.decrypt(message, unicode_errors="strict")
            except olm.OlmSessionError:
                continue
        raise CheckError("no session decrypts the message")


def _forget_one_time_key(account: olm.Account, session: olm.Session) -> None:
    """Removes the one-time key a new inbound session used; a fallback key stays."""
    with contextlib.suppress(olm.OlmAccountError):
        account.remove_one_time_keys(session)


def _rejection(item: dict, error: Exception) -> dict:
    return {
        "id": item.get("id"),
        "sender": item.get("sender"),
        "sender_device": item.get("sender_device"),
        "reason": f"{type(error).__name__}: {error}",
    }


def check_envelope(
    plaintext: dict, item: dict, sender: DeviceKeys, me: Me, keys: DeviceKeys
) -> dict:
    """The plaintext's fields against the inbox item and both devices' keys; the inner content.

    A message that does not match is discarded: it may be a ciphertext forwarded to another
    user or device, or replayed as from another sender.
    """
    expected = {
        "sender": item["sender"],
        "sender_device": item["sender_device"],
        "keys": {"ed25519": sender.ed25519},
        "recipient": me.user_id,
        "recipient_keys": {"ed25519": keys.ed25519},
    }
    if set(plaintext) != set(expected) | {"type", "content"}:
        raise CheckError("plaintext of another shape")
    for name, value in expected.items():
        if plaintext[name] != value:
            raise CheckError(f"plaintext {name} does not match")
    if plaintext["type"] not in INNER_TYPES:
        raise CheckError(f"inner type {plaintext['type']!r}")
    if plaintext["type"] == "dm.reset":
        if plaintext["content"] != {}:
            raise CheckError("dm.reset with content")
        return {}
    return check_dm_message(plaintext["content"], item, me.user_id)


def check_dm_message(content: dict, item: dict, me: str) -> dict:
    """`dm.message` content (spec 17.7); its message id is the inbox item's."""
    sender = item["sender"]
    if set(content) != {"message_id", "conversation", "members", "body", "sent_ts"}:
        raise CheckError("dm.message of another shape")
    if content["message_id"] != item["message_id"]:
        raise CheckError("message_id does not match the inbox item's")
    members = content["members"]
    if not isinstance(content["conversation"], str) or len(content["conversation"]) > 64:
        raise CheckError("conversation id")
    if not isinstance(members, list) or not 2 <= len(set(members)) == len(members) <= 10:
        raise CheckError("members")
    if sender not in members or me not in members:
        raise CheckError("sender or recipient not among the members")
    if not isinstance(content["body"], str) or not 1 <= len(content["body"]) <= 4000:
        raise CheckError("body")
    if not isinstance(content["sent_ts"], int) or isinstance(content["sent_ts"], bool):
        raise CheckError("sent_ts")
    return dict(content)
