//! Development tokens: an Ed25519 key pair made on first use and kept in one file, so that every
//! process on a machine (the services, `ordership token`, `ordership load`) signs and verifies
//! with the same key. Never for production: whoever can read the file can mint any token.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::Algorithm;
use jsonwebtoken::jwk::Jwk;
use rand::RngCore;
use serde::Serialize;

use super::ed25519::Ed25519Key;
use super::{Authenticator, KeyRing, Scope};

/// The `iss` of development tokens.
pub const DEV_ISSUER: &str = "ordership-dev";
/// The `aud` of development tokens (and the default audience of the services).
pub const DEV_AUDIENCE: &str = "ordership";

/// The PKCS#8 (RFC 5208) header of an Ed25519 private key (RFC 8410): a version, the algorithm
/// identifier 1.3.101.112, then the 32-byte seed as an octet string.
const ED25519_PKCS8_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

#[derive(Debug, thiserror::Error)]
pub enum DevKeyError {
    #[error("cannot use the development key file {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not an Ed25519 private key in PEM; delete it to make a new one")]
    NotAKey { path: PathBuf },
    #[error("cannot sign a token: {0}")]
    Sign(#[from] jsonwebtoken::errors::Error),
}

/// The development signing key.
pub struct DevKey {
    key: Ed25519Key,
}

impl std::fmt::Debug for DevKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevKey")
            .field("kid", &self.key.kid())
            .finish_non_exhaustive()
    }
}

#[derive(Serialize)]
struct MintedClaims<'a> {
    iss: &'a str,
    aud: &'a str,
    sub: &'a str,
    scope: String,
    iat: u64,
    exp: u64,
}

/// A new random Ed25519 private key in PEM (PKCS#8).
pub(crate) fn new_key_pem() -> String {
    let mut seed = [0_u8; 32];
    rand::rng().fill_bytes(&mut seed);
    let mut der = ED25519_PKCS8_PREFIX.to_vec();
    der.extend_from_slice(&seed);
    pem::encode(&pem::Pem::new("PRIVATE KEY", der))
}

impl DevKey {
    /// A fresh key held in memory only (tests, embedding).
    #[must_use]
    pub fn generate() -> Self {
        // A PEM we have just written always parses.
        Self::from_pem(new_key_pem().as_bytes()).unwrap_or_else(|| unreachable!())
    }

    fn from_pem(pem: &[u8]) -> Option<Self> {
        Ed25519Key::from_pem(pem).map(|key| Self { key })
    }

    /// Where the key is kept unless told otherwise: `$XDG_STATE_HOME/ordership/` or
    /// `~/.local/state/ordership/`, else the temporary directory.
    #[must_use]
    pub fn default_path() -> PathBuf {
        let base = std::env::var_os("XDG_STATE_HOME")
            .filter(|d| !d.is_empty())
            .map(PathBuf::from)
            .or_else(|| {
                std::env::var_os("HOME")
                    .filter(|d| !d.is_empty())
                    .map(|home| PathBuf::from(home).join(".local/state"))
            })
            .unwrap_or_else(std::env::temp_dir);
        base.join("ordership").join("dev-signing-key.pem")
    }

    /// The key in `path`, made there first if the file does not exist. Processes starting
    /// together agree on one key: the file appears whole or not at all, and the first one made
    /// wins.
    ///
    /// # Errors
    /// The file cannot be read or written, or holds something else.
    pub fn load_or_create(path: &Path) -> Result<Self, DevKeyError> {
        let io = |source| DevKeyError::Io {
            path: path.to_owned(),
            source,
        };
        match std::fs::read(path) {
            Ok(pem) => {
                return Self::from_pem(&pem).ok_or_else(|| DevKeyError::NotAKey {
                    path: path.to_owned(),
                });
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(e)),
        }
        let dir = path.parent().unwrap_or_else(|| Path::new("."));
        std::fs::create_dir_all(dir).map_err(io)?;
        let draft = dir.join(format!(
            ".dev-signing-key.{}.{}",
            std::process::id(),
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos()
        ));
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let written = options
            .open(&draft)
            .and_then(|mut file| file.write_all(new_key_pem().as_bytes()))
            .and_then(|()| match std::fs::hard_link(&draft, path) {
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
                other => other,
            });
        let _ = std::fs::remove_file(&draft);
        written.map_err(io)?;
        let pem = std::fs::read(path).map_err(io)?;
        Self::from_pem(&pem).ok_or_else(|| DevKeyError::NotAKey {
            path: path.to_owned(),
        })
    }

    /// The public key as a JWK (with its `kid`), as an issuer publishes it in its JWK Set.
    #[must_use]
    pub fn jwk(&self) -> &Jwk {
        self.key.jwk()
    }

    /// The key id (its RFC 7638 thumbprint).
    #[must_use]
    pub fn kid(&self) -> &str {
        self.key.kid()
    }

    /// A token for `subject` with these scopes, valid for `ttl`.
    ///
    /// # Errors
    /// Signing failed.
    pub fn mint(
        &self,
        subject: &str,
        scopes: &[Scope],
        ttl: Duration,
    ) -> Result<String, DevKeyError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let claims = MintedClaims {
            iss: DEV_ISSUER,
            aud: DEV_AUDIENCE,
            sub: subject,
            scope: scopes
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(" "),
            iat: now,
            exp: now.saturating_add(ttl.as_secs()),
        };
        self.sign(&claims)
    }

    /// Signs any claims (a test's expired or foreign token, say).
    ///
    /// # Errors
    /// The claims do not serialize, or signing failed.
    pub fn sign(&self, claims: &impl Serialize) -> Result<String, DevKeyError> {
        Ok(self.key.sign(claims)?)
    }

    /// Verifies development tokens (issuer `ordership-dev`, audience `ordership`).
    #[must_use]
    pub fn authenticator(&self) -> Authenticator {
        Authenticator::new(
            KeyRing::single(
                self.key.kid().to_owned(),
                self.key.verifying().clone(),
                Algorithm::EdDSA,
            ),
            DEV_ISSUER,
            DEV_AUDIENCE,
        )
    }
}
