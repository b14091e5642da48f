//! Store cases: accounts and sessions.

use guildhall_homeserver::store::Store;
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
