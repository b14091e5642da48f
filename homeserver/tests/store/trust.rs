//! Store cases: trust policy, subscriptions and the audit log.

use guildhall_homeserver::store::{Audit, SubscriptionRow, TrustEntryRow};

use crate::engines::on_both_engines;

fn audit<'a>(action: &'a str, target: Option<&'a str>) -> Audit<'a> {
    Audit { actor: "@admin:example.org", action, target, detail: None }
}

fn entry(server: &str, action: &str, key: Option<(&str, &str)>) -> TrustEntryRow {
    TrustEntryRow {
        server: server.to_owned(),
        action: action.to_owned(),
        reason: Some(format!("{action} {server}")),
        key: key.map(|(id, key)| (id.to_owned(), key.to_owned())),
        updated_ts: 1_000,
    }
}

fn subscription(id: &str, url: &str) -> SubscriptionRow {
    SubscriptionRow {
        id: id.to_owned(),
        url: url.to_owned(),
        publisher: "lists.example".to_owned(),
        key_id: "ed25519:1".to_owned(),
        key: "publisher-key".to_owned(),
        refresh_secs: 3_600,
        document: None,
        updated_ts: 0,
        fetched_ts: 0,
        accepted_ts: 0,
        last_error: None,
    }
}

on_both_engines! {
    async fn every_change_bumps_the_version_with_a_strictly_later_time(store: Store) {
        assert_eq!(store.trust_version().await.unwrap(), (0, 0));
        assert_eq!(store.trust_mode().await.unwrap(), None);
        let detail = serde_json::json!({ "mode": "allowlist" });
        let with_detail = Audit { detail: Some(&detail), ..audit("trust.mode", None) };
        let mut times = Vec::new();
        for mode in ["allowlist", "denylist", "open"] {
            store.set_trust_mode(mode, with_detail).await.unwrap();
            times.push(store.trust_version().await.unwrap());
        }
        assert_eq!(store.trust_mode().await.unwrap().as_deref(), Some("open"));
        let versions: Vec<i64> = times.iter().map(|(version, _)| *version).collect();
        assert_eq!(versions, [1, 2, 3]);
        assert!(times.windows(2).all(|pair| pair[0].1 < pair[1].1), "changed_ts grows: {times:?}");

        // An action that changes no rule is logged without a new version.
        store.audit(audit("user.admin", Some("@bob:example.org"))).await.unwrap();
        assert_eq!(store.trust_version().await.unwrap().0, 3);
        let log = store.audit_log(None, 10).await.unwrap();
        let actions: Vec<&str> = log.iter().map(|row| row.action.as_str()).collect();
        assert_eq!(
            actions,
            ["user.admin", "trust.mode", "trust.mode", "trust.mode"],
            "newest first"
        );
        assert_eq!(log[0].target.as_deref(), Some("@bob:example.org"));
        assert_eq!(log[0].actor, "@admin:example.org");
        assert_eq!(log[1].detail.as_ref(), Some(&detail));
        assert_eq!(log[0].detail, None);
        assert!(log.windows(2).all(|pair| pair[0].id > pair[1].id));

        let page = store.audit_log(Some(log[1].id), 2).await.unwrap();
        let ids: Vec<i64> = page.iter().map(|row| row.id).collect();
        assert_eq!(ids, [log[2].id, log[3].id], "before an id, at most the limit");
        assert!(store.audit_log(Some(log[3].id), 10).await.unwrap().is_empty());
    }
}

on_both_engines! {
    async fn local_entries_are_replaced_deleted_and_swapped_as_a_whole(store: Store) {
        store
            .put_trust_entry(&entry("b.example", "deny", None), audit("trust.deny", None))
            .await
            .unwrap();
        store
            .put_trust_entry(
                &entry("a.example", "allow", Some(("ed25519:k", "key-a"))),
                audit("trust.allow", None),
            )
            .await
            .unwrap();
        // The same server again replaces its entry.
        store
            .put_trust_entry(&entry("b.example", "allow", None), audit("trust.allow", None))
            .await
            .unwrap();
        let entries = store.trust_entries().await.unwrap();
        let listed: Vec<(&str, &str)> =
            entries.iter().map(|e| (e.server.as_str(), e.action.as_str())).collect();
        assert_eq!(listed, [("a.example", "allow"), ("b.example", "allow")], "by server");
        assert_eq!(entries[0].key, Some(("ed25519:k".to_owned(), "key-a".to_owned())));
        assert_eq!(entries[0].reason.as_deref(), Some("allow a.example"));
        assert_eq!(entries[0].updated_ts, 1_000);
        assert_eq!(entries[1].key, None);
        assert_eq!(store.trust_version().await.unwrap().0, 3);

        assert!(store.delete_trust_entry("b.example", audit("trust.remove", None)).await.unwrap());
        assert!(!store.delete_trust_entry("b.example", audit("trust.remove", None)).await.unwrap());
        assert_eq!(
            store.trust_version().await.unwrap().0,
            4,
            "a delete of nothing changes nothing"
        );
        assert_eq!(store.audit_log(None, 100).await.unwrap().len(), 4, "nor is it logged");

        let policy = [entry("c.example", "deny", None), entry("d.example", "deny", None)];
        store.replace_trust_policy("denylist", &policy, audit("trust.policy", None)).await.unwrap();
        let servers: Vec<String> =
            store.trust_entries().await.unwrap().into_iter().map(|e| e.server).collect();
        assert_eq!(servers, ["c.example", "d.example"]);
        assert_eq!(store.trust_mode().await.unwrap().as_deref(), Some("denylist"));
        assert_eq!(store.trust_version().await.unwrap().0, 5, "one change");
        store.replace_trust_policy("open", &[], audit("trust.policy", None)).await.unwrap();
        assert!(store.trust_entries().await.unwrap().is_empty());
    }
}

on_both_engines! {
    async fn subscriptions_accept_only_newer_documents(store: Store) {
        let first = subscription("one", "https://lists.example/one");
        assert!(store.add_subscription(&first, audit("trust.subscribe", None)).await.unwrap());
        let same_url = subscription("other", "https://lists.example/one");
        assert!(!store.add_subscription(&same_url, audit("trust.subscribe", None)).await.unwrap());
        assert!(
            !store.add_subscription(&first, audit("trust.subscribe", None)).await.unwrap(),
            "same id"
        );
        assert_eq!(store.trust_version().await.unwrap().0, 1, "refusals change nothing");
        assert_eq!(store.audit_log(None, 100).await.unwrap().len(), 1);
        tokio::time::sleep(std::time::Duration::from_millis(3)).await;
        let second = subscription("two", "https://lists.example/two");
        assert!(store.add_subscription(&second, audit("trust.subscribe", None)).await.unwrap());
        let ids: Vec<String> =
            store.subscriptions().await.unwrap().into_iter().map(|s| s.id).collect();
        assert_eq!(ids, ["one", "two"], "oldest first");

        let held = store.subscription("one").await.unwrap().unwrap();
        assert_eq!(held.url, "https://lists.example/one");
        assert_eq!((held.key_id.as_str(), held.key.as_str()), ("ed25519:1", "publisher-key"));
        assert_eq!(held.refresh_secs, 3_600);
        assert_eq!((held.document, held.updated_ts, held.fetched_ts), (None, 0, 0));
        assert!(store.subscription("none").await.unwrap().is_none());

        store.note_trust_fetch("one", Some("timed out")).await.unwrap();
        let held = store.subscription("one").await.unwrap().unwrap();
        assert_eq!(held.last_error.as_deref(), Some("timed out"));
        assert!(held.fetched_ts > 0);
        assert_eq!(held.accepted_ts, 0);

        assert!(
            store.accept_trust_list("one", "doc-5", 5, audit("trust.list", None)).await.unwrap()
        );
        assert!(
            !store.accept_trust_list("one", "doc-5b", 5, audit("trust.list", None)).await.unwrap()
        );
        assert!(
            !store.accept_trust_list("one", "doc-4", 4, audit("trust.list", None)).await.unwrap()
        );
        assert!(
            !store.accept_trust_list("none", "doc", 9, audit("trust.list", None)).await.unwrap()
        );
        let held = store.subscription("one").await.unwrap().unwrap();
        assert_eq!((held.document.as_deref(), held.updated_ts), (Some("doc-5"), 5));
        assert_eq!(held.last_error, None, "an accepted document clears the error");
        assert!(held.accepted_ts > 0);
        assert_eq!(store.trust_version().await.unwrap().0, 3);
        store.note_trust_fetch("one", None).await.unwrap();
        assert_eq!(
            store.subscription("one").await.unwrap().unwrap().document.as_deref(),
            Some("doc-5")
        );

        assert!(store.delete_subscription("one", audit("trust.unsubscribe", None)).await.unwrap());
        assert!(!store.delete_subscription("one", audit("trust.unsubscribe", None)).await.unwrap());
        assert_eq!(store.trust_version().await.unwrap().0, 4);
        assert!(store.subscription("one").await.unwrap().is_none());
    }
}

on_both_engines! {
    async fn concurrent_changes_each_get_their_own_version(store: Store) {
        let servers: Vec<String> = (0..8).map(|n| format!("s{n}.example")).collect();
        let entries: Vec<TrustEntryRow> = servers.iter().map(|s| entry(s, "deny", None)).collect();
        futures_util::future::join_all(
            entries.iter().map(|e| store.put_trust_entry(e, audit("trust.deny", None))),
        )
        .await
        .into_iter()
        .for_each(|done| done.unwrap());
        assert_eq!(store.trust_version().await.unwrap().0, 8);
        assert_eq!(store.trust_entries().await.unwrap().len(), 8);
    }
}
