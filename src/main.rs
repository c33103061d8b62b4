//! The `cloudtail` binary: parse the command line, load the config, install logging, run the
//! agent, map the outcome to an exit code (0 done, 1 runtime failure, 2 bad configuration).
//! Everything else lives in the library.

use std::io::Write as _;
use std::process::ExitCode;

use anyhow::Context as _;
use cloudtail::cli::{self, Command, RunArgs};
use cloudtail::config::{self, Config, LogLevel};
use cloudtail::{aws::AwsError, RunError};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

fn main() -> ExitCode {
    cloudtail::memory::tune_allocator();
    let args: Result<Vec<String>, _> = std::env::args_os()
        .skip(1)
        .map(|a| a.into_string())
        .collect();
    let Ok(args) = args else {
        eprintln!("cloudtail: an argument is not valid UTF-8");
        return ExitCode::from(2);
    };
    match cli::parse(args) {
        Ok(Command::Help) => print_and_exit(&cli::help_text()),
        Ok(Command::Version) => print_and_exit(&version()),
        Ok(Command::CheckConfig(path)) => check_config(&path),
        Ok(Command::Status { telemetry_address }) => status(telemetry_address),
        Ok(Command::Run(args)) => run(&args),
        Err(error) => {
            eprintln!("cloudtail: {error}");
            ExitCode::from(2)
        }
    }
}

fn version() -> String {
    format!(
        "cloudtail {} (AWS X-Ray daemon compatible)\n",
        env!("CARGO_PKG_VERSION")
    )
}

fn print_and_exit(text: &str) -> ExitCode {
    let _ = std::io::stdout().write_all(text.as_bytes());
    ExitCode::SUCCESS
}

fn load_config(args: &RunArgs) -> Result<Config, config::ConfigError> {
    let file = args
        .config
        .as_deref()
        .map(config::read_config_file)
        .transpose()?;
    config::load(args, file)
}

fn check_config(path: &std::path::Path) -> ExitCode {
    let loaded = config::read_config_file(path)
        .and_then(|file| config::load(&RunArgs::default(), Some(file)));
    match loaded {
        Ok(config) => {
            println!("{}: OK", path.display());
            if let Some(xray) = &config.xray {
                println!(
                    "traces: segments on UDP {}, sampling proxy on TCP {}, {} calls in flight",
                    xray.udp_address, xray.tcp_address, xray.concurrency
                );
            }
            if config.logs.is_some() {
                print!("{}", cloudtail::sources::file::describe(&config));
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("cloudtail: {error}");
            ExitCode::from(2)
        }
    }
}

fn run(args: &RunArgs) -> ExitCode {
    let config = match load_config(args) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("cloudtail: {error}");
            return ExitCode::from(2);
        }
    };
    if let Err(error) = init_logging(&config) {
        eprintln!("cloudtail: {error:#}");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("cloudtail: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let token = CancellationToken::new();
    runtime.spawn(cloudtail::shutdown::cancel_on_signal(token.clone()));
    let (reload_tx, reload_rx) = tokio::sync::mpsc::channel(1);
    runtime.spawn(reload_on_sighup(args.clone(), reload_tx));
    let outcome = runtime.block_on(cloudtail::run(config, token, reload_rx));
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "cloudtail could not start.");
            eprintln!("cloudtail: {error}");
            match error {
                RunError::Aws(
                    AwsError::NoRegion { .. }
                    | AwsError::BadProxy { .. }
                    | AwsError::BadCaBundle { .. },
                )
                | RunError::BadEndpoint { .. }
                | RunError::Proxy(_)
                | RunError::Files(_)
                | RunError::Spill { .. } => ExitCode::from(2),
                RunError::Bind { .. } => ExitCode::FAILURE,
            }
        }
    }
}

/// At each SIGHUP, loads the config again with the same command line and hands it to the
/// agent; a config that does not load is logged and the running one stays.
async fn reload_on_sighup(args: RunArgs, tx: tokio::sync::mpsc::Sender<Config>) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hangups = match signal(SignalKind::hangup()) {
        Ok(hangups) => hangups,
        Err(error) => {
            tracing::warn!(%error, "Cannot listen for SIGHUP; the config will not be reloaded.");
            return;
        }
    };
    while hangups.recv().await.is_some() {
        match load_config(&args) {
            Ok(config) => {
                if tx.send(config).await.is_err() {
                    return;
                }
            }
            Err(error) => {
                tracing::error!(%error, "SIGHUP: the new configuration is rejected; the running one stays.");
            }
        }
    }
}

/// Logs to stdout, or appended to `-f FILE`; levels as the daemon names them. A plain target
/// filter (no `RUST_LOG` syntax) keeps the directive parser and its regexes out of startup.
fn init_logging(config: &Config) -> anyhow::Result<()> {
    use tracing_subscriber::filter::{LevelFilter, Targets};
    let level = match config.agent.log_level {
        LogLevel::Dev => LevelFilter::TRACE,
        LogLevel::Debug => LevelFilter::DEBUG,
        LogLevel::Info => LevelFilter::INFO,
        LogLevel::Warn => LevelFilter::WARN,
        LogLevel::Error => LevelFilter::ERROR,
        LogLevel::Quiet => LevelFilter::OFF,
    };
    // Our own crate at the chosen level; the SDK's chatter only from debug on.
    let others = match config.agent.log_level {
        LogLevel::Dev | LogLevel::Debug => LevelFilter::INFO,
        _ => LevelFilter::WARN,
    };
    let filter = Targets::new()
        .with_default(others)
        .with_target("cloudtail", level);
    let builder = tracing_subscriber::fmt().with_max_level(level.max(others));
    match &config.agent.log_file {
        Some(path) => {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| {
                    format!(
                        "cannot open the log file {} (-f/--log-file)",
                        path.display()
                    )
                })?;
            builder
                .with_ansi(false)
                .with_writer(std::sync::Mutex::new(file))
                .finish()
                .with(filter)
                .init();
        }
        None => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
            .with_writer(std::io::stdout)
            .finish()
            .with(filter)
            .init(),
    }
    Ok(())
}

/// `cloudtail status`: the agent's health and main counters, for a person or a health check.
fn status(address: std::net::SocketAddr) -> ExitCode {
    match fetch(address, "/metrics") {
        Ok(body) => {
            println!("cloudtail at {address}: healthy");
            for line in body.lines().filter(|l| !l.starts_with('#')) {
                if !line.ends_with(" 0") {
                    println!("  {line}");
                }
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("cloudtail at {address}: not reachable ({error})");
            ExitCode::FAILURE
        }
    }
}

/// A minimal HTTP/1.0 GET, so `status` needs no runtime.
fn fetch(address: std::net::SocketAddr, path: &str) -> std::io::Result<String> {
    use std::io::Read as _;
    let timeout = std::time::Duration::from_secs(2);
    let mut stream = std::net::TcpStream::connect_timeout(&address, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
        return Err(std::io::Error::other(
            head.lines().next().unwrap_or("").to_string(),
        ));
    }
    Ok(body.to_string())
}
