//! The config directory: every `*.yaml` / `*.yml` file in it, read in name order, parsed with the
//! proxy's one YAML module, and merged into one [`Mesh`].
//!
//! A file may hold any of `services`, `routes` (the proxy schema's own types) and `workloads`.
//! Names are unique across the whole directory; a duplicate is reported at its second definition.
//! Every problem carries the file, line and column it was found at.

use std::{
    collections::{BTreeMap, HashMap},
    fmt,
    path::{Path, PathBuf},
};

use pillion_config::{
    schema::{InboundPort, Route, Service},
    yaml::{self, FileError},
};
use serde::{Deserialize, Serialize};

/// One config file's shape.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SourceFile {
    /// Upstream services.
    #[serde(default)]
    pub services: Vec<Service>,
    /// Routing rules; across files, in file-name order, then file order.
    #[serde(default)]
    pub routes: Vec<Route>,
    /// The workloads (proxies) that get snapshots.
    #[serde(default)]
    pub workloads: Vec<WorkloadSpec>,
}

/// A workload: one kind of proxy, identified by its SPIFFE ID.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WorkloadSpec {
    /// Name proxies watch under (`/v1/watch/{name}`).
    pub name: String,
    /// The SPIFFE ID its proxies' certificates carry.
    pub identity: String,
    /// Its inbound policy.
    #[serde(default)]
    pub inbound: WorkloadInbound,
    /// The services it may see; absent means all.
    #[serde(default)]
    pub services: Option<Vec<String>>,
}

/// The part of the proxy's `inbound` section the control plane owns.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WorkloadInbound {
    /// Policy per application port.
    #[serde(default)]
    pub ports: Vec<InboundPort>,
}

/// One problem, located in a file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The file, as found in the directory.
    pub file: PathBuf,
    /// Line, 1-based (0 when unknown).
    pub line: usize,
    /// Column, 1-based (0 when unknown).
    pub col: usize,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: {}", self.file.display(), self.line, self.col, self.message)
    }
}

/// A directory that could not be turned into a mesh; at least one problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct SourceError {
    /// Every problem, in file then position order.
    pub problems: Vec<Problem>,
}

impl fmt::Display for SourceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (n, p) in self.problems.iter().enumerate() {
            if n > 0 {
                writeln!(f)?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

impl From<FileError> for SourceError {
    fn from(e: FileError) -> Self {
        let problems = e
            .problems
            .into_iter()
            .map(|p| Problem { file: e.file.clone(), line: p.line, col: p.col, message: p.message })
            .collect();
        Self { problems }
    }
}

impl SourceError {
    pub(crate) fn one(file: &Path, message: String) -> Self {
        Self { problems: vec![Problem { file: file.to_owned(), line: 0, col: 0, message }] }
    }
}

/// The directory's files as read: path and text, in name order.
pub type Texts = Vec<(PathBuf, String)>;

/// Reads every YAML file of `dir` (not hidden, not in subdirectories), sorted by name.
pub fn read_dir(dir: &Path) -> Result<Texts, SourceError> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| SourceError::one(dir, format!("cannot read the config directory: {e}")))?;
    let mut paths = Vec::new();
    for entry in entries {
        let entry =
            entry.map_err(|e| SourceError::one(dir, format!("cannot read the config directory: {e}")))?;
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        // Hidden names cover editor swap files and a ConfigMap mount's `..data` machinery.
        let yaml = name.ends_with(".yaml") || name.ends_with(".yml");
        if yaml && !name.starts_with('.') && path.is_file() {
            paths.push(path);
        }
    }
    paths.sort();
    let mut texts = Vec::with_capacity(paths.len());
    for path in paths {
        match std::fs::read_to_string(&path) {
            Ok(text) => texts.push((path, text)),
            // Removed between listing and reading: the next event re-reads the directory.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(SourceError::one(&path, format!("cannot read: {e}"))),
        }
    }
    Ok(texts)
}

/// Where a merged item came from: its file (index into [`Mesh::files`]) and its index there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Origin {
    /// Index into `Mesh::files`.
    pub file: usize,
    /// Index within that file's list.
    pub index: usize,
}

/// Everything the directory says, merged and checked.
#[derive(Debug, Clone, Default)]
pub struct Mesh {
    /// Services, in file order.
    pub services: Vec<(Service, Origin)>,
    /// Routes, in file order (match order).
    pub routes: Vec<(Route, Origin)>,
    /// Workloads by name.
    pub workloads: BTreeMap<String, (WorkloadSpec, Origin)>,
    /// The files merged, with their text (to locate problems).
    pub files: Texts,
}

/// Parses, merges and validates the files; the mesh is one every proxy would accept.
pub fn load(files: Texts) -> Result<Mesh, SourceError> {
    let mut problems = Vec::new();
    let mut parsed = Vec::with_capacity(files.len());
    for (path, text) in &files {
        if text.trim().is_empty() {
            parsed.push(SourceFile::default());
            continue;
        }
        match yaml::from_str::<Option<SourceFile>>(path, text) {
            Ok(f) => parsed.push(f.unwrap_or_default()),
            Err(e) => problems.extend(SourceError::from(e).problems),
        }
    }
    if !problems.is_empty() {
        return Err(SourceError { problems });
    }
    let mesh = merge(parsed, files)?;
    crate::validate::validate(&mesh)?;
    Ok(mesh)
}

/// Reads and loads a directory in one step.
pub fn load_dir(dir: &Path) -> Result<Mesh, SourceError> {
    load(read_dir(dir)?)
}

fn merge(parsed: Vec<SourceFile>, files: Texts) -> Result<Mesh, SourceError> {
    let mut mesh = Mesh::default();
    let mut dups = Vec::new();
    let mut seen: [HashMap<String, Origin>; 3] = Default::default();
    let mut check = |kind: usize, name: &str, at: Origin| {
        if let Some(first) = seen[kind].insert(name.to_owned(), at) {
            dups.push((kind, name.to_owned(), at, first));
        }
    };
    for (file, f) in parsed.into_iter().enumerate() {
        for (index, s) in f.services.into_iter().enumerate() {
            check(0, &s.name, Origin { file, index });
            mesh.services.push((s, Origin { file, index }));
        }
        for (index, r) in f.routes.into_iter().enumerate() {
            check(1, &r.name, Origin { file, index });
            mesh.routes.push((r, Origin { file, index }));
        }
        for (index, w) in f.workloads.into_iter().enumerate() {
            check(2, &w.name, Origin { file, index });
            mesh.workloads.entry(w.name.clone()).or_insert((w, Origin { file, index }));
        }
    }
    mesh.files = files;
    if dups.is_empty() {
        return Ok(mesh);
    }
    let problems = dups
        .into_iter()
        .map(|(kind, name, at, first)| {
            let (noun, list) =
                [("service", "services"), ("route", "routes"), ("workload", "workloads")][kind];
            let first = mesh.locate(first.file, &format!("{list}[{}].name", first.index));
            let mut p = mesh.locate(at.file, &format!("{list}[{}].name", at.index));
            p.message = format!(
                "{noun} {name:?} is already defined at {}:{}:{}",
                first.file.display(),
                first.line,
                first.col
            );
            p
        })
        .collect();
    Err(SourceError { problems })
}

impl Mesh {
    /// The position of a value path (`routes[2].backends[0].service`) in one of the files.
    pub fn locate(&self, file: usize, path: &str) -> Problem {
        let (name, text) = match self.files.get(file) {
            Some((name, text)) => (name.as_path(), text.as_str()),
            None => (Path::new("<unknown>"), ""),
        };
        let problem = pillion_config::validate::Problem { path: path.to_owned(), message: String::new() };
        let located = yaml::locate(name, text, vec![problem]);
        let (line, col) = located.problems.first().map_or((0, 0), |p| (p.line, p.col));
        Problem { file: name.to_owned(), line, col, message: String::new() }
    }
}

#[cfg(test)]
#[path = "source_tests.rs"]
mod tests;
