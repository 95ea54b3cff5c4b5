//! /etc/cgconfig.conf and /etc/cgconfig.d/*.conf: the groups libcgroup's
//! cgconfigparser creates, with their controller settings.
//!
//! ```text
//! group users {
//!     cpuset { cpuset.cpus = "0"; cpuset.mems = "0"; }
//!     cpu { cpu.shares = 512; }
//! }
//! ```
//!
//! berth reads it for one question: did the site give a group a cpu weight
//! (then berth keeps it) or not (then berth derives one from its cpuset)?

use std::collections::BTreeMap;
use std::path::Path;

/// group path -> controller -> setting -> value.
pub type Groups = BTreeMap<String, BTreeMap<String, BTreeMap<String, String>>>;

fn tokens(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '#' => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
            }
            '{' | '}' | '=' | ';' => out.push(c.to_string()),
            '"' => {
                let mut s = String::new();
                for c in chars.by_ref() {
                    if c == '"' {
                        break;
                    }
                    s.push(c);
                }
                out.push(s);
            }
            c if c.is_whitespace() => {}
            c => {
                let mut s = c.to_string();
                while let Some(&n) = chars.peek() {
                    if n.is_whitespace() || "{}=;\"#".contains(n) {
                        break;
                    }
                    s.push(n);
                    chars.next();
                }
                out.push(s);
            }
        }
    }
    out
}

/// Parses the `group` blocks; other blocks (mount, template, default) and
/// `perm` sections are skipped. Unbalanced input yields what was complete.
pub fn parse(text: &str) -> Groups {
    let toks = tokens(text);
    let mut groups = Groups::new();
    let mut i = 0;
    while i < toks.len() {
        if toks[i] == "group" && i + 2 < toks.len() && toks[i + 2] == "{" {
            let name = format!("/{}", toks[i + 1].trim_matches('/'));
            i += 3;
            let entry = groups.entry(name).or_default();
            // controller blocks until the group's closing brace
            while i < toks.len() && toks[i] != "}" {
                let controller = toks[i].clone();
                if toks.get(i + 1).map(String::as_str) != Some("{") {
                    i += 1;
                    continue;
                }
                i += 2;
                let mut settings = BTreeMap::new();
                let mut depth = 1;
                while i < toks.len() && depth > 0 {
                    match toks[i].as_str() {
                        "{" => depth += 1,
                        "}" => depth -= 1,
                        key if depth == 1 && toks.get(i + 1).map(String::as_str) == Some("=") => {
                            if let Some(v) = toks.get(i + 2) {
                                settings.insert(key.to_string(), v.clone());
                            }
                            i += 2;
                        }
                        _ => {}
                    }
                    i += 1;
                }
                if controller != "perm" {
                    entry.insert(controller, settings);
                }
            }
        }
        i += 1;
    }
    groups
}

/// Reads cgconfig.conf and every *.conf in cgconfig.d (missing files are empty).
pub fn read(conf: &Path, conf_d: &Path) -> Groups {
    let mut groups = Groups::new();
    let mut files = vec![conf.to_path_buf()];
    if let Ok(entries) = std::fs::read_dir(conf_d) {
        let mut extra: Vec<_> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "conf"))
            .collect();
        extra.sort();
        files.extend(extra);
    }
    for file in files {
        if let Ok(text) = std::fs::read_to_string(&file) {
            for (g, controllers) in parse(&text) {
                groups.entry(g).or_default().extend(controllers);
            }
        }
    }
    groups
}

/// The cpu weight the configuration gives a group (cpu.shares or cpu.weight).
pub fn configured_weight(groups: &Groups, path: &str) -> Option<u64> {
    let cpu = groups.get(path)?.get("cpu")?;
    cpu.get("cpu.shares")
        .or_else(|| cpu.get("cpu.weight"))
        .and_then(|v| v.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONF: &str = r#"
mount { cpuset = /sys/fs/cgroup/cpuset; }
# users are limited to CPU 0
group users {
    perm { task { uid = root; } admin { uid = root; } }
    cpuset {
        cpuset.cpus = "0";
        cpuset.mems = "0";
    }
}
group weighted/sub {
    cpu { cpu.shares = 256; }
}
"#;

    #[test]
    fn groups_with_controller_settings() {
        let g = parse(CONF);
        assert_eq!(g.len(), 2);
        assert_eq!(g["/users"]["cpuset"]["cpuset.cpus"], "0");
        assert!(!g["/users"].contains_key("perm"));
        assert_eq!(configured_weight(&g, "/weighted/sub"), Some(256));
        assert_eq!(configured_weight(&g, "/users"), None);
        assert_eq!(configured_weight(&g, "/nope"), None);
    }

    #[test]
    fn conf_d_files_add_groups() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("main.conf"), CONF).unwrap();
        std::fs::create_dir(dir.path().join("d")).unwrap();
        std::fs::write(
            dir.path().join("d/x.conf"),
            "group extra { cpu { cpu.shares = 100; } }",
        )
        .unwrap();
        std::fs::write(dir.path().join("d/ignored.txt"), "group no { }").unwrap();
        let g = read(&dir.path().join("main.conf"), &dir.path().join("d"));
        assert_eq!(configured_weight(&g, "/extra"), Some(100));
        assert!(!g.contains_key("/no"));
    }
}
