//! Signature verification (issue 14) on the reference implementation's signed test
//! images, against the public keys that signed them (tests/data/sif/keys/).

use std::path::PathBuf;

use berth::sif::trust::TrustedKeys;
use berth::sif::verify::{self, Format, Options, Refusal};
use berth::sif::Image;

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/sif")
        .join(name)
}

fn keys(names: &[&str]) -> TrustedKeys {
    let paths: Vec<PathBuf> = names.iter().map(|n| data(&format!("keys/{n}"))).collect();
    TrustedKeys::load(&paths).unwrap()
}

fn image(name: &str) -> Image {
    Image::open(data(name)).unwrap()
}

const PGP_FP: &str = "12045C8C0B1004D058DE4BEDA20C27EE7FF7BA84";

#[test]
fn key_files_load_with_their_ids() {
    let k = keys(&[
        "pgp-public.asc",
        "ed25519-public.pem",
        "rsa-public.pem",
        "ecdsa-public.pem",
    ]);
    let d = k.describe();
    assert!(d.starts_with(PGP_FP), "{d}");
    assert!(d.contains("ED25519 sha256:"), "{d}");
    assert!(d.contains("RSA sha256:"), "{d}");
    assert!(d.contains("ECDSA P-256 sha256:"), "{d}");
}

#[test]
fn pgp_signed_groups_verify() {
    let k = keys(&["pgp-public.asc"]);
    for name in ["one-group-signed-pgp.sif", "two-groups-signed-pgp.sif"] {
        let img = image(name);
        let v = verify::verify_object(&img, 2, &k, Options::default()).unwrap();
        assert_eq!(v.format, Format::Pgp, "{name}");
        assert_eq!(v.key, PGP_FP);
        assert_eq!(v.objects, vec![1, 2], "{name}");
    }
    // The second group of two-groups (object 3) has its own signature.
    let img = image("two-groups-signed-pgp.sif");
    let v = verify::verify_object(&img, 3, &k, Options::default()).unwrap();
    assert_eq!(v.objects, vec![3]);
}

#[test]
fn dsse_signed_groups_verify_with_either_key() {
    for key in ["ed25519-public.pem", "rsa-public.pem"] {
        let k = keys(&[key]);
        for name in ["one-group-signed-dsse.sif", "two-groups-signed-dsse.sif"] {
            let img = image(name);
            let v = verify::verify_object(&img, 2, &k, Options::default()).unwrap();
            assert_eq!(v.format, Format::Dsse, "{name} {key}");
            assert_eq!(v.objects, vec![1, 2]);
        }
    }
}

#[test]
fn legacy_signatures_verify_only_when_asked() {
    let k = keys(&["pgp-public.asc"]);
    let legacy = Options { legacy: true };
    for name in [
        "one-group-signed-legacy.sif",
        "one-group-signed-legacy-all.sif",
        "one-group-signed-legacy-group.sif",
        "two-groups-signed-legacy.sif",
        "two-groups-signed-legacy-all.sif",
        "two-groups-signed-legacy-group.sif",
    ] {
        let img = Image::read_unvalidated(std::fs::File::open(data(name)).unwrap(), None).unwrap();
        let v = verify::verify_object(&img, 2, &k, legacy);
        assert!(v.is_ok(), "{name}: {v:?}");
        assert_eq!(v.unwrap().format, Format::LegacyPgp);
        let r = verify::verify_object(&img, 2, &k, Options::default()).unwrap_err();
        assert!(matches!(r, Refusal::LegacyOnly { .. }), "{name}: {r:?}");
    }
}

#[test]
fn other_keys_are_refused_naming_the_signer() {
    let img = image("one-group-signed-pgp.sif");
    let r = verify::verify_object(&img, 2, &keys(&["ecdsa-public.pem"]), Options::default());
    assert_eq!(
        r.unwrap_err(),
        Refusal::UntrustedSigner {
            signer: PGP_FP.to_string()
        }
    );
    let img = image("one-group-signed-dsse.sif");
    let r = verify::verify_object(
        &img,
        2,
        &keys(&["ecdsa-public.pem", "pgp-public.asc"]),
        Options::default(),
    );
    assert!(matches!(r.unwrap_err(), Refusal::UntrustedSigner { .. }));
}

#[test]
fn unsigned_is_refused() {
    let img = image("one-group.sif");
    let r = verify::verify_object(&img, 2, &keys(&["pgp-public.asc"]), Options::default());
    assert_eq!(r.unwrap_err(), Refusal::Unsigned);
}

/// A copy of `name` with byte `at` (relative to object `id`'s start) flipped.
fn tampered(name: &str, id: u32, at: u64) -> (tempfile::TempDir, Image) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tampered.sif");
    std::fs::copy(data(name), &path).unwrap();
    let offset = image(name)
        .descriptors()
        .iter()
        .find(|d| d.id == id)
        .unwrap()
        .offset as u64;
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[(offset + at) as usize] ^= 0x01;
    std::fs::write(&path, bytes).unwrap();
    let img = Image::open(&path).unwrap();
    (dir, img)
}

#[test]
fn one_changed_squashfs_byte_is_refused() {
    for (name, key) in [
        ("one-group-signed-pgp.sif", "pgp-public.asc"),
        ("one-group-signed-dsse.sif", "ed25519-public.pem"),
    ] {
        // Past the superblock, so that the image still opens.
        let (_dir, img) = tampered(name, 2, 200);
        let r = verify::verify_object(&img, 2, &keys(&[key]), Options::default()).unwrap_err();
        assert!(
            matches!(&r, Refusal::Tampered { object, .. } if object == "2"),
            "{name}: {r:?}"
        );
    }
}

#[test]
fn a_signature_of_another_group_is_refused() {
    // two-groups-signed-pgp with group 1's signature relinked to group 2: object 2
    // (the root) is then not covered by any signature.
    let name = "two-groups-signed-pgp.sif";
    let img = image(name);
    let sig1 = img
        .descriptors()
        .iter()
        .find(|d| d.link() == berth::sif::Link::Group(1))
        .unwrap()
        .clone();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    let mut bytes = std::fs::read(data(name)).unwrap();
    let table = img.header().descriptors_offset as usize + sig1.slot * 585;
    bytes[table + 13..table + 17].copy_from_slice(&(0xf000_0002u32).to_le_bytes());
    std::fs::write(&path, bytes).unwrap();
    let img = Image::open(&path).unwrap();
    let r = verify::verify_object(&img, 2, &keys(&["pgp-public.asc"]), Options::default());
    assert!(matches!(
        r.unwrap_err(),
        Refusal::NotCovering { partition: 2, .. }
    ));
}

#[test]
fn a_changed_descriptor_is_refused() {
    // Rename object 2 (its descriptor's name is signed).
    let name = "one-group-signed-dsse.sif";
    let img = image(name);
    let d = img
        .descriptors()
        .iter()
        .find(|d| d.id == 2)
        .unwrap()
        .clone();
    let mut bytes = std::fs::read(data(name)).unwrap();
    let at = img.header().descriptors_offset as usize + d.slot * 585 + 73;
    bytes[at] ^= 0x20;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, bytes).unwrap();
    let img = Image::open(&path).unwrap();
    let r = verify::verify_object(&img, 2, &keys(&["ed25519-public.pem"]), Options::default());
    assert!(
        matches!(&r, Err(Refusal::Tampered { object, .. }) if object == "2's descriptor"),
        "{r:?}"
    );
}

fn berth(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn berth_sif_verify_reports_signer_key_and_objects() {
    let img = data("one-group-signed-pgp.sif");
    let key = data("keys/pgp-public.asc");
    let out = berth(&[
        "sif",
        "verify",
        img.to_str().unwrap(),
        "--keys",
        key.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("[LOCAL]   Signing entity: Unit Test <unit@test.com>\n"),
        "{text}"
    );
    assert!(
        text.contains(&format!("[LOCAL]   Fingerprint: {PGP_FP}\n")),
        "{text}"
    );
    assert!(
        text.contains("1   |1       |NONE    |FS\n2   |1       |NONE    |FS\n"),
        "{text}"
    );
}

#[test]
fn berth_sif_verify_fails_where_a_step_would_be_refused() {
    let img = data("one-group-signed-pgp.sif");
    let key = data("keys/ed25519-public.pem");
    let out = berth(&[
        "sif",
        "verify",
        img.to_str().unwrap(),
        "--keys",
        key.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(
        err,
        format!(
            "berth: {}: not verified: it is signed by {PGP_FP}, which is not a trusted key; signer: {PGP_FP}; trusted keys: ED25519 sha256:530b95ed1bf77f7f\n",
            img.display()
        )
    );
}

/// The images the real `apptainer sign` made (tests/data/sif/apptainer/make.sh): each
/// verifies with its own key and with no other.
#[test]
fn images_signed_by_apptainer_verify_with_their_key_only() {
    let kinds = [
        ("pgp", "pgp-public.asc", Format::Pgp),
        ("ed25519", "ed25519-public.pem", Format::Dsse),
        ("ecdsa", "ecdsa-public.pem", Format::Dsse),
        ("rsa", "rsa-public.pem", Format::Dsse),
    ];
    for (kind, _, format) in kinds {
        let img = image(&format!("apptainer/signed-{kind}.sif"));
        for (other, key, _) in kinds {
            let k = TrustedKeys::load(&[data(&format!("apptainer/{key}"))]).unwrap();
            let r = verify::verify_object(&img, 2, &k, Options::default());
            if other == kind {
                let v = r.unwrap_or_else(|e| panic!("{kind}: {e}"));
                assert_eq!(v.format, format);
                assert_eq!(v.objects, vec![1, 2]);
            } else {
                assert!(
                    matches!(r, Err(Refusal::UntrustedSigner { .. })),
                    "{kind} with {other}'s key: {r:?}"
                );
            }
        }
        let (_dir, bad) = tampered(&format!("apptainer/signed-{kind}.sif"), 2, 300);
        let k = TrustedKeys::load(&[data(&format!(
            "apptainer/{}",
            kinds.iter().find(|x| x.0 == kind).unwrap().1
        ))])
        .unwrap();
        let r = verify::verify_object(&bad, 2, &k, Options::default());
        assert!(
            matches!(&r, Err(Refusal::Tampered { object, .. }) if object == "2"),
            "{kind}: {r:?}"
        );
    }
}

/// Attacks on the root-side reader: a signature object that is garbage, or that claims
/// to lie past the end of the file, is refused without trusting it.
#[test]
fn garbage_or_out_of_bounds_signatures_are_refused() {
    let name = "one-group-signed-pgp.sif";
    let img = image(name);
    let sig = img
        .descriptors()
        .iter()
        .find(|d| d.link() == berth::sif::Link::Group(1))
        .unwrap()
        .clone();
    let table = img.header().descriptors_offset as usize + sig.slot * 585;
    let dir = tempfile::tempdir().unwrap();
    // Garbage content.
    let mut bytes = std::fs::read(data(name)).unwrap();
    for b in &mut bytes[sig.offset as usize..(sig.offset + sig.size) as usize] {
        *b = b'A';
    }
    let path = dir.path().join("garbage.sif");
    std::fs::write(&path, &bytes).unwrap();
    let r = verify::verify_object(
        &Image::open(&path).unwrap(),
        2,
        &keys(&["pgp-public.asc"]),
        Options::default(),
    );
    assert!(matches!(r, Err(Refusal::Malformed { .. })), "{r:?}");
    // Size past the end of the file: never read (the image read unvalidated, as
    // `berth sif` does, still bounds every read by the file).
    let mut bytes = std::fs::read(data(name)).unwrap();
    bytes[table + 25..table + 33].copy_from_slice(&(1i64 << 40).to_le_bytes());
    let path = dir.path().join("huge.sif");
    std::fs::write(&path, &bytes).unwrap();
    assert!(Image::open(&path).is_err(), "validation must refuse it");
    let unvalidated =
        Image::read_unvalidated(std::fs::File::open(&path).unwrap(), Some(path.clone())).unwrap();
    let r = verify::verify_object(
        &unvalidated,
        2,
        &keys(&["pgp-public.asc"]),
        Options::default(),
    );
    assert!(matches!(r, Err(Refusal::Malformed { .. })), "{r:?}");
}
