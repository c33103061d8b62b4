//! `cloudtail check-config`'s listing of the `[logs]` role: for each `[[logs.files]]` entry,
//! its globs and the files they match right now, with the group and stream each would go to,
//! and the metric filters that count its events.
//!
//! Reads directories (the globs are resolved for real) and the local facts placeholders need,
//! but asks no network service: `{instance_id}` and `{task_id}` show as `unknown` unless
//! `AWS_INSTANCE_ID` is set. It never opens a log file.

use std::fmt::Write as _;

use super::discovery::Matcher;
use super::names::{self, NameContext};
use crate::config::{Config, NameKind};

/// The resolved files, groups and streams of `config`, as text for a person; a line saying
/// so when no log file is configured.
pub fn describe(config: &Config) -> String {
    let Some(logs) = &config.logs else {
        return "logs: off (no [logs] table)\n".to_owned();
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "logs: state_dir {}, flush_interval {}, concurrency {}",
        logs.state_dir.display(),
        humantime::format_duration(logs.flush_interval),
        logs.concurrency
    );
    let matcher = match Matcher::new(&logs.files) {
        Ok(m) => m,
        Err(e) => return format!("{out}  (globs do not compile: {e})\n"),
    };
    let mut found = matcher.scan();
    found.sort_by(|a, b| a.path.cmp(&b.path));
    let context = NameContext::offline(config.aws.region.clone());
    let today = chrono::Utc::now().date_naive();
    for (i, file) in logs.files.iter().enumerate() {
        let _ = writeln!(out, "logs.files[{i}]: {}", file.paths.join(", "));
        if !file.exclude_paths.is_empty() {
            let _ = writeln!(out, "  excluding {}", file.exclude_paths.join(", "));
        }
        for f in &file.metric_filters {
            let _ = writeln!(
                out,
                "  counting {:?} into {}/{}",
                f.pattern, f.namespace, f.metric
            );
        }
        let mine: Vec<_> = found.iter().filter(|f| f.rule == i).collect();
        if mine.is_empty() {
            let _ = writeln!(
                out,
                "  matches no file now (new files are picked up when they appear)"
            );
        }
        for f in mine {
            let group = names::render(&file.log_group, NameKind::Group, &context, &f.path, today);
            let stream =
                names::render(&file.log_stream, NameKind::Stream, &context, &f.path, today);
            let _ = writeln!(
                out,
                "  {} -> group {group:?}, stream {stream:?}",
                f.path.display()
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::RunArgs;
    use crate::config::{load, ConfigFile};

    #[test]
    fn lists_matching_files_with_their_names() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.log"), "x\n").unwrap();
        std::fs::write(dir.path().join("b.gz"), "x\n").unwrap();
        let text = format!(
            "[aws]\nregion = \"eu-west-1\"\n[logs]\n[[logs.files]]\npath = \"{}/*\"\n\
             exclude_paths = [\"*.gz\"]\nlog_group = \"/app/{{aws_region}}\"\n\
             [[logs.files.metric_filters]]\npattern = \"ERROR\"\nmetric = \"E\"\nnamespace = \"App\"\n\
             [[logs.files]]\npath = \"{}/none/*.log\"\nlog_group = \"g\"\n",
            dir.path().display(),
            dir.path().display()
        );
        let file = ConfigFile::Toml {
            path: "c.toml".into(),
            text,
        };
        let config = load(&RunArgs::default(), Some(file)).unwrap();
        assert!(
            config.xray.is_none(),
            "[logs] without [xray] runs no traces"
        );
        let out = describe(&config);
        let a = dir.path().join("a.log");
        assert!(
            out.contains(&format!(
                "{} -> group \"/app/eu-west-1\", stream \"a.log\"",
                a.display()
            )),
            "{out}"
        );
        assert!(!out.contains("b.gz"), "{out}");
        assert!(out.contains("  counting \"ERROR\" into App/E"), "{out}");
        assert!(
            out.contains("logs.files[1]") && out.contains("matches no file now"),
            "{out}"
        );
    }
}
