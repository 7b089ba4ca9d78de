//! Strict configuration: every key of a hub or node TOML file and every `RCPFED_HUB_*` /
//! `RCPFED_NODE_*` environment variable must name a setting. A typo (`listn = …`, `[tsl]`,
//! `RCPFED_HUB_LISTN`) stops the process with the name and the closest valid one, instead of
//! silently running on a default. Errors about values name the key as the operator wrote it
//! (`ops_listen`, `tls.cert`) and where it came from (the file, or the environment variable).
//!
//! The valid keys are read from the configuration's defaults serialized as JSON, so a setting
//! added to `HubConfig` or `NodeConfig` is accepted without a second list to keep in step (an
//! unset `Option` serializes as `null` and is listed too).

use rcpfed_core::suggest::closest;
use serde::Serialize;
use std::collections::BTreeSet;
use std::ffi::OsString;

/// The keys a configuration accepts: leaves (`listen`, `tls.cert`) and sections (`tls`), as
/// dotted paths.
#[derive(Debug)]
pub struct Schema {
    leaves: BTreeSet<String>,
    sections: BTreeSet<String>,
}

fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

fn parent_of(path: &str) -> &str {
    path.rsplit_once('.').map_or("", |(parent, _)| parent)
}

impl Schema {
    /// The schema of a configuration type, from its defaults.
    pub fn of<T: Serialize>(defaults: &T) -> Result<Schema, String> {
        let value = serde_json::to_value(defaults)
            .map_err(|e| format!("the configuration defaults do not serialize: {e}"))?;
        let serde_json::Value::Object(map) = value else {
            return Err("the configuration defaults are not a table".into());
        };
        let mut schema = Schema {
            leaves: BTreeSet::new(),
            sections: BTreeSet::new(),
        };
        schema.add("", &map);
        Ok(schema)
    }

    fn add(&mut self, parent: &str, map: &serde_json::Map<String, serde_json::Value>) {
        for (key, value) in map {
            let path = join(parent, key);
            match value {
                serde_json::Value::Object(inner) => {
                    self.add(&path, inner);
                    self.sections.insert(path);
                }
                _ => {
                    self.leaves.insert(path);
                }
            }
        }
    }

    /// Whether `path` is a setting (not a section).
    pub fn is_leaf(&self, path: &str) -> bool {
        self.leaves.contains(path)
    }

    /// Whether `path` is a section (`tls`).
    pub fn is_section(&self, path: &str) -> bool {
        self.sections.contains(path)
    }

    /// Every setting, dotted (`listen`, `tls.cert`).
    pub fn leaves(&self) -> impl Iterator<Item = &str> {
        self.leaves.iter().map(String::as_str)
    }

    /// The names directly under `parent` ("" for the top level): (name, is a section).
    fn children<'a>(&'a self, parent: &'a str) -> impl Iterator<Item = (&'a str, bool)> + 'a {
        let leaves = self.leaves.iter().map(|p| (p, false));
        let sections = self.sections.iter().map(|p| (p, true));
        leaves
            .chain(sections)
            .filter(move |(path, _)| parent_of(path) == parent)
            .map(|(path, section)| (path.rsplit('.').next().unwrap_or(path), section))
    }
}

/// How a section is written in messages: `[tls]`.
fn section_name(path: &str) -> String {
    format!("[{path}]")
}

/// The problems of a configuration file's keys, one line each (empty when every key is a
/// setting). `file` names the file in the messages.
pub fn file_problems(table: &toml::Table, schema: &Schema, file: &str) -> Vec<String> {
    let mut problems = Vec::new();
    walk(table, "", schema, file, &mut problems);
    problems
}

fn walk(table: &toml::Table, parent: &str, schema: &Schema, file: &str, out: &mut Vec<String>) {
    for (key, value) in table {
        let path = join(parent, key);
        if schema.is_leaf(&path) {
            // Its value's type is checked when the configuration is read.
            continue;
        }
        if schema.is_section(&path) {
            if let toml::Value::Table(inner) = value {
                walk(inner, &path, schema, file, out);
            }
            continue;
        }
        out.push(unknown_in_file(
            key,
            &path,
            parent,
            value.is_table(),
            schema,
            file,
        ));
    }
}

fn unknown_in_file(
    key: &str,
    path: &str,
    parent: &str,
    is_table: bool,
    schema: &Schema,
    file: &str,
) -> String {
    if !parent.is_empty() && (schema.is_leaf(key) || schema.is_section(key)) {
        // The classic TOML slip: a top-level key written after a [section] line belongs to
        // that section.
        return format!(
            "{key} in {file} is written inside {}, but it is a top-level key: move it above \
             the first [section] line",
            section_name(parent)
        );
    }
    let siblings: Vec<(&str, bool)> = schema.children(parent).collect();
    let what = if is_table && parent.is_empty() {
        format!("unknown section {} in {file}", section_name(key))
    } else {
        format!("unknown key {path} in {file}")
    };
    match closest(key, siblings.iter().map(|(name, _)| *name)) {
        Some(name) => {
            let full = join(parent, name);
            let suggestion = match siblings.iter().any(|(n, section)| *n == name && *section) {
                true => section_name(&full),
                false => full,
            };
            format!("{what} (did you mean {suggestion}?)")
        }
        None => {
            let valid: Vec<String> = siblings
                .iter()
                .map(|(name, section)| match section {
                    true => section_name(&join(parent, name)),
                    false => join(parent, name),
                })
                .collect();
            format!("{what} (valid here: {})", valid.join(", "))
        }
    }
}

/// The key an environment variable sets, the way figment's `Env::prefixed(prefix).split("__")`
/// reads it: the prefix matched ignoring case, `__` for a section's key, lowercased. None when
/// the variable does not carry the prefix.
pub fn env_key(prefix: &str, name: &str) -> Option<String> {
    let name = name.trim();
    let head = name.get(..prefix.len())?;
    if !head.eq_ignore_ascii_case(prefix) {
        return None;
    }
    Some(name[prefix.len()..].replace("__", ".").to_ascii_lowercase())
}

/// The environment variable that sets `key`: `RCPFED_HUB_TLS__CERT` for `tls.cert`.
pub fn env_name(prefix: &str, key: &str) -> String {
    format!("{prefix}{}", key.replace('.', "__").to_ascii_uppercase())
}

/// The problems of the environment variables that carry `prefix`, one line each. `reserved`
/// are keys (after the prefix, lowercase) that belong to other commands and are left alone.
pub fn env_problems(
    vars: impl IntoIterator<Item = (OsString, OsString)>,
    prefix: &str,
    reserved: &[&str],
    schema: &Schema,
) -> Vec<String> {
    let mut problems = Vec::new();
    for (name, _) in vars {
        let name = name.to_string_lossy();
        let Some(key) = env_key(prefix, &name) else {
            continue;
        };
        if schema.is_leaf(&key) || reserved.contains(&key.as_str()) {
            continue;
        }
        let name = name.trim();
        if schema.is_section(&key) {
            let example = schema
                .leaves()
                .find(|leaf| parent_of(leaf) == key)
                .map(|leaf| env_name(prefix, leaf))
                .unwrap_or_default();
            problems.push(format!(
                "environment variable {name} names the section {} and cannot be set as a \
                 whole: set its keys one by one, e.g. {example}",
                section_name(&key)
            ));
            continue;
        }
        let typed = &name[prefix.len()..];
        let candidates: Vec<String> = schema.leaves().map(|leaf| env_name("", leaf)).collect();
        let hint = match closest(typed, candidates.iter().map(String::as_str)) {
            Some(best) => format!("did you mean {prefix}{best}?"),
            None => format!(
                "the variables are {prefix} followed by a key of the configuration file in \
                 capitals, with __ before a section's key, e.g. {}",
                env_name(prefix, "tls.cert")
            ),
        };
        problems.push(format!("unknown environment variable {name} ({hint})"));
    }
    problems
}

/// A configuration value that does not read, one line per error: the key as written
/// (`ops_listen`, `tls.cert`, never figment's `default.ops_listen`), what is wrong, and where
/// the value came from (the file, the environment variable, the command line).
pub fn describe_extract_error(error: figment::Error, env_prefix: &str) -> String {
    let lines: Vec<String> = error
        .into_iter()
        .map(|e| {
            let key = e.path.join(".");
            let from = match e.metadata.as_ref() {
                Some(m) => match &m.source {
                    Some(figment::Source::File(path)) => format!(" (in {})", path.display()),
                    Some(figment::Source::Code(_)) => " (from the command line)".to_string(),
                    _ if m.name.contains("environment") => {
                        format!(" (from {})", env_name(env_prefix, &key))
                    }
                    _ => String::new(),
                },
                None => String::new(),
            };
            let kind = e.kind.to_string();
            // A socket address must be an IP address and a port: a host name is refused.
            let hint = if kind.contains("socket address") {
                ", expected an IP address and port such as 127.0.0.1:50051"
            } else {
                ""
            };
            if key.is_empty() {
                format!("{kind}{hint}{from}")
            } else {
                format!("{key}: {kind}{hint}{from}")
            }
        })
        .collect();
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{HubConfig, NodeConfig};

    fn hub_schema() -> Schema {
        Schema::of(&HubConfig::default()).expect("hub schema")
    }

    fn table(text: &str) -> toml::Table {
        text.parse().expect("TOML")
    }

    fn vars(names: &[&str]) -> Vec<(OsString, OsString)> {
        names
            .iter()
            .map(|n| (OsString::from(n), OsString::from("1")))
            .collect()
    }

    #[test]
    fn the_schema_lists_every_setting_and_section() {
        let hub = hub_schema();
        for key in [
            "listen",
            "ops_listen",
            "crl_file",
            "max_db_bytes",
            "catalogue",
            "tls.ca_cert",
            "tls.cert",
            "tls.key",
        ] {
            assert!(hub.is_leaf(key), "{key}");
        }
        assert!(hub.is_section("tls"));
        assert!(!hub.is_leaf("tls"));
        assert!(!hub.is_leaf("hub_endpoint"), "a node key is not a hub key");
        let node = Schema::of(&NodeConfig::default()).expect("node schema");
        assert!(node.is_leaf("hub_endpoint") && node.is_leaf("registry_file"));
        assert!(
            !node.is_leaf("witness_quorum"),
            "a hub key is not a node key"
        );
    }

    #[test]
    fn valid_keys_pass() {
        let text = "listen = \"127.0.0.1:1\"\nops_listen = \"127.0.0.1:2\"\n\
                    crl_file = \"crl.pem\"\n[tls]\nca_cert = \"ca.pem\"\ncert = \"c\"\nkey = \"k\"\n";
        assert!(file_problems(&table(text), &hub_schema(), "hub.toml").is_empty());
    }

    #[test]
    fn an_unknown_key_is_named_with_the_closest() {
        let problems = file_problems(&table("listn = \"0.0.0.0:1\""), &hub_schema(), "hub.toml");
        assert_eq!(
            problems,
            ["unknown key listn in hub.toml (did you mean listen?)"]
        );
    }

    #[test]
    fn an_unknown_section_is_named_with_the_closest() {
        let problems = file_problems(&table("[tsl]\ncert = \"c.pem\""), &hub_schema(), "hub.toml");
        assert_eq!(
            problems,
            ["unknown section [tsl] in hub.toml (did you mean [tls]?)"]
        );
    }

    #[test]
    fn an_unknown_key_in_a_section_is_named_in_full() {
        let problems = file_problems(&table("[tls]\ncrt = \"c.pem\""), &hub_schema(), "hub.toml");
        assert_eq!(
            problems,
            ["unknown key tls.crt in hub.toml (did you mean tls.cert?)"]
        );
    }

    #[test]
    fn a_top_level_key_under_a_section_says_to_move_it() {
        let problems = file_problems(
            &table("[tls]\ncert = \"c.pem\"\ncrl_file = \"crl.pem\""),
            &hub_schema(),
            "hub.toml",
        );
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].starts_with("crl_file in hub.toml is written inside [tls]")
                && problems[0].contains("move it above"),
            "{problems:?}"
        );
    }

    #[test]
    fn without_a_close_name_the_valid_ones_are_listed() {
        let problems = file_problems(&table("[tls]\nzzzzzz = 1"), &hub_schema(), "hub.toml");
        assert_eq!(
            problems,
            ["unknown key tls.zzzzzz in hub.toml (valid here: tls.ca_cert, tls.cert, tls.key)"]
        );
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let problems = file_problems(
            &table("listn = \"x\"\nops_lisen = \"y\"\n[tsl]\n"),
            &hub_schema(),
            "hub.toml",
        );
        assert_eq!(problems.len(), 3, "{problems:?}");
    }

    #[test]
    fn an_unknown_environment_variable_is_named_with_the_closest() {
        let problems = env_problems(
            vars(&[
                "RCPFED_HUB_LISTN",
                "RCPFED_HUB_LISTEN",
                "PATH",
                "RCPFED_LOG",
            ]),
            "RCPFED_HUB_",
            &[],
            &hub_schema(),
        );
        assert_eq!(
            problems,
            ["unknown environment variable RCPFED_HUB_LISTN (did you mean RCPFED_HUB_LISTEN?)"]
        );
    }

    #[test]
    fn a_section_key_needs_two_underscores() {
        let problems = env_problems(
            vars(&["RCPFED_HUB_TLS_CERT", "RCPFED_HUB_TLS__CERT"]),
            "RCPFED_HUB_",
            &[],
            &hub_schema(),
        );
        assert_eq!(
            problems,
            [
                "unknown environment variable RCPFED_HUB_TLS_CERT (did you mean RCPFED_HUB_TLS__CERT?)"
            ]
        );
        let section = env_problems(vars(&["RCPFED_HUB_TLS"]), "RCPFED_HUB_", &[], &hub_schema());
        assert_eq!(section.len(), 1);
        assert!(
            section[0].contains("names the section [tls]")
                && section[0].contains("RCPFED_HUB_TLS__"),
            "{section:?}"
        );
    }

    #[test]
    fn the_prefix_matches_ignoring_case_as_figment_does() {
        assert_eq!(
            env_key("RCPFED_HUB_", "rcpfed_hub_Tls__Cert").as_deref(),
            Some("tls.cert")
        );
        assert_eq!(env_key("RCPFED_HUB_", "RCPFED_NODE_LISTEN"), None);
        assert_eq!(env_key("RCPFED_HUB_", "RCPFED"), None);
        let problems = env_problems(
            vars(&["rcpfed_hub_listn"]),
            "RCPFED_HUB_",
            &[],
            &hub_schema(),
        );
        assert_eq!(problems.len(), 1, "{problems:?}");
    }

    #[test]
    fn reserved_variables_and_other_prefixes_are_left_alone() {
        let problems = env_problems(
            vars(&[
                "RCPFED_HUB_ENDPOINT",
                "RCPFED_NODE_LISTEN",
                "RCPFED_CLOCK_OFFSET_MS",
                "RCPFED_PKI_DIR",
            ]),
            "RCPFED_HUB_",
            &["endpoint"],
            &hub_schema(),
        );
        assert!(problems.is_empty(), "{problems:?}");
        let unreserved = env_problems(
            vars(&["RCPFED_HUB_ENDPOINT"]),
            "RCPFED_HUB_",
            &[],
            &hub_schema(),
        );
        assert_eq!(unreserved.len(), 1);
    }

    #[test]
    fn a_variable_with_an_empty_key_is_refused() {
        let problems = env_problems(
            vars(&["RCPFED_HUB_", "RCPFED_HUB_TLS__"]),
            "RCPFED_HUB_",
            &[],
            &hub_schema(),
        );
        assert_eq!(problems.len(), 2, "{problems:?}");
    }

    #[test]
    fn env_names_round_trip() {
        for key in hub_schema().leaves() {
            assert_eq!(
                env_key("RCPFED_HUB_", &env_name("RCPFED_HUB_", key)).as_deref(),
                Some(key)
            );
        }
    }

    #[test]
    fn value_errors_name_the_real_key_and_its_source() {
        use figment::Figment;
        use figment::providers::{Format as _, Serialized, Toml};
        let error = Figment::new()
            .merge(Serialized::defaults(HubConfig::default()))
            .merge(Toml::string("ops_listen = \"nowhere\"\n[tls]\ncert = 5"))
            .extract::<HubConfig>()
            .expect_err("bad values");
        let text = describe_extract_error(error, "RCPFED_HUB_");
        assert!(!text.contains("default."), "{text}");
        assert!(
            text.lines()
                .any(|l| l.starts_with("ops_listen: ") && l.contains("such as 127.0.0.1:50051")),
            "{text}"
        );
    }
}
