//! YAML in, `file:line:col: message` errors out. The only module that touches a YAML library, so
//! that deprecated serde_yaml can be swapped for a fork in one place.
//!
//! serde_yaml reports where a syntax or type error is; for problems found later by `validate` we
//! re-read the text as marked events (yaml-rust2) to map a value's path back to its position.

use std::{
    collections::HashMap,
    fmt,
    path::{Path, PathBuf},
};

use yaml_rust2::{
    parser::{Event, MarkedEventReceiver, Parser},
    scanner::Marker,
};

use super::{Config, schema, validate};

/// A config that could not be loaded, with every problem located.
#[derive(Debug, thiserror::Error)]
pub struct FileError {
    /// The file (or a label such as `<control>` for pushed config).
    pub file: PathBuf,
    /// The problems, in file order.
    pub problems: Vec<Located>,
}

/// One problem with its 1-based line and column (0 when unknown).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    /// Line, 1-based.
    pub line: usize,
    /// Column, 1-based.
    pub col: usize,
    /// What is wrong.
    pub message: String,
}

impl FileError {
    /// A file that could not be read.
    pub fn io(path: &Path, e: std::io::Error) -> Self {
        let message = format!("cannot read config: {e}");
        Self { file: path.to_owned(), problems: vec![Located { line: 0, col: 0, message }] }
    }
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (n, p) in self.problems.iter().enumerate() {
            if n > 0 {
                writeln!(f)?;
            }
            write!(f, "{}:{}:{}: {}", self.file.display(), p.line, p.col, p.message)?;
        }
        Ok(())
    }
}

/// Parses YAML text into the schema, with a located error on bad syntax or shape.
pub fn parse(file: &Path, text: &str) -> Result<schema::File, FileError> {
    if text.trim().is_empty() {
        return Ok(schema::File::default());
    }
    from_str(file, text)
}

/// Parses and validates YAML text.
pub fn load_str(file: &Path, text: &str) -> Result<Config, FileError> {
    let parsed = parse(file, text)?;
    validate::validate(parsed).map_err(|problems| locate(file, text, problems))
}

/// Serialises any config section back to YAML (used for `/config` and by the control plane).
pub fn to_string<T: serde::Serialize>(value: &T) -> Result<String, String> {
    serde_yaml::to_string(value).map_err(|e| e.to_string())
}

/// Parses any schema section from YAML text, with a located error.
pub fn from_str<T: serde::de::DeserializeOwned>(file: &Path, text: &str) -> Result<T, FileError> {
    serde_yaml::from_str(text).map_err(|e| {
        let mut at = e.location().map_or((0, 0), |l| (l.line(), l.column()));
        let message = strip_location(&e.to_string());
        // serde_yaml places an unknown field or a bad value at its enclosing mapping; point at
        // the key, or at the first value the message quotes, after that position.
        let detail = message.split_once(": ").map_or(message.as_str(), |(_, d)| d);
        let walker = walk(text);
        let found =
            if let Some(key) = detail.strip_prefix("unknown field `").and_then(|m| m.split('`').next()) {
                walker.keys.iter().find(|(k, pos)| k == key && *pos >= at)
            } else if let Some(quoted) = detail.split('"').nth(1) {
                walker.values.iter().find(|(v, pos)| v == quoted && *pos >= at)
            } else {
                None
            };
        if let Some(&(_, pos)) = found {
            at = pos;
        }
        FileError { file: file.to_owned(), problems: vec![Located { line: at.0, col: at.1, message }] }
    })
}

/// Attaches line and column to validation problems by their value paths.
pub fn locate(file: &Path, text: &str, problems: Vec<validate::Problem>) -> FileError {
    let positions = positions(text);
    let mut problems: Vec<Located> = problems
        .into_iter()
        .map(|p| {
            let (line, col) = lookup(&positions, &p.path);
            Located { line, col, message: format!("{}: {}", p.path, p.message) }
        })
        .collect();
    problems.sort_by_key(|p| (p.line, p.col));
    FileError { file: file.to_owned(), problems }
}

/// serde_yaml appends " at line L column C"; we print the position up front instead.
fn strip_location(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_owned(),
        None => msg.to_owned(),
    }
}

/// The position of a path, or of its nearest ancestor that exists in the text (a defaulted
/// field has no position of its own).
fn lookup(positions: &HashMap<String, (usize, usize)>, path: &str) -> (usize, usize) {
    let mut p = path;
    loop {
        if let Some(&pos) = positions.get(p) {
            return pos;
        }
        match p.rfind(['.', '[']) {
            Some(i) => p = &p[..i],
            None => return (0, 0),
        }
    }
}

/// Maps every value's path (`routes[0].backends[1].service`) to its line and column.
fn positions(text: &str) -> HashMap<String, (usize, usize)> {
    walk(text).positions
}

fn walk(text: &str) -> Walker {
    let mut walker = Walker::default();
    // Used on text serde_yaml has seen; if the two parsers disagree we only lose positions,
    // never the error itself.
    let _ = Parser::new_from_str(text).load(&mut walker, false);
    walker
}

enum Frame {
    Map { path: String, key: Option<String> },
    Seq { path: String, next: usize },
}

#[derive(Default)]
struct Walker {
    stack: Vec<Frame>,
    positions: HashMap<String, (usize, usize)>,
    /// Every mapping key with its position, in file order.
    keys: Vec<(String, (usize, usize))>,
    /// Every scalar value with its position, in file order.
    values: Vec<(String, (usize, usize))>,
    /// A block mapping's start marker sits oddly; it takes its first key's position instead.
    pending_map: Option<String>,
}

impl Walker {
    /// Path of the node starting now, or `None` when the node is a mapping key.
    fn node_path(&mut self, key_text: Option<&str>) -> Option<String> {
        match self.stack.last_mut() {
            None => Some(String::new()),
            Some(Frame::Map { path, key }) => match key.take() {
                Some(k) => Some(join(path, &k)),
                None => {
                    *key = Some(key_text.unwrap_or_default().to_owned());
                    None
                }
            },
            Some(Frame::Seq { path, next }) => {
                *next += 1;
                Some(format!("{path}[{}]", *next - 1))
            }
        }
    }
}

fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() { key.to_owned() } else { format!("{parent}.{key}") }
}

impl MarkedEventReceiver for Walker {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let pos = (mark.line(), mark.col() + 1);
        match ev {
            Event::Scalar(value, ..) => match self.node_path(Some(&value)) {
                Some(path) => {
                    self.positions.entry(path).or_insert(pos);
                    self.values.push((value, pos));
                }
                None => {
                    if let Some(map) = self.pending_map.take() {
                        self.positions.insert(map, pos);
                    }
                    self.keys.push((value, pos));
                }
            },
            Event::Alias(_) => {
                if let Some(path) = self.node_path(None) {
                    self.positions.entry(path).or_insert(pos);
                }
            }
            Event::MappingStart(..) => {
                let path = self.node_path(None).unwrap_or_default();
                self.positions.entry(path.clone()).or_insert(pos);
                self.pending_map = Some(path.clone());
                self.stack.push(Frame::Map { path, key: None });
            }
            Event::SequenceStart(..) => {
                let path = self.node_path(None).unwrap_or_default();
                self.positions.entry(path.clone()).or_insert(pos);
                self.stack.push(Frame::Seq { path, next: 0 });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
services:
  - name: a
    endpoints: [{addr: \"127.0.0.1:1\"}]
routes:
  - name: r
    backends:
      - {service: a}
      - service: missing
";

    #[test]
    fn maps_paths_to_one_based_positions() {
        let p = positions(TEXT);
        assert_eq!(p["services"], (2, 3));
        assert_eq!(p["services[0].name"], (2, 11));
        assert_eq!(p["services[0].endpoints[0].addr"], (3, 24));
        assert_eq!(p["routes[0].backends[1].service"], (8, 18));
    }

    #[test]
    fn validation_errors_point_at_the_value() {
        let err = load_str(Path::new("f.yaml"), TEXT).unwrap_err();
        assert_eq!(
            err.to_string(),
            "f.yaml:8:18: routes[0].backends[1].service: unknown service \"missing\""
        );
    }

    #[test]
    fn unknown_keys_and_bad_durations_are_located() {
        let err =
            load_str(Path::new("f.yaml"), "admin:\n  bind: \"127.0.0.1:1\"\n  colour: red\n").unwrap_err();
        let p = &err.problems[0];
        assert_eq!((p.line, p.col), (3, 3));
        assert!(p.message.contains("unknown field `colour`"), "{}", p.message);

        let text = "services:\n  - name: a\n    connect_timeout: 5 parsecs\n";
        let err = load_str(Path::new("f.yaml"), text).unwrap_err();
        assert_eq!(err.problems[0].line, 3);
        assert!(err.problems[0].message.contains("unknown unit"), "{}", err.problems[0].message);
    }

    #[test]
    fn dns_problems_are_located() {
        let text = "services:\n  - name: a\n    endpoints: [{addr: \"127.0.0.1:1\"}]\n  - name: b\n    dns: [\"b.local:80\", \"b.local\"]\n    identity: \"orders\"\nresolver: {nameservers: [\"dns:53\"]}\n";
        let err = load_str(Path::new("f.yaml"), text).unwrap_err();
        let found: Vec<_> = err.problems.iter().map(|p| (p.line, p.message.as_str())).collect();
        assert_eq!(found.len(), 4, "{found:?}");
        assert_eq!(found[0].0, 5);
        assert!(found[0].1.starts_with("services[1].dns[1]: \"b.local\" is not host:port"), "{found:?}");
        // Not a SPIFFE ID, and mTLS without a `tls` section.
        assert!(found[1..3].iter().all(|(line, m)| *line == 6 && m.starts_with("services[1].identity: ")));
        assert_eq!(found[3].0, 7);
        assert!(found[3].1.starts_with("resolver.nameservers[0]: \"dns:53\" is not an IP:port"), "{found:?}");
    }

    #[test]
    fn zero_listener_limits_are_errors_at_their_key() {
        let text = "outbound:\n  limits: {idle_timeout: 0s, max_request_line_bytes: 0}\n";
        let err = load_str(Path::new("f.yaml"), text).unwrap_err();
        let found: Vec<_> = err.problems.iter().map(|p| (p.line, p.col, p.message.as_str())).collect();
        assert_eq!(
            found,
            [
                (2, 26, "outbound.limits.idle_timeout: idle_timeout must be more than 0s"),
                (2, 54, "outbound.limits.max_request_line_bytes: max_request_line_bytes must be at least 1"),
            ]
        );
    }

    #[test]
    fn http2_keepalive_defaults_turns_off_and_rejects_a_zero_timeout() {
        let keepalive = |k: &str| {
            let text = format!("services:\n  - {{name: a{k}}}\n");
            load_str(Path::new("f.yaml"), &text).map(|c| c.services[0].http2_keepalive)
        };
        assert_eq!(keepalive("").ok(), Some(Some(crate::Keepalive::DEFAULT)));
        assert_eq!(keepalive(", http2_keepalive: {interval: 0s}").ok(), Some(None));
        let set = keepalive(", http2_keepalive: {interval: 5s, timeout: 1s}").ok().flatten();
        assert_eq!(set.map(|k| (k.interval.as_secs(), k.timeout.as_secs())), Some((5, 1)));
        let err = keepalive(", http2_keepalive: {timeout: 0s}").unwrap_err();
        let p = &err.problems[0];
        assert_eq!(p.line, 2);
        assert!(
            p.message.starts_with("services[0].http2_keepalive.timeout: timeout must be more than 0s"),
            "{}",
            p.message
        );
    }

    #[test]
    fn missing_values_fall_back_to_the_parent_position() {
        let p = positions(TEXT);
        assert_eq!(lookup(&p, "routes[0].timeout"), (5, 5));
        assert_eq!(lookup(&p, "services[0]"), (2, 5));
    }
}
