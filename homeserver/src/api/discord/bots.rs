//! Bot applications, on the native API (`/api/v1/applications`) and the command line.
//!
//! An owner creates an application and with it a bot user (`@{username}:{server}`, an account
//! with no password); its token is a login session of the bot user, shown once and sent as
//! `Authorization: Bot <token>`. A guild admin adds the bot to a guild with
//! `POST /api/v1/applications/{id}/authorize` (MANAGE_GUILD there; the owner only, unless the
//! application is public), which makes the bot join through an invite the admin creates and
//! gives it a role with the permissions asked for, all through the ordinary guild write path.
//! Privileged intents are granted by the owner or the server's operator.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use guildhall_spec::content::GuildKind;
use guildhall_spec::{GuildId, Permissions, UserId};
use serde::Deserialize;
use serde_json::{Value, json};

use super::objects::Render;
use super::snowflake::{DISCORD_EPOCH_MS, Target};
use crate::AppState;
use crate::api::{AuthUser, Json, OptionalJson, channels, guilds, parse_id};
use crate::error::{ApiError, ApiResult};
use crate::store::{ApplicationRow, now_ms};

/// Gateway intents (Discord's bits).
pub const GUILDS: u64 = 1 << 0;
/// Member joins, updates and removals (privileged).
pub const GUILD_MEMBERS: u64 = 1 << 1;
/// Bans.
pub const GUILD_MODERATION: u64 = 1 << 2;
/// Presence updates (privileged).
pub const GUILD_PRESENCES: u64 = 1 << 8;
/// Messages in guilds.
pub const GUILD_MESSAGES: u64 = 1 << 9;
/// Reactions in guilds.
pub const GUILD_MESSAGE_REACTIONS: u64 = 1 << 10;
/// Typing in guilds.
pub const GUILD_MESSAGE_TYPING: u64 = 1 << 11;
/// Messages in DMs.
pub const DIRECT_MESSAGES: u64 = 1 << 12;
/// Reactions in DMs.
pub const DIRECT_MESSAGE_REACTIONS: u64 = 1 << 13;
/// Typing in DMs.
pub const DIRECT_MESSAGE_TYPING: u64 = 1 << 14;
/// Message content in guilds (privileged).
pub const MESSAGE_CONTENT: u64 = 1 << 15;
/// The privileged intents, which a bot must be granted.
pub const PRIVILEGED: u64 = GUILD_MEMBERS | GUILD_PRESENCES | MESSAGE_CONTENT;

/// Names of the privileged intents, as the API and CLI take them.
const INTENT_NAMES: [(&str, u64); 3] = [
    ("members", GUILD_MEMBERS),
    ("presences", GUILD_PRESENCES),
    ("message_content", MESSAGE_CONTENT),
];

/// What every bot token starts with: the native API and gateway refuse them.
const TOKEN_PREFIX: &str = "gh_bot_";

/// Whether a token is a bot's.
pub fn is_bot_token(token: &str) -> bool {
    token.starts_with(TOKEN_PREFIX)
}

/// The longest application name (it is the bot's display name, whose limit it shares).
const MAX_NAME_CHARS: usize = 64;
/// The longest description.
const MAX_DESCRIPTION_CHARS: usize = 400;

/// The application routes of the native API (`/api/v1/applications…`).
pub(crate) fn router() -> axum::Router<AppState> {
    use axum::routing::{get, post};
    axum::Router::new()
        .route("/applications", get(list).post(create_application))
        .route("/applications/{application_id}", get(get_one).patch(update))
        .route("/applications/{application_id}/token", post(reset_token))
        .route("/applications/{application_id}/authorize", post(authorize))
        .route("/applications/{application_id}/join", post(join))
}

/// The names of the privileged intents in `bits`.
pub fn intent_names(bits: u64) -> Vec<&'static str> {
    INTENT_NAMES.iter().filter(|(_, bit)| bits & bit != 0).map(|(name, _)| *name).collect()
}

/// The bits of privileged intents named `members`, `presences`, `message_content`.
pub fn intent_bits(names: &[String]) -> ApiResult<u64> {
    names.iter().filter(|name| !name.is_empty()).try_fold(0, |bits, name| {
        INTENT_NAMES
            .iter()
            .find(|(known, _)| known == name)
            .map(|(_, bit)| bits | bit)
            .ok_or_else(|| {
                ApiError::bad_request(format!(
                    "unknown intent {name:?}; privileged intents are members, presences, message_content"
                ))
            })
    })
}

/// Refuses a bot a request that needs a privileged intent it was not granted (a person's own
/// token has them all).
pub async fn require_intent(state: &AppState, user: &UserId, intent: u64) -> ApiResult<()> {
    match state.store.application_of_bot(user).await? {
        Some(application) if application.intents & intent == 0 => {
            Err(ApiError::forbidden("this bot was not granted the privileged intent this needs"))
        }
        _ => Ok(()),
    }
}

/// Whether a user may see message content: a bot only with the intent.
pub async fn sees_content(state: &AppState, user: &UserId) -> ApiResult<bool> {
    Ok(state
        .store
        .application_of_bot(user)
        .await?
        .is_none_or(|application| application.intents & MESSAGE_CONTENT != 0))
}

/// The application as `GET /oauth2/applications/@me` shows it.
pub async fn application_object(
    state: &AppState,
    application: &ApplicationRow,
) -> ApiResult<Value> {
    let render = Render::new(state);
    Ok(json!({
        "id": application.application_id.to_string(),
        "name": application.name,
        "icon": null,
        "description": application.description,
        "summary": "",
        "type": null,
        "bot_public": application.public,
        "bot_require_code_grant": false,
        "verify_key": "",
        "flags": application_flags(application.intents),
        "owner": render.user(&application.owner).await?,
        "team": null,
        "bot": render.user(&application.bot_user).await?,
    }))
}

/// Discord's application flags for granted privileged intents (the "limited" variants).
fn application_flags(intents: u64) -> u64 {
    let mut flags = 0;
    if intents & GUILD_PRESENCES != 0 {
        flags |= 1 << 13;
    }
    if intents & GUILD_MEMBERS != 0 {
        flags |= 1 << 15;
    }
    if intents & MESSAGE_CONTENT != 0 {
        flags |= 1 << 19;
    }
    flags
}

/// The native view of an application.
fn view(application: &ApplicationRow) -> Value {
    json!({
        "id": application.application_id.to_string(),
        "bot_user_id": application.bot_user,
        "owner": application.owner,
        "name": application.name,
        "description": application.description,
        "public": application.public,
        "intents": intent_names(application.intents),
        "created_ts": application.created_ts,
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewApplication {
    /// Also the bot's display name.
    name: String,
    /// The bot user's localpart.
    username: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    public: bool,
    /// Privileged intents to grant at once (the owner may).
    #[serde(default)]
    intents: Vec<String>,
}

/// Creates an application, its bot user and the bot's first token.
pub async fn create(
    state: &AppState,
    owner: &UserId,
    name: &str,
    username: &str,
    description: &str,
    public: bool,
    intents: u64,
) -> ApiResult<(ApplicationRow, String)> {
    let name = name.trim();
    let one_line = |text: &str| !text.chars().any(char::is_control);
    if name.is_empty()
        || name.chars().count() > MAX_NAME_CHARS
        || !one_line(name)
        || description.chars().count() > MAX_DESCRIPTION_CHARS
    {
        return Err(ApiError::bad_request(format!(
            "name is 1-{MAX_NAME_CHARS} characters on one line, description at most {MAX_DESCRIPTION_CHARS}"
        )));
    }
    let most = state.config.bots.max_per_user as usize;
    if state.store.applications_of(owner).await?.len() >= most {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "too_many_applications",
            format!("a user owns at most {most} bots"),
        ));
    }
    let bot_user = UserId::new(username, &state.server_name).map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_username",
            "usernames are 1-64 of a-z 0-9 . _ = -",
        )
    })?;
    let created_ts = now_ms();
    let mut application = ApplicationRow {
        application_id: 0,
        bot_user: bot_user.clone(),
        owner: owner.clone(),
        name: name.to_owned(),
        description: description.to_owned(),
        public,
        intents,
        created_ts,
    };
    for _ in 0..8 {
        let id = ((created_ts.saturating_sub(DISCORD_EPOCH_MS)) << 22)
            | (rand::random::<u64>() & 0x3f_ffff);
        application.application_id = id;
        if state.store.application(id).await?.is_some() {
            continue;
        }
        if !state.store.create_application(&application).await? {
            if state.store.user(&bot_user).await?.is_some() {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "username_taken",
                    "that username is taken",
                ));
            }
            continue;
        }
        // The bot user's snowflake is its application's id, as on Discord.
        state.snowflakes.claim(&Target::User(bot_user.clone()), id).await?;
        let token = new_token(state, &bot_user).await?;
        return Ok((application, token));
    }
    Err(ApiError::internal("no free application id"))
}

/// A fresh bot token (a login session of the bot user).
async fn new_token(state: &AppState, bot: &UserId) -> ApiResult<String> {
    let token = format!("{TOKEN_PREFIX}{}", crate::guilds::random_id(43));
    let session = crate::guilds::random_id(16);
    state
        .store
        .create_session(bot, &session, &crate::api::token_hash(&token), Some("bot token"), None)
        .await?;
    Ok(token)
}

/// `POST /api/v1/applications`.
pub(crate) async fn create_application(
    State(state): State<AppState>,
    auth: AuthUser,
    Json(body): Json<NewApplication>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    // A bot is an account: while registration is closed only the server's admins make them.
    let admin = state.store.user(&auth.user_id).await?.is_some_and(|user| user.is_admin);
    if !state.config.registration.enabled && !admin {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "registration_closed",
            "registration is closed on this server: ask its admins for a bot",
        ));
    }
    let intents = intent_bits(&body.intents)?;
    let (application, token) = create(
        &state,
        &auth.user_id,
        &body.name,
        &body.username,
        &body.description,
        body.public,
        intents,
    )
    .await?;
    Ok((StatusCode::CREATED, Json(json!({"application": view(&application), "token": token}))))
}

/// `GET /api/v1/applications`: the caller's.
pub(crate) async fn list(State(state): State<AppState>, auth: AuthUser) -> ApiResult<Json<Value>> {
    let applications = state.store.applications_of(&auth.user_id).await?;
    Ok(Json(json!({"applications": applications.iter().map(view).collect::<Vec<_>>()})))
}

/// An application the caller owns (or any, for a server admin).
async fn managed(state: &AppState, auth: &AuthUser, id: &str) -> ApiResult<ApplicationRow> {
    let unknown = || ApiError::not_found("unknown_application", "no such application");
    let id: u64 = id.parse().map_err(|_| unknown())?;
    let application = state.store.application(id).await?.ok_or_else(unknown)?;
    if application.owner == auth.user_id {
        return Ok(application);
    }
    let admin = state.store.user(&auth.user_id).await?.is_some_and(|user| user.is_admin);
    if admin { Ok(application) } else { Err(unknown()) }
}

/// `GET /api/v1/applications/{id}`.
pub(crate) async fn get_one(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(view(&managed(&state, &auth, &id).await?)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ApplicationPatch {
    description: Option<String>,
    public: Option<bool>,
    /// The full set of privileged intents granted.
    intents: Option<Vec<String>>,
}

/// `PATCH /api/v1/applications/{id}`: description, public flag, privileged intents (owner or
/// server admin). Sessions opened before keep the intents they identified with.
pub(crate) async fn update(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(id): Path<String>,
    Json(body): Json<ApplicationPatch>,
) -> ApiResult<Json<Value>> {
    let mut application = managed(&state, &auth, &id).await?;
    if let Some(description) = body.description {
        if description.chars().count() > 400 {
            return Err(ApiError::bad_request("description is at most 400 characters"));
        }
        application.description = description;
    }
    if let Some(public) = body.public {
        application.public = public;
    }
    if let Some(intents) = body.intents {
        application.intents = intent_bits(&intents)?;
    }
    state.store.update_application(&application).await?;
    audit_if_admin(&state, &auth, &application, "admin.bot_update").await?;
    Ok(Json(view(&application)))
}

/// `POST /api/v1/applications/{id}/token`: a new bot token; every earlier one is revoked (and
/// its gateway sessions closed).
pub(crate) async fn reset_token(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let application = managed(&state, &auth, &id).await?;
    audit_if_admin(&state, &auth, &application, "admin.bot_token_reset").await?;
    let bot = &application.bot_user;
    for session in state.store.sessions(bot).await? {
        state.store.delete_session(bot, &session.session_id).await?;
        crate::api::auth::login_revoked(&state, bot, &session.session_id).await;
    }
    Ok(Json(json!({"token": new_token(&state, bot).await?})))
}

/// A server admin acting on someone else's bot is written to the audit log.
async fn audit_if_admin(
    state: &AppState,
    auth: &AuthUser,
    application: &ApplicationRow,
    action: &str,
) -> ApiResult<()> {
    if application.owner == auth.user_id {
        return Ok(());
    }
    let target = application.application_id.to_string();
    let detail = json!({"bot": application.bot_user, "intents": intent_names(application.intents)});
    state
        .store
        .audit(crate::store::Audit {
            actor: auth.user_id.as_str(),
            action,
            target: Some(&target),
            detail: Some(&detail),
        })
        .await?;
    Ok(())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct JoinBody {
    /// The invite code.
    code: String,
    /// The server hosting the invite's guild, when it is not this one.
    server: Option<String>,
}

/// `POST /api/v1/applications/{id}/join` with `{"code", "server"?}`: the owner has the bot
/// accept an invite, to a guild here or on any server (how a bot joins a guild whose admins
/// are on another server: they send its owner an invite).
pub(crate) async fn join(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(id): Path<String>,
    Json(body): Json<JoinBody>,
) -> ApiResult<Json<Value>> {
    let application = managed(&state, &auth, &id).await?;
    let bot = AuthUser { user_id: application.bot_user.clone(), session_id: String::new() };
    let query = Query(channels::InviteServer { server: body.server });
    channels::accept_invite(State(state), bot, Path(body.code), query).await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Authorize {
    /// The guild, as a Guildhall id or a snowflake.
    guild_id: String,
    /// The permissions the bot asks for (Discord's bits, as a decimal string).
    #[serde(default)]
    permissions: Permissions,
}

/// `POST /api/v1/applications/{id}/authorize`: a guild admin adds the bot to a guild.
///
/// The admin needs MANAGE_GUILD there (and, to give the bot permissions, what creating and
/// assigning a role needs: MANAGE_ROLES, ranking above it, holding the permissions). The
/// events are the admin's and the bot's own, through the same write path as any other: an
/// invite for one use, the bot's join with it (here or on the guild's host), a role with the
/// permissions named after the bot, and the role given to it.
pub(crate) async fn authorize(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(id): Path<String>,
    Json(body): Json<Authorize>,
) -> ApiResult<Json<Value>> {
    let unknown = || ApiError::not_found("unknown_application", "no such application");
    let application =
        state.store.application(id.parse().map_err(|_| unknown())?).await?.ok_or_else(unknown)?;
    if !application.public && application.owner != auth.user_id {
        return Err(unknown());
    }
    let guild_id = match body.guild_id.parse::<u64>() {
        Ok(snowflake) => match state.snowflakes.resolve(snowflake).await? {
            Some(Target::Guild(guild)) => guild,
            _ => return Err(ApiError::not_found("unknown_guild", "no such guild")),
        },
        Err(_) => parse_id::<GuildId>("guild id", &body.guild_id)?,
    };
    let (guild_id, guild) = guilds::member_guild(&state, &auth, guild_id.as_str()).await?;
    if guild.kind == GuildKind::Dm
        || !guild.base_permissions(&auth.user_id).contains(Permissions::MANAGE_GUILD)
    {
        return Err(ApiError::forbidden("adding a bot needs MANAGE_GUILD"));
    }
    // Everything is checked before anything is written: a refusal leaves no invite, join or
    // role behind.
    let admin = &auth.user_id;
    let owner = guild.owner == *admin;
    let wants_role = body.permissions.bits() != 0;
    let bot = AuthUser { user_id: application.bot_user.clone(), session_id: String::new() };
    let has_role = guild.members.get(&bot.user_id).is_some_and(|member| {
        member
            .roles
            .iter()
            .any(|role| guild.roles.get(role).is_some_and(|r| r.name == application.name))
    });
    if wants_role && !has_role {
        let held = guild.base_permissions(admin);
        if !held.contains(Permissions::MANAGE_ROLES) || !(owner || held.contains(body.permissions))
        {
            return Err(ApiError::forbidden(
                "giving a bot permissions needs MANAGE_ROLES and holding those permissions",
            ));
        }
        if guild.roles.len() >= guildhall_spec::state::MAX_ROLES {
            return Err(ApiError::bad_request("the guild has no room for another role"));
        }
        if !owner && guild.rank(admin) < 2 {
            return Err(ApiError::forbidden("your roles rank too low to give a bot a role"));
        }
    }
    if !guild.members.contains_key(&bot.user_id) {
        let Some(channel) = guild
            .channels
            .keys()
            .find(|channel| {
                guild
                    .channel_permissions(admin, channel)
                    .contains(Permissions::CREATE_INSTANT_INVITE)
            })
            .cloned()
        else {
            return Err(ApiError::forbidden("you may not create an invite in any channel"));
        };
        let invite = channels::NewInvite { max_age_secs: Some(600), max_uses: Some(1) };
        let (_, Json(invite)) = channels::create_invite(
            State(state.clone()),
            auth.clone(),
            Path(channel.to_string()),
            OptionalJson(Some(invite)),
        )
        .await?;
        let code = invite["code"].as_str().unwrap_or_default().to_owned();
        let server = Some(guild_id.host().to_string());
        let joined = channels::accept_invite(
            State(state.clone()),
            bot.clone(),
            Path(code.clone()),
            Query(channels::InviteServer { server }),
        )
        .await;
        if let Err(error) = joined {
            // The invite was for the bot alone: it goes with the failed join.
            let _ = channels::revoke_invite(State(state.clone()), auth.clone(), Path(code)).await;
            return Err(error);
        }
    }
    if wants_role && !has_role {
        // The bot ranks just below the admin who adds it (above every role, and at least 2,
        // for the owner), so that it can create and manage roles below its own, as a bot's
        // role does on Discord.
        let guild = state.guilds.state(&guild_id).await?;
        let position = if owner {
            (guild.roles.values().map(|role| role.position).max().unwrap_or(0) + 1).max(2)
        } else {
            guild.rank(admin) - 1
        };
        let role = guilds::NewRole {
            name: application.name.clone(),
            permissions: body.permissions,
            position: Some(position),
            color: None,
            hoist: None,
            mentionable: None,
        };
        let (_, Json(role)) = guilds::create_role(
            State(state.clone()),
            auth.clone(),
            Path(guild_id.to_string()),
            Json(role),
        )
        .await?;
        let role_id = role["id"].as_str().unwrap_or_default().to_owned();
        let path = Path((guild_id.to_string(), application.bot_user.to_string(), role_id.clone()));
        if let Err(error) = guilds::add_role(State(state.clone()), auth.clone(), path).await {
            let path = Path((guild_id.to_string(), role_id));
            let _ = guilds::delete_role(State(state.clone()), auth.clone(), path).await;
            return Err(error);
        }
    }
    let guild = state.guilds.state(&guild_id).await?;
    Ok(Json(json!({
        "guild_id": guild_id,
        "bot_user_id": application.bot_user,
        "member": guild.members.get(&application.bot_user).map(|member| crate::api::views::member(&guild, &application.bot_user, member)),
    })))
}
