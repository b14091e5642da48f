#!/usr/bin/env python3
"""A Guildhall E2E DM client whose Olm is libolm (python-olm), driven over JSON lines.

Each line on stdin is a command; each command gets exactly one line on stdout,
`{"ok": true, ...}` or `{"ok": false, "error": "..."}`. Diagnostics go to stderr.

    {"cmd": "setup", "server": "http://127.0.0.1:8448", "username": "bob",
     "password": "...", "register": true, "device_id": "PYBOB1", "phrase": null,
     "one_time_keys": 50}
        -> {"user_id", "device_id", "identity_key", "phrase", "curve25519", "ed25519",
            "one_time_key_count"}
    {"cmd": "send", "to": ["@alice:a.example"], "conversation": "c1", "body": "hi",
     "members": [...]?}
        -> {"results": {user: status}, "stale": [user, ...], "devices": {user: [device id]}}
    {"cmd": "read", "min": 1, "timeout": 30}
        -> {"messages": [{"id", "sender", "sender_device", "type", "prekey", "conversation",
                          "members", "body", "sent_ts"}], "rejected": [...],
            "one_time_key_count"}
    {"cmd": "status"} -> {"gateway": {event name: count}, "one_time_key_count", "fallback_key"}
    {"cmd": "quit"}

`setup` registers (or logs in), binds the identity key of the recovery phrase (a new phrase
when none is given, returned so that another device of the same user can be set up with it),
registers a certified device, uploads `one_time_keys` one-time keys (0: sessions start from the
fallback key) and a fallback key, and opens the gateway.
`read` returns once at least `min` messages were opened (or `timeout` seconds passed): it reads
the inbox, and waits for the gateway's dispatches in between.
"""

from __future__ import annotations

import json
import sys
import time
import traceback
import uuid
from collections import Counter

from device import KEY_TARGET, Device, Me
from identity import Identity
from rest import Api, Gateway


class Peer:
    """The commands, over one device set up by `setup`."""

    def __init__(self) -> None:
        self.device: Device | None = None
        self.gateway: Gateway | None = None

    def setup(self, command: dict) -> dict:
        api = Api(command["server"])
        credentials = {"username": command["username"], "password": command["password"]}
        if command.get("register", True):
            auth = api.v1("POST", "/auth/register", credentials, status=201)
        else:
            auth = api.v1("POST", "/auth/login", credentials)
        api.token = auth["token"]
        user_id = auth["user"]["id"]
        me = Me(user_id, user_id.split(":", 1)[1], command["device_id"])
        identity = Identity(command.get("phrase"))
        identity.ensure_bound(api, me.server_name, user_id)
        self.device = Device(api, me, identity)
        self.device.register()
        counts = self.device.upload_keys(int(command.get("one_time_keys", KEY_TARGET)), True)
        self.gateway = Gateway(api)
        self.gateway.start()
        self.gateway.wait_ready(30)
        return {
            "user_id": user_id,
            "device_id": me.device_id,
            "identity_key": identity.public,
            "phrase": identity.phrase,
            "curve25519": self.device.keys.curve25519,
            "ed25519": self.device.keys.ed25519,
            "one_time_key_count": counts["one_time_key_count"],
        }

    def send(self, command: dict) -> dict:
        device = self._device()
        members = command.get("members") or sorted(set(command["to"]) | {device.me.user_id})
        content = {
            # Inside the encryption, and the same as each inbox item's (spec 17.7).
            "message_id": uuid.uuid4().hex,
            "conversation": command["conversation"],
            "members": members,
            "body": command["body"],
            "sent_ts": int(time.time() * 1000),
        }
        return device.send(command["to"], "dm.message", content)

    def read(self, command: dict) -> dict:
        device = self._device()
        wanted = int(command.get("min", 0))
        deadline = time.monotonic() + float(command.get("timeout", 30))
        messages: list[dict] = []
        rejected: list[dict] = []
        while True:
            opened, refused = device.receive()
            messages.extend(opened)
            rejected.extend(refused)
            if len(messages) >= wanted or time.monotonic() > deadline:
                break
            # The inbox is the record; a dispatch only wakes the next read sooner.
            seen = len(self._gateway().dispatches.events)
            self._gateway().dispatches.wait(seen, 0.5)
        counts = device.replenish()
        return {
            "messages": messages,
            "rejected": rejected,
            "one_time_key_count": counts["one_time_key_count"],
        }

    def status(self, _command: dict) -> dict:
        counts = self._device().api.v1("POST", "/keys/upload", {})
        events = Counter(name for name, _ in self._gateway().dispatches.events)
        return {"gateway": dict(events), **counts}

    def _device(self) -> Device:
        if self.device is None:
            raise RuntimeError("run setup first")
        return self.device

    def _gateway(self) -> Gateway:
        if self.gateway is None:
            raise RuntimeError("run setup first")
        return self.gateway


def main() -> int:
    peer = Peer()
    commands = {"setup": peer.setup, "send": peer.send, "read": peer.read, "status": peer.status}
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            command = json.loads(line)
            if command.get("cmd") == "quit":
                reply({"ok": True})
                return 0
            handler = commands.get(command.get("cmd"))
            if handler is None:
                raise ValueError(f"unknown command {command.get('cmd')!r}")
            reply({"ok": True, **handler(command)})
        except Exception as error:  # Every failure is answered; the peer keeps running.
            traceback.print_exc(file=sys.stderr)
            reply({"ok": False, "error": f"{type(error).__name__}: {error}"})
    return 0


def reply(answer: dict) -> None:
    sys.stdout.write(json.dumps(answer, ensure_ascii=False) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    sys.exit(main())
