//! The flag table and the lexer that reads arguments against it, as Go's `flag` package does.
//!
//! [`FLAGS`] is the single source of every flag's names, value form and `--help` line; the
//! [`Lexer`] turns arguments into [`Token`]s: `-x`, `--x`, `-name`, `--name`, a value as the next
//! argument or after `=`, booleans only after `=`, `--` ending the flags. It knows nothing of
//! what the flags mean: `cli.rs` stores the values.

use super::CliError;

/// Which field a flag sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Id {
    ResourceArn,
    LocalMode,
    BufferMemory,
    Region,
    Bind,
    BindTcp,
    RoleArn,
    Config,
    LogFile,
    LogLevel,
    ProxyAddress,
    Endpoint,
    TelemetryAddress,
    ShutdownTimeout,
    Version,
    Help,
}

/// One row of the flag table.
#[derive(Debug)]
pub(super) struct Flag {
    /// The one-letter name of the daemon's flags; cloudtail's own have none.
    pub(super) short: Option<&'static str>,
    /// The long name.
    pub(super) long: &'static str,
    /// The value's placeholder in `--help`; `None` for a boolean.
    pub(super) value: Option<&'static str>,
    /// The value's form, for errors.
    pub(super) expected: &'static str,
    /// The `--help` line.
    pub(super) help: &'static str,
    /// What it sets.
    pub(super) id: Id,
}

impl Flag {
    /// `-b/--bind`, or `--endpoint` for a flag with no short name.
    pub(super) fn name(&self) -> String {
        match self.short {
            Some(short) => format!("-{short}/--{}", self.long),
            None => format!("--{}", self.long),
        }
    }

    /// The error for a value of this flag that does not parse.
    pub(super) fn bad_value(&self, value: &str) -> CliError {
        CliError::BadValue {
            flag: self.name(),
            value: value.to_owned(),
            expected: self.expected.to_owned(),
        }
    }
}

/// The form of an address value.
const ADDR: &str = "IP:PORT, e.g. 127.0.0.1:2000";
/// The form of a boolean value, as Go's `strconv.ParseBool` reads it.
const BOOL: &str = "true or false (or 1, 0, t, f)";

/// `--telemetry-address`, shared by a run and `status`.
const TELEMETRY_ADDRESS: Flag = Flag {
    short: None,
    long: "telemetry-address",
    value: Some("IP:PORT|off"),
    expected: "IP:PORT, e.g. 127.0.0.1:2020, or off",
    help: "Serve /metrics and /healthz here (default 127.0.0.1:2020).",
    id: Id::TelemetryAddress,
};
/// `-h/--help`, accepted everywhere.
const HELP: Flag = Flag {
    short: Some("h"),
    long: "help",
    value: None,
    expected: BOOL,
    help: "Show this help and exit.",
    id: Id::Help,
};

/// Every flag of a run, in `--help` order: the daemon's, then cloudtail's own.
pub(super) const FLAGS: &[Flag] = &[
    Flag {
        short: Some("a"),
        long: "resource-arn",
        value: Some("ARN"),
        expected: "an ARN",
        help: "ARN of the AWS resource running cloudtail (for telemetry).",
        id: Id::ResourceArn,
    },
    Flag {
        short: Some("o"),
        long: "local-mode",
        value: None,
        expected: BOOL,
        help: "Don't check for EC2 instance metadata.",
        id: Id::LocalMode,
    },
    Flag {
        short: Some("m"),
        long: "buffer-memory",
        value: Some("MB"),
        expected: "a whole number of MB, at least 3, e.g. 64",
        help: "Memory in MB for buffers (min 3; default 1% of the memory limit).",
        id: Id::BufferMemory,
    },
    Flag {
        short: Some("n"),
        long: "region",
        value: Some("REGION"),
        expected: "a region, e.g. us-east-1",
        help: "Send data to AWS in this region, e.g. us-east-1.",
        id: Id::Region,
    },
    Flag {
        short: Some("b"),
        long: "bind",
        value: Some("IP:PORT"),
        expected: ADDR,
        help: "UDP address for X-Ray segments (default 127.0.0.1:2000).",
        id: Id::Bind,
    },
    Flag {
        short: Some("t"),
        long: "bind-tcp",
        value: Some("IP:PORT"),
        expected: ADDR,
        help: "TCP address of the sampling proxy (default 127.0.0.1:2000).",
        id: Id::BindTcp,
    },
    Flag {
        short: Some("r"),
        long: "role-arn",
        value: Some("ARN"),
        expected: "a role ARN, e.g. arn:aws:iam::123456789012:role/xray",
        help: "Assume this IAM role to upload to a different account.",
        id: Id::RoleArn,
    },
    Flag {
        short: Some("c"),
        long: "config",
        value: Some("FILE"),
        expected: "a file path",
        help: "Load a config file: cloudtail TOML or X-Ray daemon YAML (.yaml/.yml).",
        id: Id::Config,
    },
    Flag {
        short: Some("f"),
        long: "log-file",
        value: Some("FILE"),
        expected: "a file path",
        help: "Log to this file instead of stdout.",
        id: Id::LogFile,
    },
    Flag {
        short: Some("l"),
        long: "log-level",
        value: Some("LEVEL"),
        expected: "one of dev, debug, info, warn, error, prod, quiet",
        help: "dev, debug, info, warn, error, prod (= info, the default) or quiet.",
        id: Id::LogLevel,
    },
    Flag {
        short: Some("p"),
        long: "proxy-address",
        value: Some("URL"),
        expected: "a proxy URL, e.g. http://proxy:3128",
        help: "Send AWS calls through this HTTP(S) proxy.",
        id: Id::ProxyAddress,
    },
    Flag {
        short: Some("v"),
        long: "version",
        value: None,
        expected: BOOL,
        help: "Show the version and exit.",
        id: Id::Version,
    },
    HELP,
    Flag {
        short: None,
        long: "endpoint",
        value: Some("URL"),
        expected: "a URL starting with http:// or https://",
        help: "Send to this AWS endpoint, e.g. http://localhost:4566.",
        id: Id::Endpoint,
    },
    TELEMETRY_ADDRESS,
    Flag {
        short: None,
        long: "shutdown-timeout",
        value: Some("DURATION"),
        expected: "a duration, e.g. 10s or 1m30s",
        help: "On SIGTERM, wait this long for queued data (default 10s).",
        id: Id::ShutdownTimeout,
    },
];

/// The flags of `cloudtail status`.
pub(super) const STATUS_FLAGS: &[Flag] = &[TELEMETRY_ADDRESS, HELP];
/// The flags of `cloudtail check-config`.
pub(super) const CHECK_FLAGS: &[Flag] = &[HELP];

/// One parsed argument.
#[derive(Debug)]
pub(super) enum Token {
    /// A boolean flag and its value (`true` unless `=false` was written).
    Bool(&'static Flag, bool),
    /// A flag and its value, from `=value` or the next argument.
    Value(&'static Flag, String),
    /// An argument that is not a flag, or anything after `--`.
    Positional(String),
}

/// Splits arguments into [`Token`]s against one flag table, as Go's `flag.Parse` does.
pub(super) struct Lexer<I> {
    args: I,
    table: &'static [Flag],
    /// After `--`, everything is positional.
    flags_done: bool,
}

impl<I: Iterator<Item = String>> Lexer<I> {
    pub(super) fn new(args: I, table: &'static [Flag]) -> Self {
        Self {
            args,
            table,
            flags_done: false,
        }
    }

    /// The token for `arg`, which starts with `-` and is not `-` or `--`.
    fn flag(&mut self, arg: String) -> Result<Token, CliError> {
        let body = arg.strip_prefix("--").unwrap_or(&arg[1..]);
        if body.is_empty() || body.starts_with(['-', '=']) {
            return Err(CliError::BadSyntax { arg });
        }
        let (name, inline) = match body.split_once('=') {
            Some((name, value)) => (name, Some(value.to_owned())),
            None => (body, None),
        };
        let Some(flag) = lookup(self.table, name) else {
            let typed = arg.split_once('=').map_or(arg.as_str(), |(f, _)| f);
            return Err(CliError::UnknownFlag {
                flag: typed.to_owned(),
            });
        };
        if flag.value.is_none() {
            return match inline.as_deref() {
                None => Ok(Token::Bool(flag, true)),
                Some(text) => parse_bool(text)
                    .map(|on| Token::Bool(flag, on))
                    .ok_or_else(|| flag.bad_value(text)),
            };
        }
        match inline.or_else(|| self.args.next()) {
            Some(value) => Ok(Token::Value(flag, value)),
            None => Err(CliError::MissingValue {
                flag: flag.name(),
                expected: flag.expected.to_owned(),
            }),
        }
    }
}

impl<I: Iterator<Item = String>> Iterator for Lexer<I> {
    type Item = Result<Token, CliError>;

    fn next(&mut self) -> Option<Self::Item> {
        let arg = self.args.next()?;
        if self.flags_done || arg == "-" || !arg.starts_with('-') {
            return Some(Ok(Token::Positional(arg)));
        }
        if arg == "--" {
            self.flags_done = true;
            return self.next();
        }
        Some(self.flag(arg))
    }
}

/// The flag called `name` (short or long) in `table`.
fn lookup(table: &'static [Flag], name: &str) -> Option<&'static Flag> {
    table
        .iter()
        .find(|f| f.long == name || f.short == Some(name))
}

/// Go's `strconv.ParseBool`.
fn parse_bool(text: &str) -> Option<bool> {
    match text {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_two_flags_share_a_name() {
        let mut names: Vec<&str> = FLAGS
            .iter()
            .flat_map(|f| f.short.into_iter().chain([f.long]))
            .collect();
        let count = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), count);
    }

    #[test]
    fn booleans_read_like_go() {
        for t in ["1", "t", "T", "true", "TRUE", "True"] {
            assert_eq!(parse_bool(t), Some(true));
        }
        for f in ["0", "f", "F", "false", "FALSE", "False"] {
            assert_eq!(parse_bool(f), Some(false));
        }
        assert_eq!(parse_bool("yes"), None);
        assert_eq!(parse_bool(""), None);
    }
}
