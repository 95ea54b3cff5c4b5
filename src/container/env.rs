//! The task's environment inside an image, as `apptainer exec` builds it:
//!
//! 1. the job's environment (SLURM_*, PMI*, PMIX* and the rest) is kept, except
//!    the host's PATH and LD_LIBRARY_PATH, which mean nothing inside the image;
//!    PATH starts as the usual default;
//! 2. the image's `/.singularity.d/env/*.sh` scripts run in lexical order; what
//!    they set wins over the job's values;
//! 3. `SINGULARITYENV_X`, then `APPTAINERENV_X`, set `X` (and the prefixed
//!    variables disappear); `APPTAINERENV_PREPEND_PATH` / `_APPEND_PATH` extend PATH;
//! 4. `--container-env=NAME,...`: the job's own value of NAME wins again;
//! 5. HOME is the user's home, whatever the image or the prefixed variables say
//!    (Apptainer refuses to let them change it too).
//!
//! Root evaluates the scripts, so their size and every value they make are bounded
//! ([`Limits`], plugstack.conf `env_script_max_bytes` and `env_value_max_bytes`): a
//! script that doubles a variable on every line ends the step with [`EnvError`]
//! before slurmstepd's memory grows.
//!
//! The scripts are not run by a shell (the image may have none, and running
//! image code as root is out of the question): [`eval_script`] understands the
//! forms these files use in practice: assignments and `export` with quoting and
//! `$X`, `${X}`, `${X:-word}`, `${X-word}`, `${X:+word}` expansions, comments,
//! and `if [ -z "$X" ] / [ -n "$X" ]; then ... else ... fi` blocks. Anything
//! else is skipped and reported.

use std::collections::BTreeMap;

/// PATH inside the image when its scripts set none (Apptainer's default).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Variables of the host that are not passed into the image.
const NOT_PASSED: &[&str] = &["PATH", "LD_LIBRARY_PATH"];

const PREFIXES: &[&str] = &["SINGULARITYENV_", "APPTAINERENV_"];

pub type Env = BTreeMap<String, String>;

/// One image env script: its file name and text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Script {
    pub name: String,
    pub text: String,
}

/// Bounds on what evaluating an image's env scripts may cost root.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Limits {
    /// All env scripts of an image together.
    pub script_bytes: usize,
    /// One value a script evaluates (the kernel's own limit for one environment
    /// string passed to exec is 128 KiB).
    pub value_bytes: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            script_bytes: 1 << 20,
            value_bytes: 128 << 10,
        }
    }
}

/// An image whose env scripts exceed [`Limits`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvError {
    #[error("the image's env scripts (/.singularity.d/env/*.sh) hold more than {limit} bytes; the site allows at most env_script_max_bytes={limit} (plugstack.conf); make them smaller or ask the admins to raise the limit")]
    ScriptsTooBig { limit: usize },
    #[error("the image's env script {script}, line {line}, makes a value longer than {limit} bytes; the site allows at most env_value_max_bytes={limit} (plugstack.conf); fix the script or ask the admins to raise the limit")]
    TooLong {
        script: String,
        line: usize,
        limit: usize,
    },
}

/// The result of [`container_env`]: the environment and the lines skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerEnv {
    pub env: Env,
    /// `file:line: text` of each line that was not understood.
    pub skipped: Vec<String>,
}

/// Refuses scripts that hold more than [`Limits::script_bytes`] together.
pub fn check_scripts_size(scripts: &[Script], limits: Limits) -> Result<(), EnvError> {
    match scripts.iter().map(|s| s.text.len()).sum::<usize>() > limits.script_bytes {
        true => Err(EnvError::ScriptsTooBig {
            limit: limits.script_bytes,
        }),
        false => Ok(()),
    }
}

/// Builds the task's environment inside the image (see the module docs).
pub fn container_env(
    job_env: &Env,
    scripts: &[Script],
    keep_host: &[String],
    home: &str,
    limits: Limits,
) -> Result<ContainerEnv, EnvError> {
    check_scripts_size(scripts, limits)?;
    let mut env: Env = job_env
        .iter()
        .filter(|(k, _)| !NOT_PASSED.contains(&k.as_str()))
        .filter(|(k, _)| !PREFIXES.iter().any(|p| k.starts_with(p)))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    env.insert("PATH".into(), DEFAULT_PATH.into());
    env.insert("HOME".into(), home.into());
    let mut sorted: Vec<&Script> = scripts.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    let mut skipped = Vec::new();
    for script in sorted {
        let lines = eval_script(&script.text, &mut env, limits.value_bytes).map_err(|line| {
            EnvError::TooLong {
                script: script.name.clone(),
                line,
                limit: limits.value_bytes,
            }
        })?;
        for (line, text) in lines {
            skipped.push(format!("{}:{line}: {text}", script.name));
        }
    }
    for prefix in PREFIXES {
        for (k, v) in job_env {
            let Some(name) = k.strip_prefix(prefix) else {
                continue;
            };
            match name {
                "" => {}
                "PREPEND_PATH" => prepend_path(&mut env, v),
                "APPEND_PATH" => append_path(&mut env, v),
                _ => {
                    env.insert(name.to_string(), v.clone());
                }
            }
        }
    }
    for name in keep_host {
        match job_env.get(name) {
            Some(v) => env.insert(name.clone(), v.clone()),
            None => env.remove(name),
        };
    }
    env.insert("HOME".into(), home.into());
    Ok(ContainerEnv { env, skipped })
}

fn prepend_path(env: &mut Env, dirs: &str) {
    let path = env.get("PATH").cloned().unwrap_or_default();
    env.insert("PATH".into(), join_path(dirs, &path));
}

fn append_path(env: &mut Env, dirs: &str) {
    let path = env.get("PATH").cloned().unwrap_or_default();
    env.insert("PATH".into(), join_path(&path, dirs));
}

fn join_path(a: &str, b: &str) -> String {
    match (a.is_empty(), b.is_empty()) {
        (true, _) => b.into(),
        (_, true) => a.into(),
        _ => format!("{a}:{b}"),
    }
}

/// The operations that turn `from` into `to`: variables to set, then to unset.
pub fn diff(from: &Env, to: &Env) -> (Vec<(String, String)>, Vec<String>) {
    let set = to
        .iter()
        .filter(|(k, v)| from.get(*k) != Some(v))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let unset = from
        .keys()
        .filter(|k| !to.contains_key(*k))
        .cloned()
        .collect();
    (set, unset)
}

/// Parses `NAME=value` strings (S_JOB_ENV) into a map.
pub fn from_strings(vars: &[String]) -> Env {
    vars.iter()
        .filter_map(|s| s.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

// ---- the script evaluator -------------------------------------------------------

/// Why a word was not expanded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unexpanded {
    /// Syntax berth does not handle: the line is skipped.
    Syntax,
    /// The value grew past the limit: the script is refused.
    TooLong,
}

type Expanded<T> = Result<T, Unexpanded>;

/// Runs the understood parts of one script against `env`; returns the lines
/// skipped (1-based line number, text), or the line whose value grew past `max` bytes.
pub fn eval_script(text: &str, env: &mut Env, max: usize) -> Result<Vec<(usize, String)>, usize> {
    let mut skipped = Vec::new();
    // One entry per open `if`.
    let mut branches: Vec<Branch> = Vec::new();
    for (number, raw) in logical_lines(text) {
        let line = raw.trim();
        let running = branches.iter().all(|b| *b == Branch::Running);
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(cond) = line.strip_prefix("if ") {
            let b = if running {
                Branch::after_condition(condition(cond, env, max).map_err(|_| number)?)
            } else {
                Branch::Done
            };
            if b == Branch::Unknown {
                skipped.push((number, raw.clone()));
            }
            branches.push(b);
            continue;
        }
        let parent_running = branches.len() < 2
            || branches[..branches.len() - 1]
                .iter()
                .all(|b| *b == Branch::Running);
        if let (Some(cond), Some(last)) = (line.strip_prefix("elif "), branches.last_mut()) {
            *last = match *last {
                Branch::Running => Branch::Done,
                Branch::Waiting if parent_running => {
                    let b = Branch::after_condition(condition(cond, env, max).map_err(|_| number)?);
                    if b == Branch::Unknown {
                        skipped.push((number, raw.clone()));
                    }
                    b
                }
                other => other,
            };
            continue;
        }
        if let ("else", Some(last)) = (line, branches.last_mut()) {
            *last = match *last {
                Branch::Running => Branch::Done,
                Branch::Waiting => Branch::Running,
                other => other,
            };
            continue;
        }
        if line == "fi" && branches.pop().is_some() {
            continue;
        }
        if !running {
            continue;
        }
        match statement(line, env, max) {
            Ok(()) => {}
            Err(Unexpanded::Syntax) => skipped.push((number, raw.clone())),
            Err(Unexpanded::TooLong) => return Err(number),
        }
    }
    Ok(skipped)
}

/// Lines with backslash-newline continuations joined, numbered from 1 by
/// their first physical line.
fn logical_lines(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut pending: Option<(usize, String)> = None;
    for (i, line) in text.lines().enumerate() {
        let (number, mut joined) = pending.take().unwrap_or((i + 1, String::new()));
        match line.strip_suffix('\\') {
            Some(head) => {
                joined.push_str(head);
                joined.push(' ');
                pending = Some((number, joined));
            }
            None => {
                joined.push_str(line);
                out.push((number, joined));
            }
        }
    }
    out.extend(pending);
    out
}

/// Where an `if ... fi` block stands.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Branch {
    /// The current branch runs.
    Running,
    /// No branch has run yet (a later `elif`/`else` may).
    Waiting,
    /// A branch ran, or the enclosing block does not run: nothing more runs.
    Done,
    /// A condition berth cannot evaluate: no branch runs.
    Unknown,
}

impl Branch {
    fn after_condition(holds: Option<bool>) -> Branch {
        match holds {
            Some(true) => Branch::Running,
            Some(false) => Branch::Waiting,
            None => Branch::Unknown,
        }
    }
}

/// `[ -z "$X" ]; then` or `test -n "$X"; then`: whether it holds (`None`: a
/// condition berth does not evaluate).
fn condition(text: &str, env: &Env, max: usize) -> Result<Option<bool>, Unexpanded> {
    let Some((op, operand)) = test_operands(text) else {
        return Ok(None);
    };
    let words = match words(operand, env, max) {
        Err(Unexpanded::Syntax) => return Ok(None),
        other => other?,
    };
    let value = match words.as_slice() {
        [] => String::new(),
        [w] => w.clone(),
        _ => return Ok(None),
    };
    Ok(match op {
        "-z" => Some(value.is_empty()),
        "-n" => Some(!value.is_empty()),
        _ => None,
    })
}

/// The operator and operand of `[ OP OPERAND ]; then` / `test OP OPERAND; then`.
fn test_operands(text: &str) -> Option<(&str, &str)> {
    let text = text.trim().strip_suffix("then")?.trim_end();
    let text = text.strip_suffix(';')?.trim();
    let inner = if let Some(t) = text.strip_prefix("[ ") {
        t.strip_suffix(" ]")?
    } else {
        text.strip_prefix("test ")?
    };
    let (op, operand) = inner.trim().split_once(' ')?;
    Some((op, operand.trim()))
}

/// One statement: `export A=b C`, `A=b`, `export A`, `unset A`. False when
/// not understood (then `env` is unchanged).
fn statement(line: &str, env: &mut Env, max: usize) -> Expanded<()> {
    let line = line.strip_suffix(';').unwrap_or(line);
    let words = raw_words(line).ok_or(Unexpanded::Syntax)?;
    let Some((first, rest)) = words.split_first() else {
        return Ok(());
    };
    let assignments: &[String] = match first.as_str() {
        "export" => rest,
        "unset" => {
            if !rest.iter().all(|n| is_name(n)) {
                return Err(Unexpanded::Syntax);
            }
            for n in rest {
                env.remove(n);
            }
            return Ok(());
        }
        _ => &words,
    };
    let mut out = Vec::new();
    for word in assignments {
        match word.split_once('=') {
            Some((name, value)) if is_name(name) => {
                out.push((name.to_string(), expand(value, env, max)?))
            }
            // `export NAME` of an existing name: nothing to do.
            None if first == "export" && is_name(word) => {}
            _ => return Err(Unexpanded::Syntax),
        }
    }
    for (k, v) in out {
        env.insert(k, v);
    }
    Ok(())
}

fn is_name(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with(|c: char| c.is_ascii_digit())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Splits a line into shell words, keeping quotes (expanded later); `None`
/// for syntax berth does not handle (pipes, substitutions, unbalanced quotes...).
fn raw_words(line: &str) -> Option<Vec<String>> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut chars = line.chars().peekable();
    let mut in_word = false;
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            '\'' | '"' => {
                in_word = true;
                cur.push(c);
                loop {
                    let d = chars.next()?;
                    cur.push(d);
                    if d == '\\' && c == '"' {
                        cur.push(chars.next()?);
                    } else if d == c {
                        break;
                    }
                }
            }
            '\\' => {
                in_word = true;
                cur.push(c);
                cur.push(chars.next()?);
            }
            '|' | '&' | ';' | '<' | '>' | '(' | ')' | '`' => return None,
            '#' if !in_word => break,
            _ => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    Some(words)
}

/// Words after expansion (for conditions).
fn words(text: &str, env: &Env, max: usize) -> Expanded<Vec<String>> {
    raw_words(text)
        .ok_or(Unexpanded::Syntax)?
        .iter()
        .map(|w| expand(w, env, max))
        .collect()
}

/// Removes quotes and expands variables in one word; `TooLong` as soon as the
/// result passes `max` bytes.
fn expand(word: &str, env: &Env, max: usize) -> Expanded<String> {
    let chars: Vec<char> = word.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        i = expand_one(&chars, i, env, max, &mut out).ok_or(Unexpanded::Syntax)??;
        if out.len() > max {
            return Err(Unexpanded::TooLong);
        }
    }
    Ok(out)
}

/// Expands the quoted part, escape, `$...` or character at `chars[i]` into
/// `out`; returns the index after it. `None`: syntax berth does not handle.
fn expand_one(
    chars: &[char],
    i: usize,
    env: &Env,
    max: usize,
    out: &mut String,
) -> Option<Expanded<usize>> {
    match chars[i] {
        '\'' => {
            let end = chars[i + 1..].iter().position(|&c| c == '\'')? + i + 1;
            out.extend(&chars[i + 1..end]);
            Some(Ok(end + 1))
        }
        '"' => {
            let mut i = i + 1;
            while chars.get(i) != Some(&'"') {
                match *chars.get(i)? {
                    '\\' if matches!(chars.get(i + 1), Some('"' | '\\' | '$' | '`')) => {
                        out.push(chars[i + 1]);
                        i += 2;
                    }
                    '$' => match dollar(chars, i, env, max, out)? {
                        Ok(next) => i = next,
                        Err(e) => return Some(Err(e)),
                    },
                    '`' => return None,
                    c => {
                        out.push(c);
                        i += 1;
                    }
                }
                if out.len() > max {
                    return Some(Err(Unexpanded::TooLong));
                }
            }
            Some(Ok(i + 1))
        }
        '\\' => {
            out.push(*chars.get(i + 1)?);
            Some(Ok(i + 2))
        }
        '$' => dollar(chars, i, env, max, out),
        // Globs and `~` expand against files: not handled.
        '*' | '?' | '[' => None,
        '~' if i == 0 => None,
        c => {
            out.push(c);
            Some(Ok(i + 1))
        }
    }
}

/// Expands the `$...` at `chars[i]`; returns the index after it.
fn dollar(
    chars: &[char],
    i: usize,
    env: &Env,
    max: usize,
    out: &mut String,
) -> Option<Expanded<usize>> {
    let get = |name: &str| env.get(name).cloned();
    match chars.get(i + 1) {
        Some('{') => {
            let end = chars[i + 2..].iter().position(|&c| c == '}')? + i + 2;
            let inner: String = chars[i + 2..end].iter().collect();
            match brace(&inner, env, max, get) {
                Ok(v) => out.push_str(&v),
                Err(Unexpanded::Syntax) => return None,
                Err(e) => return Some(Err(e)),
            }
            Some(Ok(end + 1))
        }
        Some(c) if c.is_ascii_alphabetic() || *c == '_' => {
            let len = chars[i + 1..]
                .iter()
                .take_while(|c| c.is_ascii_alphanumeric() || **c == '_')
                .count();
            let name: String = chars[i + 1..i + 1 + len].iter().collect();
            out.push_str(&get(&name).unwrap_or_default());
            Some(Ok(i + 1 + len))
        }
        // `$(`, `$1`, `$@`, ...: not handled.
        Some(_) => None,
        None => {
            out.push('$');
            Some(Ok(i + 1))
        }
    }
}

/// `${X}`, `${X:-w}`, `${X-w}`, `${X:+w}`, `${X+w}`.
fn brace(
    inner: &str,
    env: &Env,
    max: usize,
    get: impl Fn(&str) -> Option<String>,
) -> Expanded<String> {
    let name_len = inner
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .count();
    let (name, op) = inner.split_at(name_len);
    if !is_name(name) {
        return Err(Unexpanded::Syntax);
    }
    let value = get(name);
    let set_nonempty = value.as_deref().is_some_and(|v| !v.is_empty());
    let word = |w: &str| expand(w, env, max);
    match op {
        "" => Ok(value.unwrap_or_default()),
        _ if op.starts_with(":-") => match value {
            Some(v) if set_nonempty => Ok(v),
            _ => word(&op[2..]),
        },
        _ if op.starts_with('-') => match value {
            Some(v) => Ok(v),
            None => word(&op[1..]),
        },
        _ if op.starts_with(":+") => {
            if set_nonempty {
                word(&op[2..])
            } else {
                Ok(String::new())
            }
        }
        _ if op.starts_with('+') => match value {
            Some(_) => word(&op[1..]),
            None => Ok(String::new()),
        },
        _ => Err(Unexpanded::Syntax),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Env {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn eval(text: &str, env: &mut Env) -> Vec<(usize, String)> {
        eval_script(text, env, Limits::default().value_bytes).expect("within the limits")
    }

    fn script(name: &str, text: &str) -> Script {
        Script {
            name: name.into(),
            text: text.into(),
        }
    }

    #[test]
    fn assignments_exports_and_quotes() {
        let mut e = env(&[("A", "1")]);
        let skipped = eval(
            "#!/bin/sh\n# comment\nexport B=2\nC='lit $A'\nexport D=\"x $A ${A}y\" E=e\nexport F\nG=a\\ b # trailing\n",
            &mut e,
        );
        assert!(skipped.is_empty(), "{skipped:?}");
        assert_eq!(e["B"], "2");
        assert_eq!(e["C"], "lit $A");
        assert_eq!(e["D"], "x 1 1y");
        assert_eq!(e["E"], "e");
        assert_eq!(e["G"], "a b");
        assert!(!e.contains_key("F"));
    }

    #[test]
    fn parameter_expansions() {
        let mut e = env(&[("SET", "s"), ("EMPTY", "")]);
        eval(
            "A=${UNSET:-def}\nB=${EMPTY:-def}\nC=${EMPTY-def}\nD=${SET:+alt}\nE=${UNSET:+alt}\nF=\"${LANG:-C.UTF-8}\"\n",
            &mut e,
        );
        assert_eq!(e["A"], "def");
        assert_eq!(e["B"], "def");
        assert_eq!(e["C"], "");
        assert_eq!(e["D"], "alt");
        assert_eq!(e["E"], "");
        assert_eq!(e["F"], "C.UTF-8");
    }

    /// The file Apptainer puts in every image as 99-base.sh.
    const BASE_99: &str = r#"#!/bin/sh
if [ -z "$LD_LIBRARY_PATH" ]; then
    LD_LIBRARY_PATH="/.singularity.d/libs"
else
    LD_LIBRARY_PATH="$LD_LIBRARY_PATH:/.singularity.d/libs"
fi
PS1="Apptainer> "
export LD_LIBRARY_PATH PS1
"#;

    #[test]
    fn apptainers_base_script_evaluates_like_sh() {
        let mut e = Env::new();
        assert!(eval(BASE_99, &mut e).is_empty());
        assert_eq!(e["LD_LIBRARY_PATH"], "/.singularity.d/libs");
        assert_eq!(e["PS1"], "Apptainer> ");
        let mut e = env(&[("LD_LIBRARY_PATH", "/opt/lib")]);
        eval(BASE_99, &mut e);
        assert_eq!(e["LD_LIBRARY_PATH"], "/opt/lib:/.singularity.d/libs");
    }

    /// The file Apptainer puts in every image as 99-runtimevars.sh.
    const RUNTIMEVARS_99: &str = "#!/bin/sh\nif [ -n \"${SING_USER_DEFINED_PREPEND_PATH:-}\" ]; then\n\tPATH=\"${SING_USER_DEFINED_PREPEND_PATH}:${PATH}\"\nfi\n\nif [ -n \"${SING_USER_DEFINED_PATH:-}\" ]; then\n\tPATH=\"${SING_USER_DEFINED_PATH}\"\nfi\n\nunset SING_USER_DEFINED_PREPEND_PATH \\\n\t  SING_USER_DEFINED_APPEND_PATH \\\n\t  SING_USER_DEFINED_PATH\n\nexport PATH\n";

    #[test]
    fn continuation_lines_and_apptainers_runtimevars() {
        let mut e = env(&[("PATH", "/bin"), ("SING_USER_DEFINED_PREPEND_PATH", "/pre")]);
        assert!(eval(RUNTIMEVARS_99, &mut e).is_empty());
        assert_eq!(e["PATH"], "/pre:/bin");
        assert!(!e.contains_key("SING_USER_DEFINED_PREPEND_PATH"));
    }

    #[test]
    fn elif_and_else_take_one_branch() {
        let text = "if [ -n \"$A\" ]; then\nR=a\nelif [ -n \"$B\" ]; then\nR=b\nelse\nR=c\nfi\n";
        for (vars, want) in [
            (vec![("A", "1"), ("B", "1")], "a"),
            (vec![("B", "1")], "b"),
            (vec![], "c"),
        ] {
            let mut e = env(&vars);
            assert!(eval(text, &mut e).is_empty());
            assert_eq!(e["R"], want);
        }
        // Nested blocks inside a branch that does not run are not evaluated.
        let mut e = Env::new();
        let skipped = eval(
            "if test -n \"${APP:-}\"; then\nif [ -f /x ]; then\nX=1\nfi\nfi\nY=2\n",
            &mut e,
        );
        assert!(skipped.is_empty(), "{skipped:?}");
        assert_eq!(e.get("Y").map(String::as_str), Some("2"));
    }

    #[test]
    fn every_script_of_the_apptainer_layout_is_understood() {
        use crate::sif::build::layout::{base, Kind};
        for entry in base() {
            let Kind::File(text) = &entry.kind else {
                continue;
            };
            if !entry.path.starts_with(".singularity.d/env/") {
                continue;
            }
            let mut e = env(&[("PATH", "/bin")]);
            assert_eq!(eval(text, &mut e), vec![], "{}", entry.path);
        }
    }

    #[test]
    fn unknown_syntax_is_skipped_and_reported() {
        let mut e = Env::new();
        let skipped = eval(
            "A=1\nexport B=$(hostname)\nsource /x\nif [ -f /x ]; then\nC=3\nfi\nD=4\n",
            &mut e,
        );
        assert_eq!(e.get("A").map(String::as_str), Some("1"));
        assert_eq!(e.get("D").map(String::as_str), Some("4"));
        assert!(!e.contains_key("B") && !e.contains_key("C"));
        let lines: Vec<usize> = skipped.iter().map(|(n, _)| *n).collect();
        assert_eq!(lines, vec![2, 3, 4]);
    }

    #[test]
    fn the_image_wins_over_the_host_and_prefixed_variables_win_over_the_image() {
        let job = env(&[
            ("PATH", "/host/bin"),
            ("LD_LIBRARY_PATH", "/host/lib"),
            ("SLURM_JOB_ID", "7"),
            ("PMIX_RANK", "0"),
            ("FOO", "host"),
            ("BAR", "host"),
            ("KEEP", "host"),
            ("SINGULARITYENV_S", "sing"),
            ("APPTAINERENV_BAR", "forced"),
            ("APPTAINERENV_PREPEND_PATH", "/pre"),
        ]);
        let scripts = vec![
            script(
                "90-environment.sh",
                "export FOO=image BAR=image KEEP=image\nexport PATH=/opt/app/bin:$PATH\n",
            ),
            script(
                "10-docker2singularity.sh",
                "export PATH=\"/usr/local/bin:/usr/bin:/bin\"\n",
            ),
        ];
        let out = container_env(
            &job,
            &scripts,
            &["KEEP".to_string()],
            "/home/u",
            Limits::default(),
        )
        .unwrap();
        let e = &out.env;
        assert_eq!(e["PATH"], "/pre:/opt/app/bin:/usr/local/bin:/usr/bin:/bin");
        assert!(!e.contains_key("LD_LIBRARY_PATH"));
        assert_eq!(e["SLURM_JOB_ID"], "7");
        assert_eq!(e["PMIX_RANK"], "0");
        assert_eq!(e["FOO"], "image");
        assert_eq!(e["BAR"], "forced");
        assert_eq!(e["KEEP"], "host");
        assert_eq!(e["S"], "sing");
        assert_eq!(e["HOME"], "/home/u");
        assert!(!e
            .keys()
            .any(|k| k.starts_with("APPTAINERENV_") || k.starts_with("SINGULARITYENV_")));
    }

    #[test]
    fn without_scripts_path_is_the_default() {
        let out = container_env(
            &env(&[("PATH", "/x")]),
            &[],
            &[],
            "/root",
            Limits::default(),
        )
        .unwrap();
        assert_eq!(out.env["PATH"], DEFAULT_PATH);
    }

    #[test]
    fn diff_lists_sets_and_unsets() {
        let from = env(&[("A", "1"), ("B", "2"), ("C", "3")]);
        let to = env(&[("A", "1"), ("B", "two"), ("D", "4")]);
        let (set, unset) = diff(&from, &to);
        assert_eq!(
            set,
            vec![("B".into(), "two".into()), ("D".into(), "4".into())]
        );
        assert_eq!(unset, vec!["C".to_string()]);
    }

    #[test]
    fn home_stays_the_users_whatever_the_image_says() {
        let job = env(&[("SINGULARITYENV_HOME", "/elsewhere")]);
        let scripts = vec![script("90-environment.sh", "export HOME=/image/home\n")];
        let out = container_env(&job, &scripts, &[], "/home/u", Limits::default()).unwrap();
        assert_eq!(out.env["HOME"], "/home/u");
    }

    #[test]
    fn a_doubling_script_is_refused_before_it_grows() {
        let text = format!("A=aaaaaaaa\n{}", "A=\"$A$A\"\n".repeat(40));
        let limits = Limits {
            script_bytes: 1 << 20,
            value_bytes: 4096,
        };
        let err = container_env(
            &Env::new(),
            &[script("50-grow.sh", &text)],
            &[],
            "/h",
            limits,
        )
        .unwrap_err();
        // 8 bytes doubled 9 times is 4096; the 10th doubling passes the limit.
        assert_eq!(
            err,
            EnvError::TooLong {
                script: "50-grow.sh".into(),
                line: 11,
                limit: 4096
            }
        );
        assert!(
            err.to_string().contains("env_value_max_bytes=4096"),
            "{err}"
        );
    }

    #[test]
    fn one_word_of_many_references_is_cut_at_the_limit() {
        let mut e = env(&[("A", &"a".repeat(1000))]);
        let line = format!("B={}\n", "$A".repeat(10_000));
        assert_eq!(eval_script(&line, &mut e, 64 << 10), Err(1));
        assert!(!e.contains_key("B"));
    }

    #[test]
    fn scripts_over_the_size_limit_are_refused() {
        let limits = Limits {
            script_bytes: 100,
            value_bytes: 100,
        };
        let scripts = vec![
            script("a.sh", &"#".repeat(60)),
            script("b.sh", &"#".repeat(60)),
        ];
        let err = container_env(&Env::new(), &scripts, &[], "/h", limits).unwrap_err();
        assert_eq!(err, EnvError::ScriptsTooBig { limit: 100 });
    }
}
