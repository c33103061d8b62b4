//! Which files the globs match, kept current: a full scan at start, `notify` events on the
//! globs' base directories (a new file is seen at once), and a slow poll as the fallback for
//! file systems without events (NFS, some overlays).
//!
//! Cost does not grow with globs × poll rate: the globs of every `[[logs.files]]` entry are one
//! `GlobSet` per entry, their base directories are deduplicated, each scan walks each base
//! directory once, and an event is matched against the sets without any walk (a new
//! directory under a `**` glob is walked alone). It only reports paths; it never opens files
//! and never decides where reading starts.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};
use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::LogFileConfig;

/// A file some entry's globs match: the entry's index and the path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// Index into `logs.files`.
    pub rule: usize,
    /// The path as matched (a symlink stays a symlink; opening follows it).
    pub path: PathBuf,
}

/// The compiled globs of every entry, and the directories they need walked.
#[derive(Debug, Default)]
pub struct Matcher {
    rules: Vec<RuleGlobs>,
    /// Base directory → how deep below it files may match (`None`: any depth).
    roots: BTreeMap<PathBuf, Option<usize>>,
}

#[derive(Debug)]
struct RuleGlobs {
    include: GlobSet,
    exclude_path: GlobSet,
    exclude_name: GlobSet,
}

fn glob(text: &str) -> Result<Glob, globset::Error> {
    GlobBuilder::new(text).literal_separator(true).build()
}

impl Matcher {
    /// Compiles the globs of `files` (already checked by the config loader).
    pub fn new(files: &[LogFileConfig]) -> Result<Self, globset::Error> {
        let mut rules = Vec::new();
        let mut roots: BTreeMap<PathBuf, Option<usize>> = BTreeMap::new();
        for file in files {
            let mut include = GlobSetBuilder::new();
            for path in &file.paths {
                include.add(glob(path)?);
                let (base, depth) = base_of(path);
                let slot = roots.entry(base).or_insert(Some(0));
                *slot = match (*slot, depth) {
                    (Some(a), Some(b)) => Some(a.max(b)),
                    _ => None,
                };
            }
            let (mut by_path, mut by_name) = (GlobSetBuilder::new(), GlobSetBuilder::new());
            for pattern in &file.exclude_paths {
                let set = if pattern.contains('/') {
                    &mut by_path
                } else {
                    &mut by_name
                };
                set.add(glob(pattern)?);
            }
            rules.push(RuleGlobs {
                include: include.build()?,
                exclude_path: by_path.build()?,
                exclude_name: by_name.build()?,
            });
        }
        Ok(Matcher { rules, roots })
    }

    /// The first entry that takes `path`, if any.
    pub fn rule_for(&self, path: &Path) -> Option<usize> {
        let name = path.file_name().map(Path::new);
        self.rules.iter().position(|r| {
            r.include.is_match(path)
                && !r.exclude_path.is_match(path)
                && !name.is_some_and(|n| r.exclude_name.is_match(n))
        })
    }

    /// Every file matched now: one walk per base directory.
    pub fn scan(&self) -> Vec<Found> {
        let mut found = Vec::new();
        for (root, depth) in &self.roots {
            self.walk(root, *depth, &mut found);
        }
        found
    }

    /// The base directories and whether they need a recursive watch.
    fn watch_list(&self) -> impl Iterator<Item = (&Path, RecursiveMode)> {
        self.roots.iter().map(|(root, depth)| {
            let mode = if *depth == Some(1) {
                RecursiveMode::NonRecursive
            } else {
                RecursiveMode::Recursive
            };
            (root.as_path(), mode)
        })
    }

    fn walk(&self, dir: &Path, depth: Option<usize>, found: &mut Vec<Found>) {
        let mut walker = walkdir::WalkDir::new(dir).min_depth(1);
        if let Some(depth) = depth {
            walker = walker.max_depth(depth);
        }
        for entry in walker.into_iter().filter_map(Result::ok) {
            if entry.file_type().is_dir() {
                continue;
            }
            if let Some(rule) = self.rule_for(entry.path()) {
                found.push(Found {
                    rule,
                    path: entry.into_path(),
                });
            }
        }
    }

    /// What a `notify` event at `path` means: the file itself, or a new directory's files.
    fn on_event(&self, path: &Path, found: &mut Vec<Found>) {
        if path.is_dir() {
            let under_recursive = self
                .roots
                .iter()
                .any(|(root, depth)| depth.is_none_or(|d| d > 1) && path.starts_with(root));
            if under_recursive {
                self.walk(path, None, found);
            }
        } else if let Some(rule) = self.rule_for(path) {
            found.push(Found {
                rule,
                path: path.to_owned(),
            });
        }
    }
}

/// The directory a glob's literal prefix names, and how many levels below it may match
/// (`None` with `**`).
pub fn base_of(pattern: &str) -> (PathBuf, Option<usize>) {
    let parts: Vec<&str> = pattern.split('/').collect();
    let is_glob = |p: &str| p.contains(['*', '?', '[', '{']);
    let first = parts
        .iter()
        .position(|p| is_glob(p))
        .unwrap_or(parts.len() - 1);
    let base = parts[..first].join("/");
    let base = if base.is_empty() {
        "/".to_owned()
    } else {
        base
    };
    let rest = &parts[first..];
    let depth = (!rest.contains(&"**")).then_some(rest.len());
    (PathBuf::from(base), depth)
}

/// Reports matching files to `tx` until `token` is cancelled: a full scan every `poll`,
/// and each relevant `notify` event as it comes. The start-up scan is the caller's.
pub async fn run(
    matcher: std::sync::Arc<Matcher>,
    tx: mpsc::Sender<Found>,
    poll: Duration,
    token: CancellationToken,
) {
    let (event_tx, mut event_rx) = mpsc::channel::<PathBuf>(1024);
    let handler = move |result: notify::Result<notify::Event>| {
        let Ok(event) = result else { return };
        if matches!(
            event.kind,
            EventKind::Create(_) | EventKind::Modify(notify::event::ModifyKind::Name(_))
        ) {
            for path in event.paths {
                // Full: the next poll finds it anyway.
                let _ = event_tx.try_send(path);
            }
        }
    };
    let mut watcher = match notify::recommended_watcher(handler) {
        Ok(w) => Some(w),
        Err(error) => {
            tracing::warn!(%error, "File events unavailable; relying on the poll.");
            None
        }
    };
    let mut watched: Vec<PathBuf> = Vec::new();
    let mut ticker = tokio::time::interval(poll);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let mut found = Vec::new();
        tokio::select! {
            _ = token.cancelled() => return,
            _ = ticker.tick() => {
                if let Some(w) = watcher.as_mut() {
                    watch_new_roots(&matcher, w, &mut watched);
                }
                found = matcher.scan();
            }
            Some(path) = event_rx.recv() => matcher.on_event(&path, &mut found),
        }
        for item in found {
            if tx.send(item).await.is_err() {
                return;
            }
        }
    }
}

/// Adds a watch on each base directory that exists and is not watched yet.
fn watch_new_roots(matcher: &Matcher, watcher: &mut impl Watcher, watched: &mut Vec<PathBuf>) {
    for (root, mode) in matcher.watch_list() {
        if watched.iter().any(|w| w == root) || !root.is_dir() {
            continue;
        }
        match watcher.watch(root, mode) {
            Ok(()) => watched.push(root.to_owned()),
            Err(error) => {
                tracing::debug!(%error, dir = %root.display(), "Could not watch a directory.")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Encoding, NameKind, NameTemplate, StartAt, Timezone};

    pub(crate) fn rule(paths: &[&str], exclude: &[&str]) -> LogFileConfig {
        LogFileConfig {
            paths: paths.iter().map(|s| s.to_string()).collect(),
            exclude_paths: exclude.iter().map(|s| s.to_string()).collect(),
            log_group: NameTemplate::parse("g", NameKind::Group).unwrap(),
            log_stream: NameTemplate::parse("{file_name}", NameKind::Stream).unwrap(),
            retention_days: None,
            group_class: None,
            start_at: StartAt::Beginning,
            multiline_start: None,
            timestamp_format: None,
            timezone: Timezone::Utc,
            include_lines: vec![],
            exclude_lines: vec![],
            encoding: Encoding::Utf8,
            metric_filters: vec![],
        }
    }

    #[test]
    fn bases_and_depths() {
        assert_eq!(
            base_of("/var/log/app/*.log"),
            ("/var/log/app".into(), Some(1))
        );
        assert_eq!(base_of("/var/log/app.log"), ("/var/log".into(), Some(1)));
        assert_eq!(base_of("/var/log/*/x.log"), ("/var/log".into(), Some(2)));
        assert_eq!(base_of("/var/**/x.log"), ("/var".into(), None));
        assert_eq!(base_of("/*.log"), ("/".into(), Some(1)));
    }

    #[test]
    fn scan_matches_excludes_and_recurses() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display().to_string();
        for f in [
            "a.log",
            "b.log",
            "c.log.gz",
            "x.txt",
            "sub/deep/d.log",
            "sub/e.log",
        ] {
            let p = dir.path().join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, "x\n").unwrap();
        }
        let m = Matcher::new(&[
            rule(&[&format!("{d}/*.log*")], &["*.gz", &format!("{d}/b.log")]),
            rule(&[&format!("{d}/**/*.log")], &[]),
        ])
        .unwrap();
        let mut got: Vec<(usize, String)> = m
            .scan()
            .into_iter()
            .map(|f| {
                (
                    f.rule,
                    f.path.strip_prefix(&d).unwrap().display().to_string(),
                )
            })
            .collect();
        got.sort();
        let expected = [
            (0, "a.log"),
            (1, "b.log"),
            (1, "sub/deep/d.log"),
            (1, "sub/e.log"),
        ];
        let expected: Vec<(usize, String)> =
            expected.iter().map(|(r, p)| (*r, p.to_string())).collect();
        assert_eq!(got, expected);
    }

    #[tokio::test]
    async fn a_new_file_is_reported_quickly() {
        let dir = tempfile::tempdir().unwrap();
        let pattern = format!("{}/*.log", dir.path().display());
        let m = std::sync::Arc::new(Matcher::new(&[rule(&[&pattern], &[])]).unwrap());
        let (tx, mut rx) = mpsc::channel(16);
        let token = CancellationToken::new();
        let task = tokio::spawn(run(m, tx, Duration::from_secs(3600), token.clone()));
        tokio::time::sleep(Duration::from_millis(200)).await;
        std::fs::write(dir.path().join("new.log"), "x\n").unwrap();
        let found = tokio::time::timeout(Duration::from_secs(1), rx.recv()).await;
        assert_eq!(found.unwrap().unwrap().path, dir.path().join("new.log"));
        token.cancel();
        task.await.unwrap();
    }
}
