//! /etc/cgrules.conf, the rules cgrulesengd applies when a process changes
//! its uid or gid or execs (libcgroup's format):
//!
//! ```text
//! <user>[:<process>]  <controllers>  <destination>
//! alice               cpuset,cpu     users/
//! @students           *              students/%u
//! %                   memory         students/%u   # continues the rule above
//! ```
//!
//! The first rule whose user matches wins, together with the `%` lines after
//! it. berth only asks: which destination will the job user's processes get
//! in the cpuset (and cpu) hierarchy?

use std::path::Path;

/// One line of cgrules.conf.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Rule {
    /// `alice`, `@group`, `*` or `%` (continuation).
    pub user: String,
    /// The process name after `user:`, if any.
    pub process: Option<String>,
    /// Controller names, or `*` for all.
    pub controllers: Vec<String>,
    pub destination: String,
    /// 1-based line number, for messages.
    pub line: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file} line {line}: {reason}")]
pub struct RulesError {
    pub file: String,
    pub line: usize,
    pub reason: String,
}

/// The job user as cgrulesengd sees it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Identity {
    pub uid: u32,
    pub user: String,
    pub gid: u32,
    pub group: String,
    /// Names of every group the user is in (primary and supplementary).
    pub groups: Vec<String>,
}

/// What the rules will do to the user's processes in one controller.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Destination {
    /// The group path, templates resolved (`/users`).
    pub path: String,
    /// The rule's line, for messages.
    pub line: usize,
    /// The rule applies to one program only (`alice:prog`).
    pub process: Option<String>,
    /// Unresolvable templates (%p, %P) were left in the path.
    pub per_process: bool,
}

pub fn parse(text: &str, file: &str) -> Result<Vec<Rule>, RulesError> {
    let mut rules = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [who, controllers, destination] = fields[..] else {
            return Err(RulesError {
                file: file.into(),
                line: i + 1,
                reason: format!("expected '<user> <controllers> <destination>', got '{line}'"),
            });
        };
        let (user, process) = match who.split_once(':') {
            Some((u, p)) => (u.to_string(), Some(p.to_string())),
            None => (who.to_string(), None),
        };
        rules.push(Rule {
            user,
            process,
            controllers: controllers.split(',').map(str::to_string).collect(),
            destination: destination.to_string(),
            line: i + 1,
        });
    }
    Ok(rules)
}

/// Reads and parses a cgrules.conf; a missing file has no rules.
pub fn read(path: &Path) -> Result<Vec<Rule>, RulesError> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse(&text, &path.display().to_string()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(RulesError {
            file: path.display().to_string(),
            line: 0,
            reason: e.to_string(),
        }),
    }
}

fn user_matches(rule_user: &str, who: &Identity) -> bool {
    match rule_user {
        "*" => true,
        u if u.starts_with('@') => who.groups.iter().any(|g| g == &u[1..]) || who.group == u[1..],
        u => u == who.user || u.parse::<u32>().is_ok_and(|n| n == who.uid),
    }
}

fn resolve(template: &str, who: &Identity) -> (String, bool) {
    let per_process = template.contains("%p") || template.contains("%P");
    let path = template
        .replace("%u", &who.user)
        .replace("%U", &who.uid.to_string())
        .replace("%g", &who.group)
        .replace("%G", &who.gid.to_string());
    (path, per_process)
}

/// Where the first matching rule (and its `%` continuations) sends the
/// user's processes in `controller`, if anywhere.
pub fn destination(rules: &[Rule], who: &Identity, controller: &str) -> Option<Destination> {
    let start = rules
        .iter()
        .position(|r| r.user != "%" && user_matches(&r.user, who))?;
    let group = std::iter::once(&rules[start])
        .chain(rules[start + 1..].iter().take_while(|r| r.user == "%"));
    for rule in group {
        if rule.controllers.iter().any(|c| c == controller || c == "*") {
            let (path, per_process) = resolve(&rule.destination, who);
            return Some(Destination {
                path: format!("/{}", path.trim_matches('/')),
                line: rule.line,
                process: rules[start].process.clone(),
                per_process,
            });
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice() -> Identity {
        Identity {
            uid: 5002,
            user: "alice".into(),
            gid: 5002,
            group: "alice".into(),
            groups: vec!["alice".into(), "hpc".into()],
        }
    }

    const CONF: &str = "\
# a comment
bob        cpuset        bobs/
@hpc       cpuset,cpu    hpc/%u    # group rule
%          memory        mem/%U
*          cpuset        everyone/
";

    #[test]
    fn parses_rules_with_comments_and_continuations() {
        let rules = parse(CONF, "cgrules.conf").unwrap();
        assert_eq!(rules.len(), 4);
        assert_eq!(rules[1].user, "@hpc");
        assert_eq!(rules[1].controllers, ["cpuset", "cpu"]);
        assert_eq!(rules[1].line, 3);
        assert_eq!(rules[2].user, "%");
    }

    #[test]
    fn the_first_matching_rule_wins_with_its_continuations() {
        let rules = parse(CONF, "cgrules.conf").unwrap();
        let d = destination(&rules, &alice(), "cpuset").unwrap();
        assert_eq!(d.path, "/hpc/alice");
        assert_eq!(d.line, 3);
        assert_eq!(
            destination(&rules, &alice(), "cpu").unwrap().path,
            "/hpc/alice"
        );
        assert_eq!(
            destination(&rules, &alice(), "memory").unwrap().path,
            "/mem/5002"
        );
        // the first match stops the search: alice never reaches '*'
        assert_eq!(destination(&rules, &alice(), "freezer"), None);
        let mut carol = alice();
        carol.user = "carol".into();
        carol.groups = vec![];
        assert_eq!(
            destination(&rules, &carol, "cpuset").unwrap().path,
            "/everyone"
        );
    }

    #[test]
    fn process_rules_and_per_process_templates_are_flagged() {
        let rules = parse("alice:sleep * grp/%p\n", "f").unwrap();
        let d = destination(&rules, &alice(), "cpuset").unwrap();
        assert_eq!(d.process.as_deref(), Some("sleep"));
        assert!(d.per_process);
    }

    #[test]
    fn a_malformed_line_is_an_error_naming_it() {
        let e = parse("alice cpuset\n", "/etc/cgrules.conf").unwrap_err();
        assert_eq!(e.line, 1);
        assert!(e
            .to_string()
            .starts_with("/etc/cgrules.conf line 1: expected"));
    }

    #[test]
    fn a_missing_file_has_no_rules() {
        assert!(read(Path::new("/nonexistent/cgrules.conf"))
            .unwrap()
            .is_empty());
    }
}
