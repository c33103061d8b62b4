//! The TOML `[logs]` table and its `[[logs.files]]` entries: the schema (serde only, the
//! reference docs of every key) and the checks that turn it into a [`LogsConfig`].
//!
//! Every error names the TOML key (`logs.files[0].retention_days`), shows the value and lists
//! the valid ones. No I/O: globs and regexes are compiled to check them, never run.

use std::path::PathBuf;

use serde::Deserialize;

use super::logs::{Encoding, GroupClass, LogFileConfig, LogsConfig, MultilineStart, NameKind};
use super::logs::{NameTemplate, StartAt, TimestampFormat, Timezone, RETENTION_DAYS};
use super::metric_filter::{self, MetricFilterSection};
use super::validate::{self, quote};
use super::ConfigError;

/// `[logs]`: tail log files to CloudWatch Logs. Present = enabled.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogsSection {
    /// Directory of the checkpoint file (how far each file was delivered). Default
    /// "/var/lib/cloudtail". Must be writable and survive restarts, else files are re-sent.
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    /// How long a partly full batch waits before it is sent, 10ms to 60s. Default "5s".
    /// Shorter: logs show up sooner; longer: fewer, fuller calls.
    #[serde(default = "default_logs_flush_interval")]
    pub flush_interval: String,
    /// `PutLogEvents` calls in flight per stream, 1 to 16. Default 4. More drains a backlog
    /// faster but meets the account's throttling sooner.
    #[serde(default = "default_logs_concurrency")]
    pub concurrency: u64,
    /// How often each metric filter publishes its count, 1s to 1h. Default "60s". Shorter:
    /// counts show up sooner, in more (aggregated) datums.
    #[serde(default = "default_metric_filter_interval")]
    pub metric_filter_interval: String,
    /// The files to tail, one entry per set of globs. At least one.
    #[serde(default)]
    pub files: Vec<LogFileSection>,
}

/// `[[logs.files]]`: a set of files and where their lines go.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogFileSection {
    /// An absolute glob: `*`, `?`, `[abc]` within a name, `**` across directories.
    pub path: Option<String>,
    /// Several globs; joined with `path` when both are given.
    #[serde(default)]
    pub paths: Vec<String>,
    /// Globs of files never to tail; without a `/` they match the file name. Default none.
    #[serde(default)]
    pub exclude_paths: Vec<String>,
    /// The log group; placeholders {hostname} {instance_id} {ip_address} {aws_region}
    /// {task_id} {file_name} {date}. Required.
    pub log_group: Option<String>,
    /// The log stream, same placeholders. Default "{file_name}".
    #[serde(default = "default_log_stream")]
    pub log_stream: String,
    /// Days to keep events, set on the group: 1, 3, 5, 7, 14, 30, ... 3653. Default: unset
    /// (the group's retention is left alone; new groups keep events forever).
    pub retention_days: Option<i64>,
    /// STANDARD or INFREQUENT_ACCESS, used when cloudtail creates the group. Default: unset
    /// (STANDARD).
    pub group_class: Option<String>,
    /// "beginning" or "end": where a file without a checkpoint, found at start, is read from.
    /// Default "beginning". Files created later are always read from their start.
    #[serde(default = "default_start_at")]
    pub start_at: String,
    /// A regex matching the first line of an event, or "{timestamp_format}". Default: unset,
    /// one event per line.
    pub multiline_start: Option<String>,
    /// strftime format of the time at the start of an event, or "epoch_s", "epoch_ms".
    /// Default: unset (the time the line was read).
    pub timestamp_format: Option<String>,
    /// "UTC", "Local" or an offset like "+02:00", for formats without an offset. Default "UTC".
    #[serde(default = "default_timezone")]
    pub timezone: String,
    /// Regexes: when set, an event ships only if one matches. Default none.
    #[serde(default)]
    pub include_lines: Vec<String>,
    /// Regexes: an event that matches one is never shipped. Default none.
    #[serde(default)]
    pub exclude_lines: Vec<String>,
    /// "utf-8", "utf-16le" or "latin1". Default "utf-8".
    #[serde(default = "default_encoding")]
    pub encoding: String,
    /// Local metric filters: count the events that match a regex (before `include_lines` and
    /// `exclude_lines`) and publish the count to CloudWatch. Default none.
    #[serde(default)]
    pub metric_filters: Vec<MetricFilterSection>,
}

fn default_state_dir() -> PathBuf {
    PathBuf::from("/var/lib/cloudtail")
}
fn default_logs_flush_interval() -> String {
    "5s".to_owned()
}
fn default_logs_concurrency() -> u64 {
    4
}
fn default_metric_filter_interval() -> String {
    "60s".to_owned()
}
fn default_log_stream() -> String {
    "{file_name}".to_owned()
}
fn default_start_at() -> String {
    "beginning".to_owned()
}
fn default_timezone() -> String {
    "UTC".to_owned()
}
fn default_encoding() -> String {
    "utf-8".to_owned()
}

impl LogsSection {
    /// Checks every value and resolves the section.
    pub(crate) fn resolve(&self) -> Result<LogsConfig, ConfigError> {
        if self.state_dir.as_os_str().is_empty() {
            return Err(ConfigError::invalid(
                "logs.state_dir",
                "\"\"",
                "is empty",
                "use a writable directory that survives restarts, e.g. /var/lib/cloudtail",
            ));
        }
        let key = "logs.flush_interval";
        let flush = validate::duration(key, &self.flush_interval)?;
        let flush_interval = validate::flush_interval(key, flush)?;
        let concurrency = match self.concurrency {
            n @ 1..=16 => n as usize,
            n => {
                return Err(ConfigError::invalid(
                    "logs.concurrency",
                    n.to_string(),
                    "is out of range",
                    "use 1 to 16 calls in flight per stream, e.g. 4",
                ))
            }
        };
        let metric_filter_interval =
            metric_filter::interval("logs.metric_filter_interval", &self.metric_filter_interval)?;
        if self.files.is_empty() {
            return Err(ConfigError::Missing {
                key: "logs.files".to_owned(),
                fix: "add at least one [[logs.files]] table with a `path` and a `log_group`"
                    .to_owned(),
            });
        }
        let files = self
            .files
            .iter()
            .enumerate()
            .map(|(i, f)| f.resolve(&format!("logs.files[{i}]")))
            .collect::<Result<_, _>>()?;
        Ok(LogsConfig {
            state_dir: self.state_dir.clone(),
            flush_interval,
            concurrency,
            metric_filter_interval,
            files,
        })
    }
}

impl LogFileSection {
    fn resolve(&self, key: &str) -> Result<LogFileConfig, ConfigError> {
        let k = |name: &str| format!("{key}.{name}");
        let paths: Vec<String> = self.path.iter().chain(&self.paths).cloned().collect();
        if paths.is_empty() {
            return Err(ConfigError::Missing {
                key: k("path"),
                fix: "give the files to tail as `path = \"/var/log/app/*.log\"` or `paths = [..]`"
                    .to_owned(),
            });
        }
        for (i, p) in paths.iter().enumerate() {
            path_glob(
                &k(if self.path.is_some() && i == 0 {
                    "path"
                } else {
                    "paths"
                }),
                p,
            )?;
        }
        for p in &self.exclude_paths {
            glob(&k("exclude_paths"), p)?;
        }
        let log_group = self
            .log_group
            .as_deref()
            .ok_or_else(|| ConfigError::Missing {
                key: k("log_group"),
                fix: "name the log group, e.g. log_group = \"/app/{hostname}\"".to_owned(),
            })?;
        let timestamp_format = self
            .timestamp_format
            .as_deref()
            .map(|f| timestamp_format(&k("timestamp_format"), f))
            .transpose()?;
        let multiline_start = self
            .multiline_start
            .as_deref()
            .map(|m| multiline(&k("multiline_start"), m, timestamp_format.is_some()))
            .transpose()?;
        Ok(LogFileConfig {
            paths,
            exclude_paths: self.exclude_paths.clone(),
            log_group: template(&k("log_group"), log_group, NameKind::Group)?,
            log_stream: template(&k("log_stream"), &self.log_stream, NameKind::Stream)?,
            retention_days: self
                .retention_days
                .map(|d| retention(&k("retention_days"), d))
                .transpose()?,
            group_class: self
                .group_class
                .as_deref()
                .map(|c| group_class(&k("group_class"), c))
                .transpose()?,
            start_at: start_at(&k("start_at"), &self.start_at)?,
            multiline_start,
            timestamp_format,
            timezone: timezone(&k("timezone"), &self.timezone)?,
            include_lines: regexes(&k("include_lines"), &self.include_lines)?,
            exclude_lines: regexes(&k("exclude_lines"), &self.exclude_lines)?,
            encoding: encoding(&k("encoding"), &self.encoding)?,
            metric_filters: self
                .metric_filters
                .iter()
                .enumerate()
                .map(|(i, f)| f.resolve(&k(&format!("metric_filters[{i}]"))))
                .collect::<Result<_, _>>()?,
        })
    }
}

/// An absolute glob that compiles.
fn path_glob(key: &str, text: &str) -> Result<(), ConfigError> {
    if !text.starts_with('/') {
        return Err(ConfigError::invalid(
            key,
            quote(text),
            "is not an absolute path",
            "start it with /, e.g. \"/var/log/app/*.log\"",
        ));
    }
    glob(key, text)
}

fn glob(key: &str, text: &str) -> Result<(), ConfigError> {
    globset::GlobBuilder::new(text)
        .literal_separator(true)
        .build()
        .map(drop)
        .map_err(|e| {
            ConfigError::invalid(
                key,
                quote(text),
                &format!("is not a valid glob ({})", e.kind()),
                "use *, ?, [abc] within a name and ** across directories",
            )
        })
}

fn template(key: &str, text: &str, kind: NameKind) -> Result<NameTemplate, ConfigError> {
    NameTemplate::parse(text, kind).map_err(|problem| {
        ConfigError::invalid(
            key,
            quote(text),
            &problem,
            format!(
                "a name is {}; placeholders are {{hostname}} {{instance_id}} {{ip_address}} \
                 {{aws_region}} {{task_id}} {{file_name}} {{date}}",
                kind.rule()
            ),
        )
    })
}

fn retention(key: &str, days: i64) -> Result<i32, ConfigError> {
    match i32::try_from(days) {
        Ok(d) if RETENTION_DAYS.contains(&d) => Ok(d),
        _ => {
            let valid: Vec<String> = RETENTION_DAYS.iter().map(|d| d.to_string()).collect();
            Err(ConfigError::invalid(
                key,
                days.to_string(),
                "is not a retention CloudWatch Logs offers",
                format!("use one of {}", valid.join(", ")),
            ))
        }
    }
}

fn group_class(key: &str, text: &str) -> Result<GroupClass, ConfigError> {
    match text {
        "STANDARD" => Ok(GroupClass::Standard),
        "INFREQUENT_ACCESS" => Ok(GroupClass::InfrequentAccess),
        _ => Err(ConfigError::invalid(
            key,
            quote(text),
            "is not a log group class",
            "use STANDARD or INFREQUENT_ACCESS",
        )),
    }
}

fn start_at(key: &str, text: &str) -> Result<StartAt, ConfigError> {
    match text {
        "beginning" => Ok(StartAt::Beginning),
        "end" => Ok(StartAt::End),
        _ => Err(ConfigError::invalid(
            key,
            quote(text),
            "is not a start position",
            "use beginning or end",
        )),
    }
}

fn encoding(key: &str, text: &str) -> Result<Encoding, ConfigError> {
    match text.to_ascii_lowercase().as_str() {
        "utf-8" | "utf8" => Ok(Encoding::Utf8),
        "utf-16le" | "utf16le" => Ok(Encoding::Utf16Le),
        "latin1" | "iso-8859-1" => Ok(Encoding::Latin1),
        _ => Err(ConfigError::invalid(
            key,
            quote(text),
            "is not a supported encoding",
            "use utf-8, utf-16le or latin1",
        )),
    }
}

fn timezone(key: &str, text: &str) -> Result<Timezone, ConfigError> {
    if text.eq_ignore_ascii_case("utc") || text == "Z" {
        return Ok(Timezone::Utc);
    }
    if text.eq_ignore_ascii_case("local") {
        return Ok(Timezone::Local);
    }
    parse_offset(text).map(Timezone::Fixed).ok_or_else(|| {
        ConfigError::invalid(
            key,
            quote(text),
            "is not a time zone",
            "use UTC, Local or an offset such as +02:00 or -0530",
        )
    })
}

/// `+HH:MM`, `+HHMM` or `+HH` (or `-`) as seconds east of UTC.
fn parse_offset(text: &str) -> Option<i32> {
    let (sign, rest) = match text.as_bytes().first()? {
        b'+' => (1, &text[1..]),
        b'-' => (-1, &text[1..]),
        _ => return None,
    };
    let digits: String = rest.chars().filter(|c| *c != ':').collect();
    if !digits.bytes().all(|b| b.is_ascii_digit()) || !matches!(digits.len(), 2 | 4) {
        return None;
    }
    let hours: i32 = digits[..2].parse().ok()?;
    let minutes: i32 = digits
        .get(2..)
        .filter(|m| !m.is_empty())
        .map_or(Ok(0), str::parse)
        .ok()?;
    (hours <= 14 && minutes < 60).then_some(sign * (hours * 3600 + minutes * 60))
}

fn timestamp_format(key: &str, text: &str) -> Result<TimestampFormat, ConfigError> {
    use chrono::format::{Item, StrftimeItems};
    match text {
        "epoch_s" => return Ok(TimestampFormat::EpochSeconds),
        "epoch_ms" => return Ok(TimestampFormat::EpochMillis),
        _ => {}
    }
    let items: Vec<Item<'_>> = StrftimeItems::new(text).collect();
    let has_field = items
        .iter()
        .any(|i| matches!(i, Item::Numeric(..) | Item::Fixed(..)));
    if items.iter().any(|i| matches!(i, Item::Error)) || !has_field {
        return Err(ConfigError::invalid(
            key,
            quote(text),
            "is not a strftime format",
            "use chrono strftime fields, e.g. \"%Y-%m-%dT%H:%M:%S%.f%z\", or epoch_s, epoch_ms",
        ));
    }
    Ok(TimestampFormat::Strftime(text.to_owned()))
}

fn multiline(key: &str, text: &str, has_format: bool) -> Result<MultilineStart, ConfigError> {
    if text == "{timestamp_format}" {
        if !has_format {
            return Err(ConfigError::invalid(
                key,
                quote(text),
                "needs a timestamp_format",
                "set timestamp_format in the same [[logs.files]] table, or give a regex",
            ));
        }
        return Ok(MultilineStart::TimestampFormat);
    }
    regex(key, text)?;
    Ok(MultilineStart::Pattern(text.to_owned()))
}

fn regexes(key: &str, list: &[String]) -> Result<Vec<String>, ConfigError> {
    for text in list {
        regex(key, text)?;
    }
    Ok(list.to_vec())
}

fn regex(key: &str, text: &str) -> Result<(), ConfigError> {
    regex::Regex::new(text).map(drop).map_err(|e| {
        let detail = e.to_string();
        let last = detail.lines().last().unwrap_or("").trim().to_owned();
        ConfigError::invalid(
            key,
            quote(text),
            &format!("is not a valid regex ({last})"),
            "use Rust regex syntax (https://docs.rs/regex), e.g. '^\\d{4}-\\d{2}-\\d{2}'",
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(file: &str) -> Result<LogsConfig, ConfigError> {
        let text = format!("[logs]\n[[logs.files]]\n{file}");
        let raw: super::super::file::RawConfig = toml::from_str(&text).expect("schema");
        raw.logs.expect("logs").resolve()
    }

    fn err(file: &str) -> String {
        section(file).unwrap_err().to_string()
    }

    #[test]
    fn a_minimal_entry_gets_the_defaults() {
        let cfg = section("path = \"/var/log/a.log\"\nlog_group = \"g\"\n").unwrap();
        assert_eq!(cfg.state_dir, PathBuf::from("/var/lib/cloudtail"));
        assert_eq!(cfg.flush_interval, std::time::Duration::from_secs(5));
        assert_eq!(cfg.concurrency, 4);
        let f = &cfg.files[0];
        assert_eq!(f.paths, ["/var/log/a.log"]);
        assert_eq!(f.log_stream.text, "{file_name}");
        assert_eq!(f.start_at, StartAt::Beginning);
        assert_eq!(f.timezone, Timezone::Utc);
        assert_eq!(f.encoding, Encoding::Utf8);
        assert_eq!(f.retention_days, None);
    }

    #[test]
    fn errors_name_the_key_and_list_the_valid_values() {
        let base = "path = \"/a\"\nlog_group = \"g\"\n";
        let e = err(&format!("{base}retention_days = 8\n"));
        assert!(
            e.starts_with("config: `logs.files[0].retention_days` = 8 is not a retention"),
            "{e}"
        );
        assert!(e.contains("1, 3, 5, 7, 14, 30"), "{e}");
        let e = err(&format!("{base}group_class = \"COLD\"\n"));
        assert!(e.contains("use STANDARD or INFREQUENT_ACCESS"), "{e}");
        assert!(err(&format!("{base}start_at = \"middle\"\n")).contains("beginning or end"));
        assert!(err(&format!("{base}encoding = \"ebcdic\"\n")).contains("utf-16le"));
        assert!(err(&format!("{base}timezone = \"Mars\"\n")).contains("`logs.files[0].timezone`"));
        assert!(err(&format!("{base}include_lines = [\"(\"]\n")).contains("not a valid regex"));
        assert!(err(&format!(
            "{base}multiline_start = \"{{timestamp_format}}\"\n"
        ))
        .contains("needs a timestamp_format"));
        assert!(err(&format!("{base}timestamp_format = \"%Q\"\n")).contains("strftime"));
        assert!(err(&format!("{base}log_stream = \"a:{{date}}\"\n")).contains("':'"));
        assert!(err("log_group = \"g\"\n").contains("`logs.files[0].path` is missing"));
        assert!(err("path = \"/a\"\n").contains("`logs.files[0].log_group` is missing"));
        assert!(err("path = \"a/*.log\"\nlog_group = \"g\"\n").contains("not an absolute path"));
        assert!(err("path = \"/a/[.log\"\nlog_group = \"g\"\n").contains("not a valid glob"));
        assert!(err("path = \"/a\"\nlog_group = \"/app/{host}\"\n").contains("unknown placeholder"));
    }

    #[test]
    fn section_level_checks() {
        let raw: super::super::file::RawConfig = toml::from_str(
            "[logs]\nconcurrency = 17\n[[logs.files]]\npath = \"/a\"\nlog_group = \"g\"\n",
        )
        .unwrap();
        let e = raw.logs.unwrap().resolve().unwrap_err().to_string();
        assert!(e.contains("`logs.concurrency` = 17 is out of range"), "{e}");
        let raw: super::super::file::RawConfig = toml::from_str("[logs]\n").unwrap();
        let e = raw.logs.unwrap().resolve().unwrap_err().to_string();
        assert!(e.contains("`logs.files` is missing"), "{e}");
    }

    #[test]
    fn offsets_and_formats() {
        assert_eq!(parse_offset("+02:00"), Some(7200));
        assert_eq!(parse_offset("-0530"), Some(-(5 * 3600 + 30 * 60)));
        assert_eq!(parse_offset("+5"), None);
        let f = section("path = \"/a\"\nlog_group = \"g\"\ntimestamp_format = \"epoch_ms\"\nmultiline_start = \"{timestamp_format}\"\n").unwrap();
        assert_eq!(
            f.files[0].timestamp_format,
            Some(TimestampFormat::EpochMillis)
        );
        assert_eq!(
            f.files[0].multiline_start,
            Some(MultilineStart::TimestampFormat)
        );
    }
}
