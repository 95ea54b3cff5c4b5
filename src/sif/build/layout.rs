//! The `/.singularity.d` layout `apptainer build` puts into every image, so that an
//! image berth builds runs under Apptainer as well as under berth.
//!
//! The script texts behave as Apptainer's (`internal/pkg/build/sources/*.sh`, BSD-3-Clause,
//! Apptainer a Series of LF Projects LLC and Sylabs Inc.): the actions source
//! `/.singularity.d/env/*.sh` in lexical order and exec the command, runscript or shell.

/// What a layout entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File(String),
    Symlink(&'static str),
}

/// One path of the layout, relative to the image root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub path: &'static str,
    pub mode: u32,
    pub kind: Kind,
}

fn dir(path: &'static str, mode: u32) -> Entry {
    Entry {
        path,
        mode,
        kind: Kind::Dir,
    }
}

fn file(path: &'static str, mode: u32, text: impl Into<String>) -> Entry {
    Entry {
        path,
        mode,
        kind: Kind::File(text.into()),
    }
}

fn symlink(path: &'static str, target: &'static str) -> Entry {
    Entry {
        path,
        mode: 0o777,
        kind: Kind::Symlink(target),
    }
}

/// The base layout, parents before children. Files that already exist in a rootfs
/// are kept, as `apptainer build` keeps them.
pub fn base() -> Vec<Entry> {
    vec![
        dir(".singularity.d", 0o755),
        dir(".singularity.d/libs", 0o755),
        dir(".singularity.d/actions", 0o755),
        dir(".singularity.d/env", 0o755),
        dir("dev", 0o755),
        dir("proc", 0o555),
        dir("root", 0o700),
        dir("var", 0o755),
        dir("var/tmp", 0o1777),
        dir("tmp", 0o1777),
        dir("etc", 0o755),
        dir("sys", 0o555),
        dir("home", 0o755),
        file("etc/hosts", 0o644, ""),
        file("etc/resolv.conf", 0o644, ""),
        file(".singularity.d/actions/exec", 0o755, EXEC),
        file(".singularity.d/actions/run", 0o755, RUN),
        file(".singularity.d/actions/shell", 0o755, SHELL),
        file(".singularity.d/actions/start", 0o755, START),
        file(".singularity.d/actions/test", 0o755, TEST),
        file(".singularity.d/env/01-base.sh", 0o755, BASE_01),
        file(
            ".singularity.d/env/90-environment.sh",
            0o755,
            ENVIRONMENT_90,
        ),
        file(".singularity.d/env/95-apps.sh", 0o755, APPS_95),
        file(".singularity.d/env/99-base.sh", 0o755, BASE_99),
        file(
            ".singularity.d/env/99-runtimevars.sh",
            0o755,
            RUNTIMEVARS_99,
        ),
        file(".singularity.d/runscript", 0o755, RUNSCRIPT),
        file(".singularity.d/startscript", 0o755, STARTSCRIPT),
        symlink("singularity", ".singularity.d/runscript"),
        symlink(".run", ".singularity.d/actions/run"),
        symlink(".exec", ".singularity.d/actions/exec"),
        symlink(".test", ".singularity.d/actions/test"),
        symlink(".shell", ".singularity.d/actions/shell"),
        symlink("environment", ".singularity.d/env/90-environment.sh"),
    ]
}

/// Where the labels go.
pub const LABELS_JSON: &str = ".singularity.d/labels.json";
/// Where the definition file goes.
pub const DEFINITION: &str = ".singularity.d/Singularity";
/// The environment script a definition's `%environment` goes into.
pub const ENVIRONMENT: &str = ".singularity.d/env/90-environment.sh";
/// The runscript.
pub const RUNSCRIPT_PATH: &str = ".singularity.d/runscript";

/// `90-environment.sh` with `script` appended, as `apptainer build` writes it.
pub fn environment_script(existing: Option<&str>, script: &str) -> String {
    match existing {
        Some(text) => format!("{text}\n{script}\n"),
        None => format!("#!/bin/sh\n\n{script}\n"),
    }
}

/// A runscript from a definition's `%runscript` body, `#!/bin/sh` unless it has its own.
pub fn runscript(body: &str) -> String {
    if body.trim_start().starts_with("#!") {
        let (shebang, rest) = body.trim_start().split_once('\n').unwrap_or((body, ""));
        format!("{}\n\n{rest}\n", shebang.trim())
    } else {
        format!("#!/bin/sh\n\n{body}\n")
    }
}

/// The first lines of every script.
macro_rules! header {
    () => {
        "#!/bin/sh\n# Written by berth sif build; same behaviour as Apptainer's (BSD-3-Clause).\n\n"
    };
}

/// How the actions source the environment scripts.
macro_rules! source_env {
    () => {
        r#"for script in /.singularity.d/env/*.sh; do
    if [ -f "$script" ]; then
        . "$script"
    fi
done
"#
    };
}

const EXEC: &str = concat!(header!(), source_env!(), "\nexec \"$@\"\n");

const RUN: &str = concat!(
    header!(),
    source_env!(),
    r#"
if test -n "${SINGULARITY_APPNAME:-}"; then
    if test -x "/scif/apps/${SINGULARITY_APPNAME:-}/scif/runscript"; then
        exec "/scif/apps/${SINGULARITY_APPNAME:-}/scif/runscript" "$@"
    elif test -x "/scif/apps/singularity/scif/runscript"; then
        exec "/scif/apps/singularity/scif/runscript" "$@"
    else
        echo "No Apptainer runscript for contained app: ${SINGULARITY_APPNAME:-}"
        exit 1
    fi
elif test -x "/.singularity.d/runscript"; then
    exec "/.singularity.d/runscript" "$@"
else
    echo "No Apptainer runscript found, executing /bin/sh"
    exec /bin/sh "$@"
fi
"#,
);

const SHELL: &str = concat!(
    header!(),
    source_env!(),
    r#"
if test -n "$SINGULARITY_SHELL" -a -x "$SINGULARITY_SHELL"; then
    exec $SINGULARITY_SHELL "$@"

    echo "ERROR: Failed running shell as defined by '\$SINGULARITY_SHELL'" 1>&2
    exit 1

elif test -x /bin/bash; then
    SHELL=/bin/bash
    PS1="Apptainer $APPTAINER_NAME:\\w> "
    export SHELL PS1
    exec /bin/bash --norc "$@"
elif test -x /bin/sh; then
    SHELL=/bin/sh
    export SHELL
    exec /bin/sh "$@"
else
    echo "ERROR: /bin/sh does not exist in container" 1>&2
fi
exit 1
"#,
);

const START: &str = concat!(
    header!(),
    "# if we are here start notify PID 1 to continue\n# DON'T REMOVE\nkill -CONT 1\n\n",
    source_env!(),
    r#"
if test -x "/.singularity.d/startscript"; then
    exec "/.singularity.d/startscript"
fi
"#,
);

const TEST: &str = concat!(
    header!(),
    source_env!(),
    r#"
if test -n "${SINGULARITY_APPNAME:-}"; then
    if test -x "/scif/apps/${SINGULARITY_APPNAME:-}/scif/test"; then
        exec "/scif/apps/${SINGULARITY_APPNAME:-}/scif/test" "$@"
    elif test -x "/scif/apps/singularity/scif/test"; then
        exec "/scif/apps/singularity/scif/test" "$@"
    else
        echo "No tests for contained app: ${SINGULARITY_APPNAME:-}"
        exit 1
    fi
elif test -x "/.singularity.d/test"; then
    exec "/.singularity.d/test" "$@"
else
    echo "No test found in container, executing /bin/sh -c true"
    exec /bin/sh -c true
fi
"#,
);

const BASE_01: &str = header!();

const ENVIRONMENT_90: &str = concat!(header!(), "# Custom environment shell code should follow\n");

const APPS_95: &str = concat!(
    header!(),
    r#"if test -n "${SINGULARITY_APPNAME:-}"; then

    # The active app should be exported
    export SINGULARITY_APPNAME

    if test -d "/scif/apps/${SINGULARITY_APPNAME:-}/"; then
        SCIF_APPS="/scif/apps"
        SCIF_APPROOT="/scif/apps/${SINGULARITY_APPNAME:-}"
        export SCIF_APPROOT SCIF_APPS
        PATH="/scif/apps/${SINGULARITY_APPNAME:-}:/scif/apps/singularity:$PATH"

        # Automatically add application bin to path
        if test -d "/scif/apps/${SINGULARITY_APPNAME:-}/bin"; then
            PATH="/scif/apps/${SINGULARITY_APPNAME:-}/bin:$PATH"
        elif test -d "/scif/apps/singularity/bin"; then
            PATH="/scif/apps/singularity/bin:$PATH"
        fi

        # Automatically add application lib to LD_LIBRARY_PATH
        if test -d "/scif/apps/${SINGULARITY_APPNAME:-}/lib"; then
            LD_LIBRARY_PATH="/scif/apps/${SINGULARITY_APPNAME:-}/lib:$LD_LIBRARY_PATH"
            export LD_LIBRARY_PATH
        elif test -d "/scif/apps/singularity/lib"; then
            LD_LIBRARY_PATH="/scif/apps/singularity/lib:$LD_LIBRARY_PATH"
            export LD_LIBRARY_PATH
        fi

        # Automatically source environment
        if [ -f "/scif/apps/${SINGULARITY_APPNAME:-}/scif/env/01-base.sh" ]; then
            . "/scif/apps/${SINGULARITY_APPNAME:-}/scif/env/01-base.sh"
        elif [ -f "/scif/apps/singularity/scif/env/01-base.sh" ]; then
            . "/scif/apps/singularity/scif/env/01-base.sh" "$@"
        fi
        if [ -f "/scif/apps/${SINGULARITY_APPNAME:-}/scif/env/90-environment.sh" ]; then
            . "/scif/apps/${SINGULARITY_APPNAME:-}/scif/env/90-environment.sh"
        elif [ -f "/scif/apps/singularity/scif/env/90-environment.sh" ]; then
            . "/scif/apps/singularity/scif/env/90-environment.sh" "$@"
        fi

        export PATH
    else
        echo "Could not locate the container application: ${SINGULARITY_APPNAME}"
        exit 1
    fi
fi
"#,
);

const BASE_99: &str = concat!(
    header!(),
    r#"if [ -z "${LD_LIBRARY_PATH:-}" ]; then
    LD_LIBRARY_PATH="/.singularity.d/libs"
else
    LD_LIBRARY_PATH="$LD_LIBRARY_PATH:/.singularity.d/libs"
fi

if [ -z "${PS1:-}" ]; then
    PS1="Apptainer> "
fi
export LD_LIBRARY_PATH PS1
"#,
);

const RUNTIMEVARS_99: &str = concat!(
    header!(),
    r#"if [ -n "${SING_USER_DEFINED_PREPEND_PATH:-}" ]; then
	PATH="${SING_USER_DEFINED_PREPEND_PATH}:${PATH}"
fi

if [ -n "${SING_USER_DEFINED_APPEND_PATH:-}" ]; then
	PATH="${PATH}:${SING_USER_DEFINED_APPEND_PATH}"
fi

if [ -n "${SING_USER_DEFINED_PATH:-}" ]; then
	PATH="${SING_USER_DEFINED_PATH}"
fi

unset SING_USER_DEFINED_PREPEND_PATH \
	  SING_USER_DEFINED_APPEND_PATH \
	  SING_USER_DEFINED_PATH

export PATH
"#,
);

const RUNSCRIPT: &str = concat!(
    header!(),
    "echo \"There is no runscript defined for this container\\n\";\n",
);

const STARTSCRIPT: &str = header!();
