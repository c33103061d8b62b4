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
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::aws::{self, AwsContext, AwsError};
use crate::config::{Config, XrayConfig};
use crate::metadata;
use crate::pipeline::budget::{self, Budget};
use crate::pipeline::traces::{self, TracesSettings};
use crate::shutdown;
use crate::sinks::xray::telemetry_records::{self, Reporter};
use crate::sinks::xray::XraySink;
use crate::sources::{udp, xray};
use crate::telemetry;
use crate::xray_proxy::{ProxyCounters, ProxyError, ProxyOptions, ProxyTarget, SamplingProxy};

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
    /// The endpoint for the sampling proxy is not a URL.
    #[error("the X-Ray endpoint {endpoint:?} is not a URL: use http(s)://HOST[:PORT]")]
    BadEndpoint {
        /// The endpoint.
        endpoint: String,
    },
}

/// How often the summary line is logged at info.
const SUMMARY_EVERY: Duration = Duration::from_secs(60);
/// How often X-Ray telemetry records are sent (the daemon's interval).
const TELEMETRY_RECORDS_EVERY: Duration = Duration::from_secs(60);
/// Room in the hand-off from a datagram source to its batcher; the budget is the real limit.
const SEGMENT_CHANNEL: usize = 4096;

/// Runs the agent until `token` is cancelled, then flushes and returns.
pub async fn run(config: Config, token: CancellationToken) -> Result<(), RunError> {
    let budget = Budget::new(budget_bytes(&config));
    tracing::info!(bytes = budget.total_bytes(), "Memory budget set.");
    let tracker = TaskTracker::new();
    let abort = CancellationToken::new();
    let proxy_counters = Arc::new(ProxyCounters::default());
    if let Some(address) = config.agent.telemetry_address {
        let listener = bind_tcp(address, "the telemetry server", "--telemetry-address").await?;
        let gauges = gauges(budget.clone(), Arc::clone(&proxy_counters));
        tracker.spawn(telemetry::serve(listener, gauges, token.child_token()));
    }
    if let Some(xray) = &config.xray {
        let aws = aws::load(&config.aws).await?;
        tracing::info!(region = %aws.region, "AWS configured.");
        let ctx = TracesContext {
            budget: &budget,
            tracker: &tracker,
            token: &token,
            abort: &abort,
            proxy_counters: &proxy_counters,
        };
        start_traces(&config, xray, &aws, ctx).await?;
    }
    tracker.spawn(telemetry::log_summaries(SUMMARY_EVERY, token.child_token()));
    tracing::info!("cloudtail started.");
    token.cancelled().await;
    shutdown::drain(&tracker, &abort, config.agent.shutdown_timeout).await;
    tracing::info!("cloudtail stopped.");
    Ok(())
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

fn gauges(budget: Budget, proxy: Arc<ProxyCounters>) -> telemetry::GaugeFn {
    Arc::new(move || {
        let count = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed) as f64;
        let in_use = budget.in_use_bytes() as f64;
        vec![
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
        ]
    })
}

/// What the traces role shares with the rest of the agent.
struct TracesContext<'a> {
    budget: &'a Budget,
    tracker: &'a TaskTracker,
    token: &'a CancellationToken,
    abort: &'a CancellationToken,
    proxy_counters: &'a Arc<ProxyCounters>,
}

/// UDP segments → traces pipeline → `PutTraceSegments`; the TCP sampling proxy; telemetry.
async fn start_traces(
    config: &Config,
    xray: &XrayConfig,
    aws: &AwsContext,
    ctx: TracesContext<'_>,
) -> Result<(), RunError> {
    let TracesContext {
        budget,
        tracker,
        token,
        abort,
        proxy_counters,
    } = ctx;
    let socket = udp::bind(xray.udp_address, xray.receive_buffer_bytes).map_err(|source| {
        RunError::Bind {
            what: "X-Ray UDP",
            address: xray.udp_address,
            flag: "-b/--bind",
            source,
        }
    })?;
    let listener = bind_tcp(xray.tcp_address, "X-Ray TCP", "-t/--bind-tcp").await?;
    let client = aws_sdk_xray::Client::new(&aws.sdk);
    let (tx, rx) = mpsc::channel(SEGMENT_CHANNEL);
    tracker.spawn(xray::run(socket, budget.clone(), tx, token.child_token()));
    let sink = XraySink::new(client.clone(), xray.retry_max_duration, abort.clone());
    let settings = TracesSettings {
        max_documents: xray.batch_max_documents,
        flush_interval: xray.flush_interval,
        concurrency: xray.concurrency,
    };
    tracker.spawn(traces::run(rx, sink, settings));
    let proxy = sampling_proxy(config, aws, Arc::clone(proxy_counters))?;
    tracker.spawn(proxy.serve(listener, token.child_token()));
    if xray.telemetry_records {
        let reporter = Reporter {
            hostname: metadata::hostname(),
            instance_id: metadata::instance_id(config.aws.local_mode).await,
            resource_arn: config.aws.resource_arn.clone(),
        };
        let task = telemetry_records::run(
            client,
            reporter,
            TELEMETRY_RECORDS_EVERY,
            token.child_token(),
        );
        tracker.spawn(task);
    }
    tracing::info!(udp = %xray.udp_address, tcp = %xray.tcp_address, "X-Ray daemon role listening.");
    Ok(())
}

/// The TCP sampling proxy, signing with the agent's credentials and going through `-p` if set.
fn sampling_proxy(
    config: &Config,
    aws: &AwsContext,
    counters: Arc<ProxyCounters>,
) -> Result<SamplingProxy, RunError> {
    let endpoint = aws::xray_endpoint(&config.aws, &aws.region);
    let uri = endpoint.parse().map_err(|_| RunError::BadEndpoint {
        endpoint: endpoint.clone(),
    })?;
    let credentials = aws.sdk.credentials_provider().unwrap_or_else(|| {
        aws_credential_types::provider::SharedCredentialsProvider::new(
            aws_credential_types::Credentials::new("", "", None, None, "missing"),
        )
    });
    let target = ProxyTarget {
        endpoint: uri,
        region: aws.region.clone(),
        credentials,
    };
    let proxy = match &config.aws.proxy_address {
        Some(address) => {
            let with_scheme = if address.contains("://") {
                address.clone()
            } else {
                format!("http://{address}")
            };
            Some(with_scheme.parse().map_err(|_| {
                RunError::Proxy(ProxyError::InvalidProxy {
                    proxy: without_password(address),
                    reason: "not a URI",
                })
            })?)
        }
        None => None,
    };
    let options = ProxyOptions {
        proxy,
        counters,
        ..ProxyOptions::default()
    };
    SamplingProxy::new(target, options).map_err(RunError::Proxy)
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

/// A proxy address fit for an error message: any `user:password@` part removed.
fn without_password(address: &str) -> String {
    match address.rsplit_once('@') {
        Some((credentials, host)) => {
            let scheme = credentials.split_once("://").map(|(s, _)| s);
            match scheme {
                Some(scheme) => format!("{scheme}://…@{host}"),
                None => format!("…@{host}"),
            }
        }
        None => address.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_passwords_stay_out_of_messages() {
        assert_eq!(
            without_password("http://u:secret@proxy:3128"),
            "http://…@proxy:3128"
        );
        assert_eq!(without_password("u:secret@proxy:3128"), "…@proxy:3128");
        assert_eq!(without_password("proxy:3128"), "proxy:3128");
    }
}
