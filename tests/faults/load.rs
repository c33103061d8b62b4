//! The load the scenarios put on the agent, each on its own thread at a steady rate: numbered
//! log lines appended to a file, numbered X-Ray segments over UDP, numbered EMF documents over
//! one TCP connection; and the tallies of what landed (distinct, lost, duplicated).

use std::io::Write;
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::logs::{count_numbers, log_events};
use crate::support::{xray_datagram, Moto};

/// How often a writer wakes to catch up with its rate.
const TICK: Duration = Duration::from_millis(50);

/// A thread producing numbered items at a rate until stopped.
pub struct Producer {
    stop: Arc<AtomicBool>,
    count: Arc<AtomicUsize>,
    handle: Option<JoinHandle<()>>,
}

impl Producer {
    /// Runs `emit(first, count)` every tick for the items due by then; `emit` returns how many
    /// it delivered (it may block: TCP pushing back).
    fn spawn(per_sec: f64, mut emit: impl FnMut(usize, usize) -> usize + Send + 'static) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let count = Arc::new(AtomicUsize::new(0));
        let (stop2, count2) = (Arc::clone(&stop), Arc::clone(&count));
        let handle = std::thread::spawn(move || {
            let start = Instant::now();
            while !stop2.load(Ordering::Relaxed) {
                let due = (start.elapsed().as_secs_f64() * per_sec) as usize;
                let done = count2.load(Ordering::Relaxed);
                if due > done {
                    let n = emit(done, due - done);
                    count2.fetch_add(n, Ordering::Relaxed);
                }
                std::thread::sleep(TICK);
            }
        });
        Producer {
            stop,
            count,
            handle: Some(handle),
        }
    }

    /// Items delivered so far.
    pub fn count(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    /// Tells the thread to stop after its current tick, without waiting (stop every producer
    /// first, then [`Producer::finish`] each, or the last ones run on while the first are
    /// joined).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// Stops the thread; returns the items delivered.
    pub fn finish(mut self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            h.join().expect("producer thread");
        }
        self.count()
    }
}

impl Drop for Producer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The text of log line `n`, `bytes` long (at least 9) without its newline. The number comes
/// last, so [`count_numbers`] finds it.
pub fn line(n: usize, bytes: usize) -> String {
    let pad = bytes.saturating_sub(9);
    format!("{:x<pad$} {n:08}", "")
}

/// Appends numbered lines of about `bytes` to `path` at `per_sec`.
pub fn lines(path: &Path, per_sec: f64, bytes: usize) -> Producer {
    let path = path.to_path_buf();
    Producer::spawn(per_sec, move |first, n| {
        append_lines(&path, first, n, bytes);
        n
    })
}

/// Appends lines `first..first + n` to `path`.
pub fn append_lines(path: &PathBuf, first: usize, n: usize, bytes: usize) {
    let mut text = String::with_capacity(n * (bytes + 1));
    for i in first..first + n {
        text.push_str(&line(i, bytes));
        text.push('\n');
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .unwrap_or_else(|e| panic!("append to {}: {e}", path.display()));
}

/// Sends segments named `fault-<n>` to `daemon` at `per_sec`.
pub fn segments(daemon: SocketAddr, per_sec: f64) -> Producer {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind udp");
    Producer::spawn(per_sec, move |first, n| {
        for i in first..first + n {
            let (_, body) = crate::support::xray_segment(&format!("fault-{i}"));
            // A full send buffer is not a drop: wait for it.
            while socket.send_to(&xray_datagram(&body), daemon).is_err() {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        n
    })
}

/// Writes EMF documents numbered by `Seq` on one TCP connection to `addr` at `per_sec`; a
/// document counts once `write_all` returned (the kernel took it).
pub fn emf(addr: SocketAddr, per_sec: f64) -> Producer {
    let mut stream = TcpStream::connect(addr).expect("connect to the EMF port");
    Producer::spawn(per_sec, move |first, n| {
        let mut text = String::new();
        for i in first..first + n {
            text.push_str(&emf_document(i));
            text.push('\n');
        }
        stream
            .write_all(text.as_bytes())
            .unwrap_or_else(|e| panic!("write EMF documents: {e}"));
        n
    })
}

/// EMF document `n`.
fn emf_document(n: usize) -> String {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis();
    serde_json::json!({
        "_aws": {
            "Timestamp": now_ms as u64,
            "CloudWatchMetrics": [{
                "Namespace": "Faults",
                "Dimensions": [["Service"]],
                "Metrics": [{"Name": "Requests", "Unit": "Count"}],
            }],
        },
        "Service": "faults",
        "Requests": 1,
        "Seq": n,
    })
    .to_string()
}

/// What landed of `sent` numbered items: (distinct landed, lost, duplicated).
pub fn tally(seen: &[u32]) -> (usize, usize, usize) {
    let landed = seen.iter().filter(|c| **c > 0).count();
    let lost = seen.len() - landed;
    let duplicated = seen.iter().map(|c| c.saturating_sub(1) as usize).sum();
    (landed, lost, duplicated)
}

/// Counts per line number `0..sent` in `group`/`stream`, once every line landed (and two reads
/// agree) or `timeout` passed.
pub async fn landed_lines(
    endpoint: &str,
    group: &str,
    stream: &str,
    sent: usize,
    timeout: Duration,
) -> Vec<u32> {
    settle(timeout, || async {
        let events = log_events(endpoint, group, stream).await;
        let messages: Vec<String> = events.into_iter().map(|(_, m)| m).collect();
        count_numbers(&messages, sent)
    })
    .await
}

/// Counts per EMF `Seq` in `group`/`stream`, as [`landed_lines`].
pub async fn landed_emf(
    endpoint: &str,
    group: &str,
    stream: &str,
    sent: usize,
    timeout: Duration,
) -> Vec<u32> {
    settle(timeout, || async {
        let mut seen = vec![0u32; sent];
        for (_, message) in log_events(endpoint, group, stream).await {
            let doc: Value = serde_json::from_str(&message).unwrap_or_default();
            if let Some(n) = doc["Seq"].as_u64().map(|n| n as usize) {
                if n < sent {
                    seen[n] += 1;
                }
            }
        }
        seen
    })
    .await
}

/// Counts per segment `fault-<n>` in the PutTraceSegments calls X-Ray accepted (the journal).
pub fn landed_segments(moto: &Moto, sent: usize) -> Vec<u32> {
    let mut seen = vec![0u32; sent];
    for request in moto.requests_for("PutTraceSegments") {
        if request["status"] != 200 {
            continue;
        }
        let docs = request["body"]["TraceSegmentDocuments"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        for doc in docs {
            let doc: Value = serde_json::from_str(doc.as_str().unwrap_or("")).unwrap_or_default();
            let n = doc["name"]
                .as_str()
                .and_then(|name| name.strip_prefix("fault-"))
                .and_then(|n| n.parse::<usize>().ok());
            if let Some(n) = n.filter(|n| *n < sent) {
                seen[n] += 1;
            }
        }
    }
    seen
}

/// Polls `read` until every item was seen at least once and two reads in a row agree, or
/// `timeout` passed; returns the last read.
async fn settle<F, Fut>(timeout: Duration, mut read: F) -> Vec<u32>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Vec<u32>>,
{
    let deadline = Instant::now() + timeout;
    let mut previous: Option<Vec<u32>> = None;
    loop {
        let seen = read().await;
        let complete = seen.iter().all(|c| *c > 0);
        if (complete && previous.as_ref() == Some(&seen)) || Instant::now() >= deadline {
            return seen;
        }
        previous = Some(seen);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// The drops the agent counted for X-Ray segments: budget spillover, expired retries,
/// rejections and the kernel's drops.
pub fn counted_segment_drops(metrics: &crate::support::Metrics) -> usize {
    let get = |s: &str| metrics.get(s).unwrap_or(0.0);
    let rejected = metrics
        .sum("cloudtail_xray_segments_rejected_total")
        .unwrap_or(0.0);
    (get("cloudtail_xray_segments_spillover_total")
        + get("cloudtail_xray_segments_expired_total")
        + get("cloudtail_xray_kernel_drops_total")
        + rejected) as usize
}
