//! `state_dir` full, then read-only: the agent keeps shipping, warns, and retries writing its
//! checkpoints; once the directory takes writes again a checkpoint covering what was shipped
//! is on disk. The directory is a small tmpfs mounted for the test (the suite runs as root),
//! unmounted by a guard whatever happens.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::load::{self, landed_lines};
use crate::support::logs::log_events;
use crate::support::{wait_until, Agent};
use crate::{checkpointed, scaled, Rig, Row};

const LINE_BYTES: usize = 100;
const WARNING: &str = "Could not write checkpoints.";

/// A tmpfs mounted over a directory, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        let opts = format!("size={size}");
        run(&["mount", "-t", "tmpfs", "-o", &opts, "tmpfs", path_str(dir)]);
        Tmpfs(dir.to_path_buf())
    }

    fn remount(&self, mode: &str) {
        let opts = format!("remount,{mode}");
        run(&["mount", "-o", &opts, path_str(&self.0)]);
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

fn run(argv: &[&str]) {
    let status = Command::new(argv[0])
        .args(&argv[1..])
        .status()
        .unwrap_or_else(|e| panic!("{argv:?}: {e}"));
    assert!(
        status.success(),
        "{argv:?} failed ({status}): this scenario needs root (mount)"
    );
}

/// Fills the file system under `dir` with one file, until it refuses.
fn fill(dir: &Path) -> PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut file = std::fs::File::create(&path).expect("create filler");
    let block = vec![0u8; 4096];
    while file.write_all(&block).is_ok() {}
    path
}

/// Lines landed in the stream so far.
async fn landed(rig: &Rig) -> usize {
    log_events(&rig.endpoint, "/faults/state", "app")
        .await
        .len()
}

/// Holds the fault for `hold`; asserts the agent warned and that lines written during the
/// fault landed meanwhile; returns the checkpoint seen on disk during it.
async fn hold_fault(rig: &Rig, agent: &Agent, lines: &load::Producer, hold: Duration, what: &str) {
    let warnings_before = agent.stdout().matches(WARNING).count();
    let start = Instant::now();
    let written_at_start = lines.count();
    std::thread::sleep(hold);
    let shipped = landed(rig).await;
    assert!(
        shipped > written_at_start,
        "with {what}, lines must still ship: {shipped} landed, {written_at_start} written before it\n{}",
        agent.logs()
    );
    let warned = agent.stdout().matches(WARNING).count() > warnings_before;
    assert!(warned, "with {what}, the agent must warn\n{}", agent.logs());
    eprintln!("{what}: held {:?}, {shipped} lines landed", start.elapsed());
}

/// Waits until the checkpoint on disk covers `bytes` written so far.
fn wait_checkpoint(rig: &Rig, agent: &Agent, lines: &load::Producer, what: &str) {
    let target = (lines.count() * (LINE_BYTES + 1)) as u64;
    let caught_up = wait_until(Duration::from_secs(30), || {
        checkpointed(&rig.state_dir()) >= target
    });
    assert!(
        caught_up,
        "after {what}, a checkpoint of at least {target} bytes must be written (on disk: {})\n{}",
        checkpointed(&rig.state_dir()),
        agent.logs()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn state_dir_full_or_read_only_keeps_shipping_and_checkpoints_later() {
    let hold = scaled(Duration::from_secs(60), Duration::from_secs(15));
    let moto = crate::support::Moto::start_with_args(&["--quiet"]);
    let rig = Rig::new(&moto).with_file("app.log", "/faults/state", "app");
    let state = Tmpfs::mount(&rig.state_dir(), "256k");
    let path = rig.log_path("app.log");
    std::fs::write(&path, b"").expect("create app.log");
    let agent = rig.start();
    let lines = load::lines(&path, 100.0, LINE_BYTES);
    wait_checkpoint(&rig, &agent, &lines, "start");

    let filler = fill(&rig.state_dir());
    hold_fault(&rig, &agent, &lines, hold, "state_dir full").await;
    std::fs::remove_file(&filler).expect("remove filler");
    wait_checkpoint(&rig, &agent, &lines, "freeing space");

    state.remount("ro");
    hold_fault(&rig, &agent, &lines, hold, "state_dir read-only").await;
    state.remount("rw");
    wait_checkpoint(&rig, &agent, &lines, "remounting read-write");

    let sent = lines.finish();
    let counts = landed_lines(
        &rig.endpoint,
        "/faults/state",
        "app",
        sent,
        Duration::from_secs(60),
    )
    .await;
    let on_disk = checkpointed(&rig.state_dir());
    let mut r = Row::new("state_dir full, ro", "lines", &counts, 0, &agent);
    r.note = format!(
        "checkpoint on disk {on_disk} of {} bytes",
        (sent * (LINE_BYTES + 1))
    );
    r.print();
    r.assert_accepted(&agent.logs());
    assert_eq!(r.duplicated, 0, "{r:?}\n{}", agent.logs());
    drop(agent);
    drop(state);
}
