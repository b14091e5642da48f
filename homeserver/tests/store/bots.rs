//! Store cases: bot applications and snowflakes.

use guildhall_homeserver::store::{ApplicationRow, SnowflakeTarget};
use guildhall_spec::UserId;

use crate::engines::on_both_engines;

fn user(name: &str) -> UserId {
    UserId::parse(&format!("@{name}:example.org")).unwrap()
}

fn application(id: u64, bot: &str, owner: &UserId) -> ApplicationRow {
    ApplicationRow {
        application_id: id,
        bot_user: user(bot),
        owner: owner.clone(),
        name: bot.to_owned(),
        description: String::new(),
        public: false,
        intents: 0,
        created_ts: 1_700_000_000_000 + id,
    }
}

fn target(kind: &str, guild: &str, object: &str) -> SnowflakeTarget {
    SnowflakeTarget { kind: kind.into(), guild_id: guild.into(), object_id: object.into() }
}

on_both_engines! {
    async fn an_application_brings_its_bot_account_and_names_stay_unique(store: Store) {
        let alice = user("alice");
        store.create_user(&alice, "hash").await.unwrap().unwrap();
        let helper = application(1 << 40, "helper", &alice);
        assert!(store.create_application(&helper).await.unwrap());
        let account = store.user(&helper.bot_user).await.unwrap().expect("the bot's account");
        assert!(account.password_hash.is_empty(), "no password: a bot signs in with its token");
        assert_eq!(account.display_name.as_deref(), Some("helper"));
        assert!(!account.is_admin);

        // The same username again, or the same id for another bot: nothing is created.
        assert!(!store.create_application(&application(2 << 40, "helper", &alice)).await.unwrap());
        assert!(!store.create_application(&application(1 << 40, "other", &alice)).await.unwrap());
        assert!(store.user(&user("other")).await.unwrap().is_none(), "no half-made bot");

        assert_eq!(store.application(1 << 40).await.unwrap(), Some(helper.clone()));
        assert_eq!(store.application_of_bot(&helper.bot_user).await.unwrap(), Some(helper.clone()));
        assert_eq!(store.application_of_bot(&alice).await.unwrap(), None);
        let second = application(3 << 40, "second", &alice);
        assert!(store.create_application(&second).await.unwrap());
        assert_eq!(store.applications_of(&alice).await.unwrap(), [helper.clone(), second]);

        let mut granted = helper.clone();
        granted.intents = 1 << 15;
        granted.public = true;
        assert!(store.update_application(&granted).await.unwrap());
        assert_eq!(store.application(1 << 40).await.unwrap(), Some(granted));
        assert!(!store.update_application(&application(9, "ghost", &alice)).await.unwrap());
    }
}

on_both_engines! {
    async fn a_snowflake_names_one_object_and_an_object_keeps_its_snowflake(store: Store) {
        let channel = target("channel", "!g1:example.org", "general");
        let same_id_elsewhere = target("channel", "!g2:example.org", "general");
        assert_eq!(store.snowflake_of(&channel).await.unwrap(), None);
        assert_eq!(store.assign_snowflake(&channel, 1000).await.unwrap(), Some(1000));
        // Asked again with another candidate: the first stays.
        assert_eq!(store.assign_snowflake(&channel, 2000).await.unwrap(), Some(1000));
        // A candidate another object holds is refused; channels of two guilds never alias.
        assert_eq!(store.assign_snowflake(&same_id_elsewhere, 1000).await.unwrap(), None);
        assert_eq!(store.assign_snowflake(&same_id_elsewhere, 3000).await.unwrap(), Some(3000));
        assert_eq!(store.snowflake_target(1000).await.unwrap(), Some(channel.clone()));
        assert_eq!(store.snowflake_target(3000).await.unwrap(), Some(same_id_elsewhere));
        assert_eq!(store.snowflake_target(4000).await.unwrap(), None);
        // The full 63 bits survive the round trip.
        let big = target("message", "!g1:example.org", "$event");
        let large = (1_u64 << 62) + 12_345;
        assert_eq!(store.assign_snowflake(&big, large).await.unwrap(), Some(large));
        assert_eq!(store.snowflake_target(large).await.unwrap(), Some(big));
    }
}
