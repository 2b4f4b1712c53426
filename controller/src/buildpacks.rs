//! The buildpack registry: shipped and user-added buildpacks, their order and state.
//!
//! The ordered list lives in memory behind a mutex and is written whole to the store on
//! every change (it is a handful of rows). Changes are made one at a time (`changing`),
//! so the list is written in the order its changes were made. A user-added buildpack's archive is a blob;
//! its unpacked folder is `buildpacks/custom/<sha256>`, shared by every staging and made
//! again from the blob if missing.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::Context;
use paas_api::{BuildpackInfo, BuildpackName, BuildpackUpdate};
use paas_stager::archive::{self, ArchivePolicy};
use paas_stager::Buildpack;

use crate::blobs::Blobs;
use crate::platform::{Error, ErrorKind};
use crate::store::{BuildpackRow, Store};

struct Entry {
    buildpack: Buildpack,
    enabled: bool,
    shipped: bool,
}

pub struct Registry {
    custom_dir: PathBuf,
    /// The buildpacks packed into paasd.
    shipped: Vec<Buildpack>,
    entries: Mutex<Vec<Entry>>,
    /// Held from a change of `entries` until it is saved.
    changing: tokio::sync::Mutex<()>,
}

impl Registry {
    /// Loads the registry, adding shipped buildpacks that the store does not know yet at
    /// the end, in their shipped order.
    pub async fn open(
        store: &Store,
        blobs: &Blobs,
        dir: &Path,
        shipped: Vec<Buildpack>,
    ) -> anyhow::Result<Self> {
        let custom_dir = dir.join("custom");
        std::fs::create_dir_all(&custom_dir)
            .with_context(|| format!("creating {}", custom_dir.display()))?;
        let rows = store.buildpacks().await.context("reading buildpacks")?;
        let entries = entries_of(&rows, &shipped, blobs, &custom_dir);
        let registry = Registry {
            custom_dir,
            shipped,
            entries: Mutex::new(entries),
            changing: tokio::sync::Mutex::new(()),
        };
        registry.save(store).await?;
        Ok(registry)
    }

    /// Takes the list as the store has it now (another controller of the cluster may
    /// have changed it); the blobs of its custom buildpacks must be here by now.
    pub async fn reload(&self, store: &Store, blobs: &Blobs) -> anyhow::Result<()> {
        let _changing = self.changing.lock().await;
        let rows = store.buildpacks().await.context("reading buildpacks")?;
        let entries = entries_of(&rows, &self.shipped, blobs, &self.custom_dir);
        *self.entries() = entries;
        Ok(())
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, Vec<Entry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn save(&self, store: &Store) -> anyhow::Result<()> {
        let rows: Vec<BuildpackRow> = self
            .entries()
            .iter()
            .map(|e| BuildpackRow {
                name: e.buildpack.name.clone(),
                enabled: e.enabled,
                shipped: e.shipped,
                sha256: e.buildpack.version.clone(),
            })
            .collect();
        store
            .save_buildpacks(&rows)
            .await
            .context("saving buildpacks")
    }

    pub fn list(&self) -> Vec<BuildpackInfo> {
        self.entries()
            .iter()
            .enumerate()
            .map(|(i, e)| BuildpackInfo {
                name: e.buildpack.name.clone(),
                position: i as u32 + 1,
                dialect: e.buildpack.dialect.to_string(),
                enabled: e.enabled,
                shipped: e.shipped,
                sha256: e.buildpack.version.clone(),
            })
            .collect()
    }

    /// The enabled buildpacks, in detection order.
    pub fn for_detection(&self) -> Vec<Buildpack> {
        self.entries()
            .iter()
            .filter(|e| e.enabled)
            .map(|e| e.buildpack.clone())
            .collect()
    }

    /// The buildpack as another host asks for it: a shipped one by name, a custom one by
    /// name and the SHA-256 of its bits.
    pub fn reference(&self, bp: &Buildpack) -> paas_api::state::StageBuildpack {
        let shipped = self
            .entries()
            .iter()
            .any(|e| e.shipped && e.buildpack.name == bp.name);
        paas_api::state::StageBuildpack {
            name: bp.name.clone(),
            sha256: (!shipped).then(|| bp.version.clone()),
        }
    }

    /// The named buildpacks, in the order given (`-b`).
    pub fn by_names(&self, names: &[BuildpackName]) -> Result<Vec<Buildpack>, Error> {
        let entries = self.entries();
        names
            .iter()
            .map(|n| match entries.iter().find(|e| &e.buildpack.name == n) {
                Some(e) if e.enabled => Ok(e.buildpack.clone()),
                Some(_) => Err(Error::new(
                    ErrorKind::Refused,
                    "buildpack-disabled",
                    format!("buildpack {n} is disabled"),
                    Some(&format!(
                        "enable it with `paas update-buildpack {n} --enable`"
                    )),
                )),
                None => {
                    let known: Vec<&str> =
                        entries.iter().map(|e| e.buildpack.name.as_str()).collect();
                    Err(Error::new(
                        ErrorKind::Refused,
                        "unknown-buildpack",
                        format!("there is no buildpack named {n}"),
                        Some(&format!("choose one of: {}", known.join(", "))),
                    ))
                }
            })
            .collect()
    }

    /// Adds a buildpack from the checked tar.gz blob `sha256` at `position` (default last).
    pub async fn create(
        &self,
        store: &Store,
        blobs: &Blobs,
        name: &BuildpackName,
        sha256: &str,
        position: Option<u32>,
    ) -> Result<BuildpackInfo, Error> {
        let _changing = self.changing.lock().await;
        if self.entries().iter().any(|e| &e.buildpack.name == name) {
            return Err(Error::new(
                ErrorKind::Conflict,
                "buildpack-exists",
                format!("buildpack {name} already exists"),
                Some(&format!(
                    "change it with `paas update-buildpack {name} --path PATH`"
                )),
            ));
        }
        let bp = open_custom(blobs, &self.custom_dir, name, sha256).map_err(not_a_buildpack)?;
        {
            let mut entries = self.entries();
            let at = position_index(position, entries.len());
            entries.insert(
                at,
                Entry {
                    buildpack: bp,
                    enabled: true,
                    shipped: false,
                },
            );
        }
        self.save(store)
            .await
            .map_err(|e| Error::internal(format!("{e:#}")))?;
        self.info(name)
    }

    /// Changes a buildpack's bits, position or state.
    pub async fn update(
        &self,
        store: &Store,
        blobs: &Blobs,
        name: &BuildpackName,
        bits: Option<&str>,
        update: &BuildpackUpdate,
    ) -> Result<BuildpackInfo, Error> {
        let _changing = self.changing.lock().await;
        let fresh = match bits {
            Some(sha) => {
                Some(open_custom(blobs, &self.custom_dir, name, sha).map_err(not_a_buildpack)?)
            }
            None => None,
        };
        {
            let mut entries = self.entries();
            let i = entries
                .iter()
                .position(|e| &e.buildpack.name == name)
                .ok_or_else(|| not_found(name))?;
            let mut entry = entries.remove(i);
            if let Some(bp) = fresh {
                entry.buildpack = bp;
                entry.shipped = false;
            }
            if let Some(enabled) = update.enabled {
                entry.enabled = enabled;
            }
            let at = match update.position {
                Some(p) => position_index(Some(p), entries.len()),
                None => i,
            };
            entries.insert(at, entry);
        }
        self.save(store)
            .await
            .map_err(|e| Error::internal(format!("{e:#}")))?;
        self.info(name)
    }

    pub async fn delete(&self, store: &Store, name: &BuildpackName) -> Result<(), Error> {
        let _changing = self.changing.lock().await;
        {
            let mut entries = self.entries();
            let i = entries
                .iter()
                .position(|e| &e.buildpack.name == name)
                .ok_or_else(|| not_found(name))?;
            if entries[i].shipped {
                return Err(Error::new(
                    ErrorKind::Refused,
                    "buildpack-shipped",
                    format!("buildpack {name} ships with the platform and cannot be deleted"),
                    Some(&format!(
                        "disable it with `paas update-buildpack {name} --disable`"
                    )),
                ));
            }
            entries.remove(i);
        }
        self.save(store)
            .await
            .map_err(|e| Error::internal(format!("{e:#}")))
    }

    fn info(&self, name: &BuildpackName) -> Result<BuildpackInfo, Error> {
        self.list()
            .into_iter()
            .find(|b| &b.name == name)
            .ok_or_else(|| not_found(name))
    }
}

/// A 1-based position as an index into a list of `len`, as Cloud Foundry places them:
/// at that position, shifting the rest down; past the end (or none) means last.
fn position_index(position: Option<u32>, len: usize) -> usize {
    match position {
        Some(p) if p >= 1 => (p as usize - 1).min(len),
        _ => len,
    }
}

fn not_found(name: &BuildpackName) -> Error {
    Error::new(
        ErrorKind::NotFound,
        "buildpack-not-found",
        format!("there is no buildpack named {name}"),
        Some("see `paas buildpacks` for the buildpacks there are"),
    )
}

fn not_a_buildpack(e: anyhow::Error) -> Error {
    Error::new(
        ErrorKind::Refused,
        "invalid-buildpack",
        format!("{e:#}"),
        Some("a buildpack has buildpack.toml (Cloud Native), bin/supply or bin/finalize (Cloud Foundry), or bin/detect and bin/compile (Heroku) at its top, or in a single top folder"),
    )
}

/// The registry's entries for the stored `rows`, with the shipped buildpacks the rows do
/// not name yet at the end, in their shipped order.
fn entries_of(
    rows: &[BuildpackRow],
    shipped: &[Buildpack],
    blobs: &Blobs,
    custom_dir: &Path,
) -> Vec<Entry> {
    let mut entries = Vec::new();
    for row in rows {
        let bp = if row.shipped {
            match shipped.iter().find(|b| b.name == row.name) {
                Some(b) => b.clone(),
                None => continue, // no longer shipped
            }
        } else {
            match open_custom(blobs, custom_dir, &row.name, &row.sha256) {
                Ok(b) => b,
                Err(e) => {
                    tracing::error!(buildpack = %row.name, "skipping a buildpack that cannot be opened: {e:#}");
                    continue;
                }
            }
        };
        entries.push(Entry {
            buildpack: bp,
            enabled: row.enabled,
            shipped: row.shipped,
        });
    }
    for b in shipped {
        if !entries.iter().any(|e| e.buildpack.name == b.name) {
            entries.push(Entry {
                buildpack: b.clone(),
                enabled: true,
                shipped: true,
            });
        }
    }
    entries
}

/// Opens (unpacking it first if needed) the custom buildpack in blob `sha256`.
pub(crate) fn open_custom(
    blobs: &Blobs,
    custom_dir: &Path,
    name: &BuildpackName,
    sha256: &str,
) -> anyhow::Result<Buildpack> {
    let dir = custom_dir.join(sha256);
    if !dir.is_dir() {
        std::fs::create_dir_all(custom_dir)?;
        // A folder of its own, so two unpacks of one buildpack at once never share one.
        let tmp = tempfile::Builder::new()
            .prefix(".unpacking-")
            .tempdir_in(custom_dir)?;
        let f = std::fs::File::open(blobs.path(sha256))
            .with_context(|| format!("opening buildpack blob {sha256}"))?;
        archive::unpack(
            std::io::BufReader::new(f),
            tmp.path(),
            ArchivePolicy::upload(),
            None,
        )
        .context("unpacking the buildpack")?;
        let tmp = tmp.keep();
        if let Err(e) = std::fs::rename(&tmp, &dir) {
            let _ = std::fs::remove_dir_all(&tmp);
            if !dir.is_dir() {
                return Err(e.into());
            }
        }
    }
    let root = single_top_folder(&dir).unwrap_or(dir);
    let mut bp = Buildpack::open(name.clone(), &root)?;
    bp.version = sha256.to_string();
    Ok(bp)
}

/// Archives made from a folder often hold that folder: `my-buildpack/bin/detect`.
fn single_top_folder(dir: &Path) -> Option<PathBuf> {
    if dir.join("bin").is_dir() || dir.join("buildpack.toml").is_file() {
        return None;
    }
    let mut entries = std::fs::read_dir(dir).ok()?.flatten();
    let only = entries.next()?;
    if entries.next().is_some() || !only.path().is_dir() {
        return None;
    }
    Some(only.path())
}

#[cfg(test)]
mod tests {
    use super::position_index;

    #[test]
    fn positions_are_one_based_and_clamped_to_the_end() {
        assert_eq!(position_index(Some(1), 4), 0);
        assert_eq!(position_index(Some(3), 4), 2);
        assert_eq!(position_index(Some(9), 4), 4);
        assert_eq!(position_index(Some(0), 4), 4);
        assert_eq!(position_index(None, 4), 4);
    }
}
