//! The Cloud Native Buildpacks files the stager reads: `buildpack.toml`, the build plan
//! a detect writes, `<layer>.toml`, `launch.toml`, and layer environment folders.
//!
//! Environment files become a bash script (sourced by the launcher, or before later
//! build steps) instead of being applied by a program at launch: the result is the same
//! environment, and the launcher stays one small shell script.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::shell::quote;
use crate::tree::{Kind, Tree};

/// The most read of one file a build left (a layer's TOML, `launch.toml`, an env file).
pub const MAX_FILE_BYTES: u64 = 1 << 20;
/// The most names read from one folder a build left (layers, env files).
const MAX_NAMES: usize = 10_000;

/// A bounded read of a file a build left; `None` when there is none.
pub fn read_left(tree: &Tree, rel: &Path) -> Result<Option<String>, String> {
    tree.read_string(rel, MAX_FILE_BYTES)
        .map_err(|e| format!("{}: {e}", rel.display()))
}

/// The names in a folder a build left, bounded; none when it is not a folder.
fn names_left(tree: &Tree, rel: &Path) -> Result<Vec<(String, Kind)>, String> {
    if tree.kind(rel).map_err(|e| e.to_string())? != Some(Kind::Dir) {
        return Ok(Vec::new());
    }
    let entries = tree
        .entries(rel, MAX_NAMES)
        .map_err(|e| format!("{}: {e}", rel.display()))?;
    Ok(entries
        .into_iter()
        .filter_map(|(n, k)| Some((n.into_string().ok()?, k)))
        .collect())
}

/// `buildpack.toml`, the parts the stager uses.
#[derive(Debug, Clone, Deserialize)]
pub struct BuildpackToml {
    pub api: String,
    pub buildpack: BuildpackId,
}

#[derive(Debug, Clone, Deserialize)]
pub struct BuildpackId {
    pub id: String,
    #[serde(default)]
    pub version: String,
}

/// The oldest buildpack API this stager runs (the spec's own compatibility floor).
pub const MIN_API: (u32, u32) = (0, 10);

impl BuildpackToml {
    pub fn read(dir: &Path) -> Result<Self, String> {
        let raw = std::fs::read_to_string(dir.join("buildpack.toml"))
            .map_err(|e| format!("reading buildpack.toml: {e}"))?;
        Self::parse(&raw)
    }

    /// A buildpack.toml's text, checked: its API must be one this stager runs.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let t: BuildpackToml = toml::from_str(raw).map_err(|e| format!("buildpack.toml: {e}"))?;
        let api = parse_api(&t.api).ok_or_else(|| {
            format!(
                "buildpack.toml: api {:?} is not a version like \"0.10\"",
                t.api
            )
        })?;
        if api < MIN_API {
            return Err(format!(
                "buildpack.toml: buildpack API {} is older than {}.{}, the oldest this platform runs",
                t.api, MIN_API.0, MIN_API.1
            ));
        }
        Ok(t)
    }
}

fn parse_api(s: &str) -> Option<(u32, u32)> {
    let (a, b) = s.split_once('.')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

/// A build plan as `bin/detect` writes it.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct DetectPlan {
    #[serde(default)]
    pub provides: Vec<PlanProvide>,
    #[serde(default)]
    pub requires: Vec<PlanRequire>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct PlanProvide {
    pub name: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct PlanRequire {
    pub name: String,
    #[serde(default)]
    pub metadata: Option<toml::Table>,
}

impl DetectPlan {
    pub fn parse(raw: &str) -> Result<Self, String> {
        if raw.trim().is_empty() {
            return Ok(DetectPlan::default());
        }
        toml::from_str(raw).map_err(|e| format!("its build plan is not valid TOML: {e}"))
    }
}

/// Checks a group's plans as the lifecycle does: every requirement must be provided by
/// some buildpack of the group. Returns the first unmet requirement.
pub fn unmet_requirement(plans: &[&DetectPlan]) -> Option<String> {
    let provided: Vec<&str> = plans
        .iter()
        .flat_map(|p| p.provides.iter().map(|x| x.name.as_str()))
        .collect();
    plans
        .iter()
        .flat_map(|p| p.requires.iter())
        .find(|r| !provided.contains(&r.name.as_str()))
        .map(|r| r.name.clone())
}

/// The Buildpack Plan handed to `bin/build`: the entries the buildpack required.
pub fn buildpack_plan(plan: &DetectPlan) -> String {
    let mut out = String::new();
    for r in &plan.requires {
        out.push_str("[[entries]]\n");
        out.push_str(&format!("name = {}\n", toml::Value::String(r.name.clone())));
        if let Some(m) = &r.metadata {
            out.push_str("[entries.metadata]\n");
            out.push_str(&toml::to_string(m).unwrap_or_default());
        }
    }
    out
}

/// `<layer>.toml`: which phases a layer is for.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
pub struct LayerTypes {
    #[serde(default)]
    pub launch: bool,
    #[serde(default)]
    pub build: bool,
    #[serde(default)]
    pub cache: bool,
}

#[derive(Debug, Default, Deserialize)]
struct LayerToml {
    #[serde(default)]
    types: LayerTypes,
}

/// A layer folder of a buildpack and its types.
#[derive(Debug, Clone)]
pub struct Layer {
    pub name: String,
    /// The layer's folder, inside the tree it was read from.
    pub dir: PathBuf,
    pub types: LayerTypes,
}

/// The layers in a buildpack's layers folder `layers_dir` of `tree`: each `<name>.toml`
/// with a `<name>/`.
pub fn layers(tree: &Tree, layers_dir: &Path) -> Result<Vec<Layer>, String> {
    let mut out = Vec::new();
    for (name, kind) in names_left(tree, layers_dir)? {
        let Some(layer) = name.strip_suffix(".toml") else {
            continue;
        };
        if matches!(layer, "launch" | "build" | "store") || kind != Kind::File {
            continue;
        }
        let raw = read_left(tree, &layers_dir.join(&name))?.unwrap_or_default();
        let t: LayerToml = toml::from_str(&raw).map_err(|e| format!("{name}: {e}"))?;
        out.push(Layer {
            name: layer.to_string(),
            dir: layers_dir.join(layer),
            types: t.types,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// `launch.toml`: the processes a buildpack declares.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct LaunchToml {
    #[serde(default)]
    pub processes: Vec<Process>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Process {
    #[serde(rename = "type")]
    pub kind: String,
    pub command: Command,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default, rename = "working-dir")]
    pub working_dir: Option<String>,
}

/// API 0.9+ writes the command as an array; older buildpacks as a string.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Command {
    Words(Vec<String>),
    Line(String),
}

impl LaunchToml {
    /// Reads `launch.toml` from the layers folder `layers_dir` of `tree`, if it has one.
    pub fn read(tree: &Tree, layers_dir: &Path) -> Result<Self, String> {
        match read_left(tree, &layers_dir.join("launch.toml"))? {
            Some(raw) => Self::parse(&raw),
            None => Ok(LaunchToml::default()),
        }
    }

    pub fn parse(raw: &str) -> Result<Self, String> {
        toml::from_str(raw).map_err(|e| format!("launch.toml: {e}"))
    }
}

impl Process {
    /// The process as a command line that bash runs with no shell processing: every word
    /// quoted, and `exec` so the process replaces the launcher.
    pub fn command_line(&self) -> String {
        let mut words = match &self.command {
            Command::Words(w) => w.clone(),
            Command::Line(l) => vec![l.clone()],
        };
        words.extend(self.args.iter().cloned());
        let exec = format!("exec {}", crate::shell::join(&words));
        match &self.working_dir {
            Some(dir) => format!("cd {} && {exec}", quote(dir)),
            None => exec,
        }
    }
}

/// Which environment a script is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Build,
    Launch,
}

/// Functions the generated scripts call, so each variable is one line.
pub const ENV_FUNCTIONS: &str = r#"_paas_append() { if [ -n "${!1-}" ]; then export "$1=${!1}$3$2"; else export "$1=$2"; fi; }
_paas_prepend() { if [ -n "${!1-}" ]; then export "$1=$2$3${!1}"; else export "$1=$2"; fi; }
_paas_default() { if [ -z "${!1+x}" ]; then export "$1=$2"; fi; }
"#;

/// Bash lines that apply a layer's environment for `phase`, as the lifecycle does:
/// `bin/` on `PATH`, `lib/` on `LD_LIBRARY_PATH`, then `env/` and `env.<phase>/` files
/// (`NAME.append`, `.prepend`, `.default`, `.override` or plain `NAME`, with an optional
/// `NAME.delim`). Paths are written as the container sees them, under `seen_as`.
pub fn env_lines(
    tree: &Tree,
    layer: &Layer,
    seen_as: &Path,
    phase: Phase,
) -> Result<Vec<String>, String> {
    let is_dir = |p: PathBuf| matches!(tree.kind(&p), Ok(Some(Kind::Dir)));
    let mut lines = Vec::new();
    if is_dir(layer.dir.join("bin")) {
        lines.push(format!(
            "_paas_prepend PATH {} :",
            quote(&seen_as.join("bin").to_string_lossy())
        ));
    }
    if is_dir(layer.dir.join("lib")) {
        lines.push(format!(
            "_paas_prepend LD_LIBRARY_PATH {} :",
            quote(&seen_as.join("lib").to_string_lossy())
        ));
    }
    let phase_dir = match phase {
        Phase::Build => "env.build",
        Phase::Launch => "env.launch",
    };
    for sub in ["env", phase_dir] {
        lines.extend(env_dir_lines(tree, &layer.dir.join(sub))?);
    }
    Ok(lines)
}

/// The files of an environment folder a build left (`NAME` → its content), in name
/// order; symlinks and folders are passed over, and each file is read bounded.
pub fn env_files(tree: &Tree, dir: &Path) -> Result<BTreeMap<String, String>, String> {
    let mut files = BTreeMap::new();
    for (name, kind) in names_left(tree, dir)? {
        if kind != Kind::File {
            continue;
        }
        if let Some(value) = read_left(tree, &dir.join(&name))? {
            files.insert(name, value);
        }
    }
    Ok(files)
}

/// Bash lines for one environment folder, in file-name order.
fn env_dir_lines(tree: &Tree, dir: &Path) -> Result<Vec<String>, String> {
    let files = env_files(tree, dir)?;
    let mut lines = Vec::new();
    for (file, value) in &files {
        let (var, action) = match file.rsplit_once('.') {
            Some((v, a @ ("append" | "prepend" | "default" | "override"))) => (v, a),
            Some((_, "delim")) => continue,
            _ => (file.as_str(), "override"),
        };
        if !valid_var(var) {
            continue;
        }
        let delim = files
            .get(&format!("{var}.delim"))
            .cloned()
            .unwrap_or_default();
        let line = match action {
            "append" => format!("_paas_append {var} {} {}", quote(value), quote(&delim)),
            "prepend" => format!("_paas_prepend {var} {} {}", quote(value), quote(&delim)),
            "default" => format!("_paas_default {var} {}", quote(value)),
            _ => format!("export {var}={}", quote(value)),
        };
        lines.push(line);
    }
    Ok(lines)
}

/// A name bash accepts as a variable.
pub fn valid_var(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_must_have_their_requirements_provided() {
        let a = DetectPlan::parse("[[provides]]\nname = \"node\"\n[[requires]]\nname = \"node\"\n")
            .unwrap();
        let b = DetectPlan::parse("[[requires]]\nname = \"python\"\n").unwrap();
        assert_eq!(unmet_requirement(&[&a]), None);
        assert_eq!(unmet_requirement(&[&a, &b]).as_deref(), Some("python"));
        assert!(buildpack_plan(&a).contains("name = \"node\""));
        assert!(DetectPlan::parse("[[requires]\n").is_err());
    }

    #[test]
    fn processes_run_their_words_without_a_shell() {
        let l: LaunchToml = toml::from_str(
            "[[processes]]\ntype = \"web\"\ncommand = [\"node\", \"server.js\"]\nargs = [\"--port\", \"$PORT\"]\n",
        )
        .unwrap();
        assert_eq!(
            l.processes[0].command_line(),
            "exec node server.js --port '$PORT'"
        );
        let old: LaunchToml =
            toml::from_str("[[processes]]\ntype = \"web\"\ncommand = \"run me\"\n").unwrap();
        assert_eq!(old.processes[0].command_line(), "exec 'run me'");
    }

    #[test]
    fn env_files_become_bash_lines() {
        let d = tempfile::tempdir().unwrap();
        let layer = d.path().join("l");
        for (f, v) in [
            ("env/PATH.prepend", "/x/bin"),
            ("env/PATH.delim", ":"),
            ("env/JAVA_OPTS.append", "-Xmx1g"),
            ("env/JAVA_OPTS.delim", " "),
            ("env/MODE", "it's"),
            ("env.launch/PORT.default", "8080"),
            ("env.build/ONLY_BUILD", "1"),
            ("env/bad-name", "x"),
        ] {
            let p = layer.join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, v).unwrap();
        }
        std::fs::create_dir_all(layer.join("bin")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", layer.join("env/LINKED")).unwrap();
        let l = Layer {
            name: "l".into(),
            dir: "l".into(),
            types: LayerTypes::default(),
        };
        let tree = Tree::open(d.path()).unwrap();
        let lines = env_lines(
            &tree,
            &l,
            Path::new("/home/vcap/layers/bp/l"),
            Phase::Launch,
        )
        .unwrap();
        assert_eq!(
            lines,
            vec![
                "_paas_prepend PATH /home/vcap/layers/bp/l/bin :",
                "_paas_append JAVA_OPTS -Xmx1g ' '",
                "export MODE='it'\\''s'",
                "_paas_prepend PATH /x/bin :",
                "_paas_default PORT 8080",
            ]
        );
    }
}
