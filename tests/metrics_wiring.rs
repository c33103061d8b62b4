//! The metrics side wired as `agent.rs` will wire it, without the binary: a TOML config with
//! `[emf]` (metrics mode), `[statsd]` and `[host_metrics]` is loaded, each source is bound and
//! run on its own token, all feed one metrics pipeline and its `PutMetricData` sink (stub AWS
//! endpoint), then the sources are cancelled and the pipeline flushes as its channel closes.
//! What CloudWatch received is read back with `GetMetricStatistics`. Also the reference for
//! the wiring: every call here is one the agent makes.

mod support;

use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

use aws_sdk_cloudwatch::types::{Dimension, Statistic};
use aws_smithy_types::DateTime;
use cloudtail::cli::RunArgs;
use cloudtail::config::{self, ConfigFile};
use cloudtail::pipeline::budget::Budget;
use cloudtail::pipeline::metrics::{self, MetricsSettings};
use cloudtail::placeholders::Placeholders;
use cloudtail::sinks::cloudwatch_metrics::CloudWatchMetricsSink;
use cloudtail::sources::emf::{self, EmfOutputs, EmfSettings};
use cloudtail::sources::host::{self, HostSettings};
use cloudtail::sources::statsd::{self, StatsdSettings};
use cloudtail::sources::udp;
use serde_json::json;
use support::{now_secs, Moto};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const CONFIG: &str = r#"
[emf]
tcp_address = "127.0.0.1:0"
udp_address = "127.0.0.1:0"
mode = "metrics"

[statsd]
address = "127.0.0.1:0"
namespace = "Wiring/StatsD"
aggregation_interval = "1h"

[host_metrics]
interval = "1s"
namespace = "Wiring/Host"
collect = ["mem"]
append_dimensions = { Host = "{hostname}" }
"#;

/// A client as the agent builds it: the SDK's own retries off, the sink's retries only.
fn client(moto: &Moto) -> aws_sdk_cloudwatch::Client {
    support::cloudwatch_client_without_retries(&moto.endpoint())
}

async fn sum(moto: &Moto, namespace: &str, name: &str, dims: &[(&str, &str)]) -> (f64, f64) {
    let now = now_secs() as i64;
    let dimensions = dims
        .iter()
        .map(|(k, v)| Dimension::builder().name(*k).value(*v).build())
        .collect();
    let out = client(moto)
        .get_metric_statistics()
        .namespace(namespace)
        .metric_name(name)
        .set_dimensions(Some(dimensions))
        .start_time(DateTime::from_secs(now - 600))
        .end_time(DateTime::from_secs(now + 600))
        .period(60)
        .statistics(Statistic::Sum)
        .statistics(Statistic::SampleCount)
        .send()
        .await
        .expect("GetMetricStatistics");
    let points = out.datapoints();
    (
        points.iter().filter_map(|p| p.sum()).sum(),
        points.iter().filter_map(|p| p.sample_count()).sum(),
    )
}

/// The metrics side running: sources on their token, one pipeline, one sink.
struct Wired {
    emf_tcp: SocketAddr,
    emf_udp: SocketAddr,
    statsd: SocketAddr,
    sources: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
    pipeline: JoinHandle<()>,
}

/// Loads `CONFIG` and starts every source, the pipeline and the sink, as the agent does.
async fn start(moto: &Moto) -> Wired {
    let file = ConfigFile::Toml {
        path: "cloudtail.toml".into(),
        text: CONFIG.into(),
    };
    let config = config::load(&RunArgs::default(), Some(file)).expect("config");
    let (emf_config, statsd_config, host_config) = (
        config.emf.expect("[emf]"),
        config.statsd.expect("[statsd]"),
        config.host_metrics.expect("[host_metrics]"),
    );
    let placeholders = Placeholders {
        hostname: Some("test-host".into()),
        ..Placeholders::default()
    };

    // The pipeline and its sink.
    let budget = Budget::new(64 << 20);
    let sources = CancellationToken::new();
    let abort = CancellationToken::new();
    let (metric_tx, metric_rx) = mpsc::channel(4096);
    let sink = CloudWatchMetricsSink::new(client(moto), abort.clone());
    let pipeline = tokio::spawn(metrics::run(
        metric_rx,
        sink,
        MetricsSettings::new(budget.clone()),
    ));

    // EMF over TCP and UDP, metrics mode: no logs pipeline needed.
    let listener = TcpListener::bind(emf_config.tcp_address)
        .await
        .expect("bind");
    let emf_tcp = listener.local_addr().expect("addr");
    let emf_socket = udp::bind(emf_config.udp_address, 1 << 20).expect("bind");
    let emf_udp = emf_socket.local_addr().expect("addr");
    let emf_settings = EmfSettings::from_config(&emf_config, &placeholders);
    let outputs = EmfOutputs {
        logs: None,
        metrics: Some(metric_tx.clone()),
    };
    let mut tasks = vec![
        tokio::spawn(emf::run_tcp(
            listener,
            emf_settings.clone(),
            budget.clone(),
            outputs.clone(),
            sources.child_token(),
        )),
        tokio::spawn(emf::run_udp(
            emf_socket,
            emf_settings,
            budget.clone(),
            outputs,
            None,
            sources.child_token(),
        )),
    ];

    // StatsD and host metrics.
    let statsd_socket = udp::bind(statsd_config.address, 1 << 20).expect("bind");
    let statsd = statsd_socket.local_addr().expect("addr");
    tasks.push(tokio::spawn(statsd::run(
        statsd_socket,
        StatsdSettings::from_config(&statsd_config),
        metric_tx.clone(),
        sources.child_token(),
    )));
    tasks.push(tokio::spawn(host::run(
        HostSettings::from_config(&host_config, &placeholders),
        metric_tx,
        sources.child_token(),
    )));
    Wired {
        emf_tcp,
        emf_udp,
        statsd,
        sources,
        tasks,
        pipeline,
    }
}

/// Shutdown as `shutdown.rs` orders it: sources first; the pipeline flushes when the last
/// sender is gone.
async fn stop(wired: Wired) {
    wired.sources.cancel();
    for task in wired.tasks {
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("source stops on its token")
            .expect("source task");
    }
    tokio::time::timeout(Duration::from_secs(30), wired.pipeline)
        .await
        .expect("pipeline flushes")
        .expect("pipeline task");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emf_statsd_and_host_metrics_reach_cloudwatch_and_flush_on_shutdown() {
    let moto = Moto::start();
    let wired = start(&moto).await;
    let document = |value: f64| {
        json!({
            "Service": "checkout",
            "_aws": {
                "Timestamp": (now_secs() * 1000.0) as i64,
                "CloudWatchMetrics": [{
                    "Namespace": "Wiring/EMF",
                    "Dimensions": [["Service"]],
                    "Metrics": [{"Name": "Latency", "Unit": "Milliseconds"}]
                }]
            },
            "Latency": value
        })
        .to_string()
    };
    let mut tcp = std::net::TcpStream::connect(wired.emf_tcp).expect("connect");
    writeln!(tcp, "{}\n{}", document(10.0), document(20.0)).expect("write");
    let sender = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp");
    sender
        .send_to(document(30.0).as_bytes(), wired.emf_udp)
        .expect("send");
    sender
        .send_to(
            b"orders:1|c|#shop:eu\norders:2|c|#shop:eu\nbad line",
            wired.statsd,
        )
        .expect("send");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop(wired).await;

    let emf = sum(&moto, "Wiring/EMF", "Latency", &[("Service", "checkout")]).await;
    assert_eq!(emf, (60.0, 3.0), "two TCP lines and one datagram");
    let statsd = sum(&moto, "Wiring/StatsD", "orders", &[("shop", "eu")]).await;
    assert_eq!(statsd, (3.0, 1.0), "one counter datum for the interval");
    let host = sum(
        &moto,
        "Wiring/Host",
        "mem_used_percent",
        &[("Host", "test-host")],
    )
    .await;
    assert!(host.1 >= 1.0, "host memory measured: {host:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_emf_and_statsd_clients_are_understood() {
    let moto = Moto::start();
    let wired = start(&moto).await;
    let (emf, statsd) = (wired.emf_tcp.to_string(), wired.statsd.to_string());
    let out = tokio::task::spawn_blocking(move || {
        support::run_python(
            "metrics_emit.py",
            &["--emf", &emf, "--statsd", &statsd],
            &[],
        )
    })
    .await
    .expect("python");
    assert!(
        out.status.success(),
        "metrics_emit.py: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop(wired).await;

    let real = [("Service", "real")];
    assert_eq!(sum(&moto, "Real/EMF", "Latency", &real).await, (60.0, 3.0));
    assert_eq!(sum(&moto, "Real/EMF", "Payload", &real).await, (5.0, 3.0));
    let ns = "Wiring/StatsD";
    assert_eq!(
        sum(&moto, ns, "orders", &[]).await,
        (4.0, 1.0),
        "counter summed"
    );
    assert_eq!(
        sum(&moto, ns, "lat", &[]).await,
        (24.0, 2.0),
        "timer values and counts"
    );
    assert_eq!(
        sum(&moto, ns, "temp", &[]).await,
        (7.0, 1.0),
        "gauge moved by +2"
    );
    assert_eq!(
        sum(&moto, ns, "users", &[]).await,
        (2.0, 1.0),
        "two distinct members"
    );
}
