//! Buildpacks and their dialects, told apart by the files they ship (DESIGN.md).

use std::path::{Path, PathBuf};

use paas_api::BuildpackName;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// `buildpack.toml`, `bin/detect`, `bin/build`.
    CloudNative,
    /// `bin/supply` and/or `bin/finalize`.
    CloudFoundry,
    /// `bin/detect`, `bin/compile`, optional `bin/release`.
    Heroku,
}

impl std::fmt::Display for Dialect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Dialect::CloudNative => "cloud-native",
            Dialect::CloudFoundry => "cloud-foundry",
            Dialect::Heroku => "heroku",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BuildpackError {
    #[error("{dir} is not a buildpack: it needs buildpack.toml (Cloud Native), bin/supply or bin/finalize (Cloud Foundry), or bin/detect and bin/compile (Heroku)")]
    NotABuildpack { dir: PathBuf },
}

/// A buildpack on disk.
#[derive(Debug, Clone)]
pub struct Buildpack {
    pub name: BuildpackName,
    pub dir: PathBuf,
    pub dialect: Dialect,
    /// Names the buildpack's content (a SHA-256): its build cache is kept only while
    /// this stays the same.
    pub version: String,
}

impl Buildpack {
    /// Looks at `dir` to tell the buildpack's dialect.
    pub fn open(name: BuildpackName, dir: &Path) -> Result<Self, BuildpackError> {
        let has = |f: &str| dir.join(f).is_file();
        let dialect = if has("buildpack.toml") {
            Dialect::CloudNative
        } else if has("bin/supply") || has("bin/finalize") {
            Dialect::CloudFoundry
        } else if has("bin/detect") && has("bin/compile") {
            Dialect::Heroku
        } else {
            return Err(BuildpackError::NotABuildpack {
                dir: dir.to_path_buf(),
            });
        };
        Ok(Buildpack {
            name,
            dir: dir.to_path_buf(),
            dialect,
            version: String::new(),
        })
    }
}
