//! Tenant inputs that try to reach the host, through a real `paasd`: crafted archives
//! given to `create-buildpack` and to the package upload, and staging code that plants
//! symlinks where paasd reads, writes or packs. After each, the host is checked.

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::harness::Daemon;

/// A tar.gz whose entries keep their raw names and link targets (the tar crate would
/// refuse some of them).
fn raw_tar_gz(entries: &[(&str, tar::EntryType, &str, &[u8])]) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut b = tar::Builder::new(gz);
    for (name, kind, link, data) in entries {
        let mut h = tar::Header::new_old();
        let raw = h.as_old_mut();
        raw.name[..name.len()].copy_from_slice(name.as_bytes());
        raw.linkname[..link.len()].copy_from_slice(link.as_bytes());
        h.set_entry_type(*kind);
        h.set_mode(0o755);
        h.set_size(data.len() as u64);
        h.set_cksum();
        b.append(&h, *data).unwrap();
    }
    b.into_inner().unwrap().finish().unwrap()
}

/// Entries that, to a checker reading each symlink on its own, stay inside, but write
/// `host_file` (an absolute path) as whoever unpacks them: `c -> .`, then a chain of
/// links each one folder further up (`u1 -> c/..`, `u2 -> u1/..`, …), then a file
/// checked as a file and turned into a link to the top of the chain, hard-linked under a
/// new name (a hard link to a symlink is that symlink), and a file written beneath it.
fn escaping_entries(host_file: &Path) -> Vec<(String, tar::EntryType, String, Vec<u8>)> {
    use tar::EntryType::{Link, Regular, Symlink};
    let mut v = vec![("c".to_string(), Symlink, ".".to_string(), Vec::new())];
    // Deep enough to climb from any data folder to `/` (more links would hit the
    // kernel's limit of 40 symlinks followed in one lookup).
    let depth = 12;
    v.push(("u1".into(), Symlink, "c/..".into(), Vec::new()));
    for i in 2..=depth {
        v.push((
            format!("u{i}"),
            Symlink,
            format!("u{}/..", i - 1),
            Vec::new(),
        ));
    }
    v.push(("x".into(), Regular, String::new(), b"x".to_vec()));
    v.push(("x".into(), Symlink, format!("u{depth}"), Vec::new()));
    v.push(("g".into(), Link, "x".into(), Vec::new()));
    let rel = host_file.strip_prefix("/").unwrap().to_str().unwrap();
    v.push((
        format!("g/{rel}"),
        Regular,
        String::new(),
        b"written by a tenant".to_vec(),
    ));
    v
}

fn as_refs(
    v: &[(String, tar::EntryType, String, Vec<u8>)],
) -> Vec<(&str, tar::EntryType, &str, &[u8])> {
    v.iter()
        .map(|(n, k, l, d)| (n.as_str(), *k, l.as_str(), d.as_slice()))
        .collect()
}

/// A folder outside every data folder, for a tenant to aim at.
fn victim() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("paas-victim-")
        .tempdir_in("/tmp")
        .unwrap()
}

#[test]
fn a_crafted_buildpack_archive_writes_nothing_on_the_host() {
    let d = Daemon::start();
    let victim = victim();
    let host_file = victim.path().join("owned");
    let mut entries = escaping_entries(&host_file);
    entries.insert(
        0,
        (
            "bin/detect".into(),
            tar::EntryType::Regular,
            String::new(),
            b"#!/bin/sh\nexit 1\n".to_vec(),
        ),
    );
    entries.insert(
        1,
        (
            "bin/compile".into(),
            tar::EntryType::Regular,
            String::new(),
            b"#!/bin/sh\n".to_vec(),
        ),
    );
    let tgz = victim.path().with_extension("bp.tgz");
    std::fs::write(&tgz, raw_tar_gz(&as_refs(&entries))).unwrap();
    let out = d.paas(&["create-buildpack", "evil", tgz.to_str().unwrap()]);
    let _ = std::fs::remove_file(&tgz);
    assert!(
        !host_file.exists(),
        "root wrote a host file from a buildpack archive"
    );
    assert!(!out.status.success(), "the archive must be refused");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("symlink"), "the error says why: {err}");
}

#[test]
fn a_crafted_app_package_writes_nothing_on_the_host() {
    let d = Daemon::start();
    let victim = victim();
    let host_file = victim.path().join("owned");
    let pkg = victim.path().with_extension("pkg.tgz");
    std::fs::write(&pkg, raw_tar_gz(&as_refs(&escaping_entries(&host_file)))).unwrap();
    let settings = victim.path().with_extension("settings.json");
    std::fs::write(
        &settings,
        r#"{"instances":1,"memory":64,"buildpacks":["binary"],"command":"sleep 1000"}"#,
    )
    .unwrap();
    let (code, body) = d.api_call("PUT", "/v1/apps/evil", Some(&settings));
    assert!(code < 300, "creating the app: {code} {body}");
    let (code, body) = d.api_call("POST", "/v1/apps/evil/packages", Some(&pkg));
    if code < 300 {
        // Stored: staging unpacks it. Ask for that.
        let sha = body.split('"').nth(3).unwrap_or_default().to_string();
        let req = victim.path().with_extension("deploy.json");
        std::fs::write(&req, format!(r#"{{"package":"{sha}"}}"#)).unwrap();
        let _ = d.api_call("POST", "/v1/apps/evil/deployments", Some(&req));
        let _ = std::fs::remove_file(&req);
    }
    for f in [&pkg, &settings] {
        let _ = std::fs::remove_file(f);
    }
    assert!(
        !host_file.exists(),
        "a host file was written from an app package"
    );
    assert_eq!(code, 422, "the upload is refused: {body}");
    assert!(body.contains("symlink"), "the error says why: {body}");
}

/// A Heroku-dialect buildpack whose detect and compile run `detect` and `compile`.
fn scripted_buildpack(dir: &Path, detect: &str, compile: &str) {
    std::fs::create_dir_all(dir.join("bin")).unwrap();
    for (name, body) in [("detect", detect), ("compile", compile)] {
        let p = dir.join("bin").join(name);
        std::fs::write(&p, format!("#!/bin/bash\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
}

fn an_app(dir: &Path) {
    std::fs::write(dir.join("index.html"), "hello\n").unwrap();
    std::fs::write(dir.join("Staticfile"), "").unwrap();
}

/// Every entry name of a tar.gz and whether `needle` appears in any file's bytes.
fn droplet_holds(tgz: &Path, needle: &[u8]) -> (Vec<String>, bool) {
    let f = std::fs::File::open(tgz).unwrap();
    let mut a = tar::Archive::new(flate2::read::GzDecoder::new(f));
    let (mut names, mut found) = (Vec::new(), false);
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        names.push(e.path().unwrap().to_string_lossy().into_owned());
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        found |= data.windows(needle.len()).any(|w| w == needle);
    }
    (names, found)
}

#[test]
fn staging_code_cannot_pack_host_files_into_its_droplet() {
    let d = Daemon::start();
    let data = d.dir.path().to_str().unwrap().to_string();
    let token = std::fs::read(d.dir.path().join("admin-token")).unwrap();
    let bp = tempfile::tempdir().unwrap();
    // The layers folder and the launch script become links to the data folder and the
    // admin token, as a custom buildpack or an app's npm postinstall could make them.
    scripted_buildpack(
        bp.path(),
        "exit 0",
        &format!(
            "rm -rf /home/vcap/layers && ln -s {data} /home/vcap/layers\n\
             ln -sfn {data}/admin-token /home/vcap/.paas-env.sh\n\
             ln -sfn {data}/admin-token /home/vcap/staging_info.yml\n\
             ln -sfn {data} /home/vcap/app/data"
        ),
    );
    d.paas_ok(&["create-buildpack", "planter", bp.path().to_str().unwrap()]);
    let app = tempfile::tempdir().unwrap();
    an_app(app.path());
    d.paas_ok(&[
        "push",
        "planter",
        "-p",
        app.path().to_str().unwrap(),
        "-b",
        "planter",
        "-c",
        "python3 -m http.server $PORT",
    ]);
    let out = app.path().join("droplet.tgz");
    d.paas_ok(&[
        "droplet",
        "download",
        "planter",
        "-o",
        out.to_str().unwrap(),
    ]);
    let (names, leaked) = droplet_holds(&out, &token);
    assert!(!leaked, "the admin token is in the droplet: {names:?}");
    assert!(
        !names
            .iter()
            .any(|n| n.contains("admin-token") || n.contains("paas.db")),
        "host files are in the droplet: {names:?}"
    );
}

#[test]
fn staging_code_cannot_take_host_files_through_its_build_cache() {
    let d = Daemon::start();
    let victim = victim();
    let token = "a host secret, 7c1d9e";
    std::fs::write(victim.path().join("secret"), token).unwrap();
    let bp = tempfile::tempdir().unwrap();
    // CACHE_DIR ($2) replaced by a link to a host folder; the next staging prints what
    // the cache brought back.
    scripted_buildpack(
        bp.path(),
        "exit 0",
        &format!(
            "echo \"cache holds: $(cat \"$2\"/secret 2>/dev/null)\"\n\
             rm -rf \"$2\" && ln -s {} \"$2\"",
            victim.path().display()
        ),
    );
    d.paas_ok(&["create-buildpack", "cacher", bp.path().to_str().unwrap()]);
    let app = tempfile::tempdir().unwrap();
    an_app(app.path());
    let push = || {
        let out = d.paas(&[
            "push",
            "cacher",
            "-p",
            app.path().to_str().unwrap(),
            "-b",
            "cacher",
            "-c",
            "python3 -m http.server $PORT",
        ]);
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
    };
    let first = push();
    assert!(first.contains("cache holds:"), "{first}");
    // The platform refused to pack what the link led to, and said so.
    assert!(
        first.contains("Build cache for cacher: not saved"),
        "{first}"
    );
    let second = push();
    assert!(second.contains("cache holds:"), "{second}");
    assert!(
        !second.contains(token),
        "a host file came back through the build cache: {second}"
    );
}

#[test]
fn a_detect_script_cannot_make_root_create_folders_on_the_host() {
    let d = Daemon::start();
    let victim = victim();
    std::fs::set_permissions(victim.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let bp = tempfile::tempdir().unwrap();
    // A Cloud Foundry buildpack: after detect, paasd makes deps/<index> for it.
    std::fs::create_dir_all(bp.path().join("bin")).unwrap();
    for (name, body) in [
        (
            "detect",
            format!(
                "rm -rf /home/vcap/deps && ln -s {} /home/vcap/deps\nexit 0",
                victim.path().display()
            ),
        ),
        ("supply", "exit 0".to_string()),
        ("finalize", "exit 0".to_string()),
    ] {
        let p = bp.path().join("bin").join(name);
        let mut f = std::fs::File::create(&p).unwrap();
        writeln!(f, "#!/bin/bash\n{body}").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    d.paas_ok(&[
        "create-buildpack",
        "deps-planter",
        bp.path().to_str().unwrap(),
        "--position",
        "1",
    ]);
    let app = tempfile::tempdir().unwrap();
    an_app(app.path());
    let out = d.paas(&[
        "push",
        "deps-planter",
        "-p",
        app.path().to_str().unwrap(),
        "-c",
        "python3 -m http.server $PORT",
    ]);
    let names: Vec<_> = std::fs::read_dir(victim.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(
        names.is_empty(),
        "root made {names:?} in a host folder: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_data_folder_is_private_to_root() {
    let d = Daemon::start();
    let app = tempfile::tempdir().unwrap();
    an_app(app.path());
    d.paas_ok(&[
        "push",
        "private",
        "-p",
        app.path().to_str().unwrap(),
        "-b",
        "staticfile",
    ]);
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::symlink_metadata(d.dir.path()).unwrap();
    assert_eq!(meta.permissions().mode() & 0o7777, 0o700, "the data folder");
    assert_eq!((meta.uid(), meta.gid()), (0, 0), "the data folder");
    let mut open_to_others = Vec::new();
    for e in std::fs::read_dir(d.dir.path()).unwrap() {
        let e = e.unwrap();
        let m = std::fs::symlink_metadata(e.path()).unwrap();
        if m.permissions().mode() & 0o077 != 0 || m.uid() != 0 {
            open_to_others.push(format!(
                "{} {:o} uid {}",
                e.file_name().to_string_lossy(),
                m.permissions().mode(),
                m.uid()
            ));
        }
    }
    assert!(open_to_others.is_empty(), "{open_to_others:?}");
    assert!(d.dir.path().join("paas.db").exists());
}

/// paasd's peak resident memory so far, in MiB.
fn peak_rss_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kb >> 10
}

/// An app that serves HTTP, for commands to be run in.
fn push_a_shell_app(d: &Daemon, name: &str) -> tempfile::TempDir {
    let app = tempfile::tempdir().unwrap();
    an_app(app.path());
    d.paas_ok(&[
        "push",
        name,
        "-p",
        app.path().to_str().unwrap(),
        "-b",
        "binary",
        "-c",
        "python3 -m http.server $PORT",
    ]);
    app
}

#[test]
fn output_that_never_ends_a_line_does_not_grow_paasd() {
    // Before: each line was gathered whole before it was cut, so 200 MB printed
    // without a newline sat in paasd's memory.
    let d = Daemon::start();
    let _app = push_a_shell_app(&d, "printer");
    let before = peak_rss_mib(d.child_id());
    let out = d.paas(&[
        "exec",
        "printer",
        "--",
        "sh",
        "-c",
        "head -c 200000000 /dev/zero | tr '\\0' x; echo; echo done",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("done"),
        "the command ran to its end: {}",
        text.len()
    );
    let grown = peak_rss_mib(d.child_id()).saturating_sub(before);
    assert!(grown < 64, "paasd grew by {grown} MiB for one endless line");
}

#[test]
fn a_client_that_reads_nothing_cannot_make_paasd_hold_a_commands_output() {
    // Before: output went into an unbounded queue, so a command printing 200 MB to a
    // client that read none of it ran to its end, with all of it held by paasd.
    let d = Daemon::start();
    let _app = push_a_shell_app(&d, "flood");
    let before = peak_rss_mib(d.child_id());
    let printer = [
        "import sys",
        "for i in range(200000):",
        "    sys.stdout.write('y' * 1000 + '\\n')",
        "    if i % 1000 == 0:",
        "        open('/tmp/progress', 'w').write(str(i))",
        "open('/tmp/progress', 'w').write('done')",
    ]
    .join("\n");
    // The client's stdout is a pipe nobody reads: it stops reading the stream.
    let mut client = d.paas_spawn(&["exec", "flood", "--", "python3", "-c", &printer]);
    let progress = || {
        let out = d.paas(&["exec", "flood", "--", "cat", "/tmp/progress"]);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    // Wait until the printer is held back (its progress stops moving) or has finished.
    let mut last = String::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut still = 0;
    while std::time::Instant::now() < deadline && last != "done" && still < 5 {
        std::thread::sleep(std::time::Duration::from_millis(500));
        let now = progress();
        still = if now == last { still + 1 } else { 0 };
        last = now;
    }
    let grown = peak_rss_mib(d.child_id()).saturating_sub(before);
    assert_ne!(
        last, "done",
        "the command printed everything to a client that read nothing"
    );
    let held_at: u32 = last
        .parse()
        .expect("the printer ran and wrote its progress");
    assert!(held_at > 0, "the printer got going before it was held back");
    assert!(
        grown < 64,
        "paasd grew by {grown} MiB holding output for a stalled client"
    );
    // Held back, not cut off: once the client reads, the command goes on to its end.
    let mut stdout = client.stdout.take().unwrap();
    let reader = std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
    let status = client.wait().unwrap();
    let read = reader.join().unwrap().unwrap();
    assert!(status.success(), "the command ends well once read");
    assert!(
        read > 200_000_000,
        "every line reached the client: {read} bytes"
    );
    assert_eq!(progress(), "done");
}

#[test]
fn a_build_printing_a_flood_is_held_to_its_line_rate() {
    // Before: every line a build printed went to the log store and the client.
    let d = Daemon::start();
    let bp = tempfile::tempdir().unwrap();
    scripted_buildpack(bp.path(), "exit 0", "seq 1 20000");
    d.paas_ok(&["create-buildpack", "flooder", bp.path().to_str().unwrap()]);
    let app = tempfile::tempdir().unwrap();
    an_app(app.path());
    let out = d.paas_ok(&[
        "push",
        "flooder",
        "-p",
        app.path().to_str().unwrap(),
        "-b",
        "flooder",
        "-c",
        "python3 -m http.server $PORT",
    ]);
    assert!(
        out.contains("lines of build output dropped"),
        "the build's flood is cut and the log says so: {}",
        out.lines()
            .filter(|l| !l.trim().chars().all(|c| c.is_ascii_digit()))
            .collect::<Vec<_>>()
            .join("\n")
    );
    let printed = out
        .lines()
        .filter(|l| l.trim().parse::<u32>().is_ok())
        .count();
    assert!(
        printed < 20000,
        "{printed} of 20000 lines reached the client"
    );
}

/// The host id that id 0 of `app`'s user namespace is, read from inside an instance.
fn host_base_of(d: &Daemon, app: &str) -> u64 {
    let map = d.paas_ok(&["exec", app, "--", "cat", "/proc/self/uid_map"]);
    let fields: Vec<u64> = map
        .split_whitespace()
        .filter_map(|f| f.parse().ok())
        .collect();
    assert_eq!(fields.len(), 3, "one line of uid_map: {map:?}");
    assert_eq!(fields[0], 0, "{map:?}");
    fields[1]
}

/// Host uids of the processes running `needle`.
fn host_uids_running(needle: &str) -> Vec<u64> {
    let mut uids = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let p = e.path();
        let Ok(cmd) = std::fs::read(p.join("cmdline")) else {
            continue;
        };
        if !String::from_utf8_lossy(&cmd).contains(needle) {
            continue;
        }
        if let Ok(status) = std::fs::read_to_string(p.join("status")) {
            if let Some(uid) = status
                .lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
            {
                uids.push(uid);
            }
        }
    }
    uids
}

#[test]
fn each_app_runs_in_a_user_namespace_of_its_own() {
    // Before: every instance of every app ran as host uid 2000 (sharing per-user kernel
    // limits), with no user namespace: root inside would have been root outside.
    let d = Daemon::start();
    let _a = push_a_shell_app(&d, "tenant-a");
    let _b = push_a_shell_app(&d, "tenant-b");
    let (a, b) = (host_base_of(&d, "tenant-a"), host_base_of(&d, "tenant-b"));
    assert!(
        a >= 65536 && b >= 65536,
        "root inside is an ordinary host user: {a}, {b}"
    );
    assert!(
        a.abs_diff(b) >= 65536,
        "the apps' ranges do not overlap: {a}, {b}"
    );
    let inside = d.paas_ok(&["exec", "tenant-a", "--", "id", "-u"]);
    assert_eq!(inside.trim(), "2000", "the app is vcap inside");
    // Seen from the host, each app's process is vcap of its own range.
    let on_host = host_uids_running("http.server");
    for base in [a, b] {
        assert!(
            on_host.contains(&(base + 2000)),
            "a process of host uid {} in {on_host:?}",
            base + 2000
        );
    }
    // What an instance writes belongs to its range on the host too.
    d.paas_ok(&[
        "exec",
        "tenant-a",
        "--",
        "sh",
        "-c",
        "echo x > /home/vcap/app/written",
    ]);
    let stat = d.paas_ok(&[
        "exec",
        "tenant-a",
        "--",
        "stat",
        "-c",
        "%u",
        "/home/vcap/app/written",
    ]);
    assert_eq!(stat.trim(), "2000");
}
