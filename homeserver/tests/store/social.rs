//! Store cases: relationships, blocks and direct-message guilds.

use guildhall_spec::{GuildId, UserId};

use crate::engines::on_both_engines;

fn user(name: &str) -> UserId {
    UserId::parse(&format!("@{name}:example.org")).unwrap()
}

on_both_engines! {
    async fn relationships_have_two_sides_set_and_removed_together(store: Store) {
        let (alice, bob, carol) = (user("alice"), user("bob"), user("carol"));
        store.set_relationship(&alice, &bob, "outgoing", "incoming").await.unwrap();
        assert_eq!(store.relationship(&alice, &bob).await.unwrap().as_deref(), Some("outgoing"));
        assert_eq!(store.relationship(&bob, &alice).await.unwrap().as_deref(), Some("incoming"));
        assert_eq!(store.relationship(&alice, &carol).await.unwrap(), None);

        // Distinct times, so that the order is the one under test.
        tokio::time::sleep(std::time::Duration::from_millis(3)).await;
        store.set_relationship(&carol, &alice, "outgoing", "incoming").await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(3)).await;
        store.set_relationship(&bob, &alice, "friends", "friends").await.unwrap();
        let mine = store.relationships(&alice).await.unwrap();
        let listed: Vec<(&str, &str)> =
            mine.iter().map(|r| (r.other.as_str(), r.state.as_str())).collect();
        assert_eq!(
            listed,
            [("@carol:example.org", "incoming"), ("@bob:example.org", "friends")],
            "oldest first; a change of state starts anew"
        );

        assert!(store.delete_relationship(&bob, &alice).await.unwrap());
        assert_eq!(store.relationship(&alice, &bob).await.unwrap(), None, "both sides went");
        assert_eq!(store.relationship(&bob, &alice).await.unwrap(), None);
        assert!(!store.delete_relationship(&alice, &bob).await.unwrap(), "nothing left");
        assert_eq!(store.relationships(&alice).await.unwrap().len(), 1);
    }
}

on_both_engines! {
    async fn a_block_ends_the_relationship_and_works_both_ways(store: Store) {
        let (alice, bob, carol) = (user("alice"), user("bob"), user("carol"));
        store.set_relationship(&alice, &bob, "friends", "friends").await.unwrap();
        store.block(&alice, &bob).await.unwrap();
        store.block(&alice, &bob).await.unwrap();
        assert_eq!(store.relationship(&bob, &alice).await.unwrap(), None);
        assert!(store.is_blocked_between(&alice, &bob).await.unwrap());
        assert!(store.is_blocked_between(&bob, &alice).await.unwrap());
        assert!(!store.is_blocked_between(&alice, &carol).await.unwrap());

        tokio::time::sleep(std::time::Duration::from_millis(3)).await;
        store.block(&alice, &carol).await.unwrap();
        let blocked = store.blocked_by(&alice).await.unwrap();
        assert_eq!(blocked, [bob.clone(), carol.clone()], "oldest first, once each");
        assert!(store.blocked_by(&bob).await.unwrap().is_empty());

        assert!(!store.unblock(&bob, &alice).await.unwrap(), "bob blocked nobody");
        assert!(store.unblock(&alice, &bob).await.unwrap());
        assert!(!store.unblock(&alice, &bob).await.unwrap(), "already lifted");
        assert!(!store.is_blocked_between(&bob, &alice).await.unwrap());
        assert_eq!(store.blocked_by(&alice).await.unwrap(), [carol]);
    }
}

on_both_engines! {
    async fn a_pair_has_one_direct_message_guild_in_either_order(store: Store) {
        let (alice, bob, carol) = (user("alice"), user("bob"), user("carol"));
        let first = GuildId::parse("!dm1:example.org").unwrap();
        let second = GuildId::parse("!dm2:example.org").unwrap();
        assert_eq!(store.direct_message(&alice, &bob).await.unwrap(), None);
        store.record_direct_message(&bob, &alice, &first).await.unwrap();
        store.record_direct_message(&alice, &bob, &second).await.unwrap();
        assert_eq!(
            store.direct_message(&alice, &bob).await.unwrap(),
            Some(first.clone()),
            "the first stays"
        );
        assert_eq!(store.direct_message(&bob, &alice).await.unwrap(), Some(first));
        assert_eq!(store.direct_message(&alice, &carol).await.unwrap(), None);
    }
}
