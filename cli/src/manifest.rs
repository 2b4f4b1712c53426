//! `manifest.yml`, in Cloud Foundry's schema: `applications:` with their settings, and
//! `((var))` placeholders filled from `--var KEY=VALUE` and `--vars-file FILE`.
//!
//! Keys paas does not act on are reported as warnings, not errors, so a manifest written
//! for Cloud Foundry pushes as it is.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_yaml_ng::Value;

/// One application of a manifest.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ManifestApp {
    pub name: String,
    /// Relative to the manifest's folder.
    pub path: Option<PathBuf>,
    pub instances: Option<u32>,
    pub memory: Option<String>,
    pub disk_quota: Option<String>,
    pub buildpacks: Vec<String>,
    pub command: Option<String>,
    /// `stack:`, the stack to build and run on.
    pub stack: Option<String>,
    pub env: BTreeMap<String, String>,
    pub health_check_type: Option<String>,
    pub health_check_http_endpoint: Option<String>,
    pub timeout: Option<u32>,
    pub health_check_interval: Option<u32>,
    pub health_check_invocation_timeout: Option<u32>,
    pub readiness_health_check_type: Option<String>,
    pub readiness_health_check_http_endpoint: Option<String>,
    pub readiness_health_check_interval: Option<u32>,
    pub readiness_health_check_invocation_timeout: Option<u32>,
    /// `routes: [{route: HOST[/PATH]}]`, as written.
    pub routes: Vec<String>,
    pub no_route: bool,
    pub random_route: bool,
    /// `services: [NAME, ...]` (or `- name: NAME`): bound at the push.
    pub services: Vec<String>,
    /// `processes:` other than `web` (whose settings become the app's own).
    pub processes: Vec<ManifestProcess>,
}

/// One entry of `processes:`, as Cloud Foundry's manifests write them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ManifestProcess {
    pub kind: String,
    pub command: Option<String>,
    pub instances: Option<u32>,
    pub memory: Option<String>,
    pub disk_quota: Option<String>,
    pub health_check_type: Option<String>,
    pub health_check_http_endpoint: Option<String>,
}

/// Keys paas reads.
const KNOWN: [&str; 24] = [
    "processes",
    "stack",
    "services",
    "health-check-interval",
    "health-check-invocation-timeout",
    "readiness-health-check-type",
    "readiness-health-check-http-endpoint",
    "readiness-health-check-interval",
    "readiness-health-check-invocation-timeout",
    "routes",
    "no-route",
    "random-route",
    "name",
    "path",
    "instances",
    "memory",
    "disk_quota",
    "buildpacks",
    "buildpack",
    "command",
    "env",
    "health-check-type",
    "health-check-http-endpoint",
    "timeout",
];

/// Reads `--vars-file` files and `--var` flags (flags win).
pub fn vars(files: &[PathBuf], flags: &[String]) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    for f in files {
        let raw =
            std::fs::read_to_string(f).map_err(|e| format!("reading {}: {e}", f.display()))?;
        let v: Value =
            serde_yaml_ng::from_str(&raw).map_err(|e| format!("{}: {e}", f.display()))?;
        let Value::Mapping(m) = v else {
            return Err(format!("{} must be a map of names to values", f.display()));
        };
        for (k, v) in m {
            if let (Some(k), Some(v)) = (scalar(&k), scalar(&v)) {
                out.insert(k, v);
            }
        }
    }
    for f in flags {
        let (k, v) = f
            .split_once('=')
            .ok_or_else(|| format!("--var {f:?}: write it as NAME=VALUE"))?;
        out.insert(k.to_string(), v.to_string());
    }
    Ok(out)
}

/// Replaces every `((name))` with its value; an unknown name is an error that says where.
pub fn interpolate(text: &str, vars: &BTreeMap<String, String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("((") {
        let Some(len) = rest[start + 2..].find("))") else {
            break;
        };
        let name = &rest[start + 2..start + 2 + len];
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
        {
            out.push_str(&rest[..start + 2]);
            rest = &rest[start + 2..];
            continue;
        }
        let value = vars.get(name).ok_or_else(|| {
            let line = text[..text.len() - rest.len() + start]
                .lines()
                .count()
                .max(1);
            format!(
                "line {line}: (({name})) has no value: give --var {name}=VALUE or a --vars-file"
            )
        })?;
        out.push_str(&rest[..start]);
        out.push_str(value);
        rest = &rest[start + 2 + len + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Parses a manifest's text; returns its applications and warnings for what is ignored.
pub fn parse(text: &str) -> Result<(Vec<ManifestApp>, Vec<String>), String> {
    let doc: Value = serde_yaml_ng::from_str(text).map_err(|e| e.to_string())?;
    let apps = doc
        .get("applications")
        .and_then(Value::as_sequence)
        .ok_or("it has no `applications:` list")?;
    let mut warnings = Vec::new();
    let mut out = Vec::new();
    for (i, app) in apps.iter().enumerate() {
        let Value::Mapping(m) = app else {
            return Err(format!("application {} is not a map of settings", i + 1));
        };
        let get = |k: &str| m.get(Value::String(k.to_string()));
        let name = get("name")
            .and_then(scalar)
            .ok_or_else(|| format!("application {} has no name", i + 1))?;
        let text_of = |k: &str| -> Result<Option<String>, String> {
            match get(k) {
                None | Some(Value::Null) => Ok(None),
                Some(v) => scalar(v)
                    .map(Some)
                    .ok_or_else(|| format!("{name}: {k} must be a single value")),
            }
        };
        let number_of = |k: &str| -> Result<Option<u32>, String> {
            match text_of(k)? {
                None => Ok(None),
                Some(s) => s
                    .parse()
                    .map(Some)
                    .map_err(|_| format!("{name}: {k} must be a whole number, not {s:?}")),
            }
        };
        let mut buildpacks = Vec::new();
        match get("buildpacks") {
            None | Some(Value::Null) => {}
            Some(Value::Sequence(s)) => {
                for b in s {
                    buildpacks
                        .push(scalar(b).ok_or_else(|| {
                            format!("{name}: buildpacks must be a list of names")
                        })?);
                }
            }
            Some(_) => return Err(format!("{name}: buildpacks must be a list of names")),
        }
        if let Some(b) = text_of("buildpack")? {
            warnings.push(format!(
                "{name}: `buildpack` is deprecated in Cloud Foundry; use `buildpacks: [{b}]`"
            ));
            buildpacks.push(b);
        }
        let mut routes = Vec::new();
        match get("routes") {
            None | Some(Value::Null) => {}
            Some(Value::Sequence(s)) => {
                for r in s {
                    let route = r.get("route").and_then(scalar).ok_or_else(|| {
                        format!("{name}: each of routes must be `- route: HOST.DOMAIN[/PATH]`")
                    })?;
                    routes.push(route);
                }
            }
            Some(_) => {
                return Err(format!(
                    "{name}: routes must be a list of `- route: HOST.DOMAIN[/PATH]`"
                ))
            }
        }
        let flag_of = |k: &str| -> Result<bool, String> {
            match get(k) {
                None | Some(Value::Null) => Ok(false),
                Some(Value::Bool(b)) => Ok(*b),
                Some(_) => Err(format!("{name}: {k} must be true or false")),
            }
        };
        let mut services = Vec::new();
        match get("services") {
            None | Some(Value::Null) => {}
            Some(Value::Sequence(list)) => {
                for s in list {
                    let one = scalar(s).or_else(|| s.get("name").and_then(scalar));
                    let Some(one) = one else {
                        return Err(format!("{name}: each of services must be a service's name"));
                    };
                    services.push(one);
                }
            }
            Some(_) => return Err(format!("{name}: services must be a list of service names")),
        }
        let mut processes = Vec::new();
        match get("processes") {
            None | Some(Value::Null) => {}
            Some(Value::Sequence(list)) => {
                for p in list {
                    processes.push(process_of(&name, p)?);
                }
            }
            Some(_) => {
                return Err(format!(
                    "{name}: processes must be a list of `- type: NAME` maps"
                ))
            }
        }
        // The web process's settings are the app's own; a key given both ways takes the
        // process's, as Cloud Foundry does.
        let web = processes
            .iter()
            .position(|p: &ManifestProcess| p.kind == "web")
            .map(|i| processes.remove(i));
        let mut env = BTreeMap::new();
        match get("env") {
            None | Some(Value::Null) => {}
            Some(Value::Mapping(e)) => {
                for (k, v) in e {
                    let (Some(k), Some(v)) = (scalar(k), scalar(v)) else {
                        return Err(format!("{name}: env values must be single values"));
                    };
                    env.insert(k, v);
                }
            }
            Some(_) => return Err(format!("{name}: env must be a map of names to values")),
        }
        for (k, _) in m {
            if let Some(k) = k.as_str() {
                if !KNOWN.contains(&k) {
                    warnings.push(format!(
                        "{name}: `{k}` is not supported by paas yet and is ignored"
                    ));
                }
            }
        }
        let web = web.unwrap_or_default();
        out.push(ManifestApp {
            path: text_of("path")?.map(PathBuf::from),
            instances: web.instances.or(number_of("instances")?),
            memory: web.memory.or(text_of("memory")?),
            disk_quota: web.disk_quota.or(text_of("disk_quota")?),
            command: web.command.or(text_of("command")?),
            stack: text_of("stack")?,
            health_check_type: web.health_check_type.or(text_of("health-check-type")?),
            health_check_http_endpoint: web
                .health_check_http_endpoint
                .or(text_of("health-check-http-endpoint")?),
            timeout: number_of("timeout")?,
            health_check_interval: number_of("health-check-interval")?,
            health_check_invocation_timeout: number_of("health-check-invocation-timeout")?,
            readiness_health_check_type: text_of("readiness-health-check-type")?,
            readiness_health_check_http_endpoint: text_of("readiness-health-check-http-endpoint")?,
            readiness_health_check_interval: number_of("readiness-health-check-interval")?,
            readiness_health_check_invocation_timeout: number_of(
                "readiness-health-check-invocation-timeout",
            )?,
            no_route: flag_of("no-route")?,
            random_route: flag_of("random-route")?,
            routes,
            buildpacks,
            env,
            services,
            processes,
            name,
        });
    }
    Ok((out, warnings))
}

/// One entry of an application's `processes:`.
fn process_of(app: &str, v: &Value) -> Result<ManifestProcess, String> {
    let Value::Mapping(m) = v else {
        return Err(format!(
            "{app}: each of processes must be a map with a type"
        ));
    };
    let get = |k: &str| m.get(Value::String(k.to_string()));
    let text_of = |k: &str| -> Result<Option<String>, String> {
        match get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => scalar(v)
                .map(Some)
                .ok_or_else(|| format!("{app}: processes: {k} must be a single value")),
        }
    };
    let kind = text_of("type")?.ok_or_else(|| format!("{app}: each of processes needs a type"))?;
    let instances = match text_of("instances")? {
        None => None,
        Some(s) => Some(s.parse().map_err(|_| {
            format!("{app}: processes: instances must be a whole number, not {s:?}")
        })?),
    };
    Ok(ManifestProcess {
        command: text_of("command")?,
        instances,
        memory: text_of("memory")?,
        disk_quota: text_of("disk_quota")?,
        health_check_type: text_of("health-check-type")?,
        health_check_http_endpoint: text_of("health-check-http-endpoint")?,
        kind,
    })
}

/// Reads, fills in and parses the manifest at `path`. Paths in it become relative to
/// its folder.
pub fn load(
    path: &Path,
    vars: &BTreeMap<String, String>,
) -> Result<(Vec<ManifestApp>, Vec<String>), String> {
    let raw =
        std::fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    let filled = interpolate(&raw, vars).map_err(|e| format!("{}: {e}", path.display()))?;
    let (mut apps, warnings) = parse(&filled).map_err(|e| format!("{}: {e}", path.display()))?;
    let base = path.parent().unwrap_or(Path::new("."));
    for a in &mut apps {
        a.path = Some(base.join(a.path.take().unwrap_or_else(|| PathBuf::from("."))));
    }
    Ok((apps, warnings))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn processes_give_web_s_settings_to_the_app_and_keep_the_others() {
        let text = "applications:\n- name: a\n  memory: 1G\n  command: old\n  processes:\n  - type: web\n    command: gunicorn app\n    instances: 3\n  - type: worker\n    instances: 2\n    memory: 64M\n    health-check-type: process\n";
        let (apps, warnings) = parse(text).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        let a = &apps[0];
        assert_eq!(a.command.as_deref(), Some("gunicorn app"));
        assert_eq!(a.instances, Some(3));
        assert_eq!(
            a.memory.as_deref(),
            Some("1G"),
            "not given by web: the app's"
        );
        assert_eq!(a.processes.len(), 1);
        let w = &a.processes[0];
        assert_eq!(
            (w.kind.as_str(), w.instances, w.memory.as_deref()),
            ("worker", Some(2), Some("64M"))
        );
        assert!(parse("applications:\n- name: a\n  processes:\n  - instances: 2\n").is_err());
        assert!(parse("applications:\n- name: a\n  processes: web\n").is_err());
    }

    #[test]
    fn cf_manifests_parse_with_warnings_for_what_is_ignored() {
        let text = "---\napplications:\n- name: web\n  instances: 2\n  memory: 512M\n  disk_quota: 2G\n  buildpacks: [python]\n  command: python3 app.py\n  env:\n    GREETING: hi\n    PORTS: 3\n  health-check-type: http\n  health-check-http-endpoint: /health\n  timeout: 30\n  routes:\n  - route: web.example.com\n- name: worker\n  buildpack: binary\n";
        let (apps, warnings) = parse(text).unwrap();
        assert_eq!(apps.len(), 2);
        let w = &apps[0];
        assert_eq!(
            (w.name.as_str(), w.instances, w.memory.as_deref()),
            ("web", Some(2), Some("512M"))
        );
        assert_eq!(w.env.get("PORTS").map(String::as_str), Some("3"));
        assert_eq!(w.health_check_http_endpoint.as_deref(), Some("/health"));
        assert_eq!(apps[1].buildpacks, vec!["binary"]);
        assert_eq!(w.routes, vec!["web.example.com"]);
        assert!(!w.no_route && !w.random_route);
        assert!(
            warnings.iter().any(|w| w.contains("deprecated")),
            "{warnings:?}"
        );
    }

    #[test]
    fn bad_manifests_say_what_is_wrong() {
        assert!(parse("applications:\n- instances: 2\n")
            .unwrap_err()
            .contains("has no name"));
        assert!(parse("applications:\n- name: a\n  instances: many\n")
            .unwrap_err()
            .contains("whole number"));
        let err = parse("applications:\n- name: a\n  memory: [1\n").unwrap_err();
        assert!(err.contains("line"), "{err}");
        assert!(parse("name: a\n").unwrap_err().contains("applications"));
        assert!(parse("applications:\n- name: a\n  routes: a.b\n")
            .unwrap_err()
            .contains("- route:"));
        assert!(parse("applications:\n- name: a\n  no-route: maybe\n")
            .unwrap_err()
            .contains("true or false"));
        let (apps, _) =
            parse("applications:\n- name: a\n  no-route: true\n  random-route: false\n").unwrap();
        assert!(apps[0].no_route && !apps[0].random_route);
    }

    #[test]
    fn variables_are_filled_in_or_named_with_their_line() {
        let vars = BTreeMap::from([("n".to_string(), "3".to_string())]);
        assert_eq!(
            interpolate("instances: ((n))\n", &vars).unwrap(),
            "instances: 3\n"
        );
        let err = interpolate("a: 1\nmemory: ((mem))\n", &vars).unwrap_err();
        assert!(err.starts_with("line 2: ((mem)) has no value"), "{err}");
    }
}
