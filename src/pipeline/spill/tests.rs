//! The spill against real files: order, restarts, the cap, torn and corrupt records.

use std::sync::atomic::Ordering;

use super::*;

fn doc(n: usize, size: usize) -> Vec<u8> {
    let mut d = format!("doc-{n:06}-").into_bytes();
    d.resize(size, b'x');
    d
}

/// Everything left, oldest first, committing as it goes.
fn drain(spill: &Spill) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while let Some(d) = spill.peek() {
        spill.commit();
        out.push(d);
    }
    out
}

/// The spill files of `dir` (not the cursor), by id.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut f: Vec<PathBuf> = fs::read_dir(dir)
        .expect("dir")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "spill"))
        .collect();
    f.sort();
    f
}

#[test]
fn records_come_back_in_order_across_files_and_read_files_are_deleted() {
    let dir = tempfile::tempdir().expect("dir");
    let spill = Spill::open(dir.path(), 4 << 20).expect("open");
    let docs: Vec<Vec<u8>> = (0..100).map(|n| doc(n, 10_000)).collect();
    for d in &docs {
        assert!(spill.append(d));
    }
    assert!(spill.is_backlogged());
    assert!(files(dir.path()).len() > 1, "rolled to several files");
    // Peek without commit does not advance.
    assert_eq!(spill.peek().as_ref(), Some(&docs[0]));
    assert_eq!(spill.peek().as_ref(), Some(&docs[0]));
    assert_eq!(drain(&spill), docs);
    assert!(!spill.is_backlogged());
    assert_eq!(
        files(dir.path()).len(),
        1,
        "only the file being written is kept"
    );
    let c = spill.counters();
    assert_eq!(c.written.load(Ordering::Relaxed), 100);
    assert_eq!(c.replayed.load(Ordering::Relaxed), 100);
    assert_eq!(c.corrupt.load(Ordering::Relaxed), 0);
    // Appending after a full read goes on in the same file.
    assert!(spill.append(b"late"));
    assert_eq!(drain(&spill), vec![b"late".to_vec()]);
}

#[test]
fn a_restart_replays_what_was_left_then_what_comes_next() {
    let dir = tempfile::tempdir().expect("dir");
    let spill = Spill::open(dir.path(), 4 << 20).expect("open");
    for n in 0..30 {
        assert!(spill.append(&doc(n, 5_000)));
    }
    for n in 0..10 {
        assert_eq!(spill.peek(), Some(doc(n, 5_000)));
        spill.commit();
    }
    // A crash: the read position was not saved, so the read part of the unfinished file
    // comes again (at-least-once), in order.
    drop(spill);
    let spill = Spill::open(dir.path(), 4 << 20).expect("reopen");
    assert!(spill.is_backlogged());
    assert!(spill.append(&doc(30, 5_000)));
    let first = spill.peek().expect("records");
    let start: usize = std::str::from_utf8(&first[4..10])
        .expect("utf-8")
        .parse()
        .expect("number");
    assert!(start <= 10, "started at {start}");
    for n in start..20 {
        assert_eq!(spill.peek(), Some(doc(n, 5_000)));
        spill.commit();
    }
    // A stop that saves the read position: nothing is sent twice.
    spill.save_cursor();
    drop(spill);
    let spill = Spill::open(dir.path(), 4 << 20).expect("reopen");
    let expected: Vec<Vec<u8>> = (20..=30).map(|n| doc(n, 5_000)).collect();
    assert_eq!(drain(&spill), expected);
}

#[test]
fn a_torn_tail_is_skipped_and_counted() {
    let dir = tempfile::tempdir().expect("dir");
    let spill = Spill::open(dir.path(), 4 << 20).expect("open");
    for n in 0..3 {
        assert!(spill.append(&doc(n, 100)));
    }
    drop(spill);
    let path = files(dir.path()).pop().expect("a file");
    let len = fs::metadata(&path).expect("meta").len();
    let file = OpenOptions::new().write(true).open(&path).expect("open");
    file.set_len(len - 5).expect("truncate");
    let spill = Spill::open(dir.path(), 4 << 20).expect("reopen");
    assert_eq!(drain(&spill), vec![doc(0, 100), doc(1, 100)]);
    assert_eq!(spill.counters().corrupt.load(Ordering::Relaxed), 1);
    assert!(
        spill.append(b"after"),
        "the spill goes on after a torn tail"
    );
    assert_eq!(drain(&spill), vec![b"after".to_vec()]);
}

#[test]
fn a_corrupt_record_in_the_middle_is_skipped_and_the_rest_read() {
    let dir = tempfile::tempdir().expect("dir");
    let spill = Spill::open(dir.path(), 4 << 20).expect("open");
    for n in 0..5 {
        assert!(spill.append(&doc(n, 100)));
    }
    drop(spill);
    let path = files(dir.path()).pop().expect("a file");
    let mut bytes = fs::read(&path).expect("read");
    let record = HEADER_BYTES + 100;
    bytes[record + HEADER_BYTES + 20] ^= 0xff; // a payload byte of record 1
    bytes[3 * record + 5] ^= 0xff; // the length of record 3
    fs::write(&path, &bytes).expect("write");
    let spill = Spill::open(dir.path(), 4 << 20).expect("reopen");
    assert_eq!(drain(&spill), vec![doc(0, 100), doc(2, 100), doc(4, 100)]);
    assert_eq!(spill.counters().corrupt.load(Ordering::Relaxed), 2);
}

#[test]
fn garbage_between_records_is_skipped_up_to_the_next_record() {
    let dir = tempfile::tempdir().expect("dir");
    let mut bytes = Vec::new();
    record::encode(b"one", &mut bytes);
    bytes.extend_from_slice(b"CTS1 not a record, just noise CT");
    record::encode(b"two", &mut bytes);
    fs::write(dir.path().join("0000000000000007.spill"), &bytes).expect("write");
    fs::write(dir.path().join("notes.txt"), b"ignored").expect("write");
    let spill = Spill::open(dir.path(), 1 << 20).expect("open");
    assert_eq!(drain(&spill), vec![b"one".to_vec(), b"two".to_vec()]);
    assert_eq!(spill.counters().corrupt.load(Ordering::Relaxed), 1);
    assert!(spill.append(b"three"));
    assert!(
        dir.path().join("0000000000000008.spill").exists(),
        "new files take the next id"
    );
}

#[test]
fn a_full_spill_drops_its_oldest_records_and_counts_them() {
    let dir = tempfile::tempdir().expect("dir");
    let cap = 300_000;
    let spill = Spill::open(dir.path(), cap).expect("open");
    let size = 10_000;
    for n in 0..100 {
        assert!(spill.append(&doc(n, size)), "record {n}");
        let on_disk: u64 = files(dir.path())
            .iter()
            .map(|p| fs::metadata(p).expect("meta").len())
            .sum();
        assert!(on_disk <= cap, "{on_disk} bytes on disk");
    }
    let c = spill.counters();
    let dropped = c.dropped.load(Ordering::Relaxed) as usize;
    assert!(dropped > 0);
    let got = drain(&spill);
    assert_eq!(got.len() + dropped, 100, "every record read or counted");
    let expected: Vec<Vec<u8>> = (dropped..100).map(|n| doc(n, size)).collect();
    assert_eq!(got, expected, "the newest kept, in order");
    assert!(
        !spill.append(&vec![0u8; cap as usize]),
        "larger than the cap"
    );
}

#[test]
fn an_unwritable_directory_is_an_error_at_open() {
    let dir = tempfile::tempdir().expect("dir");
    let blocker = dir.path().join("file");
    fs::write(&blocker, b"x").expect("write");
    assert!(Spill::open(&blocker.join("spill"), 1 << 20).is_err());
}

#[tokio::test]
async fn replay_waits_for_budget_and_keeps_the_order() {
    let dir = tempfile::tempdir().expect("dir");
    let spill = Arc::new(Spill::open(dir.path(), 4 << 20).expect("open"));
    for n in 0..20 {
        assert!(spill.append(&doc(n, 100)));
    }
    let budget = Budget::new(1_000);
    let held = budget.try_acquire(900).expect("fill the budget");
    let (tx, mut rx) = mpsc::channel(100);
    let token = CancellationToken::new();
    let task = tokio::spawn(replay(
        Arc::clone(&spill),
        budget.clone(),
        tx,
        |payload, permit| Some((payload, permit)),
        token.clone(),
    ));
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(rx.try_recv().is_err(), "no budget, nothing replayed");
    assert!(spill.is_backlogged(), "still on disk");
    drop(held);
    for n in 0..20 {
        let (payload, permit) = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .ok()
            .flatten()
            .expect("replayed");
        assert_eq!(payload, doc(n, 100));
        drop(permit);
    }
    assert!(!spill.is_backlogged());
    token.cancel();
    task.await.expect("replay ends on cancel");
}
