//! Account moves (spec 16.5): a user's statement, signed with the identity key, that `from`
//! has moved to `to`. Both home servers attest the same identity key, which is what makes the
//! two accounts one person.

use guildhall_spec::event::JsonObject;
use guildhall_spec::{UserId, signing};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::attestation::Attestation;
use crate::key::{self, IDENTITY_KEY_ID, IdentityKeyPair};

/// What a move says. On the wire it carries `"type": "guildhall.account_move.v1"` and the
/// identity signature under `from`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename = "guildhall.account_move.v1", from = "WireMove")]
pub struct AccountMove {
    /// The account moved from.
    pub from: UserId,
    /// The account moved to.
    pub to: UserId,
    /// The identity key both accounts share, base64url; it signs the move.
    pub identity_key: String,
    /// When the move was made (ms); the latest move of an account wins.
    pub ts: u64,
}

/// A move as read from the wire. Serde ignores `tag` when deserializing a struct, so the
/// `type` member is checked here, with an enum of the one allowed value.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WireMove {
    #[serde(rename = "type")]
    _type: MoveType,
    from: UserId,
    to: UserId,
    identity_key: String,
    ts: u64,
}

#[derive(Deserialize)]
enum MoveType {
    #[serde(rename = "guildhall.account_move.v1")]
    V1,
}

impl From<WireMove> for AccountMove {
    fn from(wire: WireMove) -> Self {
        Self { from: wire.from, to: wire.to, identity_key: wire.identity_key, ts: wire.ts }
    }
}

/// Why a move cannot be signed or is not valid.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MoveError {
    /// Not the shape of spec 16.5 (unknown or missing members, wrong types, wrong `type`), or
    /// no canonical form.
    #[error("malformed move: {0}")]
    Malformed(String),
    /// `from` and `to` are the same account.
    #[error("a move from an account to itself")]
    SameAccount,
    /// `identity_key` is not a valid Ed25519 key (or, when signing, not the signer's key).
    #[error("the identity key is not a valid key of the signer")]
    BadIdentityKey,
    /// The identity signature under `from` is missing or does not verify.
    #[error("the move's signature is missing or does not verify")]
    Signature,
    /// An attestation is of another user than the one it is given for.
    #[error("expected the attestation of {expected}, got that of {found}")]
    WrongAttestation {
        /// The account of the move.
        expected: UserId,
        /// The account of the attestation.
        found: UserId,
    },
    /// An attestation revokes the identity key.
    #[error("the attestation of {0} revokes its identity key")]
    Revoked(UserId),
    /// An attestation names another identity key than the move.
    #[error("the attestation of {0} names another identity key")]
    KeyMismatch(UserId),
    /// The attestation of `from` was issued at or after the move's `ts`.
    #[error("the attestation of the old account was issued at or after the move")]
    AttestedAfterMove,
}

impl AccountMove {
    /// The move signed by `identity`, which must hold `identity_key`.
    pub fn sign(&self, identity: &IdentityKeyPair) -> Result<JsonObject, MoveError> {
        if self.from == self.to {
            return Err(MoveError::SameAccount);
        }
        if identity.public_base64url() != self.identity_key {
            return Err(MoveError::BadIdentityKey);
        }
        let Ok(Value::Object(mut object)) = serde_json::to_value(self) else {
            return Err(MoveError::Malformed("not an object".into()));
        };
        identity
            .sign_json(&mut object, &self.from)
            .map_err(|e| MoveError::Malformed(e.to_string()))?;
        Ok(object)
    }

    /// Checks a move as received (spec 16.5). `from_attestation` and `to_attestation` are
    /// attestations of `from` and `to`, each already verified with its home server's keys;
    /// the one of `to` should be current, the one of `from` need not be (the old server may be
    /// gone) but must have been issued before the move.
    pub fn verify(
        object: &JsonObject,
        from_attestation: &Attestation,
        to_attestation: &Attestation,
    ) -> Result<Self, MoveError> {
        let mut fields = object.clone();
        fields.remove("signatures");
        let moved: Self = serde_json::from_value(Value::Object(fields))
            .map_err(|e| MoveError::Malformed(e.to_string()))?;
        if moved.from == moved.to {
            return Err(MoveError::SameAccount);
        }
        let identity_key =
            key::parse_public_key(&moved.identity_key).ok_or(MoveError::BadIdentityKey)?;
        let message =
            signing::signing_bytes(object, &[]).map_err(|e| MoveError::Malformed(e.to_string()))?;
        if !key::has_valid_signature(object, &message, &moved.from, IDENTITY_KEY_ID, &identity_key)
        {
            return Err(MoveError::Signature);
        }
        moved.check_attests(&moved.from, from_attestation)?;
        moved.check_attests(&moved.to, to_attestation)?;
        if from_attestation.issued_ts >= moved.ts {
            return Err(MoveError::AttestedAfterMove);
        }
        Ok(moved)
    }

    /// Checks that `attestation` binds `user` to this move's identity key.
    fn check_attests(&self, user: &UserId, attestation: &Attestation) -> Result<(), MoveError> {
        if &attestation.user_id != user {
            return Err(MoveError::WrongAttestation {
                expected: user.clone(),
                found: attestation.user_id.clone(),
            });
        }
        let key = attestation.usable_key().map_err(|_| MoveError::Revoked(user.clone()))?;
        if key != self.identity_key {
            return Err(MoveError::KeyMismatch(user.clone()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::phrase::RecoveryPhrase;
    use crate::vectors;

    const TS: u64 = 1_700_000_000_000;

    fn identity(index: u32) -> IdentityKeyPair {
        IdentityKeyPair::from_phrase(&RecoveryPhrase::from_entropy([0; 32]), index)
    }

    fn user(text: &str) -> UserId {
        UserId::parse(text).unwrap()
    }

    fn attestation(user_id: &str, identity: &IdentityKeyPair, issued_ts: u64) -> Attestation {
        Attestation {
            user_id: user(user_id),
            identity_key: identity.public_base64url(),
            issued_ts,
            revoked: false,
            binding: None,
        }
    }

    fn alice_moves() -> AccountMove {
        AccountMove {
            from: user("@alice:old.example"),
            to: user("@alice:new.example"),
            identity_key: identity(0).public_base64url(),
            ts: TS,
        }
    }

    #[test]
    fn signed_moves_verify_against_both_attestations() {
        let signed = alice_moves().sign(&identity(0)).unwrap();
        assert_eq!(signed["type"], "guildhall.account_move.v1");
        let old = attestation("@alice:old.example", &identity(0), TS - 1);
        let new = attestation("@alice:new.example", &identity(0), TS + 5);
        assert_eq!(AccountMove::verify(&signed, &old, &new), Ok(alice_moves()));

        let check = |from: &Attestation, to: &Attestation, expected| {
            assert_eq!(AccountMove::verify(&signed, from, to), Err(expected));
        };
        check(&Attestation { issued_ts: TS, ..old.clone() }, &new, MoveError::AttestedAfterMove);
        let other_key = attestation("@alice:new.example", &identity(1), TS);
        check(&old, &other_key, MoveError::KeyMismatch(user("@alice:new.example")));
        let revoked = Attestation { revoked: true, ..old.clone() };
        check(&revoked, &new, MoveError::Revoked(user("@alice:old.example")));
        check(
            &new,
            &old,
            MoveError::WrongAttestation {
                expected: user("@alice:old.example"),
                found: user("@alice:new.example"),
            },
        );
        let mut retyped = signed.clone();
        retyped.insert("type".into(), "guildhall.login.v1".into());
        assert!(matches!(AccountMove::verify(&retyped, &old, &new), Err(MoveError::Malformed(_))));
    }

    #[test]
    fn only_the_identity_signs_a_move_between_two_accounts() {
        assert_eq!(alice_moves().sign(&identity(1)), Err(MoveError::BadIdentityKey));
        let to_itself = AccountMove { to: user("@alice:old.example"), ..alice_moves() };
        assert_eq!(to_itself.sign(&identity(0)), Err(MoveError::SameAccount));
    }

    /// `spec/vectors/identity.json`, `moves`: made and judged by the independent generator.
    #[test]
    fn move_vectors() {
        let doc = &vectors::identity()["moves"];
        let keys = vectors::server_keys(&doc["keys"]);
        let now = doc["now_ms"].as_u64().unwrap();
        for case in doc["cases"].as_array().unwrap() {
            let from = vectors::attestation(&case["from_attestation"], &keys, now);
            let to = vectors::attestation(&case["to_attestation"], &keys, now);
            let result = AccountMove::verify(case["move"].as_object().unwrap(), &from, &to);
            let reason = result.err().map(|error| match error {
                MoveError::Malformed(_) => "malformed",
                MoveError::SameAccount => "same_account",
                MoveError::BadIdentityKey => "bad_identity_key",
                MoveError::Signature => "bad_signature",
                MoveError::WrongAttestation { .. } => "wrong_attestation",
                MoveError::Revoked(_) => "revoked",
                MoveError::KeyMismatch(_) => "key_mismatch",
                MoveError::AttestedAfterMove => "attested_after_move",
            });
            vectors::check_verdict(case, reason);
        }
    }
}
