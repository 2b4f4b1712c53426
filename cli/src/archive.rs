//! Packs an app folder into the tar.gz that `push` uploads.
//!
//! Files named in `.paasignore` or `.cfignore` (gitignore syntax) are left out, as are
//! the files Cloud Foundry always leaves out (version-control folders, `.DS_Store`,
//! `manifest.yml`). Symlinks are packed as symlinks; the API refuses those that point
//! outside the folder, so they are caught here first with a clearer message.

use std::path::{Component, Path, PathBuf};

use anyhow::Context;

/// Names never uploaded, wherever they are (Cloud Foundry's defaults).
const ALWAYS_IGNORED: [&str; 10] = [
    ".git",
    ".hg",
    ".svn",
    "_darcs",
    ".DS_Store",
    ".gitignore",
    ".cfignore",
    ".paasignore",
    "manifest.yml",
    ".paas",
];

#[derive(Debug, Default, Clone, Copy)]
pub struct Packed {
    /// Files in the folder, and their bytes.
    pub files: u64,
    pub bytes: u64,
    /// Files left out of the archive because the platform holds them already.
    pub matched_files: u64,
    pub matched_bytes: u64,
}

/// One thing to upload from the app folder.
#[derive(Debug, Clone)]
pub struct Entry {
    pub abs: PathBuf,
    pub rel: PathBuf,
    pub kind: Kind,
}

#[derive(Debug, Clone)]
pub enum Kind {
    Dir,
    Symlink,
    /// A file with its size, permission bits and SHA-256.
    File {
        size: u64,
        mode: u32,
        sha256: String,
    },
}

/// Walks `dir` honouring the ignore files, and hashes every file.
pub fn collect(dir: &Path) -> anyhow::Result<Vec<Entry>> {
    use sha2::Digest;
    use std::os::unix::fs::PermissionsExt;
    let walker = ignore::WalkBuilder::new(dir)
        .standard_filters(false)
        .add_custom_ignore_filename(".cfignore")
        .add_custom_ignore_filename(".paasignore")
        .filter_entry(|e| !ALWAYS_IGNORED.iter().any(|n| e.file_name() == *n))
        .sort_by_file_name(|a, b| a.cmp(b))
        .build();
    let mut out = Vec::new();
    for entry in walker {
        let entry = entry.context("reading the app folder")?;
        let path = entry.path();
        let rel = path.strip_prefix(dir).unwrap_or(path).to_path_buf();
        if rel.as_os_str().is_empty() {
            continue;
        }
        let meta = std::fs::symlink_metadata(path)
            .with_context(|| format!("reading {}", path.display()))?;
        let kind = if meta.file_type().is_symlink() {
            let target = std::fs::read_link(path)?;
            if !stays_inside(&rel, &target) {
                anyhow::bail!(
                    "{} is a symlink to {}, outside the app folder: remove it, or list it in .paasignore",
                    rel.display(),
                    target.display()
                );
            }
            Kind::Symlink
        } else if meta.is_file() {
            let mut hasher = sha2::Sha256::new();
            let mut f =
                std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
            std::io::copy(&mut f, &mut hasher)
                .with_context(|| format!("reading {}", path.display()))?;
            Kind::File {
                size: meta.len(),
                mode: meta.permissions().mode() & 0o777,
                sha256: hex(&hasher.finalize()),
            }
        } else if meta.is_dir() {
            Kind::Dir
        } else {
            continue; // sockets, fifos, devices: nothing an app can use
        };
        out.push(Entry {
            abs: path.to_path_buf(),
            rel,
            kind,
        });
    }
    Ok(out)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes the tar.gz of `entries` to `out`. Files whose SHA-256 is in `held` are not
/// packed; they are listed in `.paas/resources.json` instead, for the platform to fill
/// in from what it already holds.
pub fn write(
    entries: &[Entry],
    held: &std::collections::HashSet<String>,
    out: &Path,
) -> anyhow::Result<Packed> {
    let file = std::fs::File::create(out).with_context(|| format!("creating {}", out.display()))?;
    let gz =
        flate2::write::GzEncoder::new(std::io::BufWriter::new(file), flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    tar.follow_symlinks(false);
    let mut packed = Packed::default();
    let mut resources = Vec::new();
    for e in entries {
        if let Kind::File { size, mode, sha256 } = &e.kind {
            packed.files += 1;
            packed.bytes += size;
            if held.contains(sha256) {
                packed.matched_files += 1;
                packed.matched_bytes += size;
                resources.push(paas_api::ResourceEntry {
                    path: e.rel.to_string_lossy().into_owned(),
                    sha256: sha256.clone(),
                    size: *size,
                    mode: *mode,
                });
                continue;
            }
        }
        tar.append_path_with_name(&e.abs, &e.rel)
            .with_context(|| format!("packing {}", e.rel.display()))?;
    }
    if !resources.is_empty() {
        let json = serde_json::to_vec(&resources)?;
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_size(json.len() as u64);
        tar.append_data(&mut h, paas_api::RESOURCES_ENTRY, json.as_slice())?;
    }
    let gz = tar.into_inner().context("finishing the package")?;
    gz.finish().context("finishing the package")?;
    Ok(packed)
}

/// Writes the tar.gz of everything in `dir` to `out`.
pub fn pack(dir: &Path, out: &Path) -> anyhow::Result<Packed> {
    write(&collect(dir)?, &Default::default(), out)
}

/// Whether symlink `link` (relative to the app folder) with `target` resolves inside it.
fn stays_inside(link: &Path, target: &Path) -> bool {
    if target.is_absolute() {
        return false;
    }
    let mut depth: Vec<PathBuf> = link
        .parent()
        .map(|p| {
            p.components()
                .map(|c| PathBuf::from(c.as_os_str()))
                .collect()
        })
        .unwrap_or_default();
    for c in target.components() {
        match c {
            Component::Normal(p) => depth.push(PathBuf::from(p)),
            Component::CurDir => {}
            Component::ParentDir => {
                if depth.pop().is_none() {
                    return false;
                }
            }
            _ => return false,
        }
    }
    true
}

/// Whether `path` is an archive that `push -p` unpacks and pushes the files of, as
/// `cf push -p app.jar` does: a `.jar`, `.war` or `.zip` file.
pub fn is_zip_app(path: &Path) -> bool {
    path.is_file()
        && path.extension().and_then(|e| e.to_str()).is_some_and(|e| {
            ["jar", "war", "zip"]
                .iter()
                .any(|z| e.eq_ignore_ascii_case(z))
        })
}

/// Unpacks the zip archive `file` (a JAR) into the folder `into`: its files and
/// folders, each inside `into`. An entry whose name leads outside (`../`, an absolute
/// path: the "zip slip" of CVE-2018-1002200) or that is a symlink is refused.
pub fn unzip(file: &Path, into: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let reader = std::fs::File::open(file).context("opening it")?;
    let mut zip = zip::ZipArchive::new(std::io::BufReader::new(reader))
        .context("it is not a zip archive (a JAR, WAR or ZIP file)")?;
    for i in 0..zip.len() {
        let mut entry = zip.by_index(i).context("reading an entry")?;
        let Some(rel) = entry.enclosed_name() else {
            anyhow::bail!(
                "its entry {:?} would be written outside the app: rebuild the archive without it",
                entry.name()
            );
        };
        let out = into.join(rel);
        if entry.is_dir() {
            std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
            continue;
        }
        if entry.is_symlink() {
            anyhow::bail!(
                "its entry {:?} is a symlink, which an app archive may not hold: rebuild the archive without it",
                entry.name()
            );
        }
        if let Some(parent) = out.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        let mut w = std::fs::File::create_new(&out).with_context(|| {
            format!("writing {} (an entry twice in the archive?)", out.display())
        })?;
        std::io::copy(&mut entry, &mut w).with_context(|| format!("unpacking {}", entry.name()))?;
        let mode = entry.unix_mode().unwrap_or(0o644) & 0o755;
        std::fs::set_permissions(&out, std::fs::Permissions::from_mode(mode | 0o600))
            .with_context(|| format!("setting the mode of {}", out.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(tgz: &Path) -> Vec<String> {
        let f = std::fs::File::open(tgz).unwrap();
        let mut a = tar::Archive::new(flate2::read::GzDecoder::new(f));
        a.entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn ignore_files_and_defaults_leave_files_out() {
        let d = tempfile::tempdir().unwrap();
        let app = d.path().join("app");
        std::fs::create_dir_all(app.join(".git")).unwrap();
        std::fs::create_dir_all(app.join("logs")).unwrap();
        std::fs::write(app.join(".git/config"), "x").unwrap();
        std::fs::write(app.join("logs/a.log"), "x").unwrap();
        std::fs::write(app.join("app.py"), "print()").unwrap();
        std::fs::write(app.join("manifest.yml"), "applications: []").unwrap();
        std::fs::write(app.join(".cfignore"), "logs/\n*.tmp\n").unwrap();
        std::fs::write(app.join("x.tmp"), "x").unwrap();
        std::os::unix::fs::symlink("app.py", app.join("link")).unwrap();
        let out = d.path().join("p.tgz");
        let packed = pack(&app, &out).unwrap();
        assert_eq!(packed.files, 1);
        let mut n = names(&out);
        n.sort();
        assert_eq!(n, vec!["app.py", "link"]);
    }

    #[test]
    fn symlinks_out_of_the_folder_are_refused_with_advice() {
        let d = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("/etc/passwd", d.path().join("passwd")).unwrap();
        let err = pack(d.path(), &d.path().join("..").join("p.tgz"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("outside the app folder"), "{err}");
        assert!(stays_inside(Path::new("a/l"), Path::new("../b")));
        assert!(!stays_inside(Path::new("a/l"), Path::new("../../b")));
    }

    fn zip_of(entries: &[(&str, &[u8])]) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().unwrap();
        let mut w = zip::ZipWriter::new(file.reopen().unwrap());
        for (name, body) in entries {
            w.start_file(*name, zip::write::SimpleFileOptions::default())
                .unwrap();
            std::io::Write::write_all(&mut w, body).unwrap();
        }
        w.finish().unwrap();
        file
    }

    #[test]
    fn a_jar_is_unpacked_into_the_folder() {
        let jar = zip_of(&[
            ("META-INF/MANIFEST.MF", b"Main-Class: Hello\n"),
            ("Hello.class", b"\xca\xfe"),
        ]);
        let d = tempfile::tempdir().unwrap();
        unzip(jar.path(), d.path()).unwrap();
        let manifest = std::fs::read_to_string(d.path().join("META-INF/MANIFEST.MF")).unwrap();
        assert_eq!(manifest, "Main-Class: Hello\n");
        assert_eq!(
            std::fs::read(d.path().join("Hello.class")).unwrap(),
            b"\xca\xfe"
        );
    }

    #[test]
    fn a_jar_entry_that_leads_outside_is_refused() {
        let jar = zip_of(&[("../../escaped", b"x")]);
        let d = tempfile::tempdir().unwrap();
        let into = d.path().join("a/app");
        std::fs::create_dir_all(&into).unwrap();
        let err = format!("{:#}", unzip(jar.path(), &into).unwrap_err());
        assert!(err.contains("outside the app"), "{err}");
        assert!(!d.path().join("escaped").exists());
    }
}
