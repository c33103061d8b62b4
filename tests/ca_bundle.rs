//! Extra trusted roots (`[aws] ca_bundle`, `AWS_CA_BUNDLE`), end to end: the real binary ships
//! a log file to an HTTPS endpoint whose certificate is self-signed, made here at test time (a
//! TLS front on loopback that forwards to the emulator). The events land only when the bundle
//! names that certificate; a bundle that cannot be used stops the agent at start, naming the key.

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use support::logs::{file_table, log_events, wait_for_events, LogsHarness};
use support::{free_tcp_port, local, Agent, Moto};
use tokio::net::{TcpListener, TcpStream};

/// A self-signed certificate for `localhost` and its key, as PEM.
fn self_signed() -> (String, String) {
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("certificate");
    (certified.cert.pem(), certified.key_pair.serialize_pem())
}

/// Serves TLS with `cert_pem`/`key_pem` on a loopback port and forwards the plain bytes of
/// every connection to `backend`. Returns the port.
async fn tls_front(cert_pem: &str, key_pem: &str, backend: SocketAddr) -> u16 {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = vec![CertificateDer::from_pem_slice(cert_pem.as_bytes()).expect("cert pem")];
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).expect("key pem");
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                // A client that refuses the certificate ends the handshake: nothing to forward.
                let Ok(mut tls) = acceptor.accept(stream).await else {
                    return;
                };
                let Ok(mut plain) = TcpStream::connect(backend).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    port
}

fn moto_addr(moto: &Moto) -> SocketAddr {
    let endpoint = moto.endpoint();
    let port = endpoint.rsplit(':').next().expect("port");
    local(port.trim_end_matches('/').parse().expect("numeric port"))
}

/// Starts an agent on `h`'s config with `aws_extra` added to `[aws]` and `env` set; waits until
/// it serves `/healthz`.
fn start(h: &LogsHarness, files: &str, aws_extra: &str, env: &[(&str, &str)]) -> Agent {
    let telemetry = free_tcp_port();
    let config =
        h.config(telemetry, files)
            .replacen("[logs]\n", &format!("{aws_extra}\n[logs]\n"), 1);
    let path = h.dir.path().join("cloudtail.toml");
    std::fs::write(&path, config).expect("write config");
    let mut builder = Agent::builder()
        .args([
            "--config",
            path.to_str().expect("utf-8 path"),
            "-l",
            "debug",
        ])
        .telemetry_addr(local(telemetry));
    for (key, value) in env {
        builder = builder.env(key, value);
    }
    let mut agent = builder.start();
    agent.ready();
    agent
}

fn append_lines(path: &Path, prefix: &str, count: usize) {
    let text: String = (0..count).map(|n| format!("{prefix} {n:04}\n")).collect();
    std::fs::write(path, text).expect("write log file");
}

#[tokio::test(flavor = "multi_thread")]
async fn events_land_over_https_only_when_the_bundle_trusts_the_endpoint() {
    let moto = Moto::start();
    let (cert, key) = self_signed();
    let port = tls_front(&cert, &key, moto_addr(&moto)).await;
    let mut h = LogsHarness::new(&moto);
    let readback = h.endpoint.clone();
    h.endpoint = format!("https://localhost:{port}");
    let bundle = h.dir.path().join("ca.pem");
    std::fs::write(&bundle, &cert).expect("write bundle");
    let bundle = bundle.to_str().expect("utf-8 path").to_string();

    // Without the bundle the certificate is refused: nothing lands, however long it tries.
    let log = h.log_path("untrusted.log");
    append_lines(&log, "untrusted", 20);
    let mut agent = start(&h, &file_table(&log, "/tls", "untrusted", ""), "", &[]);
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(
        log_events(&readback, "/tls", "untrusted").await.is_empty(),
        "no event may land through an untrusted certificate"
    );
    assert!(agent.try_exit().is_none(), "it keeps retrying");
    agent.sigterm();
    agent.wait_exit(Duration::from_secs(20));

    // `[aws] ca_bundle` trusts it.
    let log = h.log_path("configured.log");
    append_lines(&log, "configured", 20);
    let table = file_table(&log, "/tls", "configured", "");
    let aws = format!("ca_bundle = \"{bundle}\"");
    let mut agent = start(&h, &table, &aws, &[]);
    let events =
        wait_for_events(&readback, "/tls", "configured", 20, Duration::from_secs(30)).await;
    assert_eq!(
        events.len(),
        20,
        "every line over HTTPS with [aws] ca_bundle"
    );
    agent.sigterm();
    agent.wait_exit(Duration::from_secs(20));

    // So does `AWS_CA_BUNDLE`.
    let log = h.log_path("env.log");
    append_lines(&log, "env", 20);
    let table = file_table(&log, "/tls", "env", "");
    let mut agent = start(&h, &table, "", &[("AWS_CA_BUNDLE", bundle.as_str())]);
    let events = wait_for_events(&readback, "/tls", "env", 20, Duration::from_secs(30)).await;
    assert_eq!(events.len(), 20, "every line over HTTPS with AWS_CA_BUNDLE");
    agent.sigterm();
    agent.wait_exit(Duration::from_secs(20));
}

#[test]
fn an_unusable_bundle_stops_the_agent_naming_the_key() {
    let dir = tempfile::tempdir().expect("temp dir");
    let not_pem = dir.path().join("not.pem");
    std::fs::write(&not_pem, "hello\n").expect("write");
    let missing = dir.path().join("missing.pem");
    let cases = [
        (missing.display().to_string(), None, "[aws] ca_bundle"),
        (not_pem.display().to_string(), None, "[aws] ca_bundle"),
        (
            String::new(),
            Some(missing.display().to_string()),
            "AWS_CA_BUNDLE",
        ),
    ];
    for (configured, env, key) in cases {
        let config = dir.path().join("cloudtail.toml");
        let aws = if configured.is_empty() {
            String::new()
        } else {
            format!("ca_bundle = \"{configured}\"\n")
        };
        // A role that calls AWS: the bundle is checked when the AWS configuration is built.
        let text = format!(
            "[agent]\ntelemetry_address = \"127.0.0.1:{}\"\n[aws]\nregion = \"us-east-1\"\n\
             endpoint = \"https://localhost:9\"\n{aws}[logs]\nstate_dir = \"{}\"\n\
             [[logs.files]]\npath = \"{}\"\nlog_group = \"g\"\n",
            free_tcp_port(),
            dir.path().join("state").display(),
            dir.path().join("app.log").display()
        );
        std::fs::write(&config, text).expect("write config");
        let mut builder = Agent::builder().args(["--config", config.to_str().expect("utf-8")]);
        if let Some(env) = &env {
            builder = builder.env("AWS_CA_BUNDLE", env);
        }
        let mut agent = builder.start();
        let status = agent.wait_exit(Duration::from_secs(20));
        assert_eq!(status.code(), Some(2), "{key}: {}", agent.stderr());
        assert!(
            agent.stderr().contains(key),
            "{key} named: {}",
            agent.stderr()
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_sampling_proxy_trusts_the_bundle_too() {
    let moto = Moto::start();
    let (cert, key) = self_signed();
    let port = tls_front(&cert, &key, moto_addr(&moto)).await;
    let endpoint = format!("https://localhost:{port}");
    let dir = tempfile::tempdir().expect("tempdir");
    let bundle = dir.path().join("ca.pem");
    std::fs::write(&bundle, &cert).expect("write bundle");
    let bundle = bundle.to_str().expect("utf-8 path").to_string();

    let mut untrusted = Agent::xray_builder_for(&endpoint).start();
    untrusted.ready();
    let status = untrusted.sampling_status();
    assert!(
        status >= 500,
        "an untrusted certificate was accepted: {status}\n{}",
        untrusted.logs()
    );
    let mut trusted = Agent::xray_builder_for(&endpoint)
        .env("AWS_CA_BUNDLE", &bundle)
        .start();
    trusted.ready();
    assert_eq!(trusted.sampling_status(), 200, "{}", trusted.logs());
    assert_eq!(
        moto.requests_for("GetSamplingRules").len(),
        1,
        "only the trusting agent reached the emulator"
    );
}

#[test]
fn no_verify_ssl_is_named_in_a_warning_not_silently_ignored() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("cfg.yaml");
    std::fs::write(&cfg, "Version: 2\nNoVerifySSL: true\n").expect("write cfg");
    let mut agent = Agent::xray_builder(&moto)
        .args(["-c", cfg.to_str().expect("utf-8 path")])
        .start();
    agent.ready();
    let logs = agent.logs();
    assert!(
        logs.contains("NoVerifySSL") && logs.contains("ca_bundle"),
        "no warning about NoVerifySSL: {logs}"
    );
}
