//! User-provided service instances (`cf create-user-provided-service`): credentials a
//! tenant stores once and binds to apps, which find them in `VCAP_SERVICES` (and, for a
//! database, in `DATABASE_URL`, as Heroku's add-ons set it) from their next start.
//! Credentials are never logged, recorded in events, or listed.

use std::sync::Arc;

use paas_api::{AppName, ServiceRequest, ServiceSummary};
use serde_json::{json, Value};

use super::access::{space_not_found, Act, Caller};
use super::quota::Demand;
use super::{Error, ErrorKind, Platform};
use crate::store::{AppRecord, ServiceDoc};

/// The longest service name.
const MAX_NAME: usize = 50;
/// The most credentials one service may hold, as JSON.
const MAX_CREDENTIALS: usize = 64 * 1024;
/// URL schemes of databases, for `DATABASE_URL`.
const DATABASE_SCHEMES: [&str; 6] = [
    "postgres://",
    "postgresql://",
    "mysql://",
    "mysql2://",
    "mariadb://",
    "mongodb://",
];

impl Platform {
    /// The service instances `caller` sees (in `space` only, if given), with the apps
    /// bound to them.
    pub async fn services(
        &self,
        caller: &Caller,
        space: Option<&str>,
    ) -> Result<Vec<ServiceSummary>, Error> {
        let mut services = self.store.services().await.map_err(Error::internal)?;
        services.retain(|s| caller.sees(&s.space) && space.is_none_or(|w| w == s.space));
        let apps = self.store.apps().await.map_err(Error::internal)?;
        Ok(services
            .into_iter()
            .map(|s| ServiceSummary {
                bound_apps: apps
                    .iter()
                    .filter(|a| a.services.contains(&s.name))
                    .map(|a| a.name.to_string())
                    .collect(),
                label: "user-provided".into(),
                space: s.space,
                name: s.name,
                guid: s.guid,
                tags: s.tags,
                syslog_drain_url: s.syslog_drain_url,
                route_service_url: s.route_service_url,
            })
            .collect())
    }

    /// Creates a user-provided service instance from `req` in `space`, as `caller`.
    pub async fn create_service(
        &self,
        caller: &Caller,
        space: &str,
        req: ServiceRequest,
    ) -> Result<(), Error> {
        let name = req.name.clone().unwrap_or_default();
        check_name(&name)?;
        self.space_doc(space).await?;
        caller.check(Act::Develop, space, || space_not_found(space))?;
        let more = Demand {
            services: 1,
            ..Demand::default()
        };
        self.check_quota(space, more).await?;
        let mut doc = ServiceDoc {
            name: name.clone(),
            guid: crate::store::new_guid(),
            credentials: json!({}),
            syslog_drain_url: None,
            route_service_url: None,
            tags: Vec::new(),
            space: space.to_string(),
        };
        apply(&mut doc, req)?;
        if !self
            .store
            .create_service(&doc)
            .await
            .map_err(Error::internal)?
        {
            // Service names are shared by every space: one in another space is only
            // "taken".
            let theirs = self.store.service(&name).await.map_err(Error::internal)?;
            if theirs.is_some_and(|t| !caller.sees(&t.space)) {
                return Err(Error::new(
                    ErrorKind::Conflict,
                    "name-taken",
                    format!("the service name {name} is taken"),
                    Some(
                        "service names are shared by every space on this platform: choose another",
                    ),
                ));
            }
            return Err(Error::new(
                ErrorKind::Conflict,
                "service-exists",
                format!("a service named {name} exists"),
                Some(&format!(
                    "change it with `paas update-user-provided-service {name}`"
                )),
            ));
        }
        Ok(())
    }

    /// Changes what `req` gives of service `name`; bound apps see it at their next start.
    pub async fn update_service(&self, name: &str, req: ServiceRequest) -> Result<(), Error> {
        // Checked on the current document, then made on the one each attempt reads, so
        // a change made meanwhile by another controller is kept.
        let mut check = self.service_doc(name).await?;
        apply(&mut check, req.clone())?;
        let routes = self.routes_bound_to(name).await?;
        if check.route_service_url.is_none() && !routes.is_empty() {
            return Err(route_service_in_use(name, &routes));
        }
        self.store
            .update_service(name, |doc| {
                let _ = apply(doc, req.clone());
            })
            .await
            .map_err(Error::internal)?
            .ok_or_else(|| no_service(name))?;
        if let Some(url) = check.route_service_url.as_deref() {
            self.follow_route_service_url(name, url).await?;
        }
        // A changed syslog drain applies at once, here (as a binding's does).
        let apps = self.store.apps().await.map_err(Error::internal)?;
        for app in apps.iter().filter(|a| a.services.iter().any(|s| s == name)) {
            self.refresh_drains(app).await;
        }
        Ok(())
    }

    /// Sends `record`'s log lines on this host to the drains of the services bound to it
    /// now (instances on other hosts' cells take them at their next start).
    async fn refresh_drains(&self, record: &AppRecord) {
        if let Ok(env) = self.service_env(record).await {
            self.logs
                .set_drains(&record.name, &record.guid, &env.drains);
        }
    }

    /// Deletes service `name`, which no app may be bound to.
    pub async fn delete_service(&self, name: &str) -> Result<(), Error> {
        self.service_doc(name).await?;
        let routes = self.routes_bound_to(name).await?;
        if !routes.is_empty() {
            return Err(route_service_in_use(name, &routes));
        }
        let apps = self.store.apps().await.map_err(Error::internal)?;
        let bound: Vec<String> = apps
            .iter()
            .filter(|a| a.services.iter().any(|s| s == name))
            .map(|a| a.name.to_string())
            .collect();
        if !bound.is_empty() {
            return Err(Error::new(
                ErrorKind::Conflict,
                "service-bound",
                format!("service {name} is bound to {}", bound.join(", ")),
                Some(&format!(
                    "unbind it first: `paas unbind-service APP {name}`"
                )),
            ));
        }
        self.store
            .delete_service(name)
            .await
            .map_err(Error::internal)?;
        Ok(())
    }

    /// Binds (`bound`) or unbinds service `service` to `app`; it applies at the app's
    /// next start or restart. Answers whether that changed anything.
    pub async fn set_binding(
        self: &Arc<Self>,
        app: &AppName,
        service: &str,
        bound: bool,
    ) -> Result<bool, Error> {
        let record = self.app_record(app).await?;
        if bound && self.service_doc(service).await?.space != record.space {
            // A service of another space is, to this app, one that does not exist.
            return Err(no_service(service));
        }
        let changed = self
            .store
            .set_binding(app, service, bound)
            .await
            .map_err(Error::internal)?;
        if changed {
            if let Ok(now) = self.app_record(app).await {
                self.refresh_drains(&now).await;
            }
            let what = if bound { "bound" } else { "unbound" };
            self.record_event(
                app,
                if bound { "bind" } else { "unbind" },
                None,
                None,
                &format!("service {service} {what}; it applies at the next restart"),
            )
            .await;
        }
        Ok(changed)
    }

    /// What the bindings of `record` give its instances: `VCAP_SERVICES`, and
    /// `DATABASE_URL` when a bound service looks like a database and the app does not
    /// set it itself. A binding whose service is gone is left out.
    pub(super) async fn service_env(&self, record: &AppRecord) -> Result<ServiceEnv, Error> {
        let mut bound = Vec::new();
        for name in &record.services {
            match self.store.service(name).await.map_err(Error::internal)? {
                Some(doc) => bound.push(doc),
                None => {
                    tracing::warn!(app = %record.name, service = %name, "a bound service no longer exists")
                }
            }
        }
        let database_url = bound
            .iter()
            .find_map(database_url)
            .filter(|_| !record.env.contains_key("DATABASE_URL"));
        Ok(ServiceEnv {
            vcap_services: vcap_services(&bound).to_string(),
            database_url,
            drains: paas_api::state::LogDrains {
                hostname: format!("{}.{}", record.space, record.name),
                urls: bound
                    .iter()
                    .filter_map(|s| s.syslog_drain_url.clone())
                    .collect(),
            },
        })
    }

    /// The system-provided environment of `app`'s instances as of its next start.
    pub async fn system_env(&self, app: &AppName) -> Result<Value, Error> {
        let record = self.app_record(app).await?;
        let env = self.service_env(&record).await?;
        let services: Value = serde_json::from_str(&env.vcap_services).unwrap_or(json!({}));
        let mut out = json!({ "VCAP_SERVICES": services });
        if let Some(url) = env.database_url {
            out["DATABASE_URL"] = Value::String(url);
        }
        Ok(out)
    }

    pub(super) async fn service_doc(&self, name: &str) -> Result<ServiceDoc, Error> {
        self.store
            .service(name)
            .await
            .map_err(Error::internal)?
            .ok_or_else(|| no_service(name))
    }
}

/// What bound services add to an instance's environment.
#[derive(Debug, Clone, Default)]
pub struct ServiceEnv {
    /// `VCAP_SERVICES`, JSON.
    pub vcap_services: String,
    pub database_url: Option<String>,
    /// The bound services' syslog drains.
    pub drains: paas_api::state::LogDrains,
}

impl ServiceEnv {
    /// The variables, `VCAP_SERVICES` first.
    pub fn vars(&self) -> Vec<(String, String)> {
        let mut vars = vec![("VCAP_SERVICES".to_string(), self.vcap_services.clone())];
        if let Some(url) = &self.database_url {
            vars.push(("DATABASE_URL".to_string(), url.clone()));
        }
        vars
    }
}

/// `VCAP_SERVICES` in Cloud Foundry's shape: services by label, each with its name,
/// credentials, drain, tags and (none here) volume mounts.
fn vcap_services(bound: &[ServiceDoc]) -> Value {
    if bound.is_empty() {
        return json!({});
    }
    let list: Vec<Value> = bound
        .iter()
        .map(|s| {
            json!({
                "label": "user-provided",
                "name": s.name,
                "instance_name": s.name,
                "instance_guid": s.guid,
                "binding_name": null,
                "credentials": s.credentials,
                "syslog_drain_url": s.syslog_drain_url,
                "tags": s.tags,
                "volume_mounts": [],
            })
        })
        .collect();
    json!({ "user-provided": list })
}

/// The URL of a database-like service: its credentials' `uri` or `url` with a database
/// scheme, or with any scheme when it is tagged `database`.
fn database_url(s: &ServiceDoc) -> Option<String> {
    let url = ["uri", "url"]
        .iter()
        .find_map(|k| s.credentials.get(k)?.as_str())?;
    let database = DATABASE_SCHEMES.iter().any(|p| url.starts_with(p))
        || s.tags.iter().any(|t| t.eq_ignore_ascii_case("database"));
    database.then(|| url.to_string())
}

/// Makes the changes `req` asks of `doc`, checked.
fn apply(doc: &mut ServiceDoc, req: ServiceRequest) -> Result<(), Error> {
    let invalid = |code: &str, message: String, hint: &str| {
        Error::new(ErrorKind::Invalid, code, message, Some(hint))
    };
    if let Some(c) = req.credentials {
        if !c.is_object() {
            return Err(invalid(
                "invalid-credentials",
                "a service's credentials must be a JSON object".into(),
                r#"give -p '{"uri": "postgres://..."}' or -p FILE holding such an object"#,
            ));
        }
        if c.to_string().len() > MAX_CREDENTIALS {
            return Err(invalid(
                "invalid-credentials",
                format!("a service's credentials may hold at most {MAX_CREDENTIALS} bytes of JSON"),
                "store large secrets elsewhere and give their location",
            ));
        }
        doc.credentials = c;
    }
    if let Some(v) = req.route_service_url.as_deref() {
        // Cloud Foundry's rule: what a route service sees is the route's traffic.
        if !(v.is_empty() || v.starts_with("https://")) {
            return Err(invalid(
                "invalid-url",
                format!("the route service URL {v:?} is not an https:// URL"),
                "route services are reached over HTTPS only: give -r https://HOST[/PATH]",
            ));
        }
    }
    for (field, value) in [
        ("syslog drain", &req.syslog_drain_url),
        ("route service", &req.route_service_url),
    ] {
        if let Some(v) = value {
            if !(v.is_empty()
                || v.starts_with("https://")
                || v.starts_with("syslog://")
                || v.starts_with("syslog-tls://")
                || v.starts_with("http://"))
                || v.len() > 2048
                || v.chars().any(char::is_control)
            {
                return Err(invalid(
                    "invalid-url",
                    format!("the {field} URL {v:?} is not a URL paas takes"),
                    "give an http(s):// or syslog(-tls):// URL of at most 2048 characters",
                ));
            }
        }
    }
    if let Some(v) = req.syslog_drain_url {
        doc.syslog_drain_url = Some(v).filter(|v| !v.is_empty());
    }
    if let Some(v) = req.route_service_url {
        doc.route_service_url = Some(v).filter(|v| !v.is_empty());
    }
    if let Some(tags) = req.tags {
        if tags.len() > 32
            || tags
                .iter()
                .any(|t| t.is_empty() || t.len() > 64 || t.chars().any(char::is_control))
        {
            return Err(invalid(
                "invalid-tags",
                "tags are at most 32 words of 1 to 64 characters".into(),
                "give them as -t 'db,postgres'",
            ));
        }
        doc.tags = tags;
    }
    Ok(())
}

fn check_name(name: &str) -> Result<(), Error> {
    let fine = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if name.is_empty() || name.len() > MAX_NAME || !name.chars().all(fine) {
        return Err(Error::new(
            ErrorKind::Invalid,
            "invalid-service-name",
            format!("service name {name:?} is not allowed"),
            Some(&format!(
                "use 1 to {MAX_NAME} letters, digits, '-', '_' or '.'"
            )),
        ));
    }
    Ok(())
}

/// Service `name` is the route service of `routes`, so it must stay one.
fn route_service_in_use(name: &str, routes: &[paas_api::Route]) -> Error {
    let list: Vec<String> = routes.iter().map(ToString::to_string).collect();
    Error::new(
        ErrorKind::Conflict,
        "route-service-bound",
        format!("service {name} is the route service of {}", list.join(", ")),
        Some(&format!(
            "unbind it from each first: `paas unbind-route-service DOMAIN {name} --hostname HOST`"
        )),
    )
}

fn no_service(name: &str) -> Error {
    Error::new(
        ErrorKind::NotFound,
        "no-such-service",
        format!("there is no service named {name:?}"),
        Some("see `paas services`"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(credentials: Value, tags: &[&str]) -> ServiceDoc {
        ServiceDoc {
            name: "s".into(),
            guid: "g".into(),
            credentials,
            syslog_drain_url: None,
            route_service_url: None,
            tags: tags.iter().map(|t| t.to_string()).collect(),
            space: "default".into(),
        }
    }

    #[test]
    fn only_database_like_services_give_a_database_url() {
        let url = |c: Value, tags: &[&str]| database_url(&doc(c, tags));
        assert_eq!(
            url(json!({"uri": "postgres://u:p@h/db"}), &[]).as_deref(),
            Some("postgres://u:p@h/db")
        );
        assert!(url(json!({"url": "mysql2://h/db"}), &[]).is_some());
        assert_eq!(url(json!({"url": "redis://h"}), &[]), None);
        assert!(url(json!({"url": "cockroach://h"}), &["Database"]).is_some());
        assert_eq!(url(json!({"uri": 5}), &["database"]), None);
        assert_eq!(url(json!({"username": "x"}), &["database"]), None);
    }

    #[test]
    fn credentials_must_be_an_object_and_urls_must_be_urls() {
        let mut d = doc(json!({}), &[]);
        let req = |credentials: Option<Value>, drain: Option<&str>| ServiceRequest {
            credentials,
            syslog_drain_url: drain.map(Into::into),
            ..Default::default()
        };
        assert!(apply(&mut d, req(Some(json!([1])), None)).is_err());
        assert!(apply(&mut d, req(None, Some("file:///etc/passwd"))).is_err());
        assert!(apply(&mut d, req(None, Some("https://x/\n"))).is_err());
        let big = json!({"k": "x".repeat(MAX_CREDENTIALS)});
        assert!(apply(&mut d, req(Some(big), None)).is_err());
        apply(&mut d, req(Some(json!({"a": 1})), Some("syslog://h:514"))).unwrap();
        assert_eq!(d.credentials, json!({"a": 1}));
        assert_eq!(d.syslog_drain_url.as_deref(), Some("syslog://h:514"));
        apply(&mut d, req(None, Some(""))).unwrap();
        assert_eq!(d.syslog_drain_url, None, "an empty URL clears it");
    }
}
