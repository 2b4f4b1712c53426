//! Users, their logins and tokens (spaces, their members and quotas: `spaces.rs`).
//!
//! A password is kept only as an Argon2id hash (RFC 9106; a memory-hard function, so a
//! stolen store cannot be tried against a dictionary on GPUs cheaply). Logging in gives
//! a pair of random tokens: an access token good for [`ACCESS_TTL`] and a refresh token
//! good for [`REFRESH_TTL`] that is used once, for the next pair. Only their SHA-256 is
//! stored, so a read of the store gives nobody a token; a presented token is found by
//! its hash (a lookup, not a comparison an attacker could time: they would have to know
//! the hash's preimage). Failed logins are limited per user and per address
//! ([`LoginLimits`]), against guessing (OWASP's credential stuffing guidance).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use paas_api::auth::{check_label, CreateUser, TokenGrant, UserInfo, BOOTSTRAP_ADMIN};
use sha2::{Digest, Sha256};

use super::access::Caller;
use super::{Error, ErrorKind, Platform};
use crate::secrets::constant_time_eq;
use crate::store::{TokenDoc, TokenKind, UserDoc};

/// How long an access token is good for.
pub const ACCESS_TTL: Duration = Duration::from_secs(3600);
/// How long a refresh token is good for.
pub const REFRESH_TTL: Duration = Duration::from_secs(30 * 24 * 3600);
/// The shortest password taken (NIST SP 800-63B §5.1.1.2).
const MIN_PASSWORD: usize = 8;
/// The longest: hashing is costly, and nobody types more.
const MAX_PASSWORD: usize = 256;

/// Failed logins a user, or an address, may have within [`LoginLimits::WINDOW`].
const FAILURES_PER_USER: usize = 5;
const FAILURES_PER_ADDRESS: usize = 20;

/// Recent failed logins by user and by address, on this controller.
#[derive(Default)]
pub struct LoginLimits {
    failures: Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl LoginLimits {
    const WINDOW: Duration = Duration::from_secs(300);
    /// Keys kept at most: an attacker of many addresses cannot grow this without bound.
    const MAX_KEYS: usize = 100_000;

    fn keys(user: &str, address: Option<IpAddr>) -> [(String, usize); 2] {
        // A name longer than any user's is cut: the body it came in is not kept.
        let user: String = user.chars().take(64).collect();
        [
            (format!("user {user}"), FAILURES_PER_USER),
            (
                format!(
                    "address {}",
                    address.map(|a| a.to_string()).unwrap_or_default()
                ),
                FAILURES_PER_ADDRESS,
            ),
        ]
    }

    /// `Some(seconds to wait)` while the user or the address has used up its tries.
    fn blocked(&self, user: &str, address: Option<IpAddr>) -> Option<u64> {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let mut wait = None;
        for (key, limit) in Self::keys(user, address) {
            let Some(times) = failures.get_mut(&key) else {
                continue;
            };
            while times
                .front()
                .is_some_and(|t| now.duration_since(*t) > Self::WINDOW)
            {
                times.pop_front();
            }
            if times.len() >= limit {
                let oldest = times.front().copied().unwrap_or(now);
                let left = Self::WINDOW.saturating_sub(now.duration_since(oldest));
                wait = Some(wait.unwrap_or(0).max(left.as_secs() + 1));
            }
        }
        wait
    }

    /// Counts a try before its password is checked, so tries sent at once cannot all
    /// pass the check before any failed; [`LoginLimits::succeeded`] takes it back.
    /// `Some(seconds to wait)` instead if the user or the address has no try left.
    fn attempt(&self, user: &str, address: Option<IpAddr>) -> Option<u64> {
        if let Some(wait) = self.blocked(user, address) {
            return Some(wait);
        }
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if failures.len() >= Self::MAX_KEYS {
            let now = Instant::now();
            failures.retain(|_, t| {
                t.back()
                    .is_some_and(|t| now.duration_since(*t) <= Self::WINDOW)
            });
        }
        for (key, _) in Self::keys(user, address) {
            failures.entry(key).or_default().push_back(Instant::now());
        }
        None
    }

    /// The try was right: the user's failures are forgotten, and the address gets its
    /// try back.
    fn succeeded(&self, user: &str, address: Option<IpAddr>) {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let [(user_key, _), (address_key, _)] = Self::keys(user, address);
        failures.remove(&user_key);
        if let Some(times) = failures.get_mut(&address_key) {
            times.pop_back();
        }
    }
}

fn too_many(user: &str, wait: u64) -> Error {
    Error::new(
        ErrorKind::TooMany,
        "too-many-logins",
        format!(
            "too many failed logins for {} or from this address",
            user.chars().take(64).collect::<String>()
        ),
        Some(&format!("wait {wait} seconds, then try again")),
    )
}

fn unauthenticated(message: &str) -> Error {
    Error::new(
        ErrorKind::Unauthenticated,
        "unauthorised",
        message,
        Some("log in with `paas login -a URL -u USER`, or with an admin token: `paas login --api URL --token TOKEN`"),
    )
}

pub(super) fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

fn new_token() -> Result<String, Error> {
    let mut raw = [0u8; 32];
    getrandom::fill(&mut raw).map_err(|e| Error::internal(format!("reading random bytes: {e}")))?;
    Ok(hex::encode(raw))
}

/// Hashes `password` with Argon2id (off the async threads: it takes tens of ms).
async fn hash_password(password: String) -> Result<String, Error> {
    tokio::task::spawn_blocking(move || {
        let mut salt = [0u8; 16];
        getrandom::fill(&mut salt)
            .map_err(|e| Error::internal(format!("reading random bytes: {e}")))?;
        let salt = SaltString::encode_b64(&salt).map_err(Error::internal)?;
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(Error::internal)
    })
    .await
    .map_err(Error::internal)?
}

/// Whether `password` matches `hash`; a user without one (or none at all) is checked
/// against a hash of nothing, so the time taken does not tell which users exist.
async fn verify_password(password: String, hash: Option<String>) -> bool {
    tokio::task::spawn_blocking(move || {
        static NOBODY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        let nobody = NOBODY.get_or_init(|| {
            let salt = SaltString::encode_b64(&[7u8; 16]).expect("16 bytes encode as a salt");
            Argon2::default()
                .hash_password(b"", &salt)
                .map(|h| h.to_string())
                .unwrap_or_default()
        });
        let known = hash.is_some();
        let hash = hash.unwrap_or_else(|| nobody.clone());
        let Ok(parsed) = PasswordHash::new(&hash) else {
            return false;
        };
        Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
            && known
    })
    .await
    .unwrap_or(false)
}

fn check_password(password: &str) -> Result<(), Error> {
    let n = password.chars().count();
    if (MIN_PASSWORD..=MAX_PASSWORD).contains(&n) {
        return Ok(());
    }
    Err(Error::new(
        ErrorKind::Invalid,
        "invalid-password",
        format!("a password of {n} characters is not taken"),
        Some(&format!(
            "use {MIN_PASSWORD} to {MAX_PASSWORD} characters; a few unrelated words make a good one"
        )),
    ))
}

pub(super) fn invalid(e: String) -> Error {
    Error::new(ErrorKind::Invalid, "invalid-name", e, None)
}

pub(super) fn user_not_found(name: &str) -> Error {
    Error::new(
        ErrorKind::NotFound,
        "user-not-found",
        format!("user {name} does not exist"),
        Some("see `paas users`"),
    )
}

fn info(user: &UserDoc) -> UserInfo {
    UserInfo {
        name: user.name.clone(),
        admin: user.admin,
        spaces: user.roles.clone(),
    }
}

impl Platform {
    /// The caller a bearer token stands for: the bootstrap admin for paasd's admin
    /// token, else the user of a stored access token that has not expired.
    pub async fn caller(&self, token: &str, address: Option<IpAddr>) -> Result<Caller, Error> {
        let token = token.trim();
        if let Some(admin) = self.admin_token.get() {
            if constant_time_eq(token.as_bytes(), admin.as_bytes()) {
                return Ok(Caller::bootstrap(address));
            }
        }
        let hash = token_hash(token);
        if let Some(caller) = self.access_cache.caller(&hash, now()) {
            return Ok(Caller { address, ..caller });
        }
        self.caller_by_hash(hash, address).await
    }

    /// The caller of the token whose hash is `hash`, read from the store (and kept in
    /// the access cache).
    pub async fn caller_by_hash(
        &self,
        hash: String,
        address: Option<IpAddr>,
    ) -> Result<Caller, Error> {
        let doc = self.store.token(&hash).await.map_err(Error::internal)?;
        let doc = match doc {
            Some(d) if d.kind == TokenKind::Access && d.expires_at > now() => d,
            Some(d) if d.kind == TokenKind::Access => {
                return Err(Error::new(
                    ErrorKind::Unauthenticated,
                    "token-expired",
                    "the access token has expired",
                    Some("the CLI gets a new one by itself; else log in again"),
                ))
            }
            _ => return Err(unauthenticated("the request has no valid bearer token")),
        };
        let user = self.store.user(&doc.user).await.map_err(Error::internal)?;
        let Some(user) = user else {
            return Err(unauthenticated("the user of this token no longer exists"));
        };
        let caller = Caller {
            user: user.name,
            admin: user.admin,
            roles: user.roles,
            address,
            token_hash: Some(hash.clone()),
        };
        self.access_cache
            .keep_caller(&hash, &caller, doc.expires_at);
        Ok(caller)
    }

    /// Checks `user`'s password and gives a pair of tokens.
    pub async fn login(
        &self,
        user: &str,
        password: String,
        address: Option<IpAddr>,
    ) -> Result<TokenGrant, Error> {
        if let Some(wait) = self.login_limits.attempt(user, address) {
            return Err(too_many(user, wait));
        }
        let doc = self.store.user(user).await.map_err(Error::internal)?;
        let hash = doc.as_ref().and_then(|d| d.password_hash.clone());
        let who = Caller {
            user: user.chars().take(64).collect(),
            ..Caller::anonymous(address)
        };
        if password.len() > MAX_PASSWORD * 4 || !verify_password(password, hash).await {
            tracing::info!(user = %who.user, ?address, "failed login");
            self.audit(&who, None, "failed login".into(), None, 401)
                .await;
            return Err(unauthenticated("wrong user name or password"));
        }
        self.login_limits.succeeded(user, address);
        self.audit(&who, None, "login".into(), None, 200).await;
        // Old tokens nobody can use any more go now, so the store does not fill up.
        let t = now();
        let _ = self.store.delete_tokens_where(|d| d.expires_at <= t).await;
        self.grant(user).await
    }

    /// A new pair of tokens for `user`.
    async fn grant(&self, user: &str) -> Result<TokenGrant, Error> {
        let (access, refresh) = (new_token()?, new_token()?);
        let (access_hash, refresh_hash) = (token_hash(&access), token_hash(&refresh));
        let t = now();
        let access_doc = TokenDoc {
            user: user.to_string(),
            kind: TokenKind::Access,
            expires_at: t + ACCESS_TTL.as_secs() as i64,
            partner: refresh_hash.clone(),
        };
        let refresh_doc = TokenDoc {
            user: user.to_string(),
            kind: TokenKind::Refresh,
            expires_at: t + REFRESH_TTL.as_secs() as i64,
            partner: access_hash.clone(),
        };
        self.store
            .put_token_pair((&access_hash, &access_doc), (&refresh_hash, &refresh_doc))
            .await
            .map_err(Error::internal)?;
        Ok(TokenGrant {
            user: user.to_string(),
            access_token: access,
            refresh_token: refresh,
            expires_in: ACCESS_TTL.as_secs(),
        })
    }

    /// A new pair for a refresh token, which (with its access token) is used up.
    pub async fn refresh(&self, refresh_token: &str) -> Result<TokenGrant, Error> {
        let hash = token_hash(refresh_token.trim());
        let taken = self
            .store
            .take_token(&hash)
            .await
            .map_err(Error::internal)?;
        self.access_cache.forget_callers();
        match taken {
            Some(d) if d.kind == TokenKind::Refresh && d.expires_at > now() => {
                if self
                    .store
                    .user(&d.user)
                    .await
                    .map_err(Error::internal)?
                    .is_none()
                {
                    return Err(unauthenticated("the user of this token no longer exists"));
                }
                self.grant(&d.user).await
            }
            _ => Err(unauthenticated(
                "the refresh token is not valid (used, expired or revoked)",
            )),
        }
    }

    /// Ends the login `token` (an access or a refresh token) belongs to: both tokens of
    /// its pair.
    pub async fn revoke(&self, token: &str) -> Result<(), Error> {
        self.store
            .take_token(&token_hash(token.trim()))
            .await
            .map_err(Error::internal)?;
        self.access_cache.forget_callers();
        Ok(())
    }

    /// Ends the caller's login: its access token and the refresh token of its pair.
    pub async fn logout(&self, caller: &Caller) -> Result<(), Error> {
        if let Some(hash) = &caller.token_hash {
            self.store.take_token(hash).await.map_err(Error::internal)?;
            self.access_cache.forget_callers();
        }
        Ok(())
    }

    pub async fn whoami(&self, caller: &Caller) -> UserInfo {
        UserInfo {
            name: caller.user.clone(),
            admin: caller.admin,
            spaces: caller.roles.clone(),
        }
    }

    /// Changes the caller's password and ends every other login of theirs.
    pub async fn change_password(
        &self,
        caller: &Caller,
        old: String,
        new: String,
    ) -> Result<(), Error> {
        if caller.token_hash.is_none() {
            return Err(Error::new(
                ErrorKind::Refused,
                "no-password",
                "the admin token has no password to change",
                Some("to change the admin token, replace paasd's admin-token file and restart it"),
            ));
        }
        check_password(&new)?;
        // Guessing the current password is guessing a login: the same limits.
        if let Some(wait) = self.login_limits.attempt(&caller.user, caller.address) {
            return Err(too_many(&caller.user, wait));
        }
        let doc = self
            .store
            .user(&caller.user)
            .await
            .map_err(Error::internal)?;
        let hash = doc.and_then(|d| d.password_hash);
        if !verify_password(old, hash).await {
            return Err(Error::new(
                ErrorKind::Forbidden,
                "wrong-password",
                "the current password is wrong",
                None,
            ));
        }
        self.login_limits.succeeded(&caller.user, caller.address);
        let hashed = hash_password(new).await?;
        self.store
            .update_user(&caller.user, |u| u.password_hash = Some(hashed.clone()))
            .await
            .map_err(Error::internal)?
            .ok_or_else(|| user_not_found(&caller.user))?;
        // Every other login ends; this one (its access token, whose partner is its
        // refresh token, and that refresh token, whose partner is it) stays.
        let mine = caller.token_hash.clone().unwrap_or_default();
        let own_refresh = self
            .store
            .token(&mine)
            .await
            .map_err(Error::internal)?
            .map(|t| t.partner)
            .unwrap_or_default();
        let me = caller.user.clone();
        self.store
            .delete_tokens_where(|t| t.user == me && t.partner != mine && t.partner != own_refresh)
            .await
            .map_err(Error::internal)?;
        self.access_cache.forget_callers();
        Ok(())
    }

    pub async fn create_user(&self, req: CreateUser) -> Result<UserInfo, Error> {
        check_label("user", &req.name).map_err(invalid)?;
        if req.name == BOOTSTRAP_ADMIN {
            return Err(Error::new(
                ErrorKind::Conflict,
                "name-taken",
                format!("{BOOTSTRAP_ADMIN} is the name of the admin token's user"),
                Some("choose another name"),
            ));
        }
        let password_hash = match req.password {
            Some(p) => {
                check_password(&p)?;
                Some(hash_password(p).await?)
            }
            None => None,
        };
        let doc = UserDoc {
            name: req.name.clone(),
            password_hash,
            admin: req.admin,
            roles: BTreeMap::new(),
            created_at: now(),
        };
        if !self
            .store
            .create_user(&doc)
            .await
            .map_err(Error::internal)?
        {
            return Err(Error::new(
                ErrorKind::Conflict,
                "user-exists",
                format!("user {} exists", req.name),
                None,
            ));
        }
        Ok(info(&doc))
    }

    pub async fn delete_user(&self, name: &str) -> Result<(), Error> {
        let deleted = self
            .store
            .delete_user(name)
            .await
            .map_err(Error::internal)?;
        self.access_cache.forget_callers();
        if deleted {
            Ok(())
        } else {
            Err(user_not_found(name))
        }
    }

    pub async fn users(&self) -> Result<Vec<UserInfo>, Error> {
        let users = self.store.users().await.map_err(Error::internal)?;
        Ok(users.iter().map(info).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tries_count_before_their_password_is_checked() {
        let limits = LoginLimits::default();
        let from = Some(IpAddr::from([10, 0, 0, 1]));
        // Five tries sent at once, none of them checked yet: the sixth waits.
        for _ in 0..FAILURES_PER_USER {
            assert_eq!(limits.attempt("eve", from), None);
        }
        assert!(limits.attempt("eve", from).is_some());
        // Another user from the same address still has tries left.
        assert_eq!(limits.attempt("dave", from), None);
        // A right password gives the user back every try.
        limits.succeeded("eve", from);
        assert_eq!(limits.attempt("eve", from), None);
        // A name of a megabyte is kept as its first 64 characters.
        let long = "x".repeat(1 << 20);
        limits.attempt(&long, from);
        let failures = limits.failures.lock().unwrap();
        assert!(failures.keys().all(|k| k.len() < 100));
    }
}
