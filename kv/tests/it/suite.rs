//! The checks, written once against `Kv`.

use std::time::Duration;

use paas_kv::{Compare, Event, Kv, KvError, Op, Txn, Watch};

/// A key prefix of this check's own, unique per run.
pub fn prefix(check: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("t/{check}/{}-{nanos}/", std::process::id())
}

fn put(key: &str, value: &str) -> Op {
    Op::Put {
        key: key.to_string(),
        value: value.as_bytes().to_vec(),
        lease: None,
    }
}

/// The next event of a watch, failing the check after 30 s.
async fn next(w: &mut Watch) -> Event {
    tokio::time::timeout(Duration::from_secs(30), w.next())
        .await
        .expect("an event within 30 s")
        .expect("the watch is open")
        .expect("no watch error")
}

pub async fn puts_gets_and_ranges_by_prefix(kv: &impl Kv, p: &str) {
    assert_eq!(kv.get(&format!("{p}a")).await.unwrap(), None);
    let r1 = kv.put(&format!("{p}b"), b"2".to_vec()).await.unwrap();
    let r2 = kv.put(&format!("{p}a"), b"1".to_vec()).await.unwrap();
    let r3 = kv.put(&format!("{p}a"), b"one".to_vec()).await.unwrap();
    kv.put(&format!("{p}x/"), b"outside a/".to_vec())
        .await
        .unwrap();
    assert!(r1 < r2 && r2 < r3, "revisions grow: {r1} {r2} {r3}");
    let a = kv.get(&format!("{p}a")).await.unwrap().unwrap();
    assert_eq!(a.value, b"one");
    assert_eq!(a.create_revision, r2, "created by the first put");
    assert_eq!(a.mod_revision, r3, "changed by the last");
    assert_eq!(a.lease, None);

    let (all, at) = kv.range(p).await.unwrap();
    let keys: Vec<&str> = all.iter().map(|kv| kv.key.as_str()).collect();
    assert_eq!(
        keys,
        vec![format!("{p}a"), format!("{p}b"), format!("{p}x/")],
        "in key order"
    );
    assert!(at >= r3, "read at the revision of the last write or later");
    let (only_x, _) = kv.range(&format!("{p}x/")).await.unwrap();
    assert_eq!(only_x.len(), 1);
    // Keys just outside a prefix on either side, and the highest character inside it.
    for key in [
        format!("{p}x."),
        format!("{p}x0"),
        format!("{p}x/\u{10ffff}"),
    ] {
        kv.put(&key, b"edge".to_vec()).await.unwrap();
    }
    let (x, _) = kv.range(&format!("{p}x/")).await.unwrap();
    let keys: Vec<&str> = x.iter().map(|kv| kv.key.as_str()).collect();
    assert_eq!(keys, [format!("{p}x/"), format!("{p}x/\u{10ffff}")]);
    for key in [
        format!("{p}x."),
        format!("{p}x0"),
        format!("{p}x/\u{10ffff}"),
    ] {
        kv.delete(&key).await.unwrap();
    }

    kv.delete(&format!("{p}b")).await.unwrap();
    assert_eq!(kv.get(&format!("{p}b")).await.unwrap(), None);
    assert_eq!(kv.range(p).await.unwrap().0.len(), 2);
    // A key made again after a delete is a new key.
    let r4 = kv.put(&format!("{p}b"), b"again".to_vec()).await.unwrap();
    assert_eq!(
        kv.get(&format!("{p}b"))
            .await
            .unwrap()
            .unwrap()
            .create_revision,
        r4
    );
}

pub async fn transactions_compare_modification_revisions(kv: &impl Kv, p: &str) {
    let key = format!("{p}leader");
    let create = |value: &str| Txn {
        when: vec![Compare::ModRevision(key.clone(), 0)],
        then: vec![put(&key, value)],
        otherwise: vec![],
    };
    let first = kv.txn(create("a")).await.unwrap();
    assert!(first.succeeded, "created when absent");
    let second = kv.txn(create("b")).await.unwrap();
    assert!(!second.succeeded, "not created twice");
    assert_eq!(
        second.revision, first.revision,
        "a failed txn writes nothing"
    );
    assert_eq!(kv.get(&key).await.unwrap().unwrap().value, b"a");

    // Compare-and-swap: only the writer that read the current revision wins.
    let seen = kv.get(&key).await.unwrap().unwrap().mod_revision;
    let swap = |value: &str| Txn {
        when: vec![Compare::ModRevision(key.clone(), seen)],
        then: vec![put(&key, value)],
        otherwise: vec![put(&format!("{p}lost"), value)],
    };
    assert!(kv.txn(swap("c")).await.unwrap().succeeded);
    let late = kv.txn(swap("d")).await.unwrap();
    assert!(!late.succeeded, "the second swap read a stale revision");
    assert_eq!(kv.get(&key).await.unwrap().unwrap().value, b"c");
    assert_eq!(
        kv.get(&format!("{p}lost")).await.unwrap().unwrap().value,
        b"d",
        "the failure branch ran"
    );

    // Every write of a transaction happens at one revision.
    let both = kv
        .txn(Txn {
            then: vec![put(&format!("{p}m"), "1"), put(&format!("{p}n"), "2")],
            ..Txn::default()
        })
        .await
        .unwrap();
    for k in ["m", "n"] {
        let got = kv.get(&format!("{p}{k}")).await.unwrap().unwrap();
        assert_eq!(got.mod_revision, both.revision);
    }
}

pub async fn deleting_what_is_not_there_makes_no_revision(kv: &impl Kv, p: &str) {
    let r = kv.put(&format!("{p}here"), b"x".to_vec()).await.unwrap();
    let mut w = kv.watch(p, r + 1).await.unwrap();
    kv.delete(&format!("{p}missing")).await.unwrap();
    let r2 = kv.put(&format!("{p}after"), b"y".to_vec()).await.unwrap();
    // The first event the watch sees is the put: the delete of nothing made no change.
    let e = next(&mut w).await;
    assert_eq!(e.key(), format!("{p}after"));
    assert_eq!(e.revision(), r2);
}

pub async fn watches_replay_history_then_follow_live_changes(kv: &impl Kv, p: &str) {
    let r1 = kv.put(&format!("{p}a"), b"1".to_vec()).await.unwrap();
    kv.put(&format!("{p}b"), b"2".to_vec()).await.unwrap();
    kv.delete(&format!("{p}a")).await.unwrap();
    kv.put("t/elsewhere", b"not watched".to_vec())
        .await
        .unwrap();

    let mut w = kv.watch(p, r1).await.unwrap();
    let e1 = next(&mut w).await;
    assert!(matches!(&e1, Event::Put(kv) if kv.value == b"1"), "{e1:?}");
    assert_eq!(e1.revision(), r1);
    let e2 = next(&mut w).await;
    assert!(
        matches!(&e2, Event::Put(kv) if kv.key.ends_with('b')),
        "{e2:?}"
    );
    let e3 = next(&mut w).await;
    assert!(
        matches!(&e3, Event::Delete { key, .. } if key.ends_with('a')),
        "{e3:?}"
    );

    // Then each new change, as it is made.
    let r4 = kv.put(&format!("{p}c"), b"3".to_vec()).await.unwrap();
    let e4 = next(&mut w).await;
    assert_eq!((e4.key(), e4.revision()), (format!("{p}c").as_str(), r4));
    assert!(e1.revision() < e2.revision() && e2.revision() < e3.revision());
    assert!(e3.revision() < e4.revision());
}

pub async fn watches_from_now_see_only_new_changes(kv: &impl Kv, p: &str) {
    kv.put(&format!("{p}old"), b"1".to_vec()).await.unwrap();
    let mut w = kv.watch(p, 0).await.unwrap();
    let r = kv.put(&format!("{p}new"), b"2".to_vec()).await.unwrap();
    let e = next(&mut w).await;
    assert_eq!((e.key(), e.revision()), (format!("{p}new").as_str(), r));
}

pub async fn leases_delete_their_keys_when_revoked(kv: &impl Kv, p: &str) {
    let lease = kv.grant(Duration::from_secs(60)).await.unwrap();
    let key = format!("{p}presence");
    let r = kv
        .txn(Txn {
            then: vec![Op::Put {
                key: key.clone(),
                value: b"cell-1".to_vec(),
                lease: Some(lease),
            }],
            ..Txn::default()
        })
        .await
        .unwrap();
    assert_eq!(kv.get(&key).await.unwrap().unwrap().lease, Some(lease));
    kv.put(&format!("{p}kept"), b"no lease".to_vec())
        .await
        .unwrap();
    let mut w = kv.watch(p, r.revision + 1).await.unwrap();
    kv.revoke(lease).await.unwrap();
    let e = next(&mut w).await;
    // The put without a lease may come first (it is after r); then the delete.
    let e = if e.key().ends_with("kept") {
        next(&mut w).await
    } else {
        e
    };
    assert!(
        matches!(&e, Event::Delete { key: k, .. } if *k == key),
        "{e:?}"
    );
    assert_eq!(kv.get(&key).await.unwrap(), None);
    assert!(kv.get(&format!("{p}kept")).await.unwrap().is_some());
    assert!(matches!(
        kv.keep_alive(lease).await,
        Err(KvError::NoLease(_))
    ));
}

pub async fn leases_delete_their_keys_when_they_expire_and_keep_alive_renews_them(
    kv: &impl Kv,
    p: &str,
) {
    let short = kv.grant(Duration::from_secs(2)).await.unwrap();
    let kept = kv.grant(Duration::from_secs(2)).await.unwrap();
    for (name, lease) in [("short", short), ("kept", kept)] {
        kv.txn(Txn {
            then: vec![Op::Put {
                key: format!("{p}{name}"),
                value: b"here".to_vec(),
                lease: Some(lease),
            }],
            ..Txn::default()
        })
        .await
        .unwrap();
    }
    // Renew one lease well inside its TTL until the other has expired.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        kv.keep_alive(kept).await.unwrap();
        if kv.get(&format!("{p}short")).await.unwrap().is_none() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "a key of a 2 s lease was still there after 30 s"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(
        kv.get(&format!("{p}kept")).await.unwrap().is_some(),
        "the key of a lease kept alive stays"
    );
    kv.revoke(kept).await.unwrap();
}

pub async fn puts_with_a_lease_that_does_not_exist_are_refused(kv: &impl Kv, p: &str) {
    let lease = kv.grant(Duration::from_secs(60)).await.unwrap();
    kv.revoke(lease).await.unwrap();
    let res = kv
        .txn(Txn {
            then: vec![Op::Put {
                key: format!("{p}orphan"),
                value: b"x".to_vec(),
                lease: Some(lease),
            }],
            ..Txn::default()
        })
        .await;
    assert!(res.is_err(), "{res:?}");
    assert_eq!(kv.get(&format!("{p}orphan")).await.unwrap(), None);
}

pub async fn transactions_etcd_refuses_are_refused_by_every_backend(kv: &impl Kv, p: &str) {
    let key = format!("{p}twice");
    let twice = Txn {
        then: vec![put(&key, "1"), put(&key, "2")],
        ..Txn::default()
    };
    assert!(kv.txn(twice).await.is_err(), "one key written twice");
    let too_many = Txn {
        then: (0..=paas_kv::MAX_TXN_OPS)
            .map(|i| put(&format!("{p}k{i}"), "v"))
            .collect(),
        ..Txn::default()
    };
    assert!(kv.txn(too_many).await.is_err(), "too many writes");
    assert_eq!(kv.range(p).await.unwrap().0.len(), 0, "nothing was written");
}
