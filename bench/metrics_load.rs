//! Load generators for the metrics benchmark: EMF documents over TCP and StatsD lines over UDP,
//! shaped like what the `aws-embedded-metrics` and StatsD clients send.
//!
//! ```text
//! metrics_load emf --to 127.0.0.1:P --count N [--connections C] [--series S]
//! metrics_load statsd --to 127.0.0.1:P --count N [--rate R] [--per-datagram K] [--series S]
//! ```
//!
//! `emf` writes N documents (one JSON object per line, about 420 bytes each) as fast as the
//! connections take them, split over C connections (default 1), 256 documents per write, from
//! 16,384 distinct documents prepared before the first write (the `RequestId`s repeat after
//! that). Each document has the `_aws` metadata of the client library (now as its timestamp, namespace
//! `Bench/EMF`, one dimension set `[Service, Operation]` with S operations, default 1,000), two
//! metrics with the value 1 (`Latency`, Milliseconds; `Requests`, Count), and a unique
//! `RequestId` and a trace id like the library's properties. So N documents carry 2N samples
//! whose values sum to 2N, in 2S series. The timestamp is the generator's start.
//!
//! `statsd` sends N counter increments `bench.requests:1|c|#service:svc,operation:opK` (S
//! series, default 1,000), K lines per datagram (default 20), paced at R lines/s (default
//! 200,000) in 1 ms bursts. The counters sum to N.
//!
//! Each prints one line when done: `sent N <what> in T s (R/s) over D <writes|datagrams>`.

use std::io::Write;
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

struct Args {
    to: SocketAddr,
    count: u64,
    connections: u64,
    series: u64,
    rate: u64,
    per_datagram: u64,
}

fn parse(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut parsed = Args {
        to: SocketAddr::from(([127, 0, 0, 1], 25888)),
        count: 100_000,
        connections: 1,
        series: 1_000,
        rate: 200_000,
        per_datagram: 20,
    };
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        let number = || value.parse::<u64>().map_err(|e| format!("{flag}: {e}"));
        match flag.as_str() {
            "--to" => parsed.to = value.parse().map_err(|e| format!("--to: {e}"))?,
            "--count" => parsed.count = number()?,
            "--connections" => parsed.connections = number()?.max(1),
            "--series" => parsed.series = number()?.max(1),
            "--rate" => parsed.rate = number()?.max(1),
            "--per-datagram" => parsed.per_datagram = number()?.max(1),
            other => return Err(format!("unknown flag {other}")),
        }
    }
    Ok(parsed)
}

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}

/// One EMF document as the Python client library writes it (one line).
fn document(out: &mut Vec<u8>, seq: u64, series: u64, timestamp_ms: u128) {
    let op = seq % series;
    let _ = writeln!(
        out,
        "{{\"_aws\":{{\"Timestamp\":{timestamp_ms},\"CloudWatchMetrics\":[{{\"Namespace\":\"Bench/EMF\",\
         \"Dimensions\":[[\"Service\",\"Operation\"]],\"Metrics\":[{{\"Name\":\"Latency\",\"Unit\":\"Milliseconds\"}},\
         {{\"Name\":\"Requests\",\"Unit\":\"Count\"}}]}}]}},\"Service\":\"checkout\",\"Operation\":\"op{op:04}\",\
         \"Latency\":1,\"Requests\":1,\"RequestId\":\"{seq:016x}-0000-4000-8000-000000000000\",\
         \"traceId\":\"1-{:08x}-{seq:024x}\",\"executionEnvironment\":\"bench\"}}",
        (timestamp_ms / 1000) as u64
    );
}

/// Documents per write, and distinct chunks prepared before sending (so the generator costs
/// little more than its `write` calls; 16,384 distinct documents, about 7 MB).
const DOCS_PER_WRITE: u64 = 256;
const CHUNKS: u64 = 64;

fn emf(args: &Args) -> std::io::Result<()> {
    let timestamp = now_ms();
    let chunks: Vec<Vec<u8>> = (0..CHUNKS)
        .map(|c| {
            let mut buf = Vec::with_capacity((DOCS_PER_WRITE * 480) as usize);
            for i in 0..DOCS_PER_WRITE {
                document(&mut buf, c * DOCS_PER_WRITE + i, args.series, timestamp);
            }
            buf
        })
        .collect();
    let chunks = std::sync::Arc::new(chunks);
    let started = Instant::now();
    let per_connection = args.count / args.connections;
    let writers: Vec<_> = (0..args.connections)
        .map(|c| {
            let to = args.to;
            let chunks = std::sync::Arc::clone(&chunks);
            let count = if c + 1 == args.connections {
                args.count - per_connection * c
            } else {
                per_connection
            };
            std::thread::spawn(move || -> std::io::Result<u64> {
                let mut stream = TcpStream::connect(to)?;
                let mut writes = 0u64;
                let mut left = count;
                while left > 0 {
                    let chunk = &chunks[(writes % CHUNKS) as usize];
                    let docs = left.min(DOCS_PER_WRITE);
                    let bytes = if docs == DOCS_PER_WRITE {
                        &chunk[..]
                    } else {
                        // The first `docs` lines of the chunk.
                        let end = chunk
                            .iter()
                            .enumerate()
                            .filter(|(_, &b)| b == b'\n')
                            .nth(docs as usize - 1)
                            .map_or(chunk.len(), |(i, _)| i + 1);
                        &chunk[..end]
                    };
                    stream.write_all(bytes)?;
                    writes += 1;
                    left -= docs;
                }
                stream.flush()?;
                Ok(writes)
            })
        })
        .collect();
    let mut writes = 0;
    for writer in writers {
        writes += writer
            .join()
            .map_err(|_| std::io::Error::other("writer panicked"))??;
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "sent {} documents in {secs:.3} s ({:.0}/s) over {writes} writes",
        args.count,
        args.count as f64 / secs
    );
    Ok(())
}

fn statsd(args: &Args) -> std::io::Result<()> {
    let socket = UdpSocket::bind("127.0.0.1:0")?;
    socket.connect(args.to)?;
    let started = Instant::now();
    let mut sent = 0u64;
    let mut datagrams = 0u64;
    let mut buf = Vec::with_capacity(2048);
    let per_burst = (args.rate / 1000).max(1);
    while sent < args.count {
        // Where the schedule says we should be; send up to there, then sleep to the next ms.
        let due = (started.elapsed().as_secs_f64() * args.rate as f64) as u64 + per_burst;
        while sent < args.count.min(due) {
            buf.clear();
            let lines = args.per_datagram.min(args.count - sent);
            for i in 0..lines {
                if i > 0 {
                    buf.push(b'\n');
                }
                let op = (sent + i) % args.series;
                let _ = write!(
                    buf,
                    "bench.requests:1|c|#service:checkout,operation:op{op:04}"
                );
            }
            // A full socket buffer is the agent's to count as drops; the sender keeps going.
            let _ = socket.send(&buf);
            sent += lines;
            datagrams += 1;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "sent {sent} lines in {secs:.3} s ({:.0}/s) over {datagrams} datagrams",
        sent as f64 / secs
    );
    Ok(())
}

fn main() {
    let mut argv = std::env::args().skip(1);
    let what = argv.next().unwrap_or_default();
    let result = parse(argv).and_then(|args| {
        match what.as_str() {
            "emf" => emf(&args),
            "statsd" => statsd(&args),
            other => return Err(format!("unknown generator '{other}' (emf, statsd)")),
        }
        .map_err(|e| e.to_string())
    });
    if let Err(error) = result {
        eprintln!("metrics_load: {error}");
        std::process::exit(2);
    }
}
