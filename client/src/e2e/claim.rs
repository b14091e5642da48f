//! Claiming keys to start sessions with (spec 17.3 `POST /keys/claim`): at most a burst of one
//! user's devices per request, users claimed for alone once a request with others is refused,
//! and `retry_after_ms` waited out within bounds, so that one user's limit fails only that
//! user's share.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use guildhall_identity::device::DeviceKeys;
use guildhall_identity::e2e::KeyObject;
use guildhall_spec::{DeviceId, UserId, base64url};
use reqwest::Method;
use vodozemac::Curve25519PublicKey;
use vodozemac::olm::SessionConfig;

use super::send::{SendReport, ShareFailure, Target};
use super::store::StoredSession;
use super::wire::{ClaimRequest, ClaimResponse};
use super::{Device, now_ms};
use crate::error::Error;
use crate::session::Session;

/// Devices in one claim (spec 17.10).
const DEVICES_PER_CLAIM: usize = 100;
/// Devices of one user in one claim: the default burst of the claim limit (spec 17.3). A
/// user with more devices without a session is claimed for over several requests.
const CLAIM_BURST: usize = 20;
/// The longest a send waits, in all, for claim limits to pass (`retry_after_ms`).
const MAX_CLAIM_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Devices of one user to claim keys for, with their certified keys.
type ClaimDevices = Vec<(DeviceId, DeviceKeys)>;

impl Device {
    /// Claims keys for the devices without a session (and for `fresh`) and starts sessions
    /// with them. A user any of whose devices gets no session is taken out of `targets` and
    /// reported: a share goes to every device or to none.
    pub(super) async fn ensure_sessions(
        &mut self,
        session: &Session,
        targets: &mut BTreeMap<UserId, Target>,
        fresh: Option<(UserId, DeviceId)>,
        report: &mut SendReport,
    ) {
        let mut queue: BTreeMap<UserId, VecDeque<(DeviceId, DeviceKeys)>> = BTreeMap::new();
        for (user, target) in targets.iter() {
            for (device_id, keys) in &target.devices {
                let is_fresh = fresh.as_ref().is_some_and(|(u, d)| u == user && d == device_id);
                if is_fresh || !self.contents.sessions.contains_key(&keys.curve25519) {
                    let devices = queue.entry(user.clone()).or_default();
                    devices.push_back((device_id.clone(), keys.clone()));
                }
            }
        }
        let mut failed: BTreeMap<UserId, ShareFailure> = BTreeMap::new();
        let mut missing: BTreeMap<UserId, Vec<DeviceId>> = BTreeMap::new();
        // Users whose keys are claimed in requests of their own, after a request with them
        // and others was refused: one user's limit must not fail everyone's share.
        let mut alone: BTreeSet<UserId> = BTreeSet::new();
        let mut waited = std::time::Duration::ZERO;
        while let Some(request) = next_claim(&mut queue, &alone) {
            let body = ClaimRequest {
                one_time_keys: request
                    .iter()
                    .map(|(user, devices)| {
                        (user.clone(), devices.iter().map(|(id, _)| id.clone()).collect())
                    })
                    .collect(),
            };
            let answer: ClaimResponse =
                match session.call(Method::POST, &["keys", "claim"], &body).await {
                    Ok(answer) => answer,
                    Err(error) => {
                        let limited = matches!(&error, Error::Refused { status: 400 | 429, .. });
                        let retry_after = match &error {
                            Error::Refused { retry_after_ms: Some(ms), .. } => {
                                Some(std::time::Duration::from_millis(*ms))
                            }
                            _ => None,
                        };
                        let single = request.len() == 1;
                        let wait = retry_after.filter(|wait| waited + *wait <= MAX_CLAIM_WAIT);
                        if limited && (!single || wait.is_some()) {
                            if let Some(wait) = wait.filter(|_| single) {
                                waited += wait;
                                tokio::time::sleep(wait).await;
                            }
                            for (user, devices) in request.into_iter().rev() {
                                let queued = queue.entry(user.clone()).or_default();
                                for device in devices.into_iter().rev() {
                                    queued.push_front(device);
                                }
                                alone.insert(user);
                            }
                            continue;
                        }
                        for (user, _) in request {
                            queue.remove(&user);
                            failed.insert(user, ShareFailure::Request(error.to_string()));
                        }
                        continue;
                    }
                };
            for (user, failure) in answer.failures {
                queue.remove(&user);
                failed.insert(user, ShareFailure::KeysUnavailable(failure));
            }
            for (user, devices) in request {
                for (device_id, keys) in devices {
                    let object =
                        answer.one_time_keys.get(&user).and_then(|devices| devices.get(&device_id));
                    let Some(object) = object else {
                        missing.entry(user.clone()).or_default().push(device_id);
                        continue;
                    };
                    let verified =
                        KeyObject::verify(object, &user, device_id.as_str(), &keys.ed25519)
                            .map_err(|error| error.to_string())
                            .and_then(|object| {
                                base64url::decode_array::<32>(&object.key)
                                    .ok_or_else(|| "key".to_owned())
                            });
                    match verified {
                        Ok(one_time_key) => {
                            if let Err(error) = self.start_session(&keys.curve25519, one_time_key) {
                                failed.insert(user.clone(), error);
                            }
                        }
                        Err(reason) => {
                            let failure =
                                ShareFailure::InvalidKeyObject { device: device_id, reason };
                            failed.insert(user.clone(), failure);
                        }
                    }
                }
            }
        }
        for (user, devices) in missing {
            failed.entry(user).or_insert(ShareFailure::NoKeys(devices));
        }
        for (user, failure) in failed {
            if targets.remove(&user).is_some() {
                report.failed.insert(user, failure);
            }
        }
    }

    /// Starts an outbound session with the device whose certified Curve25519 key is
    /// `curve25519`, from a verified one-time (or fallback) key; it becomes the newest.
    fn start_session(
        &mut self,
        curve25519: &str,
        one_time_key: [u8; 32],
    ) -> Result<(), ShareFailure> {
        let identity_key = base64url::decode_array::<32>(curve25519)
            .map(Curve25519PublicKey::from_bytes)
            .ok_or_else(|| ShareFailure::NotDelivered("a certified key does not decode".into()))?;
        let session = self
            .contents
            .account
            .create_outbound_session(
                SessionConfig::version_1(),
                identity_key,
                Curve25519PublicKey::from_bytes(one_time_key),
            )
            .map_err(|error| ShareFailure::NotDelivered(format!("no session: {error}")))?;
        self.add_session(curve25519, StoredSession { session, created_ts: now_ms() });
        Ok(())
    }
}

/// The next claim request: up to [`CLAIM_BURST`] devices of each user (at most
/// [`DEVICES_PER_CLAIM`] in all), or, when a user is to be claimed for `alone`, only theirs.
/// Takes the devices out of `queue`.
fn next_claim(
    queue: &mut BTreeMap<UserId, VecDeque<(DeviceId, DeviceKeys)>>,
    alone: &BTreeSet<UserId>,
) -> Option<Vec<(UserId, ClaimDevices)>> {
    queue.retain(|_, devices| !devices.is_empty());
    let only = queue.keys().find(|user| alone.contains(*user)).cloned();
    let mut request = Vec::new();
    let mut total = 0;
    for (user, devices) in queue.iter_mut() {
        if only.as_ref().is_some_and(|only| only != user) {
            continue;
        }
        let count = devices.len().min(CLAIM_BURST).min(DEVICES_PER_CLAIM - total);
        if count == 0 {
            break;
        }
        total += count;
        request.push((user.clone(), devices.drain(..count).collect()));
    }
    queue.retain(|_, devices| !devices.is_empty());
    (!request.is_empty()).then_some(request)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn devices(count: usize) -> VecDeque<(DeviceId, DeviceKeys)> {
        let keys = DeviceKeys { curve25519: "C".into(), ed25519: "E".into() };
        (0..count).map(|n| (DeviceId::parse(&format!("D{n}")).unwrap(), keys.clone())).collect()
    }

    fn user(name: &str) -> UserId {
        UserId::parse(&format!("@{name}:a.example")).unwrap()
    }

    /// The devices per user of each request `next_claim` makes until the queue is empty.
    fn rounds(
        mut queue: BTreeMap<UserId, VecDeque<(DeviceId, DeviceKeys)>>,
        alone: &BTreeSet<UserId>,
    ) -> Vec<Vec<(String, usize)>> {
        let mut rounds = Vec::new();
        while let Some(request) = next_claim(&mut queue, alone) {
            let sizes = request.iter().map(|(u, d)| (u.localpart().to_owned(), d.len()));
            rounds.push(sizes.collect());
        }
        rounds
    }

    #[test]
    fn claims_take_at_most_a_burst_of_one_user_and_a_hundred_devices() {
        let queue = BTreeMap::from([(user("bob"), devices(45)), (user("carol"), devices(3))]);
        let expected = [vec![("bob", 20), ("carol", 3)], vec![("bob", 20)], vec![("bob", 5)]];
        let expected: Vec<Vec<(String, usize)>> = expected
            .iter()
            .map(|round| round.iter().map(|(u, n)| ((*u).to_owned(), *n)).collect())
            .collect();
        assert_eq!(rounds(queue, &BTreeSet::new()), expected);

        let many: BTreeMap<_, _> = (0..6).map(|n| (user(&format!("u{n}")), devices(20))).collect();
        let sizes: Vec<usize> = rounds(many, &BTreeSet::new())
            .iter()
            .map(|round| round.iter().map(|(_, n)| n).sum())
            .collect();
        assert_eq!(sizes, [100, 20]);

        // A user claimed for alone has requests of their own.
        let queue = BTreeMap::from([(user("bob"), devices(2)), (user("carol"), devices(3))]);
        let alone = BTreeSet::from([user("bob"), user("carol")]);
        let expected = vec![vec![("bob".to_owned(), 2)], vec![("carol".to_owned(), 3)]];
        assert_eq!(rounds(queue, &alone), expected);
    }
}
