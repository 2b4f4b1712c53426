//! `paas-run [OPTIONS] -- COMMAND...`: runs one command in a paas container on the host
//! stack, as an app instance would run, and exits with its status. For trying the runtime
//! by hand and for `benches/runtime-start.sh`; `paasd` does not use it.

use std::path::PathBuf;
use std::process::ExitCode;

use paas_runtime::spec::{Mount, MountKind};
use paas_runtime::{
    AddressPool, CgroupDriver, ContainerConfig, ExitReason, IdMap, Limits, NetworkMode, Runtime,
    Stack, VCAP_GID, VCAP_UID,
};

const USAGE: &str =
    "usage: paas-run [--state-dir DIR] [--memory MIB] [--pids N] [--user-namespace HOST_ID] -- COMMAND [ARG...]

Runs COMMAND in a container: its own mount, pid, uts, ipc, net and cgroup namespaces,
the host stack read-only, a private /tmp, uid 2000 with no capabilities, and the memory
and pid limits given (default 64 MiB, 64 pids). With --user-namespace, in a user
namespace whose ids 0-65535 are the host's HOST_ID and after, as paasd runs apps.
Needs root.";

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("paas-run: {e}");
            ExitCode::from(125)
        }
    }
}

fn run() -> Result<ExitCode, String> {
    let mut args = std::env::args().skip(1);
    let mut state = PathBuf::from("/var/lib/paas-run");
    let mut memory_mib: u64 = 64;
    let mut pids: u32 = 64;
    let mut command = Vec::new();
    let mut id_map = None;
    while let Some(a) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .ok_or_else(|| format!("{name} needs a value\n\n{USAGE}"))
        };
        match a.as_str() {
            "--state-dir" => state = PathBuf::from(value("--state-dir")?),
            "--memory" => {
                memory_mib = value("--memory")?
                    .parse()
                    .map_err(|_| "--memory takes MiB, e.g. 64")?
            }
            "--pids" => {
                pids = value("--pids")?
                    .parse()
                    .map_err(|_| "--pids takes a number")?
            }
            "--user-namespace" => {
                let base: u32 = value("--user-namespace")?
                    .parse()
                    .map_err(|_| "--user-namespace takes a host id, e.g. 268500992")?;
                id_map = Some(IdMap {
                    host_base: base,
                    size: IdMap::SIZE,
                });
            }
            "--" => {
                command = args.by_ref().collect();
                break;
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(ExitCode::SUCCESS);
            }
            other => return Err(format!("unknown option {other}\n\n{USAGE}")),
        }
    }
    if command.is_empty() {
        return Err(format!("no command given\n\n{USAGE}"));
    }
    let init = std::env::current_exe()
        .map_err(|e| e.to_string())?
        .with_file_name("paas-init");
    let stack_dir = state.join("stack");
    // The stack's /etc is made once and reused, as paasd reuses it across instances.
    let stack = if stack_dir.join("etc").is_dir() {
        Stack::open_host(&stack_dir)
    } else {
        Stack::prepare_host(&stack_dir).map_err(|e| e.to_string())?
    };
    let cgroup_base = std::path::Path::new("/sys/fs/cgroup");
    let cgroups = CgroupDriver::detect(cgroup_base).map_err(|e| e.to_string())?;
    // As paasd does at start (see cgroup_mount); without it, a start waits 9-14 ms.
    if let Err(e) = paas_runtime::cgroup_mount::favor_dynamic_changes(cgroup_base) {
        eprintln!("paas-run: warning: {e}");
    }
    let pool = AddressPool::new("10.255.0.0/30").map_err(|e| e.to_string())?;
    let runtime = Runtime::new(init, state.join("containers"), cgroups, pool, vec![stack])
        .map_err(|e| e.to_string())?;
    let mut id = [0u8; 4];
    let _ = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut id));
    let id = format!(
        "run-{}",
        id.iter().map(|b| format!("{b:02x}")).collect::<String>()
    );
    let cfg = ContainerConfig {
        id: id.clone(),
        hostname: id,
        stack: paas_runtime::stack::HOST.into(),
        mounts: vec![Mount {
            target: "/tmp".into(),
            kind: MountKind::Tmpfs {
                size_bytes: memory_mib << 20,
                mode: 0o1777,
                uid: 0,
                gid: 0,
            },
        }],
        args: command,
        env: vec![
            "PATH=/usr/local/bin:/usr/bin:/bin".into(),
            "HOME=/tmp".into(),
            "LANG=C.UTF-8".into(),
        ],
        cwd: "/tmp".into(),
        uid: VCAP_UID,
        gid: VCAP_GID,
        limits: Limits {
            memory_bytes: memory_mib << 20,
            pids,
        },
        network: NetworkMode::Isolated,
        writable: None,
        id_map,
        stdin: false,
        tty: None,
        survivor_label: None,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async move {
        let mut c = runtime.start(cfg).await.map_err(|e| e.to_string())?;
        let (mut out, mut err) = (c.stdout.take(), c.stderr.take());
        let copy_out = async {
            if let Some(o) = out.as_mut() {
                let _ = tokio::io::copy(o, &mut tokio::io::stdout()).await;
            }
        };
        let copy_err = async {
            if let Some(e) = err.as_mut() {
                let _ = tokio::io::copy(e, &mut tokio::io::stderr()).await;
            }
        };
        let (reason, _, _) = tokio::join!(c.wait(), copy_out, copy_err);
        c.destroy().await;
        Ok(match reason {
            ExitReason::Exited(code) => ExitCode::from(code.clamp(0, 255) as u8),
            ExitReason::Signaled(s) => ExitCode::from((128 + s).clamp(0, 255) as u8),
            ExitReason::OutOfMemory => {
                eprintln!("paas-run: out of memory");
                ExitCode::from(137)
            }
            ExitReason::SetupFailed | ExitReason::Vanished => ExitCode::from(125),
        })
    })
}
