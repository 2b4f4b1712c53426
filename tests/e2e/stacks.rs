//! Stacks: a Debian root filesystem built by `paasd stack build` (mmdebstrap, from this
//! host's apt sources), that apps are staged and run on instead of the host's `/usr`.

use crate::harness::{data_dir_with_stack, repo, Daemon};

#[test]
fn an_app_on_a_built_stack_sees_the_stack_s_usr_not_the_host_s() {
    // Built before paasd starts, as an operator would (`paasd stack build`).
    let d = Daemon::start_in(data_dir_with_stack(), &[]);

    let listed: Vec<serde_json::Value> =
        serde_json::from_str(&d.paas_ok(&["stacks", "--json"])).unwrap();
    let names: Vec<&str> = listed.iter().filter_map(|s| s["name"].as_str()).collect();
    assert_eq!(names, ["host", "bookworm"]);
    assert_eq!(listed[1]["default"], true, "a built stack is the default");

    // The host has mmdebstrap (it built the stack); the stack has no such package.
    let host_only = "/usr/bin/mmdebstrap";
    assert!(std::path::Path::new(host_only).exists());
    let path = repo().join("examples/python-app");
    let path = path.to_str().unwrap();
    let staged = d.paas_ok(&["push", "on-stack", "-p", path]);
    assert!(staged.contains("Python: Python 3"), "{staged}");
    d.paas_ok(&["push", "on-host", "-p", path, "-s", "host"]);
    let probe = format!("echo $CF_STACK; test -e {host_only} && echo host-usr || echo stack-usr");
    assert_eq!(
        d.paas_ok(&["exec", "on-stack", "--", "sh", "-c", &probe])
            .trim(),
        "bookworm\nstack-usr"
    );
    assert_eq!(
        d.paas_ok(&["exec", "on-host", "--", "sh", "-c", &probe])
            .trim(),
        "host\nhost-usr"
    );
    assert_eq!(
        d.get("on-stack.localhost", "/").status,
        200,
        "it answers through the router"
    );

    // A static site is served by the stack's nginx, with the Staticfile's options.
    let site = tempfile::tempdir().unwrap();
    std::fs::write(site.path().join("Staticfile"), "pushstate: enabled\n").unwrap();
    let page = format!(
        "<!doctype html><title>spa</title>{}",
        "<p>hello</p>".repeat(50)
    );
    std::fs::write(site.path().join("index.html"), &page).unwrap();
    std::fs::write(site.path().join(".env"), "SECRET=1").unwrap();
    let staged = d.paas_ok(&["push", "spa", "-p", site.path().to_str().unwrap()]);
    assert!(staged.contains("Installing nginx"), "{staged}");
    let deep = d.get("spa.localhost", "/orders/42");
    assert_eq!(
        (deep.status, deep.body.as_str()),
        (200, page.as_str()),
        "pushstate"
    );
    assert_eq!(deep.header("server"), Some("nginx"));
    let zipped = crate::harness::get_with(
        d.router,
        "spa.localhost",
        "/",
        &[("Accept-Encoding", "gzip")],
    );
    assert_eq!(zipped.header("content-encoding"), Some("gzip"));
    for hidden in ["/.env", "/Staticfile"] {
        assert_eq!(d.get("spa.localhost", hidden).status, 404, "{hidden}");
    }
    assert!(
        crate::harness::eventually(10, || d
            .paas_ok(&["logs", "spa", "--recent"])
            .contains("\"GET /orders/42 HTTP/1.1\" 200")),
        "nginx's access line is in the app's log"
    );

    // A Go module builds with the stack's Go, and its build cache is kept.
    let go_app = repo().join("examples/go-app");
    let go_app = go_app.to_str().unwrap();
    let first = d.paas_ok(&["push", "gopher", "-p", go_app]);
    assert!(first.contains("Build cache: miss"), "{first}");
    let r = d.get("gopher.localhost", "/x");
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("\"language\":\"go\""), "{}", r.body);
    let again = d.paas_ok(&["push", "gopher", "-p", go_app]);
    assert!(again.contains("Build cache: hit"), "{again}");

    // PHP runs in PHP-FPM behind nginx, with the stack's extensions and the app's env.
    let php = repo().join("examples/php-app");
    let staged = d.paas_ok(&["push", "elephant", "-p", php.to_str().unwrap()]);
    assert!(staged.contains("-----> PHP: PHP 8"), "{staged}");
    let r = d.get("elephant.localhost", "/some/page");
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.body.contains("\"app\":\"elephant\"") && r.body.contains("\"language\":\"php\""),
        "{}",
        r.body
    );
    assert_eq!(r.header("server"), Some("nginx"));

    // The stack is the app's, recorded in its settings; an unknown one is refused.
    let app: serde_json::Value =
        serde_json::from_str(&d.paas_ok(&["app", "on-stack", "--json"])).unwrap();
    assert_eq!(app["settings"]["stack"], "bookworm", "{app}");
    let out = d.paas(&["push", "on-stack", "-p", path, "-s", "cflinuxfs9"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("paas stacks"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn ruby_and_java_apps_run_on_the_stack_s_languages() {
    let d = Daemon::start_in(data_dir_with_stack(), &[]);

    // A Rack app: Rack and Puma from the stack, its own gem from vendor/cache, offline;
    // the installed gems are kept in the build cache.
    let ruby = repo().join("examples/ruby-app");
    let ruby = ruby.to_str().unwrap();
    let first = d.paas_ok(&["push", "ruby", "-p", ruby]);
    assert!(first.contains("-----> Ruby: 3."), "{first}");
    assert!(first.contains("Installed gems cache: miss"), "{first}");
    assert!(first.contains("Installing paas_greeting 1.0.0"), "{first}");
    let r = d.get("ruby.localhost", "/rack");
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.body.contains("\"app\":\"ruby\"") && r.body.contains("\"language\":\"ruby\""),
        "{}",
        r.body
    );
    let again = d.paas_ok(&["push", "ruby", "-p", ruby]);
    assert!(again.contains("Installed gems cache: hit"), "{again}");
    assert!(again.contains("Using paas_greeting 1.0.0"), "{again}");

    // An executable JAR pushed as cf users do (`-p app.jar`): unpacked by the CLI, run
    // with its Main-Class on the stack's JRE, its heap sized from the memory limit.
    let jar = repo().join("examples/java-app/hello.jar");
    let staged = d.paas_ok(&["push", "duke", "-p", jar.to_str().unwrap(), "-m", "256M"]);
    assert!(
        staged.contains("-----> Java: openjdk version \"17"),
        "{staged}"
    );
    assert!(staged.contains("Main-Class: Hello"), "{staged}");
    let r = d.get("duke.localhost", "/jar");
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.body.contains("\"app\":\"duke\"") && r.body.contains("\"language\":\"java\""),
        "{}",
        r.body
    );
    let heap: u64 = r
        .body
        .split("\"max_heap_mib\":")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no max_heap_mib in {}", r.body));
    assert!(
        (100..=200).contains(&heap),
        "the heap is 75% of the 256M limit, not the host's memory: {heap} MiB"
    );
}

#[test]
fn a_maven_project_builds_offline_on_the_stack_and_its_repository_is_kept_in_the_build_cache() {
    let d = Daemon::start_in(data_dir_with_stack(), &[]);

    // The example as a Maven project: its plugins come from the stack's Debian
    // repository, with no network; what Maven resolved is kept in the build cache.
    let app = repo().join("examples/java-app");
    let app = app.to_str().unwrap();
    let first = d.paas_ok(&["push", "maven", "-p", app, "-m", "256M"]);
    assert!(
        first.contains("-----> Building with Apache Maven 3."),
        "{first}"
    );
    assert!(first.contains("Maven repository cache: miss"), "{first}");
    assert!(first.contains("BUILD SUCCESS"), "{first}");
    assert!(first.contains("Running target/hello-1.0.jar"), "{first}");
    let r = d.get("maven.localhost", "/built");
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.body.contains("\"app\":\"maven\"") && r.body.contains("\"language\":\"java\""),
        "{}",
        r.body
    );
    let again = d.paas_ok(&["push", "maven", "-p", app, "-m", "256M"]);
    assert!(again.contains("Maven repository cache: hit"), "{again}");
    assert!(again.contains("BUILD SUCCESS"), "{again}");

    // A dependency Debian does not package needs Maven Central, which staging reaches
    // only for apps allowed outbound access: the failure says so.
    let project = tempfile::tempdir().unwrap();
    copy_files(&repo().join("examples/java-app"), project.path());
    let pom = std::fs::read_to_string(project.path().join("pom.xml")).unwrap();
    let pom = pom.replacen(
        "<build>",
        "<dependencies><dependency><groupId>io.example.paas</groupId>\
         <artifactId>not-in-debian</artifactId><version>1.0</version></dependency>\
         </dependencies><build>",
        1,
    );
    std::fs::write(project.path().join("pom.xml"), pom).unwrap();
    let out = d.paas(&["push", "fetching", "-p", project.path().to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        !out.status.success(),
        "the build cannot succeed offline: {text}"
    );
    assert!(text.contains("io.example.paas:not-in-debian"), "{text}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("paas allow-outbound fetching"), "{err}");
}

#[test]
fn python_and_node_dependencies_install_from_lockfiles_and_are_kept_in_the_build_cache() {
    let d = Daemon::start_in(data_dir_with_stack(), &[]);

    // Python: a Pipfile.lock that pins a wheel vendored in vendor/ (staging is offline).
    let py = tempfile::tempdir().unwrap();
    copy_files(&repo().join("examples/python-app"), py.path());
    std::fs::remove_file(py.path().join("requirements.txt")).unwrap();
    std::fs::write(
        py.path().join("Pipfile.lock"),
        r#"{"_meta": {}, "default": {"greeting": {"version": "==1.0"}}, "develop": {"pytest": {"version": "==8.0.0"}}}"#,
    )
    .unwrap();
    std::fs::create_dir(py.path().join("vendor")).unwrap();
    write_wheel(&py.path().join("vendor/greeting-1.0-py3-none-any.whl"));
    push_twice(
        &d,
        ("pinned-py", py.path()),
        "python3 -c 'import greeting; print(greeting.WORD)'",
        &[
            "Installing what Pipfile.lock pins",
            "Installed packages cache: miss",
        ],
        // A build that used its cache and changed nothing in it does not pack it again.
        &[
            "Installed packages cache: hit",
            "Build cache for python: unchanged",
        ],
    );

    // Node.js: `npm ci` from a package-lock.json (made here by npm) whose one
    // dependency is a tarball in the app, so that staging needs no registry.
    let node = tempfile::tempdir().unwrap();
    copy_files(&repo().join("examples/node-app"), node.path());
    write_npm_tarball(&node.path().join("greeting-1.0.0.tgz"));
    let mut package: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(node.path().join("package.json")).unwrap())
            .unwrap();
    package["dependencies"] = serde_json::json!({ "greeting": "file:greeting-1.0.0.tgz" });
    std::fs::write(node.path().join("package.json"), package.to_string()).unwrap();
    let locked = std::process::Command::new("npm")
        .args([
            "install",
            "--package-lock-only",
            "--offline",
            "--no-audit",
            "--no-fund",
        ])
        .current_dir(node.path())
        .output()
        .expect("running the host's npm");
    assert!(
        locked.status.success() && node.path().join("package-lock.json").exists(),
        "npm made no package-lock.json: {}",
        String::from_utf8_lossy(&locked.stderr)
    );
    push_twice(
        &d,
        ("locked-node", node.path()),
        "node -e 'console.log(require(\"greeting\").word)'",
        &[
            "Installing dependencies with npm (package-lock.json)",
            "Installed modules cache: miss",
        ],
        &["Installed modules cache: hit"],
    );

    // Yarn 1.x (the stack's `yarnpkg`): `--frozen-lockfile` from a yarn.lock that names
    // the same tarball with its SHA-1, as Yarn writes it.
    let yarn = tempfile::tempdir().unwrap();
    copy_files(&repo().join("examples/node-app"), yarn.path());
    let tarball = yarn.path().join("greeting-1.0.0.tgz");
    write_npm_tarball(&tarball);
    std::fs::write(yarn.path().join("package.json"), package.to_string()).unwrap();
    let sha1 = std::process::Command::new("sha1sum")
        .arg(&tarball)
        .output()
        .expect("running sha1sum");
    let sha1 = String::from_utf8_lossy(&sha1.stdout);
    let sha1 = sha1.split_whitespace().next().expect("a SHA-1");
    std::fs::write(
        yarn.path().join("yarn.lock"),
        format!(
            "# yarn lockfile v1\n\n\n\"greeting@file:greeting-1.0.0.tgz\":\n  \
             version \"1.0.0\"\n  resolved \"file:greeting-1.0.0.tgz#{sha1}\"\n"
        ),
    )
    .unwrap();
    push_twice(
        &d,
        ("locked-yarn", yarn.path()),
        "node -e 'console.log(require(\"greeting\").word)'",
        &[
            "Installing dependencies with yarn (yarn.lock)",
            "Installed modules cache: miss",
        ],
        &["Installed modules cache: hit"],
    );
}

#[test]
fn a_dependency_in_c_is_compiled_at_staging_with_the_stack_s_compilers() {
    let d = Daemon::start_in(data_dir_with_stack(), &[]);

    // A Python app whose one requirement is a source distribution with a C extension,
    // vendored (staging is offline): pip builds it with the stack's gcc and Python.h.
    let app = tempfile::tempdir().unwrap();
    copy_files(&repo().join("examples/python-app"), app.path());
    std::fs::write(app.path().join("requirements.txt"), "nativeword==1.0\n").unwrap();
    std::fs::create_dir(app.path().join("vendor")).unwrap();
    write_tar_gz(
        &app.path().join("vendor/nativeword-1.0.tar.gz"),
        &[
            (
                "nativeword-1.0/PKG-INFO",
                "Metadata-Version: 2.1\nName: nativeword\nVersion: 1.0\n",
            ),
            (
                "nativeword-1.0/setup.py",
                "from setuptools import setup, Extension\n\
                 setup(name=\"nativeword\", version=\"1.0\",\n\
                 \x20     ext_modules=[Extension(\"nativeword\", [\"nativeword.c\"])])\n",
            ),
            ("nativeword-1.0/nativeword.c", NATIVE_WORD_C),
        ],
    );
    let out = d.paas_ok(&["push", "native", "-p", app.path().to_str().unwrap()]);
    assert!(out.contains("Building wheel for nativeword"), "{out}");
    let probe = "python3 -c 'import nativeword; print(nativeword.__file__.endswith(\".so\"), nativeword.word())'";
    assert_eq!(
        d.paas_ok(&["exec", "native", "--", "sh", "-c", probe])
            .trim(),
        "True compiled"
    );
    assert_eq!(d.get("native.localhost", "/").status, 200);

    // The rest of what builds need is there too.
    let tools = "make --version | head -1; git --version; pkg-config --modversion libpq";
    let said = d.paas_ok(&["exec", "native", "--", "sh", "-c", tools]);
    assert!(
        said.contains("GNU Make") && said.contains("git version") && said.contains("15."),
        "{said}"
    );
}

/// A Python module in C: `nativeword.word()` returns "compiled".
const NATIVE_WORD_C: &str = r#"#define PY_SSIZE_T_CLEAN
#include <Python.h>

static PyObject *word(PyObject *self, PyObject *unused) {
    return PyUnicode_FromString("compiled");
}
static PyMethodDef methods[] = {{"word", word, METH_NOARGS, "The word."}, {NULL, NULL, 0, NULL}};
static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "nativeword", NULL, -1, methods};
PyMODINIT_FUNC PyInit_nativeword(void) { return PyModule_Create(&module); }
"#;

/// Pushes `app` from its folder twice: the first push says each of `first`, its
/// dependency loads (`probe` prints "cached"), the second push says each of `again`,
/// and the app answers through the router.
fn push_twice(
    d: &Daemon,
    (app, dir): (&str, &std::path::Path),
    probe: &str,
    first: &[&str],
    again: &[&str],
) {
    let path = dir.to_str().unwrap();
    let out = d.paas_ok(&["push", app, "-p", path]);
    for said in first {
        assert!(out.contains(said), "{out}");
    }
    assert_eq!(
        d.paas_ok(&["exec", app, "--", "sh", "-c", probe]).trim(),
        "cached"
    );
    let out = d.paas_ok(&["push", app, "-p", path]);
    for said in again {
        assert!(out.contains(said), "{out}");
    }
    assert_eq!(d.get(&format!("{app}.localhost"), "/").status, 200);
}

/// Copies the files at the top of `from` (not its folders) into `to`.
fn copy_files(from: &std::path::Path, to: &std::path::Path) {
    for e in std::fs::read_dir(from).unwrap().flatten() {
        if e.file_type().unwrap().is_file() {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// A pure-Python wheel of the package `greeting` 1.0, whose `WORD` is "cached".
fn write_wheel(path: &std::path::Path) {
    use std::io::Write;
    let mut w = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    let info = "greeting-1.0.dist-info";
    let files = [
        (
            "greeting/__init__.py".to_string(),
            "WORD = \"cached\"\n".to_string(),
        ),
        (
            format!("{info}/METADATA"),
            "Metadata-Version: 2.1\nName: greeting\nVersion: 1.0\n".into(),
        ),
        (
            format!("{info}/WHEEL"),
            "Wheel-Version: 1.0\nGenerator: paas-e2e\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
                .into(),
        ),
        (
            format!("{info}/RECORD"),
            format!("greeting/__init__.py,,\n{info}/METADATA,,\n{info}/WHEEL,,\n{info}/RECORD,,\n"),
        ),
    ];
    for (name, body) in files {
        w.start_file(name, zip::write::SimpleFileOptions::default())
            .unwrap();
        w.write_all(body.as_bytes()).unwrap();
    }
    w.finish().unwrap();
}

/// An npm package tarball of `greeting` 1.0.0, whose `word` is "cached".
fn write_npm_tarball(path: &std::path::Path) {
    write_tar_gz(
        path,
        &[
            (
                "package/package.json",
                r#"{"name": "greeting", "version": "1.0.0", "main": "index.js"}"#,
            ),
            ("package/index.js", "exports.word = \"cached\";\n"),
        ],
    );
}

/// A gzipped tarball of `files` (name, text).
fn write_tar_gz(path: &std::path::Path, files: &[(&str, &str)]) {
    let gz = flate2::write::GzEncoder::new(
        std::fs::File::create(path).unwrap(),
        flate2::Compression::default(),
    );
    let mut tar = tar::Builder::new(gz);
    for (name, body) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(body.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append_data(&mut header, name, body.as_bytes()).unwrap();
    }
    tar.into_inner().unwrap().finish().unwrap();
}
