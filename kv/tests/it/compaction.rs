//! Compaction of the embedded backend: old history goes, live keys stay, and a watch
//! from before the compaction is told so, as etcd tells it.

use paas_kv::sqlite::SqliteKv;
use paas_kv::{Kv, KvError};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_keeps_every_live_key_and_refuses_watches_from_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let kv = SqliteKv::open(&dir.path().join("state.db")).unwrap();
    let first = kv.put("c/a", b"1".to_vec()).await.unwrap();
    kv.put("c/a", b"2".to_vec()).await.unwrap();
    kv.put("c/b", b"x".to_vec()).await.unwrap();
    let deleted = kv.delete("c/b").await.unwrap();
    let last = kv.put("c/a", b"3".to_vec()).await.unwrap();

    let removed = kv.compact(deleted).await.unwrap();
    assert_eq!(removed, 4, "a=1, a=2, b=x and its deletion go; a=3 stays");
    assert_eq!(kv.get("c/a").await.unwrap().unwrap().value, b"3");
    assert!(kv.get("c/b").await.unwrap().is_none());
    let (keys, revision) = kv.range("c/").await.unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(revision, last);

    let mut old = kv.watch("c/", first).await.unwrap();
    match old.next().await {
        Some(Err(KvError::Compacted(from))) => assert_eq!(from, deleted + 1),
        other => panic!("a watch from before the compaction: {other:?}"),
    }
    // From just after it: the history kept, then live changes.
    let mut kept = kv.watch("c/", deleted + 1).await.unwrap();
    assert_eq!(kept.next().await.unwrap().unwrap().revision(), last);
    let next = kv.put("c/a", b"4".to_vec()).await.unwrap();
    assert_eq!(kept.next().await.unwrap().unwrap().revision(), next);
    assert_eq!(kv.compact(deleted).await.unwrap(), 0, "done once");
}
