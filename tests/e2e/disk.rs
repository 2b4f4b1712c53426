//! The data folder's disk fills up: the API says so (507) and keeps nothing half
//! written, and everything works again once space is freed.

use std::path::{Path, PathBuf};

use crate::harness::{repo, Daemon};

/// A small tmpfs, unmounted when dropped.
struct SmallDisk {
    base: tempfile::TempDir,
}

impl SmallDisk {
    fn new(size: &str) -> SmallDisk {
        let base = tempfile::tempdir().unwrap();
        let status = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(base.path())
            .status()
            .unwrap();
        assert!(status.success(), "mounting a tmpfs");
        SmallDisk { base }
    }

    fn path(&self) -> &Path {
        self.base.path()
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.base.path())
            .status();
    }
}

/// Fills the disk of `dir` with one file; returns its path.
fn fill(dir: &Path) -> PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).unwrap();
    let block = vec![0u8; 1 << 20];
    // Bounded: the disk is far smaller than this.
    for _ in 0..4096 {
        if f.write_all(&block).is_err() {
            break;
        }
    }
    let _ = f.write_all(&[0u8; 512]);
    path
}

/// A tar.gz of one small file, as a package.
fn package(dir: &Path) -> PathBuf {
    let path = dir.join("package.tgz");
    let gz = flate2::write::GzEncoder::new(
        std::fs::File::create(&path).unwrap(),
        flate2::Compression::default(),
    );
    let mut tar = tar::Builder::new(gz);
    let body = b"<h1>second</h1>\n";
    let mut header = tar::Header::new_gnu();
    header.set_size(body.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    tar.append_data(&mut header, "index.html", &body[..])
        .unwrap();
    tar.into_inner().unwrap().finish().unwrap();
    path
}

#[test]
fn a_full_disk_is_answered_507_keeps_nothing_half_written_and_passes_once_freed() {
    let disk = SmallDisk::new("160m");
    let data = tempfile::Builder::new().tempdir_in(disk.path()).unwrap();
    let d = Daemon::start_in(data, &[]);
    let site = repo().join("examples/static-site");
    d.paas_ok(&[
        "push",
        "full",
        "-p",
        site.to_str().unwrap(),
        "-m",
        "64M",
        "-k",
        "16M",
    ]);
    assert_eq!(d.get("full.localhost", "/").status, 200);

    let filler = fill(disk.path());
    let scratch = tempfile::tempdir().unwrap();
    let pkg = package(scratch.path());
    let (status, body) = d.api_call("POST", "/v1/apps/full/packages", Some(&pkg));
    assert_eq!(status, 507, "an upload to a full disk: {body}");
    assert!(
        body.contains("insufficient-storage") && body.contains("free space"),
        "the answer says what to do: {body}"
    );
    let out = d.paas(&["push", "full", "-p", site.to_str().unwrap()]);
    let said = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "a push to a full disk fails");
    assert!(said.contains("disk is full"), "the CLI says why: {said}");
    // A store write either still finds room or is refused as the disk's fault, never as
    // an internal error.
    let out = d.paas(&["set-env", "full", "WHILE_FULL", "1"]);
    let said = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success() || said.contains("disk is full"),
        "set-env on a full disk: {said}"
    );
    assert_eq!(
        d.get("full.localhost", "/").status,
        200,
        "the app still answers"
    );

    // Nothing half-written: no temporary blob is left, every log line is whole.
    let tmp: Vec<_> = std::fs::read_dir(d.dir.path().join("blobs/tmp"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(tmp.is_empty(), "temporary blobs are left: {tmp:?}");
    for e in std::fs::read_dir(d.dir.path().join("logs"))
        .unwrap()
        .flatten()
    {
        let text = std::fs::read_to_string(e.path()).unwrap();
        for line in text.lines() {
            assert!(
                serde_json::from_str::<serde_json::Value>(line).is_ok(),
                "{:?} holds a broken line: {line:?}",
                e.path()
            );
        }
    }

    std::fs::remove_file(&filler).unwrap();
    d.paas_ok(&["set-env", "full", "AFTER", "1"]);
    let (status, body) = d.api_call("POST", "/v1/apps/full/packages", Some(&pkg));
    assert!(
        (200..300).contains(&status),
        "an upload once space is freed: {status} {body}"
    );
    d.paas_ok(&["push", "full", "-p", site.to_str().unwrap()]);
    assert_eq!(d.get("full.localhost", "/").status, 200);
}
