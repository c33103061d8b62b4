//! The command line as a user meets it: version, help, `status`, `check-config`.

mod support;

use std::process::Command;

use support::{Agent, Moto};

fn cloudtail(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_cloudtail"))
        .args(args)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .expect("run cloudtail")
}

#[test]
fn version_and_help_in_every_spelling() {
    for flag in ["-v", "--v", "-version", "--version"] {
        let out = cloudtail(&[flag]);
        assert!(out.status.success(), "{flag}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains(env!("CARGO_PKG_VERSION")), "{flag}: {text}");
    }
    let out = cloudtail(&["--help"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    for flag in [
        "--resource-arn",
        "--local-mode",
        "--buffer-memory",
        "--bind-tcp",
        "--telemetry-address",
    ] {
        assert!(text.contains(flag), "help lacks {flag}");
    }
    let out = cloudtail(&["--no-such-flag"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--no-such-flag"));
}

#[test]
fn status_reports_a_running_agent_and_fails_without_one() {
    let moto = Moto::start();
    let agent = Agent::start_xray(&moto);
    let address = agent.telemetry_addr().to_string();
    let out = cloudtail(&["status", "--telemetry-address", &address]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("healthy") && text.contains("cloudtail_buffer_bytes_total"),
        "{text}"
    );
    drop(agent);
    let out = cloudtail(&["status", "--telemetry-address", &address]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn check_config_accepts_the_references_and_rejects_typos() {
    let repo = support::repo_dir();
    for file in ["config/cloudtail.toml", "config/xray-daemon-cfg.yaml"] {
        let path = repo.join(file);
        let out = cloudtail(&["check-config", path.to_str().expect("path")]);
        assert!(
            out.status.success(),
            "{file}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[xray]\nconcurency = 8\n").expect("write");
    let out = cloudtail(&["check-config", bad.to_str().expect("path")]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("concurency"));
}
