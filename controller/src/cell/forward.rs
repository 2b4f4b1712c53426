//! A port on the cell's advertised address that forwards to one instance, so that a
//! router on another host can reach it (instance addresses are private to their host),
//! as Diego's cells map a host port to each container.
//!
//! Plain TCP, copied both ways by tokio; the forwarder stops listening when dropped, and
//! each connection ends when either side closes it.

use std::net::{Ipv4Addr, SocketAddr};

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
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                };
                let _ = inbound.set_nodelay(true);
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await else {
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
