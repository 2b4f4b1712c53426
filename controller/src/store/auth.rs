//! Users, their tokens and spaces.
//!
//! - `users/NAME`: the user, its password hash (none for a user of tokens only), whether
//!   it is a platform admin, and its roles by space (kept with the user, so that finding
//!   what a caller may do is one read).
//! - `tokens/HASH`: a token by the SHA-256 of its text (the text itself is never
//!   stored): whose it is, whether it is an access or a refresh token, when it expires,
//!   and the hash of the other token of its pair, so that logging out or refreshing ends
//!   both.
//! - `spaces/NAME`: a space and its quota.

use std::collections::{BTreeMap, BTreeSet};

use paas_api::auth::{Quota, Role};
use paas_kv::{Compare, Kv, Op, Txn};
use serde::{Deserialize, Serialize};

use super::{decode, encode, guarded, keys, put, Store, StoreError, CAS_TRIES};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserDoc {
    pub name: String,
    /// The PHC string of an Argon2id hash; `None`: the user cannot log in with a
    /// password.
    #[serde(default)]
    pub password_hash: Option<String>,
    #[serde(default)]
    pub admin: bool,
    #[serde(default)]
    pub roles: BTreeMap<String, BTreeSet<Role>>,
    pub created_at: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenKind {
    Access,
    Refresh,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenDoc {
    pub user: String,
    pub kind: TokenKind,
    /// Seconds since the epoch.
    pub expires_at: i64,
    /// The hash of the other token of the pair.
    pub partner: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpaceDoc {
    pub name: String,
    pub guid: String,
    #[serde(default)]
    pub quota: Quota,
    pub created_at: i64,
}

impl Store {
    pub async fn user(&self, name: &str) -> Result<Option<UserDoc>, StoreError> {
        match self.kv.get(&keys::user(name)).await? {
            Some(kv) => Ok(Some(decode(&kv)?)),
            None => Ok(None),
        }
    }

    /// Every user, by name.
    pub async fn users(&self) -> Result<Vec<UserDoc>, StoreError> {
        let (kvs, _) = self.kv.range(keys::USERS).await?;
        kvs.iter().map(decode).collect()
    }

    /// Creates `doc`; `false` if a user of its name exists.
    pub async fn create_user(&self, doc: &UserDoc) -> Result<bool, StoreError> {
        let key = keys::user(&doc.name);
        let txn = guarded(&key, 0, vec![put(key.clone(), encode(doc))]);
        Ok(self.kv.txn(txn).await?.succeeded)
    }

    /// Changes user `name` with `change`; `None` if there is none.
    pub async fn update_user<T>(
        &self,
        name: &str,
        mut change: impl FnMut(&mut UserDoc) -> T,
    ) -> Result<Option<T>, StoreError> {
        let key = keys::user(name);
        for _ in 0..CAS_TRIES {
            let Some(kv) = self.kv.get(&key).await? else {
                return Ok(None);
            };
            let mut doc: UserDoc = decode(&kv)?;
            let out = change(&mut doc);
            let txn = guarded(&key, kv.mod_revision, vec![put(key.clone(), encode(&doc))]);
            if self.kv.txn(txn).await?.succeeded {
                return Ok(Some(out));
            }
        }
        Err(StoreError::Contended(format!("user {name}")))
    }

    /// Deletes user `name` and every token of theirs; `false` if there was none.
    pub async fn delete_user(&self, name: &str) -> Result<bool, StoreError> {
        let key = keys::user(name);
        if self.kv.get(&key).await?.is_none() {
            return Ok(false);
        }
        self.kv.delete(&key).await?;
        self.delete_tokens_where(|t| t.user == name).await?;
        Ok(true)
    }

    pub async fn token(&self, hash: &str) -> Result<Option<TokenDoc>, StoreError> {
        match self.kv.get(&keys::token(hash)).await? {
            Some(kv) => Ok(Some(decode(&kv)?)),
            None => Ok(None),
        }
    }

    /// Stores a pair of tokens, both or neither.
    pub async fn put_token_pair(
        &self,
        access: (&str, &TokenDoc),
        refresh: (&str, &TokenDoc),
    ) -> Result<(), StoreError> {
        let txn = Txn {
            when: Vec::new(),
            then: vec![
                put(keys::token(access.0), encode(access.1)),
                put(keys::token(refresh.0), encode(refresh.1)),
            ],
            otherwise: Vec::new(),
        };
        self.kv.txn(txn).await?;
        Ok(())
    }

    /// Takes the token of `hash` out of the store with its partner: `Some` only for the
    /// one caller that took it, so a refresh token is used once.
    pub async fn take_token(&self, hash: &str) -> Result<Option<TokenDoc>, StoreError> {
        let key = keys::token(hash);
        let Some(kv) = self.kv.get(&key).await? else {
            return Ok(None);
        };
        let doc: TokenDoc = decode(&kv)?;
        let txn = Txn {
            when: vec![Compare::ModRevision(key.clone(), kv.mod_revision)],
            then: vec![
                Op::Delete { key },
                Op::Delete {
                    key: keys::token(&doc.partner),
                },
            ],
            otherwise: Vec::new(),
        };
        Ok(self.kv.txn(txn).await?.succeeded.then_some(doc))
    }

    /// Deletes every token `doomed` picks (a user's, the expired ones).
    pub async fn delete_tokens_where(
        &self,
        doomed: impl Fn(&TokenDoc) -> bool,
    ) -> Result<usize, StoreError> {
        let (kvs, _) = self.kv.range(keys::TOKENS).await?;
        let mut n = 0;
        for kv in kvs {
            // A token that does not read is of no use to anyone: it goes too.
            if decode::<TokenDoc>(&kv).map_or(true, |t| doomed(&t)) {
                self.kv.delete(&kv.key).await?;
                n += 1;
            }
        }
        Ok(n)
    }

    pub async fn space(&self, name: &str) -> Result<Option<SpaceDoc>, StoreError> {
        match self.kv.get(&keys::space(name)).await? {
            Some(kv) => Ok(Some(decode(&kv)?)),
            None => Ok(None),
        }
    }

    /// Every space, by name.
    pub async fn spaces(&self) -> Result<Vec<SpaceDoc>, StoreError> {
        let (kvs, _) = self.kv.range(keys::SPACES).await?;
        kvs.iter().map(decode).collect()
    }

    /// Creates `doc`; `false` if a space of its name exists.
    pub async fn create_space(&self, doc: &SpaceDoc) -> Result<bool, StoreError> {
        let key = keys::space(&doc.name);
        let txn = guarded(&key, 0, vec![put(key.clone(), encode(doc))]);
        Ok(self.kv.txn(txn).await?.succeeded)
    }

    /// Changes space `name` with `change`; `None` if there is none.
    pub async fn update_space(
        &self,
        name: &str,
        mut change: impl FnMut(&mut SpaceDoc),
    ) -> Result<Option<SpaceDoc>, StoreError> {
        let key = keys::space(name);
        for _ in 0..CAS_TRIES {
            let Some(kv) = self.kv.get(&key).await? else {
                return Ok(None);
            };
            let mut doc: SpaceDoc = decode(&kv)?;
            change(&mut doc);
            let txn = guarded(&key, kv.mod_revision, vec![put(key.clone(), encode(&doc))]);
            if self.kv.txn(txn).await?.succeeded {
                return Ok(Some(doc));
            }
        }
        Err(StoreError::Contended(format!("space {name}")))
    }

    /// Deletes space `name` (the caller checked it is empty) and every role in it.
    pub async fn delete_space(&self, name: &str) -> Result<bool, StoreError> {
        let key = keys::space(name);
        if self.kv.get(&key).await?.is_none() {
            return Ok(false);
        }
        self.kv.delete(&key).await?;
        for user in self.users().await? {
            if user.roles.contains_key(name) {
                self.update_user(&user.name, |u| u.roles.remove(name))
                    .await?;
            }
        }
        Ok(true)
    }
}
