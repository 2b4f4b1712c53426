//! Validated names for apps and buildpacks.
//!
//! App names become DNS labels (`NAME.DOMAIN`), so they follow RFC 1123 label rules,
//! lowercase only, so that the route a user sees is the name they typed.

use std::fmt;
use std::str::FromStr;

/// The longest app name: a DNS label holds at most 63 octets (RFC 1035 §2.3.4).
pub const MAX_APP_NAME_LEN: usize = 63;

/// An app's name: 1–63 lowercase letters, digits and '-', starting with a letter and not
/// ending with '-'.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AppName(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("app name {name:?} is invalid: {reason}; use 1-63 lowercase letters, digits and '-', starting with a letter (for example \"my-app\")")]
pub struct AppNameError {
    name: String,
    reason: &'static str,
}

impl AppName {
    pub fn parse(name: &str) -> Result<Self, AppNameError> {
        let fail = |reason| {
            Err(AppNameError {
                name: name.chars().take(80).collect(),
                reason,
            })
        };
        if name.is_empty() {
            return fail("it is empty");
        }
        if name.len() > MAX_APP_NAME_LEN {
            return fail("it is longer than 63 characters");
        }
        if let Some(bad) = name
            .chars()
            .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
        {
            return Err(AppNameError {
                name: name.to_string(),
                reason: if bad.is_ascii_uppercase() {
                    "it has an uppercase letter"
                } else {
                    "it has a character other than a-z, 0-9 and '-'"
                },
            });
        }
        if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
            return fail("it must start with a lowercase letter");
        }
        if name.ends_with('-') {
            return fail("it must not end with '-'");
        }
        Ok(AppName(name.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for AppName {
    type Err = AppNameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for AppName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl serde::Serialize for AppName {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for AppName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        AppName::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Checks an environment variable name an app may set: a shell variable name, and not
/// one the platform sets itself (`PORT`, `VCAP_*`, `CF_*`, `MEMORY_LIMIT`, ...).
pub fn check_env_name(name: &str) -> Result<(), String> {
    let shell_name = !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !shell_name {
        return Err(format!(
            "environment variable name {name:?} is invalid: use letters, digits and '_', not starting with a digit"
        ));
    }
    const RESERVED: [&str; 7] = [
        "PORT",
        "HOME",
        "TMPDIR",
        "USER",
        "MEMORY_LIMIT",
        "INSTANCE_INDEX",
        "LANG",
    ];
    if RESERVED.contains(&name) || name.starts_with("VCAP_") || name.starts_with("CF_") {
        return Err(format!(
            "{name} is set by the platform and cannot be changed"
        ));
    }
    Ok(())
}

/// A buildpack's name: 1–63 of `a-z 0-9 - _ .`, starting with a letter or digit. It is
/// used as a folder name, so it can never hold a path separator or be `..`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BuildpackName(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("buildpack name {0:?} is invalid: use 1-63 lowercase letters, digits, '-', '_' and '.', starting with a letter or digit")]
pub struct BuildpackNameError(String);

impl BuildpackName {
    pub fn parse(name: &str) -> Result<Self, BuildpackNameError> {
        let ok = !name.is_empty()
            && name.len() <= 63
            && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c));
        if ok {
            Ok(BuildpackName(name.to_string()))
        } else {
            Err(BuildpackNameError(name.chars().take(80).collect()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for BuildpackName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for BuildpackName {
    type Err = BuildpackNameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl serde::Serialize for BuildpackName {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for BuildpackName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        BuildpackName::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_dns_labels() {
        for ok in ["a", "my-app", "app2", "a-b-c", &"a".repeat(63)] {
            assert_eq!(AppName::parse(ok).unwrap().as_str(), ok);
        }
    }

    #[test]
    fn refuses_names_that_are_not_lowercase_dns_labels() {
        for bad in [
            "",
            "My_App",
            "-app",
            "app-",
            "1app",
            "a.b",
            "a/b",
            "..",
            "app name",
            "ápp",
            &"a".repeat(64),
        ] {
            let err = AppName::parse(bad).unwrap_err().to_string();
            assert!(
                err.contains("lowercase letters, digits and '-'"),
                "{bad:?}: {err}"
            );
        }
    }

    #[test]
    fn error_names_the_problem() {
        let err = AppName::parse("My_App").unwrap_err().to_string();
        assert!(
            err.starts_with("app name \"My_App\" is invalid: it has an uppercase letter"),
            "{err}"
        );
        let err = AppName::parse("1app").unwrap_err().to_string();
        assert!(err.contains("must start with a lowercase letter"), "{err}");
        let err = AppName::parse("my_app").unwrap_err().to_string();
        assert!(err.contains("other than a-z"), "{err}");
    }

    #[test]
    fn deserialising_validates() {
        assert!(serde_json::from_str::<AppName>("\"ok-name\"").is_ok());
        assert!(serde_json::from_str::<AppName>("\"../etc\"").is_err());
    }

    #[test]
    fn env_names_are_shell_names_the_platform_does_not_own() {
        assert!(check_env_name("DATABASE_URL").is_ok());
        assert!(check_env_name("_x1").is_ok());
        for bad in [
            "",
            "1X",
            "A-B",
            "A B",
            "PORT",
            "VCAP_SERVICES",
            "CF_INSTANCE_IP",
        ] {
            assert!(check_env_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn buildpack_names_cannot_be_paths() {
        assert!(BuildpackName::parse("python").is_ok());
        assert!(BuildpackName::parse("my_bp-1.2").is_ok());
        for bad in ["", "..", ".hidden", "a/b", "A", "x y"] {
            assert!(BuildpackName::parse(bad).is_err(), "{bad:?}");
        }
    }
}
