//! API tokens and roles: who may call which route.
//!
//! A token is a bearer secret (`mc_` and 32 hex digits, 128 random bits) with
//! a name and one [`Role`]. Roles are ordered: each includes the ones below it.
//!
//! | role | may |
//! |---|---|
//! | `reader` | every `GET` (unless reads are configured open) |
//! | `writer` | also `PUT` / `DELETE /v1/knowledge/…` |
//! | `operator` | also models, imports, training and campaigns (every other mutating route) |
//! | `admin` | also `/v1/tokens` (add, list, revoke) |
//!
//! `/healthz` needs no token. Only each token's BLAKE3 hash is stored (sled
//! tree `tokens`); a revoked token keeps its record with `revoked_at_ms`, so
//! it takes effect at once, survives restarts, and an `MC_ADMIN_TOKEN` that was
//! revoked is not re-admitted. On first start with no admin token, the node
//! creates one, writes it to `DATA_DIR/admin.token` (mode 0600) and prints it once.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::RwLock;

use axum::http::Method;
use serde::{Deserialize, Serialize};

/// The environment variable that hands a node an admin token to accept.
pub const ADMIN_TOKEN_ENV: &str = "MC_ADMIN_TOKEN";
/// The file a node writes its generated admin token to.
pub const ADMIN_TOKEN_FILE: &str = "admin.token";

/// What a token may do; each role includes the ones before it.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads.
    Reader,
    /// Reads and knowledge writes.
    Writer,
    /// Also models, training and campaigns.
    Operator,
    /// Also tokens.
    Admin,
}

impl Role {
    /// The lower-case name used in JSON and errors.
    pub fn name(self) -> &'static str {
        match self {
            Role::Reader => "reader",
            Role::Writer => "writer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }
}

/// Why a token operation failed.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// sled failed.
    #[error("token store: {0}")]
    Sled(#[from] sled::Error),
    /// A stored record does not parse.
    #[error("token store: corrupt record {0}")]
    Corrupt(String),
    /// The token given in `MC_ADMIN_TOKEN` is unusable.
    #[error("{ADMIN_TOKEN_ENV} must be 16 to 256 visible ASCII characters without spaces")]
    BadEnvToken,
    /// Writing `admin.token` failed.
    #[error("cannot write {path}: {source}")]
    TokenFile {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The name of a new token is unusable.
    #[error("a token name must be 1 to 64 characters")]
    BadName,
    /// No token with that id.
    #[error("no token with id {0}")]
    NotFound(String),
    /// Revoking it would leave the node without an admin token.
    #[error("token {0} is the last admin token; create another admin token first")]
    LastAdmin(String),
}

/// One stored token (its hash, never the secret).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct Record {
    id: String,
    name: String,
    role: Role,
    hash: String,
    created_at_ms: u64,
    revoked_at_ms: Option<u64>,
}

/// A token as the API lists it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TokenView {
    /// Public handle, used to revoke it.
    pub id: String,
    pub name: String,
    pub role: Role,
    pub created_at_ms: u64,
}

impl From<&Record> for TokenView {
    fn from(r: &Record) -> Self {
        Self {
            id: r.id.clone(),
            name: r.name.clone(),
            role: r.role,
            created_at_ms: r.created_at_ms,
        }
    }
}

/// The node's tokens: a sled tree and an in-memory index by hash.
#[derive(Debug)]
pub struct Tokens {
    tree: sled::Tree,
    by_hash: RwLock<HashMap<String, Record>>,
    open_reads: bool,
}

fn hash_of(token: &str) -> String {
    blake3::hash(token.as_bytes()).to_hex().to_string()
}

fn random_hex(bytes: usize) -> String {
    (0..bytes)
        .map(|_| format!("{:02x}", rand::random::<u8>()))
        .collect()
}

impl Tokens {
    /// Opens the `tokens` tree of `db`. With `open_reads`, `GET` routes need
    /// no token.
    pub fn open(db: &sled::Db, open_reads: bool) -> Result<Self, AuthError> {
        let tree = db.open_tree("tokens")?;
        let mut by_hash = HashMap::new();
        for item in tree.iter() {
            let (key, value) = item?;
            let record: Record = serde_json::from_slice(&value)
                .map_err(|_| AuthError::Corrupt(String::from_utf8_lossy(&key).into_owned()))?;
            by_hash.insert(record.hash.clone(), record);
        }
        Ok(Self {
            tree,
            by_hash: RwLock::new(by_hash),
            open_reads,
        })
    }

    /// Whether `GET` routes are open.
    pub fn open_reads(&self) -> bool {
        self.open_reads
    }

    /// Makes sure the node has an admin token. `env_token` (from
    /// `MC_ADMIN_TOKEN`) is admitted unless it was revoked; otherwise, when no
    /// admin token exists, a new one is created and written to
    /// `DATA_DIR/admin.token`. Returns the new token, to print once.
    pub fn bootstrap(
        &self,
        data_dir: &Path,
        env_token: Option<&str>,
        now_ms: u64,
    ) -> Result<Option<String>, AuthError> {
        if let Some(token) = env_token {
            let usable =
                (16..=256).contains(&token.len()) && token.bytes().all(|b| b.is_ascii_graphic());
            if !usable {
                return Err(AuthError::BadEnvToken);
            }
            let hash = hash_of(token);
            let known = self.by_hash.read().expect("lock").get(&hash).cloned();
            match known {
                Some(r) if r.revoked_at_ms.is_some() => {
                    tracing::warn!(id = %r.id, "{ADMIN_TOKEN_ENV} was revoked; not re-admitted");
                }
                Some(_) => {}
                None => {
                    self.insert(token, "MC_ADMIN_TOKEN", Role::Admin, now_ms)?;
                }
            }
        }
        let has_admin = self
            .by_hash
            .read()
            .expect("lock")
            .values()
            .any(|r| r.role == Role::Admin && r.revoked_at_ms.is_none());
        if has_admin {
            return Ok(None);
        }
        let (_, token) = self.create("admin", Role::Admin, now_ms)?;
        let path = data_dir.join(ADMIN_TOKEN_FILE);
        write_secret(&path, &token).map_err(|source| AuthError::TokenFile { path, source })?;
        Ok(Some(token))
    }

    /// A new random token.
    pub fn create(
        &self,
        name: &str,
        role: Role,
        now_ms: u64,
    ) -> Result<(TokenView, String), AuthError> {
        if name.is_empty() || name.chars().count() > 64 {
            return Err(AuthError::BadName);
        }
        let token = format!("mc_{}", random_hex(16));
        let view = self.insert(&token, name, role, now_ms)?;
        Ok((view, token))
    }

    fn insert(
        &self,
        token: &str,
        name: &str,
        role: Role,
        now_ms: u64,
    ) -> Result<TokenView, AuthError> {
        let mut by_hash = self.by_hash.write().expect("lock");
        let id = loop {
            let id = random_hex(4);
            if !by_hash.values().any(|r| r.id == id) {
                break id;
            }
        };
        let record = Record {
            id,
            name: name.to_owned(),
            role,
            hash: hash_of(token),
            created_at_ms: now_ms,
            revoked_at_ms: None,
        };
        self.persist(&record)?;
        let view = TokenView::from(&record);
        by_hash.insert(record.hash.clone(), record);
        Ok(view)
    }

    fn persist(&self, record: &Record) -> Result<(), AuthError> {
        let bytes = serde_json::to_vec(record).expect("a record serialises");
        self.tree.insert(record.id.as_bytes(), bytes)?;
        self.tree.flush()?;
        Ok(())
    }

    /// Revokes the token `id` at once. The last admin token cannot be revoked.
    pub fn revoke(&self, id: &str, now_ms: u64) -> Result<TokenView, AuthError> {
        let mut by_hash = self.by_hash.write().expect("lock");
        let live = |r: &&Record| r.revoked_at_ms.is_none();
        let record = by_hash
            .values()
            .filter(live)
            .find(|r| r.id == id)
            .cloned()
            .ok_or_else(|| AuthError::NotFound(id.to_owned()))?;
        let admins = by_hash
            .values()
            .filter(live)
            .filter(|r| r.role == Role::Admin)
            .count();
        if record.role == Role::Admin && admins == 1 {
            return Err(AuthError::LastAdmin(id.to_owned()));
        }
        let revoked = Record {
            revoked_at_ms: Some(now_ms),
            ..record
        };
        self.persist(&revoked)?;
        let view = TokenView::from(&revoked);
        by_hash.insert(revoked.hash.clone(), revoked);
        Ok(view)
    }

    /// The live tokens, by id.
    pub fn list(&self) -> Vec<TokenView> {
        let by_hash = self.by_hash.read().expect("lock");
        let mut views: Vec<TokenView> = by_hash
            .values()
            .filter(|r| r.revoked_at_ms.is_none())
            .map(TokenView::from)
            .collect();
        views.sort_by(|a, b| a.id.cmp(&b.id));
        views
    }

    /// The live token whose secret is `token`.
    pub fn check(&self, token: &str) -> Option<TokenView> {
        let by_hash = self.by_hash.read().expect("lock");
        by_hash
            .get(&hash_of(token))
            .filter(|r| r.revoked_at_ms.is_none())
            .map(TokenView::from)
    }
}

/// Writes `secret` to a new file readable by its owner only (replacing an
/// older one).
fn write_secret(path: &Path, secret: &str) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    writeln!(file, "{secret}")?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// The role a request needs; `None` for open routes.
pub fn required_role(method: &Method, path: &str, open_reads: bool) -> Option<Role> {
    if path == "/healthz" {
        return None;
    }
    if path == "/v1/tokens" || path.starts_with("/v1/tokens/") {
        return Some(Role::Admin);
    }
    if method == Method::GET || method == Method::HEAD {
        return (!open_reads).then_some(Role::Reader);
    }
    if path.starts_with("/v1/knowledge/") && (method == Method::PUT || method == Method::DELETE) {
        return Some(Role::Writer);
    }
    Some(Role::Operator)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens() -> (tempfile::TempDir, Tokens) {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().temporary(true).open().unwrap();
        (dir, Tokens::open(&db, false).unwrap())
    }

    #[test]
    fn roles_per_route() {
        let get = |p| required_role(&Method::GET, p, false);
        assert_eq!(get("/healthz"), None);
        assert_eq!(get("/status"), Some(Role::Reader));
        assert_eq!(required_role(&Method::GET, "/status", true), None);
        assert_eq!(get("/v1/tokens"), Some(Role::Admin));
        assert_eq!(
            required_role(&Method::PUT, "/v1/knowledge/a/b", true),
            Some(Role::Writer)
        );
        assert_eq!(
            required_role(&Method::DELETE, "/v1/knowledge/a", false),
            Some(Role::Writer)
        );
        for path in ["/v1/campaigns", "/v1/learn/import", "/v1/models/m/train"] {
            assert_eq!(
                required_role(&Method::POST, path, false),
                Some(Role::Operator)
            );
        }
        assert!(Role::Admin > Role::Operator && Role::Writer > Role::Reader);
    }

    #[test]
    fn a_first_start_creates_one_admin_token_in_a_private_file() {
        use std::os::unix::fs::PermissionsExt;
        let (dir, t) = tokens();
        let token = t.bootstrap(dir.path(), None, 1).unwrap().expect("created");
        let path = dir.path().join(ADMIN_TOKEN_FILE);
        assert_eq!(std::fs::read_to_string(&path).unwrap().trim(), token);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(t.check(&token).unwrap().role, Role::Admin);
        assert_eq!(t.bootstrap(dir.path(), None, 2).unwrap(), None);
        assert!(t.check("mc_00000000000000000000000000000000").is_none());
    }

    #[test]
    fn revocation_is_immediate_persistent_and_keeps_an_admin() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new()
            .path(dir.path().join("db"))
            .open()
            .unwrap();
        let t = Tokens::open(&db, false).unwrap();
        let env = "env-admin-token-0123456789";
        assert_eq!(t.bootstrap(dir.path(), Some(env), 1).unwrap(), None);
        let admin = t.check(env).unwrap();
        assert!(matches!(
            t.revoke(&admin.id, 2),
            Err(AuthError::LastAdmin(_))
        ));
        let (reader, secret) = t.create("ci", Role::Reader, 3).unwrap();
        let (_, second_admin) = t.create("ops", Role::Admin, 3).unwrap();
        t.revoke(&reader.id, 4).unwrap();
        assert!(t.check(&secret).is_none());
        t.revoke(&admin.id, 5).unwrap();
        assert!(matches!(
            t.revoke(&admin.id, 6),
            Err(AuthError::NotFound(_))
        ));
        drop(t);
        let t = Tokens::open(&db, false).unwrap();
        assert!(t.check(&secret).is_none());
        assert!(t.check(&second_admin).is_some());
        // A revoked MC_ADMIN_TOKEN stays revoked across restarts.
        assert_eq!(t.bootstrap(dir.path(), Some(env), 7).unwrap(), None);
        assert!(t.check(env).is_none());
        assert_eq!(t.list().len(), 1);
    }

    #[test]
    fn bad_inputs_are_typed_errors() {
        let (dir, t) = tokens();
        assert!(matches!(
            t.bootstrap(dir.path(), Some("short"), 1),
            Err(AuthError::BadEnvToken)
        ));
        assert!(matches!(
            t.create("", Role::Reader, 1),
            Err(AuthError::BadName)
        ));
        assert!(matches!(t.revoke("nope", 1), Err(AuthError::NotFound(_))));
    }
}
