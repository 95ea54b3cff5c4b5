//! End-to-end (issue 14): `require_signature=yes` on a real Slurm. Images signed at
//! test time by the real Apptainer (`test-cluster/apptainer`, made by
//! `test-cluster/setup --apptainer`): a PGP key from `apptainer key newpair` and an
//! Ed25519 PEM key (`apptainer sign --key`). Signed by a trusted key: the step runs;
//! unsigned, signed by another key, one squashfs byte changed after signing, and a
//! signature for another group: refused with one exact `berth:` line, the command never
//! run. The verification is kept with the cached mount.
//!
//! Needs BERTH_E2E_SLURM (see tests/support/mod.rs); skipped without it.

mod support;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use berth::sif::build::{self, BuildOptions};
use berth::sif::trust::TrustedKeys;
use berth::sif::{Image, Link};
use support::{cluster, Cluster, Setup, TEST_USER};

fn run_dir(cluster: &Cluster) -> String {
    format!("/run/berth-e2e-sig-slot{}", cluster.info()["slot"])
}

struct Images {
    dir: PathBuf,
    pgp_fingerprint: String,
}

impl Images {
    fn path(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }
}

/// The reference Apptainer, as root with HOME=`home`.
fn apptainer(home: &Path, args: &[&str]) -> String {
    let wrapper = Path::new(env!("CARGO_MANIFEST_DIR")).join("test-cluster/apptainer");
    let home_env = format!("HOME={}", home.display());
    let out = Command::new(wrapper)
        .args(["--env", &home_env])
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "apptainer {args:?} failed (run test-cluster/setup --apptainer):\n{text}"
    );
    text
}

fn root_of(sif: &Path) -> (u32, u64) {
    let image = Image::open(sif).unwrap();
    let p = image.primary_partition().unwrap();
    (p.id, p.offset)
}

/// Builds and signs the images once per test process.
fn images(cluster: &Cluster) -> Images {
    static BUILT: Mutex<Option<(PathBuf, String)>> = Mutex::new(None);
    let mut built = BUILT.lock().unwrap_or_else(|p| p.into_inner());
    let dir = cluster.shared_dir().join("signature-images");
    if let Some((d, fp)) = built.as_ref().filter(|(d, _)| d == &dir) {
        return Images {
            dir: d.clone(),
            pgp_fingerprint: fp.clone(),
        };
    }
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
    // Apptainer sees /tmp at the same path: sign there, then copy.
    let work = tempfile::tempdir_in("/tmp").unwrap();
    let w = |n: &str| work.path().join(n);
    let rootfs = w("rootfs");
    build::busybox::busybox_rootfs(&rootfs).unwrap();
    fs::write(rootfs.join("hello.txt"), "hello from the image\n").unwrap();
    build::build(&rootfs, &w("bb.sif"), &BuildOptions::new()).unwrap();
    let home = w("home");
    fs::create_dir_all(&home).unwrap();
    for (name, email) in [("Site", "site@example.org"), ("Other", "other@example.org")] {
        let h = home.join(name);
        fs::create_dir_all(&h).unwrap();
        apptainer(
            &h,
            &[
                "key",
                "newpair",
                "--name",
                name,
                "--email",
                email,
                "--comment",
                "e2e",
                "--password",
                "",
                "--push=false",
            ],
        );
    }
    // Export the site's public key (the command asks for the key's number).
    let export = Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("test-cluster/apptainer"))
        .args(["--env", &format!("HOME={}", home.join("Site").display())])
        .args([
            "key",
            "export",
            "--armor",
            &w("site.asc").display().to_string(),
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(b"0\n")?;
            c.wait_with_output()
        })
        .unwrap();
    assert!(export.status.success(), "{export:?}");
    let sign = |img: &str, who: &str| {
        fs::copy(w("bb.sif"), w(img)).unwrap();
        apptainer(&home.join(who), &["sign", &w(img).display().to_string()]);
    };
    sign("site-pgp.sif", "Site");
    sign("other-pgp.sif", "Other");
    // DSSE with an Ed25519 PEM key.
    let ok = Command::new("openssl")
        .args(["genpkey", "-algorithm", "ed25519", "-out"])
        .arg(w("ed.pem"))
        .status()
        .unwrap()
        .success()
        && Command::new("openssl")
            .args(["pkey", "-pubout", "-in"])
            .arg(w("ed.pem"))
            .arg("-out")
            .arg(w("ed-public.pem"))
            .status()
            .unwrap()
            .success();
    assert!(ok, "openssl could not make an Ed25519 key");
    fs::copy(w("bb.sif"), w("site-dsse.sif")).unwrap();
    apptainer(
        &home,
        &[
            "sign",
            "--key",
            &w("ed.pem").display().to_string(),
            &w("site-dsse.sif").display().to_string(),
        ],
    );
    for f in [
        "bb.sif",
        "site-pgp.sif",
        "other-pgp.sif",
        "site-dsse.sif",
        "site.asc",
        "ed-public.pem",
    ] {
        fs::copy(w(f), dir.join(f)).unwrap();
    }
    // One byte of the squashfs changed after signing (past its superblock).
    let (root_id, root_offset) = root_of(&dir.join("site-pgp.sif"));
    let mut bytes = fs::read(dir.join("site-pgp.sif")).unwrap();
    bytes[root_offset as usize + 4096] ^= 0x01;
    fs::write(dir.join("tampered.sif"), &bytes).unwrap();
    // The signature relinked to group 2: it no longer covers the root (group 1).
    let image = Image::open(dir.join("site-pgp.sif")).unwrap();
    let sig = image
        .descriptors()
        .iter()
        .find(|d| d.link() == Link::Group(1))
        .unwrap()
        .clone();
    let at = image.header().descriptors_offset as usize + sig.slot * 585 + 13;
    let mut bytes = fs::read(dir.join("site-pgp.sif")).unwrap();
    bytes[at..at + 4].copy_from_slice(&0xf000_0002u32.to_le_bytes());
    fs::write(dir.join("other-group.sif"), &bytes).unwrap();
    assert_eq!(root_id, 3, "berth sif build puts the root at object 3");
    for entry in fs::read_dir(&dir).unwrap().flatten() {
        fs::set_permissions(entry.path(), fs::Permissions::from_mode(0o644)).unwrap();
    }
    let keys = TrustedKeys::load(&[dir.join("site.asc")]).unwrap();
    let fp = keys.keys[0].id.clone();
    *built = Some((dir.clone(), fp.clone()));
    Images {
        dir,
        pgp_fingerprint: fp,
    }
}

fn setup(cluster: &Cluster, images: &Images) -> Setup {
    setup_idle(cluster, images, 60)
}

fn setup_idle(cluster: &Cluster, images: &Images, idle: u32) -> Setup {
    Setup::default().nodes(1).plugstack_args(&format!(
        "run_dir={} mount_idle_seconds={idle} require_signature=yes signature_keys={},{}",
        run_dir(cluster),
        images.path("site.asc"),
        images.path("ed-public.pem"),
    ))
}

fn ready() -> Option<(Cluster, Images)> {
    let cluster = cluster()?;
    let images = images(&cluster);
    cluster.ensure(&setup(&cluster, &images));
    Some((cluster, images))
}

/// Unmounts what the tests kept: a step with no idle time reaps every idle mount.
fn reap(cluster: &Cluster, images: &Images) {
    cluster.ensure(&setup_idle(cluster, images, 0));
    let container = format!("--container={}", images.path("site-dsse.sif"));
    cluster
        .srun_as(TEST_USER, &[&container, "true"])
        .assert_ok();
    cluster.ensure(&setup(cluster, images));
}

fn trusted(images: &Images) -> String {
    TrustedKeys::load(&[
        images.dir.join("site.asc"),
        images.dir.join("ed-public.pem"),
    ])
    .unwrap()
    .describe()
}

#[test]
fn images_signed_by_a_trusted_key_run() {
    let Some((cluster, images)) = ready() else {
        return;
    };
    for img in ["site-pgp.sif", "site-dsse.sif"] {
        for _ in 0..2 {
            let container = format!("--container={}", images.path(img));
            let run = cluster.srun_as(TEST_USER, &[&container, "/bin/cat", "/hello.txt"]);
            run.assert_ok();
            assert_eq!(run.stdout.trim(), "hello from the image", "{img}: {run}");
            assert!(run.berth_lines().is_empty(), "{img}: {run}");
        }
    }
    reap(&cluster, &images);
}

#[test]
fn every_signature_refusal_names_image_signer_and_trusted_keys() {
    let Some((cluster, images)) = ready() else {
        return;
    };
    let fp = &images.pgp_fingerprint;
    let trusted = trusted(&images);
    let other_fp = {
        let image = Image::open(images.dir.join("other-pgp.sif")).unwrap();
        berth::sif::verify::signers(&image)
    };
    let tail = format!("this site runs only images signed by {trusted} (require_signature=yes in berth's plugstack.conf line); sign the image with `apptainer sign` and a key the site trusts, or ask your administrator");
    let cases = [
        ("bb.sif", format!("it is not signed; signer: none; {tail}")),
        (
            "other-pgp.sif",
            format!("it is signed by {other_fp}, which is not a trusted key; signer: {other_fp}; {tail}"),
        ),
        (
            "tampered.sif",
            format!("object 3 no longer matches its signature (signature object 4, signer {fp}): the image was changed after signing; signer: {fp}; {tail}"),
        ),
        (
            "other-group.sif",
            format!("its signatures do not cover object 3 (the root filesystem berth mounts): they sign group 2; signer: {fp}; {tail}"),
        ),
    ];
    for (img, why) in cases {
        let path = images.path(img);
        let marker = images.dir.join(format!("ran-{}", std::process::id()));
        let _ = fs::remove_file(&marker);
        let touch = format!("touch {}", marker.display());
        let container = format!("--container={path}");
        let run = cluster.srun_as(TEST_USER, &[&container, "/bin/sh", "-c", &touch]);
        run.assert_failed();
        assert_eq!(
            run.berth_lines(),
            [format!("berth: cannot run --container={path}: {why}")],
            "{img}: {run}"
        );
        assert!(!marker.exists(), "{img}: the command ran:\n{run}");
    }
}

/// The verification is kept with the image's cached mount: the entry records it, and a
/// rewritten image (new ctime) is a new entry, verified again (here: refused).
#[test]
fn the_verification_is_kept_with_the_mount_and_redone_for_a_rewritten_image() {
    let Some((cluster, images)) = ready() else {
        return;
    };
    let img = images.dir.join("rewritten.sif");
    fs::copy(images.dir.join("site-pgp.sif"), &img).unwrap();
    fs::set_permissions(&img, fs::Permissions::from_mode(0o644)).unwrap();
    let container = format!("--container={}", img.display());
    let run = cluster.srun_as(TEST_USER, &[&container, "/bin/cat", "/hello.txt"]);
    run.assert_ok();
    let host_run_dir = cluster.host_path(Path::new(&run_dir(&cluster)));
    let verified: Vec<PathBuf> = fs::read_dir(host_run_dir.join("images"))
        .unwrap()
        .flatten()
        .map(|e| e.path().join("verified"))
        .filter(|p| p.exists())
        .collect();
    assert!(
        !verified.is_empty(),
        "no cache entry records a verification"
    );
    // Rewrite one squashfs byte in place: same inode, new ctime.
    let (_, offset) = root_of(&img);
    let mut bytes = fs::read(&img).unwrap();
    bytes[offset as usize + 4096] ^= 0x01;
    fs::write(&img, &bytes).unwrap();
    let run = cluster.srun_as(TEST_USER, &[&container, "/bin/cat", "/hello.txt"]);
    run.assert_failed();
    let lines = run.berth_lines();
    assert_eq!(lines.len(), 1, "{run}");
    assert!(
        lines[0].contains("no longer matches its signature"),
        "{run}"
    );
    fs::remove_file(&img).unwrap();
    reap(&cluster, &images);
}
