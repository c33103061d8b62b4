//! The X-Ray daemon role: UDP segments → traces pipeline → `PutTraceSegments`, the TCP
//! sampling proxy, and the daemon's telemetry records; and, when `[buffer] disk_mb` is set,
//! the disk spill that takes segments the budget has no room for.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::{bind_tcp, RunError, Wiring};
use crate::aws::{self, AwsContext};
use crate::config::{Config, XrayConfig};
use crate::metadata;
use crate::pipeline::budget::Pipeline;
use crate::pipeline::spill::{self, Spill};
use crate::pipeline::traces::{self, TracesSettings};
use crate::pipeline::Segment;
use crate::sinks::xray::telemetry_records::{self, Reporter};
use crate::sinks::xray::transport::Transport;
use crate::sinks::xray::XraySink;
use crate::sources::{udp, xray};
use crate::xray_proxy::{ProxyCounters, ProxyError, ProxyOptions, ProxyTarget, SamplingProxy};

/// How often X-Ray telemetry records are sent (the daemon's interval).
const TELEMETRY_RECORDS_EVERY: Duration = Duration::from_secs(60);
/// Room in the hand-off from the UDP reader to the batcher, in groups of documents; the budget
/// is the real limit.
const SEGMENT_CHANNEL: usize = 1024;

/// UDP segments → traces pipeline → `PutTraceSegments`; the TCP sampling proxy; telemetry.
pub(super) async fn start(
    config: &Config,
    xray: &XrayConfig,
    aws: &AwsContext,
    wiring: &Wiring,
    proxy_counters: &Arc<ProxyCounters>,
    spill: Option<Arc<Spill>>,
) -> Result<(), RunError> {
    let Wiring {
        tracker,
        token,
        abort,
        ..
    } = wiring;
    let budget = wiring.budget_for(Pipeline::Traces);
    let socket = udp::bind(xray.udp_address, xray.receive_buffer_bytes).map_err(|source| {
        RunError::Bind {
            what: "X-Ray UDP",
            address: xray.udp_address,
            flag: "-b/--bind",
            source,
        }
    })?;
    let listener = bind_tcp(xray.tcp_address, "X-Ray TCP", "-t/--bind-tcp").await?;
    let client = crate::sinks::xray::client(&aws.sdk);
    let (tx, rx) = mpsc::channel(SEGMENT_CHANNEL);
    if let Some(spill) = &spill {
        let replay = spill::replay(
            Arc::clone(spill),
            budget.clone(),
            tx.clone(),
            segment_from_spill,
            token.child_token(),
        );
        tracker.spawn(replay);
    }
    let source = xray::run(socket, budget, tx, spill, token.child_token());
    tracker.spawn(source);
    let transport = Transport::new(aws)
        .await
        .map_err(|e| RunError::BadEndpoint {
            endpoint: e.endpoint,
        })?;
    let sink = XraySink::new(Arc::new(transport), xray.retry_max_duration, abort.clone());
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

/// A spilled document back as a segment (a group of one for the batcher); the source checked
/// it was UTF-8 before spilling.
fn segment_from_spill(
    payload: Vec<u8>,
    permit: crate::pipeline::budget::Permit,
) -> Option<Vec<Segment>> {
    let document = String::from_utf8(payload).ok()?.into();
    Some(vec![Segment { document, permit }])
}

/// The TCP sampling proxy, signing with the agent's credentials and going through `-p` (or
/// `HTTPS_PROXY`/`HTTP_PROXY`) unless `NO_PROXY` names the endpoint, as the SDK's calls do.
fn sampling_proxy(
    config: &Config,
    aws: &AwsContext,
    counters: Arc<ProxyCounters>,
) -> Result<SamplingProxy, RunError> {
    let endpoint = aws::xray_endpoint(&config.aws, &aws.region);
    let uri: http::Uri = endpoint.parse().map_err(|_| RunError::BadEndpoint {
        endpoint: endpoint.clone(),
    })?;
    let chosen = aws::proxy_for(config.aws.proxy_address.as_deref(), &uri, |name| {
        std::env::var(name).ok()
    });
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
    let proxy = match &chosen {
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
    // Checked when the SDK was configured; read again here so the proxy trusts the same roots.
    let extra_roots = aws::ca_bundle(
        config.aws.ca_bundle.as_deref(),
        std::env::var("AWS_CA_BUNDLE")
            .ok()
            .filter(|v| !v.is_empty()),
    )
    .map_err(RunError::Aws)?
    .map(Arc::from);
    let options = ProxyOptions {
        proxy,
        counters,
        extra_roots,
        ..ProxyOptions::default()
    };
    SamplingProxy::new(target, options).map_err(RunError::Proxy)
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
