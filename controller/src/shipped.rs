//! The buildpacks `paasd` ships inside its binary (see `build.rs`), unpacked at start.

use std::path::Path;

use anyhow::Context;
use paas_api::BuildpackName;
use paas_stager::Buildpack;

/// Shipped buildpacks in detection order.
pub const SHIPPED: [&str; 8] = [
    "staticfile",
    "python",
    "nodejs",
    "go",
    "ruby",
    "java",
    "php",
    "binary",
];

static ARCHIVE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/buildpacks.tar"));

/// Unpacks the shipped buildpacks into `dir` (replacing an older copy) and opens them.
pub fn install(dir: &Path) -> anyhow::Result<Vec<Buildpack>> {
    let fresh = dir.with_extension("new");
    if fresh.exists() {
        std::fs::remove_dir_all(&fresh).with_context(|| format!("removing {}", fresh.display()))?;
    }
    std::fs::create_dir_all(&fresh).with_context(|| format!("creating {}", fresh.display()))?;
    tar::Archive::new(ARCHIVE)
        .unpack(&fresh)
        .with_context(|| format!("unpacking the shipped buildpacks into {}", fresh.display()))?;
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    std::fs::rename(&fresh, dir).with_context(|| format!("renaming into {}", dir.display()))?;
    // Every shipped buildpack is versioned by the archive that carries them all: a new
    // paasd with changed buildpacks drops the build caches they made.
    let version = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(ARCHIVE))
    };
    SHIPPED
        .iter()
        .map(|name| {
            let name = BuildpackName::parse(name).context("a shipped buildpack name")?;
            let mut bp = Buildpack::open(name.clone(), &dir.join(name.as_str()))
                .with_context(|| format!("opening shipped buildpack {name}"))?;
            bp.version = version.clone();
            Ok(bp)
        })
        .collect()
}
