//! Uploads: app packages (with the resource cache that spares re-sending files the
//! platform holds) and buildpacks.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use http::{Response, Uri};
use http_body_util::BodyExt;
use paas_api::{BuildpackName, BuildpackUpdate, PackageStored, ResourceRef};
use paas_stager::archive::{self, ArchivePolicy};

use super::body::{self, ApiBody};
use super::extract::{read_json, read_json_up_to, AppPath, NamePath};
use super::failure::Failure;
use super::{page, query};
use crate::blobs::is_sha256;
use crate::platform::Platform;

/// The largest package upload (compressed).
pub const MAX_PACKAGE_BYTES: u64 = 512 << 20;

/// Stores a package after checking every entry: an unsafe archive is refused whole and
/// nothing of it is kept.
/// The largest resource-match request: 100,000 files.
const MAX_MATCH_BYTES: usize = 16 << 20;

/// Answers which of the listed files the platform holds, so the CLI need not send them.
pub async fn match_resources(
    State(p): State<Arc<Platform>>,
    body: Body,
) -> Result<Response<ApiBody>, Failure> {
    let asked: Vec<ResourceRef> = read_json_up_to(body, MAX_MATCH_BYTES).await?;
    let held: Vec<&ResourceRef> = asked
        .iter()
        .filter(|r| {
            is_sha256(&r.sha256)
                && std::fs::metadata(p.resources.path(&r.sha256)).is_ok_and(|m| m.len() == r.size)
        })
        .collect();
    Ok(body::json(200, &held))
}

/// Stores an app package. With `?resources=true`, the upload lists files it left out
/// because the platform holds them (see `match_resources`); they are filled in here, and
/// the whole package is checked again.
pub async fn package(
    State(p): State<Arc<Platform>>,
    AppPath(app): AppPath,
    uri: Uri,
    body: Body,
) -> Result<Response<ApiBody>, Failure> {
    let platform = Arc::clone(&p);
    let (p, query) = (&*p, uri.query().unwrap_or(""));
    p.app_record(&app).await?;
    let (uploaded, bytes) = receive_archive(p, body, "package").await?;
    // Remember the content of every file that was sent, for the next push.
    let (src, resources) = (p.blobs.path(&uploaded), p.resources.clone());
    tokio::task::spawn_blocking(move || -> Result<(), String> {
        let f = std::fs::File::open(&src).map_err(|e| e.to_string())?;
        archive::for_each_file(std::io::BufReader::new(f), |_, content| {
            let mut w = resources
                .writer(u64::MAX)
                .map_err(|e| paas_stager::ArchiveError::Corrupt(std::io::Error::other(e)))?;
            let mut buf = [0u8; 64 * 1024];
            loop {
                let n = content
                    .read(&mut buf)
                    .map_err(paas_stager::ArchiveError::Corrupt)?;
                if n == 0 {
                    break;
                }
                w.write(&buf[..n])
                    .map_err(|e| paas_stager::ArchiveError::Corrupt(std::io::Error::other(e)))?;
            }
            resources
                .commit(w)
                .map_err(|e| paas_stager::ArchiveError::Corrupt(std::io::Error::other(e)))?;
            Ok(())
        })
        .map_err(|e| e.to_string())
    })
    .await
    .map_err(Failure::internal)?
    .map_err(Failure::internal)?;
    let with_resources = query::flag(query, "resources");
    if !with_resources {
        p.store
            .note_package(&app, &uploaded)
            .await
            .map_err(Failure::internal)?;
        platform.keep_twice_later(&uploaded);
        return Ok(body::json(
            201,
            &PackageStored {
                sha256: uploaded,
                bytes,
            },
        ));
    }
    let whole = tempfile::NamedTempFile::new_in(p.blobs.tmp_dir()).map_err(Failure::internal)?;
    let (src, dst, resources) = (
        p.blobs.path(&uploaded),
        whole.path().to_path_buf(),
        p.resources.clone(),
    );
    let refused = |e: paas_stager::ArchiveError| {
        // Writing the checked copy can meet a full disk: that is not the archive's fault.
        if crate::platform::is_disk_full(&e.to_string()) {
            return Failure::from(crate::platform::Error::disk_full(&e.to_string()));
        }
        Failure::new(
            422,
            "unsafe-package",
            format!("the upload was refused: {e}"),
            Some("upload only files inside the app folder; symlinks must point inside it too"),
        )
    };
    tokio::task::spawn_blocking(move || {
        let input = std::fs::File::open(&src).map_err(paas_stager::ArchiveError::Corrupt)?;
        let out = std::fs::File::create(&dst).map_err(paas_stager::ArchiveError::Corrupt)?;
        archive::fill_in_resources(
            std::io::BufReader::new(input),
            std::io::BufWriter::new(out),
            |sha| {
                is_sha256(sha)
                    .then(|| resources.path(sha))
                    .filter(|p| p.is_file())
            },
            ArchivePolicy::upload(),
        )?;
        let f = std::fs::File::open(&dst).map_err(paas_stager::ArchiveError::Corrupt)?;
        archive::scan(std::io::BufReader::new(f), ArchivePolicy::upload()).map(|_| ())
    })
    .await
    .map_err(Failure::internal)?
    .map_err(refused)?;
    let sha256 = p.blobs.put_file(whole.path()).map_err(Failure::internal)?;
    if sha256 != uploaded {
        let _ = std::fs::remove_file(p.blobs.path(&uploaded));
    }
    p.store
        .note_package(&app, &sha256)
        .await
        .map_err(Failure::internal)?;
    platform.keep_twice_later(&sha256);
    Ok(body::json(201, &PackageStored { sha256, bytes }))
}

/// Receives an uploaded archive (tar.gz, or zip which is rewritten as tar.gz), checks
/// every entry, and stores it as a blob. An unsafe archive is refused whole and nothing
/// of it is kept. Returns the blob's SHA-256 and the upload's size.
async fn receive_archive(p: &Platform, body: Body, what: &str) -> Result<(String, u64), Failure> {
    let mut writer = p
        .blobs
        .writer(MAX_PACKAGE_BYTES)
        .map_err(Failure::internal)?;
    let mut incoming = body;
    while let Some(frame) = incoming.frame().await {
        let frame = frame.map_err(|e| {
            Failure::new(
                400,
                "upload-failed",
                format!("reading the upload: {e}"),
                Some("try again"),
            )
        })?;
        if let Some(data) = frame.data_ref() {
            writer.write(data).map_err(|e| match e {
                crate::blobs::BlobError::TooLarge(mb) => Failure::new(
                    413,
                    "upload-too-large",
                    format!("the {what} is larger than {mb} MiB"),
                    Some("leave build output and dependencies out with a .paasignore file"),
                ),
                other => Failure::internal(other),
            })?;
        }
    }
    let uploaded = writer.bytes();
    let mut head = [0u8; 4];
    let n = std::fs::File::open(writer.path())
        .and_then(|mut f| std::io::Read::read(&mut f, &mut head))
        .map_err(Failure::internal)?;
    let refused = |e: paas_stager::ArchiveError| {
        Failure::new(
            422,
            &format!("unsafe-{what}"),
            format!("the upload was refused: {e}"),
            Some("upload only files inside the folder; symlinks must point inside it too"),
        )
    };
    // A zip is rewritten as a tar.gz next to the upload; the tar.gz is what is checked
    // and stored.
    let converted = match archive::Format::sniff(&head[..n]) {
        Some(archive::Format::TarGz) => None,
        Some(archive::Format::Zip) => {
            let tgz =
                tempfile::NamedTempFile::new_in(p.blobs.tmp_dir()).map_err(Failure::internal)?;
            let (src, dst) = (writer.path().to_path_buf(), tgz.path().to_path_buf());
            tokio::task::spawn_blocking(move || {
                let input =
                    std::fs::File::open(&src).map_err(paas_stager::ArchiveError::Corrupt)?;
                let out =
                    std::fs::File::create(&dst).map_err(paas_stager::ArchiveError::Corrupt)?;
                archive::zip_to_tar_gz(
                    std::io::BufReader::new(input),
                    std::io::BufWriter::new(out),
                    ArchivePolicy::upload(),
                )
            })
            .await
            .map_err(Failure::internal)?
            .map_err(refused)?;
            Some(tgz)
        }
        None => {
            return Err(Failure::new(
                422,
                &format!("unsafe-{what}"),
                format!("the {what} is neither a tar.gz nor a zip archive"),
                Some("upload a .tgz, .tar.gz or .zip file, or a folder with the CLI"),
            ))
        }
    };
    let path = converted
        .as_ref()
        .map_or(writer.path(), |t| t.path())
        .to_path_buf();
    let checked = path.clone();
    let scanned = tokio::task::spawn_blocking(move || {
        let f = std::fs::File::open(&checked)?;
        Ok::<_, std::io::Error>(archive::scan(
            std::io::BufReader::new(f),
            ArchivePolicy::upload(),
        ))
    })
    .await
    .map_err(Failure::internal)?
    .map_err(Failure::internal)?;
    scanned.map_err(refused)?;
    let sha256 = match converted {
        None => p.blobs.commit(writer),
        Some(_) => p.blobs.put_file(&path),
    }
    .map_err(Failure::internal)?;
    Ok((sha256, uploaded))
}

fn buildpack_name(raw: &str) -> Result<BuildpackName, Failure> {
    BuildpackName::parse(raw).map_err(|e| Failure::new(400, "invalid-name", e.to_string(), None))
}

/// `?position=N` of a query string.
fn position(query: &str) -> Result<Option<u32>, Failure> {
    match query::param(query, "position") {
        None => Ok(None),
        Some(v) => v.parse().map(Some).map_err(|_| {
            Failure::new(
                400,
                "invalid-position",
                format!("position {v:?} is not a whole number"),
                None,
            )
        }),
    }
}

pub async fn buildpacks(
    State(p): State<Arc<Platform>>,
    uri: Uri,
) -> Result<Response<ApiBody>, Failure> {
    p.refresh_buildpacks().await;
    page::list(&p.buildpacks.list(), uri.path(), uri.query().unwrap_or(""))
}

/// The stacks apps may be built and run on.
pub async fn stacks(
    State(p): State<Arc<Platform>>,
    uri: Uri,
) -> Result<Response<ApiBody>, Failure> {
    page::list(p.stacks(), uri.path(), uri.query().unwrap_or(""))
}

/// Adds a buildpack from the uploaded archive; `?position=N` places it (default last).
pub async fn create_buildpack(
    State(p): State<Arc<Platform>>,
    NamePath(name): NamePath,
    uri: Uri,
    body: Body,
) -> Result<Response<ApiBody>, Failure> {
    let name = buildpack_name(&name)?;
    let position = position(uri.query().unwrap_or(""))?;
    let (sha, _) = receive_archive(&p, body, "buildpack").await?;
    p.keep_twice_later(&sha);
    p.refresh_buildpacks().await;
    let info = p
        .buildpacks
        .create(&p.store, &p.blobs, &name, &sha, position)
        .await?;
    Ok(body::json(201, &info))
}

/// Replaces a buildpack's bits with the uploaded archive.
pub async fn buildpack_bits(
    State(p): State<Arc<Platform>>,
    NamePath(name): NamePath,
    body: Body,
) -> Result<Response<ApiBody>, Failure> {
    let name = buildpack_name(&name)?;
    let (sha, _) = receive_archive(&p, body, "buildpack").await?;
    p.keep_twice_later(&sha);
    p.refresh_buildpacks().await;
    let info = p
        .buildpacks
        .update(
            &p.store,
            &p.blobs,
            &name,
            Some(&sha),
            &BuildpackUpdate::default(),
        )
        .await?;
    Ok(body::json(200, &info))
}

/// Changes a buildpack's position or state.
pub async fn update_buildpack(
    State(p): State<Arc<Platform>>,
    NamePath(name): NamePath,
    body: Body,
) -> Result<Response<ApiBody>, Failure> {
    let name = buildpack_name(&name)?;
    let update: BuildpackUpdate = read_json(body).await?;
    let info = p
        .buildpacks
        .update(&p.store, &p.blobs, &name, None, &update)
        .await?;
    Ok(body::json(200, &info))
}

pub async fn delete_buildpack(
    State(p): State<Arc<Platform>>,
    NamePath(name): NamePath,
) -> Result<Response<ApiBody>, Failure> {
    let name = buildpack_name(&name)?;
    p.refresh_buildpacks().await;
    p.buildpacks.delete(&p.store, &name).await?;
    Ok(body::empty(204))
}
