//! Builds the sources, pipelines and sinks the config asks for, runs them, and stops them in
//! the order `shutdown.rs` writes down.
//!
//! Everything that can fail because of the environment (a port in use, no region) fails here,
//! before any data is accepted, as a [`RunError`] that `main` turns into exit code 2 or 1.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::aws::{self, AwsError};
use crate::config::Config;
use crate::pipeline::budget::{self, Budget, Pipeline};
use crate::pipeline::spill::SpillCounters;
use crate::shutdown;
use crate::sources::file::FileSourceError;
use crate::telemetry;
use crate::xray_proxy::{ProxyCounters, ProxyError};
use spills::Spills;

mod listeners;
mod logs;
mod metrics;
mod reload;
mod spills;
mod traces;

/// Why the agent could not start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The AWS configuration is incomplete (no region, a bad proxy).
    #[error(transparent)]
    Aws(#[from] AwsError),
    /// A listening address could not be bound.
    #[error("cannot listen on {what} {address}: {source} (is another agent or X-Ray daemon running? choose another address with {flag})")]
    Bind {
        /// Which listener.
        what: &'static str,
        /// The address.
        address: SocketAddr,
        /// The flag that changes it.
        flag: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
    /// The sampling proxy could not be set up (bad endpoint or proxy address, no TLS roots).
    #[error("cannot start the X-Ray sampling proxy: {0}")]
    Proxy(#[source] ProxyError),
    /// The file source could not start (state_dir unusable, checkpoint unreadable).
    #[error("cannot start tailing log files: {0}")]
    Files(#[from] FileSourceError),
    /// The disk spill's directory could not be opened.
    #[error("cannot open the disk spill in {dir}: {source} (make it writable, set [buffer] spill_dir, or set [buffer] disk_mb = 0)")]
    Spill {
        /// The directory.
        dir: std::path::PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The endpoint for the sampling proxy is not a URL.
    #[error("the X-Ray endpoint {endpoint:?} is not a URL: use http(s)://HOST[:PORT]")]
    BadEndpoint {
        /// The endpoint.
        endpoint: String,
    },
}

/// How often the summary line is logged at info.
const SUMMARY_EVERY: Duration = Duration::from_secs(60);

/// What every role shares: the budget, the task tracker, the root token (cancelled at
/// SIGTERM) and the abort token (cancelled at the shutdown deadline).
pub(crate) struct Wiring {
    budget: Budget,
    tracker: TaskTracker,
    token: CancellationToken,
    abort: CancellationToken,
}

/// Runs the agent until `token` is cancelled, then flushes and returns. Each config from
/// `reloads` (a SIGHUP, already loaded and checked) is applied as `agent/reload.rs` says.
pub async fn run(
    config: Config,
    token: CancellationToken,
    mut reloads: tokio::sync::mpsc::Receiver<Config>,
) -> Result<(), RunError> {
    let wiring = Wiring {
        budget: shared_budget(&config),
        tracker: TaskTracker::new(),
        token,
        abort: CancellationToken::new(),
    };
    let floors = Pipeline::ALL.map(|p| wiring.budget.floor_bytes(p));
    tracing::info!(
        bytes = wiring.budget.total_bytes(),
        ?floors,
        "Memory budget set."
    );
    if config.aws.no_verify_ssl {
        tracing::warn!(
            "NoVerifySSL / [aws] no_verify_ssl is accepted for compatibility but not applied: \
             certificates are always verified. To trust a private or self-signed endpoint, \
             give its CA with [aws] ca_bundle or AWS_CA_BUNDLE."
        );
    }
    let proxy_counters = Arc::new(ProxyCounters::default());
    let spills = Spills::open(&config)?;
    if let Some(address) = config.agent.telemetry_address {
        let listener = bind_tcp(address, "the telemetry server", "--telemetry-address").await?;
        let spill_counters = spills.counters();
        let gauges = gauges(
            wiring.budget.clone(),
            Arc::clone(&proxy_counters),
            spill_counters,
        );
        let server = telemetry::serve(listener, gauges, wiring.token.child_token());
        wiring.tracker.spawn(server);
    }
    let mut checkpointer = None;
    let mut files_reload = None;
    let mut listeners = listeners::Listeners::default();
    let needs_aws = config.xray.is_some() || config.logs.is_some() || metrics::enabled(&config);
    if needs_aws {
        let aws = aws::load(&config.aws).await?;
        tracing::info!(region = %aws.region, "AWS configured.");
        if let Some(xray) = &config.xray {
            let spill = spills.traces.clone();
            traces::start(&config, xray, &aws, &wiring, &proxy_counters, spill).await?;
        }
        let log_tx = (config.logs.is_some() || metrics::needs_logs(&config))
            .then(|| logs::start_pipeline(&config, &aws, &wiring));
        let metric_tx = metrics::enabled(&config)
            .then(|| metrics::start_pipeline(&aws, &wiring, spills.metrics.clone()));
        if let (Some(settings), Some(tx)) = (&config.logs, &log_tx) {
            let filter_tx = metric_tx.clone().filter(|_| metrics::has_filters(&config));
            let files = logs::start_files(&config, settings, &aws, &wiring, tx.clone(), filter_tx);
            let (files, reload) = files.await?;
            checkpointer = Some(files);
            files_reload = Some(reload);
        }
        if let Some(metric_tx) = metric_tx {
            let emf_spill = spills.emf.clone();
            listeners = metrics::start(&config, &wiring, log_tx, metric_tx, emf_spill).await?;
        }
    }
    let summaries = telemetry::log_summaries(SUMMARY_EVERY, wiring.token.child_token());
    wiring.tracker.spawn(summaries);
    telemetry::mark_started();
    tracing::info!("cloudtail started.");
    crate::memory::release_startup_memory();
    let timeout = config.agent.shutdown_timeout;
    let mut reloader = reload::Reloader::new(config, files_reload, listeners);
    loop {
        tokio::select! {
            _ = wiring.token.cancelled() => break,
            Some(new) = reloads.recv() => reloader.apply(new, &wiring),
        }
    }
    shutdown::drain(&wiring.tracker, &wiring.abort, timeout).await;
    if let Some(checkpointer) = checkpointer {
        if let Err(error) = checkpointer.flush_final().await {
            tracing::error!(%error, "The last checkpoint could not be written; some lines will be sent again.");
        }
    }
    tracing::info!("cloudtail stopped.");
    Ok(())
}

/// The process budget, with a floor for each pipeline that runs.
fn shared_budget(config: &Config) -> Budget {
    let total = budget_bytes(config);
    let running = [
        config.xray.is_some(),
        config.logs.is_some(),
        metrics::enabled(config),
    ];
    Budget::with_floors(
        total,
        budget::floors_for(total, config.buffer.floors, running),
    )
}

impl Wiring {
    /// The budget handle `pipeline`'s sources and queues charge.
    fn budget_for(&self, pipeline: Pipeline) -> Budget {
        self.budget.for_pipeline(pipeline)
    }
}

/// The configured budget, else 1% of the cgroup limit or host RAM (at least 3 MB).
fn budget_bytes(config: &Config) -> usize {
    match config.buffer.memory_mb {
        Some(mb) => usize::try_from(mb.saturating_mul(1024 * 1024)).unwrap_or(usize::MAX),
        None => budget::default_budget_bytes(
            budget::read_cgroup_memory_limit(),
            budget::read_host_memory(),
        ),
    }
}

fn gauges(
    budget: Budget,
    proxy: Arc<ProxyCounters>,
    spills: [Option<Arc<SpillCounters>>; 3],
) -> telemetry::GaugeFn {
    Arc::new(move || {
        let count = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed) as f64;
        let in_use = budget.in_use_bytes() as f64;
        let mut readings = pipeline_readings(&budget);
        readings.extend(spills::readings(&spills));
        readings.extend([
            ("cloudtail_buffer_bytes_in_use", "gauge", in_use),
            (
                "cloudtail_buffer_bytes_total",
                "gauge",
                budget.total_bytes() as f64,
            ),
            (
                "cloudtail_proxy_requests_total",
                "counter",
                count(&proxy.requests),
            ),
            (
                "cloudtail_proxy_errors_total",
                "counter",
                count(&proxy.upstream_errors),
            ),
            (
                "cloudtail_proxy_rejected_total",
                "counter",
                count(&proxy.rejected),
            ),
        ]);
        readings
    })
}

/// Bytes each pipeline holds, then each pipeline's floor.
fn pipeline_readings(budget: &Budget) -> Vec<telemetry::Reading> {
    const IN_USE: [&str; 3] = [
        "cloudtail_buffer_pipeline_bytes_in_use{pipeline=\"traces\"}",
        "cloudtail_buffer_pipeline_bytes_in_use{pipeline=\"logs\"}",
        "cloudtail_buffer_pipeline_bytes_in_use{pipeline=\"metrics\"}",
    ];
    const FLOOR: [&str; 3] = [
        "cloudtail_buffer_pipeline_bytes_floor{pipeline=\"traces\"}",
        "cloudtail_buffer_pipeline_bytes_floor{pipeline=\"logs\"}",
        "cloudtail_buffer_pipeline_bytes_floor{pipeline=\"metrics\"}",
    ];
    let in_use = Pipeline::ALL
        .iter()
        .zip(IN_USE)
        .map(|(&p, name)| (name, "gauge", budget.pipeline_in_use_bytes(p) as f64));
    let floors = Pipeline::ALL
        .iter()
        .zip(FLOOR)
        .map(|(&p, name)| (name, "gauge", budget.floor_bytes(p) as f64));
    in_use.chain(floors).collect()
}

async fn bind_tcp(
    address: SocketAddr,
    what: &'static str,
    flag: &'static str,
) -> Result<TcpListener, RunError> {
    TcpListener::bind(address)
        .await
        .map_err(|source| RunError::Bind {
            what,
            address,
            flag,
            source,
        })
}
