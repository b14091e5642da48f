"""The user's identity key (spec 16): derived from a recovery phrase, bound to the account with a
login proof and the key's consent, and used to certify devices."""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from mnemonic import Mnemonic

from checks import b64url, generate, jcs
from rest import Api

# Spec 16.1: m / 7337' / 0' / index'.
IDENTITY_PATH = [7337, 0]


class Identity:
    """An identity key of index 0 of a 24-word recovery phrase."""

    def __init__(self, phrase: str | None = None) -> None:
        words = Mnemonic("english")
        self.phrase = phrase or words.generate(strength=256)
        if not words.check(self.phrase) or len(self.phrase.split()) != 24:
            raise ValueError("not a 24-word recovery phrase")
        seed = Mnemonic.to_seed(self.phrase, passphrase="")
        secret = generate.slip10_ed25519(seed, IDENTITY_PATH + [0])
        self._key = Ed25519PrivateKey.from_private_bytes(secret)
        self.public = generate.identity_b64(self._key)

    def sign(self, message: bytes) -> str:
        return b64url(self._key.sign(message))

    def binding(self, user_id: str) -> str:
        """The key's consent to be bound to `user_id` (spec 16.2)."""
        return self.sign(generate.binding_bytes(user_id, self.public))

    def ensure_bound(self, api: Api, server_name: str, user_id: str) -> dict:
        """Binds this key to the account unless it already is; the current attestation.

        Binding proves possession with a login proof over a challenge of the home server
        (spec 16.7). An account already bound to another key is an error: this peer does not
        rotate.
        """
        status, current = api.call("GET", "/api/v1/users/@me/identity")
        if status == 200:
            if current["identity_key"] != self.public:
                raise ValueError(f"{user_id} is bound to another identity key")
            return current["attestation"]
        challenge = api.expect("POST", "/_guildhall/v1/identity/challenge", {"user_id": user_id})[
            "challenge"
        ]
        proof = generate.login_object(server_name, user_id, challenge)
        body = {
            "identity_key": self.public,
            "challenge": challenge,
            "signature": self.sign(jcs(proof)),
            "binding": self.binding(user_id),
        }
        return api.v1("PUT", "/users/@me/identity", body, status=201)["attestation"]
