//! Sends X-Ray segment datagrams at a steady rate, for benchmarks.
//!
//! Each datagram is what an X-Ray SDK emits: the `{"format":"json","version":1}` header, a
//! newline, and a ~1 KB segment (HTTP request and response, EC2 and SDK facts, annotations,
//! two subsegments) whose segment id, subsegment ids and trace id are unique per
//! datagram and well formed. The segment is laid out once; each send only rewrites the id
//! digits in place, so the sender stays cheap next to the agent it measures.
//!
//! `udp_flood [--to IP:PORT] [--count N] [--rate R] [--burst B]` sends N datagrams (default
//! 100,000) to the address (default 127.0.0.1:2000) at R per second (default 0 = as fast as
//! possible), paced in bursts of B datagrams (default: a millisecond's worth, R / 1000; 1 spreads
//! them evenly, as independent SDK clients would), with `sendmmsg` (up to 64 per call). It ends
//! by printing one line:
//! `sent N segments (B bytes each) in S s: R segments/s (target T/s), F failed`.
//! It never reads from the socket and never retries a failed send (it counts it).

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Datagrams per `sendmmsg` call.
const BATCH: usize = 64;

/// The X-Ray daemon protocol header.
const HEADER: &str = "{\"format\":\"json\",\"version\":1}\n";

#[derive(Debug, Clone, Copy)]
struct Options {
    to: SocketAddr,
    count: u64,
    rate: u64,
    /// Datagrams sent together when paced; 0 = a millisecond's worth (rate / 1000).
    burst: u64,
}

fn parse_options() -> Result<Options, String> {
    let mut options = Options {
        to: SocketAddr::from(([127, 0, 0, 1], 2000)),
        count: 100_000,
        rate: 0,
        burst: 0,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--to" => options.to = value.parse().map_err(|e| format!("--to: {e}"))?,
            "--count" => options.count = value.parse().map_err(|e| format!("--count: {e}"))?,
            "--rate" => options.rate = value.parse().map_err(|e| format!("--rate: {e}"))?,
            "--burst" => options.burst = value.parse().map_err(|e| format!("--burst: {e}"))?,
            other => {
                return Err(format!(
                    "unknown argument {other:?}; usage: udp_flood [--to IP:PORT] [--count N] [--rate R] [--burst B]"
                ))
            }
        }
    }
    Ok(options)
}

/// Where the per-datagram digits go in the datagram.
#[derive(Debug, Clone, Copy)]
enum Slot {
    /// The segment id (16 hex digits).
    SegmentId(usize),
    /// The `k`-th subsegment id (16 hex digits).
    SubsegmentId(usize, u64),
    /// The last 16 of the trace id's 24 random hex digits.
    TraceRandom(usize),
}

/// A datagram laid out once, and the places its ids are rewritten.
struct Template {
    bytes: Vec<u8>,
    slots: Vec<Slot>,
    seed: u64,
}

impl Template {
    fn new() -> Template {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let seed =
            u64::from(now.subsec_nanos()) ^ (now.as_secs() << 32) ^ u64::from(std::process::id());
        let epoch = now.as_secs();
        let start = now.as_secs_f64();
        let (s1, s2, s3) = (start + 0.002, start + 0.031, start + 0.060);
        // Markers of the same width as the digits they stand for; replaced below.
        let segment = format!(
            concat!(
                r#"{{"trace_id":"1-{epoch:08x}-{seed8:08x}@@TRACE@@@@@@@@@","id":"@@SEG@@@@@@@@@@@","#,
                r#""name":"checkout-service","start_time":{start:.6},"end_time":{end:.6},"#,
                r#""origin":"AWS::EC2::Instance","service":{{"version":"1.4.2"}},"#,
                r#""http":{{"request":{{"method":"POST","url":"https://api.example.com/cart/checkout","#,
                r#""client_ip":"203.0.113.7","x_forwarded_for":true}},"#,
                r#""response":{{"status":200,"content_length":512}}}},"#,
                r#""aws":{{"ec2":{{"instance_id":"i-0b5a4a8c7d6e5f4a3","availability_zone":"us-east-1a"}},"#,
                r#""xray":{{"sdk":"X-Ray for Java","sdk_version":"2.14.0","auto_instrumentation":false}}}},"#,
                r#""annotations":{{"customer_tier":"gold","cart_items":3}},"#,
                r#""subsegments":["#,
                r#"{{"id":"@@SUB0@@@@@@@@@@","name":"DynamoDB","start_time":{s1:.6},"end_time":{s2:.6},"#,
                r#""namespace":"aws","aws":{{"operation":"GetItem","region":"us-east-1","#,
                r#""request_id":"UJ9B2K7QF4O3V5N0R8T6M1L2H3G4","table_name":"carts"}},"#,
                r#""http":{{"response":{{"status":200,"content_length":140}}}}}},"#,
                r#"{{"id":"@@SUB1@@@@@@@@@@","name":"payments.example.com","start_time":{s2:.6},"end_time":{s3:.6},"#,
                r#""namespace":"remote","http":{{"request":{{"method":"POST","url":"https://payments.example.com/v1/charge"}},"#,
                r#""response":{{"status":201,"content_length":88}}}}}}]}}"#,
            ),
            epoch = epoch,
            seed8 = seed as u32,
            start = start,
            end = start + 0.075,
            s1 = s1,
            s2 = s2,
            s3 = s3,
        );
        let bytes = format!("{HEADER}{segment}").into_bytes();
        let find = |marker: &str| {
            bytes
                .windows(marker.len())
                .position(|w| w == marker.as_bytes())
                .unwrap_or_else(|| panic!("marker {marker} in the template"))
        };
        let slots = vec![
            Slot::TraceRandom(find("@@TRACE@@@@@@@@@")),
            Slot::SegmentId(find("@@SEG@@@@@@@@@@@")),
            Slot::SubsegmentId(find("@@SUB0@@@@@@@@@@"), 1),
            Slot::SubsegmentId(find("@@SUB1@@@@@@@@@@"), 2),
        ];
        let mut template = Template { bytes, slots, seed };
        let mut first = template.bytes.clone();
        template.write(&mut first, 0);
        template.bytes = first;
        template
    }

    /// Writes the ids of datagram `n` into `buffer` (a copy of the template).
    fn write(&self, buffer: &mut [u8], n: u64) {
        for slot in &self.slots {
            match *slot {
                Slot::TraceRandom(at) => write_hex16(&mut buffer[at..at + 16], self.id(n, 3)),
                Slot::SegmentId(at) => write_hex16(&mut buffer[at..at + 16], self.id(n, 0)),
                Slot::SubsegmentId(at, k) => {
                    write_hex16(&mut buffer[at..at + 16], self.id(n, k));
                }
            }
        }
    }

    /// A distinct 64-bit id per (n, k): multiplying by an odd constant is a bijection.
    fn id(&self, n: u64, k: u64) -> u64 {
        (n.wrapping_mul(4).wrapping_add(k) ^ self.seed).wrapping_mul(0x9E37_79B9_7F4A_7C15)
    }
}

fn write_hex16(out: &mut [u8], value: u64) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = DIGITS[((value >> (60 - 4 * i)) & 0xf) as usize];
    }
}

/// Sends `buffers[..n]` with one `sendmmsg`; returns how many went out, or the error.
fn send_batch(socket: &UdpSocket, buffers: &mut [Vec<u8>], n: usize) -> std::io::Result<usize> {
    let mut iovecs: Vec<libc::iovec> = buffers[..n]
        .iter_mut()
        .map(|b| libc::iovec {
            iov_base: b.as_mut_ptr().cast(),
            iov_len: b.len(),
        })
        .collect();
    // SAFETY: mmsghdr is plain data; all-zero is a valid empty header.
    let mut headers: Vec<libc::mmsghdr> = vec![unsafe { std::mem::zeroed() }; n];
    for (header, iovec) in headers.iter_mut().zip(iovecs.iter_mut()) {
        header.msg_hdr.msg_iov = iovec;
        header.msg_hdr.msg_iovlen = 1;
    }
    // SAFETY: a connected socket; each header points at one live iovec over a live buffer.
    let sent = unsafe { libc::sendmmsg(socket.as_raw_fd(), headers.as_mut_ptr(), n as u32, 0) };
    if sent < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(sent as usize)
    }
}

fn main() -> std::process::ExitCode {
    let options = match parse_options() {
        Ok(options) => options,
        Err(error) => {
            eprintln!("udp_flood: {error}");
            return std::process::ExitCode::from(2);
        }
    };
    let bind = if options.to.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    };
    let socket = match UdpSocket::bind(bind).and_then(|s| s.connect(options.to).map(|()| s)) {
        Ok(socket) => socket,
        Err(error) => {
            eprintln!("udp_flood: cannot open a socket to {}: {error}", options.to);
            return std::process::ExitCode::FAILURE;
        }
    };
    let template = Template::new();
    let mut buffers: Vec<Vec<u8>> = (0..BATCH).map(|_| template.bytes.clone()).collect();
    let (sent, failed, elapsed) = flood(&socket, &template, &mut buffers, options);
    let seconds = elapsed.as_secs_f64();
    println!(
        "sent {sent} segments ({} bytes each) in {seconds:.3} s: {:.0} segments/s (target {}/s), {failed} failed",
        template.bytes.len() - HEADER.len(),
        sent as f64 / seconds.max(1e-9),
        options.rate,
    );
    std::process::ExitCode::SUCCESS
}

/// Sends `options.count` datagrams, paced; returns (sent, failed, time taken).
fn flood(
    socket: &UdpSocket,
    template: &Template,
    buffers: &mut [Vec<u8>],
    options: Options,
) -> (u64, u64, Duration) {
    // A millisecond's worth at a time: few wake-ups at low rates, no large bursts at high ones.
    let burst = match options.burst {
        0 => (options.rate / 1000).max(1),
        burst => burst,
    };
    let start = Instant::now();
    let (mut attempted, mut sent, mut failed) = (0u64, 0u64, 0u64);
    while attempted < options.count {
        let due = if options.rate == 0 {
            options.count
        } else {
            let by_now = (options.rate as f64 * start.elapsed().as_secs_f64()) as u64;
            by_now.min(options.count)
        };
        if due <= attempted {
            let next = (attempted + burst).min(options.count) as f64 / options.rate as f64;
            let wait = Duration::from_secs_f64(next).saturating_sub(start.elapsed());
            std::thread::sleep(wait);
            continue;
        }
        let n = (due - attempted).min(BATCH as u64) as usize;
        for (i, buffer) in buffers[..n].iter_mut().enumerate() {
            template.write(buffer, attempted + i as u64);
        }
        match send_batch(socket, buffers, n) {
            Ok(count) => {
                sent += count as u64;
                attempted += count.max(1) as u64;
                failed += u64::from(count == 0);
            }
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => {
                // The first datagram of the batch could not go (e.g. ICMP port unreachable).
                attempted += 1;
                failed += 1;
            }
        }
    }
    (sent, failed, start.elapsed())
}
