//! The resolved `[logs]` settings: which files to tail, where each goes, how its lines become
//! events. Built from the TOML `[logs]` table by `logs_file.rs`; read by `sources::file`
//! (and, for `flush_interval`/`concurrency`, by the logs pipeline and sink).
//!
//! Everything here is already checked: globs and regexes compile, names are legal once their
//! placeholders are filled. Regexes and globs are kept as text (so a `Config` compares and
//! prints); the file source compiles them again, which cannot fail. No I/O here.

use std::path::PathBuf;
use std::time::Duration;

pub use super::metric_filter::MetricFilterConfig;

/// `[logs]`: the log-file role. Present in the TOML file = enabled.
#[derive(Debug, Clone, PartialEq)]
pub struct LogsConfig {
    /// `logs.state_dir`: where the checkpoint file lives; default `/var/lib/cloudtail`.
    pub state_dir: PathBuf,
    /// `logs.flush_interval`: a partly full batch waits at most this long; default 5 s.
    pub flush_interval: Duration,
    /// `logs.concurrency`: `PutLogEvents` calls in flight per stream, 1..=16; default 4.
    pub concurrency: usize,
    /// `logs.metric_filter_interval`: how often metric filters publish; default 60 s.
    pub metric_filter_interval: Duration,
    /// `[[logs.files]]`, in the order written; a file matched by two entries goes to the first.
    pub files: Vec<LogFileConfig>,
}

/// One `[[logs.files]]` entry: a set of globs and what to do with their lines.
#[derive(Debug, Clone, PartialEq)]
pub struct LogFileConfig {
    /// `path` and `paths`: absolute globs (`*`, `?`, `[..]`, `**` across directories).
    pub paths: Vec<String>,
    /// `exclude_paths`: globs; one without `/` is matched against the file name, one with `/`
    /// against the whole path.
    pub exclude_paths: Vec<String>,
    /// `log_group`: the group name template.
    pub log_group: NameTemplate,
    /// `log_stream`: the stream name template; default `{file_name}`.
    pub log_stream: NameTemplate,
    /// `retention_days`: set on the group; `None` leaves the group's retention alone.
    pub retention_days: Option<i32>,
    /// `group_class`: used when the group is created; `None` lets AWS choose (STANDARD).
    pub group_class: Option<GroupClass>,
    /// `start_at`: where a file found at start-up without a checkpoint is read from.
    pub start_at: StartAt,
    /// `multiline_start`: how the first line of an event is recognised; `None`: one event per line.
    pub multiline_start: Option<MultilineStart>,
    /// `timestamp_format`: how the event time is read from its first line; `None`: read time.
    pub timestamp_format: Option<TimestampFormat>,
    /// `timezone`: the zone of timestamps whose format has no offset.
    pub timezone: Timezone,
    /// `include_lines`: regexes; when not empty, an event ships only if one matches.
    pub include_lines: Vec<String>,
    /// `exclude_lines`: regexes; an event that matches one never ships.
    pub exclude_lines: Vec<String>,
    /// `encoding`: how the file's bytes are decoded.
    pub encoding: Encoding,
    /// `metric_filters`: counted on every event read, before `include_lines`/`exclude_lines`.
    pub metric_filters: Vec<MetricFilterConfig>,
}

/// The valid `retention_days` values (the `PutRetentionPolicy` list).
pub const RETENTION_DAYS: [i32; 22] = [
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922,
    3288, 3653,
];

/// The log group class, used when cloudtail creates the group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupClass {
    /// `STANDARD`.
    Standard,
    /// `INFREQUENT_ACCESS`: cheaper ingestion, fewer features.
    InfrequentAccess,
}

impl GroupClass {
    /// The API's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            GroupClass::Standard => "STANDARD",
            GroupClass::InfrequentAccess => "INFREQUENT_ACCESS",
        }
    }
}

/// Where a file without a checkpoint, found when cloudtail starts, is read from. Files that
/// appear while cloudtail runs, and successors of checkpointed files, are always read from 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    /// From its first byte.
    Beginning,
    /// From its current end: only what is written from now on.
    End,
}

/// How the first line of a multi-line event is recognised.
#[derive(Debug, Clone, PartialEq)]
pub enum MultilineStart {
    /// A line matching this regex starts an event.
    Pattern(String),
    /// `"{timestamp_format}"`: a line that begins with a timestamp in `timestamp_format`.
    TimestampFormat,
}

/// How an event's time is written at the start of its first line.
#[derive(Debug, Clone, PartialEq)]
pub enum TimestampFormat {
    /// A chrono strftime format, e.g. `%Y-%m-%dT%H:%M:%S%.f%z`.
    Strftime(String),
    /// `epoch_s`: seconds since 1970, optionally with a fraction.
    EpochSeconds,
    /// `epoch_ms`: milliseconds since 1970.
    EpochMillis,
}

/// The zone of a timestamp written without an offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timezone {
    /// UTC.
    Utc,
    /// The host's local zone.
    Local,
    /// A fixed offset east of UTC, in seconds (`+02:00`).
    Fixed(i32),
}

/// How a file's bytes are decoded into text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// UTF-8; invalid sequences become U+FFFD and are counted.
    Utf8,
    /// UTF-16, little endian (Windows tools); lines end with `\n\0`.
    Utf16Le,
    /// ISO-8859-1: every byte is one character.
    Latin1,
}

/// A group or stream name with `{placeholders}`, parsed and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameTemplate {
    /// The template as written.
    pub text: String,
    /// Its literal pieces and placeholders, in order.
    pub parts: Vec<NamePart>,
}

/// One piece of a [`NameTemplate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NamePart {
    /// Text kept as written.
    Literal(String),
    /// A value filled in when the file is opened.
    Placeholder(Placeholder),
}

/// The values a name template may refer to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placeholder {
    /// `{hostname}`.
    Hostname,
    /// `{instance_id}`: the EC2 instance id.
    InstanceId,
    /// `{ip_address}`: the host's first non-loopback IPv4 address.
    IpAddress,
    /// `{aws_region}`.
    AwsRegion,
    /// `{task_id}`: the ECS task id.
    TaskId,
    /// `{file_name}`: the file's name without its directory.
    FileName,
    /// `{date}`: the UTC date the file was opened, `YYYY-MM-DD`.
    Date,
}

impl Placeholder {
    /// Every placeholder, for error messages.
    pub const ALL: [Placeholder; 7] = [
        Placeholder::Hostname,
        Placeholder::InstanceId,
        Placeholder::IpAddress,
        Placeholder::AwsRegion,
        Placeholder::TaskId,
        Placeholder::FileName,
        Placeholder::Date,
    ];

    /// The name between the braces.
    pub fn name(self) -> &'static str {
        match self {
            Placeholder::Hostname => "hostname",
            Placeholder::InstanceId => "instance_id",
            Placeholder::IpAddress => "ip_address",
            Placeholder::AwsRegion => "aws_region",
            Placeholder::TaskId => "task_id",
            Placeholder::FileName => "file_name",
            Placeholder::Date => "date",
        }
    }

    /// A legal value of the usual shape, to check a template's literal text.
    fn sample(self) -> &'static str {
        match self {
            Placeholder::Hostname => "ip-10-0-0-1.ec2.internal",
            Placeholder::InstanceId => "i-0123456789abcdef0",
            Placeholder::IpAddress => "10.0.0.1",
            Placeholder::AwsRegion => "us-east-1",
            Placeholder::TaskId => "0123456789abcdef0123456789abcdef",
            Placeholder::FileName => "app.log",
            Placeholder::Date => "2026-01-31",
        }
    }
}

/// Which kind of name a template makes: the two have different rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameKind {
    /// Log group: 1-512 of `[.\-_/#A-Za-z0-9]`.
    Group,
    /// Log stream: 1-512, no `:` or `*`.
    Stream,
}

/// The longest group or stream name.
pub const MAX_NAME_LEN: usize = 512;

impl NameKind {
    /// Whether `c` may appear in a name of this kind.
    pub fn allows(self, c: char) -> bool {
        match self {
            NameKind::Group => c.is_ascii_alphanumeric() || ".-_/#".contains(c),
            NameKind::Stream => c != ':' && c != '*' && !c.is_control(),
        }
    }

    /// What a legal name looks like, for error messages.
    pub fn rule(self) -> &'static str {
        match self {
            NameKind::Group => "1 to 512 of A-Z a-z 0-9 . - _ / #",
            NameKind::Stream => "1 to 512 characters, without : or *",
        }
    }
}

impl NameTemplate {
    /// Parses `text`: `{name}` is a placeholder, anything else literal. `Err` carries the
    /// problem for the error message.
    pub fn parse(text: &str, kind: NameKind) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                parts.push(NamePart::Literal(rest[..open].to_owned()));
            }
            let after = &rest[open + 1..];
            let close = after
                .find('}')
                .ok_or_else(|| "has a `{` without its `}`".to_owned())?;
            let name = &after[..close];
            let placeholder = Placeholder::ALL
                .into_iter()
                .find(|p| p.name() == name)
                .ok_or_else(|| format!("has an unknown placeholder `{{{name}}}`"))?;
            parts.push(NamePart::Placeholder(placeholder));
            rest = &after[close + 1..];
        }
        if !rest.is_empty() {
            parts.push(NamePart::Literal(rest.to_owned()));
        }
        let template = NameTemplate {
            text: text.to_owned(),
            parts,
        };
        template.check(kind)?;
        Ok(template)
    }

    /// The literal text must be legal as written, and the name with typical values too.
    fn check(&self, kind: NameKind) -> Result<(), String> {
        let sample: String = self
            .parts
            .iter()
            .map(|p| match p {
                NamePart::Literal(s) => s.as_str(),
                NamePart::Placeholder(p) => p.sample(),
            })
            .collect();
        if sample.is_empty() {
            return Err("is empty".to_owned());
        }
        if let Some(bad) = sample.chars().find(|c| !kind.allows(*c)) {
            return Err(format!("contains {bad:?}, which is not allowed"));
        }
        if sample.len() > MAX_NAME_LEN {
            return Err("is longer than 512 characters".to_owned());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_parse_into_parts() {
        let t = NameTemplate::parse("/app/{hostname}/x", NameKind::Group).unwrap();
        assert_eq!(
            t.parts,
            [
                NamePart::Literal("/app/".into()),
                NamePart::Placeholder(Placeholder::Hostname),
                NamePart::Literal("/x".into()),
            ]
        );
        assert!(NameTemplate::parse("{file_name}", NameKind::Stream).is_ok());
    }

    #[test]
    fn bad_templates_say_why() {
        let e = |t, k| NameTemplate::parse(t, k).unwrap_err();
        assert_eq!(
            e("/app/{host}", NameKind::Group),
            "has an unknown placeholder `{host}`"
        );
        assert_eq!(
            e("/app/{hostname", NameKind::Group),
            "has a `{` without its `}`"
        );
        assert_eq!(e("", NameKind::Stream), "is empty");
        assert!(e("a b", NameKind::Group).contains("' '"));
        assert!(e("a:b", NameKind::Stream).contains("':'"));
        assert!(NameTemplate::parse("a b", NameKind::Stream).is_ok());
        assert!(e(&"a".repeat(513), NameKind::Group).contains("longer"));
    }
}
