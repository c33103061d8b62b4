//! The command line: the X-Ray daemon's flags plus cloudtail's own, parsed the way Go's `flag`
//! package parses the daemon's, so that every script that starts `xray` can start `cloudtail`.
//!
//! One table (`flags.rs`) drives both parsing and `--help`. Each flag answers to `-x`, `--x`,
//! `-name` and `--name`; a value follows as the next argument or after `=`; a boolean never takes
//! the next argument (`-o`, `-o=true`, `--local-mode=false`); `--` ends the flags. Subcommands
//! (`check-config FILE`, `status`) must come first. This file only checks the syntax of values
//! (a number, an IP:PORT, a duration); ranges and shapes are checked by `config`, which also
//! merges these flags over the config file. It never reads the environment or the disk.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::config::{LogLevel, DEFAULT_TELEMETRY_ADDRESS};

mod flags;

use flags::{Flag, Id, Lexer, Token, CHECK_FLAGS, FLAGS, STATUS_FLAGS};

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq)]
#[allow(
    clippy::large_enum_variant,
    reason = "built once at startup and matched at once; boxing would only add noise"
)]
pub enum Command {
    /// Run the agent with these flags.
    Run(RunArgs),
    /// `-v/--version`: print the version and exit.
    Version,
    /// `-h/--help`: print [`help_text`] and exit.
    Help,
    /// `cloudtail check-config FILE`: load and check a config file (TOML or daemon YAML), exit.
    CheckConfig(PathBuf),
    /// `cloudtail status [--telemetry-address IP:PORT]`: ask a running agent for its health.
    Status {
        /// Where the agent's telemetry server listens; default 127.0.0.1:2020.
        telemetry_address: SocketAddr,
    },
}

/// The flags of a run, each `None` when not given (or given an empty string, which the daemon
/// also treats as unset). They win over the config file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunArgs {
    /// `-a/--resource-arn ARN`.
    pub resource_arn: Option<String>,
    /// `-o/--local-mode[=BOOL]`.
    pub local_mode: Option<bool>,
    /// `-m/--buffer-memory MB` (checked ≥ 3 by `config`).
    pub buffer_memory_mb: Option<u64>,
    /// `-n/--region REGION`.
    pub region: Option<String>,
    /// `-b/--bind IP:PORT`: the UDP address; giving it turns traces on.
    pub bind: Option<SocketAddr>,
    /// `-t/--bind-tcp IP:PORT`: the TCP proxy address; giving it turns traces on.
    pub bind_tcp: Option<SocketAddr>,
    /// `-r/--role-arn ARN`.
    pub role_arn: Option<String>,
    /// `-c/--config FILE`: a cloudtail TOML or a daemon YAML, see `config::read_config_file`.
    pub config: Option<PathBuf>,
    /// `-f/--log-file FILE`.
    pub log_file: Option<PathBuf>,
    /// `-l/--log-level LEVEL`.
    pub log_level: Option<LogLevel>,
    /// `-p/--proxy-address URL`.
    pub proxy_address: Option<String>,
    /// `--endpoint URL`.
    pub endpoint: Option<String>,
    /// `--telemetry-address IP:PORT|off`; `Some(None)` is "off".
    pub telemetry_address: Option<Option<SocketAddr>>,
    /// `--shutdown-timeout DURATION`.
    pub shutdown_timeout: Option<Duration>,
}

/// Why the command line was refused. Each message names the argument and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CliError {
    /// A flag that does not exist.
    #[error("unknown flag `{flag}`: run `cloudtail --help` to list the flags")]
    UnknownFlag {
        /// The flag as typed, without its `=value`.
        flag: String,
    },
    /// A flag that takes a value came last.
    #[error("flag `{flag}` needs a value: {expected}")]
    MissingValue {
        /// The flag, e.g. `-b/--bind`.
        flag: String,
        /// The form of the value, e.g. "IP:PORT, e.g. 127.0.0.1:2000".
        expected: String,
    },
    /// A value that does not parse.
    #[error("flag `{flag}` = {value:?} is not valid: expected {expected}")]
    BadValue {
        /// The flag, e.g. `-m/--buffer-memory`.
        flag: String,
        /// The value as typed.
        value: String,
        /// The form of the value.
        expected: String,
    },
    /// An argument that starts with `-` but is not a flag (`---x`, `-=x`).
    #[error("bad flag syntax `{arg}`: use -name, --name, -name=value or --name=value")]
    BadSyntax {
        /// The argument.
        arg: String,
    },
    /// An argument that is not a flag where none is expected.
    #[error(
        "unexpected argument `{arg}`: cloudtail takes flags only, and the subcommands \
         `check-config FILE` and `status` must come first; run `cloudtail --help`"
    )]
    UnexpectedArgument {
        /// The argument.
        arg: String,
    },
    /// `check-config` without a file.
    #[error("`check-config` needs a file: cloudtail check-config FILE")]
    MissingConfigPath,
}

/// Parses the arguments (without the program name) into a [`Command`].
pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Command, CliError> {
    let mut args = args.into_iter().peekable();
    match args.peek().map(String::as_str) {
        Some("check-config") => {
            args.next();
            parse_check_config(args)
        }
        Some("status") => {
            args.next();
            parse_status(args)
        }
        _ => parse_run(args),
    }
}

/// The flags of a run. `-h` wins at once, as in Go; `-v` wins once every flag parsed.
fn parse_run(args: impl Iterator<Item = String>) -> Result<Command, CliError> {
    let mut run = RunArgs::default();
    let mut version = false;
    for token in Lexer::new(args, FLAGS) {
        match token? {
            Token::Positional(arg) => return Err(CliError::UnexpectedArgument { arg }),
            Token::Bool(flag, on) => match flag.id {
                Id::Help if on => return Ok(Command::Help),
                Id::Version => version = on,
                Id::LocalMode => run.local_mode = Some(on),
                _ => {}
            },
            Token::Value(flag, text) => set(&mut run, flag, text)?,
        }
    }
    Ok(if version {
        Command::Version
    } else {
        Command::Run(run)
    })
}

/// Stores one flag's value. Untyped values (ARNs, paths...) given as "" are unset.
fn set(run: &mut RunArgs, flag: &Flag, text: String) -> Result<(), CliError> {
    let bad = || flag.bad_value(&text);
    let string = || Some(text.clone()).filter(|t| !t.is_empty());
    match flag.id {
        Id::ResourceArn => run.resource_arn = string(),
        Id::Region => run.region = string(),
        Id::RoleArn => run.role_arn = string(),
        Id::ProxyAddress => run.proxy_address = string(),
        Id::Endpoint => run.endpoint = string(),
        Id::Config => run.config = string().map(PathBuf::from),
        Id::LogFile => run.log_file = string().map(PathBuf::from),
        Id::BufferMemory => run.buffer_memory_mb = Some(text.parse().map_err(|_| bad())?),
        Id::Bind => run.bind = Some(text.parse().map_err(|_| bad())?),
        Id::BindTcp => run.bind_tcp = Some(text.parse().map_err(|_| bad())?),
        Id::LogLevel => run.log_level = Some(LogLevel::parse(&text).ok_or_else(bad)?),
        Id::TelemetryAddress => run.telemetry_address = Some(telemetry_address(flag, &text)?),
        Id::ShutdownTimeout => {
            run.shutdown_timeout = Some(humantime::parse_duration(&text).map_err(|_| bad())?);
        }
        Id::LocalMode | Id::Version | Id::Help => {}
    }
    Ok(())
}

/// `IP:PORT`, or `off` (`None`).
fn telemetry_address(flag: &Flag, text: &str) -> Result<Option<SocketAddr>, CliError> {
    if text.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    text.parse().map(Some).map_err(|_| flag.bad_value(text))
}

/// `status [--telemetry-address IP:PORT]`.
fn parse_status(args: impl Iterator<Item = String>) -> Result<Command, CliError> {
    let mut telemetry_address = DEFAULT_TELEMETRY_ADDRESS;
    for token in Lexer::new(args, STATUS_FLAGS) {
        match token? {
            Token::Positional(arg) => return Err(CliError::UnexpectedArgument { arg }),
            Token::Bool(_, true) => return Ok(Command::Help),
            Token::Bool(_, false) => {}
            Token::Value(flag, text) => {
                telemetry_address = text.parse().map_err(|_| CliError::BadValue {
                    flag: flag.name(),
                    value: text.clone(),
                    expected: "the IP:PORT of a running agent, e.g. 127.0.0.1:2020".to_owned(),
                })?;
            }
        }
    }
    Ok(Command::Status { telemetry_address })
}

/// `check-config FILE`.
fn parse_check_config(args: impl Iterator<Item = String>) -> Result<Command, CliError> {
    let mut file = None;
    for token in Lexer::new(args, CHECK_FLAGS) {
        match token? {
            Token::Positional(arg) if file.is_none() => file = Some(PathBuf::from(arg)),
            Token::Positional(arg) => return Err(CliError::UnexpectedArgument { arg }),
            Token::Bool(_, true) => return Ok(Command::Help),
            Token::Bool(_, false) => {}
            Token::Value(flag, _) => return Err(CliError::UnknownFlag { flag: flag.name() }),
        }
    }
    file.map(Command::CheckConfig)
        .ok_or(CliError::MissingConfigPath)
}

/// The `--help` text: usage, then one line per flag.
pub fn help_text() -> String {
    let rows: Vec<(String, &str)> = FLAGS.iter().map(|f| (flag_column(f), f.help)).collect();
    let width = rows.iter().map(|(left, _)| left.len()).max().unwrap_or(0) + 2;
    let mut out = String::from(
        "cloudtail: a drop-in replacement for the AWS X-Ray daemon.\n\n\
         Usage:\n  \
         cloudtail [FLAGS]                    run the agent\n  \
         cloudtail check-config FILE          check a config file (TOML or daemon YAML), exit\n  \
         cloudtail status [--telemetry-address IP:PORT]\n                                       \
         ask a running agent for its health\n\n\
         Flags: each works as -x, --x, -name or --name; a value follows as the next argument\n\
         or after `=`; a boolean is -o, -o=true or -o=false. Flags win over the config file.\n\n",
    );
    for (left, help) in rows {
        out.push_str(&format!("{left:<width$}{help}\n"));
    }
    out
}

/// `  -b, --bind IP:PORT` or `      --endpoint URL`.
fn flag_column(flag: &Flag) -> String {
    let short = flag.short.map_or("    ".to_owned(), |s| format!("-{s}, "));
    let value = flag.value.map_or(String::new(), |v| format!(" {v}"));
    format!("  {short}--{}{value}", flag.long)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<Command, CliError> {
        parse(args.iter().map(|a| a.to_string()))
    }

    fn run_args(args: &[&str]) -> RunArgs {
        match run(args) {
            Ok(Command::Run(a)) => a,
            other => panic!("{args:?} gave {other:?}"),
        }
    }

    fn err(args: &[&str]) -> String {
        run(args).expect_err("should fail").to_string()
    }

    #[test]
    fn every_spelling_of_a_value_flag() {
        let want: SocketAddr = "0.0.0.0:3000".parse().unwrap();
        for args in [
            &["-b", "0.0.0.0:3000"][..],
            &["--b", "0.0.0.0:3000"],
            &["-bind", "0.0.0.0:3000"],
            &["--bind", "0.0.0.0:3000"],
            &["-b=0.0.0.0:3000"],
            &["--b=0.0.0.0:3000"],
            &["-bind=0.0.0.0:3000"],
            &["--bind=0.0.0.0:3000"],
        ] {
            assert_eq!(run_args(args).bind, Some(want), "{args:?}");
        }
    }

    #[test]
    fn every_daemon_flag() {
        let a = run_args(&[
            "-a",
            "arn:aws:ec2:us-east-1:1:instance/i-1",
            "-o",
            "-m",
            "16",
            "-n",
            "eu-west-1",
            "-b",
            "127.0.0.1:2001",
            "-t",
            "127.0.0.1:2002",
            "-r",
            "arn:aws:iam::1:role/x",
            "-c",
            "cfg.yaml",
            "-f",
            "/var/log/x.log",
            "-l",
            "warn",
            "-p",
            "http://proxy:3128",
        ]);
        assert_eq!(
            a.resource_arn.as_deref(),
            Some("arn:aws:ec2:us-east-1:1:instance/i-1")
        );
        assert_eq!(a.local_mode, Some(true));
        assert_eq!(a.buffer_memory_mb, Some(16));
        assert_eq!(a.region.as_deref(), Some("eu-west-1"));
        assert_eq!(a.bind, Some("127.0.0.1:2001".parse().unwrap()));
        assert_eq!(a.bind_tcp, Some("127.0.0.1:2002".parse().unwrap()));
        assert_eq!(a.role_arn.as_deref(), Some("arn:aws:iam::1:role/x"));
        assert_eq!(a.config, Some(PathBuf::from("cfg.yaml")));
        assert_eq!(a.log_file, Some(PathBuf::from("/var/log/x.log")));
        assert_eq!(a.log_level, Some(LogLevel::Warn));
        assert_eq!(a.proxy_address.as_deref(), Some("http://proxy:3128"));
    }

    #[test]
    fn cloudtail_flags_take_every_spelling() {
        let a = run_args(&[
            "-endpoint=http://localhost:4566",
            "--telemetry-address",
            "off",
            "-shutdown-timeout",
            "1m 30s",
            "--config=cloudtail.toml",
        ]);
        assert_eq!(a.endpoint.as_deref(), Some("http://localhost:4566"));
        assert_eq!(a.telemetry_address, Some(None));
        assert_eq!(a.shutdown_timeout, Some(Duration::from_secs(90)));
        assert_eq!(a.config, Some(PathBuf::from("cloudtail.toml")));
        let a = run_args(&["--telemetry-address=0.0.0.0:9000"]);
        assert_eq!(
            a.telemetry_address,
            Some(Some("0.0.0.0:9000".parse().unwrap()))
        );
    }

    #[test]
    fn booleans_never_take_the_next_argument() {
        assert_eq!(run_args(&["-o"]).local_mode, Some(true));
        assert_eq!(run_args(&["--o=true"]).local_mode, Some(true));
        assert_eq!(run_args(&["-local-mode=1"]).local_mode, Some(true));
        assert_eq!(run_args(&["--local-mode=false"]).local_mode, Some(false));
        assert_eq!(run_args(&["-o=F"]).local_mode, Some(false));
        assert_eq!(run_args(&[]).local_mode, None);
        // `-o false`: `false` is a positional argument, as in Go.
        assert!(err(&["-o", "false"]).contains("unexpected argument `false`"));
        assert!(err(&["-o=maybe"]).contains("`-o/--local-mode` = \"maybe\""));
    }

    #[test]
    fn help_and_version() {
        for h in ["-h", "--h", "-help", "--help"] {
            assert_eq!(run(&["-o", h, "-x"]), Ok(Command::Help), "{h}");
        }
        for v in ["-v", "--v", "-version", "--version=true"] {
            assert_eq!(run(&[v]), Ok(Command::Version), "{v}");
        }
        assert!(matches!(run(&["-v=false"]), Ok(Command::Run(_))));
        let text = help_text();
        for f in FLAGS {
            assert!(text.contains(&format!("--{}", f.long)), "{}", f.long);
        }
        assert!(text.contains("  -b, --bind IP:PORT"));
        assert!(text.contains("      --endpoint URL"));
    }

    #[test]
    fn a_value_flag_takes_the_next_argument_whatever_it_is() {
        assert_eq!(run_args(&["-c", "-o"]).config, Some(PathBuf::from("-o")));
        assert_eq!(run_args(&["-n", "us-east-1", "-n", ""]).region, None);
    }

    #[test]
    fn errors_name_the_flag() {
        assert_eq!(
            err(&["-x"]),
            "unknown flag `-x`: run `cloudtail --help` to list the flags"
        );
        assert!(err(&["--bindd=1"]).starts_with("unknown flag `--bindd`"));
        assert_eq!(
            err(&["-b"]),
            "flag `-b/--bind` needs a value: IP:PORT, e.g. 127.0.0.1:2000"
        );
        assert!(err(&["--endpoint"]).starts_with("flag `--endpoint` needs a value"));
        assert_eq!(
            err(&["-m", "abc"]),
            "flag `-m/--buffer-memory` = \"abc\" is not valid: \
             expected a whole number of MB, at least 3, e.g. 64"
        );
        assert!(err(&["-b", "nonsense"]).starts_with("flag `-b/--bind` = \"nonsense\""));
        assert!(err(&["-t=localhost"]).starts_with("flag `-t/--bind-tcp` = \"localhost\""));
        assert!(err(&["-l", "loud"]).contains("one of dev, debug, info, warn, error, prod"));
        assert!(err(&["--shutdown-timeout", "10"]).contains("a duration"));
        assert!(err(&["--telemetry-address", "on"]).contains("or off"));
        assert!(err(&["---b"]).starts_with("bad flag syntax `---b`"));
        assert!(err(&["-=x"]).starts_with("bad flag syntax"));
    }

    #[test]
    fn positional_junk_is_refused() {
        assert!(err(&["run"]).starts_with("unexpected argument `run`"));
        assert!(err(&["-o", "-", "x"]).starts_with("unexpected argument `-`"));
        assert!(err(&["--", "-o"]).starts_with("unexpected argument `-o`"));
        assert!(matches!(run(&["-o", "--"]), Ok(Command::Run(_))));
        assert!(err(&["-o", "status"]).starts_with("unexpected argument `status`"));
    }

    #[test]
    fn check_config() {
        assert_eq!(
            run(&["check-config", "/etc/cloudtail.toml"]),
            Ok(Command::CheckConfig(PathBuf::from("/etc/cloudtail.toml")))
        );
        assert_eq!(run(&["check-config"]), Err(CliError::MissingConfigPath));
        assert!(err(&["check-config", "a", "b"]).starts_with("unexpected argument `b`"));
        assert!(err(&["check-config", "-o", "a"]).starts_with("unknown flag `-o`"));
        assert_eq!(run(&["check-config", "--help"]), Ok(Command::Help));
    }

    #[test]
    fn status() {
        let status = |a: &str| Command::Status {
            telemetry_address: a.parse().unwrap(),
        };
        assert_eq!(run(&["status"]), Ok(status("127.0.0.1:2020")));
        assert_eq!(
            run(&["status", "-telemetry-address=10.0.0.1:9"]),
            Ok(status("10.0.0.1:9"))
        );
        assert_eq!(
            run(&["status", "--telemetry-address", "[::1]:2020"]),
            Ok(status("[::1]:2020"))
        );
        assert!(err(&["status", "--telemetry-address", "off"]).contains("of a running agent"));
        assert!(err(&["status", "-b", "x"]).starts_with("unknown flag `-b`"));
        assert!(err(&["status", "now"]).starts_with("unexpected argument `now`"));
    }
}
