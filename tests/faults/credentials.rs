//! Credentials that expire mid-run: the agent takes short-lived keys from a container
//! credentials endpoint, and the stub refuses each key (`ExpiredTokenException`) before the
//! agent's cache would replace it. The agent must keep shipping with the next keys, without a
//! restart and without losing a line or an uncounted segment; its sampling proxy signs with
//! the new keys too.

use std::time::Duration;

use crate::load::{self, counted_segment_drops, landed_lines, landed_segments, tally};
use crate::support::{http_request, local, wait_until, Moto};
use crate::{scaled, Rig, Row};

/// The `Expiration` each key announces.
const TTL_SECS: u64 = 40;
/// When the stub starts refusing it: well before the agent's cache refreshes it.
const VALID_SECS: u64 = 15;

#[tokio::test(flavor = "multi_thread")]
async fn expired_credentials_are_replaced_without_a_restart() {
    let run_for = scaled(Duration::from_secs(180), Duration::from_secs(60));
    let moto = Moto::start_with_args(&["--quiet"]);
    let rig = Rig::new(&moto)
        .with_file("app.log", "/faults/creds", "app")
        .with_xray();
    let path = rig.log_path("app.log");
    std::fs::write(&path, b"").expect("create app.log");
    let uri = moto.credentials_uri(TTL_SECS, VALID_SECS);
    let agent = rig.start_with(|b| {
        b.env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .env("AWS_CONTAINER_CREDENTIALS_FULL_URI", uri)
    });
    let proxy = local(rig.xray_tcp.expect("xray on"));

    let lines = load::lines(&path, 100.0, 100);
    let segments = load::segments(local(rig.xray_udp.expect("xray on")), 10.0);
    let started = std::time::Instant::now();
    while started.elapsed() < run_for {
        // What an X-Ray SDK does every few seconds; its answer is not the point here.
        let _ = http_request(proxy, "POST", "/GetSamplingRules", &[], b"{}");
        std::thread::sleep(Duration::from_secs(2));
    }
    let (lines, segments) = (lines.finish(), segments.finish());

    let drain = Duration::from_secs(120);
    let settled = wait_until(drain, || {
        let (landed, _, _) = tally(&landed_segments(&moto, segments));
        landed + counted_segment_drops(&agent.metrics()) >= segments
    });
    let line_counts = landed_lines(&rig.endpoint, "/faults/creds", "app", lines, drain).await;
    let segment_counts = landed_segments(&moto, segments);
    let dropped = counted_segment_drops(&agent.metrics());
    let (issued, refused) = moto.issued_keys();
    let sampling_keys: Vec<String> = moto
        .requests_for("GetSamplingRules")
        .into_iter()
        .filter(|r| r["status"] == 200)
        .filter_map(|r| r["key"].as_str().map(String::from))
        .collect();
    let note = format!("{issued} keys, {refused} calls refused as expired");
    let mut rows = [
        Row::new("expired credentials", "lines", &line_counts, 0, &agent),
        Row::new(
            "expired credentials",
            "segments",
            &segment_counts,
            dropped,
            &agent,
        ),
    ];
    for r in &mut rows {
        r.note = note.clone();
        r.print();
    }
    assert!(
        settled,
        "segments neither landed nor counted: {:?}",
        rows[1]
    );
    assert!(
        issued >= 2 && refused > 0,
        "the run must see a key refused and a new one fetched: {note}"
    );
    for r in &rows {
        r.assert_accepted(&agent.logs());
        assert_eq!(r.duplicated, 0, "{r:?}\n{}", agent.logs());
    }
    let fresh = sampling_keys.iter().any(|k| k != "ASIAFRONT00000001");
    assert!(
        fresh,
        "the sampling proxy never got an answer with a renewed key: {sampling_keys:?}\n{}",
        agent.logs()
    );
    assert!(
        agent.stderr().contains("ExpiredToken") || agent.stdout().contains("ExpiredToken"),
        "the refusals are logged\n{}",
        agent.logs()
    );
}
