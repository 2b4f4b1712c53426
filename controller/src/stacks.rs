//! Stacks built from Debian packages (`paasd stack build`): a root filesystem made by
//! mmdebstrap from the package archive apt uses on this host, that apps are built and run
//! on whatever the host has installed or is upgraded to (Cloud Foundry's `cflinuxfs4`,
//! Heroku's `heroku-24`). The host's own userland stays the stack `host`.
//!
//! A stack is kept under the data folder as `stacks/NAME-ID/` (its `rootfs/` and the
//! `stack.json` that describes it), where ID is the SHA-256 of its package list with
//! versions: a build that yields the same packages is the same stack, kept once.
//! `stacks/NAME.current` names the one a name stands for now. Every container of a
//! stack shares its root read-only, and nothing writes to it after the build (the
//! `/etc` the platform writes for it lies in `stack-etc/NAME/`), so it may be a link to a
//! stack built elsewhere.
//!
//! One stack holds what apps build with and run on, compilers and headers included,
//! where Heroku and Cloud Foundry keep a build image beside a smaller run image: a
//! droplet then runs on exactly the libraries it was built against (no second image to
//! keep in step, nothing built against a header whose library the run image lacks), and
//! the root is shared read-only by every container, so its size costs no more per app.
//! A compiler in the run image gives a tenant nothing it could not upload anyway: the
//! boundary is the container, not the tools inside it.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The name `paasd stack build` gives a stack unless told.
pub const DEFAULT_NAME: &str = "bookworm";
/// The Debian suite stacks are built from.
pub const SUITE: &str = "bookworm";
/// What a stack has unless told otherwise: the shells and certificates every app needs,
/// the languages and servers the shipped buildpacks use (nginx for static sites), and
/// common libraries apps link against.
pub const DEFAULT_PACKAGES: &[&str] = &[
    "bash",
    "ca-certificates",
    "curl",
    "python3",
    "python3-pip",
    "python3-venv",
    "nodejs",
    // Debian's nodejs comes without npm; Yarn (1.x) is `yarnpkg`.
    "npm",
    "yarnpkg",
    "nginx-light",
    "golang-go",
    "php8.2-fpm",
    // Ruby with Bundler; Rack and Puma as system gems, so a rack app runs offline.
    "ruby",
    "bundler",
    "ruby-rack",
    "puma",
    // Java: executable JARs run on the JRE; Maven projects build with the JDK, Maven,
    // and the plugins its default build uses, from Debian's repository in the stack
    // (/usr/share/maven-repo), offline.
    "openjdk-17-jre-headless",
    "openjdk-17-jdk-headless",
    "maven",
    "libmaven-resources-plugin-java",
    "libmaven-compiler-plugin-java",
    "libsurefire-java",
    "libmaven-jar-plugin-java",
    // To build what apps bring: C compilers and make (native Python, Ruby and Node.js
    // extensions, cgo), git (dependencies named by a repository), the language
    // headers, and the headers of the common libraries below.
    "build-essential",
    "pkg-config",
    "git",
    "python3-dev",
    "python3-setuptools",
    "ruby-dev",
    "libpq-dev",
    "libxml2-dev",
    "libssl-dev",
    "libffi-dev",
    "zlib1g-dev",
    "libpq5",
    "libxml2",
    "libssl3",
    "imagemagick",
    "tzdata",
];

/// A built stack, as its `stack.json` describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuiltStack {
    pub name: String,
    /// SHA-256 of its package list, hex.
    pub id: String,
    pub suite: String,
    /// Packages installed, with versions (`name=version`), sorted.
    pub packages: Vec<String>,
    pub built_ms: u64,
    /// Where it lies: `stacks/NAME-ID12`.
    #[serde(skip)]
    pub dir: PathBuf,
}

impl BuiltStack {
    pub fn rootfs(&self) -> PathBuf {
        self.dir.join("rootfs")
    }
}

/// The stacks a name stands for now, in name order.
pub fn current(stacks_dir: &Path) -> Vec<BuiltStack> {
    let Ok(entries) = std::fs::read_dir(stacks_dir) else {
        return Vec::new();
    };
    let mut found: Vec<BuiltStack> = entries
        .flatten()
        .filter_map(|e| {
            let file = e.file_name().to_string_lossy().into_owned();
            file.strip_suffix(".current")?;
            let dir_name = std::fs::read_to_string(e.path()).ok()?;
            let dir = stacks_dir.join(dir_name.trim());
            let raw = std::fs::read(dir.join("stack.json")).ok()?;
            let mut stack: BuiltStack = serde_json::from_slice(&raw).ok()?;
            // Its name becomes a folder of the data folder (`stack-etc/NAME`).
            if !valid_name(&stack.name) {
                return None;
            }
            stack.dir = dir;
            stack.rootfs().join("usr").is_dir().then_some(stack)
        })
        .collect();
    found.sort_by(|a, b| a.name.cmp(&b.name));
    found
}

/// Whether `name` may name a stack: lowercase letters, digits and `-`, 1 to 32.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 32
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && name != paas_runtime::stack::HOST
}

/// Builds stack `name` of `packages` under `stacks_dir` with mmdebstrap (its progress on
/// stderr), from the archive of this host's apt sources, and makes it what `name`
/// stands for. Nothing is left of a build that fails.
pub fn build(stacks_dir: &Path, name: &str, packages: &[String]) -> anyhow::Result<BuiltStack> {
    anyhow::ensure!(
        valid_name(name),
        "{name:?} cannot name a stack: use 1 to 32 lowercase letters, digits and '-' (and not `host`)"
    );
    let mmdebstrap = which("mmdebstrap").context(
        "mmdebstrap is not installed: `apt-get install mmdebstrap` (scripts/install-deps.sh does)",
    )?;
    std::fs::create_dir_all(stacks_dir)
        .with_context(|| format!("creating {}", stacks_dir.display()))?;
    let work = tempfile::Builder::new()
        .prefix(".build-")
        .tempdir_in(stacks_dir)
        .context("making a folder to build in")?;
    let rootfs = work.path().join("rootfs");
    let mut command = std::process::Command::new(mmdebstrap);
    command
        .arg("--variant=apt")
        .arg(format!("--include={}", packages.join(",")))
        .arg("--aptopt=APT::Install-Recommends \"false\"")
        .arg(SUITE)
        .arg(&rootfs);
    // The archive apt uses here (a mirror or proxy the operator set up), else Debian's.
    let sources = apt_sources();
    if sources.is_some() {
        command.arg("-").stdin(Stdio::piped());
    }
    let mut child = command
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .spawn()
        .context("starting mmdebstrap")?;
    if let (Some(text), Some(mut stdin)) = (sources, child.stdin.take()) {
        use std::io::Write;
        stdin
            .write_all(text.as_bytes())
            .context("giving mmdebstrap the apt sources")?;
    }
    let status = child.wait().context("waiting for mmdebstrap")?;
    anyhow::ensure!(
        status.success(),
        "mmdebstrap failed ({status}): see its output above; is the package archive reachable?"
    );
    let packages = installed(&rootfs)?;
    let id = hex::encode(Sha256::digest(packages.join("\n").as_bytes()));
    let dir_name = format!("{name}-{}", &id[..12]);
    let dir = stacks_dir.join(&dir_name);
    let stack = BuiltStack {
        name: name.to_string(),
        id,
        suite: SUITE.to_string(),
        packages,
        built_ms: crate::logs::now_ms(),
        dir: dir.clone(),
    };
    if !dir.join("stack.json").is_file() {
        std::fs::write(
            work.path().join("stack.json"),
            serde_json::to_vec_pretty(&stack)?,
        )?;
        if dir.exists() {
            std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
        }
        std::fs::rename(work.keep(), &dir)
            .with_context(|| format!("moving the stack to {}", dir.display()))?;
    }
    let pointer = stacks_dir.join(format!("{name}.current"));
    crate::secrets::write_private(&pointer, dir_name.as_bytes())?;
    Ok(stack)
}

/// The packages installed in `rootfs`, `name=version`, sorted.
fn installed(rootfs: &Path) -> anyhow::Result<Vec<String>> {
    let out = std::process::Command::new("dpkg-query")
        .arg(format!(
            "--admindir={}",
            rootfs.join("var/lib/dpkg").display()
        ))
        .args(["-W", "-f", "${Package}=${Version}\n"])
        .output()
        .context("running dpkg-query")?;
    anyhow::ensure!(
        out.status.success(),
        "dpkg-query could not list the stack's packages: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut list: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    list.sort();
    Ok(list)
}

/// This host's apt sources (deb822 or one-line), if any.
fn apt_sources() -> Option<String> {
    let mut text = std::fs::read_to_string("/etc/apt/sources.list").unwrap_or_default();
    if let Ok(entries) = std::fs::read_dir("/etc/apt/sources.list.d") {
        let mut files: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "sources" || x == "list"))
            .collect();
        files.sort();
        for f in files {
            if let Ok(more) = std::fs::read_to_string(&f) {
                text.push('\n');
                text.push_str(&more);
            }
        }
    }
    text.lines()
        .any(|l| {
            let l = l.trim();
            l.starts_with("deb ") || l.starts_with("URIs:")
        })
        .then_some(text)
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(program))
        .find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stack_names_are_plain() {
        assert!(valid_name("bookworm"));
        assert!(valid_name("bookworm-2"));
        assert!(!valid_name("host"));
        assert!(!valid_name("../x"));
        assert!(!valid_name("Big"));
        assert!(!valid_name(""));
    }

    #[test]
    fn only_stacks_with_a_pointer_and_a_root_are_current() {
        let dir = tempfile::tempdir().unwrap();
        let made = dir.path().join("bookworm-abc");
        std::fs::create_dir_all(made.join("rootfs/usr")).unwrap();
        let stack = BuiltStack {
            name: "bookworm".into(),
            id: "abc".into(),
            suite: SUITE.into(),
            packages: vec!["bash=5.2".into()],
            built_ms: 1,
            dir: PathBuf::new(),
        };
        std::fs::write(made.join("stack.json"), serde_json::to_vec(&stack).unwrap()).unwrap();
        assert!(current(dir.path()).is_empty(), "no pointer yet");
        std::fs::write(dir.path().join("bookworm.current"), "bookworm-abc").unwrap();
        let found = current(dir.path());
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].rootfs(), made.join("rootfs"));
        std::fs::remove_dir_all(made.join("rootfs")).unwrap();
        assert!(
            current(dir.path()).is_empty(),
            "a half-removed stack is not offered"
        );
    }
}
