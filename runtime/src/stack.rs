//! A stack: the read-only operating system files every container sees at `/`.
//!
//! A stack is a root folder whose `/usr` (with `/bin`, `/lib`, … as on a merged-usr
//! system) every container of it sees read-only, and an `/etc` that the platform writes,
//! so that nothing of the host's configuration, secrets or users is visible. Two kinds:
//!
//! - `host`: the host's own userland. It needs no download, so a fresh host can stage
//!   and run apps offline; its languages are whatever the host has installed.
//! - a built one (`paasd stack build`): a Debian root filesystem made by mmdebstrap,
//!   which apps can rely on whatever the host runs or is upgraded to, as Cloud
//!   Foundry's `cflinuxfs4` and Heroku's `heroku-24`.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use crate::spec::{Mount, MountKind};
use crate::{VCAP_GID, VCAP_UID};

/// The name of the host-userland stack, as buildpacks see it in `CF_STACK`.
pub const HOST: &str = "host";

#[derive(Debug, thiserror::Error)]
pub enum StackError {
    #[error("preparing the stack's /etc in {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A stack: its name, its root folder (`/` for the host's), and its generated `/etc`.
#[derive(Debug, Clone)]
pub struct Stack {
    name: String,
    root: PathBuf,
    etc: PathBuf,
}

/// Top-level folders that are links into `/usr` on a merged-usr host, or bound on others.
const USR_LINKS: [&str; 4] = ["bin", "sbin", "lib", "lib64"];

/// The root's `/etc` entries copied as they are: the dynamic linker's cache, and the
/// links that Debian's alternatives system points `/usr/bin` tools through.
const ETC_COPIED: [&str; 4] = ["ld.so.cache", "ld.so.conf", "ld.so.conf.d", "alternatives"];

/// The further `/etc` entries a built stack's root gives: configuration of the
/// languages and servers it has.
/// (The JRE's `lib/security` and other settings are links into `java-17-openjdk`;
/// Maven's `conf` is a link to `/etc/maven`.)
const ETC_OF_BUILT: [&str; 5] = ["php", "nginx", "mime.types", "java-17-openjdk", "maven"];

impl Stack {
    /// The host-userland stack, its `/etc` written into `dir/etc` (replacing an older
    /// one).
    pub fn prepare_host(dir: &Path) -> Result<Self, StackError> {
        Self::prepare(HOST, Path::new("/"), dir)
    }

    /// The host-userland stack, with the `/etc` that [`Stack::prepare_host`] wrote into
    /// `dir` earlier.
    pub fn open_host(dir: &Path) -> Self {
        Stack {
            name: HOST.into(),
            root: PathBuf::from("/"),
            etc: dir.join("etc"),
        }
    }

    /// Stack `name` of the root folder `root`, its `/etc` written into `dir/etc`
    /// (replacing an older one).
    pub fn prepare(name: &str, root: &Path, dir: &Path) -> Result<Self, StackError> {
        let etc = dir.join("etc");
        let err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| StackError::Io { path, source }
        };
        let staging = dir.join("etc.new");
        if staging.exists() {
            fs::remove_dir_all(&staging).map_err(err(&staging))?;
        }
        fs::create_dir_all(&staging).map_err(err(&staging))?;
        let files = [
            (
                "passwd",
                format!(
                    "root:x:0:0:root:/root:/usr/sbin/nologin\n\
                     vcap:x:{VCAP_UID}:{VCAP_GID}:vcap:/home/vcap:/bin/bash\n\
                     nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
                ),
            ),
            (
                "group",
                format!("root:x:0:\nvcap:x:{VCAP_GID}:\nnogroup:x:65534:\n"),
            ),
            (
                "hosts",
                "127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n".to_string(),
            ),
            (
                "nsswitch.conf",
                "passwd: files\ngroup: files\nhosts: files dns\n".to_string(),
            ),
            ("resolv.conf", resolv_conf()),
            (
                "os-release",
                format!("NAME=\"paas stack {name}\"\nID=paas-{name}\n"),
            ),
        ];
        for (name, body) in files {
            let p = staging.join(name);
            fs::write(&p, body).map_err(err(&p))?;
        }
        // A built stack's own configuration of what it ships (PHP's extensions, nginx's
        // MIME types) comes too; the host's is the host's own business.
        let built = if root == Path::new("/") {
            &[][..]
        } else {
            &ETC_OF_BUILT[..]
        };
        for entry in ETC_COPIED.iter().chain(built) {
            copy_tree(&root.join("etc").join(entry), &staging.join(entry))
                .map_err(err(&staging))?;
        }
        // Mount point for the host's CA certificates, bound read-only at start.
        fs::create_dir_all(staging.join("ssl")).map_err(err(&staging))?;
        if etc.exists() {
            fs::remove_dir_all(&etc).map_err(err(&etc))?;
        }
        fs::rename(&staging, &etc).map_err(err(&etc))?;
        Ok(Stack {
            name: name.to_string(),
            root: root.to_path_buf(),
            etc,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The mounts and links that make up `/` from this stack, before per-container ones.
    pub fn mounts(&self) -> (Vec<Mount>, Vec<(String, String)>) {
        let ro = |source: &str, target: &str| Mount {
            target: target.to_string(),
            kind: MountKind::Bind {
                source: self.root.join(source.trim_start_matches('/')),
                readonly: true,
            },
        };
        let mut mounts = vec![
            ro("/usr", "/usr"),
            Mount {
                target: "/etc".into(),
                kind: MountKind::Bind {
                    source: self.etc.clone(),
                    readonly: true,
                },
            },
        ];
        if self.root.join("etc/ssl").is_dir() {
            mounts.push(ro("/etc/ssl", "/etc/ssl"));
        }
        let mut links = Vec::new();
        for name in USR_LINKS {
            let host = self.root.join(name);
            match fs::read_link(&host) {
                Ok(target) => {
                    links.push((target.to_string_lossy().into_owned(), format!("/{name}")))
                }
                Err(_) if host.is_dir() => {
                    mounts.push(ro(&format!("/{name}"), &format!("/{name}")))
                }
                Err(_) => {}
            }
        }
        mounts.push(Mount {
            target: "/dev".into(),
            kind: MountKind::Dev,
        });
        mounts.push(Mount {
            target: "/proc".into(),
            kind: MountKind::Proc,
        });
        (mounts, links)
    }
}

/// No name servers: instances have no outbound network yet, and a resolver that cannot
/// be reached makes every lookup wait for its timeout (Python's `http.server` waits 10 s
/// in `getfqdn` before it listens). With none listed, glibc asks 127.0.0.1 inside the
/// container and fails at once.
fn resolv_conf() -> String {
    "# paas: instances have no outbound network, so no name servers are listed\n".to_string()
}

/// Copies a file, a symlink (as a symlink) or a folder of them. A missing source is fine.
fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    let meta = match fs::symlink_metadata(from) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if meta.file_type().is_symlink() {
        symlink(fs::read_link(from)?, to)
    } else if meta.is_dir() {
        fs::create_dir_all(to)?;
        for e in fs::read_dir(from)? {
            let e = e?;
            copy_tree(&e.path(), &to.join(e.file_name()))?;
        }
        Ok(())
    } else {
        fs::copy(from, to).map(|_| ())
    }
}
