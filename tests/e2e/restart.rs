//! paasd crashing or stopping: apps come back, and nothing is left behind.

use std::time::{Duration, Instant};

use crate::harness::{assert_containers_gone, container_processes, repo, router_processes, Daemon};

/// The containers' folders in paasd's state folder (not the `.root` mount point they
/// share).
fn container_folders(dir: &std::path::Path) -> Vec<std::fs::DirEntry> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .collect()
}

/// The network namespaces and cgroups paasd's containers have now, from their state.
fn container_resources(d: &Daemon) -> (Vec<String>, Vec<String>) {
    let mut netns = Vec::new();
    let mut ids = Vec::new();
    let dir = d.dir.path().join("containers");
    for e in container_folders(&dir) {
        ids.push(e.file_name().to_string_lossy().into_owned());
        if let Ok(raw) = std::fs::read(e.path().join("state.json")) {
            let v: serde_json::Value = serde_json::from_slice(&raw).unwrap();
            if let Some(name) = v["address"][1].as_str() {
                netns.push(name.to_string());
            }
        }
    }
    (netns, ids)
}

/// A GET straight to an instance's address (not through a router); the status code.
fn get_instance(ip: &str, path: &str) -> Option<u16> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(
        &format!("{ip}:8080").parse().ok()?,
        Duration::from_secs(5),
    )
    .ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {ip}\r\n\r\n").ok()?;
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    answer.split_whitespace().nth(1)?.parse().ok()
}

/// The instance addresses of paasd's containers, read from their network namespaces.
fn instance_ips(d: &Daemon) -> Vec<String> {
    let (netns, _) = container_resources(d);
    netns
        .iter()
        .filter_map(|ns| {
            let out = std::process::Command::new("ip")
                .args(["-n", ns, "-o", "-4", "addr", "show", "dev", "eth0"])
                .output()
                .ok()?;
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            let cidr = text
                .split_whitespace()
                .skip_while(|w| *w != "inet")
                .nth(1)?;
            Some(cidr.split('/').next()?.to_string())
        })
        .collect()
}

#[test]
fn instances_outlive_a_killed_paasd_and_are_taken_over_with_their_logs_and_a_stop_leaves_nothing_behind(
) {
    let mut d = Daemon::start();
    let path = repo().join("examples/python-app");
    d.paas_ok(&["push", "survivor", "-p", path.to_str().unwrap(), "-i", "2"]);
    let data = d.dir.path().to_str().unwrap().to_string();
    let before = container_processes(&data);
    assert_eq!(
        before.len(),
        2 * 2,
        "a shim and a pid 1 per instance: {before:?}"
    );
    let ips = instance_ips(&d);
    assert_eq!(ips.len(), 2, "two instance addresses: {ips:?}");

    let routers = router_processes(&data);
    assert_eq!(
        routers.len(),
        1,
        "paasd runs its router as a process: {routers:?}"
    );

    d.kill();
    // With paasd gone, the instances still answer, and what they log (the example logs
    // every request on stdout) waits in their output pipes.
    for (n, ip) in ips.iter().enumerate() {
        assert_eq!(
            get_instance(ip, &format!("/while-paasd-was-away-{n}")),
            Some(200),
            "instance {ip} answers while paasd is dead"
        );
    }
    // And the router goes on routing to them.
    for n in 0..4 {
        let r = d.get("survivor.localhost", &format!("/through-the-router-{n}"));
        assert_eq!(
            r.status, 200,
            "the router serves while paasd is dead: {r:?}"
        );
    }
    d.restart();
    assert_eq!(
        router_processes(&data),
        routers,
        "the restarted paasd feeds the router it left running"
    );
    let start = Instant::now();
    let mut back = false;
    while start.elapsed() < Duration::from_secs(30) {
        if d.get("survivor.localhost", "/").status == 200 {
            back = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(back, "the app answers again after a restart");
    let after = container_processes(&data);
    assert_eq!(
        after, before,
        "the restarted paasd took the running instances over instead of starting others"
    );
    // The router's access log comes in batches (one each 20 ms): waited for too.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut recent = String::new();
    while Instant::now() < deadline {
        recent = d.paas_ok(&["logs", "survivor", "--recent"]);
        if (0..2).all(|n| recent.contains(&format!("/while-paasd-was-away-{n}")))
            && recent.contains("[RTR]")
        {
            break;
        }
        // A request the router served before the restarted paasd connected to it has no
        // line (the router keeps none while nobody is fed them): another one.
        d.get("survivor.localhost", "/through-the-router-again");
        std::thread::sleep(Duration::from_millis(200));
    }
    for n in 0..2 {
        assert!(
            recent.contains(&format!("GET /while-paasd-was-away-{n}")),
            "what an instance logged while paasd was dead reaches its logs: {recent}"
        );
    }
    assert!(
        recent.contains("[STG]"),
        "logs survive the restart: {recent}"
    );
    assert!(
        recent.contains("goes on running in the container"),
        "the logs say the instances were taken over: {recent}"
    );
    assert!(
        recent.contains("[RTR]") && recent.contains("/through-the-router-"),
        "the router's access log lines reach the app's logs: {recent}"
    );

    // An instance that crashes after the take-over is noticed and started again.
    let victim = before[0];
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(victim),
        nix::sys::signal::Signal::SIGKILL,
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut replaced = false;
    while Instant::now() < deadline {
        let now = container_processes(&data);
        if now.len() == 4 && !now.contains(&victim) {
            replaced = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        replaced,
        "a taken-over instance whose container died is started again: {:?}",
        container_processes(&data)
    );

    let (netns, ids) = container_resources(&d);
    assert_eq!(netns.len(), 2);
    assert!(d.stop().success(), "paasd stops cleanly on SIGTERM");
    assert!(container_processes(&data).is_empty(), "no process is left");
    assert!(
        router_processes(&data).is_empty(),
        "a clean stop stops the router too"
    );
    assert_containers_gone(&ids, &netns);
    assert!(
        std::fs::read_dir(d.dir.path().join("containers")).is_ok(),
        "the state folder is still there"
    );
    assert_eq!(
        container_folders(&d.dir.path().join("containers")).len(),
        0,
        "no container folder is left"
    );
}

#[test]
fn a_stopping_paasd_fails_health_first_and_keeps_serving_through_its_drain_window() {
    let mut d = Daemon::start_with(&["--drain-seconds", "3"]);
    let site = repo().join("examples/static-site");
    d.paas_ok(&["push", "drained", "-p", site.to_str().unwrap()]);
    let health = |d: &Daemon| crate::harness::get(d.admin, "localhost", "/health").status;
    assert_eq!(health(&d), 200);
    let pid = nix::unistd::Pid::from_raw(d.child_id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(health(&d), 503, "/health fails as soon as the drain begins");
    assert_eq!(
        d.get("drained.localhost", "/").status,
        200,
        "apps still answer"
    );
    let status = d.stop();
    assert!(status.success(), "{status:?}");
}

#[test]
fn a_roll_out_cut_off_by_paasd_s_death_is_said_at_its_next_start() {
    let mut d = Daemon::start();
    // Its instance answers only after 30 s: the roll-out waits on it, and is under way
    // when paasd is killed.
    let dir = crate::harness::answering_app("slow");
    let mut push = d.paas_spawn(&[
        "push",
        "slow",
        "-p",
        dir.path().to_str().unwrap(),
        "-b",
        "binary",
        "-c",
        "sleep 30; exec python3 server.py",
        "-t",
        "60",
    ]);
    let under_way = crate::harness::eventually(30, || {
        let (_, events) = d.api_call("GET", "/v1/apps/slow/events", None);
        events.contains("request") && events.contains("/v1/apps/slow/deployments")
    });
    assert!(under_way, "the deployment did not begin");
    std::thread::sleep(Duration::from_secs(1));
    d.kill();
    let _ = push.kill();
    let _ = push.wait();
    d.restart();
    let events = d.paas_ok(&["events", "slow"]);
    assert!(
        events.contains("interrupted") && events.contains("deployment begun at"),
        "{events}"
    );
    assert!(
        events.contains("was cut off when paasd stopped"),
        "{events}"
    );
    // Said once: the next start has nothing more to say.
    d.kill();
    d.restart();
    let again = d.paas_ok(&["events", "slow"]);
    assert_eq!(again.matches("was cut off").count(), 1, "{again}");
}

/// The router is a process of paasd's: when it dies, paasd starts it again on the same
/// ports; when paasd comes back with other router settings (or another router binary),
/// a new router takes the ports over before the old one stops.
#[test]
fn a_dead_router_is_started_again_and_a_changed_one_is_replaced_on_the_same_ports() {
    let mut d = Daemon::start();
    let path = repo().join("examples/python-app");
    d.paas_ok(&["push", "edge", "-p", path.to_str().unwrap()]);
    let data = d.dir.path().to_str().unwrap().to_string();
    let first = router_processes(&data);
    assert_eq!(first.len(), 1, "one router: {first:?}");
    assert_eq!(d.get("edge.localhost", "/").status, 200);

    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(first[0]),
        nix::sys::signal::Signal::SIGKILL,
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut back = false;
    while Instant::now() < deadline {
        let now = router_processes(&data);
        if now.len() == 1 && now != first && d.get("edge.localhost", "/").status == 200 {
            back = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(back, "paasd starts a dead router again, on the same port");
    let second = router_processes(&data);
    let status = std::fs::read_to_string(format!("/proc/{}/status", second[0])).unwrap();
    let uid = status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .unwrap_or_default()
        .to_string();
    assert!(
        uid.split_whitespace().skip(1).all(|id| id == "65534"),
        "the router serves as nobody: {uid}"
    );

    d.kill();
    d.restart_with(&["--max-connections", "5000"]);
    // The old router stops once it has finished what it was serving.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut third = router_processes(&data);
    while Instant::now() < deadline && third.contains(&second[0]) {
        std::thread::sleep(Duration::from_millis(100));
        third = router_processes(&data);
    }
    assert_eq!(
        third.len(),
        1,
        "the router of other settings was replaced: {second:?} then {third:?}"
    );
    assert_ne!(third, second, "a new router serves");
    assert_eq!(
        d.get("edge.localhost", "/").status,
        200,
        "the new router serves on the same port"
    );
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", third[0])).unwrap();
    assert!(
        String::from_utf8_lossy(&cmdline).contains("5000"),
        "the new router runs with the new settings"
    );
}

/// An upgrade in place: SIGQUIT ends paasd alone, the app goes on answering through the
/// router, and the next paasd takes the same router and instances over.
#[test]
fn sigquit_hands_the_router_and_instances_over_to_the_next_paasd() {
    let mut d = Daemon::start();
    let path = repo().join("examples/python-app");
    d.paas_ok(&["push", "handed", "-p", path.to_str().unwrap()]);
    let data = d.dir.path().to_str().unwrap().to_string();
    let (routers, containers) = (router_processes(&data), container_processes(&data));
    assert!(d.hand_over().success(), "paasd exits cleanly on SIGQUIT");
    assert_eq!(router_processes(&data), routers, "the router runs on");
    assert_eq!(
        container_processes(&data),
        containers,
        "the instances run on"
    );
    assert_eq!(d.get("handed.localhost", "/").status, 200);
    d.restart();
    assert_eq!(
        router_processes(&data),
        routers,
        "the next paasd feeds the same router"
    );
    assert_eq!(
        container_processes(&data),
        containers,
        "and took the same instances over"
    );
    assert_eq!(d.get("handed.localhost", "/").status, 200);
}
