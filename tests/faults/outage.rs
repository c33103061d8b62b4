//! The endpoint down, slow, or throttling every other call, while log lines, X-Ray segments
//! (UDP) and EMF documents (TCP, logs mode) flow: everything accepted lands, every UDP drop
//! is counted, nothing is sent twice.

use std::time::Duration;

use serde_json::{json, Value};

use crate::load::{self, counted_segment_drops, landed_emf, landed_lines, landed_segments, tally};
use crate::support::{local, wait_until, Agent, Moto};
use crate::{scaled, Rig, Row};

const LINES_PER_SEC: f64 = 100.0;
const SEGMENTS_PER_SEC: f64 = 10.0;
const EMF_PER_SEC: f64 = 10.0;
/// How long the load runs before the fault and after it.
const SETTLE: Duration = Duration::from_secs(3);

/// A fault switched on for `hold`, then off.
struct Fault {
    name: String,
    on: Value,
    off: Value,
    hold: Duration,
    /// Whether the agent must catch up before the fault is switched off (slow, throttled),
    /// or can only do so after (down).
    drain_under_fault: bool,
}

#[tokio::test(flavor = "multi_thread")]
async fn endpoint_down_then_back_lands_everything_accepted() {
    let hold = scaled(Duration::from_secs(300), Duration::from_secs(60));
    run(Fault {
        name: format!("down {} s", hold.as_secs()),
        on: json!({"down": true}),
        off: json!({"down": false}),
        hold,
        drain_under_fault: false,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn endpoint_slow_lands_everything_once() {
    run(Fault {
        name: "slow 2 s per call".into(),
        on: json!({"delay": 2.0}),
        off: json!({"clear": true}),
        hold: scaled(Duration::from_secs(120), Duration::from_secs(30)),
        drain_under_fault: true,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn throttling_every_other_call_lands_everything_once() {
    run(Fault {
        name: "throttle 1 in 2".into(),
        on: json!({"throttle": 1_000_000_000u64, "every": 2}),
        off: json!({"clear": true}),
        hold: scaled(Duration::from_secs(120), Duration::from_secs(30)),
        drain_under_fault: true,
    })
    .await;
}

async fn run(fault: Fault) {
    let moto = Moto::start_with_args(&["--quiet"]);
    let rig = Rig::new(&moto)
        .with_file("app.log", "/faults/app", "app")
        .with_xray()
        .with_emf("/faults/emf", "emf");
    let path = rig.log_path("app.log");
    std::fs::write(&path, b"").expect("create app.log");
    let agent = rig.start();
    let xray = local(rig.xray_udp.expect("xray on"));
    let emf_addr = local(rig.emf_tcp.expect("emf on"));

    let lines = load::lines(&path, LINES_PER_SEC, 100);
    let segments = load::segments(xray, SEGMENTS_PER_SEC);
    let emf = load::emf(emf_addr, EMF_PER_SEC);
    std::thread::sleep(SETTLE);
    moto.inject_faults(fault.on.clone());
    std::thread::sleep(fault.hold);
    if !fault.drain_under_fault {
        moto.inject_faults(fault.off.clone());
    }
    std::thread::sleep(SETTLE);
    lines.stop();
    segments.stop();
    emf.stop();
    let (lines, segments, emf) = (lines.finish(), segments.finish(), emf.finish());

    let drain = Duration::from_secs(120) + fault.hold;
    if fault.drain_under_fault {
        let caught_up = wait_until(drain, || shipped(&agent, segments) >= lines + emf);
        assert!(
            caught_up,
            "{}: the agent did not catch up under the fault\n{}",
            fault.name,
            agent.logs()
        );
        moto.inject_faults(fault.off.clone());
    }
    let segments_settled = wait_until(drain, || {
        let (landed, _, _) = tally(&landed_segments(&moto, segments));
        landed + counted_segment_drops(&agent.metrics()) >= segments
    });
    let line_counts = landed_lines(&rig.endpoint, "/faults/app", "app", lines, drain).await;
    let emf_counts = landed_emf(&rig.endpoint, "/faults/emf", "emf", emf, drain).await;
    let segment_counts = landed_segments(&moto, segments);
    let dropped = counted_segment_drops(&agent.metrics());
    let faulted = moto
        .requests()
        .iter()
        .filter(|r| !r["fault"].is_null())
        .count();

    let mut rows = [
        Row::new(&fault.name, "lines", &line_counts, 0, &agent),
        Row::new(&fault.name, "segments", &segment_counts, dropped, &agent),
        Row::new(&fault.name, "EMF (TCP)", &emf_counts, 0, &agent),
    ];
    for r in &mut rows {
        r.note = format!("{faulted} calls faulted");
        r.print();
    }
    assert!(faulted > 0, "the fault never hit a call");
    assert!(
        segments_settled,
        "segments neither landed nor counted: {:?}",
        rows[1]
    );
    for r in &rows {
        r.assert_accepted(&agent.logs());
        assert_eq!(
            r.duplicated,
            0,
            "{r:?}: duplicates without a kill\n{}",
            agent.logs()
        );
    }
}

/// Log events (lines and EMF documents) AWS accepted so far; segments must be sent or
/// counted as dropped first, so this reads 0 until they are.
fn shipped(agent: &Agent, segments: usize) -> usize {
    let m = agent.metrics();
    let xray = m.value("cloudtail_xray_segments_sent_total").unwrap_or(0.0) as usize;
    if xray + counted_segment_drops(&m) < segments {
        return 0;
    }
    m.value("cloudtail_logs_events_sent_total").unwrap_or(0.0) as usize
}
