//! Keeping a copy of every key under a prefix, for as long as the caller likes: read the
//! keys, then watch from just after the revision they were read at, so no change is
//! missed or seen twice. When the watch ends (the store went away, or no longer keeps
//! the history asked for) the copy is kept as it is and everything is read again after
//! a pause, starting with a [`Mirrored::Reset`].

use std::time::Duration;

use crate::{Event, KeyValue, Kv};

/// How long to wait before reading again after the store failed.
const RETRY: Duration = Duration::from_secs(1);

/// What the copy learns.
pub enum Mirrored<'a> {
    /// Every key under the prefix, as read now: what is not among them is gone.
    Reset(&'a [KeyValue]),
    Put(&'a KeyValue),
    Delete(&'a str),
}

/// Feeds `apply` every key under `prefix` and then every change of them; never returns
/// (drop the future, or abort its task, to stop).
pub async fn mirror<K: Kv>(kv: &K, prefix: &str, mut apply: impl FnMut(Mirrored<'_>)) {
    loop {
        if let Err(e) = follow_once(kv, prefix, &mut apply).await {
            tracing::warn!(%prefix, "following the state store: {e}; reading again in {} s", RETRY.as_secs());
        }
        tokio::time::sleep(RETRY).await;
    }
}

async fn follow_once<K: Kv>(
    kv: &K,
    prefix: &str,
    apply: &mut impl FnMut(Mirrored<'_>),
) -> Result<(), crate::KvError> {
    let (kvs, revision) = kv.range(prefix).await?;
    let mut watch = kv.watch(prefix, revision + 1).await?;
    apply(Mirrored::Reset(&kvs));
    while let Some(event) = watch.next().await {
        match event? {
            Event::Put(kv) => apply(Mirrored::Put(&kv)),
            Event::Delete { key, .. } => apply(Mirrored::Delete(&key)),
        }
    }
    Err(crate::KvError::Unavailable(
        "the store ended the watch".to_string(),
    ))
}
