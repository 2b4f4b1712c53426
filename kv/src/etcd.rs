//! The cluster backend: [`Kv`] over a real etcd (v3 API, through `etcd-client`).
//!
//! Each method is one etcd request, or a short series of them at one revision (a range
//! is read in pages, so no answer outgrows the client's 4 MiB message limit), and etcd's
//! own rules give the documented semantics: a missing key has modification revision 0,
//! a transaction that writes nothing makes no revision, a watch replays from its start
//! revision before it follows live changes.
//!
//! The decision a reader may wonder about: every call runs under a deadline of our own
//! (`REQUEST_TIMEOUT`, 10 s) rather than `etcd-client`'s per-request timeout. That one ends
//! when etcd's response headers arrive, so it does not cover what a watch's creation
//! and a lease keep-alive wait for, the first message of their streams; one deadline
//! around the whole call covers every call alike, and a call past it is
//! [`KvError::Unavailable`]. As with any remote store, a transaction that ends that way
//! may still have been applied: a caller that retries one compares revisions, as a
//! retried compare-and-swap does anyway.

use std::future::Future;
use std::time::Duration;

use etcd_client::{
    Client, CompareOp, ConnectOptions, GetOptions, PutOptions, SortOrder, SortTarget, TxnOp,
    WatchOptions, WatchResponse, WatchStream,
};
use tokio::sync::mpsc;

use crate::{Compare, Event, KeyValue, Kv, KvError, LeaseId, Op, Revision, Txn, TxnResult, Watch};

/// How long connecting to an endpoint, and the first request of [`connect`], may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long one request may take before it is [`KvError::Unavailable`]. Longer than an
/// etcd leader election, so a failover is waited out rather than reported.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// HTTP/2 pings while a stream (a watch) is open, so a dead connection ends the watch
/// with an error instead of leaving it silent. etcd refuses pings more often than every
/// 5 s, and pings on an idle connection, so none are sent then.
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(5);

/// Keys read per request of a range.
const RANGE_PAGE: i64 = 500;

/// Changes a watch buffers for a reader that is behind.
const WATCH_BUFFER: usize = 1024;

/// See the module docs. Cheap to clone: clones share the client's connections.
#[derive(Clone)]
pub struct EtcdKv {
    client: Client,
}

/// Connects to the etcd cluster at `endpoints` (`http://host:port` or `host:port`) and
/// checks that it answers.
pub async fn connect(endpoints: &[String]) -> Result<EtcdKv, KvError> {
    let options = ConnectOptions::new()
        .with_connect_timeout(CONNECT_TIMEOUT)
        .with_keep_alive(KEEP_ALIVE_INTERVAL, KEEP_ALIVE_TIMEOUT)
        .with_keep_alive_while_idle(false);
    let client = within(
        CONNECT_TIMEOUT,
        Client::connect(endpoints, Some(options)),
        None,
    )
    .await?;
    // The client connects lazily: ask something so that an etcd that is not there is
    // found now, not at the first read.
    within(CONNECT_TIMEOUT, client.maintenance_client().status(), None).await?;
    Ok(EtcdKv { client })
}

/// Which failures a request is made again after (see [`request`]).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Retry {
    /// A read: after any failure that says the cluster is in flux.
    Read,
    /// A write: only after failures that say it was not applied.
    Write,
}

/// Runs one request, made by `call`, under [`REQUEST_TIMEOUT`]. See [`error`] for `lease`.
///
/// A request that meets a cluster in flux is made again, until the deadline:
/// - the client spreads requests over every endpoint, and sends one to a member that is
///   down as readily as to one that is up; such a request fails before it is sent
///   ("tcp connect error"), and the balancer's next pick is likely a member that answers;
/// - a member with no leader refuses a request before proposing it ("no leader");
/// - a linearizable read meets an election ("leader changed"): reads only, since for a
///   write that answer would not say whether it was applied, and a retried
///   compare-and-swap that was applied would report a conflict it caused itself.
///
/// Any other failure is returned at once.
async fn request<T, F, Fut>(retry: Retry, mut call: F, lease: Option<LeaseId>) -> Result<T, KvError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, etcd_client::Error>>,
{
    let attempts = async {
        let mut pause = Duration::from_millis(20);
        loop {
            match call().await {
                Err(e) if in_flux(&e, retry) => {
                    tracing::debug!("etcd: {e}; trying again in {pause:?}");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(250));
                }
                other => return other,
            }
        }
    };
    within(REQUEST_TIMEOUT, attempts, lease).await
}

/// Whether the request failed in a way [`request`] makes it again after.
fn in_flux(e: &etcd_client::Error, retry: Retry) -> bool {
    match e {
        etcd_client::Error::GRpcStatus(status) => {
            let message = status.message();
            // gRPC's UNAVAILABLE (14); tonic is not a dependency of ours to name it by.
            status.code() as i32 == 14
                && (message == "tcp connect error"
                    || message.contains("etcdserver: no leader")
                    || (retry == Retry::Read && message.contains("etcdserver: leader changed")))
        }
        _ => false,
    }
}

async fn within<T>(
    limit: Duration,
    call: impl Future<Output = Result<T, etcd_client::Error>>,
    lease: Option<LeaseId>,
) -> Result<T, KvError> {
    match tokio::time::timeout(limit, call).await {
        Ok(result) => result.map_err(|e| error(e, lease)),
        Err(_) => Err(KvError::Unavailable(format!(
            "etcd did not answer within {limit:?}"
        ))),
    }
}

/// The [`KvError`] of a failed request: [`KvError::NoLease`] of `lease` if etcd says the
/// lease the request used does not exist, else [`KvError::Unavailable`].
fn error(e: etcd_client::Error, lease: Option<LeaseId>) -> KvError {
    let no_lease = match &e {
        // etcd: "etcdserver: requested lease not found" (a put with, or a revoke of, a
        // lease that is gone).
        etcd_client::Error::GRpcStatus(status) => status.message().contains("lease not found"),
        // etcd-client, when a keep-alive is answered with a TTL of 0.
        etcd_client::Error::LeaseKeepAliveError(message) => message.contains("lease not found"),
        _ => false,
    };
    match lease {
        Some(id) if no_lease => KvError::NoLease(id),
        _ => KvError::Unavailable(e.to_string()),
    }
}

fn no_header() -> KvError {
    KvError::Unavailable("etcd answered without a response header".to_string())
}

/// Keys are written through [`Kv`] as strings; a key some other writer made that is not
/// UTF-8 is shown with replacement characters rather than failing the whole read.
fn key_string(key: &[u8]) -> String {
    String::from_utf8_lossy(key).into_owned()
}

fn key_value(kv: &etcd_client::KeyValue) -> KeyValue {
    KeyValue {
        key: key_string(kv.key()),
        value: kv.value().to_vec(),
        create_revision: kv.create_revision(),
        mod_revision: kv.mod_revision(),
        lease: (kv.lease() != 0).then_some(kv.lease()),
    }
}

/// The end of etcd's range of the keys that start with `prefix` (its own rule: the
/// prefix with its last byte below 0xff incremented; `"\0"`, no end, if there is none).
fn range_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// A change of a watch. Not through `event_type()`, which panics on a type it does not
/// know: a deletion is told by its key-value, which is a tombstone with no creation
/// revision (etcd's own test when it makes the event), where every put has one.
fn event(e: &etcd_client::Event) -> Option<Event> {
    let kv = e.kv()?;
    Some(if kv.create_revision() == 0 {
        Event::Delete {
            key: key_string(kv.key()),
            mod_revision: kv.mod_revision(),
        }
    } else {
        Event::Put(key_value(kv))
    })
}

fn txn_op(op: Op) -> TxnOp {
    match op {
        Op::Put { key, value, lease } => {
            TxnOp::put(key, value, lease.map(|id| PutOptions::new().with_lease(id)))
        }
        Op::Delete { key } => TxnOp::delete(key, None),
    }
}

/// What a watch's task does with one response from etcd.
enum Next {
    Continue,
    /// The watch is over: the receiver is gone, or it was told why.
    Stop,
}

/// Sends the changes of `response` to `tx`, or the error that ends the watch.
async fn forward(response: &WatchResponse, tx: &mpsc::Sender<Result<Event, KvError>>) -> Next {
    if response.compact_revision() > 0 {
        // etcd no longer keeps the revisions the watch asked for, and has cancelled it;
        // the revision is etcd's compaction revision, the oldest a watch may start at.
        let _ = tx
            .send(Err(KvError::Compacted(response.compact_revision())))
            .await;
        return Next::Stop;
    }
    if response.canceled() {
        let _ = tx
            .send(Err(KvError::Unavailable(format!(
                "etcd cancelled the watch: {}",
                response.cancel_reason()
            ))))
            .await;
        return Next::Stop;
    }
    for e in response.events().iter().filter_map(event) {
        if tx.send(Ok(e)).await.is_err() {
            return Next::Stop;
        }
    }
    Next::Continue
}

/// Reads the watch `stream` into `tx` until the watch ends or the receiver is dropped,
/// starting with `first`, the response that created it.
async fn pump(
    mut stream: WatchStream,
    first: WatchResponse,
    tx: mpsc::Sender<Result<Event, KvError>>,
) {
    let watch_id = first.watch_id();
    let mut response = first;
    loop {
        if let Next::Stop = forward(&response, &tx).await {
            break;
        }
        response = tokio::select! {
            _ = tx.closed() => break,
            message = stream.message() => match message {
                Ok(Some(r)) => r,
                Ok(None) => {
                    let _ = tx
                        .send(Err(KvError::Unavailable("etcd ended the watch".to_string())))
                        .await;
                    return;
                }
                Err(e) => {
                    let _ = tx.send(Err(error(e, None))).await;
                    return;
                }
            },
        };
    }
    // Dropping the stream ends the watch too; cancelling first tells etcd why.
    let _ = stream.cancel(watch_id).await;
}

impl Kv for EtcdKv {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, KvError> {
        let response = request(
            Retry::Read,
            || {
                let mut kv = self.client.kv_client();
                async move { kv.get(key, None).await }
            },
            None,
        )
        .await?;
        Ok(response.kvs().first().map(key_value))
    }

    async fn range(&self, prefix: &str) -> Result<(Vec<KeyValue>, Revision), KvError> {
        let end = range_end(prefix.as_bytes());
        // etcd has no empty key, and "\0" is where its whole-keyspace ranges start.
        let mut start = if prefix.is_empty() {
            vec![0]
        } else {
            prefix.as_bytes().to_vec()
        };
        let mut keys = Vec::new();
        // 0 (the newest) for the first page; the later ones read at its revision.
        let mut revision = 0;
        loop {
            let options = GetOptions::new()
                .with_range(end.clone())
                .with_sort(SortTarget::Key, SortOrder::Ascend)
                .with_limit(RANGE_PAGE)
                .with_revision(revision);
            let response = request(
                Retry::Read,
                || {
                    let mut kv = self.client.kv_client();
                    let (start, options) = (start.clone(), options.clone());
                    async move { kv.get(start, Some(options)).await }
                },
                None,
            )
            .await?;
            if revision == 0 {
                revision = response.header().ok_or_else(no_header)?.revision();
            }
            keys.extend(response.kvs().iter().map(key_value));
            match response.kvs().last() {
                Some(last) if response.more() => {
                    // The next page starts just after the last key read.
                    start = last.key().to_vec();
                    start.push(0);
                }
                _ => return Ok((keys, revision)),
            }
        }
    }

    async fn txn(&self, txn: Txn) -> Result<TxnResult, KvError> {
        // Refused here as the embedded backend refuses it, with the same error.
        crate::check_txn(&txn)?;
        // The lease a "lease not found" answer is about. etcd does not say which: if the
        // puts use several, the first is named.
        let lease = txn
            .then
            .iter()
            .chain(&txn.otherwise)
            .find_map(|op| match op {
                Op::Put { lease, .. } => *lease,
                Op::Delete { .. } => None,
            });
        let when: Vec<etcd_client::Compare> = txn
            .when
            .into_iter()
            .map(|Compare::ModRevision(key, revision)| {
                etcd_client::Compare::mod_revision(key, CompareOp::Equal, revision)
            })
            .collect();
        let request_txn = etcd_client::Txn::new()
            .when(when)
            .and_then(txn.then.into_iter().map(txn_op).collect::<Vec<_>>())
            .or_else(txn.otherwise.into_iter().map(txn_op).collect::<Vec<_>>());
        let response = request(
            Retry::Write,
            || {
                let mut kv = self.client.kv_client();
                let txn = request_txn.clone();
                async move { kv.txn(txn).await }
            },
            lease,
        )
        .await?;
        Ok(TxnResult {
            succeeded: response.succeeded(),
            revision: response.header().ok_or_else(no_header)?.revision(),
        })
    }

    async fn watch(&self, prefix: &str, from: Revision) -> Result<Watch, KvError> {
        // Fragments: a revision with more changes than one message holds comes in
        // several responses, which are read one after another like any others.
        let mut options = WatchOptions::new().with_prefix().with_fragment();
        if from > 0 {
            options = options.with_start_revision(from);
        }
        let mut stream = request(
            Retry::Read,
            || {
                let mut client = self.client.watch_client();
                let options = options.clone();
                async move { client.watch(prefix, Some(options)).await }
            },
            None,
        )
        .await?;
        // Wait for etcd to say the watch exists, so that a change made after this returns
        // is one the watch sees, even from revision 0 ("now").
        let first = within(REQUEST_TIMEOUT, stream.message(), None)
            .await?
            .ok_or_else(|| KvError::Unavailable("etcd ended the watch at once".to_string()))?;
        if first.canceled() && first.compact_revision() == 0 {
            return Err(KvError::Unavailable(format!(
                "etcd refused the watch: {}",
                first.cancel_reason()
            )));
        }
        let (tx, rx) = mpsc::channel(WATCH_BUFFER);
        tokio::spawn(pump(stream, first, tx));
        Ok(Watch::from_channel(rx))
    }

    async fn grant(&self, ttl: Duration) -> Result<LeaseId, KvError> {
        // Whole seconds, rounded up, so a lease never ends before the TTL asked for.
        let mut seconds = ttl.as_secs();
        if ttl.subsec_nanos() > 0 {
            seconds += 1;
        }
        let seconds = i64::try_from(seconds).unwrap_or(i64::MAX).max(1);
        let response = request(
            // A grant applied twice leaves a lease nobody renews: it expires.
            Retry::Read,
            || {
                let mut lease = self.client.lease_client();
                async move { lease.grant(seconds, None).await }
            },
            None,
        )
        .await?;
        if !response.error().is_empty() {
            return Err(KvError::Unavailable(format!(
                "etcd did not grant the lease: {}",
                response.error()
            )));
        }
        Ok(response.id())
    }

    async fn keep_alive(&self, lease: LeaseId) -> Result<(), KvError> {
        // etcd-client opens the keep-alive stream with one request and reads its answer;
        // a TTL of 0 there (the lease is gone) is its "lease not found" error, which
        // `error` makes `NoLease`. One renewal is all this call is: the stream is dropped.
        request(
            Retry::Read,
            || {
                let mut client = self.client.lease_client();
                async move { client.keep_alive(lease).await }
            },
            Some(lease),
        )
        .await?;
        Ok(())
    }

    async fn revoke(&self, lease: LeaseId) -> Result<(), KvError> {
        request(
            Retry::Read,
            || {
                let mut client = self.client.lease_client();
                async move { client.revoke(lease).await }
            },
            Some(lease),
        )
        .await?;
        Ok(())
    }
}
