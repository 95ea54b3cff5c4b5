//! The keys a site trusts to sign images (`signature_keys=` in plugstack.conf,
//! `berth sif verify --keys`).
//!
//! A key file is either OpenPGP public keys (armored or binary, as `apptainer key
//! export` writes them; several keys per file are fine) or a PEM public key
//! (`-----BEGIN PUBLIC KEY-----`, SubjectPublicKeyInfo) of a type `apptainer sign
//! --key` makes DSSE signatures with: Ed25519, ECDSA P-256 or RSA. The files are the
//! site's (named by the admin in plugstack.conf), never the job user's.

use std::fmt;
use std::path::{Path, PathBuf};

use pgp::composed::{PublicOrSecret, SignedPublicKey};
use pgp::types::KeyDetails;
use sha2::{Digest, Sha256};

/// The largest key file berth reads (a 4096-bit OpenPGP key with its signatures
/// is a few KiB).
const MAX_KEY_FILE: u64 = 1 << 20;

/// A public key for DSSE signatures, from a PEM file.
#[derive(Clone, Debug)]
pub enum PemKey {
    Ed25519(ed25519_dalek::VerifyingKey),
    EcdsaP256(p256::ecdsa::VerifyingKey),
    Rsa(rsa::RsaPublicKey),
}

impl PemKey {
    /// The key type as `apptainer` names it.
    pub fn kind(&self) -> &'static str {
        match self {
            PemKey::Ed25519(_) => "ED25519",
            PemKey::EcdsaP256(_) => "ECDSA P-256",
            PemKey::Rsa(_) => "RSA",
        }
    }
}

/// One trusted key and where it came from.
#[derive(Clone, Debug)]
pub struct TrustedKey {
    pub source: PathBuf,
    pub key: KeyMaterial,
    /// How the key is named to people: the OpenPGP fingerprint (40 hex digits,
    /// upper case, as `apptainer verify` prints it) or, for a PEM key, its type and
    /// the SHA-256 of its DER SubjectPublicKeyInfo.
    pub id: String,
}

/// The key itself.
#[derive(Clone, Debug)]
pub enum KeyMaterial {
    Pgp(Box<SignedPublicKey>),
    Pem(PemKey),
}

/// The set of keys a site trusts.
#[derive(Clone, Debug, Default)]
pub struct TrustedKeys {
    pub keys: Vec<TrustedKey>,
}

/// Why a key file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read signature key file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("signature key file {} is larger than 1 MiB", path.display())]
    TooLarge { path: PathBuf },
    #[error("signature key file {} holds no OpenPGP public key or PEM public key (Ed25519, ECDSA P-256, RSA) berth can read: {detail}", path.display())]
    Unreadable { path: PathBuf, detail: String },
}

impl TrustedKeys {
    /// Reads every file of `paths`; any unreadable file is an error (a typo in the
    /// policy must not silently trust nothing or less).
    pub fn load(paths: &[PathBuf]) -> Result<TrustedKeys, KeyError> {
        let mut keys = Vec::new();
        for path in paths {
            keys.extend(load_file(path)?);
        }
        Ok(TrustedKeys { keys })
    }

    /// "PGP 1204...BA84, ED25519 sha256:ab12..." for messages.
    pub fn describe(&self) -> String {
        if self.keys.is_empty() {
            return "none".to_string();
        }
        self.keys
            .iter()
            .map(|k| k.id.clone())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The OpenPGP keys.
    pub fn pgp(&self) -> impl Iterator<Item = (&TrustedKey, &SignedPublicKey)> {
        self.keys.iter().filter_map(|k| match &k.key {
            KeyMaterial::Pgp(p) => Some((k, p.as_ref())),
            KeyMaterial::Pem(_) => None,
        })
    }

    /// The PEM (DSSE) keys.
    pub fn pem(&self) -> impl Iterator<Item = (&TrustedKey, &PemKey)> {
        self.keys.iter().filter_map(|k| match &k.key {
            KeyMaterial::Pem(p) => Some((k, p)),
            KeyMaterial::Pgp(_) => None,
        })
    }
}

impl fmt::Display for TrustedKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

fn read_limited(path: &Path) -> Result<Vec<u8>, KeyError> {
    use std::io::Read;
    let read_err = |source| KeyError::Read {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read_err)?;
    let mut data = Vec::new();
    file.take(MAX_KEY_FILE + 1)
        .read_to_end(&mut data)
        .map_err(read_err)?;
    if data.len() as u64 > MAX_KEY_FILE {
        return Err(KeyError::TooLarge {
            path: path.to_path_buf(),
        });
    }
    Ok(data)
}

/// The keys of one file.
pub fn load_file(path: &Path) -> Result<Vec<TrustedKey>, KeyError> {
    let data = read_limited(path)?;
    let unreadable = |detail: String| KeyError::Unreadable {
        path: path.to_path_buf(),
        detail,
    };
    let text = std::str::from_utf8(&data).ok();
    let material = match text {
        Some(t) if t.contains("-----BEGIN PUBLIC KEY-----") => {
            vec![KeyMaterial::Pem(parse_pem(t).map_err(unreadable)?)]
        }
        Some(t) if t.contains("-----BEGIN PGP") => parse_pgp(&data, true).map_err(unreadable)?,
        _ => parse_pgp(&data, false).map_err(unreadable)?,
    };
    Ok(material
        .into_iter()
        .map(|key| TrustedKey {
            source: path.to_path_buf(),
            id: key_id(&key),
            key,
        })
        .collect())
}

fn key_id(key: &KeyMaterial) -> String {
    match key {
        KeyMaterial::Pgp(k) => format!("{:X}", k.fingerprint()),
        KeyMaterial::Pem(k) => format!("{} sha256:{}", k.kind(), spki_digest(k)),
    }
}

/// The SHA-256 of a PEM key's DER SubjectPublicKeyInfo, hex (the first 16 digits).
fn spki_digest(key: &PemKey) -> String {
    use rsa::pkcs8::EncodePublicKey;
    let der = match key {
        PemKey::Ed25519(k) => k.to_public_key_der(),
        PemKey::EcdsaP256(k) => k.to_public_key_der(),
        PemKey::Rsa(k) => k.to_public_key_der(),
    };
    match der {
        Ok(der) => hex(&Sha256::digest(der.as_bytes())[..8]),
        Err(_) => "?".to_string(),
    }
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn parse_pem(text: &str) -> Result<PemKey, String> {
    use rsa::pkcs8::DecodePublicKey;
    if let Ok(k) = ed25519_dalek::VerifyingKey::from_public_key_pem(text) {
        return Ok(PemKey::Ed25519(k));
    }
    if let Ok(k) = p256::ecdsa::VerifyingKey::from_public_key_pem(text) {
        return Ok(PemKey::EcdsaP256(k));
    }
    rsa::RsaPublicKey::from_public_key_pem(text)
        .map(PemKey::Rsa)
        .map_err(|e| format!("PEM public key of an unsupported type: {e}"))
}

fn parse_pgp(data: &[u8], armored: bool) -> Result<Vec<KeyMaterial>, String> {
    let parsed = if armored {
        PublicOrSecret::from_armor_many(data).map(|(it, _)| it)
    } else {
        PublicOrSecret::from_bytes_many(data)
    }
    .map_err(|e| e.to_string())?;
    let mut keys = Vec::new();
    for key in parsed {
        let key = match key.map_err(|e| e.to_string())? {
            PublicOrSecret::Public(k) => k,
            PublicOrSecret::Secret(k) => k.to_public_key(),
        };
        keys.push(KeyMaterial::Pgp(Box::new(key)));
    }
    if keys.is_empty() {
        return Err("no OpenPGP key in it".to_string());
    }
    Ok(keys)
}
