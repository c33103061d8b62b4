//! Fifty files growing fast with the endpoint down: the budget fills, the readers stop reading
//! (the files are the buffer), peak RSS stays within the budget + 20 MB; once the endpoint is
//! back every line lands. The row's peak RSS is the highest of the whole run, the drain
//! included (reads resume and requests are in flight while the budget refills); the peak
//! while the endpoint was down is given in its note.

use std::time::Duration;

use serde_json::json;

use crate::load::{self, landed_lines, Producer};
use crate::support::{wait_until, Moto};
use crate::{scale, Rig, Row};

const FILES: usize = 50;
const LINE_BYTES: usize = 200;
/// Each file's growth at full scale.
const FULL_RATE_BYTES: f64 = 5.0 * 1024.0 * 1024.0;
/// Each file's growth at the smallest scale.
const MIN_RATE_BYTES: f64 = 1024.0 * 1024.0;
/// How long the files grow.
const GROWTH: Duration = Duration::from_secs(2);

fn lines_read(agent: &crate::support::Agent) -> f64 {
    agent
        .metrics()
        .value("cloudtail_logs_lines_read_total")
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread")]
async fn fifty_fast_files_with_the_endpoint_down_stay_within_the_budget() {
    let rate = (FULL_RATE_BYTES * scale()).max(MIN_RATE_BYTES);
    let moto = Moto::start_with_args(&["--quiet", "--record-body-limit", "0"]);
    let mut rig = Rig::new(&moto);
    for i in 0..FILES {
        let name = format!("f{i:02}.log");
        std::fs::write(rig.log_path(&name), b"").expect("create log file");
        rig = rig.with_file(&name, "/faults/flood", &format!("f{i:02}"));
    }
    let agent = rig.start();
    moto.inject_faults(json!({"down": true}));

    let per_sec = rate / (LINE_BYTES + 1) as f64;
    let writers: Vec<Producer> = (0..FILES)
        .map(|i| load::lines(&rig.log_path(&format!("f{i:02}.log")), per_sec, LINE_BYTES))
        .collect();
    std::thread::sleep(GROWTH);
    writers.iter().for_each(Producer::stop);
    let sent: Vec<usize> = writers.into_iter().map(Producer::finish).collect();
    let total: usize = sent.iter().sum();

    // Readers pause: with the budget full, nothing more is read while the endpoint is down.
    std::thread::sleep(Duration::from_secs(2));
    let read_before = lines_read(&agent);
    std::thread::sleep(Duration::from_secs(3));
    let read_after = lines_read(&agent);
    let peak_down = agent.peak_rss_kb();

    moto.inject_faults(json!({"down": false}));
    let drain = Duration::from_secs(900);
    let drained = wait_until(drain, || {
        agent
            .metrics()
            .value("cloudtail_logs_events_sent_total")
            .unwrap_or(0.0)
            >= total as f64
    });
    let mut all = Row::default();
    for (i, n) in sent.iter().enumerate() {
        let stream = format!("f{i:02}");
        let counts = landed_lines(
            &rig.endpoint,
            "/faults/flood",
            &stream,
            *n,
            Duration::from_secs(60),
        )
        .await;
        let r = Row::new("", "", &counts, 0, &agent);
        all.sent += r.sent;
        all.landed += r.landed;
        all.lost += r.lost;
        all.duplicated += r.duplicated;
    }
    let r = Row {
        scenario: "50 files, endpoint down".into(),
        what: "lines",
        peak_rss_kb: agent.peak_rss_kb(),
        limit_kb: crate::rss_limit_kb(&agent),
        note: format!(
            "{FILES} files × {:.1} MB/s × {} s; read paused at {read_before} of {total} lines \
             (+{} in 3 s); peak RSS while down {:.1} MiB",
            rate / (1024.0 * 1024.0),
            GROWTH.as_secs(),
            read_after - read_before,
            peak_down as f64 / 1024.0
        ),
        ..all
    };
    r.print();
    assert!(drained, "not every line was sent: {r:?}\n{}", agent.logs());
    assert!(
        read_after == read_before && read_before < total as f64,
        "readers must pause while the budget is full: {r:?}"
    );
    r.assert_accepted(&agent.logs());
    assert_eq!(r.duplicated, 0, "{r:?}");
}
