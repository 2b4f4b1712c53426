//! The store conformance suite: every check runs against the embedded SQLite backend and
//! against a real etcd (Debian's `etcd-server`, started on loopback by this test binary),
//! so both backends keep one behaviour.
//!
//! Checks never assume absolute revisions (other checks write to the same etcd at the
//! same time); each works under a key prefix of its own.

mod compaction;
mod etcd_server;
mod suite;

macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let dir = tempfile::tempdir().unwrap();
                    let kv = paas_kv::sqlite::SqliteKv::open(&dir.path().join("state.db")).unwrap();
                    crate::suite::$name(&kv, &crate::suite::prefix(stringify!($name))).await;
                }
            )*
        }
        mod etcd {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let kv = crate::etcd_server::client().await;
                    crate::suite::$name(&kv, &crate::suite::prefix(stringify!($name))).await;
                }
            )*
        }
    };
}

on_both_backends!(
    puts_gets_and_ranges_by_prefix,
    transactions_compare_modification_revisions,
    deleting_what_is_not_there_makes_no_revision,
    watches_replay_history_then_follow_live_changes,
    watches_from_now_see_only_new_changes,
    leases_delete_their_keys_when_revoked,
    leases_delete_their_keys_when_they_expire_and_keep_alive_renews_them,
    puts_with_a_lease_that_does_not_exist_are_refused,
    transactions_etcd_refuses_are_refused_by_every_backend,
);
