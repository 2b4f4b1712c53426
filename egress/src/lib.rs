//! Connections the host makes on a tenant's behalf: a syslog drain's, a route service's.
//!
//! The URL is the tenant's and the connection leaves from the host, which makes each a
//! server-side request forgery (CWE-918) waiting to happen. They are held to the rule
//! instances with outbound access are held to ([`egress_denied`]: private, loopback,
//! link-local, cloud metadata, …), and may not reach the host's own addresses either,
//! unless the operator allows a network. The name is resolved once per connection and
//! the address checked is the one connected to, so a DNS answer that changes after the
//! check (rebinding) does not matter.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// Where instances with outbound access still may not connect: the networks that are not
/// the world but the host's neighbourhood (RFC 1918 private ranges, carrier-grade NAT
/// RFC 6598, loopback, link-local RFC 3927, "this network", IETF protocol assignments,
/// multicast and reserved space), and the cloud metadata services that hand out the
/// host's credentials (169.254.169.254 on AWS, GCP and others; 100.100.100.200 on Alibaba
/// Cloud; 168.63.129.16, a public address, on Azure): the SSRF-to-metadata attack of
/// Capital One's 2019 breach. RFC 2544's benchmarking range (198.18.0.0/15) is not listed.
pub const EGRESS_DENIED_V4: &str = "0.0.0.0/8, 10.0.0.0/8, 100.64.0.0/10, 127.0.0.0/8, \
169.254.0.0/16, 172.16.0.0/12, 192.0.0.0/24, 192.168.0.0/16, 224.0.0.0/4, 240.0.0.0/4, \
168.63.129.16";
/// The same for IPv6: loopback, unique-local (AWS's fd00:ec2::254 metadata lies in it),
/// link-local and multicast.
pub const EGRESS_DENIED_V6: &str = "::1, fc00::/7, fe80::/10, ff00::/8";

/// An IPv4 network `A.B.C.D/N`, parsed, so that only numbers reach a firewall rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Net {
    pub addr: Ipv4Addr,
    pub len: u8,
}

impl std::str::FromStr for Ipv4Net {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad =
            || format!("{s:?} is not an IPv4 network: write it as A.B.C.D/N, such as 10.1.0.0/16");
        let (ip, len) = s.split_once('/').unwrap_or((s, "32"));
        let addr: Ipv4Addr = ip.parse().map_err(|_| bad())?;
        let len: u8 = len.parse().map_err(|_| bad())?;
        if len > 32 {
            return Err(bad());
        }
        let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
        Ok(Ipv4Net {
            addr: Ipv4Addr::from(u32::from(addr) & mask),
            len,
        })
    }
}

impl Ipv4Net {
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let mask = if self.len == 0 {
            0
        } else {
            u32::MAX << (32 - self.len)
        };
        u32::from(ip) & mask == u32::from(self.addr)
    }
}

/// Whether `ip` is one of the networks instances with outbound access may still not
/// reach ([`EGRESS_DENIED_V4`], [`EGRESS_DENIED_V6`]; an IPv4-mapped IPv6 address as its
/// IPv4 one). The host's own connections made for a tenant (syslog drains) are held to
/// the same rule.
pub fn egress_denied(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => EGRESS_DENIED_V4
            .split(',')
            .filter_map(|n| n.trim().parse::<Ipv4Net>().ok())
            .any(|n| n.contains(v4)),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return egress_denied(v4.into());
            }
            EGRESS_DENIED_V6.split(',').any(|n| {
                let (addr, len) = n.trim().split_once('/').unwrap_or((n.trim(), "128"));
                match (addr.parse::<std::net::Ipv6Addr>(), len.parse::<u32>()) {
                    (Ok(net), Ok(len)) if len <= 128 => {
                        let mask = u128::MAX.checked_shl(128 - len).unwrap_or(0);
                        u128::from(v6) & mask == u128::from(net) & mask
                    }
                    _ => false,
                }
            })
        }
    }
}

impl std::fmt::Display for Ipv4Net {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

/// Whether the host may connect to `ip` for a tenant: not refused by [`egress_denied`],
/// not one of the host's `own` addresses, or in an `allowed` network. An IPv6 address
/// that carries an IPv4 one (mapped, compatible, NAT64 or 6to4) is judged as that IPv4
/// address, since that is what it reaches.
pub fn permitted(ip: IpAddr, allowed: &[Ipv4Net], own: &[IpAddr]) -> bool {
    let ip = as_v4(ip);
    if let IpAddr::V4(v4) = ip {
        if allowed.iter().any(|n| n.contains(v4)) {
            return true;
        }
    }
    !egress_denied(ip) && !own.iter().any(|o| as_v4(*o) == ip) && !ip.is_unspecified()
}

/// `ip`, or the IPv4 address an IPv6 one carries.
fn as_v4(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => embedded_v4(v6).map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn embedded_v4(v6: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = v6.segments();
    let last32 = || Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    match s {
        [0, 0, 0, 0, 0, 0xffff, ..] => Some(last32()),
        [0, 0, 0, 0, 0, 0, hi, _] if hi != 0 => Some(last32()),
        [0x64, 0xff9b, 0, 0, 0, 0, ..] => Some(last32()),
        [0x64, 0xff9b, 1, ..] => Some(last32()),
        [0x2002, a, b, ..] => Some(Ipv4Addr::new(
            (a >> 8) as u8,
            a as u8,
            (b >> 8) as u8,
            b as u8,
        )),
        _ => None,
    }
}

/// The addresses of this host's interfaces.
pub fn host_addresses() -> Vec<IpAddr> {
    let Ok(list) = nix::ifaddrs::getifaddrs() else {
        return Vec::new();
    };
    list.filter_map(|i| {
        let a = i.address?;
        a.as_sockaddr_in()
            .map(|s| IpAddr::V4(s.ip()))
            .or_else(|| a.as_sockaddr_in6().map(|s| IpAddr::V6(s.ip())))
    })
    .collect()
}

/// Why [`resolve`] found no address to connect to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResolveError {
    /// The name was not resolved in time.
    Slow { host: String, secs: u64 },
    /// The name does not resolve.
    Lookup(String),
    /// Every address it resolves to is refused; the words say which.
    Refused(String),
}

impl std::fmt::Display for ResolveError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ResolveError::Slow { host, secs } => write!(f, "resolving {host} took over {secs} s"),
            ResolveError::Lookup(e) => f.write_str(e),
            ResolveError::Refused(what) => write!(
                f,
                "{what} the platform does not connect to for a tenant (private, loopback, link-local, metadata or this host's own)"
            ),
        }
    }
}

/// The first address of `host` that the rule lets the host connect to for a tenant.
pub async fn resolve(
    host: &str,
    port: u16,
    allowed: &[Ipv4Net],
    timeout: Duration,
) -> Result<SocketAddr, ResolveError> {
    let addrs: Vec<SocketAddr> =
        tokio::time::timeout(timeout, tokio::net::lookup_host((host, port)))
            .await
            .map_err(|_| ResolveError::Slow {
                host: host.to_string(),
                secs: timeout.as_secs(),
            })?
            .map_err(|e| ResolveError::Lookup(format!("resolving {host}: {e}")))?
            .collect();
    let own = host_addresses();
    addrs
        .iter()
        .find(|a| permitted(a.ip(), allowed, &own))
        .copied()
        .ok_or_else(|| {
            let ips: Vec<String> = addrs.iter().map(|a| a.ip().to_string()).collect();
            ResolveError::Refused(if ips == [host.trim_matches(['[', ']'])] {
                format!("{host} is an address")
            } else {
                format!("{host} resolves to {}, addresses", ips.join(", "))
            })
        })
}

/// Where a URL points: its scheme, host (an IPv6 one without brackets), port and path
/// with query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub scheme: String,
    pub host: String,
    pub port: u16,
    /// The path and query; `/` when the URL has none.
    pub path: String,
}

impl Endpoint {
    /// Parses `url`, whose scheme must be one of `schemes` (each with its default port).
    pub fn parse(url: &str, schemes: &[(&str, u16)]) -> Result<Endpoint, String> {
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| format!("{url:?} has no scheme, such as {}://", schemes[0].0))?;
        let Some(&(_, default_port)) = schemes.iter().find(|(s, _)| *s == scheme) else {
            let known: Vec<String> = schemes.iter().map(|(s, _)| format!("{s}://")).collect();
            return Err(format!(
                "{scheme}:// is not supported here; use {}",
                known.join(" or ")
            ));
        };
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if authority.contains('@') {
            return Err("a user or password in the URL is not supported".into());
        }
        let (host, port) = match authority.strip_prefix('[') {
            Some(v6) => {
                let (host, after) = v6.split_once(']').ok_or("an IPv6 host lacks its `]`")?;
                (host, after.strip_prefix(':'))
            }
            None => match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            },
        };
        if host.is_empty() {
            return Err("the URL names no host".into());
        }
        let port = match port {
            Some(p) => p.parse().map_err(|_| format!("{p:?} is not a port"))?,
            None => default_port,
        };
        let path = if path.starts_with('?') {
            format!("/{path}")
        } else {
            path.to_string()
        };
        Ok(Endpoint {
            scheme: scheme.to_string(),
            host: host.to_string(),
            port,
            path,
        })
    }

    /// The `Host` header for it: the port only when not the scheme's usual one.
    pub fn authority(&self, usual_port: u16) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == usual_port {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }
}

/// TLS as a client of the world: the CAs of the host's bundle, and those of the file
/// `SSL_CERT_FILE` names if set (OpenSSL's variable, for a private CA). Read once, on
/// first use: a process that gives up privileges reads it before.
pub fn tls_client_config() -> Result<Arc<rustls::ClientConfig>, String> {
    static CONFIG: OnceLock<Result<Arc<rustls::ClientConfig>, String>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            const BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";
            let mut roots = rustls::RootCertStore::empty();
            let extra = std::env::var_os("SSL_CERT_FILE");
            let host = std::fs::read(BUNDLE);
            if extra.is_none() {
                host.as_ref().map_err(|e| {
                    format!("reading the host's CA bundle {BUNDLE}: {e} (install ca-certificates)")
                })?;
            }
            let extra = match extra {
                Some(path) => Some(std::fs::read(&path).map_err(|e| {
                    format!("reading SSL_CERT_FILE {}: {e}", path.to_string_lossy())
                })?),
                None => None,
            };
            for pem in extra.iter().chain(host.as_ref().ok()) {
                for cert in rustls_pemfile::certs(&mut pem.as_slice()).flatten() {
                    let _ = roots.add(cert);
                }
            }
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| e.to_string())?
                .with_root_certificates(roots)
                .with_no_client_auth();
            Ok(Arc::new(config))
        })
        .clone()
}

/// A TLS connection to `host` over `tcp`, its certificate checked against
/// [`tls_client_config`]'s CAs, within `timeout`.
pub async fn connect_tls(
    host: &str,
    tcp: tokio::net::TcpStream,
    timeout: Duration,
) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, String> {
    let config = tls_client_config()?;
    let name = rustls::pki_types::ServerName::try_from(host.to_string())
        .map_err(|e| format!("{host}: {e}"))?;
    tokio::time::timeout(
        timeout,
        tokio_rustls::TlsConnector::from(config).connect(name, tcp),
    )
    .await
    .map_err(|_| {
        format!(
            "no TLS handshake with {host} within {} s",
            timeout.as_secs()
        )
    })?
    .map_err(|e| format!("TLS with {host}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_s_neighbourhood_is_refused_unless_allowed() {
        let own: Vec<IpAddr> = vec!["203.0.113.7".parse().unwrap()];
        let allowed: Vec<Ipv4Net> = vec!["127.0.0.1/32".parse().unwrap()];
        assert!(!permitted("127.0.0.1".parse().unwrap(), &[], &own));
        assert!(!permitted(
            "169.254.169.254".parse().unwrap(),
            &allowed,
            &own
        ));
        assert!(
            !permitted("203.0.113.7".parse().unwrap(), &[], &own),
            "the host's own"
        );
        assert!(!permitted("::ffff:10.0.0.1".parse().unwrap(), &[], &own));
        assert!(permitted("127.0.0.1".parse().unwrap(), &allowed, &own));
        assert!(permitted("198.51.100.1".parse().unwrap(), &[], &own));
        // IPv6 forms of refused IPv4 addresses are refused too.
        for v6 in [
            "::ffff:203.0.113.7",
            "::127.0.0.1",
            "64:ff9b::a00:5",
            "64:ff9b:1::7f00:1",
            "2002:a00:5::1",
            "2002:cb00:7107::1",
        ] {
            assert!(!permitted(v6.parse().unwrap(), &[], &own), "{v6}");
        }
        assert!(
            permitted("64:ff9b::c633:6401".parse().unwrap(), &[], &own),
            "NAT64 of 198.51.100.1"
        );
    }

    #[test]
    fn urls_name_scheme_host_port_and_path() {
        let s = [("https", 443), ("http", 80)];
        let e = Endpoint::parse("https://rs.example.com/check?x=1", &s).unwrap();
        assert_eq!(
            (e.host.as_str(), e.port, e.path.as_str()),
            ("rs.example.com", 443, "/check?x=1")
        );
        let e = Endpoint::parse("http://[2001:db8::1]:8080", &s).unwrap();
        assert_eq!(
            (e.host.as_str(), e.port, e.path.as_str()),
            ("2001:db8::1", 8080, "/")
        );
        assert_eq!(e.authority(80), "[2001:db8::1]:8080");
        assert!(Endpoint::parse("ftp://x", &s).is_err());
        assert!(Endpoint::parse("https://u:p@x", &s).is_err());
        assert!(Endpoint::parse("https://x:port", &s).is_err());
        assert!(Endpoint::parse("https://:1", &s).is_err());
    }
}
