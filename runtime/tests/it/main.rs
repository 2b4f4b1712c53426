//! Runtime tests with real namespaces and cgroups. They need root, as `paasd` does; the
//! project's test command runs them as root.

mod isolation;

use std::path::PathBuf;
use std::time::Duration;

use paas_runtime::spec::{Mount, MountKind};
use paas_runtime::{
    AddressPool, CgroupDriver, ContainerConfig, ExitReason, Limits, NetworkMode, Runtime, Stack,
    VCAP_GID, VCAP_UID,
};
use tokio::io::AsyncReadExt;

pub struct Fixture {
    pub runtime: Runtime,
    _dir: tempfile::TempDir,
}

pub fn fixture(pool: &str) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let stack = Stack::prepare_host(&dir.path().join("stack")).unwrap();
    let runtime = Runtime::new(
        PathBuf::from(env!("CARGO_BIN_EXE_paas-init")),
        dir.path().join("containers"),
        CgroupDriver::detect(std::path::Path::new("/sys/fs/cgroup")).unwrap(),
        AddressPool::new(pool).unwrap(),
        vec![stack],
    )
    .unwrap();
    Fixture { runtime, _dir: dir }
}

/// A container id unique to this test run, so that leftovers of an earlier run that
/// panicked half-way cannot collide with this one.
pub fn unique(id: &str) -> String {
    format!("{id}-{}", std::process::id())
}

pub fn config(id: &str, script: &str, network: NetworkMode) -> ContainerConfig {
    ContainerConfig {
        id: unique(id),
        hostname: id.to_string(),
        stack: paas_runtime::stack::HOST.into(),
        mounts: vec![Mount {
            target: "/tmp".into(),
            kind: MountKind::Tmpfs {
                size_bytes: 8 << 20,
                mode: 0o1777,
                uid: 0,
                gid: 0,
            },
        }],
        args: vec!["/bin/sh".into(), "-c".into(), script.into()],
        env: vec!["PATH=/usr/bin:/bin".into()],
        cwd: "/".into(),
        uid: VCAP_UID,
        gid: VCAP_GID,
        limits: Limits {
            memory_bytes: 64 << 20,
            pids: 64,
        },
        network,
        writable: None,
        id_map: None,
        stdin: false,
        tty: None,
        survivor_label: None,
    }
}

pub async fn run(f: &Fixture, cfg: ContainerConfig) -> (ExitReason, String, String) {
    let mut c = f.runtime.start(cfg).await.unwrap();
    let mut out = String::new();
    let mut err = String::new();
    let mut so = c.stdout.take().unwrap();
    let mut se = c.stderr.take().unwrap();
    let (r, _, _) = tokio::join!(
        c.wait(),
        so.read_to_string(&mut out),
        se.read_to_string(&mut err)
    );
    c.destroy().await;
    (r, out, err)
}

#[tokio::test]
async fn process_runs_as_vcap_as_pid_2_with_its_own_hostname() {
    let f = fixture("10.251.0.0/24");
    let (r, out, err) = run(
        &f,
        config(
            "rt-identity",
            "id -u; id -g; hostname; echo $$; ls /",
            NetworkMode::Isolated,
        ),
    )
    .await;
    assert_eq!(r, ExitReason::Exited(0), "stderr: {err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "2000");
    assert_eq!(lines[1], "2000");
    assert_eq!(lines[2], "rt-identity");
    assert_eq!(lines[3], "2", "pid 1 is paas-init; the process comes next");
    assert!(
        !out.contains("root\n"),
        "the host's /root is not visible: {out}"
    );
}

#[tokio::test]
async fn exit_codes_and_setup_failures_are_reported() {
    let f = fixture("10.251.1.0/24");
    let (r, _, _) = run(&f, config("rt-exit", "exit 7", NetworkMode::Isolated)).await;
    assert_eq!(r, ExitReason::Exited(7));
    let mut cfg = config("rt-noexec", "", NetworkMode::Isolated);
    cfg.args = vec!["/no/such/program".into()];
    let (r, _, err) = run(&f, cfg).await;
    assert_eq!(r, ExitReason::Exited(127));
    assert!(err.contains("running /no/such/program"), "{err}");
}

#[tokio::test]
async fn stack_is_read_only_and_tmp_is_writable() {
    let f = fixture("10.251.2.0/24");
    let (r, out, err) = run(
        &f,
        config(
            "rt-rofs",
            "touch /usr/x 2>/dev/null && echo usr-writable; touch /x 2>/dev/null && echo root-writable; touch /tmp/x && echo tmp-ok",
            NetworkMode::Isolated,
        ),
    )
    .await;
    assert_eq!(r, ExitReason::Exited(0), "{err}");
    assert_eq!(out.trim(), "tmp-ok");
}

#[tokio::test]
async fn memory_hog_is_killed_and_reported_as_out_of_memory() {
    let f = fixture("10.251.3.0/24");
    let (r, _, err) = run(
        &f,
        config(
            "rt-oom",
            "python3 -c 'x = bytearray(256 * 1024 * 1024); print(len(x))'",
            NetworkMode::Isolated,
        ),
    )
    .await;
    assert_eq!(r, ExitReason::OutOfMemory, "stderr: {err}");
}

#[tokio::test]
async fn routed_container_answers_on_its_own_address() {
    let f = fixture("10.251.4.0/24");
    let address = f.runtime.allocate_address(&unique("rt-routed")).unwrap();
    let cfg = config(
        "rt-routed",
        "exec python3 -m http.server 8080 --bind 0.0.0.0 --directory /etc",
        NetworkMode::Routed(address),
    );
    let mut c = f.runtime.start(cfg).await.unwrap();
    let addr = std::net::SocketAddr::from((c.address.as_ref().unwrap().instance_ip, 8080));
    let mut answered = false;
    for _ in 0..200 {
        if let Ok(mut s) = tokio::net::TcpStream::connect(addr).await {
            use tokio::io::AsyncWriteExt;
            s.write_all(b"GET /hosts HTTP/1.0\r\n\r\n").await.unwrap();
            let mut body = String::new();
            s.read_to_string(&mut body).await.unwrap();
            assert!(body.starts_with("HTTP/1.0 200"), "{body}");
            assert!(body.contains("127.0.0.1 localhost"), "{body}");
            answered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    if !answered {
        c.stop(Duration::from_secs(1)).await;
        let mut err = String::new();
        c.stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .await
            .unwrap();
        c.destroy().await;
        panic!("the container never answered on {addr}: {err}");
    }
    let r = c.stop(Duration::from_secs(5)).await;
    assert_eq!(r, ExitReason::Signaled(15));
    let netns = c.address.as_ref().unwrap().netns_path();
    c.destroy().await;
    assert!(
        !netns.exists(),
        "the network namespace is removed with the container"
    );
}

#[tokio::test]
async fn limits_are_set_on_the_cgroup_with_no_swap() {
    let f = fixture("10.251.6.0/24");
    let cfg = config("rt-limits", "exec sleep 30", NetworkMode::Isolated);
    let id = cfg.id.clone();
    let mut c = f.runtime.start(cfg).await.unwrap();
    let read = |p: String| {
        std::fs::read_to_string(&p)
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|e| panic!("{p}: {e}"))
    };
    let base = std::path::Path::new("/sys/fs/cgroup");
    if base.join("cgroup.controllers").exists() {
        let d = format!("/sys/fs/cgroup/paas/{id}");
        assert_eq!(read(format!("{d}/memory.max")), (64u64 << 20).to_string());
        assert_eq!(read(format!("{d}/memory.swap.max")), "0");
        assert_eq!(read(format!("{d}/pids.max")), "64");
    } else {
        let mem = format!("/sys/fs/cgroup/memory/paas/{id}");
        assert_eq!(
            read(format!("{mem}/memory.limit_in_bytes")),
            (64u64 << 20).to_string()
        );
        if std::path::Path::new(&format!("{mem}/memory.memsw.limit_in_bytes")).exists() {
            assert_eq!(
                read(format!("{mem}/memory.memsw.limit_in_bytes")),
                (64u64 << 20).to_string()
            );
        }
        assert_eq!(
            read(format!("/sys/fs/cgroup/pids/paas/{id}/pids.max")),
            "64"
        );
        if base.join("cpu/cpu.shares").exists() {
            assert_eq!(
                read(format!("/sys/fs/cgroup/cpu/paas/{id}/cpu.shares")),
                "64"
            );
        }
    }
    c.stop(Duration::from_secs(2)).await;
    c.destroy().await;
}

#[tokio::test]
async fn exec_runs_inside_the_running_container_as_its_process_does() {
    let f = fixture("10.251.7.0/24");
    let mut cfg = config("rt-exec", "exec sleep 30", NetworkMode::Isolated);
    cfg.env.push("GREETING=hello".into());
    let mut c = f.runtime.start(cfg).await.unwrap();
    let mut target = None;
    for _ in 0..100 {
        target = c.exec_target();
        if target.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let target = target.expect("the container's pid 1 appears");
    let sh = |script: &str| vec!["/bin/sh".to_string(), "-c".to_string(), script.to_string()];
    let child = f
        .runtime
        .exec(
            &target,
            sh("id -u; echo $GREETING; hostname; ls /proc | grep -c '^[0-9]'"),
        )
        .unwrap();
    let out = child.wait_with_output().await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(&lines[..3], ["2000", "hello", "rt-exec"], "{text}");
    let pids: u32 = lines[3].parse().unwrap();
    assert!(pids <= 5, "it sees the container's processes only: {pids}");
    let out = f
        .runtime
        .exec(&target, sh("exit 4"))
        .unwrap()
        .wait_with_output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(4));
    let out = f
        .runtime
        .exec(
            &target,
            sh("python3 -c 'import ctypes; print(ctypes.CDLL(None).unshare(0x10000000))'"),
        )
        .unwrap()
        .wait_with_output()
        .await
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "-1",
        "the seccomp filter holds for exec too"
    );
    c.stop(Duration::from_secs(2)).await;
    c.destroy().await;
}

#[tokio::test]
async fn the_writable_layer_is_held_to_its_disk_quota() {
    let f = fixture("10.251.8.0/24");
    let lower = tempfile::tempdir().unwrap();
    std::fs::write(lower.path().join("from-droplet"), "read-only below\n").unwrap();
    for p in [
        lower.path().to_path_buf(),
        lower.path().join("from-droplet"),
    ] {
        std::os::unix::fs::chown(&p, Some(VCAP_UID), Some(VCAP_GID)).unwrap();
    }
    let mut cfg = config(
        "rt-disk",
        "cat /home/vcap/from-droplet; echo changed > /home/vcap/from-droplet; \
         dd if=/dev/zero of=/home/vcap/big bs=1M count=64 2>&1 | grep -o 'No space left on device'; \
         cat /home/vcap/from-droplet",
        NetworkMode::Isolated,
    );
    cfg.writable = Some(paas_runtime::WritableLayer {
        target: "/home/vcap".into(),
        lower: lower.path().to_path_buf(),
        disk_bytes: Some(32 << 20),
    });
    let (r, out, err) = run(&f, cfg).await;
    assert_eq!(r, ExitReason::Exited(0), "{err}");
    assert!(out.starts_with("read-only below\n"), "{out}");
    assert!(
        out.contains("No space left on device"),
        "the quota stops the write: {out}"
    );
    assert!(out.ends_with("changed\n"), "{out}");
    assert_eq!(
        std::fs::read_to_string(lower.path().join("from-droplet")).unwrap(),
        "read-only below\n",
        "the lower layer is never written"
    );
}

/// A staging's disk is thrown away without writing back its dirty pages: afterwards it
/// is unmounted and its loop device freed. The shutdown ioctl only ever reaches such a
/// disk: a folder without one keeps its (the host's) filesystem working.
#[tokio::test]
async fn a_discarded_disk_is_unmounted_and_nothing_else_is_shut_down() {
    use std::os::unix::fs::MetadataExt;
    let mounted = |p: &std::path::Path| {
        std::fs::metadata(p).unwrap().dev() != std::fs::metadata(p.parent().unwrap()).unwrap().dev()
    };
    let plain = tempfile::tempdir().unwrap();
    std::fs::create_dir(paas_runtime::disk::mount_point(plain.path())).unwrap();
    paas_runtime::disk::discard(plain.path());
    std::fs::write(plain.path().join("still-writable"), "yes").unwrap();

    let dir = tempfile::tempdir().unwrap();
    let mount = paas_runtime::disk::create(dir.path(), 64 << 20, 0, 0)
        .await
        .unwrap();
    std::fs::write(mount.join("scratch"), vec![7u8; 8 << 20]).unwrap();
    assert!(mounted(&mount));
    let image = dir.path().join("disk.img");
    let loops = || {
        let out = std::process::Command::new("losetup")
            .arg("-j")
            .arg(&image)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert!(!loops().is_empty(), "the disk is on a loop device");
    paas_runtime::disk::discard(dir.path());
    assert!(!mounted(&mount), "unmounted");
    // The loop device frees itself once the filesystem is gone (autoclear).
    for _ in 0..100 {
        if loops().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(loops(), "", "the loop device is freed");
    std::fs::write(dir.path().join("after"), "ok").unwrap();
}

/// After `favor_dynamic_changes`, the host's cgroup v2 mount lists `favordynmods` and
/// keeps its other options. Hosts without a cgroup v2 mount have nothing to check.
#[test]
fn cgroup2_mount_favors_dynamic_changes() {
    let base = std::path::Path::new("/sys/fs/cgroup");
    let cgroup2 = |info: &str| -> Option<(String, String)> {
        info.lines().find_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let mut right = right.split(' ');
            (right.next()? == "cgroup2").then_some(())?;
            let point = left.split(' ').nth(4)?;
            let options = right.nth(1)?;
            point
                .starts_with("/sys/fs/cgroup")
                .then(|| (point.to_string(), options.to_string()))
        })
    };
    let before = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let Some((point, options)) = cgroup2(&before) else {
        return;
    };
    paas_runtime::cgroup_mount::favor_dynamic_changes(base).unwrap();
    let after = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let (point_after, options_after) = cgroup2(&after).unwrap();
    assert_eq!(point_after, point);
    let after: Vec<&str> = options_after.split(',').collect();
    assert!(after.contains(&"favordynmods"), "{options_after}");
    for o in options.split(',') {
        assert!(after.contains(&o), "{o} was lost: {options_after}");
    }
}

#[tokio::test]
async fn a_process_given_stdin_reads_what_the_daemon_writes_and_others_read_nothing() {
    use tokio::io::AsyncWriteExt;
    let f = fixture("10.251.9.0/24");
    let mut cfg = config(
        "rt-stdin",
        "while read l; do echo got:$l; done; echo end",
        NetworkMode::Isolated,
    );
    cfg.stdin = true;
    let mut c = f.runtime.start(cfg).await.unwrap();
    let mut input = c.stdin.take().expect("a stdin pipe");
    input.write_all(b"one\ntwo\n").await.unwrap();
    drop(input);
    let mut out = String::new();
    let mut so = c.stdout.take().unwrap();
    let (r, _) = tokio::join!(c.wait(), so.read_to_string(&mut out));
    c.destroy().await;
    assert_eq!(r, ExitReason::Exited(0));
    assert_eq!(out, "got:one\ngot:two\nend\n");

    // Without it, stdin is /dev/null: the first read is the end.
    let (r, out, _) = run(
        &f,
        config("rt-no-stdin", "cat; echo end", NetworkMode::Isolated),
    )
    .await;
    assert_eq!((r, out.as_str()), (ExitReason::Exited(0), "end\n"));
}

#[tokio::test]
async fn a_process_given_a_terminal_has_its_own_pty_as_controlling_terminal() {
    let f = fixture("10.251.10.0/24");
    let mut cfg = config(
        "rt-tty",
        "tty; stty size; id -u; read line; echo got:$line; exit 3",
        NetworkMode::Isolated,
    );
    cfg.tty = Some(paas_runtime::TtySize {
        rows: 33,
        cols: 101,
    });
    let mut c = f.runtime.start(cfg).await.unwrap();
    let terminal = c.terminal.take().expect("a terminal");
    terminal.write_all(b"typed\n").await.unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        let n = terminal.read(&mut buf).await.unwrap();
        if n == 0 {
            break;
        }
        seen.extend_from_slice(&buf[..n]);
    }
    let r = c.wait().await;
    c.destroy().await;
    let seen = String::from_utf8_lossy(&seen);
    assert_eq!(r, ExitReason::Exited(3), "{seen}");
    let lines: Vec<&str> = seen.lines().map(|l| l.trim_end_matches('\r')).collect();
    // The terminal echoes what was typed; the process's own lines are around it.
    assert!(lines.contains(&"/dev/pts/0"), "its own devpts: {seen:?}");
    assert!(lines.contains(&"33 101"), "the size asked for: {seen:?}");
    assert!(lines.contains(&"2000"), "{seen:?}");
    assert!(lines.contains(&"got:typed"), "{seen:?}");
}
