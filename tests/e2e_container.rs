//! End-to-end: `srun --container=IMAGE.sif` on a real Slurm (test-cluster/), 22.05
//! and 24.11, as root and as the test user: what a task sees, binds and options, batch
//! jobs, two-node and concurrent steps, every refusal (exact text, non-zero exit, one
//! `berth:` line, the command never runs), and cleanup (no mount or loop device left,
//! also after scancel and after a slurmstepd crash).
//!
//! Needs BERTH_E2E_SLURM (see tests/support/mod.rs); skipped without it.

mod container_images;
mod support;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use berth::sif::build::{self, BuildOptions};
use berth::sif::Arch;
use container_images::loops_backed_by;
use support::{cluster, cpu_list, Cluster, Run, Setup, TEST_USER};

/// berth's run directory in these tests (inside the chroot for 24.11).
/// berth's run directory in these tests (as slurmstepd sees it): one per cluster slot,
/// so checkouts testing side by side on one machine keep their caches apart.
fn run_dir(cluster: &Cluster) -> String {
    format!("/run/berth-e2e-slot{}", cluster.info()["slot"])
}

/// The test images, in the cluster's shared directory.
struct Images {
    dir: PathBuf,
}

impl Images {
    fn path(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }
}

/// Builds the images once per test process (the cluster lock serialises callers).
fn images(cluster: &Cluster) -> Images {
    static BUILT: Mutex<Option<PathBuf>> = Mutex::new(None);
    let mut built = BUILT.lock().unwrap_or_else(|p| p.into_inner());
    let dir = cluster.shared_dir().join("container-images");
    if built.as_deref() == Some(dir.as_path()) {
        return Images { dir };
    }
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
    let work = tempfile::tempdir_in("/var/tmp").unwrap();
    let rootfs = work.path().join("rootfs");
    build::busybox::busybox_rootfs(&rootfs).unwrap();
    fs::write(rootfs.join("hello.txt"), "hello from the image\n").unwrap();
    let mut opts = BuildOptions::new();
    opts.metadata.environment = Some("export FOO=image\nexport PATH=/opt/app/bin:$PATH\n".into());
    build::build(&rootfs, &dir.join("bb.sif"), &opts).unwrap();
    let mut arm = BuildOptions::new();
    arm.arch = Some(Arch::from_name("arm64").unwrap());
    build::build(&rootfs, &dir.join("arm.sif"), &arm).unwrap();
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/sif");
    fs::copy(corpus.join("one-group.sif"), dir.join("one-group.sif")).unwrap();
    fs::copy(
        corpus.join("one-object-generic-json.sif"),
        dir.join("no-root.sif"),
    )
    .unwrap();
    // Damaged header: descriptors total absurd.
    let mut bytes = fs::read(dir.join("bb.sif")).unwrap();
    bytes[88..96].copy_from_slice(&i64::MAX.to_le_bytes());
    fs::write(dir.join("corrupt.sif"), &bytes).unwrap();
    // A valid SIF whose squashfs the kernel refuses: the id table lies past the end.
    let mut bytes = fs::read(dir.join("bb.sif")).unwrap();
    let part = root_partition_offset(&dir.join("bb.sif"));
    bytes[part + 48..part + 56].copy_from_slice(&(u64::MAX / 2).to_le_bytes());
    fs::write(dir.join("refused.sif"), &bytes).unwrap();
    fs::write(dir.join("notsif.txt"), "just text\n").unwrap();
    // A busybox the jobs can bind (the 24.11 chroot has none of its own).
    fs::copy(build::busybox::find_busybox().unwrap(), dir.join("busybox")).unwrap();
    fs::copy(dir.join("bb.sif"), dir.join("secret.sif")).unwrap();
    for entry in fs::read_dir(&dir).unwrap().flatten() {
        fs::set_permissions(entry.path(), fs::Permissions::from_mode(0o644)).unwrap();
    }
    fs::set_permissions(dir.join("busybox"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::set_permissions(dir.join("secret.sif"), fs::Permissions::from_mode(0o600)).unwrap();
    // Bind sources: readable data, and a directory the user cannot read.
    fs::create_dir_all(dir.join("data")).unwrap();
    fs::write(dir.join("data/input.txt"), "bound from the host\n").unwrap();
    fs::create_dir_all(dir.join("private")).unwrap();
    fs::set_permissions(dir.join("private"), fs::Permissions::from_mode(0o700)).unwrap();
    *built = Some(dir.clone());
    Images { dir }
}

fn root_partition_offset(sif: &Path) -> usize {
    let image = berth::sif::Image::open(sif).unwrap();
    image.primary_partition().unwrap().offset as usize
}

/// Two nodes, berth with a restricted user bind list and no idle time, so every
/// step's mount is gone when the step ends.
fn setup(cluster: &Cluster) -> Setup {
    let shared = cluster.shared_dir();
    Setup::default().nodes(2).plugstack_args(&format!(
        "log_hooks=yes run_dir={} mount_idle_seconds=0 user_binds=/home,{}",
        run_dir(cluster),
        shared.display()
    ))
}

fn ready() -> Option<(Cluster, Images)> {
    let cluster = cluster()?;
    let images = images(&cluster);
    cluster.ensure(&setup(&cluster));
    Some((cluster, images))
}

/// Mount points on the host under berth's run directory (host path).
fn mounts_under_run_dir(cluster: &Cluster) -> Vec<String> {
    let dir = cluster
        .host_path(Path::new(&run_dir(cluster)))
        .display()
        .to_string();
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| m.starts_with(&dir))
        .map(String::from)
        .collect()
}

fn loops_of_images(images: &Images) -> Vec<String> {
    let mut out = Vec::new();
    for e in fs::read_dir(&images.dir).unwrap().flatten() {
        out.extend(loops_backed_by(&e.path()));
    }
    out
}

/// Waits (slurmstepd may still run its exit hook when srun returns) until no mount
/// and no loop device of the test images is left; panics after 15 s.
#[track_caller]
fn wait_clean(cluster: &Cluster, images: &Images) {
    let start = Instant::now();
    loop {
        let mounts = mounts_under_run_dir(cluster);
        let loops = loops_of_images(images);
        if mounts.is_empty() && loops.is_empty() {
            return;
        }
        if start.elapsed() > Duration::from_secs(15) {
            panic!("left behind after the steps ended: mounts {mounts:?}, loop devices {loops:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `--container-mounts` binding the test busybox at /busybox.
fn busybox_bind(images: &Images) -> String {
    format!("--container-mounts={}:/busybox:ro", images.path("busybox"))
}

fn container(image: &str) -> String {
    format!("--container={image}")
}

/// The lines of stderr that start with `berth:`.
fn berth_lines(run: &Run) -> Vec<&str> {
    run.stderr
        .lines()
        .filter(|l| l.starts_with("berth:"))
        .collect()
}

#[test]
fn a_task_sees_the_image_its_user_environment_and_placement() {
    let Some((cluster, images)) = ready() else {
        return;
    };
    let bb = images.path("bb.sif");
    let script = "cat /hello.txt; id; pwd; echo FOO=$FOO; echo PATH=$PATH; echo BAR=$BAR; \
                  echo SLURM_PROCID=$SLURM_PROCID; echo HOME=$HOME; grep ^Cpus_allowed_list: /proc/self/status";
    let run = cluster.srun_as_with_env(
        Some(TEST_USER),
        &[("APPTAINERENV_BAR", "from-apptainerenv")],
        &[
            "-w",
            &cluster.nodes()[0],
            "-n2",
            "-l",
            &container(&bb),
            "/bin/sh",
            "-c",
            script,
        ],
    );
    run.assert_ok();
    let out = &run.stdout;
    let shared = cluster.shared_dir().display().to_string();
    for rank in 0..2 {
        let line = |s: &str| format!("{rank}: {s}");
        assert!(out.contains(&line("hello from the image")), "{run}");
        assert!(
            out.contains(&line(
                "uid=5001(berthtest) gid=5001(berthtest) groups=5001(berthtest)"
            )),
            "{run}"
        );
        assert!(out.contains(&line(&shared)), "cwd is the job's:\n{run}");
        assert!(out.contains(&line("FOO=image")), "{run}");
        assert!(
            out.contains(&line(
                "PATH=/opt/app/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
            )),
            "{run}"
        );
        assert!(out.contains(&line("BAR=from-apptainerenv")), "{run}");
        assert!(
            out.contains(&line(&format!("SLURM_PROCID={rank}"))),
            "{run}"
        );
        assert!(out.contains(&line("HOME=/home/berthtest")), "{run}");
    }
    // Placement exactly as without the container.
    let cpus = |run: &Run| -> Vec<Vec<u32>> {
        let mut v: Vec<(u32, Vec<u32>)> = run
            .stdout
            .lines()
            .filter_map(|l| {
                let (rank, rest) = l.split_once(": ")?;
                let list = rest.strip_prefix("Cpus_allowed_list:")?;
                Some((rank.trim().parse().ok()?, cpu_list(list.trim())))
            })
            .collect();
        v.sort();
        v.into_iter().map(|(_, c)| c).collect()
    };
    let plain = cluster.srun_as(
        TEST_USER,
        &[
            "-w",
            &cluster.nodes()[0],
            "-n2",
            "-l",
            "/bin/sh",
            "-c",
            "grep ^Cpus_allowed_list: /proc/self/status",
        ],
    );
    plain.assert_ok();
    assert_eq!(cpus(&run), cpus(&plain), "{run}\n{plain}");
    assert_eq!(cpus(&run).len(), 2);
    wait_clean(&cluster, &images);
}

#[test]
fn root_runs_in_the_image_too() {
    let Some((cluster, images)) = ready() else {
        return;
    };
    let run = cluster.srun(&[
        &container(&images.path("bb.sif")),
        "/bin/sh",
        "-c",
        "id -u; cat /hello.txt; whoami; test -e /usr/sbin/slurmd || echo host-invisible; \
         grep -c . /proc/self/mountinfo >/dev/null && echo proc-ok",
    ]);
    run.assert_ok();
    assert_eq!(
        run.lines(),
        [
            "0",
            "hello from the image",
            "root",
            "host-invisible",
            "proc-ok"
        ],
        "{run}"
    );
    wait_clean(&cluster, &images);
}

#[test]
fn binds_workdir_home_and_writable_root() {
    let Some((cluster, images)) = ready() else {
        return;
    };
    let bb = container(&images.path("bb.sif"));
    let data = images.dir.join("data").display().to_string();
    let mounts = format!("--container-mounts={data}:/data:ro");
    let run = cluster.srun_as(
        TEST_USER,
        &[&bb, &mounts, "--container-workdir=/data", "/bin/sh", "-c",
          "pwd; cat input.txt; touch /data/x 2>&1 | grep -o 'Read-only file system'; \
           test -d /home/berthtest && echo home-bound; touch /new 2>&1 | grep -o 'Read-only file system'"],
    );
    run.assert_ok();
    assert_eq!(
        run.lines(),
        [
            "/data",
            "bound from the host",
            "Read-only file system",
            "home-bound",
            "Read-only file system"
        ],
        "{run}"
    );
    let run = cluster.srun_as(
        TEST_USER,
        &[
            &bb,
            "--no-container-mount-home",
            "/bin/sh",
            "-c",
            "test -e /home/berthtest || echo no-home",
        ],
    );
    assert_eq!(run.lines(), ["no-home"], "{run}");
    // Writable: shown as root (the image's own permissions still apply to users).
    let run = cluster.srun(&[
        &bb,
        "--container-writable",
        "/bin/sh",
        "-c",
        "echo hi > /new && cat /new",
    ]);
    run.assert_ok();
    assert_eq!(run.lines(), ["hi"], "{run}");
    // A writable root is the step's only.
    let run = cluster.srun(&[&bb, "/bin/sh", "-c", "test -e /new || echo gone"]);
    assert_eq!(run.lines(), ["gone"], "{run}");
    wait_clean(&cluster, &images);
}

#[test]
fn the_corpus_image_runs_with_a_bound_busybox() {
    let Some((cluster, images)) = ready() else {
        return;
    };
    let run = cluster.srun_as(
        TEST_USER,
        &[
            &container(&images.path("one-group.sif")),
            &busybox_bind(&images),
            "/busybox",
            "cat",
            "/hello.txt",
        ],
    );
    run.assert_ok();
    assert_eq!(run.lines(), ["Hello from Sylabs!"], "{run}");
    wait_clean(&cluster, &images);
}

#[test]
fn a_batch_script_runs_inside_the_image() {
    let Some((cluster, images)) = ready() else {
        return;
    };
    let job = cluster.sbatch_wait(
        Some(TEST_USER),
        "#!/bin/sh\ncat /hello.txt\nid -un\necho FOO=$FOO\n",
        &[&container(&images.path("bb.sif"))],
    );
    job.run.assert_ok();
    assert_eq!(
        job.output.trim(),
        "hello from the image\nberthtest\nFOO=image",
        "{}",
        job.output
    );
    wait_clean(&cluster, &images);
}

#[test]
fn a_two_node_step_runs_every_task_inside() {
    let Some((cluster, images)) = ready() else {
        return;
    };
    let run = cluster.srun_as(
        TEST_USER,
        &[
            "-N2",
            "-n4",
            "-l",
            &container(&images.path("bb.sif")),
            "/bin/sh",
            "-c",
            "cat /hello.txt; echo $SLURMD_NODENAME",
        ],
    );
    run.assert_ok();
    for rank in 0..4 {
        assert!(
            run.stdout
                .contains(&format!("{rank}: hello from the image")),
            "{run}"
        );
    }
    for node in cluster.nodes() {
        assert!(run.stdout.contains(&node), "no task on {node}:\n{run}");
    }
    wait_clean(&cluster, &images);
}

#[test]
fn twenty_concurrent_steps_on_one_node() {
    let Some((cluster, images)) = ready() else {
        return;
    };
    let bb = images.path("bb.sif");
    let script = format!(
        "for i in $(seq 20); do srun --overlap -n1 --container={bb} /bin/sh -c 'cat /hello.txt; sleep 1' & done; wait"
    );
    let run = cluster.client(
        Some(TEST_USER),
        &[],
        &[
            "salloc",
            "-N1",
            "-w",
            &cluster.nodes()[0],
            "--exclusive",
            "/bin/sh",
            "-c",
            &script,
        ],
    );
    run.assert_ok();
    let ok = run
        .stdout
        .lines()
        .filter(|l| *l == "hello from the image")
        .count();
    assert_eq!(ok, 20, "{run}");
    wait_clean(&cluster, &images);
}

/// Runs a step that must be refused: non-zero exit, exactly one `berth:` line per
/// node (the given text), and the command never ran (it would leave a marker).
#[track_caller]
fn assert_refused(
    cluster: &Cluster,
    images: &Images,
    user: Option<&str>,
    args: &[&str],
    expected: &str,
) {
    let marker = images.dir.join(format!("ran-{}", std::process::id()));
    let _ = fs::remove_file(&marker);
    let touch = format!("touch {}", marker.display());
    let mut all: Vec<&str> = vec!["-n1"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["/bin/sh", "-c", &touch]);
    let run = cluster.srun_as_with_env(user, &[], &all);
    run.assert_failed();
    assert_eq!(berth_lines(&run), [expected], "{run}");
    assert!(
        !marker.exists(),
        "the command ran although the step was refused:\n{run}"
    );
    wait_clean(cluster, images);
}

#[test]
fn every_refusal_names_the_cause_and_the_fix() {
    let Some((cluster, images)) = ready() else {
        return;
    };
    let p = |n: &str| images.path(n);
    let u = Some(TEST_USER);
    let cases: Vec<(Option<&str>, Vec<String>, String)> = vec![
        (u, vec![container(&p("missing.sif"))],
         format!("berth: image {} does not exist; check the path given to --container (relative paths start in the job's working directory)", p("missing.sif"))),
        (u, vec![container(&p("secret.sif"))],
         format!("berth: you cannot read image {} (permission denied); make the image readable to you, or copy it somewhere you can read", p("secret.sif"))),
        (u, vec![container(&p("notsif.txt"))],
         format!("berth: {} is not a SIF image; --container takes a Singularity/Apptainer .sif file (this cluster does not configure Slurm's OCI bundles: there is no oci.conf)", p("notsif.txt"))),
        (u, vec![container(&p("corrupt.sif"))],
         format!("berth: {} is a damaged SIF image (descriptors total is 9223372036854775807, more than berth accepts (4096)); rebuild it or copy it again", p("corrupt.sif"))),
        (u, vec![container(&p("no-root.sif"))],
         format!("berth: {} has no root filesystem (no primary system partition (no FS object of partition type *System): not a container image); build it with `apptainer build` or `berth sif build`", p("no-root.sif"))),
        (u, vec![container(&p("arm.sif"))],
         format!("berth: {} cannot run on this node: image architecture is arm64, which this host (amd64) cannot run (and no binfmt_misc emulator for arm64 is registered); use an image built for this node's architecture", p("arm.sif"))),
        (u, vec![container(&p("refused.sif"))],
         "berth: the kernel refused to mount the image's squashfs (Invalid argument); the image is damaged or compressed with a method this node's kernel lacks: rebuild it (gzip is always supported)".into()),
        (u, vec![container(&p("bb.sif")), "--container-mounts=/nonexistent:/data".into()],
         "berth: --container-mounts: source /nonexistent does not exist; create it or fix the path".into()),
        (u, vec![container(&p("bb.sif")), "--container-mounts=/etc:/hostetc".into()],
         format!("berth: --container-mounts: /etc is outside the paths this site lets users bind (/home, {}); bind from one of those or ask your administrator", cluster.shared_dir().display())),
        (u, vec![container(&p("bb.sif")), format!("--container-mounts={}:/private", p("private"))],
         format!("berth: --container-mounts: you cannot read {}; bind only paths you can read", p("private"))),
        // Root is refused the same way (no special case for a missing image).
        (None, vec![container(&p("missing.sif"))],
         format!("berth: image {} does not exist; check the path given to --container (relative paths start in the job's working directory)", p("missing.sif"))),
    ];
    for (user, args, expected) in &cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        assert_refused(&cluster, &images, *user, &args, expected);
    }
}

#[test]
fn a_relative_image_path_starts_in_the_jobs_directory() {
    let Some((cluster, images)) = ready() else {
        return;
    };
    // The client's working directory is the shared directory.
    let run = cluster.srun_as(
        TEST_USER,
        &["--container=container-images/bb.sif", "cat", "/hello.txt"],
    );
    run.assert_ok();
    assert_eq!(run.lines(), ["hello from the image"], "{run}");
    wait_clean(&cluster, &images);
}

/// Submits a batch job that sleeps in bb.sif; returns its id once the image is mounted.
fn sleeping_container_job(cluster: &Cluster, images: &Images) -> String {
    let job = cluster.client(
        Some(TEST_USER),
        &[],
        &[
            "sbatch",
            "--parsable",
            "-o",
            "/dev/null",
            &container(&images.path("bb.sif")),
            "--wrap",
            "sleep 300",
        ],
    );
    job.assert_ok();
    let id = job.stdout.trim().to_string();
    let start = Instant::now();
    while mounts_under_run_dir(cluster).is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the job never mounted its image"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    id
}

#[test]
fn a_cancelled_step_leaves_nothing_mounted() {
    let Some((cluster, images)) = ready() else {
        return;
    };
    let id = sleeping_container_job(&cluster, &images);
    cluster.client(None, &[], &["scancel", &id]).assert_ok();
    wait_clean(&cluster, &images);
}

/// slurmstepd processes of `job` (by their command line `slurmstepd: [J.S]`).
fn stepd_pids(job: &str) -> Vec<i32> {
    let mut pids = Vec::new();
    for e in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let cmd = fs::read(e.path().join("cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmd).starts_with(&format!("slurmstepd: [{job}.")) {
            pids.push(pid);
        }
    }
    pids
}

/// Processes in the freezer cgroups of `job` on any node (read-only walk).
fn job_pids(cluster: &Cluster, job: &str) -> Vec<i32> {
    fn walk(dir: &Path, out: &mut Vec<i32>) {
        let procs = fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
        out.extend(procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
        for e in fs::read_dir(dir).into_iter().flatten().flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                walk(&e.path(), out);
            }
        }
    }
    let mut pids = Vec::new();
    for node in cluster.nodes() {
        let dir = PathBuf::from(format!(
            "/sys/fs/cgroup/freezer/slurm_{node}/uid_{}/job_{job}",
            support::TEST_UID
        ));
        walk(&dir, &mut pids);
    }
    pids
}

#[test]
fn a_mount_left_by_a_crashed_slurmstepd_is_reaped_by_the_next_step() {
    let Some((cluster, images)) = ready() else {
        return;
    };
    let id = sleeping_container_job(&cluster, &images);
    // Crash the job's slurmstepd (SIGKILL: no exit hook runs).
    for pid in stepd_pids(&id) {
        // SAFETY: kill(2) of a slurmstepd this test's job started.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    // Without its slurmstepd nothing stops the job's task: end it (it holds the
    // image through its mount namespace) the way the node would, by cgroup.
    for pid in job_pids(&cluster, &id) {
        // SAFETY: kill(2) of a process of this test's job.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    cluster.client(None, &[], &["scancel", &id]);
    std::thread::sleep(Duration::from_millis(500));
    // The next container step (another image) reaps the orphaned mount.
    let run = cluster.srun_as(
        TEST_USER,
        &[
            &container(&images.path("one-group.sif")),
            &busybox_bind(&images),
            "/busybox",
            "true",
        ],
    );
    run.assert_ok();
    wait_clean(&cluster, &images);
}

/// Entries of berth's kept views (host path of run_dir/views).
fn kept_views(cluster: &Cluster) -> usize {
    fs::read_dir(
        cluster
            .host_path(Path::new(&run_dir(cluster)))
            .join("views"),
    )
    .map(|d| d.count())
    .unwrap_or(0)
}

#[test]
fn repeated_steps_reuse_the_mount_and_the_view_and_idle_ones_go() {
    let Some((cluster, images)) = ready() else {
        return;
    };
    let args = |idle: u32| {
        format!(
            "log_hooks=yes run_dir={} mount_idle_seconds={idle} user_binds=/home,{}",
            run_dir(&cluster),
            cluster.shared_dir().display()
        )
    };
    cluster.set_plugstack_args(&args(300));
    let bb = container(&images.path("bb.sif"));
    let data = format!(
        "--container-mounts={}:/data:ro",
        images.dir.join("data").display()
    );
    let check = "cat /hello.txt; id -un; test -e /data && echo has-data; echo FOO=$FOO";
    let user = |extra: &[&str]| {
        let mut a = vec![bb.as_str()];
        a.extend_from_slice(extra);
        a.extend_from_slice(&["/bin/sh", "-c", check]);
        cluster.srun_as(TEST_USER, &a)
    };
    for _ in 0..2 {
        let run = user(&[]);
        assert_eq!(
            run.lines(),
            ["hello from the image", "berthtest", "FOO=image"],
            "{run}"
        );
    }
    assert_eq!(
        kept_views(&cluster),
        1,
        "the second step entered the first's view"
    );
    assert_eq!(
        mounts_under_run_dir(&cluster).len(),
        2,
        "one image mount, one kept view"
    );
    // Other binds, another user: other views, never the first one.
    let run = user(&[&data]);
    assert_eq!(
        run.lines(),
        ["hello from the image", "berthtest", "has-data", "FOO=image"],
        "{run}"
    );
    let run = cluster.srun(&[&bb, "/bin/sh", "-c", check]);
    assert_eq!(
        run.lines(),
        ["hello from the image", "root", "FOO=image"],
        "{run}"
    );
    assert_eq!(kept_views(&cluster), 3);
    let run = user(&[]);
    assert_eq!(
        run.lines(),
        ["hello from the image", "berthtest", "FOO=image"],
        "{run}"
    );
    // Idle time over: the next step lets every idle view and mount go.
    cluster.set_plugstack_args(&args(0));
    let run = user(&[]);
    run.assert_ok();
    wait_clean(&cluster, &images);
    assert_eq!(kept_views(&cluster), 0);
}

#[test]
fn a_misconfigured_node_refuses_container_steps_with_one_line() {
    let Some((cluster, images)) = ready() else {
        return;
    };
    let bb = images.path("bb.sif");
    cluster.set_plugstack_args("bogus=1");
    let marker = images.dir.join("ran-misconfigured");
    let _ = fs::remove_file(&marker);
    let touch = format!("touch {}", marker.display());
    let run = cluster.srun_as(TEST_USER, &[&container(&bb), "/bin/sh", "-c", &touch]);
    // Plain steps still run.
    let plain = cluster.srun_as(TEST_USER, &["true"]);
    cluster.ensure(&setup(&cluster));
    run.assert_failed();
    plain.assert_ok();
    let lines = berth_lines(&run);
    assert_eq!(lines.len(), 1, "{run}");
    assert!(
        lines[0].starts_with(&format!(
            "berth: cannot run --container={bb}: berth is misconfigured on this node (invalid plugstack.conf argument 'bogus=1': unknown key 'bogus'"
        )),
        "{run}"
    );
    assert!(!marker.exists(), "the command ran on the host:\n{run}");
}

/// The review's `--chdir=/etc`: a working directory outside `user_binds=` is not
/// bound (the host's /etc stayed out of the image), and srun's stderr says so.
#[test]
fn a_working_directory_outside_user_binds_is_not_bound() {
    let Some((cluster, images)) = ready() else {
        return;
    };
    let run = cluster.srun_as(
        TEST_USER,
        &[
            "--chdir=/etc",
            &container(&images.path("bb.sif")),
            "/bin/sh",
            "-c",
            "test -e /etc/debian_version && echo HOST-ETC || echo IMAGE-ETC",
        ],
    );
    run.assert_ok();
    assert!(
        run.stdout.contains("IMAGE-ETC"),
        "the host's /etc was bound:\n{run}"
    );
    let notes = berth_lines(&run);
    assert_eq!(notes.len(), 1, "{run}");
    assert!(
        notes[0].starts_with("berth: note: the working directory /etc (/etc) is outside the paths this site lets users bind"),
        "{run}"
    );
    wait_clean(&cluster, &images);
}

/// squashfs_mount=limited (the default): an image its user can rewrite is not
/// kernel-mounted (the kernel's squashfs driver would parse bytes the user can change
/// at any time), unless it lies under an admin's image_paths=; squashfs_mount=any
/// mounts it.
#[test]
fn a_user_writable_image_is_mounted_only_where_the_site_allows() {
    let Some((cluster, images)) = ready() else {
        return;
    };
    let own = cluster.shared_dir().join("user-owned.sif");
    fs::copy(images.path("bb.sif"), &own).unwrap();
    std::os::unix::fs::chown(&own, Some(support::TEST_UID), None).unwrap();
    let run_with = |extra: &str| {
        let base = setup(&cluster);
        let args = format!("{} {extra}", base.plugstack_args);
        cluster.ensure(&base.plugstack_args(&args));
        cluster.srun_as(
            TEST_USER,
            &[
                &container(&own.display().to_string()),
                "/bin/cat",
                "/hello.txt",
            ],
        )
    };
    let refused = run_with("");
    refused.assert_failed();
    assert!(
        !refused.stdout.contains("hello from the image"),
        "{refused}"
    );
    assert_eq!(
        berth_lines(&refused),
        vec![format!(
            "berth: cannot run --container={}: {} is owned by uid 5001, so someone other than root could change the image while the kernel reads it; this site mounts only images that no one but root can change, or images under image_paths= (none set) (squashfs_mount=limited in berth's plugstack.conf line); ask your administrator to install the image in one of those directories",
            own.display(),
            own.display()
        )],
        "{refused}"
    );
    for extra in [
        format!("image_paths={}", cluster.shared_dir().display()),
        "squashfs_mount=any".to_string(),
    ] {
        let run = run_with(&extra);
        run.assert_ok();
        assert!(
            run.stdout.contains("hello from the image"),
            "{extra}:\n{run}"
        );
    }
    cluster.ensure(&setup(&cluster));
    fs::remove_file(&own).unwrap();
    wait_clean(&cluster, &images);
}
