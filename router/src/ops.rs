//! What operators see of the router: an access log line per request, Prometheus metrics
//! and a health endpoint on a separate admin listener, and draining on shutdown.

use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// One request as the access log records it.
#[derive(Debug, Clone)]
pub struct AccessLog {
    pub host: String,
    /// The app and instance that served it, when it got that far.
    pub app: Option<String>,
    pub instance: Option<u32>,
    pub method: String,
    pub path: String,
    pub status: u16,
    /// The response's Content-Length, when it has one.
    pub bytes: Option<u64>,
    /// Time until the response's head was ready.
    pub duration: Duration,
    pub request_id: String,
    pub client: String,
}

impl AccessLog {
    /// The line as gorouter writes it, more or less: host, request, status, size, time.
    pub fn line(&self) -> String {
        format!(
            "{} - \"{} {} HTTP/1.1\" {} {} {:.6}s x_forwarded_for:\"{}\" vcap_request_id:\"{}\" app_index:\"{}\"",
            self.host,
            self.method,
            self.path,
            self.status,
            self.bytes.map_or("-".to_string(), |b| b.to_string()),
            self.duration.as_secs_f64(),
            self.client,
            self.request_id,
            self.instance.map_or("-".to_string(), |i| i.to_string()),
        )
    }
}

/// Where access log lines go (the app's logs as `RTR`, in paasd).
pub type AccessSink = Arc<dyn Fn(AccessLog) + Send + Sync>;

/// Entries an [`access_queue`] holds for its writer; past that they are dropped and
/// counted, so a slow log store never slows a request.
pub const ACCESS_QUEUE: usize = 8192;

/// The most entries handed to the writer at once.
const ACCESS_BATCH: usize = 1024;

/// How long the writer lets entries gather once one came, before it hands them over.
/// Under load that is one wake-up of its thread per this much time rather than one per
/// request: a request's `try_send` to a writer that is asleep, not parked in `recv`,
/// makes no system call, and the writer shares the router's core. It is also the
/// longest an entry waits.
const ACCESS_GATHER: Duration = Duration::from_millis(20);

/// An access log sink that takes an entry off the request path: the request only puts
/// it on a bounded queue (or, when the queue is full, counts it as dropped in
/// `metrics`), and a thread of its own hands `write` the entries in batches. The thread
/// ends when the sink is dropped.
pub fn access_queue(
    capacity: usize,
    metrics: Arc<Metrics>,
    mut write: impl FnMut(&[AccessLog]) + Send + 'static,
) -> AccessSink {
    let (tx, rx) = std::sync::mpsc::sync_channel::<AccessLog>(capacity);
    let spawned = std::thread::Builder::new()
        .name("access-log".into())
        .spawn(move || {
            let mut batch = Vec::with_capacity(ACCESS_BATCH);
            while let Ok(first) = rx.recv() {
                batch.push(first);
                std::thread::sleep(ACCESS_GATHER);
                while let Ok(e) = rx.try_recv() {
                    batch.push(e);
                    if batch.len() == ACCESS_BATCH {
                        write(&batch);
                        batch.clear();
                    }
                }
                if !batch.is_empty() {
                    write(&batch);
                    batch.clear();
                }
            }
        });
    if let Err(e) = spawned {
        tracing::error!("starting the access log writer: {e}; access logs are dropped");
    }
    Arc::new(move |e: AccessLog| {
        if tx.try_send(e).is_err() {
            metrics.access_log_dropped.fetch_add(1, Ordering::Relaxed);
        }
    })
}

/// Upper bounds of the request-duration histogram, in seconds.
const BUCKETS: [f64; 10] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0];

/// Which cap a connection was refused by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionCap {
    Total,
    PerClient,
}

/// What was closed for being idle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdleClose {
    /// A connection served by hyper (HTTP/2, in practice) with no request under way.
    Connection,
    /// A WebSocket tunnel with no byte either way.
    WebSocket,
}

/// Counters, updated without locks on the request path.
#[derive(Default)]
pub struct Metrics {
    by_class: [AtomicU64; 5],
    router_errors: AtomicU64,
    buckets: [AtomicU64; BUCKETS.len()],
    duration_us: AtomicU64,
    count: AtomicU64,
    draining: AtomicBool,
    /// Client connections open now, plain and TLS: the count the total cap checks.
    pub(crate) connections_open: AtomicUsize,
    /// Connections refused at accept, by [`ConnectionCap`].
    connections_refused: [AtomicU64; 2],
    /// WebSocket tunnels open now (or opening): the count their cap checks.
    pub(crate) websockets_open: AtomicUsize,
    websockets_refused: AtomicU64,
    /// Closed for being idle, by [`IdleClose`].
    idle_closed: [AtomicU64; 2],
    /// Access log entries dropped because the writer was behind ([`access_queue`]).
    access_log_dropped: AtomicU64,
}

impl Metrics {
    pub fn observe(&self, status: u16, duration: Duration, router_made: bool) {
        let class = (usize::from(status / 100)).clamp(1, 5) - 1;
        self.by_class[class].fetch_add(1, Ordering::Relaxed);
        if router_made {
            self.router_errors.fetch_add(1, Ordering::Relaxed);
        }
        let secs = duration.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.duration_us
            .fetch_add(duration.as_micros() as u64, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    pub fn refused_connection(&self, cap: ConnectionCap) {
        self.connections_refused[cap as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn refused_websocket(&self) {
        self.websockets_refused.fetch_add(1, Ordering::Relaxed);
    }

    pub fn closed_idle(&self, what: IdleClose) {
        self.idle_closed[what as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn begin_drain(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// The Prometheus text exposition.
    pub fn render(&self, routes: usize) -> String {
        let mut out = String::new();
        out.push_str("# HELP paas_router_responses_total Responses sent, by status class.\n");
        out.push_str("# TYPE paas_router_responses_total counter\n");
        for (i, c) in self.by_class.iter().enumerate() {
            out.push_str(&format!(
                "paas_router_responses_total{{class=\"{}xx\"}} {}\n",
                i + 1,
                c.load(Ordering::Relaxed)
            ));
        }
        out.push_str("# HELP paas_router_errors_total Responses the router made itself (X-Paas-Router-Error).\n");
        out.push_str("# TYPE paas_router_errors_total counter\n");
        out.push_str(&format!(
            "paas_router_errors_total {}\n",
            self.router_errors.load(Ordering::Relaxed)
        ));
        out.push_str(
            "# HELP paas_router_request_duration_seconds Time until the response head was ready.\n",
        );
        out.push_str("# TYPE paas_router_request_duration_seconds histogram\n");
        let mut cumulative = 0;
        for (b, c) in BUCKETS.iter().zip(&self.buckets) {
            cumulative += c.load(Ordering::Relaxed);
            out.push_str(&format!(
                "paas_router_request_duration_seconds_bucket{{le=\"{b}\"}} {cumulative}\n"
            ));
        }
        let count = self.count.load(Ordering::Relaxed);
        out.push_str(&format!(
            "paas_router_request_duration_seconds_bucket{{le=\"+Inf\"}} {count}\n"
        ));
        out.push_str(&format!(
            "paas_router_request_duration_seconds_sum {}\n",
            self.duration_us.load(Ordering::Relaxed) as f64 / 1e6
        ));
        out.push_str(&format!(
            "paas_router_request_duration_seconds_count {count}\n"
        ));
        let gauge = |out: &mut String, name: &str, help: &str, v: usize| {
            out.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}\n"
            ));
        };
        gauge(
            &mut out,
            "paas_router_connections_open",
            "Client connections open now, plain and TLS.",
            self.connections_open.load(Ordering::Relaxed),
        );
        out.push_str("# HELP paas_router_connections_refused_total Connections closed at accept, by the cap they were over.\n");
        out.push_str("# TYPE paas_router_connections_refused_total counter\n");
        for (limit, c) in ["total", "per_client"]
            .iter()
            .zip(&self.connections_refused)
        {
            out.push_str(&format!(
                "paas_router_connections_refused_total{{limit=\"{limit}\"}} {}\n",
                c.load(Ordering::Relaxed)
            ));
        }
        gauge(
            &mut out,
            "paas_router_websockets_open",
            "WebSocket tunnels open now.",
            self.websockets_open.load(Ordering::Relaxed),
        );
        out.push_str("# HELP paas_router_access_log_dropped_total Access log entries dropped because their writer was behind.\n");
        out.push_str("# TYPE paas_router_access_log_dropped_total counter\n");
        out.push_str(&format!(
            "paas_router_access_log_dropped_total {}\n",
            self.access_log_dropped.load(Ordering::Relaxed)
        ));
        out.push_str("# HELP paas_router_websockets_refused_total WebSocket requests answered 503 for the tunnel cap.\n");
        out.push_str("# TYPE paas_router_websockets_refused_total counter\n");
        out.push_str(&format!(
            "paas_router_websockets_refused_total {}\n",
            self.websockets_refused.load(Ordering::Relaxed)
        ));
        out.push_str(
            "# HELP paas_router_idle_closed_total Connections and tunnels closed for being idle.\n",
        );
        out.push_str("# TYPE paas_router_idle_closed_total counter\n");
        for (kind, c) in ["connection", "websocket"].iter().zip(&self.idle_closed) {
            out.push_str(&format!(
                "paas_router_idle_closed_total{{kind=\"{kind}\"}} {}\n",
                c.load(Ordering::Relaxed)
            ));
        }
        out.push_str("# HELP paas_router_routes Routes in the current table.\n");
        out.push_str("# TYPE paas_router_routes gauge\n");
        out.push_str(&format!("paas_router_routes {routes}\n"));
        out
    }
}

fn text(status: StatusCode, body: String, content_type: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    r
}

/// Serves `GET /health` (503 once draining) and `GET /metrics` until `shutdown`.
pub async fn run_admin(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    routes: impl Fn() -> usize + Clone + Send + Sync + 'static,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        let (stream, _) = tokio::select! {
            _ = &mut shutdown => return,
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let (metrics, routes) = (Arc::clone(&metrics), routes.clone());
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let (metrics, routes) = (Arc::clone(&metrics), routes.clone());
                async move {
                    let resp = match req.uri().path() {
                        "/health" if metrics.draining() => text(
                            StatusCode::SERVICE_UNAVAILABLE,
                            "draining\n".into(),
                            "text/plain",
                        ),
                        "/health" => text(StatusCode::OK, "ok\n".into(), "text/plain"),
                        "/metrics" => text(
                            StatusCode::OK,
                            metrics.render(routes()),
                            "text/plain; version=0.0.4",
                        ),
                        _ => text(
                            StatusCode::NOT_FOUND,
                            "try /health or /metrics\n".into(),
                            "text/plain",
                        ),
                    };
                    Ok::<_, Infallible>(resp)
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_count_by_class_and_bucket() {
        let m = Metrics::default();
        m.observe(200, Duration::from_micros(800), false);
        m.observe(503, Duration::from_millis(30), true);
        let text = m.render(3);
        assert!(
            text.contains("paas_router_responses_total{class=\"2xx\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("paas_router_responses_total{class=\"5xx\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("paas_router_errors_total 1\n"), "{text}");
        assert!(
            text.contains("paas_router_request_duration_seconds_bucket{le=\"0.001\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("paas_router_request_duration_seconds_bucket{le=\"0.05\"} 2\n"),
            "{text}"
        );
        assert!(text.contains("paas_router_routes 3\n"), "{text}");
        m.refused_connection(ConnectionCap::PerClient);
        m.closed_idle(IdleClose::WebSocket);
        let text = m.render(3);
        assert!(
            text.contains("paas_router_connections_refused_total{limit=\"per_client\"} 1\n")
                && text.contains("paas_router_connections_refused_total{limit=\"total\"} 0\n"),
            "{text}"
        );
        assert!(
            text.contains("paas_router_idle_closed_total{kind=\"websocket\"} 1\n"),
            "{text}"
        );
    }
}
