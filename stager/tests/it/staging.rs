//! Real stagings of the examples with the shipped buildpacks.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use paas_api::{AppName, BuildpackName, LogStream, MemorySize};
use paas_runtime::{AddressPool, CgroupDriver, Runtime, Stack};
use paas_stager::{Buildpack, Stager, StagingError, StagingRequest};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// `paas-init` from the same target folder as this test (`target/debug/paas-init`).
fn init_exe() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let path = exe
        .parent()
        .and_then(Path::parent)
        .unwrap()
        .join("paas-init");
    assert!(
        path.is_file(),
        "{} is missing: build it first with `cargo build --workspace`",
        path.display()
    );
    path
}

struct Fixture {
    stager: Stager,
    dir: tempfile::TempDir,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let runtime = Runtime::new(
        init_exe(),
        dir.path().join("containers"),
        CgroupDriver::detect(Path::new("/sys/fs/cgroup")).unwrap(),
        AddressPool::new("10.251.200.0/24").unwrap(),
        vec![Stack::prepare_host(&dir.path().join("stack")).unwrap()],
    )
    .unwrap();
    let stager = Stager::new(Arc::new(runtime), dir.path().join("staging"));
    Fixture { stager, dir }
}

fn shipped() -> Vec<Buildpack> {
    ["staticfile", "python", "nodejs", "binary"]
        .iter()
        .map(|n| {
            Buildpack::open(
                BuildpackName::parse(n).unwrap(),
                &repo().join("buildpacks").join(n),
            )
            .unwrap()
        })
        .collect()
}

/// A Heroku buildpack in a temporary folder with the given `bin/` scripts.
fn heroku_buildpack(name: &str, scripts: &[(&str, &str)]) -> (tempfile::TempDir, Buildpack) {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    for (script, body) in scripts {
        std::fs::write(bin.join(script), body).unwrap();
        std::fs::set_permissions(bin.join(script), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let bp = Buildpack::open(BuildpackName::parse(name).unwrap(), dir.path()).unwrap();
    (dir, bp)
}

fn package(dir: &Path, out: &Path) {
    let f = std::fs::File::create(out).unwrap();
    let mut b = tar::Builder::new(flate2::write::GzEncoder::new(
        f,
        flate2::Compression::fast(),
    ));
    b.append_dir_all(".", dir).unwrap();
    b.into_inner().unwrap().finish().unwrap();
}

async fn stage(
    f: &Fixture,
    id: &str,
    app_dir: &Path,
    buildpacks: Vec<Buildpack>,
    detect: bool,
) -> (
    Result<paas_stager::StagingResult, StagingError>,
    Vec<(LogStream, String)>,
    PathBuf,
) {
    stage_with_disk(f, id, app_dir, buildpacks, detect, None).await
}

async fn stage_with_disk(
    f: &Fixture,
    id: &str,
    app_dir: &Path,
    buildpacks: Vec<Buildpack>,
    detect: bool,
    disk: Option<MemorySize>,
) -> (
    Result<paas_stager::StagingResult, StagingError>,
    Vec<(LogStream, String)>,
    PathBuf,
) {
    let pkg = f.dir.path().join(format!("{id}.tgz"));
    package(app_dir, &pkg);
    let droplet = f.dir.path().join(format!("{id}-droplet.tgz"));
    let req = StagingRequest {
        id: id.to_string(),
        app: AppName::parse("test-app").unwrap(),
        package: pkg,
        buildpacks,
        detect,
        start_command: None,
        env: vec![("GREETING".into(), "hello".into())],
        stack: paas_runtime::stack::HOST.into(),
        memory: MemorySize::parse("256M").unwrap(),
        timeout: Duration::from_secs(120),
        droplet_out: droplet.clone(),
        cache_dir: None,
        disk,
        outbound: None,
        id_map: None,
    };
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let res = f.stager.stage(&req, &tx).await;
    drop(tx);
    let mut lines = Vec::new();
    while let Some(l) = rx.recv().await {
        lines.push(l);
    }
    (res, lines, droplet)
}

fn droplet_entries(droplet: &Path) -> Vec<String> {
    let f = std::fs::File::open(droplet).unwrap();
    let mut a = tar::Archive::new(flate2::read::GzDecoder::new(f));
    a.entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
        .collect()
}

#[tokio::test]
async fn each_example_is_detected_and_gets_a_start_command() {
    let f = fixture();
    for (example, buildpack, command) in [
        (
            "static-site",
            "staticfile",
            "sh /home/vcap/deps/staticfile/start.sh",
        ),
        ("python-app", "python", "python3 app.py"),
        ("node-app", "nodejs", "npm start"),
    ] {
        let (res, log, droplet) = stage(
            &f,
            &format!("ex{}", example.len()),
            &repo().join("examples").join(example),
            shipped(),
            true,
        )
        .await;
        let text: Vec<&str> = log.iter().map(|(_, l)| l.as_str()).collect();
        let result = res.unwrap_or_else(|e| panic!("{example}: {e}\n{}", text.join("\n")));
        assert_eq!(result.info.detected_buildpack, buildpack, "{example}");
        assert_eq!(result.info.start_command, command, "{example}");
        assert!(
            text.iter()
                .any(|l| l.starts_with(&format!("-----> Detected {buildpack}"))),
            "{text:?}"
        );
        let entries = droplet_entries(&droplet);
        assert!(
            entries.iter().any(|e| e == "staging_info.yml"),
            "{entries:?}"
        );
        assert!(entries.iter().any(|e| e.starts_with("app/")), "{entries:?}");
    }
}

#[tokio::test]
async fn an_app_no_buildpack_detects_fails_with_the_detect_code() {
    let f = fixture();
    let app = tempfile::tempdir().unwrap();
    std::fs::write(app.path().join("README"), "nothing to detect").unwrap();
    let (res, _, _) = stage(&f, "nodetect", app.path(), shipped(), true).await;
    let err = res.unwrap_err();
    assert_eq!(err.cf_exit_code(), Some(222), "{err}");
    assert!(err.to_string().contains("-b binary"), "{err}");
}

#[tokio::test]
async fn a_failing_compile_names_the_buildpack_and_keeps_cf_exit_code() {
    let f = fixture();
    let (_bp_dir, bp) = heroku_buildpack(
        "broken",
        &[
            ("detect", "#!/bin/sh\nexit 0\n"),
            (
                "compile",
                "#!/bin/sh\necho compiling with $GREETING\necho broken >&2\nexit 3\n",
            ),
        ],
    );
    let (res, log, _) = stage(
        &f,
        "broken",
        &repo().join("examples/python-app"),
        vec![bp],
        false,
    )
    .await;
    let err = res.unwrap_err();
    assert_eq!(err.cf_exit_code(), Some(223));
    assert!(
        err.to_string()
            .contains("buildpack broken failed to compile"),
        "{err}"
    );
    assert!(
        log.contains(&(LogStream::Out, "compiling with hello".to_string())),
        "{log:?}"
    );
    assert!(
        log.contains(&(LogStream::Err, "broken".to_string())),
        "{log:?}"
    );
}

#[tokio::test]
async fn binary_needs_a_start_command() {
    let f = fixture();
    let app = tempfile::tempdir().unwrap();
    std::fs::write(app.path().join("run"), "#!/bin/sh\n").unwrap();
    let binary = shipped()
        .into_iter()
        .find(|b| b.name.as_str() == "binary")
        .unwrap();
    let (res, _, _) = stage(&f, "binary", app.path(), vec![binary], false).await;
    assert!(matches!(res, Err(StagingError::NoStartCommand)), "{res:?}");
}

/// Writes a minimal pure-Python wheel of `tinydep` 1.0 into `dir` (a wheel is a zip with
/// the package and its dist-info; Python's zipfile writes it).
fn write_wheel(dir: &Path) {
    let script = r#"
import sys, zipfile
path = sys.argv[1] + "/tinydep-1.0-py3-none-any.whl"
with zipfile.ZipFile(path, "w") as z:
    z.writestr("tinydep/__init__.py", "GREETING = 'hello from a vendored wheel'\n")
    z.writestr("tinydep-1.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: tinydep\nVersion: 1.0\n")
    z.writestr("tinydep-1.0.dist-info/WHEEL", "Wheel-Version: 1.0\nGenerator: paas-test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
    z.writestr("tinydep-1.0.dist-info/RECORD", "")
"#;
    let status = std::process::Command::new("python3")
        .args(["-c", script])
        .arg(dir)
        .status()
        .unwrap();
    assert!(status.success());
}

#[tokio::test]
async fn python_requirements_install_with_pip_from_vendored_wheels() {
    let f = fixture();
    let app = tempfile::tempdir().unwrap();
    std::fs::write(app.path().join("requirements.txt"), "tinydep==1.0\n").unwrap();
    std::fs::write(app.path().join("app.py"), "import tinydep\n").unwrap();
    std::fs::create_dir(app.path().join("vendor")).unwrap();
    write_wheel(&app.path().join("vendor"));
    let (res, log, droplet) = stage(&f, "pipwheel", app.path(), shipped(), true).await;
    let text: Vec<&str> = log.iter().map(|(_, l)| l.as_str()).collect();
    let result = res.unwrap_or_else(|e| panic!("{e}\n{}", text.join("\n")));
    assert_eq!(result.info.start_command, "python3 app.py");
    assert!(
        text.iter()
            .any(|l| l.contains("Successfully installed tinydep-1.0")),
        "{text:#?}"
    );
    let entries = droplet_entries(&droplet);
    assert!(
        entries
            .iter()
            .any(|e| e == "app/.python-packages/tinydep/__init__.py"),
        "{entries:?}"
    );
    assert!(
        entries.iter().any(|e| e == "app/.profile.d/python.sh"),
        "{entries:?}"
    );
}

#[tokio::test]
async fn a_build_is_held_to_its_disk_limit() {
    let f = fixture();
    let (_bp_dir, bp) = heroku_buildpack("filler", &[
        ("detect", "#!/bin/sh\nexit 0\n"),
        ("compile", "#!/bin/sh\ndd if=/dev/zero of=$1/big bs=1M count=64 2>&1 | grep -o 'No space left on device'\nexit 1\n"),
    ]);
    let (res, log, _) = stage_with_disk(
        &f,
        "filler",
        &repo().join("examples/python-app"),
        vec![bp],
        false,
        Some(MemorySize::parse("32M").unwrap()),
    )
    .await;
    assert!(res.is_err());
    assert!(
        log.iter()
            .any(|(_, l)| l.contains("No space left on device")),
        "the build stops at its disk limit: {log:?}"
    );
    let leftover = std::fs::read_dir(f.dir.path().join("staging"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(leftover, 0, "the build's disk is unmounted and removed");
}
