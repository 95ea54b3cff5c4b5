//! The options users give on srun/sbatch (`--container-mounts=...`), named as
//! pyxis names them because users know those names. One table drives
//! registration, parsing and the environment fallbacks.
//!
//! The image itself comes from Slurm's own `--container` (SLURM_CONTAINER).

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::spank::OptionSpec;

/// What each user option means, independent of the site's prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptionKind {
    Mounts,
    Workdir,
    MountHome,
    NoMountHome,
    Writable,
    Readonly,
    Env,
}

struct OptionDef {
    kind: OptionKind,
    /// Name after the site's prefix, e.g. `container-mounts`.
    name: &'static str,
    arginfo: Option<&'static str>,
    usage: &'static str,
    /// Job environment variable read when the option is not given.
    env: &'static str,
}

const OPTIONS: &[OptionDef] = &[
    OptionDef {
        kind: OptionKind::Mounts,
        name: "container-mounts",
        arginfo: Some("SRC:DST[:ro],..."),
        usage: "[berth] bind mount host paths into the container (--container=IMAGE.sif)",
        env: "BERTH_CONTAINER_MOUNTS",
    },
    OptionDef {
        kind: OptionKind::Workdir,
        name: "container-workdir",
        arginfo: Some("DIR"),
        usage: "[berth] working directory inside the container",
        env: "BERTH_CONTAINER_WORKDIR",
    },
    OptionDef {
        kind: OptionKind::MountHome,
        name: "container-mount-home",
        arginfo: None,
        usage: "[berth] bind the user's home directory into the container (site default)",
        env: "BERTH_CONTAINER_MOUNT_HOME",
    },
    OptionDef {
        kind: OptionKind::NoMountHome,
        name: "no-container-mount-home",
        arginfo: None,
        usage: "[berth] do not bind the user's home directory into the container",
        env: "",
    },
    OptionDef {
        kind: OptionKind::Writable,
        name: "container-writable",
        arginfo: None,
        usage: "[berth] make the container's root writable (changes are discarded at the end)",
        env: "BERTH_CONTAINER_WRITABLE",
    },
    OptionDef {
        kind: OptionKind::Readonly,
        name: "container-readonly",
        arginfo: None,
        usage: "[berth] keep the container's root read-only (the default)",
        env: "",
    },
    OptionDef {
        kind: OptionKind::Env,
        name: "container-env",
        arginfo: Some("NAME,..."),
        usage: "[berth] host environment variables that override the image's inside the container",
        env: "BERTH_CONTAINER_ENV",
    },
];

fn full_name(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}-{name}")
    }
}

/// The options to register with Slurm, named with the site's prefix.
pub fn specs(prefix: &str) -> Vec<OptionSpec> {
    OPTIONS
        .iter()
        .map(|o| OptionSpec {
            name: full_name(prefix, o.name),
            arginfo: o.arginfo.map(str::to_string),
            usage: o.usage.to_string(),
        })
        .collect()
}

/// A `--container-mounts` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserMount {
    pub source: PathBuf,
    pub target: PathBuf,
    pub read_only: bool,
}

/// The container options of one step, validated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserOptions {
    pub mounts: Vec<UserMount>,
    pub workdir: Option<PathBuf>,
    /// `None`: the site's default.
    pub mount_home: Option<bool>,
    pub writable: bool,
    pub env: Vec<String>,
}

/// A user option berth cannot use; the text goes to the user's terminal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("--{option}: {reason}")]
pub struct OptionError {
    pub option: String,
    pub reason: String,
}

fn parse_mount(spec: &str) -> Result<UserMount, String> {
    let parts: Vec<&str> = spec.split(':').collect();
    let (source, target, flags) = match parts.as_slice() {
        [src] => (*src, *src, None),
        [src, dst] => (*src, *dst, None),
        [src, dst, flags] => (*src, *dst, Some(*flags)),
        _ => return Err(format!("'{spec}' is not SRC:DST[:ro]")),
    };
    let read_only = match flags {
        None | Some("rw") => false,
        Some("ro") => true,
        Some(other) => {
            return Err(format!(
                "'{spec}': unknown flag '{other}' (accepted: ro, rw)"
            ))
        }
    };
    for (what, path) in [("source", source), ("destination", target)] {
        if !path.starts_with('/') {
            return Err(format!("'{spec}': the {what} must be an absolute path"));
        }
    }
    Ok(UserMount {
        source: source.into(),
        target: target.into(),
        read_only,
    })
}

fn parse_env_names(value: &str) -> Result<Vec<String>, String> {
    value
        .split(',')
        .filter(|n| !n.is_empty())
        .map(|n| {
            let valid = n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !n.starts_with(|c: char| c.is_ascii_digit());
            if valid {
                Ok(n.to_string())
            } else {
                Err(format!("'{n}' is not a variable name"))
            }
        })
        .collect()
}

fn env_flag(value: &str) -> Result<bool, String> {
    match value {
        "1" | "yes" | "true" | "on" => Ok(true),
        "0" | "no" | "false" | "off" | "" => Ok(false),
        v => Err(format!(
            "'{v}' is not a boolean (expected 1/0, yes/no, true/false)"
        )),
    }
}

/// Builds the step's options from the values Slurm passed (by full option
/// name) and, for options not given, the job environment's fallbacks.
pub fn parse(
    prefix: &str,
    given: &BTreeMap<String, Option<String>>,
    job_env: &BTreeMap<String, String>,
) -> Result<UserOptions, OptionError> {
    let mut out = UserOptions::default();
    let mut home_flags = Vec::new();
    let mut root_flags = Vec::new();
    for def in OPTIONS {
        let name = full_name(prefix, def.name);
        let err = |reason: String| OptionError {
            option: name.clone(),
            reason,
        };
        let (value, from_env) = match given.get(&name) {
            Some(v) => (v.clone().unwrap_or_default(), false),
            None => match job_env.get(def.env).filter(|_| !def.env.is_empty()) {
                Some(v) => (v.clone(), true),
                None => continue,
            },
        };
        let flag_on = if from_env && def.arginfo.is_none() {
            env_flag(&value).map_err(err)?
        } else {
            true
        };
        match def.kind {
            OptionKind::Mounts => {
                out.mounts = value
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(parse_mount)
                    .collect::<Result<_, _>>()
                    .map_err(err)?
            }
            OptionKind::Workdir => {
                if !value.starts_with('/') {
                    return Err(err(format!("'{value}' must be an absolute path")));
                }
                out.workdir = Some(value.into());
            }
            OptionKind::Env => out.env = parse_env_names(&value).map_err(err)?,
            OptionKind::MountHome => home_flags.push((name.clone(), flag_on)),
            OptionKind::NoMountHome => home_flags.push((name.clone(), !flag_on)),
            OptionKind::Writable => root_flags.push((name.clone(), flag_on)),
            OptionKind::Readonly => root_flags.push((name.clone(), !flag_on)),
        }
    }
    out.mount_home = single_choice(&home_flags)?;
    out.writable = single_choice(&root_flags)?.unwrap_or(false);
    Ok(out)
}

/// A tri-state flag given through two options: both at once is an error.
fn single_choice(flags: &[(String, bool)]) -> Result<Option<bool>, OptionError> {
    match flags {
        [] => Ok(None),
        [(_, v)] => Ok(Some(*v)),
        [(a, x), (b, y), ..] if x != y => Err(OptionError {
            option: a.clone(),
            reason: format!("conflicts with --{b}; give only one of them"),
        }),
        [(_, v), ..] => Ok(Some(*v)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn given(pairs: &[(&str, Option<&str>)]) -> BTreeMap<String, Option<String>> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.map(str::to_string)))
            .collect()
    }

    #[test]
    fn specs_carry_the_site_prefix() {
        let names: Vec<String> = specs("berth").into_iter().map(|s| s.name).collect();
        assert!(names.contains(&"berth-container-mounts".to_string()));
        assert!(names.contains(&"berth-no-container-mount-home".to_string()));
        assert!(specs("")
            .iter()
            .any(|s| s.name == "container-workdir" && s.arginfo.is_some()));
    }

    #[test]
    fn all_options_parse() {
        let opts = parse(
            "",
            &given(&[
                ("container-mounts", Some("/data:/data:ro,/scratch:/s")),
                ("container-workdir", Some("/work")),
                ("no-container-mount-home", None),
                ("container-writable", None),
                ("container-env", Some("FOO,BAR_2")),
            ]),
            &BTreeMap::new(),
        )
        .unwrap();
        assert_eq!(opts.mounts.len(), 2);
        assert_eq!(
            opts.mounts[0],
            UserMount {
                source: "/data".into(),
                target: "/data".into(),
                read_only: true
            }
        );
        assert_eq!(opts.mounts[1].target, PathBuf::from("/s"));
        assert_eq!(opts.workdir, Some(PathBuf::from("/work")));
        assert_eq!(opts.mount_home, Some(false));
        assert!(opts.writable);
        assert_eq!(opts.env, vec!["FOO", "BAR_2"]);
    }

    #[test]
    fn no_options_mean_site_defaults() {
        let opts = parse("", &BTreeMap::new(), &BTreeMap::new()).unwrap();
        assert_eq!(opts, UserOptions::default());
    }

    #[test]
    fn conflicting_flags_are_an_error() {
        let err = parse(
            "",
            &given(&[
                ("container-mount-home", None),
                ("no-container-mount-home", None),
            ]),
            &BTreeMap::new(),
        )
        .unwrap_err();
        assert_eq!(err.to_string(), "--container-mount-home: conflicts with --no-container-mount-home; give only one of them");
    }

    #[test]
    fn bad_values_name_the_option() {
        let err = parse(
            "",
            &given(&[("container-mounts", Some("data:/data"))]),
            &BTreeMap::new(),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "--container-mounts: 'data:/data': the source must be an absolute path"
        );
        let err = parse(
            "",
            &given(&[("container-mounts", Some("/a:/b:rx"))]),
            &BTreeMap::new(),
        )
        .unwrap_err();
        assert!(err.reason.contains("unknown flag 'rx'"));
        let err = parse(
            "x",
            &given(&[("x-container-env", Some("1BAD"))]),
            &BTreeMap::new(),
        )
        .unwrap_err();
        assert_eq!(err.option, "x-container-env");
    }

    #[test]
    fn environment_fallbacks_apply_when_the_option_is_absent() {
        let env: BTreeMap<String, String> = [
            ("BERTH_CONTAINER_MOUNTS".to_string(), "/x:/y".to_string()),
            ("BERTH_CONTAINER_WRITABLE".to_string(), "1".to_string()),
            ("BERTH_CONTAINER_MOUNT_HOME".to_string(), "no".to_string()),
        ]
        .into();
        let opts = parse("", &BTreeMap::new(), &env).unwrap();
        assert_eq!(opts.mounts[0].target, PathBuf::from("/y"));
        assert!(opts.writable);
        assert_eq!(opts.mount_home, Some(false));
        let opts = parse("", &given(&[("container-mounts", Some("/a:/b"))]), &env).unwrap();
        assert_eq!(
            opts.mounts[0].target,
            PathBuf::from("/b"),
            "the option wins over the environment"
        );
        let bad: BTreeMap<String, String> =
            [("BERTH_CONTAINER_WRITABLE".to_string(), "maybe".to_string())].into();
        assert!(parse("", &BTreeMap::new(), &bad).is_err());
    }
}
