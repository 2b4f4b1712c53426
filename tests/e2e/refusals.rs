//! Bad input gets a clear error and changes nothing.

use std::io::Write;

use crate::harness::Daemon;

/// A tar.gz with one entry whose raw name and type are as given, bypassing the tar
/// crate's own path checks.
fn hostile_tar_gz(name: &str, kind: tar::EntryType, link: Option<&str>) -> Vec<u8> {
    let mut b = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::fast(),
    ));
    let mut h = tar::Header::new_old();
    h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
    if let Some(l) = link {
        h.as_old_mut().linkname[..l.len()].copy_from_slice(l.as_bytes());
    }
    h.set_entry_type(kind);
    h.set_mode(0o644);
    let data: &[u8] = if kind == tar::EntryType::Regular {
        b"pwned\n"
    } else {
        b""
    };
    h.set_size(data.len() as u64);
    h.set_cksum();
    b.append(&h, data).unwrap();
    let mut gz = b.into_inner().unwrap();
    gz.flush().unwrap();
    gz.finish().unwrap()
}

fn blob_count(d: &Daemon) -> usize {
    walk_files(&d.dir.path().join("blobs"))
}

fn walk_files(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| {
                    if e.path().is_dir() {
                        walk_files(&e.path())
                    } else {
                        1
                    }
                })
                .sum()
        })
        .unwrap_or(0)
}

#[test]
fn unsafe_uploads_are_refused_and_write_nothing() {
    let d = Daemon::start();
    let (status, _) = d.api_call("PUT", "/v1/apps/victim", None);
    assert_eq!(status, 400, "PUT needs settings");
    let settings = d.dir.path().join("settings.json");
    std::fs::write(&settings, r#"{"instances":1,"memory":256}"#).unwrap();
    let (status, body) = d.api_call("PUT", "/v1/apps/victim", Some(&settings));
    assert_eq!(status, 201, "created: {body}");
    let (status, body) = d.api_call("PUT", "/v1/apps/victim", Some(&settings));
    assert_eq!(status, 200, "changed: {body}");
    let before = blob_count(&d);
    let escape_target = d.dir.path().parent().unwrap().join("pwned-by-paas-test");
    let cases = [
        (
            "../pwned-by-paas-test",
            tar::EntryType::Regular,
            None,
            "contains '..'",
        ),
        (
            "/tmp/pwned-by-paas-test",
            tar::EntryType::Regular,
            None,
            "absolute",
        ),
        (
            "link",
            tar::EntryType::Symlink,
            Some("/etc/passwd"),
            "symlink to an absolute path",
        ),
        (
            "link",
            tar::EntryType::Symlink,
            Some("../../etc"),
            "points outside",
        ),
    ];
    for (name, kind, link, reason) in cases {
        let pkg = d.dir.path().join("hostile.tgz");
        std::fs::write(&pkg, hostile_tar_gz(name, kind, link)).unwrap();
        let (status, body) = d.api_call("POST", "/v1/apps/victim/packages", Some(&pkg));
        assert_eq!(status, 422, "{name}: {body}");
        let err: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(err["code"], "unsafe-package", "{body}");
        let msg = err["message"].as_str().unwrap();
        assert!(msg.contains(reason), "{name}: {msg}");
        assert!(err["hint"].as_str().is_some(), "{body}");
    }
    assert_eq!(blob_count(&d), before, "refused uploads leave no blob");
    assert!(!escape_target.exists());
    assert!(!std::path::Path::new("/tmp/pwned-by-paas-test").exists());
}

#[test]
fn invalid_app_names_are_refused_by_the_cli_and_the_api() {
    let d = Daemon::start();
    let out = d.paas(&["push", "My_App"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("app name \"My_App\" is invalid"), "{err}");
    assert!(
        err.contains("use 1-63 lowercase letters, digits and '-'"),
        "{err}"
    );

    let settings = d.dir.path().join("settings.json");
    std::fs::write(&settings, r#"{"instances":1,"memory":256}"#).unwrap();
    let (status, body) = d.api_call("PUT", "/v1/apps/My_App", Some(&settings));
    assert_eq!(status, 400);
    let err: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(err["code"], "invalid-name");
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .contains("use 1-63 lowercase letters"),
        "{body}"
    );
}

#[test]
fn requests_without_the_token_are_refused() {
    let d = Daemon::start();
    let out = std::process::Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "--cacert"])
        .arg(d.cert())
        .arg(format!("{}/v1/apps", d.api))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "401");
}

#[test]
fn uploads_over_the_limit_and_unknown_routes_get_the_error_envelope() {
    let d = Daemon::start();
    // A declared length past the 512 MiB limit is refused before any byte is read, by
    // the body-limit layer, and still answered as the API answers every error.
    let out = std::process::Command::new("curl")
        .args([
            "-sS",
            "-o",
            "-",
            "-w",
            "\n%{http_code}",
            "-X",
            "POST",
            "--cacert",
        ])
        .arg(d.cert())
        .args(["-H", &format!("Authorization: Bearer {}", d.token())])
        .args(["-H", "Content-Length: 600000000", "--data-binary", ""])
        .arg(format!("{}/v1/apps/big/packages", d.api))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap();
    assert_eq!(code, "413", "{text}");
    let v: serde_json::Value = serde_json::from_str(body).expect("a JSON envelope");
    assert_eq!(v["code"], "too-large", "{body}");
    assert!(v["hint"].as_str().unwrap().contains("512 MiB"), "{body}");
    // A method no route serves: the envelope too.
    let (status, body) = d.api_call("PATCH", "/v1/apps", None);
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("no-such-route"), "{body}");
}

/// A tar.gz with one file entry: `.paas/resources.json` holding `json`.
fn resources_only(json: &str) -> Vec<u8> {
    let mut b = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::fast(),
    ));
    let mut h = tar::Header::new_gnu();
    h.set_mode(0o644);
    h.set_size(json.len() as u64);
    b.append_data(&mut h, ".paas/resources.json", json.as_bytes())
        .unwrap();
    let mut gz = b.into_inner().unwrap();
    gz.flush().unwrap();
    gz.finish().unwrap()
}

#[test]
fn resource_lists_cannot_escape_or_name_unknown_content() {
    let d = Daemon::start();
    let settings = d.dir.path().join("settings.json");
    std::fs::write(&settings, r#"{"instances":1,"memory":256}"#).unwrap();
    assert_eq!(d.api_call("PUT", "/v1/apps/victim", Some(&settings)).0, 201);
    let sha = "a".repeat(64);
    for (json, reason) in [
        (
            format!(r#"[{{"path":"../x","sha256":"{sha}","size":1,"mode":420}}]"#),
            "contains '..'",
        ),
        (
            format!(r#"[{{"path":"ok.txt","sha256":"{sha}","size":1,"mode":420}}]"#),
            "does not hold",
        ),
    ] {
        let pkg = d.dir.path().join("partial.tgz");
        std::fs::write(&pkg, resources_only(&json)).unwrap();
        let (status, body) = d.api_call(
            "POST",
            "/v1/apps/victim/packages?resources=true",
            Some(&pkg),
        );
        assert_eq!(status, 422, "{body}");
        assert!(body.contains(reason), "{body}");
    }
}
