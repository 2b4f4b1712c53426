//! The droplet: a tar.gz rooted at `/home/vcap` with `app/`, `deps/`, `profile.d/` and
//! `staging_info.yml` (JSON, which is also YAML, as Cloud Foundry writes it).

use std::collections::BTreeMap;
use std::io;
use std::path::Path;

use crate::tree::Tree;

use serde::{Deserialize, Serialize};

/// `staging_info.yml`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct StagingInfo {
    pub detected_buildpack: String,
    pub start_command: String,
    /// Every process type the app declares (`web`, `worker`, …) with its command.
    #[serde(default)]
    pub process_types: BTreeMap<String, String>,
}

/// The folders of `/home/vcap` that make up a droplet.
pub const PARTS: [&str; 5] = ["app", "deps", "layers", "profile.d", "tmp"];

/// A script in the droplet's root that the launcher sources first: the environment that
/// Cloud Foundry `deps/` folders and Cloud Native launch layers ask for.
pub const LAUNCH_ENV: &str = ".paas-env.sh";

/// The droplet's description of itself.
pub const INFO: &str = "staging_info.yml";

/// Writes `staging_info.yml` into the build's home folder (replacing whatever the build
/// left under that name); the droplet is packed from there inside the container.
pub fn write_info(home: &Tree, info: &StagingInfo) -> io::Result<()> {
    let json = serde_json::to_vec_pretty(info).map_err(io::Error::other)?;
    home.write(Path::new(INFO), &json, 0o644)
}
