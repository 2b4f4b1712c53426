//! Instance networking: a network namespace per instance, joined to the host by a veth pair.
//!
//! Each instance takes a /31 from the platform's pool: the even address is the host end
//! (and the instance's gateway), the odd one the instance. Point-to-point links with no
//! bridge mean instances share no layer-2 segment, so one cannot reach another without
//! going through the host's routing, where it can be filtered.
//!
//! Links are made with iproute2's `ip -batch`, two processes per instance.
//!
//! [`isolate_instances`] installs the nftables rules that make an instance reachable
//! from the host (router, health checks) but keep it from starting a connection to the
//! host or to another instance. The rules match every `pv*` link, so daemons sharing a
//! host share them; applying them is one atomic, idempotent transaction.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Mutex;

use tokio::io::AsyncWriteExt;
use tokio::process::Command;

#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error("instance address pool {0} is invalid: give an IPv4 network of /8 to /30, such as 10.244.0.0/16")]
    BadPool(String),
    #[error("the instance address pool {0} is used up: stop some instances or give a larger pool")]
    Exhausted(String),
    #[error("running `ip` to {action}: {source}; is iproute2 installed?")]
    Spawn {
        action: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`ip` failed to {action}: {stderr}")]
    Ip { action: String, stderr: String },
    #[error(
        "running `nft` to isolate instances: {0}; install nftables (apt-get install nftables)"
    )]
    NftMissing(#[source] std::io::Error),
    #[error("`nft` refused the instance isolation rules: {0}")]
    Nft(String),
}

/// A pool of /31 point-to-point networks for instances.
#[derive(Debug)]
pub struct AddressPool {
    cidr: String,
    base: u32,
    pairs: u32,
    used: Mutex<BTreeSet<u32>>,
}

/// One instance's network: its namespace, the host end of its veth, and its addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceAddress {
    pub pair: u32,
    pub netns: String,
    pub host_if: String,
    pub host_ip: Ipv4Addr,
    pub instance_ip: Ipv4Addr,
}

impl InstanceAddress {
    /// The namespace file that `paas-init` joins.
    pub fn netns_path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.netns)
    }
}

impl AddressPool {
    /// Parses `A.B.C.D/N`.
    pub fn new(cidr: &str) -> Result<Self, NetworkError> {
        let bad = || NetworkError::BadPool(cidr.to_string());
        let (ip, len) = cidr.split_once('/').ok_or_else(bad)?;
        let ip: Ipv4Addr = ip.parse().map_err(|_| bad())?;
        let len: u32 = len.parse().map_err(|_| bad())?;
        if !(8..=30).contains(&len) {
            return Err(bad());
        }
        let mask = u32::MAX << (32 - len);
        Ok(AddressPool {
            cidr: cidr.to_string(),
            base: u32::from(ip) & mask,
            pairs: 1 << (32 - len - 1),
            used: Mutex::new(BTreeSet::new()),
        })
    }

    /// Takes a free /31 for the container `id`. Its links are named after a hash of the
    /// id, which keeps names within the kernel's 15 bytes and unique for distinct ids.
    pub fn allocate(&self, id: &str) -> Result<InstanceAddress, NetworkError> {
        let mut used = self.used.lock().unwrap_or_else(|p| p.into_inner());
        let pair = (0..self.pairs)
            .find(|p| !used.contains(p))
            .ok_or_else(|| NetworkError::Exhausted(self.cidr.clone()))?;
        used.insert(pair);
        let short = short_name(id);
        Ok(InstanceAddress {
            pair,
            netns: format!("paas-{short}"),
            host_if: format!("pv{short}"),
            host_ip: Ipv4Addr::from(self.base + 2 * pair),
            instance_ip: Ipv4Addr::from(self.base + 2 * pair + 1),
        })
    }

    /// Takes the pair a container an earlier daemon started holds, with the names it
    /// was given then ([`Runtime::adopt`](crate::Runtime::adopt)).
    pub fn claim(
        &self,
        pair: u32,
        netns: &str,
        host_if: &str,
    ) -> Result<InstanceAddress, NetworkError> {
        let mut used = self.used.lock().unwrap_or_else(|p| p.into_inner());
        if pair >= self.pairs || !used.insert(pair) {
            return Err(NetworkError::Exhausted(format!(
                "{} (pair {pair} is outside it or taken)",
                self.cidr
            )));
        }
        Ok(InstanceAddress {
            pair,
            netns: netns.to_string(),
            host_if: host_if.to_string(),
            host_ip: Ipv4Addr::from(self.base + 2 * pair),
            instance_ip: Ipv4Addr::from(self.base + 2 * pair + 1),
        })
    }

    /// Returns a pair to the pool.
    pub fn release(&self, addr: &InstanceAddress) {
        let mut used = self.used.lock().unwrap_or_else(|p| p.into_inner());
        used.remove(&addr.pair);
    }

    /// Makes the namespace and the veth pair, and configures both ends.
    pub async fn create(&self, a: &InstanceAddress) -> Result<(), NetworkError> {
        ip(
            &[],
            &format!(
                "netns add {ns}\n\
                 link add {hif} type veth peer name eth0 netns {ns}\n\
                 addr add {hip}/31 dev {hif}\n\
                 link set {hif} up\n",
                ns = a.netns,
                hif = a.host_if,
                hip = a.host_ip
            ),
            "create the instance network",
        )
        .await?;
        ip(
            &["-n", &a.netns],
            &format!(
                "link set lo up\n\
                 addr add {iip}/31 dev eth0\n\
                 link set eth0 up\n\
                 route add default via {hip} dev eth0\n",
                iip = a.instance_ip,
                hip = a.host_ip
            ),
            "configure the instance network",
        )
        .await
    }

    /// Removes the namespace and the veth pair (deleting either end deletes both).
    /// Tolerates a network that is already gone.
    pub async fn destroy(&self, a: &InstanceAddress) -> Result<(), NetworkError> {
        let _ = ip(&[], &format!("link del {}\n", a.host_if), "delete the veth").await;
        let res = ip(
            &[],
            &format!("netns del {}\n", a.netns),
            "delete the namespace",
        )
        .await;
        self.release(a);
        match res {
            Err(NetworkError::Ip { stderr, .. }) if stderr.contains("No such file") => Ok(()),
            other => other,
        }
    }
}

/// The nftables table that isolates instances.
const NFT_TABLE: &str = "paas";

/// The nftables set of instance addresses allowed to open connections to the world.
const OUTBOUND_SET: &str = "outbound";

pub use paas_egress::{egress_denied, Ipv4Net};
use paas_egress::{EGRESS_DENIED_V4, EGRESS_DENIED_V6};

/// Installs (or refreshes) the host firewall rules for instances: traffic that an
/// instance starts towards the host or to another instance is dropped; replies to
/// connections the host started are let through. Instances whose address is in the
/// `outbound` set may open connections to the world (masqueraded behind the host),
/// except to [the host's neighbourhood and metadata services](EGRESS_DENIED_V4), unless
/// the operator lists a network in `egress_allowed`, or it is one of the `name_servers`
/// instances are given (port 53 only) (for instances of `pool`: each
/// daemon on a host keeps its own list, in a chain reached through the `pool_egress` map
/// by
/// the pool's addresses). The sets and the map survive a refresh.
///
/// Giving an instance outbound access turns on the host's IPv4 forwarding, which would
/// also make the host a router between its other interfaces (say, from one network to
/// another it is on). Unless `host_routes` says the host is meant to route, a guard
/// drops forwarded traffic that neither comes from nor goes to an instance.
pub async fn isolate_instances(
    pool: &AddressPool,
    egress_allowed: &[Ipv4Net],
    name_servers: &[Ipv4Addr],
    host_routes: bool,
) -> Result<(), NetworkError> {
    let pool_chain = format!("pool_{}", short_name(&pool.cidr));
    let mut allowed = String::new();
    for net in egress_allowed {
        allowed.push_str(&format!(
            "add rule inet {NFT_TABLE} {pool_chain} ip saddr @{OUTBOUND_SET} ip daddr {net} accept\n"
        ));
    }
    // The name servers instances are given, on port 53 only, wherever they are.
    for server in name_servers {
        for proto in ["udp", "tcp"] {
            allowed.push_str(&format!(
                "add rule inet {NFT_TABLE} {pool_chain} ip saddr @{OUTBOUND_SET} ip daddr {server} {proto} dport 53 accept\n"
            ));
        }
    }
    let pool_net = Ipv4Net {
        addr: Ipv4Addr::from(pool.base),
        len: (32 - (2 * pool.pairs).trailing_zeros()) as u8,
    };
    let guard = if host_routes {
        format!("delete chain inet {NFT_TABLE} forward_guard\n")
    } else {
        format!(
            "add rule inet {NFT_TABLE} forward_guard iifname != \"pv*\" oifname != \"pv*\" counter drop\n"
        )
    };
    // nft needs a chain named before the map whose elements jump to it.
    let ruleset = format!(
        "add table inet {t}\n\
         add set inet {t} {o} {{ type ipv4_addr; }}\n\
         add chain inet {t} {pool_chain}\n\
         add map inet {t} pool_egress {{ type ipv4_addr : verdict; flags interval; }}\n\
         flush chain inet {t} {pool_chain}\n\
         {allowed}\
         add element inet {t} pool_egress {{ {pool_net} : jump {pool_chain} }}\n\
         add chain inet {t} input {{ type filter hook input priority -10; policy accept; }}\n\
         add chain inet {t} forward {{ type filter hook forward priority -10; policy accept; }}\n\
         add chain inet {t} postrouting {{ type nat hook postrouting priority srcnat; policy accept; }}\n\
         flush chain inet {t} input\n\
         flush chain inet {t} forward\n\
         flush chain inet {t} postrouting\n\
         add rule inet {t} input iifname \"pv*\" ct state established,related accept\n\
         add rule inet {t} input iifname \"pv*\" counter drop\n\
         add rule inet {t} forward oifname \"pv*\" ct state established,related accept\n\
         add rule inet {t} forward iifname \"pv*\" oifname \"pv*\" counter drop\n\
         add rule inet {t} forward iifname \"pv*\" ip saddr vmap @pool_egress\n\
         add rule inet {t} forward iifname \"pv*\" ip daddr {{ {deny4} }} counter drop\n\
         add rule inet {t} forward iifname \"pv*\" ip6 daddr {{ {deny6} }} counter drop\n\
         add rule inet {t} forward iifname \"pv*\" ip saddr @{o} accept\n\
         add rule inet {t} forward iifname \"pv*\" counter drop\n\
         add rule inet {t} forward oifname \"pv*\" counter drop\n\
         add rule inet {t} postrouting ip saddr @{o} oifname != \"pv*\" masquerade\n\
         add chain inet {t} forward_guard {{ type filter hook forward priority -9; policy accept; }}\n\
         flush chain inet {t} forward_guard\n\
         {guard}",
        t = NFT_TABLE,
        o = OUTBOUND_SET,
        deny4 = EGRESS_DENIED_V4,
        deny6 = EGRESS_DENIED_V6,
    );
    nft(&ruleset).await
}

/// Lets the instance at `ip` open connections to the world, or not. Called for every
/// instance as it starts, so an address reused after a crash never keeps the outbound
/// access of the instance that had it before.
pub async fn set_outbound(ip: Ipv4Addr, allowed: bool) -> Result<(), NetworkError> {
    let (t, o) = (NFT_TABLE, OUTBOUND_SET);
    // Adding first makes the delete succeed whether or not the address was there.
    let mut batch = format!("add element inet {t} {o} {{ {ip} }}\n");
    if !allowed {
        batch.push_str(&format!("delete element inet {t} {o} {{ {ip} }}\n"));
    } else {
        // The host forwards for instances only once one may reach the world.
        std::fs::write("/proc/sys/net/ipv4/ip_forward", "1").map_err(|e| {
            NetworkError::Nft(format!(
                "enabling IPv4 forwarding for outbound traffic: {e}"
            ))
        })?;
    }
    nft(&batch).await
}

async fn nft(batch: &str) -> Result<(), NetworkError> {
    let ruleset = batch;
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(NetworkError::NftMissing)?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(ruleset.as_bytes())
            .await
            .map_err(NetworkError::NftMissing)?;
    }
    let out = child
        .wait_with_output()
        .await
        .map_err(NetworkError::NftMissing)?;
    if out.status.success() {
        Ok(())
    } else {
        Err(NetworkError::Nft(
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ))
    }
}

/// 10 hex digits of a 64-bit FNV-1a hash of `id`.
fn short_name(id: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{:010x}", h & 0xff_ffff_ffff)
}

async fn ip(opts: &[&str], batch: &str, action: &str) -> Result<(), NetworkError> {
    let mut child = Command::new("ip")
        .args(opts)
        .args(["-batch", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| NetworkError::Spawn {
            action: action.to_string(),
            source,
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(batch.as_bytes())
            .await
            .map_err(|source| NetworkError::Spawn {
                action: action.to_string(),
                source,
            })?;
    }
    let out = child
        .wait_with_output()
        .await
        .map_err(|source| NetworkError::Spawn {
            action: action.to_string(),
            source,
        })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(NetworkError::Ip {
            action: action.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_s_neighbourhood_and_metadata_services_are_denied_the_world_is_not() {
        for denied in [
            "127.0.0.1",
            "10.244.0.3",
            "172.20.1.1",
            "192.168.1.10",
            "169.254.169.254",
            "100.100.100.200",
            "168.63.129.16",
            "0.0.0.0",
            "::1",
            "fd00:ec2::254",
            "fe80::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(egress_denied(denied.parse().unwrap()), "{denied}");
        }
        for allowed in [
            "1.1.1.1",
            "93.184.216.34",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            assert!(!egress_denied(allowed.parse().unwrap()), "{allowed}");
        }
    }

    #[test]
    fn pairs_are_point_to_point_within_the_pool() {
        let pool = AddressPool::new("10.250.3.0/24").unwrap();
        let a = pool.allocate("abcdef0123456").unwrap();
        let b = pool.allocate("99").unwrap();
        assert_eq!(a.host_ip, Ipv4Addr::new(10, 250, 3, 0));
        assert_eq!(a.instance_ip, Ipv4Addr::new(10, 250, 3, 1));
        assert_eq!(b.instance_ip, Ipv4Addr::new(10, 250, 3, 3));
        assert_eq!(a.host_if.len(), 12, "interface names are at most 15 bytes");
        assert_ne!(a.host_if, b.host_if);
        assert_eq!(a.netns, format!("paas-{}", &a.host_if[2..]));
        pool.release(&a);
        assert_eq!(pool.allocate("c").unwrap().pair, 0);
    }

    #[test]
    fn a_full_pool_says_so() {
        let pool = AddressPool::new("10.0.0.0/30").unwrap();
        pool.allocate("a").unwrap();
        pool.allocate("b").unwrap();
        assert!(matches!(
            pool.allocate("c"),
            Err(NetworkError::Exhausted(_))
        ));
    }

    #[test]
    fn bad_pools_are_refused() {
        for bad in [
            "10.0.0.0",
            "10.0.0.0/31",
            "10.0.0.0/4",
            "x/16",
            "10.0.0.0/abc",
        ] {
            assert!(AddressPool::new(bad).is_err(), "{bad}");
        }
    }
}
