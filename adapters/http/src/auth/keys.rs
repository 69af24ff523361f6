//! The public keys tokens are verified with: one PEM key, or a JWK Set (RFC 7517) read from a
//! file or fetched from a URL and fetched again when a token names a key it does not hold
//! (rotation by `kid`) or when it is older than [`MAX_AGE`].

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};

use super::ASYMMETRIC;

/// A fetched key set is fetched again after this long.
pub(crate) const MAX_AGE: Duration = Duration::from_secs(600);
/// An unknown `kid` fetches the set again at most this often, so forged kids cannot flood the
/// issuer.
const REFETCH_AT_MOST_EVERY: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("not a PEM public key of type Ed25519, EC (P-256/P-384) or RSA")]
    Pem,
    #[error("not a JWK Set: {0}")]
    Jwks(String),
    #[error("the JWK Set has no asymmetric signing key")]
    NoKeys,
    #[error("cannot fetch the JWK Set from {url}: {reason}")]
    Fetch { url: String, reason: String },
}

/// A public key and the algorithms it may verify.
#[derive(Clone)]
struct PublicKey {
    key: DecodingKey,
    algorithms: Vec<Algorithm>,
}

#[derive(Clone, Default)]
struct Keys {
    by_kid: HashMap<String, PublicKey>,
    /// Keys without a `kid`: used for tokens without one.
    unnamed: Vec<PublicKey>,
}

impl Keys {
    fn find(&self, kid: Option<&str>, alg: Algorithm) -> Option<DecodingKey> {
        let fits = |k: &&PublicKey| k.algorithms.contains(&alg);
        match kid {
            Some(kid) => self.by_kid.get(kid).filter(fits),
            // A token without a `kid` is only accepted where the choice is unambiguous.
            None => match (self.unnamed.as_slice(), self.by_kid.len()) {
                ([only], 0) => Some(only).filter(fits),
                ([], 1) => self.by_kid.values().next().filter(fits),
                _ => None,
            },
        }
        .map(|k| k.key.clone())
    }

    fn len(&self) -> usize {
        self.by_kid.len() + self.unnamed.len()
    }
}

enum Source {
    Fixed,
    File(PathBuf),
    Url(String),
}

struct Fetched {
    keys: Keys,
    at: Instant,
}

/// The keys a service verifies tokens with.
pub struct KeyRing {
    source: Source,
    current: RwLock<Fetched>,
    refetch: tokio::sync::Mutex<Option<Instant>>,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let source = match &self.source {
            Source::Fixed => "fixed".to_owned(),
            Source::File(path) => format!("file {}", path.display()),
            Source::Url(url) => format!("url {url}"),
        };
        f.debug_struct("KeyRing")
            .field("source", &source)
            .field(
                "keys",
                &self
                    .current
                    .read()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .keys
                    .len(),
            )
            .finish()
    }
}

fn algorithms_of(family: jsonwebtoken::AlgorithmFamily) -> Vec<Algorithm> {
    ASYMMETRIC
        .into_iter()
        .filter(|a| a.family() == family)
        .collect()
}

/// A JWK's key and algorithms; `None` for keys not meant for verifying signatures.
fn from_jwk(jwk: &Jwk) -> Option<PublicKey> {
    if matches!(jwk.algorithm, AlgorithmParameters::OctetKey(_))
        || matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption))
    {
        return None;
    }
    let key = DecodingKey::from_jwk(jwk).ok()?;
    let algorithms = match jwk.common.key_algorithm {
        Some(named) => vec![Algorithm::try_from(named).ok()?],
        None => algorithms_of(key.family()),
    };
    let algorithms: Vec<_> = algorithms
        .into_iter()
        .filter(|a| ASYMMETRIC.contains(a))
        .collect();
    (!algorithms.is_empty()).then_some(PublicKey { key, algorithms })
}

fn parse_jwks(json: &[u8]) -> Result<Keys, KeyError> {
    let set: JwkSet = serde_json::from_slice(json).map_err(|e| KeyError::Jwks(e.to_string()))?;
    let mut keys = Keys::default();
    for jwk in &set.keys {
        let Some(key) = from_jwk(jwk) else { continue };
        match &jwk.common.key_id {
            Some(kid) => {
                keys.by_kid.insert(kid.clone(), key);
            }
            None => keys.unnamed.push(key),
        }
    }
    if keys.len() == 0 {
        return Err(KeyError::NoKeys);
    }
    Ok(keys)
}

fn read(path: &PathBuf) -> Result<Vec<u8>, KeyError> {
    std::fs::read(path).map_err(|source| KeyError::Read {
        path: path.clone(),
        source,
    })
}

async fn fetch(url: &str) -> Result<Keys, KeyError> {
    let failed = |reason: String| KeyError::Fetch {
        url: url.to_owned(),
        reason,
    };
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| failed(e.to_string()))?;
    let response = client
        .get(url)
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(|e| failed(e.to_string()))?;
    let body = response.bytes().await.map_err(|e| failed(e.to_string()))?;
    parse_jwks(&body)
}

impl KeyRing {
    fn with(source: Source, keys: Keys) -> Self {
        Self {
            source,
            current: RwLock::new(Fetched {
                keys,
                at: Instant::now(),
            }),
            refetch: tokio::sync::Mutex::new(None),
        }
    }

    /// One public key in PEM (`-----BEGIN PUBLIC KEY-----`): Ed25519, EC or RSA.
    ///
    /// # Errors
    /// [`KeyError::Pem`] for anything else.
    pub fn from_pem(pem: &[u8]) -> Result<Self, KeyError> {
        let key = DecodingKey::from_ed_pem(pem)
            .or_else(|_| DecodingKey::from_ec_pem(pem))
            .or_else(|_| DecodingKey::from_rsa_pem(pem))
            .map_err(|_| KeyError::Pem)?;
        let algorithms = algorithms_of(key.family());
        Ok(Self::with(
            Source::Fixed,
            Keys {
                by_kid: HashMap::new(),
                unnamed: vec![PublicKey { key, algorithms }],
            },
        ))
    }

    /// A PEM public key from a file.
    ///
    /// # Errors
    /// The file cannot be read or holds no PEM public key.
    pub fn from_pem_file(path: impl Into<PathBuf>) -> Result<Self, KeyError> {
        Self::from_pem(&read(&path.into())?)
    }

    /// A JWK Set given as JSON, used as it is.
    ///
    /// # Errors
    /// Not a JWK Set, or one without an asymmetric signing key.
    pub fn from_jwks(json: &[u8]) -> Result<Self, KeyError> {
        Ok(Self::with(Source::Fixed, parse_jwks(json)?))
    }

    /// A JWK Set in a file, read again when a token names an unknown key (a rotated secret
    /// mount) or after [`MAX_AGE`].
    ///
    /// # Errors
    /// As [`Self::from_jwks`], or the file cannot be read.
    pub fn from_jwks_file(path: impl Into<PathBuf>) -> Result<Self, KeyError> {
        let path = path.into();
        let keys = parse_jwks(&read(&path)?)?;
        Ok(Self::with(Source::File(path), keys))
    }

    /// A JWK Set fetched from `url` now, and again when a token names an unknown key or after
    /// [`MAX_AGE`]. A failed re-fetch keeps the keys held.
    ///
    /// # Errors
    /// The first fetch fails, or gives no usable key.
    pub async fn from_jwks_url(url: &str) -> Result<Self, KeyError> {
        let keys = fetch(url).await?;
        Ok(Self::with(Source::Url(url.to_owned()), keys))
    }

    /// A ring of this one key, named `kid`.
    pub(crate) fn single(kid: String, key: DecodingKey, algorithm: Algorithm) -> Self {
        Self::with(
            Source::Fixed,
            Keys {
                by_kid: HashMap::from([(
                    kid,
                    PublicKey {
                        key,
                        algorithms: vec![algorithm],
                    },
                )]),
                unnamed: Vec::new(),
            },
        )
    }

    /// The held key for `kid` and `alg`, and how old the held set is.
    fn held(&self, kid: Option<&str>, alg: Algorithm) -> (Option<DecodingKey>, Duration) {
        let current = self
            .current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        (current.keys.find(kid, alg), current.at.elapsed())
    }

    /// The key for a token's `kid` and `alg`, fetching the set again when it is stale or does not
    /// hold the key.
    pub(crate) async fn find(&self, kid: Option<&str>, alg: Algorithm) -> Option<DecodingKey> {
        if !ASYMMETRIC.contains(&alg) {
            return None;
        }
        let (key, age) = self.held(kid, alg);
        if matches!(self.source, Source::Fixed) || (key.is_some() && age < MAX_AGE) {
            return key;
        }
        self.refresh().await;
        self.held(kid, alg).0
    }

    async fn refresh(&self) {
        let fetched = {
            let mut last = self.refetch.lock().await;
            if last.is_some_and(|at| at.elapsed() < REFETCH_AT_MOST_EVERY) {
                return;
            }
            *last = Some(Instant::now());
            match &self.source {
                Source::Fixed => return,
                Source::File(path) => read(path).and_then(|json| parse_jwks(&json)),
                Source::Url(url) => fetch(url).await,
            }
        };
        match fetched {
            Ok(keys) => {
                let fresh = Fetched {
                    keys,
                    at: Instant::now(),
                };
                *self
                    .current
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = fresh;
            }
            Err(e) => {
                tracing::warn!(error = %e, "the token keys could not be refreshed; the old ones stay");
            }
        }
    }
}
