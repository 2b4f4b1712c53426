//! Custom buildpacks through the CLI: add, use, reorder, disable, delete.

use std::io::Write;

use crate::harness::{repo, Daemon};

#[test]
fn a_custom_buildpack_is_added_detected_first_disabled_and_deleted() {
    let d = Daemon::start();
    let bp = repo().join("examples/custom-buildpack");
    let app = repo().join("examples/banner-app");
    let out = d.paas_ok(&[
        "create-buildpack",
        "banner",
        bp.to_str().unwrap(),
        "--position",
        "1",
    ]);
    assert!(
        out.contains("Created buildpack banner (heroku) at position 1"),
        "{out}"
    );
    let list = d.paas_ok(&["buildpacks"]);
    let lines: Vec<&str> = list.lines().collect();
    assert!(
        lines[1].starts_with("1 ") && lines[1].contains("banner") && lines[1].contains("custom"),
        "{list}"
    );
    assert!(
        lines[2].contains("staticfile") && lines[2].contains("shipped"),
        "{list}"
    );

    let out = d.paas_ok(&["push", "banner-demo", "-p", app.to_str().unwrap()]);
    assert!(out.contains("-----> Detected banner"), "{out}");
    assert!(out.contains("Build number 1"), "{out}");
    assert!(
        out.contains("Build cache for banner: none (first staging)"),
        "{out}"
    );
    let out = d.paas_ok(&["push", "banner-demo", "-p", app.to_str().unwrap()]);
    assert!(out.contains("Build cache for banner: restored"), "{out}");
    assert!(
        out.contains("Build number 2"),
        "the cache carried the count over: {out}"
    );
    // Changed bits drop the cache the old ones made.
    let changed = tempfile::tempdir().unwrap();
    copy_tree(&bp, changed.path());
    std::fs::write(changed.path().join("VERSION"), "2\n").unwrap();
    d.paas_ok(&[
        "update-buildpack",
        "banner",
        "--path",
        changed.path().to_str().unwrap(),
    ]);
    let out = d.paas_ok(&["push", "banner-demo", "-p", app.to_str().unwrap()]);
    assert!(
        out.contains("Build cache for banner: none (the buildpack changed)"),
        "{out}"
    );
    assert!(out.contains("Build number 1"), "{out}");
    let resp = d.get("banner-demo.localhost", "/");
    assert!(
        resp.body.contains("Hello from a custom buildpack"),
        "{resp:?}"
    );

    // Moving it last changes nothing for this app: no other buildpack detects it.
    d.paas_ok(&["update-buildpack", "banner", "--position", "9"]);
    assert!(d
        .paas_ok(&["buildpacks"])
        .lines()
        .last()
        .unwrap()
        .contains("banner"));

    d.paas_ok(&["update-buildpack", "banner", "--disable"]);
    let out = d.paas(&["push", "banner-demo", "-p", app.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(4),
        "staging fails: nothing detects the app"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no buildpack detected this app"), "{err}");
    assert_eq!(
        d.get("banner-demo.localhost", "/").status,
        200,
        "the running release stays"
    );

    let out = d.paas(&["delete-buildpack", "python"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("ships with the platform"));
    d.paas_ok(&["delete-buildpack", "banner"]);
    assert!(!d.paas_ok(&["buildpacks"]).contains("banner"));
}

fn copy_tree(from: &std::path::Path, to: &std::path::Path) {
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let dst = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&dst).unwrap();
            copy_tree(&e.path(), &dst);
        } else {
            std::fs::copy(e.path(), &dst).unwrap();
        }
    }
}

#[test]
fn buildpacks_upload_as_zip_and_unsafe_ones_are_refused() {
    let d = Daemon::start();
    let dir = tempfile::tempdir().unwrap();
    let zip_path = dir.path().join("bp.zip");
    {
        let f = std::fs::File::create(&zip_path).unwrap();
        let mut z = zip::ZipWriter::new(f);
        let exe = zip::write::SimpleFileOptions::default().unix_permissions(0o755);
        for (name, body) in [
            ("zipped/bin/detect", "#!/bin/sh\n[ -f \"$1/zipped.txt\" ]\n"),
            (
                "zipped/bin/compile",
                "#!/bin/sh\necho compiled from a zip\n",
            ),
            (
                "zipped/bin/release",
                "#!/bin/sh\necho 'default_process_types: {web: python3 -m http.server $PORT}'\n",
            ),
        ] {
            z.start_file(name, exe).unwrap();
            z.write_all(body.as_bytes()).unwrap();
        }
        z.finish().unwrap();
    }
    let out = d.paas_ok(&["create-buildpack", "zipped", zip_path.to_str().unwrap()]);
    assert!(
        out.contains("Created buildpack zipped (heroku) at position 9"),
        "{out}"
    );
    let app = tempfile::tempdir().unwrap();
    std::fs::write(app.path().join("zipped.txt"), "x").unwrap();
    let out = d.paas_ok(&["push", "zipped-app", "-p", app.path().to_str().unwrap()]);
    assert!(out.contains("compiled from a zip"), "{out}");

    let evil = dir.path().join("evil.zip");
    {
        let mut z = zip::ZipWriter::new(std::fs::File::create(&evil).unwrap());
        z.start_file("../../bin/detect", zip::write::SimpleFileOptions::default())
            .unwrap();
        z.write_all(b"x").unwrap();
        z.finish().unwrap();
    }
    let out = d.paas(&["create-buildpack", "evil", evil.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("refused"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let not_bp = tempfile::tempdir().unwrap();
    std::fs::write(not_bp.path().join("README"), "no bin/").unwrap();
    let out = d.paas(&["create-buildpack", "empty", not_bp.path().to_str().unwrap()]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("is not a buildpack"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!d.paas_ok(&["buildpacks"]).contains("evil"));
}

#[test]
fn restage_builds_the_current_package_again_and_the_droplet_downloads() {
    let d = Daemon::start();
    let app = repo().join("examples/python-app");
    d.paas_ok(&["push", "again", "-p", app.to_str().unwrap()]);
    let out = d.paas_ok(&["restage", "again"]);
    assert!(
        out.contains("Restaging app again") && out.contains("-----> Detected python"),
        "{out}"
    );
    assert!(out.contains("App again is running 1 instance(s)"), "{out}");
    let events = d.paas_ok(&["events", "again"]);
    assert!(
        events.contains("release 2"),
        "restage makes a new release: {events}"
    );
    assert_eq!(d.get("again.localhost", "/").status, 200);

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("droplet.tgz");
    let out = d.paas_ok(&["droplet", "download", "again", "-o", file.to_str().unwrap()]);
    assert!(out.contains("Saved the droplet of again"), "{out}");
    let f = std::fs::File::open(&file).unwrap();
    let mut a = tar::Archive::new(flate2::read::GzDecoder::new(f));
    let mut info = String::new();
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        if e.path().unwrap().to_str() == Some("staging_info.yml") {
            std::io::Read::read_to_string(&mut e, &mut info).unwrap();
        }
    }
    let info: serde_json::Value = serde_json::from_str(&info).unwrap();
    assert_eq!(info["detected_buildpack"], "python");
    assert_eq!(info["start_command"], "python3 app.py");

    let out = d.paas(&["restage", "nosuch"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("app nosuch does not exist"));
}
