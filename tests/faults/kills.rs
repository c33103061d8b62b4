//! `kill -9` every 10 s under a steady stream of log lines, the agent restarted each time on
//! the same `state_dir`: no line lost, and a kill sends again at most what was in flight. The
//! bound from the config is `concurrency × 10,000` (PutLogEvents' event limit) per kill; the
//! measured, tighter one is the lines above the checkpoint on disk when the kill struck.

use std::time::Duration;

use crate::load::{self, landed_lines};
use crate::{checkpointed, scaled, Rig, Row};

const LINE_BYTES: usize = 100;
const LINES_PER_SEC: f64 = 300.0;
const KILL_EVERY: Duration = Duration::from_secs(10);
/// PutLogEvents' limit on events per call: the largest batch.
const MAX_BATCH_EVENTS: usize = 10_000;

#[tokio::test(flavor = "multi_thread")]
async fn kill_dash_9_every_ten_seconds_loses_no_line() {
    let run_for = scaled(Duration::from_secs(120), Duration::from_secs(40));
    let moto = crate::support::Moto::start_with_args(&["--quiet"]);
    let rig = Rig::new(&moto).with_file("app.log", "/faults/kill", "app");
    let path = rig.log_path("app.log");
    std::fs::write(&path, b"").expect("create app.log");
    let mut agent = rig.start();
    let lines = load::lines(&path, LINES_PER_SEC, LINE_BYTES);
    let (mut kills, mut above_checkpoint, mut peak) = (0usize, 0usize, 0u64);
    let rounds = (run_for.as_secs() / KILL_EVERY.as_secs()).max(1);
    for _ in 0..rounds {
        std::thread::sleep(KILL_EVERY);
        peak = peak.max(agent.peak_rss_kb());
        let delivered = checkpointed(&rig.state_dir()) as usize / (LINE_BYTES + 1);
        agent.kill9();
        kills += 1;
        above_checkpoint += lines.count().saturating_sub(delivered);
        agent = rig.start();
    }
    std::thread::sleep(Duration::from_secs(3));
    let sent = lines.finish();
    let counts = landed_lines(
        &rig.endpoint,
        "/faults/kill",
        "app",
        sent,
        Duration::from_secs(120),
    )
    .await;
    let bound = kills * rig.concurrency * MAX_BATCH_EVENTS;
    let mut r = Row::new("kill -9 every 10 s", "lines", &counts, 0, &agent);
    r.peak_rss_kb = r.peak_rss_kb.max(peak);
    r.note = format!(
        "{kills} kills; duplicates allowed {bound} (concurrency {} × {MAX_BATCH_EVENTS} per kill), \
         {above_checkpoint} above the checkpoint at the kills",
        rig.concurrency
    );
    r.print();
    r.assert_accepted(&agent.logs());
    assert!(kills >= 3, "only {kills} kills");
    assert!(
        r.duplicated <= bound && r.duplicated <= above_checkpoint,
        "{r:?}\n{}",
        agent.logs()
    );
}
