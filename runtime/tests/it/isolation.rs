//! From inside a real container, every way out is tried and must fail. Each probe prints
//! DENIED when the attempt failed as it should and ALLOWED when it got through, so a
//! probe that cannot run at all fails the test too.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use paas_runtime::{ExitReason, NetworkMode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{config, fixture, run, unique, Fixture};

/// Runs a Python probe as the container's process and returns its stdout.
async fn probe(f: &Fixture, id: &str, python: &str) -> String {
    let script = format!("exec python3 -c '{}'", python.replace('\'', "'\\''"));
    let (reason, out, err) = run(f, config(id, &script, NetworkMode::Isolated)).await;
    assert_eq!(
        reason,
        ExitReason::Exited(0),
        "probe {id} failed to run: {err}"
    );
    out
}

/// A probe that tries `attempt` (Python statements) and reports whether it raised.
fn attempt(attempt: &str) -> String {
    format!("try:\n{}\n    print(\"ALLOWED\")\nexcept Exception as e:\n    print(\"DENIED\", type(e).__name__, e)\n", indent(attempt))
}

fn indent(code: &str) -> String {
    code.lines().map(|l| format!("    {l}\n")).collect()
}

const LIBC: &str = "import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\ndef check(r):\n    if r != 0:\n        raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))\n";

async fn assert_denied(f: &Fixture, id: &str, setup: &str, code: &str) {
    let out = probe(f, id, &format!("{setup}{}", attempt(code))).await;
    assert!(
        out.starts_with("DENIED"),
        "{id}: the attempt got through: {out}"
    );
}

#[tokio::test]
async fn cannot_become_root() {
    let f = fixture("10.252.0.0/24");
    assert_denied(&f, "iso-root", "import os\n", "os.setuid(0)").await;
}

#[tokio::test]
async fn has_no_capabilities() {
    let f = fixture("10.252.1.0/24");
    let out = probe(
        &f,
        "iso-caps",
        "print([l.split()[1] for l in open(\"/proc/self/status\") if l.startswith((\"CapInh\", \"CapPrm\", \"CapEff\", \"CapBnd\", \"CapAmb\"))])",
    )
    .await;
    assert_eq!(
        out.trim(),
        format!("{:?}", ["0000000000000000"; 5]).replace('"', "'")
    );
}

#[tokio::test]
async fn cannot_read_host_files() {
    let f = fixture("10.252.2.0/24");
    let secret = tempfile::NamedTempFile::new_in("/root").unwrap();
    std::fs::write(secret.path(), "host secret").unwrap();
    for (n, path) in [
        secret.path().to_str().unwrap(),
        "/etc/shadow",
        "/work",
        "/var/lib",
    ]
    .iter()
    .enumerate()
    {
        assert_denied(
            &f,
            &format!("iso-file{n}"),
            "import os\n",
            &format!("os.stat(\"{path}\")"),
        )
        .await;
    }
}

#[tokio::test]
async fn sees_only_its_own_processes() {
    let f = fixture("10.252.3.0/24");
    let out = probe(
        &f,
        "iso-ps",
        "import os\nprint(sorted(int(p) for p in os.listdir(\"/proc\") if p.isdigit()))",
    )
    .await;
    assert_eq!(
        out.trim(),
        "[1, 2]",
        "pid 1 (paas-init) and the probe itself"
    );
}

#[tokio::test]
async fn cannot_mount_unshare_or_join_namespaces() {
    let f = fixture("10.252.4.0/24");
    assert_denied(
        &f,
        "iso-mount",
        LIBC,
        "check(libc.mount(b\"none\", b\"/tmp\", b\"tmpfs\", 0, None))",
    )
    .await;
    for (name, flag) in [
        ("user", 0x1000_0000),
        ("mnt", 0x0002_0000),
        ("net", 0x4000_0000),
        ("pid", 0x2000_0000),
    ] {
        assert_denied(
            &f,
            &format!("iso-unshare-{name}"),
            LIBC,
            &format!("check(libc.unshare({flag}))"),
        )
        .await;
    }
    assert_denied(
        &f,
        "iso-setns",
        LIBC,
        "fd = os.open(\"/proc/1/ns/mnt\", os.O_RDONLY)\ncheck(libc.setns(fd, 0))",
    )
    .await;
    // A child in a new user namespace through a raw clone(CLONE_NEWUSER | SIGCHLD): the
    // filter reads clone's flags. (56 is clone on x86_64.)
    #[cfg(target_arch = "x86_64")]
    assert_denied(
        &f,
        "iso-clone",
        LIBC,
        "r = libc.syscall(56, 0x10000000 | 17, 0, 0, 0, 0)\nif r == 0:\n    os._exit(0)\nif r < 0:\n    raise OSError(ctypes.get_errno(), \"clone\")",
    )
    .await;
}

#[tokio::test]
async fn cannot_open_raw_or_packet_sockets() {
    let f = fixture("10.252.5.0/24");
    assert_denied(
        &f,
        "iso-raw",
        "import socket\n",
        "socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)",
    )
    .await;
    assert_denied(
        &f,
        "iso-packet",
        "import socket\n",
        "socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)",
    )
    .await;
}

#[tokio::test]
async fn cannot_make_devices_write_the_stack_or_rename_the_host() {
    let f = fixture("10.252.6.0/24");
    assert_denied(
        &f,
        "iso-mknod",
        "import os, stat\n",
        "os.mknod(\"/tmp/null\", stat.S_IFCHR | 0o600, os.makedev(1, 3))",
    )
    .await;
    assert_denied(
        &f,
        "iso-stack",
        "",
        "open(\"/usr/bin/paas-was-here\", \"w\")",
    )
    .await;
    assert_denied(&f, "iso-etc", "", "open(\"/etc/passwd\", \"a\")").await;
    assert_denied(
        &f,
        "iso-hostname",
        "import socket\n",
        "socket.sethostname(\"pwned\")",
    )
    .await;
}

/// A host service listening on every address, answering "host" to anyone who connects.
async fn host_service() -> u16 {
    let l = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let _ = s.write_all(b"host\n").await;
        }
    });
    port
}

/// A Python probe that connects to `addr` with a timeout.
fn connect_probe(addr: SocketAddr) -> String {
    format!(
        "import socket\n{}",
        attempt(&format!(
            "socket.create_connection((\"{}\", {}), timeout=2).recv(10)",
            addr.ip(),
            addr.port()
        ))
    )
}

async fn routed_probe(f: &Fixture, id: &str, python: &str) -> String {
    let address = f.runtime.allocate_address(&unique(id)).unwrap();
    let script = format!("exec python3 -c '{}'", python.replace('\'', "'\\''"));
    let (reason, out, err) = run(f, config(id, &script, NetworkMode::Routed(address))).await;
    assert_eq!(
        reason,
        ExitReason::Exited(0),
        "probe {id} failed to run: {err}"
    );
    out
}

#[tokio::test]
async fn cannot_reach_host_services_or_other_instances() {
    let f = fixture("10.252.7.0/24");
    let pool = paas_runtime::AddressPool::new("10.252.7.0/24").unwrap();
    paas_runtime::network::isolate_instances(&pool, &[], &[], false)
        .await
        .unwrap();
    let port = host_service().await;

    // A neighbour the host can reach: the positive control for the probes below.
    let address = f
        .runtime
        .allocate_address(&unique("iso-neighbour"))
        .unwrap();
    let neighbour_ip = address.instance_ip;
    let mut neighbour = f
        .runtime
        .start(config(
            "iso-neighbour",
            "exec python3 -m http.server 8080",
            NetworkMode::Routed(address),
        ))
        .await
        .unwrap();
    let neighbour_addr = SocketAddr::from((neighbour_ip, 8080));
    let mut reachable = false;
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(neighbour_addr).await.is_ok() {
            reachable = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(reachable, "the host reaches an instance");

    // The gateway is the host end of the probe's own link: the pool gives each pair in
    // turn, so the probe's is the next one after the neighbour's.
    let gateway = Ipv4Addr::from(u32::from(neighbour_ip) + 1);
    let out = routed_probe(
        &f,
        "iso-probe-gw",
        &connect_probe(SocketAddr::from((gateway, port))),
    )
    .await;
    assert!(
        out.starts_with("DENIED"),
        "host service via the gateway: {out}"
    );
    let out = routed_probe(&f, "iso-probe-nb", &connect_probe(neighbour_addr)).await;
    assert!(out.starts_with("DENIED"), "another instance: {out}");
    let out = routed_probe(
        &f,
        "iso-probe-lo",
        &connect_probe(SocketAddr::from((Ipv4Addr::LOCALHOST, port))),
    )
    .await;
    assert!(
        out.starts_with("DENIED"),
        "the host's loopback is not the container's: {out}"
    );

    neighbour.stop(Duration::from_secs(2)).await;
    neighbour.destroy().await;
}

#[tokio::test]
async fn fork_bomb_and_memory_hog_harm_only_themselves() {
    let f = fixture("10.252.8.0/24");
    let address = f.runtime.allocate_address(&unique("iso-survivor")).unwrap();
    let ip = address.instance_ip;
    let mut survivor = f
        .runtime
        .start(config(
            "iso-survivor",
            "exec python3 -m http.server 8080",
            NetworkMode::Routed(address),
        ))
        .await
        .unwrap();
    // The bomb stops by itself after 3 s: when `timeout` exits, pid 1 kills the rest.
    let bomb = f.runtime.start(config(
        "iso-bomb",
        "timeout 3 bash -c 'b() { b | b & }; b'; echo done",
        NetworkMode::Isolated,
    ));
    let hog = f.runtime.start(config(
        "iso-hog",
        "python3 -c 'x = bytearray(512 * 1024 * 1024)'",
        NetworkMode::Isolated,
    ));
    let (bomb, hog) = (bomb.await.unwrap(), hog.await.unwrap());
    let mut answered = 0;
    for _ in 0..40 {
        if let Ok(mut s) = tokio::net::TcpStream::connect((ip, 8080)).await {
            s.write_all(b"GET / HTTP/1.0\r\n\r\n").await.unwrap();
            let mut body = String::new();
            let _ = s.read_to_string(&mut body).await;
            if body.starts_with("HTTP/1.0 200") {
                answered += 1;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        answered >= 20,
        "the neighbour kept answering: {answered} of 40"
    );
    let mut hog = hog;
    assert_eq!(hog.wait().await, ExitReason::OutOfMemory);
    hog.destroy().await;
    let mut bomb = bomb;
    let reason = tokio::time::timeout(Duration::from_secs(30), bomb.wait())
        .await
        .expect("the bomb stops");
    assert!(matches!(reason, ExitReason::Exited(_)), "{reason:?}");
    bomb.destroy().await;
    survivor.stop(Duration::from_secs(2)).await;
    survivor.destroy().await;
}

#[tokio::test]
async fn dev_has_working_devices_and_nothing_can_be_added() {
    let f = fixture("10.252.9.0/24");
    let out = probe(
        &f,
        "iso-dev",
        "import os\nopen(\"/dev/null\", \"w\").write(\"x\")\nprint(len(open(\"/dev/urandom\", \"rb\").read(8)), open(\"/dev/zero\", \"rb\").read(2))\nprint(sorted(os.listdir(\"/dev\")))",
    )
    .await;
    assert!(out.starts_with("8 b'\\x00\\x00'\n"), "{out}");
    for dev in [
        "null", "zero", "full", "random", "urandom", "tty", "pts", "shm", "ptmx", "fd",
    ] {
        assert!(out.contains(&format!("'{dev}'")), "{dev}: {out}");
    }
    assert_denied(&f, "iso-dev-add", "", "open(\"/dev/sda\", \"w\")").await;
}

/// Waits until the container's own process (`comm`, after the shell's `exec`) runs, and
/// returns its host pid.
async fn process_named(c: &paas_runtime::Container, comm: &str) -> i32 {
    for _ in 0..500 {
        if let Some(pid) = c.cgroup().pids().into_iter().find(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|s| s.trim() == comm)
        }) {
            return pid;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("no process named {comm} appeared in the container");
}

/// The device cgroup allows the nodes paas-init makes and nothing else: a node of
/// another device that shows up in the container's `/dev` (made here from the host,
/// since the container cannot mknod) cannot be opened, while a second node of an allowed
/// device can, and so can a pty. `/dev/kmsg` opened write-only needs no privilege, so
/// without the device cgroup the container could write into the host's kernel log.
#[tokio::test]
async fn devices_outside_the_allow_list_cannot_be_opened_even_with_a_node() {
    let f = fixture("10.252.10.0/24");
    let cfg = config("iso-devcg", "exec sleep 30", NetworkMode::Isolated);
    let id = cfg.id.clone();
    let mut c = f.runtime.start(cfg).await.unwrap();
    let pid = process_named(&c, "sleep").await;
    let target = c.exec_target().expect("the container runs");
    for (name, major, minor) in [("null-probe", 1, 3), ("kmsg-probe", 1, 11)] {
        let p = format!("/proc/{pid}/root/dev/{name}");
        nix::sys::stat::mknod(
            p.as_str(),
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::from_bits_truncate(0o666),
            nix::sys::stat::makedev(major, minor),
        )
        .unwrap_or_else(|e| panic!("mknod {p}: {e}"));
        std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o666)).unwrap();
    }
    let python = "import os\nfor name in (\"null-probe\", \"kmsg-probe\"):\n    try:\n        os.close(os.open(\"/dev/\" + name, os.O_WRONLY))\n        print(name, \"ALLOWED\")\n    except OSError as e:\n        print(name, \"DENIED\", e.errno)\nmaster, pty = os.openpty()\nprint(\"pty\", os.major(os.fstat(pty).st_rdev))\n";
    let out = f
        .runtime
        .exec(
            &target,
            vec!["/usr/bin/python3".into(), "-c".into(), python.into()],
        )
        .unwrap()
        .wait_with_output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    c.stop(Duration::from_secs(2)).await;
    assert_eq!(
        text,
        format!(
            "null-probe ALLOWED\nkmsg-probe DENIED {}\npty 136\n",
            libc::EPERM
        ),
        "an allowed device and a pty open, another device does not: {err}"
    );
    // On cgroup v1 the list is a file the host can read.
    let v1 = std::path::Path::new("/sys/fs/cgroup/devices/devices.list").exists()
        && !std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    if v1 {
        let list =
            std::fs::read_to_string(format!("/sys/fs/cgroup/devices/paas/{id}/devices.list"));
        c.destroy().await;
        let mut list: Vec<String> = list.unwrap().lines().map(str::to_string).collect();
        list.sort();
        assert_eq!(
            list,
            [
                "c 136:* rwm",
                "c 1:3 rwm",
                "c 1:5 rwm",
                "c 1:7 rwm",
                "c 1:8 rwm",
                "c 1:9 rwm",
                "c 5:0 rwm",
                "c 5:2 rwm"
            ]
        );
    } else {
        c.destroy().await;
    }
}

/// The `/proc` files and folders runc masks (`maskedPaths` in its default spec) are
/// empty in a container, for those this host's kernel has.
#[tokio::test]
async fn proc_paths_runc_masks_are_empty() {
    let f = fixture("10.252.11.0/24");
    let files = [
        "kcore",
        "keys",
        "latency_stats",
        "timer_list",
        "timer_stats",
        "sched_debug",
    ];
    let dirs = ["acpi", "asound", "scsi"];
    let on_host: Vec<&str> = files
        .iter()
        .chain(&dirs)
        .copied()
        .filter(|name| std::path::Path::new("/proc").join(name).exists())
        .collect();
    assert!(!on_host.is_empty(), "this host has none of them to check");
    let out = probe(
        &f,
        "iso-proc-mask",
        &format!(
            "import os\nfor name in {files:?}:\n    p = \"/proc/\" + name\n    if os.path.exists(p):\n        print(name, len(open(p, \"rb\").read()))\nfor name in {dirs:?}:\n    p = \"/proc/\" + name\n    if os.path.exists(p):\n        print(name, len(os.listdir(p)))\n"
        ),
    )
    .await;
    let seen: Vec<&str> = out.lines().collect();
    let mut expected: Vec<String> = on_host.iter().map(|name| format!("{name} 0")).collect();
    expected.sort();
    let mut seen: Vec<String> = seen.iter().map(|l| l.to_string()).collect();
    seen.sort();
    assert_eq!(seen, expected, "each is empty in the container");
}

/// Unmounts a host mount made for a test, even when the test fails.
struct Unmount(std::path::PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// A read-only bind of a folder that has a mount below it is read-only below too. (A
/// bind remount changes one mount only: the tmpfs below stayed writable.)
#[tokio::test]
async fn read_only_binds_are_read_only_below_too() {
    use std::os::unix::fs::PermissionsExt;
    let f = fixture("10.252.12.0/24");
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("sub");
    std::fs::create_dir(&sub).unwrap();
    // Writable by anyone, so that only the mounts' read-only flag can refuse a write.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o1777)).unwrap();
    nix::mount::mount(
        Some("tmpfs"),
        &sub,
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        Some("size=1m,mode=1777"),
    )
    .unwrap();
    let _unmount = Unmount(sub.clone());
    let mut cfg = config(
        "iso-ro-rec",
        "exec python3 -c 'import errno\nfor p in (\"/data/x\", \"/data/sub/x\"):\n    try:\n        open(p, \"w\").close()\n        print(p, \"ALLOWED\")\n    except OSError as e:\n        print(p, errno.errorcode[e.errno])\n'",
        NetworkMode::Isolated,
    );
    cfg.mounts.push(paas_runtime::spec::Mount {
        target: "/data".into(),
        kind: paas_runtime::spec::MountKind::Bind {
            source: dir.path().to_path_buf(),
            readonly: true,
        },
    });
    let (r, out, err) = run(&f, cfg).await;
    assert_eq!(r, ExitReason::Exited(0), "{err}");
    assert_eq!(out, "/data/x EROFS\n/data/sub/x EROFS\n");
    assert!(
        !sub.join("x").exists(),
        "nothing was written into the host's mount"
    );
}
