//! [`Moto`]: the stub AWS endpoint process (`tests/support/moto_front.py` under the venv's
//! python). Owns the child and its log file; talks to it over its `/_front/` control API.
//! Never: shares one stub between tests (its state is per process), or outlives the test.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;

use serde_json::Value;
use tempfile::TempDir;

use super::{
    http_get, http_request, local, require_python, support_dir, wait_until, HttpResponse,
    MOTO_START_TIMEOUT,
};

/// `tests/support/moto_front.py` running on a free port of 127.0.0.1 (moto in server mode, plus
/// CBOR CloudWatch, signed X-Ray sampling endpoints, a request journal and fault injection; see
/// the script's docstring). Killed on drop. One per test: its state is per process.
pub struct Moto {
    child: Child,
    /// Held open: the script exits when it reads EOF, i.e. when we drop it or die.
    _stdin: ChildStdin,
    port: u16,
    log_path: PathBuf,
    _dir: TempDir,
}

impl Moto {
    /// Starts the stub and waits until `GET /moto-api/` answers. Panics (with its log) if it
    /// does not come up within a minute.
    pub fn start() -> Moto {
        Moto::start_with_args(&[])
    }

    /// [`Moto::start`] with more `moto_front.py` arguments (`--quiet`,
    /// `--record-body-limit 0` for tests that send too much to journal).
    pub fn start_with_args(extra: &[&str]) -> Moto {
        let py = require_python();
        let dir = tempfile::Builder::new()
            .prefix("cloudtail-moto-")
            .tempdir()
            .expect("temp dir");
        let log_path = dir.path().join("moto_front.log");
        let log = File::create(&log_path).expect("create moto log");
        let mut child = Command::new(&py)
            .arg(support_dir().join("moto_front.py"))
            .args(["--host", "127.0.0.1", "--port", "0", "--exit-on-stdin-eof"])
            .args(extra)
            .env("PYTHONUNBUFFERED", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {} (run scripts/setup to create the venv): {e}",
                    py.display()
                )
            });
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            for line in lines.by_ref() {
                let Ok(line) = line else { break };
                if let Some(addr) = line.strip_prefix("listening on ") {
                    let _ = tx.send(addr.trim().to_string());
                    break;
                }
            }
            // Keep draining so the child can never block on a full pipe.
            for _ in lines {}
        });
        let mut moto = Moto {
            child,
            _stdin: stdin,
            port: 0,
            log_path,
            _dir: dir,
        };
        let addr = match rx.recv_timeout(MOTO_START_TIMEOUT) {
            Ok(addr) => addr,
            Err(_) => panic!(
                "moto_front.py did not print its port within {MOTO_START_TIMEOUT:?} \
                 (status {:?}); its log:\n{}",
                moto.child.try_wait(),
                moto.log()
            ),
        };
        moto.port = addr
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("moto_front.py printed a bad address {addr:?}"));
        let up = wait_until(MOTO_START_TIMEOUT, || {
            http_get(moto.addr(), "/moto-api/").is_ok_and(|r| r.status == 200)
        });
        assert!(
            up,
            "moto_front.py does not answer on {addr}; its log:\n{}",
            moto.log()
        );
        moto
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> SocketAddr {
        local(self.port)
    }

    /// `http://127.0.0.1:<port>`, for `--endpoint` / `AWS_ENDPOINT_URL` / SDK clients.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The journal of AWS requests so far, oldest first: objects with `seq`, `time`, `method`,
    /// `path`, `protocol`, `target`, `operation`, `headers` (Authorization,
    /// X-Amzn-Xray-Timestamp, x-amzn-logs-format, Content-Encoding, Content-Type when present),
    /// `body_bytes`, `body` (decoded JSON or null), `status`, `fault`.
    pub fn requests(&self) -> Vec<Value> {
        let resp = self.control("GET", "/_front/requests", None);
        match resp.json() {
            Value::Array(items) => items,
            other => panic!("/_front/requests is not a list: {other}"),
        }
    }

    /// [`Moto::requests`] whose `operation` is `operation` (e.g. `PutTraceSegments`).
    pub fn requests_for(&self, operation: &str) -> Vec<Value> {
        self.requests()
            .into_iter()
            .filter(|r| r["operation"] == operation)
            .collect()
    }

    /// Adds a fault rule (`POST /_front/faults`): `{"status": 503, "count": N}`,
    /// `{"throttle": N}`, `{"down": true}` (optionally `"mode": "503"`), `{"down": false}`,
    /// `{"delay": SECONDS}` (optionally `"count": N`), `"every": K` with status/throttle (only
    /// every K-th matching request fails), `{"clear": true}`; `"operation"` / `"path"` restrict a rule to some requests. Faults hit
    /// every AWS request that matches, the tests' own SDK clients' included.
    pub fn inject_faults(&self, fault: Value) {
        self.control("POST", "/_front/faults", Some(&fault));
    }

    /// The stub's container credentials route, for `AWS_CONTAINER_CREDENTIALS_FULL_URI`: each
    /// call hands out a new key whose `Expiration` is `ttl_secs` ahead; requests signed with it
    /// more than `valid_secs` after it was handed out get `ExpiredTokenException`.
    pub fn credentials_uri(&self, ttl_secs: u64, valid_secs: u64) -> String {
        format!(
            "{}/_front/credentials?ttl={ttl_secs}&valid={valid_secs}",
            self.endpoint()
        )
    }

    /// (keys handed out by [`Moto::credentials_uri`], requests refused as expired).
    pub fn issued_keys(&self) -> (u64, u64) {
        let doc = self
            .control("GET", "/_front/credentials/issued", None)
            .json();
        let n = |k: &str| doc[k].as_u64().unwrap_or(0);
        (n("issued"), n("rejected"))
    }

    /// Clears the journal and the faults, and resets moto's state.
    pub fn reset(&self) {
        self.control("POST", "/_front/reset", Some(&Value::Null));
    }

    /// What the stub logged on stderr (one line per request, SigV4 rejections, tracebacks).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    fn control(&self, method: &str, path: &str, body: Option<&Value>) -> HttpResponse {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let resp = http_request(
            self.addr(),
            method,
            path,
            &[("Content-Type", "application/json")],
            body.as_bytes(),
        )
        .unwrap_or_else(|e| panic!("{method} {path} on moto_front: {e}\n{}", self.log()));
        assert_eq!(
            resp.status,
            200,
            "{method} {path} on moto_front: {}",
            resp.text()
        );
        resp
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(60).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            eprintln!(
                "---- moto_front.py log (last {} lines) ----\n{}",
                tail.len(),
                tail.join("\n")
            );
        }
    }
}
