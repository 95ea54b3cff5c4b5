//! Checking an image's signatures as `apptainer verify` does (sylabs/sif
//! `pkg/integrity`): is the partition berth would mount signed by a trusted key, and
//! do its bytes still match what was signed?
//!
//! A SIF 2 signature is a Signature object linked to an object group. Its content is
//! either an OpenPGP clear-signed message or a DSSE envelope (payload type
//! `application/vnd.sylabs.sif-metadata+json`), whose signed text is JSON:
//!
//! ```text
//! {"version":1,"header":{"digest":"sha256:<hex>"},
//!  "objects":[{"relativeId":0,"descriptorDigest":"sha256:<hex>","objectDigest":"sha256:<hex>"},...]}
//! ```
//!
//! - the header digest covers launch script, magic, version and id (61 bytes);
//! - each descriptor digest covers, little-endian: data type (i32), used (1 byte),
//!   id relative to the group's smallest id (u32), linked id (u32), size (i64),
//!   created (i64), uid (i64), gid (i64), then name (128) and extra (384);
//! - each object digest covers the object's bytes;
//! - the signed objects must be exactly the group's objects.
//!
//! Legacy signatures (SIF 1, clear-signed `SIFHASH:\n<hex>`) cover only data: the
//! concatenated objects of a group, or one object. Like `apptainer verify` without
//! `--legacy-insecure`, they are refused unless asked for.
//!
//! Everything read here is the user's: offsets come from a validated table and every
//! read is bounded by the file (see [`Image::read_object`]); signature objects are
//! read only up to [`MAX_SIGNATURE`].

use std::io::Write;

use base64::Engine;
use pgp::composed::CleartextSignedMessage;
use pgp::crypto::hash::HashAlgorithm;
use pgp::types::KeyDetails;
use serde::Deserialize;
use sha2::Digest;

use super::descriptor::Descriptor;
use super::format::{DataType, HashType};
use super::image::{Image, ReadAt};
use super::trust::{hex, PemKey, TrustedKeys};
use super::Link;

/// The largest signature object read (a DSSE envelope with two RSA-4096 signatures
/// is ~3 KiB).
pub const MAX_SIGNATURE: i64 = 1 << 20;

/// The DSSE payload type of SIF metadata.
pub const METADATA_MEDIA_TYPE: &str = "application/vnd.sylabs.sif-metadata+json";

/// How a signature is encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Pgp,
    Dsse,
    LegacyPgp,
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Format::Pgp => "PGP",
            Format::Dsse => "DSSE",
            Format::LegacyPgp => "legacy PGP",
        })
    }
}

/// A signature that verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    /// The Signature object's id.
    pub signature_id: u32,
    pub format: Format,
    /// The trusted key that verified it ([`super::trust::TrustedKey::id`]).
    pub key: String,
    /// The signer's OpenPGP user id, when known.
    pub signer: Option<String>,
    /// The ids of the objects it covers, ascending.
    pub objects: Vec<u32>,
}

/// Why the partition is not accepted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("it is not signed")]
    Unsigned,
    #[error("its signatures do not cover object {partition} (the root filesystem berth mounts): they sign {covered}")]
    NotCovering { partition: u32, covered: String },
    #[error("it is signed by {signer}, which is not a trusted key")]
    UntrustedSigner { signer: String },
    #[error("object {object} no longer matches its signature (signature object {signature}, signer {signer}): the image was changed after signing")]
    Tampered {
        signature: u32,
        object: String,
        signer: String,
    },
    #[error("it has only legacy (SIF 1) signatures, which do not protect the header and descriptors (signer {signer}); re-sign it with `apptainer sign`")]
    LegacyOnly { signer: String },
    #[error("signature object {signature} cannot be read: {detail}")]
    Malformed { signature: u32, detail: String },
}

impl Refusal {
    fn rank(&self) -> u8 {
        match self {
            Refusal::Unsigned => 0,
            Refusal::NotCovering { .. } => 1,
            Refusal::Malformed { .. } => 2,
            Refusal::UntrustedSigner { .. } => 3,
            Refusal::LegacyOnly { .. } => 4,
            Refusal::Tampered { .. } => 5,
        }
    }
}

/// What the caller wants accepted.
#[derive(Clone, Copy, Debug, Default)]
pub struct Options {
    /// Accept legacy signatures (`--legacy-insecure`).
    pub legacy: bool,
}

/// Verifies that object `partition` of `image` is covered by a signature of a key in
/// `keys` and that the header, descriptors and objects that signature covers are
/// unchanged. Returns the first signature that does; otherwise the most telling
/// reason none does.
pub fn verify_object<R: ReadAt>(
    image: &Image<R>,
    partition: u32,
    keys: &TrustedKeys,
    opts: Options,
) -> Result<Verified, Refusal> {
    let Some(target) = image.descriptors().iter().find(|d| d.id == partition) else {
        return Err(Refusal::Unsigned);
    };
    let group = target.group_id();
    let sigs: Vec<&Descriptor> = image
        .objects_of_type(DataType::Signature)
        .filter(|s| {
            (group != 0 && s.link() == Link::Group(group)) || s.link() == Link::Object(partition)
        })
        .collect();
    if sigs.is_empty() {
        return Err(no_signature(image, partition));
    }
    let mut worst: Option<Refusal> = None;
    for sig in sigs {
        match verify_signature(image, sig, target, keys, opts) {
            Ok(v) => return Ok(v),
            Err(r) => {
                if worst.as_ref().is_none_or(|w| r.rank() > w.rank()) {
                    worst = Some(r);
                }
            }
        }
    }
    Err(worst.unwrap_or(Refusal::Unsigned))
}

/// Unsigned, or signed for something else.
fn no_signature<R: ReadAt>(image: &Image<R>, partition: u32) -> Refusal {
    let others: Vec<String> = image
        .objects_of_type(DataType::Signature)
        .map(|s| match s.link() {
            Link::Group(g) => format!("group {g}"),
            Link::Object(o) => format!("object {o}"),
            Link::None => "nothing".to_string(),
        })
        .collect();
    if others.is_empty() {
        Refusal::Unsigned
    } else {
        Refusal::NotCovering {
            partition,
            covered: others.join(", "),
        }
    }
}

/// The fingerprint a Signature descriptor names (PGP), upper-case hex.
fn descriptor_fingerprint(sig: &Descriptor) -> Option<String> {
    sig.signature()
        .and_then(|m| m.fingerprint())
        .map(|fp| hex(&fp).to_uppercase())
}

fn verify_signature<R: ReadAt>(
    image: &Image<R>,
    sig: &Descriptor,
    target: &Descriptor,
    keys: &TrustedKeys,
    opts: Options,
) -> Result<Verified, Refusal> {
    let malformed = |detail: String| Refusal::Malformed {
        signature: sig.id,
        detail,
    };
    if sig.size > MAX_SIGNATURE {
        return Err(malformed(format!("{} bytes, more than 1 MiB", sig.size)));
    }
    let data = image
        .read_object(sig)
        .map_err(|e| malformed(e.to_string()))?;
    let hash_type = sig.signature().map(|m| m.hash_type);
    if looks_like_dsse(&data) {
        let (payload, key) = dsse_verify(&data, keys, hash_type).map_err(|e| match e {
            DsseError::Untrusted => Refusal::UntrustedSigner {
                signer: "a DSSE key (no fingerprint)".to_string(),
            },
            DsseError::Malformed(d) => malformed(d),
        })?;
        let objects = check_metadata(image, sig, target, &payload, &key)?;
        return Ok(Verified {
            signature_id: sig.id,
            format: Format::Dsse,
            key,
            signer: None,
            objects,
        });
    }
    let text = std::str::from_utf8(&data).map_err(|_| malformed("not text".into()))?;
    let (msg, _) = CleartextSignedMessage::from_string(text).map_err(|e| {
        malformed(format!(
            "neither DSSE nor an OpenPGP clear-signed message: {e}"
        ))
    })?;
    let fingerprint = descriptor_fingerprint(sig);
    let signer_name = fingerprint
        .clone()
        .unwrap_or_else(|| "an OpenPGP key not named in the descriptor".to_string());
    let plaintext = msg.signed_text().replace("\r\n", "\n");
    let legacy = plaintext.starts_with("SIFHASH:\n");
    let (key_id, user) = pgp_verify(&msg, keys).ok_or_else(|| Refusal::UntrustedSigner {
        signer: signer_name.clone(),
    })?;
    // The descriptor must name the key that signed (sylabs/sif errFingerprintMismatch).
    if fingerprint.as_deref() != Some(key_id.as_str()) {
        return Err(malformed(format!(
            "the descriptor names signer {signer_name} but {key_id} signed it"
        )));
    }
    if legacy {
        if !opts.legacy {
            return Err(Refusal::LegacyOnly { signer: key_id });
        }
        let objects = check_legacy(image, sig, target, &plaintext, &key_id)?;
        return Ok(Verified {
            signature_id: sig.id,
            format: Format::LegacyPgp,
            key: key_id,
            signer: user,
            objects,
        });
    }
    let objects = check_metadata(image, sig, target, plaintext.as_bytes(), &key_id)?;
    Ok(Verified {
        signature_id: sig.id,
        format: Format::Pgp,
        key: key_id,
        signer: user,
        objects,
    })
}

// ---------------------------------------------------------------- OpenPGP

/// The trusted key (fingerprint, first user id) whose primary key or a signing
/// subkey made one of `msg`'s signatures with an allowed hash.
fn pgp_verify(
    msg: &CleartextSignedMessage,
    keys: &TrustedKeys,
) -> Option<(String, Option<String>)> {
    let text = msg.signed_text();
    for signature in msg.signatures() {
        let allowed = matches!(
            signature.hash_alg(),
            Some(
                HashAlgorithm::Sha224
                    | HashAlgorithm::Sha256
                    | HashAlgorithm::Sha384
                    | HashAlgorithm::Sha512
            )
        );
        if !allowed {
            continue;
        }
        for (_, key) in keys.pgp() {
            let primary = signature.verify(key, text.as_bytes()).is_ok();
            let sub = || {
                key.public_subkeys
                    .iter()
                    .any(|s| signature.verify(s, text.as_bytes()).is_ok())
            };
            if primary || sub() {
                let user = key
                    .details
                    .users
                    .first()
                    .map(|u| String::from_utf8_lossy(u.id.id()).into_owned());
                return Some((format!("{:X}", key.fingerprint()), user));
            }
        }
    }
    None
}

// ---------------------------------------------------------------- DSSE

#[derive(Deserialize)]
struct Envelope {
    #[serde(rename = "payloadType")]
    payload_type: String,
    payload: String,
    signatures: Vec<EnvelopeSignature>,
}

#[derive(Deserialize)]
struct EnvelopeSignature {
    sig: String,
}

enum DsseError {
    Untrusted,
    Malformed(String),
}

fn looks_like_dsse(data: &[u8]) -> bool {
    data.iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|&b| b == b'{')
}

/// DSSE's pre-authentication encoding.
fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEv1 {} {} {} ",
        payload_type.len(),
        payload_type,
        payload.len()
    )
    .into_bytes();
    out.extend_from_slice(payload);
    out
}

fn b64(s: &str) -> Result<Vec<u8>, DsseError> {
    let e = |e: base64::DecodeError| DsseError::Malformed(format!("bad base64: {e}"));
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .or_else(|_| base64::engine::general_purpose::URL_SAFE.decode(s))
        .map_err(e)
}

/// The payload of a DSSE envelope one of whose signatures a trusted PEM key made,
/// and that key's id.
fn dsse_verify(
    data: &[u8],
    keys: &TrustedKeys,
    hash_type: Option<HashType>,
) -> Result<(Vec<u8>, String), DsseError> {
    let env: Envelope = serde_json::from_slice(data)
        .map_err(|e| DsseError::Malformed(format!("not a DSSE envelope: {e}")))?;
    if env.payload_type != METADATA_MEDIA_TYPE {
        return Err(DsseError::Malformed(format!(
            "DSSE payload type {:?}, not {METADATA_MEDIA_TYPE}",
            env.payload_type
        )));
    }
    let payload = b64(&env.payload)?;
    let message = pae(&env.payload_type, &payload);
    for s in &env.signatures {
        let sig = b64(&s.sig)?;
        for (trusted, key) in keys.pem() {
            if pem_verify(key, &message, &sig, hash_type) {
                return Ok((payload, trusted.id.clone()));
            }
        }
    }
    Err(DsseError::Untrusted)
}

/// One signature over `message` by `key`, as sigstore's verifiers check it:
/// Ed25519 over the message; ECDSA (ASN.1) over SHA-256; RSA PKCS#1 v1.5 with the
/// descriptor's hash.
fn pem_verify(key: &PemKey, message: &[u8], sig: &[u8], hash_type: Option<HashType>) -> bool {
    match key {
        PemKey::Ed25519(k) => ed25519_dalek::Signature::from_slice(sig)
            .is_ok_and(|s| k.verify_strict(message, &s).is_ok()),
        PemKey::EcdsaP256(k) => {
            use p256::ecdsa::signature::Verifier;
            p256::ecdsa::DerSignature::try_from(sig).is_ok_and(|s| k.verify(message, &s).is_ok())
        }
        PemKey::Rsa(k) => {
            use rsa::signature::Verifier;
            let Ok(s) = rsa::pkcs1v15::Signature::try_from(sig) else {
                return false;
            };
            let k = k.clone();
            match hash_type {
                Some(HashType::Sha384) => rsa::pkcs1v15::VerifyingKey::<sha2::Sha384>::new(k)
                    .verify(message, &s)
                    .is_ok(),
                Some(HashType::Sha512) => rsa::pkcs1v15::VerifyingKey::<sha2::Sha512>::new(k)
                    .verify(message, &s)
                    .is_ok(),
                _ => rsa::pkcs1v15::VerifyingKey::<sha2::Sha256>::new(k)
                    .verify(message, &s)
                    .is_ok(),
            }
        }
    }
}

// ---------------------------------------------------------------- metadata

#[derive(Deserialize)]
struct ImageMetadata {
    version: i64,
    header: HeaderMetadata,
    objects: Vec<ObjectMetadata>,
}

#[derive(Deserialize)]
struct HeaderMetadata {
    digest: String,
}

#[derive(Deserialize)]
struct ObjectMetadata {
    #[serde(rename = "relativeId")]
    relative_id: u32,
    #[serde(rename = "descriptorDigest")]
    descriptor_digest: String,
    #[serde(rename = "objectDigest")]
    object_digest: String,
}

/// A SHA-2 hasher chosen by name (`sha256`, ...), writable as a stream.
enum Hasher {
    Sha224(sha2::Sha224),
    Sha256(sha2::Sha256),
    Sha384(sha2::Sha384),
    Sha512(sha2::Sha512),
    Sha512_224(sha2::Sha512_224),
    Sha512_256(sha2::Sha512_256),
}

impl Hasher {
    fn named(name: &str) -> Option<Hasher> {
        Some(match name {
            "sha224" => Hasher::Sha224(Default::default()),
            "sha256" => Hasher::Sha256(Default::default()),
            "sha384" => Hasher::Sha384(Default::default()),
            "sha512" => Hasher::Sha512(Default::default()),
            "sha512_224" => Hasher::Sha512_224(Default::default()),
            "sha512_256" => Hasher::Sha512_256(Default::default()),
            _ => return None,
        })
    }

    fn for_type(t: Option<HashType>) -> Option<Hasher> {
        match t {
            Some(HashType::Sha256) => Hasher::named("sha256"),
            Some(HashType::Sha384) => Hasher::named("sha384"),
            Some(HashType::Sha512) => Hasher::named("sha512"),
            _ => None,
        }
    }

    fn update(&mut self, data: &[u8]) {
        match self {
            Hasher::Sha224(h) => h.update(data),
            Hasher::Sha256(h) => h.update(data),
            Hasher::Sha384(h) => h.update(data),
            Hasher::Sha512(h) => h.update(data),
            Hasher::Sha512_224(h) => h.update(data),
            Hasher::Sha512_256(h) => h.update(data),
        }
    }

    fn finish(self) -> Vec<u8> {
        match self {
            Hasher::Sha224(h) => h.finalize().to_vec(),
            Hasher::Sha256(h) => h.finalize().to_vec(),
            Hasher::Sha384(h) => h.finalize().to_vec(),
            Hasher::Sha512(h) => h.finalize().to_vec(),
            Hasher::Sha512_224(h) => h.finalize().to_vec(),
            Hasher::Sha512_256(h) => h.finalize().to_vec(),
        }
    }
}

impl Write for Hasher {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// "alg:hex" -> (hasher, expected value).
fn parse_digest(s: &str) -> Option<(Hasher, Vec<u8>)> {
    let (alg, value) = s.split_once(':')?;
    let hasher = Hasher::named(alg)?;
    if value.len() % 2 != 0 || !value.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let bytes = (0..value.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&value[i..i + 2], 16).ok())
        .collect::<Option<Vec<u8>>>()?;
    Some((hasher, bytes))
}

/// The 61 header bytes a signature covers.
fn header_integrity_bytes<R: ReadAt>(image: &Image<R>) -> Vec<u8> {
    let h = image.header();
    let mut out = Vec::with_capacity(61);
    out.extend_from_slice(&h.launch_script);
    out.extend_from_slice(&h.magic);
    out.extend_from_slice(&h.version);
    out.extend_from_slice(&h.id);
    out
}

/// The descriptor bytes a signature covers (`Descriptor.GetIntegrityReader`).
pub fn descriptor_integrity_bytes(d: &Descriptor, relative_id: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + 1 + 4 + 4 + 8 * 4 + 128 + 384);
    out.extend_from_slice(&d.data_type.raw().to_le_bytes());
    out.push(u8::from(d.used));
    out.extend_from_slice(&relative_id.to_le_bytes());
    out.extend_from_slice(&d.raw_linked_id.to_le_bytes());
    out.extend_from_slice(&d.size.to_le_bytes());
    out.extend_from_slice(&d.created.to_le_bytes());
    out.extend_from_slice(&d.uid.to_le_bytes());
    out.extend_from_slice(&d.gid.to_le_bytes());
    out.extend_from_slice(&d.name);
    out.extend_from_slice(&d.extra);
    out
}

/// Whether `data` hashes to `digest` ("alg:hex").
fn digest_matches(digest: &str, data: &[u8]) -> Option<bool> {
    let (mut h, want) = parse_digest(digest)?;
    h.update(data);
    Some(h.finish() == want)
}

/// Whether object `d`'s bytes hash to `digest`, streamed from the file.
fn object_matches<R: ReadAt>(image: &Image<R>, d: &Descriptor, digest: &str) -> Option<bool> {
    let (mut h, want) = parse_digest(digest)?;
    image.copy_object(d, &mut h).ok()?;
    Some(h.finish() == want)
}

/// Checks a verified SIF 2 metadata payload against the image; returns the ids of
/// the objects it covers, which must include `target`.
fn check_metadata<R: ReadAt>(
    image: &Image<R>,
    sig: &Descriptor,
    target: &Descriptor,
    payload: &[u8],
    signer: &str,
) -> Result<Vec<u32>, Refusal> {
    let malformed = |detail: String| Refusal::Malformed {
        signature: sig.id,
        detail,
    };
    let tampered = |object: String| Refusal::Tampered {
        signature: sig.id,
        object,
        signer: signer.to_string(),
    };
    let md: ImageMetadata = serde_json::from_slice(payload)
        .map_err(|e| malformed(format!("signed metadata is not SIF metadata JSON: {e}")))?;
    if md.version != 1 {
        return Err(malformed(format!("metadata version {}", md.version)));
    }
    let Link::Group(group) = sig.link() else {
        return Err(malformed(
            "a SIF 2 signature must be linked to a group".into(),
        ));
    };
    let members: Vec<&Descriptor> = image.group(group).collect();
    let Some(min_id) = members.iter().map(|d| d.id).min() else {
        return Err(malformed(format!("group {group} has no objects")));
    };
    let bad_digest = || malformed("a digest is not \"sha2-name:hex\"".into());
    match digest_matches(&md.header.digest, &header_integrity_bytes(image)) {
        None => return Err(bad_digest()),
        Some(false) => return Err(tampered("the global header".into())),
        Some(true) => {}
    }
    // The signed objects must be exactly the group's objects.
    let mut signed: Vec<u32> = Vec::with_capacity(md.objects.len());
    for om in &md.objects {
        let id = min_id
            .checked_add(om.relative_id)
            .ok_or_else(|| malformed("relative id overflows".into()))?;
        signed.push(id);
    }
    let mut sorted = signed.clone();
    sorted.sort_unstable();
    sorted.dedup();
    let mut have: Vec<u32> = members.iter().map(|d| d.id).collect();
    have.sort_unstable();
    if sorted != have || sorted.len() != signed.len() {
        return Err(tampered(format!(
            "list of group {group} (signed {sorted:?}, present {have:?})"
        )));
    }
    if !sorted.contains(&target.id) {
        return Err(Refusal::NotCovering {
            partition: target.id,
            covered: format!("objects {sorted:?}"),
        });
    }
    for (om, id) in md.objects.iter().zip(&signed) {
        let Some(d) = members.iter().find(|d| d.id == *id) else {
            return Err(tampered(id.to_string()));
        };
        match digest_matches(
            &om.descriptor_digest,
            &descriptor_integrity_bytes(d, id - min_id),
        ) {
            None => return Err(bad_digest()),
            Some(false) => return Err(tampered(format!("{id}'s descriptor"))),
            Some(true) => {}
        }
        match object_matches(image, d, &om.object_digest) {
            None => return Err(bad_digest()),
            Some(false) => return Err(tampered(id.to_string())),
            Some(true) => {}
        }
    }
    Ok(sorted)
}

/// Checks a legacy `SIFHASH:` signature: over the group's objects concatenated (in
/// table order) or over one object.
fn check_legacy<R: ReadAt>(
    image: &Image<R>,
    sig: &Descriptor,
    target: &Descriptor,
    plaintext: &str,
    signer: &str,
) -> Result<Vec<u32>, Refusal> {
    let malformed = |detail: String| Refusal::Malformed {
        signature: sig.id,
        detail,
    };
    let value = plaintext
        .trim_start_matches("SIFHASH:\n")
        .trim_end_matches('\n');
    let hash_type = sig.signature().map(|m| m.hash_type);
    let Some(mut hasher) = Hasher::for_type(hash_type) else {
        return Err(malformed(format!("hash type {hash_type:?} unsupported")));
    };
    let Some((_, want)) = parse_digest(&format!("sha256:{value}")) else {
        return Err(malformed("SIFHASH value is not hex".into()));
    };
    let objects: Vec<&Descriptor> = match sig.link() {
        Link::Group(g) => image.group(g).collect(),
        Link::Object(o) => image.descriptors().iter().filter(|d| d.id == o).collect(),
        Link::None => Vec::new(),
    };
    if !objects.iter().any(|d| d.id == target.id) {
        return Err(Refusal::NotCovering {
            partition: target.id,
            covered: format!("{:?}", objects.iter().map(|d| d.id).collect::<Vec<_>>()),
        });
    }
    for d in &objects {
        image
            .copy_object(d, &mut hasher)
            .map_err(|e| malformed(e.to_string()))?;
    }
    if hasher.finish() != want {
        return Err(Refusal::Tampered {
            signature: sig.id,
            object: format!("{:?}", objects.iter().map(|d| d.id).collect::<Vec<_>>()),
            signer: signer.to_string(),
        });
    }
    Ok(objects.iter().map(|d| d.id).collect())
}

/// Who signed the image, as its Signature descriptors say (before any
/// verification): OpenPGP fingerprints, "DSSE (no fingerprint)" for envelopes, or
/// "none".
pub fn signers<R: ReadAt>(image: &Image<R>) -> String {
    let mut out: Vec<String> = Vec::new();
    for sig in image.objects_of_type(DataType::Signature) {
        let name =
            descriptor_fingerprint(sig).unwrap_or_else(|| "a DSSE key (no fingerprint)".into());
        if !out.contains(&name) {
            out.push(name);
        }
    }
    if out.is_empty() {
        "none".to_string()
    } else {
        out.join(", ")
    }
}
