//! The web client every server serves at `/`, driven in a real headless Chromium as people use
//! it: they register, create a guild, hand out an invite link, join from another server, and
//! talk. Screenshots of the main screens go to `<target>/artefacts/web/`.

use std::path::PathBuf;

use crate::federation::federating;
use crate::harness::browser::{Browser, Page};
use crate::harness::{PASSWORD, Server, StatusCode, User, json};

const DESKTOP: (u32, u32) = (1280, 800);
const PHONE: (u32, u32) = (390, 844);

/// Where screenshots are written (a CI artefact).
fn artefact(name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"), PathBuf::from);
    target.join("artefacts/web").join(name)
}

/// Registers `name` through the page's own form.
async fn register(page: &Page, server: &Server, name: &str) {
    page.goto(&format!("{}/", server.base_url())).await;
    page.click("#auth-toggle").await;
    page.fill("input[name=username]", name).await;
    page.fill("input[name=password]", PASSWORD).await;
    page.click("#auth-submit").await;
    page.wait_for_element("#create-guild").await;
}

/// Types a message into the composer and sends it with Enter.
async fn say(page: &Page, text: &str) {
    page.fill("#composer", text).await;
    page.press("Enter").await;
}

/// The signed-in user of a page, for the API checks beside the UI.
async fn user_of(page: &Page, server: &Server) -> User {
    let token = page.eval("localStorage.getItem('guildhall.token')").await;
    let token = token.as_str().expect("a stored token");
    let (status, me) = server.client().with_token(token).get("/users/@me").await;
    assert_eq!(status, StatusCode::OK, "the stored token works");
    User::from_auth(server.client(), &json!({"token": token, "user": me}))
}

#[tokio::test]
async fn two_people_on_two_servers_meet_through_an_invite_link_and_talk() {
    let (a, b) = (federating().await, federating().await);
    let browser = Browser::start().await;

    // Alice registers on A and creates a guild.
    let alice = browser.page(DESKTOP.0, DESKTOP.1).await;
    register(&alice, &a, "alice").await;
    alice.click("#create-guild").await;
    alice.fill("input[name=guild-name]", "Lobby").await;
    alice.click(".dialog button[type=submit]").await;
    alice.wait_for_text("#guild-name", "Lobby").await;
    alice.wait_for_text("#channel-name", "#general").await;
    alice.click("#invite-people").await;
    alice.wait_for_element("#invite-link").await;
    let link = alice.eval("document.querySelector('#invite-link').value").await;
    let link = link.as_str().expect("an invite link").to_owned();
    assert!(link.starts_with(&format!("{}/invite/", a.base_url())), "the link names A: {link}");
    alice.press("Escape").await;

    // Bob registers on B, opens the link (A's page), says where his account is, and joins.
    let bob = browser.page(DESKTOP.0, DESKTOP.1).await;
    register(&bob, &b, "bob").await;
    bob.goto(&link).await;
    bob.fill("input[name=home-server]", &b.name()).await;
    bob.click("#open-elsewhere").await;
    bob.wait_for_text(".dialog h2", "You are invited").await;
    bob.click(".dialog button[type=submit]").await;
    bob.wait_for_text("#guild-name", "Lobby").await;
    bob.wait_for_text("#channel-name", "#general").await;

    // They talk: each sees the other's messages live.
    say(&alice, "hello **bob**").await;
    bob.wait_for_text(".message .content", "hello bob").await;
    assert_eq!(bob.text(".message .content strong").await, "bob", "markdown is rendered");
    say(&bob, "hi alice").await;
    alice.wait_for_text(".message .content", "hi alice").await;

    // Bob edits his message; Alice sees the edit.
    let bobs = format!(".message[data-author=\"{}\"]", b.user_id("bob"));
    bob.click(&format!("{bobs} [data-action=edit]")).await;
    bob.fill(".edit-box", "hi alice, how are you?").await;
    bob.press("Enter").await;
    alice.wait_for_text(".message .content", "how are you?").await;
    alice.wait_for_text(&format!("{bobs} .edited"), "edited").await;

    // Alice reacts to it; Bob sees the reaction.
    alice.click(&format!("{bobs} [data-action=react]")).await;
    alice.click(&format!("{bobs} .pick[data-emoji=\"🎉\"]")).await;
    bob.wait_for_text(".reaction[data-emoji=\"🎉\"]", "1").await;

    // Typing shows on the other side.
    bob.fill("#composer", "typing on B").await;
    alice.wait_for_text("#typing", "is typing").await;

    alice.screenshot(&artefact("chat-desktop.png")).await;

    // A reload keeps the session and shows the history from the server.
    alice.reload().await;
    alice.wait_for_text(".message .content", "how are you?").await;
    alice.wait_for_text(".reaction[data-emoji=\"🎉\"]", "1").await;

    // The same screen on a phone: the channel list slides in from the menu.
    alice.resize(PHONE.0, PHONE.1).await;
    alice.screenshot(&artefact("chat-phone.png")).await;
    alice.click(".chat-header .menu").await;
    alice.wait_for("document.querySelector('.app.show-nav')", "the navigation to open").await;
    alice.screenshot(&artefact("channels-phone.png")).await;
}

#[tokio::test]
async fn what_the_client_hides_the_api_refuses() {
    let a = Server::start().await;
    let browser = Browser::start().await;
    let owner = browser.page(DESKTOP.0, DESKTOP.1).await;
    register(&owner, &a, "owner").await;
    owner.click("#create-guild").await;
    owner.fill("input[name=guild-name]", "Club").await;
    owner.click(".dialog button[type=submit]").await;
    owner.wait_for_text("#guild-name", "Club").await;

    // The owner makes a private channel in the dialog.
    owner.click("#create-channel").await;
    owner.fill("input[name=channel-name]", "staff").await;
    owner.click("input[name=private]").await;
    owner.click(".dialog button[type=submit]").await;
    owner.wait_for_text("#channel-name", "#staff").await;
    let owner_user = user_of(&owner, &a).await;
    let guilds = owner_user.get("/users/@me/guilds").await.1;
    let guild_id = guilds["guilds"][0]["id"].as_str().expect("a guild").to_owned();
    let (_, channels) = owner_user.get(&format!("/guilds/{guild_id}/channels")).await;
    let channel_named = |name: &str| {
        channels["channels"]
            .as_array()
            .and_then(|list| list.iter().find(|c| c["name"] == name))
            .and_then(|c| c["id"].as_str())
            .map(str::to_owned)
            .unwrap_or_else(|| panic!("no channel {name}"))
    };
    let (staff, general) = (channel_named("staff"), channel_named("general"));
    let code = owner_user.invite(&general).await;

    // A member joins: the private channel and the channel-creation button are not shown...
    let member = browser.page(DESKTOP.0, DESKTOP.1).await;
    register(&member, &a, "member").await;
    member.goto(&format!("{}/invite/{code}", a.base_url())).await;
    member.wait_for_text(".dialog h2", "You are invited").await;
    member.click(".dialog button[type=submit]").await;
    member.wait_for_text("#guild-name", "Club").await;
    member.wait_for_element("a.channel[data-name=general]").await;
    let shown =
        member.eval("[...document.querySelectorAll('a.channel')].map(c => c.dataset.name)").await;
    assert_eq!(shown, json!(["general"]), "the member sees only what they may view");
    assert_eq!(member.eval("!!document.querySelector('#create-channel')").await, json!(false));

    // ...and the API refuses both to them.
    let member_user = user_of(&member, &a).await;
    let (status, _) = member_user
        .post(&format!("/channels/{staff}/messages"), json!({"content": "let me in"}))
        .await;
    assert!(status == StatusCode::FORBIDDEN || status == StatusCode::NOT_FOUND, "{status}");
    let (status, _) =
        member_user.post(&format!("/guilds/{guild_id}/channels"), json!({"name": "mine"})).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn the_client_reconnects_by_itself_after_the_server_restarts() {
    let mut a = Server::start().await;
    let browser = Browser::start().await;
    let page = browser.page(DESKTOP.0, DESKTOP.1).await;
    register(&page, &a, "alice").await;
    page.click("#create-guild").await;
    page.fill("input[name=guild-name]", "Persistent").await;
    page.click(".dialog button[type=submit]").await;
    page.wait_for_text("#channel-name", "#general").await;
    say(&page, "before the restart").await;
    page.wait_for_text(".message .content", "before the restart").await;
    let alice = user_of(&page, &a).await;
    let channel = page.eval("decodeURIComponent(location.hash.split('/')[3])").await;
    let channel = channel.as_str().expect("a channel in the route").to_owned();

    a.stop();
    page.wait_for("document.body.dataset.connection !== 'online'", "the client to notice").await;
    a.launch().await;
    page.wait_for("document.body.dataset.connection === 'online'", "the client to reconnect").await;

    // Sent by another client after the restart: the page shows it live, and still has the old.
    alice.send(&channel, "after the restart").await;
    page.wait_for_text(".message .content", "after the restart").await;
    page.wait_for_text(".message .content", "before the restart").await;
}
