//! Every test case, grouped by area, with stable ids `area.name`.

mod control;
mod devices;
mod e2e;
mod events;
mod identity;
mod joins;
mod keys;
mod log;
mod media;
mod replica;
mod request_auth;
mod submit;
mod transactions;
mod trust;
mod visibility;
mod voice;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::{CaseResult, Context, Profile};

/// A case's body.
pub type Run =
    Box<dyn Fn(Arc<Context>) -> Pin<Box<dyn Future<Output = CaseResult> + Send>> + Send + Sync>;

/// One test case.
pub struct Case {
    /// Stable id, `area.name`.
    pub id: String,
    /// The least profile that runs it.
    pub profile: Profile,
    /// The body.
    pub run: Run,
}

/// Registers `area::name` as the case `area.name`.
macro_rules! case {
    ($profile:ident, $area:ident :: $name:ident) => {
        Case {
            id: concat!(stringify!($area), ".", stringify!($name)).to_owned(),
            profile: Profile::$profile,
            run: Box::new(|context| Box::pin($area::$name(context))),
        }
    };
}

/// All cases, in the order they run.
pub fn all() -> Vec<Case> {
    let mut cases = vec![
        case!(Core, control::creates_users_and_refuses_duplicates),
        case!(Core, control::refuses_unknown_users),
        case!(Core, keys::document_is_served),
        case!(Core, keys::document_names_the_server),
        case!(Core, keys::document_is_self_signed),
        case!(Core, keys::document_validity_is_bounded),
        case!(Core, keys::keys_are_ed25519_points),
        case!(Core, keys::unknown_paths_answer_json_errors),
    ];
    cases.extend(request_auth::cases());
    cases.extend(events::cases());
    cases.extend([
        case!(Core, joins::join_answers_event_snapshot_and_history),
        case!(Core, joins::a_replayed_join_repeats_its_answer_and_is_refused_after_a_ban),
        case!(Core, joins::join_event_carries_both_signatures),
        case!(Core, joins::snapshot_is_host_signed_at_the_join),
        case!(Core, joins::snapshot_lists_the_new_member),
        case!(Core, joins::history_verifies_and_chains),
        case!(Core, joins::unknown_invite_is_refused),
        case!(Core, joins::user_of_another_server_is_refused),
        case!(Core, joins::join_must_carry_a_member_join),
        case!(Core, joins::joining_twice_is_refused),
        case!(Core, joins::banned_user_cannot_join),
        case!(Core, joins::invite_lookup_names_the_guild),
        case!(Core, submit::message_is_sequenced_and_signed_by_both),
        case!(Core, submit::a_channel_id_of_another_guild_is_refused),
        case!(Core, submit::message_limits_are_enforced),
        case!(Core, submit::a_channel_is_created_with_its_overwrites),
        case!(Core, submit::sequenced_event_continues_the_chain),
        case!(Core, submit::repeated_transaction_returns_the_same_event),
        case!(Core, submit::local_users_see_remote_messages),
        case!(Core, submit::sequenced_events_are_pushed_to_member_servers),
        case!(Core, submit::non_member_is_refused),
        case!(Core, submit::missing_send_permission_is_refused),
        case!(Core, submit::banned_member_is_refused),
        case!(Core, submit::banned_server_is_refused),
        case!(Core, submit::editing_anothers_message_is_refused),
        case!(Core, submit::deleting_anothers_message_needs_manage_messages),
        case!(Core, submit::kicking_needs_kick_members),
        case!(Core, submit::creating_roles_needs_manage_roles),
        case!(Core, submit::pinning_needs_manage_messages),
        case!(Core, submit::unknown_guild_is_refused),
        case!(Core, submit::member_can_leave),
        case!(Core, log::events_are_consecutive_from_one),
        case!(Core, log::events_chain_by_prev),
        case!(Core, log::every_event_verifies),
        case!(Core, log::limit_is_respected),
        case!(Core, log::head_is_reported),
        case!(Core, log::after_the_head_is_empty),
        case!(Core, log::non_member_servers_cannot_read),
        case!(Core, log::unsigned_reads_are_refused),
        case!(Core, log::state_snapshot_is_signed),
        case!(Core, transactions::repeated_transaction_gets_the_same_answer),
        case!(Core, transactions::only_the_host_may_push_its_events),
        case!(Core, transactions::body_origin_must_be_the_signer),
        case!(Core, transactions::too_many_events_are_refused),
        case!(Core, transactions::unknown_ephemeral_kinds_are_ignored),
        case!(Core, transactions::typing_from_a_member_is_accepted),
        case!(Core, transactions::malformed_json_is_refused),
        case!(Core, visibility::deleted_message_keeps_its_envelope),
        case!(Core, visibility::erased_content_is_not_served),
        case!(Core, visibility::private_messages_reach_peers_without_content),
        case!(Core, visibility::private_messages_are_not_served_by_events),
        case!(Core, visibility::withheld_content_is_released_after_access),
        case!(Core, visibility::deletions_are_never_withheld),
        case!(Core, replica::joins_a_dm_it_is_invited_to),
        case!(Core, replica::applies_pushed_events),
        case!(Core, replica::fills_gaps_from_the_host),
        case!(Core, replica::ignores_duplicates),
        case!(Core, replica::refuses_a_bad_host_signature),
        case!(Core, replica::refuses_a_broken_chain),
        case!(Core, replica::answers_each_event_of_a_transaction_in_order),
        case!(Core, replica::applies_a_run_up_to_a_broken_link),
        case!(Core, replica::keeps_equivocation_evidence),
        case!(Core, replica::refuses_pushes_from_other_servers),
        case!(Core, replica::a_host_cannot_touch_messages_of_other_guilds),
        case!(Core, replica::a_host_cannot_touch_messages_of_other_guilds_not_yet_known),
        case!(Core, identity::attestation_fetch_and_verify),
        case!(Core, identity::revoking_attestation_is_served),
        case!(Core, identity::key_login_valid),
        case!(Core, identity::key_login_replayed),
        case!(Core, identity::key_login_failed_proof_spends_the_challenge),
        case!(Core, identity::key_login_challenge_of_another_user),
        case!(Core, identity::key_login_wrong_server),
        case!(Core, identity::key_login_forged_attestation),
        case!(Core, identity::key_login_attestation_without_consent),
        case!(Core, identity::key_login_unknown_identity),
        case!(Core, identity::key_login_revoked),
        case!(Core, identity::key_login_revocation_cannot_be_rolled_back),
        case!(Core, trust::subscribed_list_denies),
        case!(Core, trust::bad_signature_keeps_previous),
        case!(Core, trust::older_list_keeps_previous),
        case!(Core, e2e::key_query_serves_attested_devices),
        case!(Core, e2e::device_list_hash_is_the_spec_formula),
        case!(Core, e2e::new_device_changes_the_served_hash),
        case!(Core, e2e::claim_hands_out_each_one_time_key_once_then_the_fallback),
        case!(Core, e2e::claims_are_limited_per_claimer),
        case!(Core, e2e::claimer_must_be_from_the_requesting_server),
        case!(Core, e2e::to_device_is_delivered_into_the_inbox),
        case!(Core, e2e::to_device_replay_returns_the_first_answer),
        case!(Core, e2e::stale_device_list_stores_nothing),
        case!(Core, e2e::to_device_refuses_content_other_than_olm),
        case!(Core, e2e::invalid_share_refuses_the_whole_send),
        case!(Core, e2e::to_device_sender_must_be_from_the_requesting_server),
        case!(Core, e2e::inbox_keeps_messages_until_acknowledged),
        case!(Core, voice::token_is_granted_to_a_remote_member),
        case!(Core, voice::connect_is_required),
        case!(Core, voice::publishing_follows_speak_and_stream),
        case!(Core, voice::banned_user_and_server_are_refused),
        case!(Core, voice::non_member_is_refused),
        case!(Core, voice::text_channel_is_refused),
        case!(Core, voice::user_of_another_server_is_refused),
        case!(Core, voice::unknown_guild_is_refused),
        case!(Core, voice::moderation_is_granted_with_mute_members),
        case!(Core, voice::moderation_needs_the_permission),
        case!(Core, voice::moderation_by_a_non_member_is_refused),
        case!(Core, media::attachment_is_served_to_a_member_server),
        case!(Core, media::non_member_server_is_refused),
        case!(Core, media::unknown_media_is_not_found),
        // Notifications only make clients look again sooner (17.4): optional for interworking.
        case!(Full, e2e::device_list_change_is_notified_to_a_querying_server),
        // Last: by now the target has fetched the peer's keys, and a notary answers from cache.
        case!(Full, keys::notary_answers_with_countersigned_documents),
    ]);
    cases
}
