//! This host's [`Engine`]: containers from the runtime, TCP health checks, the stager.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use paas_api::{AppName, HealthCheck, LogStream};
use paas_runtime::spec::{Mount, MountKind};
use paas_runtime::{
    Container, ContainerConfig, ExecTarget, ExitReason, IdMap, Limits, NetworkMode, Runtime,
    RuntimeError, Survivor, UsageProbe, WritableLayer, VCAP_GID, VCAP_UID,
};
use paas_stager::archive::{self, ArchivePolicy};
use paas_stager::{Stager, StagingError, StagingRequest, StagingResult};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::engine::{BoxFuture, Engine, Io, Running};
use super::instance::{launcher_args, InstanceSpec, APP_PORT};

/// Pids one instance may have.
const PIDS_LIMIT: u32 = 1024;

pub struct HostEngine {
    pub runtime: Arc<Runtime>,
    pub stager: Stager,
    /// The resolv.conf instances with outbound access see: the host's name servers.
    pub outbound_resolv: Option<PathBuf>,
}

/// A container the runtime started, with what its clean-up must take back.
struct HostContainer {
    c: Container,
    app: AppName,
    /// It was given outbound access, which its removal takes back.
    outbound: bool,
}

impl Engine for HostEngine {
    fn start<'a>(
        &'a self,
        spec: &'a InstanceSpec,
        survivor_label: Option<String>,
    ) -> BoxFuture<'a, Result<Box<dyn Running>, String>> {
        Box::pin(async move {
            let c = self.start_container(spec, survivor_label).await?;
            Ok(Box::new(HostContainer {
                c,
                app: spec.app.clone(),
                outbound: spec.settings.outbound(),
            }) as Box<dyn Running>)
        })
    }

    fn take_over<'a>(
        &'a self,
        s: Survivor,
        spec: &'a InstanceSpec,
    ) -> BoxFuture<'a, Option<Box<dyn Running>>> {
        Box::pin(async move {
            match self.runtime.adopt(&s) {
                Ok(c) => {
                    // Said again, as a start says it: the nftables set may have been
                    // changed meanwhile.
                    let outbound = spec.settings.outbound();
                    if let Some(a) = &c.address {
                        if let Err(e) =
                            paas_runtime::network::set_outbound(a.instance_ip, outbound).await
                        {
                            tracing::warn!(app = %spec.app, "restating the outbound access of an instance taken over: {e}");
                        }
                    }
                    Some(Box::new(HostContainer {
                        c,
                        app: spec.app.clone(),
                        outbound,
                    }) as Box<dyn Running>)
                }
                Err(e) => {
                    tracing::warn!(container = %s.id, "cannot take over the container paasd's last run left: {e}; starting anew");
                    self.runtime.remove(s).await;
                    None
                }
            }
        })
    }

    fn healthy<'a>(
        &'a self,
        check: &'a HealthCheck,
        addr: SocketAddr,
        timeout: Duration,
    ) -> BoxFuture<'a, bool> {
        Box::pin(healthy(check, addr, timeout))
    }

    fn recover(&self) -> BoxFuture<'_, Vec<Survivor>> {
        Box::pin(self.runtime.recover())
    }

    fn remove(&self, s: Survivor) -> BoxFuture<'_, ()> {
        Box::pin(self.runtime.remove(s))
    }

    fn clean_up_leftovers(&self) -> BoxFuture<'_, usize> {
        Box::pin(self.runtime.clean_up_leftovers())
    }

    fn stage<'a>(
        &'a self,
        req: &'a StagingRequest,
        log: &'a tokio::sync::mpsc::UnboundedSender<(LogStream, String)>,
    ) -> BoxFuture<'a, Result<StagingResult, StagingError>> {
        Box::pin(self.stager.stage(req, log))
    }

    fn exec(
        &self,
        target: &ExecTarget,
        args: Vec<String>,
    ) -> Result<tokio::process::Child, RuntimeError> {
        self.runtime.exec(target, args)
    }

    fn unpack_droplet(&self, blob: &Path, into: &Path, ids: IdMap) -> anyhow::Result<()> {
        let (uid, gid) = (ids.host(VCAP_UID), ids.host(VCAP_GID));
        let f = std::fs::File::open(blob)
            .with_context(|| format!("opening droplet {}", blob.display()))?;
        archive::unpack(
            std::io::BufReader::new(f),
            into,
            ArchivePolicy::droplet(),
            Some((uid, gid)),
        )
        .context("unpacking the droplet")?;
        std::os::unix::fs::chown(into, Some(uid), Some(gid))?;
        std::fs::set_permissions(into, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
        Ok(())
    }
}

impl HostEngine {
    async fn start_container(
        &self,
        spec: &InstanceSpec,
        survivor_label: Option<String>,
    ) -> Result<Container, String> {
        let id = container_id(spec);
        let memory = spec.settings.memory;
        let address = self
            .runtime
            .allocate_address(&id)
            .map_err(|e| e.to_string())?;
        let outbound = spec.settings.outbound();
        if let Err(e) = paas_runtime::network::set_outbound(address.instance_ip, outbound).await {
            self.runtime.release_address(&address);
            return Err(e.to_string());
        }
        let mut mounts = vec![Mount {
            target: "/tmp".into(),
            kind: MountKind::Tmpfs {
                size_bytes: memory.bytes().min(256 << 20),
                mode: 0o1777,
                uid: 0,
                gid: 0,
            },
        }];
        // Name servers only for instances that may reach them: for the others a lookup
        // would wait for its timeout instead of failing at once.
        if let (true, Some(resolv)) = (outbound, &self.outbound_resolv) {
            mounts.push(Mount {
                target: "/etc/resolv.conf".into(),
                kind: MountKind::Bind {
                    source: resolv.clone(),
                    readonly: true,
                },
            });
        }
        let cfg = ContainerConfig {
            id: id.clone(),
            hostname: id.clone(),
            stack: spec.stack().to_string(),
            mounts,
            writable: Some(WritableLayer {
                target: "/home/vcap".into(),
                lower: spec.droplet_dir.clone(),
                disk_bytes: Some(spec.settings.disk_or_default().bytes()),
            }),
            args: launcher_args(&spec.start_command),
            env: instance_env(spec, &id, address.instance_ip),
            cwd: "/home/vcap/app".into(),
            uid: VCAP_UID,
            gid: VCAP_GID,
            limits: Limits {
                memory_bytes: memory.bytes(),
                pids: PIDS_LIMIT,
            },
            network: NetworkMode::Routed(address),
            id_map: Some(spec.id_map),
            stdin: spec.stdin,
            tty: spec.tty,
            survivor_label,
        };
        self.runtime.start(cfg).await.map_err(|e| e.to_string())
    }
}

impl Running for HostContainer {
    fn id(&self) -> &str {
        &self.c.id
    }

    fn addr(&self) -> Option<SocketAddr> {
        self.c
            .address
            .as_ref()
            .map(|a| SocketAddr::from((a.instance_ip, APP_PORT)))
    }

    fn take_io(&mut self) -> Io {
        Io {
            stdin: self
                .c
                .stdin
                .take()
                .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncWrite + Unpin + Send>),
            terminal: self.c.terminal.take(),
            stdout: self
                .c
                .stdout
                .take()
                .map(|s| Box::new(s) as super::engine::Output),
            stderr: self
                .c
                .stderr
                .take()
                .map(|s| Box::new(s) as super::engine::Output),
        }
    }

    fn wait(&mut self) -> BoxFuture<'_, ExitReason> {
        Box::pin(self.c.wait())
    }

    fn stop(&mut self, grace: Duration) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            self.c.stop(grace).await;
        })
    }

    fn exec_target(&self) -> Option<ExecTarget> {
        self.c.exec_target()
    }

    fn usage_probe(&self) -> Option<UsageProbe> {
        Some(self.c.usage_probe())
    }

    fn destroy(self: Box<Self>) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            let HostContainer { c, app, outbound } = *self;
            let ip = c.address.as_ref().map(|a| a.instance_ip);
            c.destroy().await;
            if let (true, Some(ip)) = (outbound, ip) {
                if let Err(e) = paas_runtime::network::set_outbound(ip, false).await {
                    tracing::warn!(app = %app, "revoking outbound access: {e}");
                }
            }
        })
    }
}

/// One health check of at most `timeout`: `port` connects, `http` wants a 2xx or 3xx,
/// `process` always passes (the process running is the check).
async fn healthy(check: &HealthCheck, addr: SocketAddr, timeout: Duration) -> bool {
    match check {
        HealthCheck::Port => matches!(
            tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr)).await,
            Ok(Ok(_))
        ),
        HealthCheck::Http { endpoint } => http_ok(addr, endpoint, timeout).await,
        HealthCheck::Process => true,
    }
}

async fn http_ok(addr: SocketAddr, endpoint: &str, timeout: Duration) -> bool {
    let attempt = async {
        let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
        let req = format!(
            "GET {endpoint} HTTP/1.0\r\nHost: {}\r\nUser-Agent: paas-health-check\r\n\r\n",
            addr.ip()
        );
        s.write_all(req.as_bytes()).await.ok()?;
        let mut head = [0u8; 32];
        let n = s.read(&mut head).await.ok()?;
        let line = std::str::from_utf8(&head[..n]).ok()?;
        let code: u16 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some((200..400).contains(&code))
    };
    matches!(tokio::time::timeout(timeout, attempt).await, Ok(Some(true)))
}

/// A container id: the app name (shortened), the index and a random part.
fn container_id(spec: &InstanceSpec) -> String {
    let mut b = [0u8; 4];
    let _ = getrandom::fill(&mut b);
    let name: String = spec.app.as_str().chars().take(24).collect();
    format!("{name}-{}-{}", spec.index, hex::encode(b))
}

/// The instance environment of DESIGN.md, as Cloud Foundry sets it.
fn instance_env(spec: &InstanceSpec, id: &str, ip: std::net::Ipv4Addr) -> Vec<String> {
    let uris = &spec.uris;
    let vcap_application = serde_json::json!({
        "application_id": spec.app_guid,
        "application_name": spec.app.as_str(),
        "application_uris": uris,
        "name": spec.app.as_str(),
        "uris": uris,
        "instance_id": id,
        "instance_index": spec.index,
        "limits": { "mem": spec.settings.memory.mb(), "fds": paas_runtime::NOFILE_LIMIT },
    });
    vec![
        format!("PORT={APP_PORT}"),
        format!("VCAP_APPLICATION={vcap_application}"),
        format!("CF_INSTANCE_INDEX={}", spec.index),
        format!("CF_INSTANCE_GUID={id}"),
        format!("CF_INSTANCE_IP={ip}"),
        format!("CF_INSTANCE_PORT={APP_PORT}"),
        format!("CF_INSTANCE_ADDR={ip}:{APP_PORT}"),
        format!("INSTANCE_INDEX={}", spec.index),
        format!("MEMORY_LIMIT={}", spec.settings.memory),
        "HOME=/home/vcap/app".to_string(),
        "TMPDIR=/home/vcap/tmp".to_string(),
        "USER=vcap".to_string(),
        "LANG=C.UTF-8".to_string(),
        "PATH=/usr/local/bin:/usr/bin:/bin".to_string(),
        format!("CF_STACK={}", spec.stack()),
    ]
    .into_iter()
    .chain(
        (!spec.system_env.iter().any(|(k, _)| k == "VCAP_SERVICES"))
            .then(|| "VCAP_SERVICES={}".to_string()),
    )
    .chain(spec.system_env.iter().map(|(k, v)| format!("{k}={v}")))
    .chain(
        spec.env
            .iter()
            // One value a name: the bindings' (the platform leaves DATABASE_URL out when
            // the app sets its own).
            .filter(|(k, _)| !spec.system_env.iter().any(|(s, _)| s == k))
            .map(|(k, v)| format!("{k}={v}")),
    )
    .collect()
}
