//! API keys of `earmark serve` and the `earmark keys` command.
//!
//! A key reads `em_<id>_<secret>`: the id names the key (it is shown by
//! `keys list` and in logs), the secret is 32 random bytes. The store keeps
//! only the BLAKE3 hash of the secret; the secret is high-entropy, so a fast
//! hash is enough, and `blake3::Hash` compares in constant time.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use crate::Outcome;
use crate::cli::{KeysAddArgs, KeysListArgs, KeysRevokeArgs};

/// The store's file in the catalog directory.
pub const KEYS_FILE: &str = "keys.json";

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Everything: the catalog, licences, every event.
    Admin,
    /// Upload plays for its events and read their reports.
    Monitor,
    /// Read tracks, coverage and reports, identify clips.
    Lookup,
}

impl Role {
    /// The role's name as keys and errors spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Monitor => "monitor",
            Self::Lookup => "lookup",
        }
    }
}

/// A stored key: everything but its secret.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApiKey {
    /// Public part of the key.
    pub id: String,
    /// Who or what holds it.
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// Events a monitor key may upload to (every event when empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<String>,
    /// BLAKE3 of the secret, in hex.
    pub hash: String,
    /// When it was made (RFC 3339).
    pub created: String,
}

impl ApiKey {
    /// Whether the key may act for `event`.
    pub fn allows_event(&self, event: &str) -> bool {
        self.role != Role::Monitor
            || self.events.is_empty()
            || self.events.iter().any(|e| e == event)
    }
}

/// The keys of a catalog directory.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct KeyStore {
    keys: Vec<ApiKey>,
}

impl KeyStore {
    /// The store's path in catalog directory `db`.
    pub fn path(db: &Path) -> PathBuf {
        db.join(KEYS_FILE)
    }

    /// Reads the store; a missing file holds no keys.
    pub fn read(db: &Path) -> anyhow::Result<Self> {
        let path = Self::path(db);
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .with_context(|| format!("{}: not an earmark key store", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(e).with_context(|| format!("{}", path.display())),
        }
    }

    fn write(&self, db: &Path) -> anyhow::Result<()> {
        fs::create_dir_all(db).with_context(|| format!("{}", db.display()))?;
        let mut bytes = serde_json::to_vec_pretty(self)?;
        bytes.push(b'\n');
        crate::scan::write_atomically(&Self::path(db), &bytes)
    }

    /// The stored keys.
    pub fn keys(&self) -> &[ApiKey] {
        &self.keys
    }

    /// The key `presented` is, if it is a valid one.
    pub fn verify(&self, presented: &str) -> Option<&ApiKey> {
        let (id, secret) = presented.strip_prefix("em_")?.split_once('_')?;
        let key = self.keys.iter().find(|k| k.id == id)?;
        let stored = blake3::Hash::from_hex(&key.hash).ok()?;
        // `blake3::Hash` equality runs in constant time.
        (stored == blake3::hash(secret.as_bytes())).then_some(key)
    }

    /// Makes a key, stores its hash and returns the key itself (shown once).
    fn add(&mut self, name: &str, role: Role, events: Vec<String>) -> anyhow::Result<String> {
        let mut id = [0u8; 4];
        let mut secret = [0u8; 32];
        getrandom::fill(&mut id).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
        getrandom::fill(&mut secret).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
        let id = hex(&id);
        let secret = hex(&secret);
        self.keys.push(ApiKey {
            id: id.clone(),
            name: name.to_owned(),
            role,
            events,
            hash: blake3::hash(secret.as_bytes()).to_hex().to_string(),
            created: jiff::Timestamp::now().to_string(),
        });
        Ok(format!("em_{id}_{secret}"))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `earmark keys add`: prints the new key once.
pub fn add(args: &KeysAddArgs) -> anyhow::Result<Outcome> {
    if args.role != Role::Monitor && !args.events.is_empty() {
        bail!("--event only applies to monitor keys");
    }
    let mut store = KeyStore::read(&args.db)?;
    let key = store.add(&args.name, args.role, args.events.clone())?;
    store.write(&args.db)?;
    println!("{key}");
    eprintln!("earmark: keep this key: only its hash is stored");
    Ok(Outcome::Done)
}

/// `earmark keys list`.
pub fn list(args: &KeysListArgs) -> anyhow::Result<Outcome> {
    let store = KeyStore::read(&args.db)?;
    if args.json {
        for key in store.keys() {
            let mut value = serde_json::to_value(key)?;
            if let Some(map) = value.as_object_mut() {
                map.remove("hash");
            }
            println!("{value}");
        }
        return Ok(Outcome::Done);
    }
    println!(
        "{:<10} {:<8} {:<26} {:<24} events",
        "id", "role", "created", "name"
    );
    for key in store.keys() {
        println!(
            "{:<10} {:<8} {:<26} {:<24} {}",
            key.id,
            key.role.as_str(),
            key.created,
            key.name,
            if key.role == Role::Monitor && key.events.is_empty() {
                "all".to_owned()
            } else {
                key.events.join(",")
            }
        );
    }
    Ok(Outcome::Done)
}

/// `earmark keys revoke`: a running server refuses the key within a second.
pub fn revoke(args: &KeysRevokeArgs) -> anyhow::Result<Outcome> {
    let mut store = KeyStore::read(&args.db)?;
    let before = store.keys.len();
    store.keys.retain(|k| k.id != args.id);
    if store.keys.len() == before {
        bail!("no key {} in {}", args.id, args.db.display());
    }
    store.write(&args.db)?;
    println!("revoked {}", args.id);
    Ok(Outcome::Done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_verifies_and_a_changed_one_does_not() -> anyhow::Result<()> {
        let mut store = KeyStore::default();
        let key = store.add("laptop", Role::Monitor, vec!["show-a".into()])?;
        let found = store.verify(&key).map(|k| k.name.clone());
        assert_eq!(found.as_deref(), Some("laptop"));
        let mut changed = key.clone().into_bytes();
        let last = changed.len() - 1;
        changed[last] = if changed[last] == b'0' { b'1' } else { b'0' };
        assert!(store.verify(&String::from_utf8(changed)?).is_none());
        assert!(store.verify("em_nothing").is_none());
        assert!(store.verify("").is_none());
        assert!(!store.keys()[0].allows_event("show-b"));
        assert!(store.keys()[0].allows_event("show-a"));
        Ok(())
    }
}
