//! Hostile and odd archives: each is refused with a clear reason, or unpacked safely.

use std::io::{Read, Write};
use std::path::Path;

use paas_stager::archive::{self, ArchivePolicy};
use paas_stager::ArchiveError;

/// An entry written with its raw name, bypassing the tar crate's own path checks.
enum E<'a> {
    File(&'a str, &'a [u8], u32),
    Dir(&'a str),
    Symlink(&'a str, &'a str),
    Hardlink(&'a str, &'a str),
    CharDevice(&'a str),
}

fn tar_gz(entries: &[E]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&plain_tar(entries)).unwrap();
    gz.finish().unwrap()
}

fn plain_tar(entries: &[E]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_old();
        let (name, data, kind, mode, link): (&str, &[u8], _, u32, Option<&str>) = match e {
            E::File(n, d, m) => (n, d, tar::EntryType::Regular, *m, None),
            E::Dir(n) => (n, b"", tar::EntryType::Directory, 0o755, None),
            E::Symlink(n, t) => (n, b"", tar::EntryType::Symlink, 0o777, Some(t)),
            E::Hardlink(n, t) => (n, b"", tar::EntryType::Link, 0o644, Some(t)),
            E::CharDevice(n) => (n, b"", tar::EntryType::Char, 0o666, None),
        };
        let raw = h.as_old_mut();
        raw.name[..name.len()].copy_from_slice(name.as_bytes());
        if let Some(t) = link {
            raw.linkname[..t.len()].copy_from_slice(t.as_bytes());
        }
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(data.len() as u64);
        h.set_cksum();
        b.append(&h, data).unwrap();
    }
    b.into_inner().unwrap()
}

/// Unpacks into `root/dest` and returns the result and what ended up in `root` outside
/// `dest`.
fn unpack(
    entries: &[E],
) -> (
    Result<archive::ArchiveStats, ArchiveError>,
    Vec<String>,
    tempfile::TempDir,
) {
    let root = tempfile::tempdir().unwrap();
    let dest = root.path().join("dest");
    std::fs::create_dir(&dest).unwrap();
    let data = tar_gz(entries);
    let scanned = archive::scan(data.as_slice(), ArchivePolicy::upload());
    let res = archive::unpack(data.as_slice(), &dest, ArchivePolicy::upload(), None);
    assert_eq!(
        scanned.is_ok(),
        res.is_ok(),
        "scan and unpack must agree: {scanned:?} vs {res:?}"
    );
    let outside: Vec<String> = std::fs::read_dir(root.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != "dest")
        .collect();
    (res, outside, root)
}

fn refused_because(entries: &[E], reason: &str) {
    let (res, outside, _root) = unpack(entries);
    let err = res.expect_err("the archive must be refused").to_string();
    assert!(err.contains(reason), "expected {reason:?} in {err:?}");
    assert!(
        outside.is_empty(),
        "nothing may be written outside: {outside:?}"
    );
}

#[test]
fn parent_dir_entries_are_refused() {
    refused_because(&[E::File("../escaped", b"x", 0o644)], "contains '..'");
    refused_because(&[E::File("a/../../escaped", b"x", 0o644)], "contains '..'");
}

#[test]
fn absolute_entries_are_refused() {
    refused_because(&[E::File("/tmp/escaped", b"x", 0o644)], "absolute");
}

#[test]
fn symlinks_out_of_the_archive_are_refused() {
    refused_because(&[E::Symlink("link", "/etc/passwd")], "absolute path");
    refused_because(&[E::Symlink("a/link", "../../outside")], "points outside");
}

#[test]
fn writing_through_a_symlink_is_refused() {
    // The node-tar CVE-2021-32803 shape: a link to a folder, then a file "inside" it.
    refused_because(
        &[
            E::Dir("sub"),
            E::Symlink("sub/up", ".."),
            E::File("sub/up/x", b"x", 0o644),
        ],
        "goes through a symlink",
    );
}

#[test]
fn hardlinks_to_anything_but_earlier_files_are_refused() {
    refused_because(&[E::Hardlink("h", "/etc/passwd")], "absolute");
    refused_because(&[E::Hardlink("h", "missing")], "hardlink");
}

#[test]
fn devices_are_dropped_and_setuid_is_cleared() {
    let (res, outside, root) = unpack(&[
        E::File("run.sh", b"#!/bin/sh\n", 0o4755),
        E::CharDevice("null"),
        E::Symlink("inside", "run.sh"),
        E::Hardlink("again", "run.sh"),
    ]);
    let stats = res.unwrap();
    assert!(outside.is_empty());
    assert_eq!(stats.dropped, 1);
    let dest = root.path().join("dest");
    assert!(!dest.join("null").exists());
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dest.join("run.sh"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o7777, 0o755, "setuid must be cleared");
    assert_eq!(
        std::fs::read_link(dest.join("inside")).unwrap(),
        Path::new("run.sh")
    );
    assert_eq!(std::fs::read(dest.join("again")).unwrap(), b"#!/bin/sh\n");
}

#[test]
fn sizes_and_counts_are_bounded() {
    let data = tar_gz(&[E::File("a", &[0u8; 4096], 0o644), E::File("b", b"x", 0o644)]);
    let small = ArchivePolicy {
        max_entries: 1,
        ..ArchivePolicy::upload()
    };
    assert!(matches!(
        archive::scan(data.as_slice(), small),
        Err(ArchiveError::TooManyEntries(1))
    ));
    let tiny = ArchivePolicy {
        max_bytes: 1024,
        ..ArchivePolicy::upload()
    };
    assert!(matches!(
        archive::scan(data.as_slice(), tiny),
        Err(ArchiveError::TooLarge(_))
    ));
}

#[test]
fn garbage_is_not_a_tar_gz() {
    let err = archive::scan(&b"this is not gzip"[..], ArchivePolicy::upload()).unwrap_err();
    assert!(err.to_string().contains("not a valid tar.gz"), "{err}");
}

fn zip_of(entries: &[(&str, &[u8], u32)]) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    {
        let mut z = zip::ZipWriter::new(&mut out);
        for (name, data, mode) in entries {
            let opts = zip::write::SimpleFileOptions::default().unix_permissions(*mode);
            if mode & 0o170000 == 0o120000 {
                z.add_symlink(*name, std::str::from_utf8(data).unwrap(), opts)
                    .unwrap();
            } else {
                z.start_file(*name, opts).unwrap();
                z.write_all(data).unwrap();
            }
        }
        z.finish().unwrap();
    }
    out.into_inner()
}

#[test]
fn zips_become_tar_gz_and_meet_the_same_rules() {
    use paas_stager::archive::{zip_to_tar_gz, Format};
    let good = zip_of(&[
        ("bin/detect", b"#!/bin/sh\n", 0o100755),
        ("lib/link", b"../bin/detect", 0o120777),
    ]);
    assert_eq!(Format::sniff(&good), Some(Format::Zip));
    let mut tgz = Vec::new();
    zip_to_tar_gz(
        std::io::Cursor::new(good),
        &mut tgz,
        ArchivePolicy::upload(),
    )
    .unwrap();
    assert_eq!(Format::sniff(&tgz), Some(Format::TarGz));
    let dest = tempfile::tempdir().unwrap();
    archive::unpack(tgz.as_slice(), dest.path(), ArchivePolicy::upload(), None).unwrap();
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dest.path().join("bin/detect"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o755, "the executable bit survives");
    assert_eq!(
        std::fs::read_link(dest.path().join("lib/link")).unwrap(),
        Path::new("../bin/detect")
    );

    let evil = zip_of(&[("../../escape", b"x", 0o100644)]);
    let err = zip_to_tar_gz(
        std::io::Cursor::new(evil),
        Vec::new(),
        ArchivePolicy::upload(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("'..'"), "{err}");
    let link_out = zip_of(&[("l", b"/etc/passwd", 0o120777)]);
    let mut tgz = Vec::new();
    zip_to_tar_gz(
        std::io::Cursor::new(link_out),
        &mut tgz,
        ArchivePolicy::upload(),
    )
    .unwrap();
    let err = archive::scan(tgz.as_slice(), ArchivePolicy::upload()).unwrap_err();
    assert!(
        err.to_string().contains("symlink to an absolute path"),
        "{err}"
    );
}

/// Unpacks the archive `entries(root)` with `policy` into `root/dest`, where `root` also
/// holds a file `secret`.
fn unpack_beside_a_secret(
    entries: impl FnOnce(&str) -> Vec<u8>,
    policy: ArchivePolicy,
) -> (
    Result<archive::ArchiveStats, ArchiveError>,
    tempfile::TempDir,
) {
    let root = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join("secret"), "host secret").unwrap();
    let dest = root.path().join("dest");
    std::fs::create_dir(&dest).unwrap();
    let data = entries(root.path().to_str().unwrap());
    let scanned = archive::scan(data.as_slice(), policy);
    let res = archive::unpack(data.as_slice(), &dest, policy, None);
    assert_eq!(scanned.is_ok(), res.is_ok(), "{scanned:?} vs {res:?}");
    (res, root)
}

fn names_beside_dest(root: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != "dest" && n != "secret")
        .collect();
    v.sort();
    v
}

#[test]
fn a_hardlink_to_a_name_later_made_a_symlink_cannot_lead_out() {
    // Before: `x` was checked as a file, turned into a symlink that looks inside
    // (`c/..` with `c -> .`), hard-linked as `h` (a link keeps the symlink), and `h/escaped`
    // was written one folder above the target.
    let (res, root) = unpack_beside_a_secret(
        |_| {
            tar_gz(&[
                E::Symlink("c", "."),
                E::File("x", b"x", 0o644),
                E::Symlink("x", "c/.."),
                E::Hardlink("h", "x"),
                E::File("h/escaped", b"owned", 0o644),
            ])
        },
        ArchivePolicy::upload(),
    );
    assert!(res.is_err(), "the archive must be refused");
    assert_eq!(names_beside_dest(root.path()), Vec::<String>::new());
}

#[test]
fn a_symlink_leading_through_another_symlink_is_refused() {
    // `c -> .` then `up -> c/..`: each looks inside on its own, together they lead out.
    refused_because(
        &[E::Symlink("c", "."), E::Symlink("up", "c/..")],
        "leads through another symlink",
    );
    // The same in the other order: the link is checked before `c` exists.
    refused_because(
        &[E::Symlink("up", "c/.."), E::Symlink("c", ".")],
        "an earlier symlink's target leads through",
    );
}

#[test]
fn a_name_is_never_reused_as_another_type() {
    refused_because(
        &[
            E::Dir("d"),
            E::File("d/f", b"x", 0o644),
            E::Symlink("d", "e"),
        ],
        "another type",
    );
    refused_because(
        &[E::File("a/f", b"x", 0o644), E::File("a", b"x", 0o644)],
        "another type",
    );
    refused_because(
        &[E::Symlink("l", "a"), E::Symlink("l", "b")],
        "redefines a symlink",
    );
    refused_because(
        &[E::File("f", b"x", 0o644), E::File("f/g", b"x", 0o644)],
        "its folder is a file",
    );
}

#[test]
fn a_droplet_hardlink_cannot_take_a_host_file() {
    // Droplets may hold symlinks to anywhere (they resolve inside the container). Before,
    // a folder replaced by a link to the host, then a hardlink through it, took the
    // host's file into the tree, where the tenant could read it.
    let (res, root) = unpack_beside_a_secret(
        |root| {
            tar_gz(&[
                E::File("a/secret", b"x", 0o644),
                E::Symlink("a", root),
                E::Hardlink("leak", "a/secret"),
            ])
        },
        ArchivePolicy::droplet(),
    );
    assert!(res.is_err(), "the archive must be refused");
    assert!(!root.path().join("dest/leak").exists());
}

#[test]
fn unpacking_never_writes_through_a_link_already_in_the_folder() {
    // A build cache or a second archive unpacked over a tree a tenant already shaped.
    let root = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join("secret"), "host secret").unwrap();
    let dest = root.path().join("dest");
    std::fs::create_dir(&dest).unwrap();
    std::os::unix::fs::symlink("..", dest.join("out")).unwrap();
    let data = tar_gz(&[E::File("out/secret", b"overwritten", 0o644)]);
    let err = archive::unpack(data.as_slice(), &dest, ArchivePolicy::droplet(), None)
        .expect_err("writing through the folder's link must fail");
    assert!(err.to_string().contains("out"), "{err}");
    assert_eq!(
        std::fs::read_to_string(root.path().join("secret")).unwrap(),
        "host secret"
    );
}

/// A tar.gz of raw `(kind, name, data)` members, written as they are.
fn raw_members(members: Vec<(tar::EntryType, String, Box<dyn std::io::Read>, u64)>) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut b = tar::Builder::new(gz);
    for (kind, name, data, size) in members {
        let mut h = tar::Header::new_gnu();
        let raw = h.as_gnu_mut().unwrap();
        let n = name.len().min(100);
        raw.name[..n].copy_from_slice(&name.as_bytes()[..n]);
        h.set_entry_type(kind);
        h.set_mode(0o644);
        h.set_size(size);
        h.set_cksum();
        b.append(&h, data).unwrap();
    }
    b.into_inner().unwrap().finish().unwrap()
}

#[test]
fn a_long_name_header_is_read_with_a_bound() {
    // Before: the tar crate read a GNU long-name (or PAX) header whole, whatever size
    // it claimed, so a small gzip bomb in one header made paasd allocate without bound.
    let size = 8u64 << 20;
    let data = raw_members(vec![
        (
            tar::EntryType::GNULongName,
            "././@LongLink".into(),
            Box::new(std::io::repeat(b'a').take(size)),
            size,
        ),
        (tar::EntryType::Regular, "f".into(), Box::new(&b""[..]), 0),
    ]);
    assert!(data.len() < 1 << 20, "a bomb: {} bytes", data.len());
    let err = archive::scan(data.as_slice(), ArchivePolicy::upload()).unwrap_err();
    assert!(err.to_string().contains("extended header"), "{err}");
}

#[test]
fn paths_deep_enough_to_slow_the_checker_are_refused() {
    // Before: every folder of every path was looked up and kept, so 300 paths of 2000
    // levels cost the checker gigabytes of hashing and memory.
    let deep = "a/".repeat(1900);
    let entries: Vec<String> = (0..300).map(|i| format!("x{i}/{deep}f")).collect();
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut b = tar::Builder::new(gz);
    for name in &entries {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0o644);
        h.set_size(0);
        b.append_data(&mut h, name, &b""[..]).unwrap();
    }
    let data = b.into_inner().unwrap().finish().unwrap();
    let err = archive::scan(data.as_slice(), ArchivePolicy::upload()).unwrap_err();
    assert!(matches!(err, ArchiveError::TooComplex), "{err}");
}

#[test]
fn a_path_with_a_nul_byte_is_refused_at_the_scan() {
    // Before: a PAX path with a NUL passed the scan at upload and failed only at staging.
    let record = |k: &str, v: &[u8]| {
        let body_len = k.len() + v.len() + 3;
        let mut len = body_len + 1;
        while len.to_string().len() + body_len != len {
            len += 1;
        }
        let mut r = format!("{len} {k}=").into_bytes();
        r.extend_from_slice(v);
        r.push(b'\n');
        r
    };
    let pax = record("path", b"a\0b");
    let n = pax.len() as u64;
    let data = raw_members(vec![
        (
            tar::EntryType::XHeader,
            "PaxHeader/x".into(),
            Box::new(std::io::Cursor::new(pax)),
            n,
        ),
        (tar::EntryType::Regular, "x".into(), Box::new(&b""[..]), 0),
    ]);
    let err = archive::scan(data.as_slice(), ArchivePolicy::upload()).unwrap_err();
    assert!(err.to_string().contains("NUL"), "{err}");
}

#[test]
fn a_symlink_target_longer_than_the_kernel_takes_is_refused_by_the_scan() {
    // Found by the fuzz target: droplets may link anywhere, so the scan passed a 5000-byte
    // target (carried in a GNU long-link member) that unpacking then failed to make
    // (ENAMETOOLONG): the scan must refuse what unpacking cannot do.
    let target = "n/".repeat(2500);
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut b = tar::Builder::new(gz);
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_size(0);
    h.set_mode(0o777);
    b.append_link(&mut h, "c", &target).unwrap();
    let data = b.into_inner().unwrap().finish().unwrap();
    let err = archive::scan(data.as_slice(), ArchivePolicy::droplet()).unwrap_err();
    assert!(err.to_string().contains("target is too long"), "{err}");
    let dest = tempfile::tempdir().unwrap();
    let unpacked = archive::unpack(data.as_slice(), dest.path(), ArchivePolicy::droplet(), None);
    assert!(unpacked.is_err(), "unpack agrees");
}

#[test]
fn unpacking_for_an_owner_gives_it_every_entry_with_its_mode() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let data = tar_gz(&[
        E::File("app/a/one", b"1", 0o640),
        E::File("app/a/two", b"2", 0o755),
        E::File("app/b/c/three", b"3", 0o600),
        // A folder named after files were put in it: made once, its mode still set.
        E::Dir("app/a"),
        E::Symlink("app/link", "a/one"),
        E::Hardlink("app/hard", "app/a/two"),
    ]);
    let dest = tempfile::tempdir().unwrap();
    let owner = (2_000_123, 2_000_456);
    archive::unpack(
        data.as_slice(),
        dest.path(),
        ArchivePolicy::upload(),
        Some(owner),
    )
    .unwrap();
    let meta = |rel: &str| std::fs::symlink_metadata(dest.path().join(rel)).unwrap();
    for rel in [
        "app/a",
        "app/a/one",
        "app/a/two",
        "app/b/c/three",
        "app/link",
        "app/hard",
    ] {
        assert_eq!((meta(rel).uid(), meta(rel).gid()), owner, "{rel}");
    }
    let mode = |rel: &str| meta(rel).permissions().mode() & 0o777;
    assert_eq!(mode("app/a/one"), 0o640);
    assert_eq!(mode("app/a/two"), 0o755);
    assert_eq!(mode("app/b/c/three"), 0o600);
    assert_eq!(mode("app/a"), 0o755);
    assert_eq!(std::fs::read(dest.path().join("app/link")).unwrap(), b"1");
    assert_eq!(
        std::fs::read(dest.path().join("app/b/c/three")).unwrap(),
        b"3"
    );
}

#[test]
fn a_packed_tar_is_stored_gzipped_only_when_it_passes_the_checks() {
    let dir = tempfile::tempdir().unwrap();
    let (packed, sealed) = (dir.path().join("packed.tar"), dir.path().join("sealed.tgz"));
    let good = plain_tar(&[E::Dir("app"), E::File("app/a.txt", b"hello", 0o644)]);
    std::fs::write(&packed, &good).unwrap();
    let stats = archive::seal(&packed, &sealed, ArchivePolicy::droplet(), in_a_minute()).unwrap();
    assert_eq!((stats.entries, stats.bytes), (2, 5));
    // The checks stop at the first zero block; the platform ends the archive after it.
    let mut expected = good.clone();
    expected.extend_from_slice(&[0; 512]);
    assert_eq!(
        gunzip(&sealed),
        expected,
        "the stored archive is the checked tar"
    );

    let (packed, sealed) = (dir.path().join("bad.tar"), dir.path().join("bad.tgz"));
    std::fs::write(&packed, plain_tar(&[E::File("../escape", b"x", 0o644)])).unwrap();
    let err = archive::seal(&packed, &sealed, ArchivePolicy::droplet(), in_a_minute()).unwrap_err();
    assert!(err.to_string().contains(".."), "{err}");
    assert!(!sealed.exists(), "nothing is stored for a refused archive");

    let past = std::time::Instant::now() - std::time::Duration::from_secs(1);
    std::fs::write(&packed, &good).unwrap();
    let err = archive::seal(&packed, &sealed, ArchivePolicy::droplet(), past).unwrap_err();
    assert!(err.to_string().contains("time ran out"), "{err}");
    assert!(!sealed.exists(), "nothing is stored past the deadline");
}

#[test]
fn what_follows_the_end_of_a_packed_tar_is_not_stored() {
    // One entry, a lone zero block (where the tar crate, GNU tar and the checks stop),
    // then an entry the checks would refuse: `tar --ignore-zeros` would unpack it.
    let dir = tempfile::tempdir().unwrap();
    let first = plain_tar(&[E::File("a.txt", b"hello", 0o644)]);
    let first = &first[..first.len() - 1024]; // without its end-of-archive blocks
    let hidden = plain_tar(&[E::File("../escape", b"x", 0o4755)]);
    let mut packed_bytes = first.to_vec();
    packed_bytes.extend_from_slice(&[0; 512]);
    packed_bytes.extend_from_slice(&hidden);
    let (packed, sealed) = (dir.path().join("packed.tar"), dir.path().join("sealed.tgz"));
    std::fs::write(&packed, &packed_bytes).unwrap();
    archive::seal(&packed, &sealed, ArchivePolicy::droplet(), in_a_minute()).unwrap();
    let stored = gunzip(&sealed);
    let mut expected = first.to_vec();
    expected.extend_from_slice(&[0; 512 + 1024]);
    assert_eq!(
        stored, expected,
        "the checked entries, then an end of archive"
    );
    let mut all = tar::Archive::new(stored.as_slice());
    all.set_ignore_zeros(true);
    let names: Vec<String> = all
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect();
    assert_eq!(
        names,
        ["a.txt"],
        "even reading past zero blocks finds nothing more"
    );
}

fn in_a_minute() -> std::time::Instant {
    std::time::Instant::now() + std::time::Duration::from_secs(60)
}

fn gunzip(path: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(path).unwrap())
        .read_to_end(&mut out)
        .unwrap();
    out
}
