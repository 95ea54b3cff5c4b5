//! slurmstepd side of `srun --container=IMAGE.sif` (see `crate::container`).
//!
//! Hook by hook:
//! - `user_init` (slurmstepd, euid = the user, cwd = the job's, before any
//!   task is forked): everything that can fail is done here, with the user's
//!   rights where the user names a path: open the image, check it, open the
//!   bind sources; then, as root, take the image's shared mount from the
//!   cache (mounting it on first use), build the step's view in a namespace
//!   of its own, and set the task environment. A failure is printed once on
//!   srun's stderr as `berth: <cause and what to do>` and remembered.
//! - `task_init_privileged` (each task, root): enter the view in a namespace
//!   of the task's own, or fail the task if `user_init` failed, so srun exits
//!   non-zero and the command never runs on the host.
//! - `task_init` (each task, as the user): `--container-workdir`.
//! - `exit` (slurmstepd, root): give the cached mount back; unmount images
//!   idle for `mount_idle_seconds`.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::PluginError;
use crate::config::{Config, ConfigError};
use crate::container::binds::{self, Bind};
use crate::container::cache::{Cache, Holder, Lease, Limits, ViewLease};
use crate::container::identity::{self, Identity};
use crate::container::{env, image, mount_policy, signature_policy, sys, view, ContainerError};
use crate::options::{self, UserOptions};
use crate::privilege::RootGuard;
use crate::spank::{self, Hook, Spank, StepId};

/// What the container support keeps about the step between hooks.
#[derive(Default)]
pub(crate) struct ContainerState {
    step: Option<Result<Running, Refused>>,
}

/// A step running in an image on this node.
struct Running {
    /// The step's mount namespace, entered by each task.
    ns: OwnedFd,
    leases: Leases,
    cache: Cache,
    workdir: Option<PathBuf>,
}

/// A step refused in `user_init`; the user has been told why.
struct Refused(String);

pub(super) fn on_hook(
    hook: Hook,
    spank: &mut dyn Spank,
    config: &Config,
    state: &mut ContainerState,
) -> Result<(), PluginError> {
    let started = Instant::now();
    let active = state.step.is_some();
    let result = match hook {
        Hook::UserInit => user_init(spank, config, state),
        Hook::TaskInitPrivileged => task_init_privileged(state),
        Hook::TaskInit => task_init(spank, state),
        Hook::Exit => exit(config, state),
        _ => return Ok(()),
    };
    if active || state.step.is_some() {
        log::debug!(
            "container: {} took {} us",
            hook.name(),
            started.elapsed().as_micros()
        );
    }
    result
}

fn user_init(
    spank: &mut dyn Spank,
    config: &Config,
    state: &mut ContainerState,
) -> Result<(), PluginError> {
    let Some(request) = spank.getenv("SLURM_CONTAINER")?.filter(|r| !r.is_empty()) else {
        return Ok(());
    };
    state.step = match start_step(spank, config, Path::new(&request)) {
        Ok(Some(running)) => Some(Ok(running)),
        Ok(None) => {
            log::info!(
                "--container={request} is not an image; left to Slurm's OCI support (oci.conf)"
            );
            None
        }
        Err(e) => Some(Err(tell_user(&e))),
    };
    Ok(())
}

/// The whole container setup of a step, as named steps.
fn start_step(
    spank: &mut dyn Spank,
    config: &Config,
    request: &Path,
) -> Result<Option<Running>, ContainerError> {
    let mut phases = Phases::start();
    let options = user_options(spank, config)?;
    let file = image::open_as_user(request)?;
    let Some(image) = image::locate(request, file, image::oci_conf_exists())? else {
        return Ok(None);
    };
    mount_policy::check(&image, config.squashfs_mount, &config.image_paths)?;
    phases.done("image");
    let identity = lookup_identity(spank)?;
    let binds = plan_binds(spank, config, &options, &identity)?;
    let binds::Opened {
        binds: opened,
        notes,
    } = binds::open_as_user(&binds, &config.user_bind_prefixes)?;
    for note in &notes {
        sys::write_all_raw(2, crate::spank::log::user_line(note).as_bytes());
        log::info!("container: {note}");
    }
    phases.done("user+binds");
    let _root = RootGuard::regain().map_err(|error| ContainerError::Setup {
        what: "regain root",
        error,
    })?;
    let cache = Cache::new(&config.run_dir).limited(Limits {
        max_images: config.max_images,
        max_images_per_user: config.max_images_per_user,
        uid: Some(identity.user.uid),
    });
    let holder = Holder::current().map_err(|error| ContainerError::Setup {
        what: "identify slurmstepd",
        error,
    })?;
    signature_policy::check(config, &cache, &image)?;
    phases.done("signature");
    let idle = Duration::from_secs(config.mount_idle_seconds);
    let lease = cache.acquire(&image.file, &image.key, holder, idle)?;
    phases.done(if lease.mounted_now { "mount" } else { "reuse" });
    let mut leases = Leases {
        image: Some(lease),
        view: None,
    };
    let step = Step {
        config,
        cache: &cache,
        holder,
        image: &image,
        options: &options,
        identity: &identity,
        binds: &binds,
        opened: &opened,
    };
    match enter_image(spank, &step, &mut leases, &mut phases) {
        Ok(ns) => {
            log::debug!("container: image {}: {phases}", image.path.display());
            Ok(Some(Running {
                ns,
                leases,
                cache,
                workdir: options.workdir,
            }))
        }
        Err(e) => {
            release(&cache, leases, config);
            Err(e)
        }
    }
}

/// What the second half of `user_init` works from.
struct Step<'a> {
    config: &'a Config,
    cache: &'a Cache,
    holder: Holder,
    image: &'a image::OpenedImage,
    options: &'a UserOptions,
    identity: &'a Identity,
    binds: &'a [Bind],
    opened: &'a [binds::OpenBind],
}

/// The step's view (a kept one when an earlier step built the same, else
/// built now and kept) and the task environment; returns the namespace.
fn enter_image(
    spank: &mut dyn Spank,
    step: &Step<'_>,
    leases: &mut Leases,
    phases: &mut Phases,
) -> Result<OwnedFd, ContainerError> {
    let keep = !step.options.writable && step.config.mount_idle_seconds > 0;
    let key = match keep {
        true => Some(view_key(
            step.image,
            step.identity,
            step.binds,
            step.opened,
        )?),
        false => None,
    };
    let kept = match &key {
        Some(k) => step.cache.find_view(k, step.holder)?,
        None => None,
    };
    let (ns, scripts) = match kept {
        Some(kept) => {
            leases.view = Some(kept.lease);
            phases.done("kept");
            (kept.ns, kept.scripts)
        }
        None => {
            let root = leases
                .image
                .as_ref()
                .map(|l| l.root.clone())
                .unwrap_or_default();
            let view = build_view(step, &root)?;
            log::debug!("container: view built: {}", timings(&view.timings));
            env::check_scripts_size(&view.scripts, step.config.env_limits)?;
            if let Some(k) = &key {
                match step
                    .cache
                    .store_view(k, view.ns.as_fd(), &view.scripts, step.holder)
                {
                    Ok(kept) => leases.view = Some(kept),
                    // Not kept for later steps; this step still runs.
                    Err(e) => {
                        log::warn!("container: cannot keep the step's view for later steps: {e}")
                    }
                }
            }
            phases.done("built");
            (view.ns, view.scripts)
        }
    };
    set_task_env(spank, step, &scripts)?;
    phases.done("env");
    Ok(ns)
}

/// What a step holds in the node's cache.
struct Leases {
    image: Option<Lease>,
    view: Option<ViewLease>,
}

fn build_view(step: &Step<'_>, image_root: &Path) -> Result<view::View, ContainerError> {
    let stage = stage_dir(step.config)?;
    let spec = view::Spec {
        image_root,
        stage: &stage,
        writable: step.options.writable,
        tmpfs_mib: step.config.writable_tmpfs_mib,
        binds: step.binds,
        opened: step.opened,
        identity: Some(step.identity),
        env_script_max_bytes: step.config.env_limits.script_bytes,
    };
    Ok(view::build(&spec)?)
}

fn timings(t: &[(&'static str, u128)]) -> String {
    let parts: Vec<String> = t.iter().map(|(n, us)| format!("{n}={us}us")).collect();
    parts.join(" ")
}

/// Everything a step's view depends on: two steps with the same key get the
/// same view, so the second can enter the first's. User-influenced sources
/// are named by what the user's descriptors resolved to (device, inode and
/// path), so a path swapped since cannot reach another view. The slurmstepd's
/// own mount namespace is part of it (per-job namespaces, e.g.
/// job_container/tmpfs, never share views).
fn view_key(
    image: &image::OpenedImage,
    identity: &Identity,
    binds: &[Bind],
    opened: &[binds::OpenBind],
) -> Result<String, ContainerError> {
    use std::fmt::Write;
    use std::os::unix::fs::MetadataExt;
    let setup = |what| move |error| ContainerError::Setup { what, error };
    let ns = std::fs::metadata("/proc/self/ns/mnt")
        .map_err(setup("read slurmstepd's mount namespace"))?;
    let mut key = format!(
        "berth view 1\nimage {}\nmntns {}\nuser {:?}\n",
        image.key.dir_name(),
        ns.ino(),
        identity
    );
    for b in binds {
        let _ = write!(
            key,
            "bind {:?} {} -> {} ro={}",
            b.origin,
            b.source.display(),
            b.target.display(),
            b.read_only
        );
        if b.origin.user_influenced() {
            match opened.iter().find(|o| o.bind == *b) {
                Some(o) => {
                    let fd = o.source.as_raw_fd();
                    let meta = std::fs::metadata(format!("/proc/self/fd/{fd}"))
                        .map_err(setup("identify a bind source"))?;
                    let path = std::fs::read_link(format!("/proc/self/fd/{fd}"))
                        .map_err(setup("identify a bind source"))?;
                    let _ = write!(
                        key,
                        " id={}:{} path={}",
                        meta.dev(),
                        meta.ino(),
                        path.display()
                    );
                }
                None => key.push_str(" absent"),
            }
        }
        key.push('\n');
    }
    Ok(key)
}

fn user_options(spank: &dyn Spank, config: &Config) -> Result<UserOptions, ContainerError> {
    let job_env = env::from_strings(&spank.job_env()?);
    Ok(options::parse(
        &config.option_prefix,
        &spank::options::all_values(),
        &job_env,
    )?)
}

fn lookup_identity(spank: &dyn Spank) -> Result<Identity, ContainerError> {
    let uid = spank.uid()?;
    identity::lookup(uid, spank.gid()?, &spank.supplementary_gids()?)
        .map_err(|error| ContainerError::Identity { uid, error })
}

fn plan_binds(
    spank: &dyn Spank,
    config: &Config,
    options: &UserOptions,
    identity: &Identity,
) -> Result<Vec<Bind>, ContainerError> {
    let cwd = std::env::current_dir().map_err(|error| ContainerError::Setup {
        what: "read the job's working directory",
        error,
    })?;
    let batch_script = match spank.step_id()? {
        StepId::Batch => spank.job_argv()?.into_iter().next().map(PathBuf::from),
        _ => None,
    };
    let home = PathBuf::from(&identity.user.home);
    let request = binds::Request {
        site: &config.site_binds,
        home: options
            .mount_home
            .unwrap_or(config.mount_home)
            .then_some(home.as_path()),
        cwd: &cwd,
        batch_script: batch_script.as_deref(),
        user: &options.mounts,
    };
    Ok(binds::plan(&request)?)
}

/// `run_dir/stage`: an empty directory each step's private namespace mounts
/// its overlay's tmpfs on (invisible to the host); 0700, made through the
/// checked run_dir handle, so no component of its path is a user's.
fn stage_dir(config: &Config) -> Result<PathBuf, ContainerError> {
    let stage = crate::run_dir::Dir::open(&config.run_dir)
        .and_then(|run| run.subdir("stage"))
        .map_err(|e| ContainerError::Setup {
            what: "create berth's run directory",
            error: std::io::Error::other(e.to_string()),
        })?;
    Ok(stage.path().to_path_buf())
}

/// Microseconds per named phase of `user_init`, for the debug log.
struct Phases {
    last: Instant,
    done: Vec<(&'static str, u128)>,
}

impl Phases {
    fn start() -> Phases {
        Phases {
            last: Instant::now(),
            done: Vec::new(),
        }
    }

    fn done(&mut self, name: &'static str) {
        let now = Instant::now();
        self.done.push((name, (now - self.last).as_micros()));
        self.last = now;
    }
}

impl std::fmt::Display for Phases {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, (name, us)) in self.done.iter().enumerate() {
            let sep = if i == 0 { "" } else { " " };
            write!(f, "{sep}{name}={us}us")?;
        }
        Ok(())
    }
}

/// Sets the job environment the tasks start from (before the fork, so once
/// per step); Slurm adds the per-task variables afterwards.
fn set_task_env(
    spank: &mut dyn Spank,
    step: &Step<'_>,
    scripts: &[env::Script],
) -> Result<(), ContainerError> {
    let t0 = Instant::now();
    let job_env = env::from_strings(&spank.job_env()?);
    let t1 = Instant::now();
    let built = env::container_env(
        &job_env,
        scripts,
        &step.options.env,
        &step.identity.user.home,
        step.config.env_limits,
    )?;
    let t2 = Instant::now();
    for line in &built.skipped {
        log::warn!("image environment: line not understood, skipped: {line}");
    }
    let (set, unset) = env::diff(&job_env, &built.env);
    for (k, v) in &set {
        spank.setenv(k, v, true)?;
    }
    for k in &unset {
        spank.unsetenv(k)?;
    }
    log::debug!(
        "container: env: read={}us eval={}us set={}us ({} set, {} unset)",
        (t1 - t0).as_micros(),
        (t2 - t1).as_micros(),
        t2.elapsed().as_micros(),
        set.len(),
        unset.len()
    );
    Ok(())
}

/// Prints the one line the user sees on srun's stderr (slurmstepd's stderr
/// is the task's there), and logs it in slurmd's log.
fn tell_user(e: &ContainerError) -> Refused {
    let text = e.to_string();
    sys::write_all_raw(2, crate::spank::log::user_line(&text).as_bytes());
    log::info!("container step refused: {text}");
    Refused(text)
}

fn task_init_privileged(state: &mut ContainerState) -> Result<(), PluginError> {
    match &state.step {
        None => Ok(()),
        Some(Err(Refused(text))) => Err(PluginError::Reported(text.clone())),
        Some(Ok(running)) => view::enter(running.ns.as_fd())
            .map_err(|e| PluginError::Step(format!("cannot enter the container: {e}"))),
    }
}

fn task_init(spank: &mut dyn Spank, state: &mut ContainerState) -> Result<(), PluginError> {
    let Some(Ok(Running {
        workdir: Some(dir), ..
    })) = &state.step
    else {
        return Ok(());
    };
    std::env::set_current_dir(dir).map_err(|e| {
        PluginError::Step(format!(
            "--container-workdir: cannot change to {} in the container: {e}",
            dir.display()
        ))
    })?;
    spank.setenv("PWD", &dir.display().to_string(), true)?;
    Ok(())
}

fn exit(config: &Config, state: &mut ContainerState) -> Result<(), PluginError> {
    let Some(Ok(running)) = state.step.take() else {
        return Ok(());
    };
    let started = Instant::now();
    drop(running.ns);
    let ns_us = started.elapsed().as_micros();
    release(&running.cache, running.leases, config);
    log::debug!(
        "container: exit: close-ns={ns_us}us release={}us",
        started.elapsed().as_micros() - ns_us
    );
    Ok(())
}

fn release(cache: &Cache, leases: Leases, config: &Config) {
    if let Some(view) = leases.view {
        if let Err(e) = cache.release_view(view) {
            log::error!("container: cannot release the step's view: {e}");
        }
    }
    let Some(lease) = leases.image else { return };
    let idle = Duration::from_secs(config.mount_idle_seconds);
    match cache.release(lease, idle) {
        Ok(reaped) => {
            for root in reaped.unmounted {
                log::debug!("container: unmounted idle image {}", root.display());
            }
        }
        Err(e) => log::error!("container: cannot release the image mount: {e}"),
    }
}

/// With a broken plugstack.conf line, a step that asks for a container fails
/// instead of running its command on the host.
pub(super) fn refuse_when_misconfigured(
    hook: Hook,
    spank: &mut dyn Spank,
    error: &ConfigError,
) -> Result<(), PluginError> {
    if !matches!(hook, Hook::UserInit | Hook::TaskInitPrivileged) {
        return Ok(());
    }
    let Some(image) = spank.getenv("SLURM_CONTAINER")?.filter(|i| !i.is_empty()) else {
        return Ok(());
    };
    let text = format!(
        "cannot run --container={image}: berth is misconfigured on this node ({error}); \
         ask your administrator to fix berth's plugstack.conf line"
    );
    if hook == Hook::UserInit {
        // Said once, on srun's stderr; each task then fails quietly.
        sys::write_all_raw(2, crate::spank::log::user_line(&text).as_bytes());
        return Ok(());
    }
    Err(PluginError::Reported(text))
}

/// Unmounts what no live step holds and has been idle for `idle` (slurmd
/// start: `mount_idle_seconds`, e.g. mounts of slurmstepds that crashed while
/// no step followed; slurmd exit: at once, since no new step will come).
pub(super) fn reap_idle(config: &Config, idle: Duration) {
    let cache = Cache::new(&config.run_dir);
    match cache.reap(idle) {
        Ok(r) if !r.unmounted.is_empty() || r.views > 0 => log::info!(
            "container: unmounted {} idle image(s) and {} kept view(s)",
            r.unmounted.len(),
            r.views
        ),
        Ok(_) => {}
        Err(e) => log::error!("container: cannot reap idle images: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spank::fake::FakeSpank;

    #[test]
    fn a_misconfigured_node_refuses_container_steps_only() {
        let error = Config::from_args(&["bogus=1"]).unwrap_err();
        let mut spank = FakeSpank::remote();
        assert!(refuse_when_misconfigured(Hook::TaskInitPrivileged, &mut spank, &error).is_ok());
        spank
            .env
            .insert("SLURM_CONTAINER".into(), "/img.sif".into());
        let err =
            refuse_when_misconfigured(Hook::TaskInitPrivileged, &mut spank, &error).unwrap_err();
        assert!(err
            .to_string()
            .starts_with("cannot run --container=/img.sif: berth is misconfigured"));
        assert!(refuse_when_misconfigured(Hook::Init, &mut spank, &error).is_ok());
    }

    #[test]
    fn steps_without_a_container_are_untouched() {
        let mut spank = FakeSpank::remote();
        let mut state = ContainerState::default();
        let config = Config::default();
        for hook in [
            Hook::UserInit,
            Hook::TaskInitPrivileged,
            Hook::TaskInit,
            Hook::Exit,
        ] {
            on_hook(hook, &mut spank, &config, &mut state).unwrap();
        }
        assert!(state.step.is_none());
    }

    #[test]
    fn a_refused_step_fails_every_task_without_a_second_message() {
        let mut spank = FakeSpank::remote();
        spank
            .env
            .insert("SLURM_CONTAINER".into(), "/nonexistent/img.sif".into());
        let mut state = ContainerState::default();
        let config = Config::default();
        on_hook(Hook::UserInit, &mut spank, &config, &mut state).unwrap();
        for _ in 0..2 {
            let err =
                on_hook(Hook::TaskInitPrivileged, &mut spank, &config, &mut state).unwrap_err();
            assert!(matches!(err, PluginError::Reported(_)));
            assert!(
                err.to_string()
                    .starts_with("image /nonexistent/img.sif does not exist"),
                "{err}"
            );
        }
    }
}
