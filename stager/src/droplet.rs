//! The droplet: a tar.gz rooted at `/home/vcap` with `app/`, `deps/`, `profile.d/` and
//! `staging_info.yml` (JSON, which is also YAML, as Cloud Foundry writes it).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;

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

/// The folders of `home` that make up a droplet.
const PARTS: [&str; 5] = ["app", "deps", "layers", "profile.d", "tmp"];

/// A script in the droplet's root that the launcher sources first: the environment that
/// Cloud Foundry `deps/` folders and Cloud Native launch layers ask for.
pub const LAUNCH_ENV: &str = ".paas-env.sh";

/// Packs `home` (holding the parts above) and `info` into a tar.gz at `out`.
pub fn pack(home: &Path, info: &StagingInfo, out: &Path) -> io::Result<()> {
    let file = BufWriter::new(File::create(out)?);
    let gz = flate2::write::GzEncoder::new(file, flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    tar.follow_symlinks(false);
    for part in PARTS {
        let dir = home.join(part);
        if dir.is_dir() {
            tar.append_dir_all(part, &dir)?;
        } else {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Directory);
            h.set_mode(0o755);
            h.set_size(0);
            tar.append_data(&mut h, part, io::empty())?;
        }
    }
    if home.join(LAUNCH_ENV).is_file() {
        tar.append_path_with_name(home.join(LAUNCH_ENV), LAUNCH_ENV)?;
    }
    let json = serde_json::to_vec_pretty(info).map_err(io::Error::other)?;
    let mut h = tar::Header::new_gnu();
    h.set_mode(0o644);
    h.set_size(json.len() as u64);
    tar.append_data(&mut h, "staging_info.yml", json.as_slice())?;
    let mut file = tar.into_inner()?.finish()?;
    file.flush()?;
    file.get_ref().sync_all()
}

/// Reads `staging_info.yml` from an unpacked droplet.
pub fn read_info(home: &Path) -> io::Result<StagingInfo> {
    let raw = std::fs::read(home.join("staging_info.yml"))?;
    serde_json::from_slice(&raw).map_err(io::Error::other)
}
