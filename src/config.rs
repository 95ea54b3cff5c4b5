//! berth's settings, from the plugstack.conf arguments
//! (`required /path/libberth.so key=value ...`).
//!
//! One parser serves the plugin and `berth doctor`. Every key has a default;
//! an unknown key or a bad value is an error naming the key, the value and
//! what is accepted.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// What berth does when an external cpuset excludes Slurm's allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CpusetPolicy {
    /// Leave the external cpuset; keep its intent as a cpu weight.
    Shares,
    /// Add the allocation to the external cpuset while steps need it.
    Widen,
    /// Fail the step early with a clear message.
    Strict,
    /// Do nothing.
    Off,
}

impl CpusetPolicy {
    pub const ACCEPTED: &'static str = "shares, widen, strict, off";

    pub fn name(self) -> &'static str {
        match self {
            CpusetPolicy::Shares => "shares",
            CpusetPolicy::Widen => "widen",
            CpusetPolicy::Strict => "strict",
            CpusetPolicy::Off => "off",
        }
    }
}

impl FromStr for CpusetPolicy {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "shares" => Ok(CpusetPolicy::Shares),
            "widen" => Ok(CpusetPolicy::Widen),
            "strict" => Ok(CpusetPolicy::Strict),
            "off" => Ok(CpusetPolicy::Off),
            _ => Err(()),
        }
    }
}

impl fmt::Display for CpusetPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Which images berth lets the kernel's squashfs driver mount for a user
/// (Apptainer's `allow setuid-mount squashfs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SquashfsMount {
    /// Only images under `image_paths=`, or that no one but root can write.
    Limited,
    /// Any image the user can read.
    Any,
    /// None: container steps are refused.
    No,
}

impl SquashfsMount {
    pub const ACCEPTED: &'static str = "limited, any, no";

    pub fn name(self) -> &'static str {
        match self {
            SquashfsMount::Limited => "limited",
            SquashfsMount::Any => "any",
            SquashfsMount::No => "no",
        }
    }
}

impl FromStr for SquashfsMount {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "limited" => Ok(SquashfsMount::Limited),
            "any" => Ok(SquashfsMount::Any),
            "no" => Ok(SquashfsMount::No),
            _ => Err(()),
        }
    }
}

/// A bind mount the site adds to every container: `SRC[:DST][:ro]`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SiteBind {
    pub source: PathBuf,
    pub target: PathBuf,
    pub read_only: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Config {
    /// `cpuset_policy=`: reconciliation of external cpusets.
    pub cpuset_policy: CpusetPolicy,
    /// `log_hooks=`: one info line per SPANK hook (for debugging berth itself).
    pub log_hooks: bool,
    /// `topology_cache=`: where the node's topology is cached as XML (`none`: never).
    pub topology_cache: Option<PathBuf>,
    /// `option_prefix=`: prefix for the container options, e.g. `berth` gives
    /// `--berth-container-mounts` (for clusters that also run pyxis).
    pub option_prefix: String,
    /// `binds=`: site binds added to every container, comma-separated.
    pub site_binds: Vec<SiteBind>,
    /// `mount_home=`: bind the user's home by default.
    pub mount_home: bool,
    /// `user_binds=`: path prefixes users may bind from (`--container-mounts`);
    /// `none` forbids user binds.
    pub user_bind_prefixes: Vec<PathBuf>,
    /// `mount_idle_seconds=`: how long an image stays mounted after its last step.
    pub mount_idle_seconds: u64,
    /// `env_script_max_bytes=`, `env_value_max_bytes=`: what evaluating an
    /// image's env scripts may cost root.
    pub env_limits: crate::container::env::Limits,
    /// `run_dir=`: where berth keeps its mounts and state on the node.
    pub run_dir: PathBuf,
    /// `max_images=`: mounted images on the node (each holds a loop device).
    pub max_images: u64,
    /// `max_images_per_user=`: mounted images one user's steps may add.
    pub max_images_per_user: u64,
    /// `writable_tmpfs_mib=`: size of the tmpfs holding a view's writes.
    pub writable_tmpfs_mib: u64,
    /// `squashfs_mount=`: which images the kernel may mount for a user.
    pub squashfs_mount: SquashfsMount,
    /// `image_paths=`: directories of admin-vetted images (`limited`).
    pub image_paths: Vec<PathBuf>,
    /// `require_signature=`: run only images signed by a key of `signature_keys=`.
    pub require_signature: bool,
    /// `signature_keys=`: the files of the keys the site trusts to sign images.
    pub signature_keys: Vec<PathBuf>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            cpuset_policy: CpusetPolicy::Shares,
            log_hooks: false,
            topology_cache: Some(PathBuf::from("/run/berth/topology.xml")),
            option_prefix: String::new(),
            site_binds: Vec::new(),
            mount_home: true,
            user_bind_prefixes: vec![PathBuf::from("/")],
            mount_idle_seconds: 300,
            env_limits: crate::container::env::Limits::default(),
            run_dir: PathBuf::from("/run/berth"),
            max_images: 256,
            max_images_per_user: 16,
            writable_tmpfs_mib: 64,
            squashfs_mount: SquashfsMount::Limited,
            image_paths: Vec::new(),
            require_signature: false,
            signature_keys: Vec::new(),
        }
    }
}

/// A plugstack.conf argument berth cannot use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid plugstack.conf argument '{arg}': {reason}")]
pub struct ConfigError {
    pub arg: String,
    pub reason: String,
}

/// One plugstack.conf key: the single source of its name, default and
/// meaning for the parser's error text, `berth doctor` and docs/admin.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key {
    pub name: &'static str,
    /// The default, written as it would be on the plugstack.conf line.
    pub default: &'static str,
    /// What values are accepted.
    pub accepted: &'static str,
    pub description: &'static str,
}

/// Every key berth accepts, in the order the docs list them.
pub const KEYS: &[Key] = &[
    Key {
        name: "cpuset_policy",
        default: "shares",
        accepted: "shares, widen, strict, off",
        description: "what berth does when a cpuset or affinity outside Slurm (slurmd's cpuset, a cgrules.conf rule, slurmd's CPU mask) excludes the step's allocation: `shares` moves the step out and keeps the external group's intent as a cpu weight; `widen` adds the allocation to the external cpuset while steps need it; `strict` fails the step with the cause on srun's stderr; `off` does nothing",
    },
    Key {
        name: "log_hooks",
        default: "no",
        accepted: "yes or no",
        description: "one info line per SPANK hook with the items berth sees (for debugging berth itself)",
    },
    Key {
        name: "topology_cache",
        default: "/run/berth/topology.xml",
        accepted: "an absolute path, or none",
        description: "where the node's hwloc topology is cached as XML (rebuilt after a reboot)",
    },
    Key {
        name: "option_prefix",
        default: "",
        accepted: "letters, digits and '-'",
        description: "prefix for berth's container options, e.g. `berth` gives `--berth-container-mounts` (for clusters that also run pyxis)",
    },
    Key {
        name: "binds",
        default: "",
        accepted: "SRC[:DST][:ro],...",
        description: "bind mounts added to every container",
    },
    Key {
        name: "mount_home",
        default: "yes",
        accepted: "yes or no",
        description: "bind the user's home directory into containers by default",
    },
    Key {
        name: "user_binds",
        default: "/",
        accepted: "absolute path prefixes, comma-separated, or none",
        description: "where users may bind from with `--container-mounts`",
    },
    Key {
        name: "mount_idle_seconds",
        default: "300",
        accepted: "a whole number of seconds",
        description: "how long an image stays mounted after its last step",
    },
    Key {
        name: "env_script_max_bytes",
        default: "1048576",
        accepted: "a whole number of bytes",
        description: "the most an image's env scripts (`/.singularity.d/env/*.sh`) may hold together; berth evaluates them as root, so a bigger image is refused with a `berth:` line",
    },
    Key {
        name: "env_value_max_bytes",
        default: "131072",
        accepted: "a whole number of bytes",
        description: "the longest value an image's env script may make (the kernel's limit for one environment string is 128 KiB); a script that grows a variable past it is refused with a `berth:` line naming the script and line",
    },
    Key {
        name: "run_dir",
        default: "/run/berth",
        accepted: "an absolute path",
        description: "where berth keeps its mounts and state on the node",
    },
    Key {
        name: "max_images",
        default: "256",
        accepted: "a whole number",
        description: "how many images may be mounted on the node at once (each holds a loop device; Apptainer's default loop device limit); idle images are unmounted first before a step is refused",
    },
    Key {
        name: "max_images_per_user",
        default: "16",
        accepted: "a whole number",
        description: "how many of those mounted images one user's steps may have added",
    },
    Key {
        name: "writable_tmpfs_mib",
        default: "64",
        accepted: "a whole number of MiB, at least 1",
        description: "size of the tmpfs that holds a container's writes (`--container-writable`, generated files); writing past it gives ENOSPC in the task (Apptainer's `sessiondir max size`)",
    },
    Key {
        name: "squashfs_mount",
        default: "limited",
        accepted: "limited, any, no",
        description: "which images the kernel's squashfs driver mounts for a user (Apptainer's `allow setuid-mount squashfs`): `limited` only an image under `image_paths=` or one that neither the user nor anyone but root can write (the file and every directory above it); `any` every image the user can read (the kernel driver then parses user-crafted bytes as root); `no` none",
    },
    Key {
        name: "image_paths",
        default: "",
        accepted: "absolute directories, comma-separated",
        description: "directories of images the site vouches for: with `squashfs_mount=limited` an image under one of them (resolved path) is mounted even if its owner can write it",
    },
    Key {
        name: "require_signature",
        default: "no",
        accepted: "yes, no",
        description: "run a container step only if the image's root filesystem is signed (`apptainer sign`, PGP or DSSE) by a key of `signature_keys=` and unchanged since; verified once per node and kept with the cached mount (`berth sif verify IMG --keys PATH` checks an image beforehand)",
    },
    Key {
        name: "signature_keys",
        default: "",
        accepted: "absolute paths of key files, comma-separated",
        description: "the keys the site trusts to sign images: OpenPGP public keys, armored or binary (`apptainer key export`), and PEM public keys (Ed25519, ECDSA P-256, RSA) for DSSE signatures made with `apptainer sign --key`",
    },
];

/// The key names, comma-separated (for error messages).
pub fn key_names() -> String {
    KEYS.iter().map(|k| k.name).collect::<Vec<_>>().join(", ")
}

/// The docs' table of keys (docs/admin.md holds exactly this; a test checks).
pub fn keys_markdown() -> String {
    let mut out =
        String::from("| key | default | accepted values | what it does |\n|---|---|---|---|\n");
    for k in KEYS {
        let default = if k.default.is_empty() {
            "(empty)".to_string()
        } else {
            format!("`{}`", k.default)
        };
        out += &format!(
            "| `{}` | {default} | {} | {} |\n",
            k.name, k.accepted, k.description
        );
    }
    out
}

fn parse_bool(value: &str) -> Result<bool, String> {
    match value {
        "yes" | "true" | "1" | "on" => Ok(true),
        "no" | "false" | "0" | "off" => Ok(false),
        _ => Err("expected yes or no (also accepted: true/false, 1/0, on/off)".into()),
    }
}

fn parse_abs_path(value: &str) -> Result<PathBuf, String> {
    if value.starts_with('/') {
        Ok(PathBuf::from(value))
    } else {
        Err("expected an absolute path".into())
    }
}

fn parse_bytes(value: &str) -> Result<usize, String> {
    value
        .parse()
        .map_err(|_| "expected a whole number of bytes".to_string())
}

fn parse_site_bind(spec: &str) -> Result<SiteBind, String> {
    let mut parts = spec.split(':');
    let source = parse_abs_path(parts.next().unwrap_or_default())
        .map_err(|e| format!("bind '{spec}': source: {e}"))?;
    let mut target = source.clone();
    let mut read_only = false;
    for part in parts {
        match part {
            "ro" => read_only = true,
            "rw" => read_only = false,
            p if p.starts_with('/') && target == source => target = PathBuf::from(p),
            p => {
                return Err(format!(
                    "bind '{spec}': unexpected '{p}' (expected SRC[:DST][:ro])"
                ))
            }
        }
    }
    Ok(SiteBind {
        source,
        target,
        read_only,
    })
}

fn parse_list<T>(value: &str, item: impl Fn(&str) -> Result<T, String>) -> Result<Vec<T>, String> {
    value
        .split(',')
        .filter(|s| !s.is_empty())
        .map(item)
        .collect()
}

impl Config {
    /// Every key with its value, written as on the plugstack.conf line (in
    /// KEYS order), for `berth doctor`.
    pub fn settings(&self) -> Vec<(&'static str, String)> {
        let paths = |v: &[PathBuf]| {
            v.iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(",")
        };
        let yes = |b: bool| if b { "yes" } else { "no" }.to_string();
        let binds = self
            .site_binds
            .iter()
            .map(|b| {
                let mut s = b.source.display().to_string();
                if b.target != b.source {
                    s += &format!(":{}", b.target.display());
                }
                if b.read_only {
                    s += ":ro";
                }
                s
            })
            .collect::<Vec<_>>()
            .join(",");
        vec![
            ("cpuset_policy", self.cpuset_policy.to_string()),
            ("log_hooks", yes(self.log_hooks)),
            (
                "topology_cache",
                self.topology_cache
                    .as_ref()
                    .map_or("none".into(), |p| p.display().to_string()),
            ),
            ("option_prefix", self.option_prefix.clone()),
            ("binds", binds),
            ("mount_home", yes(self.mount_home)),
            (
                "user_binds",
                if self.user_bind_prefixes.is_empty() {
                    "none".into()
                } else {
                    paths(&self.user_bind_prefixes)
                },
            ),
            ("mount_idle_seconds", self.mount_idle_seconds.to_string()),
            (
                "env_script_max_bytes",
                self.env_limits.script_bytes.to_string(),
            ),
            (
                "env_value_max_bytes",
                self.env_limits.value_bytes.to_string(),
            ),
            ("run_dir", self.run_dir.display().to_string()),
            ("max_images", self.max_images.to_string()),
            ("max_images_per_user", self.max_images_per_user.to_string()),
            ("writable_tmpfs_mib", self.writable_tmpfs_mib.to_string()),
            ("squashfs_mount", self.squashfs_mount.name().to_string()),
            ("image_paths", paths(&self.image_paths)),
            (
                "require_signature",
                if self.require_signature { "yes" } else { "no" }.to_string(),
            ),
            ("signature_keys", paths(&self.signature_keys)),
        ]
    }

    /// Parses the plugstack.conf arguments.
    pub fn from_args<S: AsRef<str>>(args: &[S]) -> Result<Config, ConfigError> {
        let mut config = Config::default();
        for arg in args {
            let arg = arg.as_ref();
            config.apply(arg).map_err(|reason| ConfigError {
                arg: arg.to_string(),
                reason,
            })?;
        }
        Ok(config)
    }

    fn apply(&mut self, arg: &str) -> Result<(), String> {
        let Some((key, value)) = arg.split_once('=') else {
            return Err(format!("expected key=value; known keys: {}", key_names()));
        };
        match key {
            "cpuset_policy" => {
                self.cpuset_policy = value
                    .parse()
                    .map_err(|_| format!("accepted values: {}", CpusetPolicy::ACCEPTED))?
            }
            "log_hooks" => self.log_hooks = parse_bool(value)?,
            "topology_cache" => {
                self.topology_cache = match value {
                    "none" => None,
                    v => Some(parse_abs_path(v).map_err(|e| format!("{e}, or none"))?),
                }
            }
            "option_prefix" => {
                if !value.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
                    return Err("expected letters, digits and '-' only".into());
                }
                self.option_prefix = value.to_string();
            }
            "binds" => self.site_binds = parse_list(value, parse_site_bind)?,
            "mount_home" => self.mount_home = parse_bool(value)?,
            "user_binds" => {
                self.user_bind_prefixes = match value {
                    "none" => Vec::new(),
                    v => parse_list(v, parse_abs_path).map_err(|e| {
                        format!("{e}: a comma-separated list of path prefixes, or none")
                    })?,
                }
            }
            "mount_idle_seconds" => {
                self.mount_idle_seconds = value
                    .parse()
                    .map_err(|_| "expected a whole number of seconds".to_string())?
            }
            "env_script_max_bytes" => self.env_limits.script_bytes = parse_bytes(value)?,
            "env_value_max_bytes" => self.env_limits.value_bytes = parse_bytes(value)?,
            "run_dir" => self.run_dir = parse_abs_path(value)?,
            "max_images" => self.max_images = parse_count(value)?,
            "max_images_per_user" => self.max_images_per_user = parse_count(value)?,
            "writable_tmpfs_mib" => {
                self.writable_tmpfs_mib = match value.parse() {
                    Ok(n) if n >= 1 => n,
                    _ => return Err("expected a whole number of MiB, at least 1".into()),
                }
            }
            "squashfs_mount" => {
                self.squashfs_mount = value
                    .parse()
                    .map_err(|_| format!("accepted values: {}", SquashfsMount::ACCEPTED))?
            }
            "image_paths" => self.image_paths = parse_list(value, parse_abs_path)?,
            "require_signature" => self.require_signature = parse_bool(value)?,
            "signature_keys" => self.signature_keys = parse_list(value, parse_abs_path)?,
            _ => return Err(format!("unknown key '{key}'; known keys: {}", key_names())),
        }
        Ok(())
    }
}

fn parse_count(value: &str) -> Result<u64, String> {
    value
        .parse()
        .map_err(|_| "expected a whole number".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_arguments_give_the_defaults() {
        let config = Config::from_args::<&str>(&[]).unwrap();
        assert_eq!(config, Config::default());
        assert_eq!(config.cpuset_policy, CpusetPolicy::Shares);
    }

    #[test]
    fn every_key_parses() {
        let config = Config::from_args(&[
            "cpuset_policy=widen",
            "log_hooks=yes",
            "topology_cache=none",
            "option_prefix=berth",
            "binds=/scratch,/opt/sw:/sw:ro",
            "mount_home=no",
            "user_binds=/home,/scratch",
            "mount_idle_seconds=60",
            "run_dir=/var/run/berth",
            "writable_tmpfs_mib=128",
            "squashfs_mount=any",
            "image_paths=/opt/images,/srv/sif",
            "require_signature=yes",
            "signature_keys=/etc/berth/site.asc,/etc/berth/dsse.pem",
        ])
        .unwrap();
        assert!(config.require_signature);
        assert_eq!(
            config.signature_keys,
            vec![
                PathBuf::from("/etc/berth/site.asc"),
                PathBuf::from("/etc/berth/dsse.pem")
            ]
        );
        assert_eq!(config.cpuset_policy, CpusetPolicy::Widen);
        assert!(config.log_hooks);
        assert_eq!(config.topology_cache, None);
        assert_eq!(config.option_prefix, "berth");
        assert_eq!(
            config.site_binds,
            vec![
                SiteBind {
                    source: "/scratch".into(),
                    target: "/scratch".into(),
                    read_only: false
                },
                SiteBind {
                    source: "/opt/sw".into(),
                    target: "/sw".into(),
                    read_only: true
                },
            ]
        );
        assert!(!config.mount_home);
        assert_eq!(
            config.user_bind_prefixes,
            vec![PathBuf::from("/home"), PathBuf::from("/scratch")]
        );
        assert_eq!(config.mount_idle_seconds, 60);
        assert_eq!(config.run_dir, PathBuf::from("/var/run/berth"));
        assert_eq!(config.writable_tmpfs_mib, 128);
        assert_eq!(config.squashfs_mount, SquashfsMount::Any);
        assert_eq!(
            config.image_paths,
            vec![PathBuf::from("/opt/images"), PathBuf::from("/srv/sif")]
        );
    }

    #[test]
    fn a_zero_tmpfs_and_an_unknown_squashfs_policy_are_refused() {
        for arg in [
            "writable_tmpfs_mib=0",
            "squashfs_mount=yes",
            "image_paths=rel",
        ] {
            assert!(Config::from_args(&[arg]).is_err(), "{arg}");
        }
    }

    #[test]
    fn a_bad_policy_names_the_argument_and_the_accepted_values() {
        let err = Config::from_args(&["cpuset_policy=bogus"]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid plugstack.conf argument 'cpuset_policy=bogus': accepted values: shares, widen, strict, off"
        );
    }

    #[test]
    fn an_unknown_key_lists_the_known_ones() {
        let err = Config::from_args(&["cpuset=off"]).unwrap_err();
        assert!(err.to_string().starts_with("invalid plugstack.conf argument 'cpuset=off': unknown key 'cpuset'; known keys: cpuset_policy,"));
    }

    #[test]
    fn an_argument_without_equals_is_an_error() {
        let err = Config::from_args(&["shares"]).unwrap_err();
        assert_eq!(err.arg, "shares");
        assert!(err.reason.starts_with("expected key=value"));
    }

    #[test]
    fn bad_booleans_numbers_and_paths_are_errors() {
        assert!(Config::from_args(&["log_hooks=maybe"])
            .unwrap_err()
            .reason
            .contains("yes or no"));
        assert!(Config::from_args(&["mount_idle_seconds=-1"]).is_err());
        assert!(Config::from_args(&["run_dir=relative"])
            .unwrap_err()
            .reason
            .contains("absolute"));
        assert!(Config::from_args(&["binds=/a:/b:/c"]).is_err());
        assert!(Config::from_args(&["option_prefix=a b"]).is_err());
    }

    #[test]
    fn the_keys_table_gives_the_defaults_and_matches_settings() {
        let names: Vec<&str> = KEYS.iter().map(|k| k.name).collect();
        let settings = Config::default().settings();
        assert_eq!(
            names,
            settings.iter().map(|(k, _)| *k).collect::<Vec<_>>(),
            "KEYS and Config::settings list the same keys in the same order"
        );
        for (key, (_, value)) in KEYS.iter().zip(&settings) {
            assert_eq!(key.default, value, "default of {}", key.name);
            let arg = format!("{}={}", key.name, key.default);
            assert_eq!(
                Config::from_args(&[arg]).unwrap(),
                Config::default(),
                "{}",
                key.name
            );
        }
    }

    #[test]
    fn settings_round_trip_through_the_parser() {
        let args = [
            "cpuset_policy=widen",
            "log_hooks=yes",
            "topology_cache=none",
            "option_prefix=berth",
            "binds=/scratch,/opt/sw:/sw:ro",
            "mount_home=no",
            "user_binds=none",
            "mount_idle_seconds=60",
            "env_script_max_bytes=65536",
            "env_value_max_bytes=4096",
            "run_dir=/var/run/berth",
            "max_images=8",
            "max_images_per_user=2",
            "writable_tmpfs_mib=64",
            "squashfs_mount=limited",
            "image_paths=",
            "require_signature=yes",
            "signature_keys=/etc/berth/a.asc,/etc/berth/b.pem",
        ];
        let config = Config::from_args(&args).unwrap();
        assert_eq!((config.max_images, config.max_images_per_user), (8, 2));
        let again: Vec<String> = config
            .settings()
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        assert_eq!(again, args);
    }

    #[test]
    fn docs_admin_md_holds_the_keys_table() {
        let docs = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/admin.md"))
            .expect("docs/admin.md");
        assert!(
            docs.contains(&keys_markdown()),
            "docs/admin.md's key table is out of date; replace it with the output of `berth doctor --keys`:\n{}",
            keys_markdown()
        );
    }

    #[test]
    fn user_binds_none_forbids_all() {
        let config = Config::from_args(&["user_binds=none"]).unwrap();
        assert!(config.user_bind_prefixes.is_empty());
    }
}
