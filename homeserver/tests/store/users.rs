//! Store cases: accounts and sessions.

use guildhall_spec::UserId;

use crate::engines::on_both_engines;

on_both_engines! {
    async fn the_first_account_is_admin_and_names_are_unique(store: Store) {
        let alice = UserId::parse("@alice:example.org").unwrap();
        let bob = UserId::parse("@bob:example.org").unwrap();
        let first = store.create_user(&alice, "hash-a").await.unwrap().unwrap();
        assert!(first.is_admin);
        assert!(store.create_user(&alice, "other").await.unwrap().is_none(), "name taken");
        let second = store.create_user(&bob, "hash-b").await.unwrap().unwrap();
        assert!(!second.is_admin);
        assert_eq!(store.user(&alice).await.unwrap().unwrap().password_hash, "hash-a");
    }
}

on_both_engines! {
    async fn profile_updates_change_only_the_fields_given(store: Store) {
        let alice = UserId::parse("@alice:example.org").unwrap();
        store.create_user(&alice, "hash").await.unwrap().unwrap();
        store.update_profile(&alice, Some(Some("Alice")), Some(Some("avatar-1"))).await.unwrap();
        store.update_profile(&alice, None, Some(Some("avatar-2"))).await.unwrap();
        let user = store.user(&alice).await.unwrap().unwrap();
        assert_eq!(user.display_name.as_deref(), Some("Alice"));
        assert_eq!(user.avatar.as_deref(), Some("avatar-2"));
        store.update_profile(&alice, Some(None), None).await.unwrap();
        let user = store.user(&alice).await.unwrap().unwrap();
        assert_eq!(user.display_name, None, "cleared");
        assert_eq!(user.avatar.as_deref(), Some("avatar-2"), "untouched");
        let nobody = UserId::parse("@nobody:example.org").unwrap();
        assert!(store.user(&nobody).await.unwrap().is_none());
    }
}

on_both_engines! {
    async fn make_admin_answers_whether_the_user_exists(store: Store) {
        let alice = UserId::parse("@alice:example.org").unwrap();
        let bob = UserId::parse("@bob:example.org").unwrap();
        store.create_user(&alice, "hash-a").await.unwrap().unwrap();
        store.create_user(&bob, "hash-b").await.unwrap().unwrap();
        assert!(store.make_admin(&bob).await.unwrap());
        assert!(store.user(&bob).await.unwrap().unwrap().is_admin);
        assert!(store.make_admin(&bob).await.unwrap(), "again: still exists");
        let nobody = UserId::parse("@nobody:example.org").unwrap();
        assert!(!store.make_admin(&nobody).await.unwrap());
        assert!(store.user(&nobody).await.unwrap().is_none(), "no account was made");
    }
}

on_both_engines! {
    async fn sessions_are_found_by_token_listed_newest_first_and_revoked_once(store: Store) {
        let alice = UserId::parse("@alice:example.org").unwrap();
        let bob = UserId::parse("@bob:example.org").unwrap();
        store.create_user(&alice, "hash-a").await.unwrap().unwrap();
        store.create_user(&bob, "hash-b").await.unwrap().unwrap();
        store
            .create_session(&alice, "s1", b"token-1", Some("agent"), Some("10.0.0.1"))
            .await
            .unwrap();
        // Distinct creation times, so that the order is the one under test.
        tokio::time::sleep(std::time::Duration::from_millis(3)).await;
        store.create_session(&alice, "s2", b"token-2", None, None).await.unwrap();
        store.create_session(&bob, "s3", b"token-3", None, None).await.unwrap();
        assert!(
            store.create_session(&bob, "s4", b"token-1", None, None).await.is_err(),
            "a token hash belongs to one session"
        );

        let found = |token: &'static [u8]| {
            let store = &store;
            async move {
                store
                    .session_user(token)
                    .await
                    .unwrap()
                    .map(|found| (found.user_id, found.session_id, found.last_seen_ts > 0))
            }
        };
        assert_eq!(found(b"token-1").await, Some((alice.clone(), "s1".to_owned(), true)));
        assert_eq!(found(b"token-3").await, Some((bob.clone(), "s3".to_owned(), true)));
        assert_eq!(found(b"unknown").await, None);

        let sessions = store.sessions(&alice).await.unwrap();
        let ids: Vec<&str> = sessions.iter().map(|s| s.session_id.as_str()).collect();
        assert_eq!(ids, ["s2", "s1"]);
        assert_eq!(sessions[1].user_agent.as_deref(), Some("agent"));
        assert_eq!(sessions[1].ip.as_deref(), Some("10.0.0.1"));
        assert_eq!(sessions[0].user_agent, None);

        // Used again within the minute: not written.
        store.touch_session("s1").await.unwrap();
        let s1 = store.sessions(&alice).await.unwrap().pop().unwrap();
        assert_eq!(s1.last_seen_ts, s1.created_ts);

        assert!(!store.delete_session(&bob, "s1").await.unwrap(), "another user's session");
        assert!(store.delete_session(&alice, "s1").await.unwrap());
        assert!(!store.delete_session(&alice, "s1").await.unwrap(), "already revoked");
        assert_eq!(found(b"token-1").await, None);
        assert_eq!(store.sessions(&alice).await.unwrap().len(), 1);
    }
}

on_both_engines! {
    async fn concurrent_sign_ups_make_exactly_one_admin(store: Store) {
        let users: Vec<UserId> =
            (0..8).map(|n| UserId::parse(&format!("@user{n}:example.org")).unwrap()).collect();
        let created = futures_util::future::join_all(
            users.iter().map(|user| store.create_user(user, "hash")),
        )
        .await;
        let admins =
            created.into_iter().filter(|row| row.as_ref().unwrap().as_ref().unwrap().is_admin);
        assert_eq!(admins.count(), 1);
    }
}
