//! A port on the cell's advertised address that forwards to one instance, so that a
//! router on another host can reach it (instance addresses are private to their host),
//! as Diego's cells map a host port to each container.
//!
//! Plain TCP, copied both ways by tokio. A connection ends when either side closes it,
//! and every one ends when the forwarder is dropped (its instance stopped).

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

/// How long reaching the instance may take before a connection is given up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// See the module docs.
pub struct Forwarder {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Forwarder {
    /// Listens on a free port of `ip` and forwards each connection to `target`.
    pub fn start(ip: Ipv4Addr, target: SocketAddr) -> std::io::Result<Forwarder> {
        let std_listener = std::net::TcpListener::bind((ip, 0))?;
        std_listener.set_nonblocking(true)?;
        let listener = tokio::net::TcpListener::from_std(std_listener)?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            // The connections belong to the listener's task: when it is aborted (the
            // forwarder dropped), they are too, so none outlives its instance.
            let mut connections = tokio::task::JoinSet::new();
            loop {
                let accepted = tokio::select! {
                    a = listener.accept() => a,
                    // Reap finished connections as they end.
                    Some(_) = connections.join_next(), if !connections.is_empty() => continue,
                };
                let Ok((mut inbound, _)) = accepted else {
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                };
                let _ = inbound.set_nodelay(true);
                connections.spawn(async move {
                    let connect = tokio::net::TcpStream::connect(target);
                    let Ok(Ok(mut outbound)) = tokio::time::timeout(CONNECT_TIMEOUT, connect).await
                    else {
                        return;
                    };
                    let _ = outbound.set_nodelay(true);
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                });
            }
        });
        Ok(Forwarder { addr, task })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.task.abort();
    }
}
