//! [`Agent`]: the real `cloudtail` binary (`CARGO_BIN_EXE_cloudtail`) run as a child in its
//! own temp dir, with a hermetic AWS environment. Owns the child and its captured stdout and
//! stderr; talks to its telemetry endpoint (`/healthz`, `/metrics`) and sends it signals.
//! Never: inherits the machine's `AWS_*` variables or config files, or outlives the test.

use std::ffi::OsString;
use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::{
    free_tcp_port, free_udp_port, http_get, local, Metrics, Moto, READY_TIMEOUT, TEST_ACCESS_KEY,
    TEST_REGION, TEST_SECRET_KEY,
};

/// How to start an [`Agent`]; see [`Agent::builder`] and [`Agent::xray_builder`].
#[derive(Debug, Default, Clone)]
pub struct AgentBuilder {
    args: Vec<OsString>,
    envs: Vec<(OsString, OsString)>,
    removed: Vec<OsString>,
    endpoint: Option<String>,
    udp: Option<SocketAddr>,
    tcp: Option<SocketAddr>,
    telemetry: Option<SocketAddr>,
}

impl AgentBuilder {
    /// Appends one command-line argument.
    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Appends command-line arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Sets an environment variable for the agent (`AWS_REGION`, `RUST_LOG`, ...).
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.envs.push((key.into(), value.into()));
        self
    }

    /// Removes a variable the test environment would set (e.g. `AWS_ACCESS_KEY_ID`, so that
    /// the SDK's chain goes on to container credentials).
    pub fn env_remove(mut self, key: impl Into<OsString>) -> Self {
        self.removed.push(key.into());
        self
    }

    /// Sets `AWS_ENDPOINT_URL` (the SDK's own endpoint override).
    pub fn endpoint(mut self, url: impl Into<String>) -> Self {
        self.endpoint = Some(url.into());
        self
    }

    /// Records the telemetry address passed in the args, for [`Agent::metrics`] and
    /// [`Agent::ready`].
    pub fn telemetry_addr(mut self, addr: SocketAddr) -> Self {
        self.telemetry = Some(addr);
        self
    }

    /// Spawns the binary in a fresh temp dir (its working directory) with the test environment:
    /// every inherited `AWS_*` variable removed, then `AWS_ACCESS_KEY_ID=testing`,
    /// `AWS_SECRET_ACCESS_KEY=testing`, `AWS_EC2_METADATA_DISABLED=true`, `AWS_CONFIG_FILE` and
    /// `AWS_SHARED_CREDENTIALS_FILE` pointing at files that do not exist, `AWS_ENDPOINT_URL`
    /// when [`AgentBuilder::endpoint`] was given, and the builder's own variables (which win).
    /// `AWS_REGION` is unset unless the test sets it. stdout and stderr go to files in the dir.
    pub fn start(self) -> Agent {
        let dir = tempfile::Builder::new()
            .prefix("cloudtail-agent-")
            .tempdir()
            .expect("temp dir");
        let stdout_path = dir.path().join("stdout.log");
        let stderr_path = dir.path().join("stderr.log");
        let stdout = File::create(&stdout_path).expect("create stdout.log");
        let stderr = File::create(&stderr_path).expect("create stderr.log");
        let bin = binary();
        let mut cmd = Command::new(&bin);
        cmd.args(&self.args)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr);
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("AWS_") {
                cmd.env_remove(&key);
            }
        }
        cmd.env("AWS_ACCESS_KEY_ID", TEST_ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", TEST_SECRET_KEY)
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_CONFIG_FILE", dir.path().join("no-aws-config"))
            .env(
                "AWS_SHARED_CREDENTIALS_FILE",
                dir.path().join("no-aws-credentials"),
            );
        if let Some(url) = &self.endpoint {
            cmd.env("AWS_ENDPOINT_URL", url);
        }
        cmd.envs(self.envs.iter().map(|(k, v)| (k, v)));
        for key in &self.removed {
            cmd.env_remove(key);
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        Agent {
            child,
            dir,
            stdout_path,
            stderr_path,
            udp: self.udp,
            tcp: self.tcp,
            telemetry: self.telemetry,
            args: self.args,
        }
    }
}

/// The binary under test: `$CLOUDTAIL_TEST_BIN` when set (e.g. the release build, for
/// measurements), else the one cargo built with the tests.
pub fn binary() -> PathBuf {
    match std::env::var_os("CLOUDTAIL_TEST_BIN") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from(env!("CARGO_BIN_EXE_cloudtail")),
    }
}

/// The real `cloudtail` binary, running in its own temp dir. Killed (SIGKILL) on drop; when the
/// test is panicking, its stdout and stderr are printed then.
pub struct Agent {
    child: Child,
    dir: TempDir,
    stdout_path: PathBuf,
    stderr_path: PathBuf,
    udp: Option<SocketAddr>,
    tcp: Option<SocketAddr>,
    telemetry: Option<SocketAddr>,
    args: Vec<OsString>,
}

impl Agent {
    /// An empty builder: no args, test environment.
    pub fn builder() -> AgentBuilder {
        AgentBuilder::default()
    }

    /// Spawns the binary with `args` and the test environment (see [`AgentBuilder::start`]).
    pub fn start<I, S>(args: I) -> Agent
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        Agent::builder().args(args).start()
    }

    /// A builder with only the listening addresses set, on free ports:
    /// `-b 127.0.0.1:<udp> -t 127.0.0.1:<tcp> --telemetry-address 127.0.0.1:<telemetry>`.
    /// For tests that choose the region and endpoint themselves (or deliberately none).
    pub fn ports_builder() -> AgentBuilder {
        let udp = local(free_udp_port());
        let (tcp, telemetry) = loop {
            let (a, b) = (free_tcp_port(), free_tcp_port());
            if a != b {
                break (local(a), local(b));
            }
        };
        let mut builder = Agent::builder().args([
            "-b".to_string(),
            udp.to_string(),
            "-t".to_string(),
            tcp.to_string(),
            "--telemetry-address".to_string(),
            telemetry.to_string(),
        ]);
        builder.udp = Some(udp);
        builder.tcp = Some(tcp);
        builder.telemetry = Some(telemetry);
        builder
    }

    /// [`Agent::ports_builder`] as an X-Ray daemon in local mode in front of `endpoint`:
    /// `-o -n us-east-1 --endpoint <endpoint> -l dev`. More args and env can be added.
    pub fn xray_builder_for(endpoint: &str) -> AgentBuilder {
        Agent::ports_builder().args(["-o", "-n", TEST_REGION, "--endpoint", endpoint, "-l", "dev"])
    }

    /// [`Agent::xray_builder_for`] the emulator.
    pub fn xray_builder(moto: &Moto) -> AgentBuilder {
        Agent::xray_builder_for(&moto.endpoint())
    }

    /// [`Agent::xray_builder`], started and ready (`/healthz` answered 200).
    pub fn start_xray(moto: &Moto) -> Agent {
        let mut agent = Agent::xray_builder(moto).start();
        agent.ready();
        agent
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its working directory (a temp dir removed on drop): put config files here.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The arguments it was started with.
    pub fn args(&self) -> &[OsString] {
        &self.args
    }

    /// The UDP segment address (`-b`), when started by [`Agent::xray_builder`].
    pub fn udp_addr(&self) -> SocketAddr {
        self.udp
            .expect("the agent was not started with a known UDP address")
    }

    /// The TCP sampling-proxy address (`-t`), when started by [`Agent::xray_builder`].
    pub fn tcp_addr(&self) -> SocketAddr {
        self.tcp
            .expect("the agent was not started with a known TCP address")
    }

    /// The telemetry address (`--telemetry-address`), from the builder or [`Agent::wait_ready`].
    pub fn telemetry_addr(&self) -> SocketAddr {
        self.telemetry
            .expect("unknown telemetry address: use Agent::xray_builder, AgentBuilder::telemetry_addr or wait_ready")
    }

    /// Polls `GET /healthz` on `telemetry` until it answers 200; panics with the agent's logs
    /// if it exits first or [`READY_TIMEOUT`] passes. Remembers `telemetry` for
    /// [`Agent::metrics`].
    pub fn wait_ready(&mut self, telemetry: SocketAddr) {
        self.telemetry = Some(telemetry);
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                panic!(
                    "cloudtail exited ({status}) before /healthz answered on {telemetry}\n{}",
                    self.logs()
                );
            }
            if http_get(telemetry, "/healthz").is_ok_and(|r| r.status == 200) {
                return;
            }
            if Instant::now() >= deadline {
                panic!(
                    "cloudtail /healthz on {telemetry} did not answer 200 within {READY_TIMEOUT:?}\n{}",
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// [`Agent::wait_ready`] on the known telemetry address.
    pub fn ready(&mut self) {
        let addr = self.telemetry_addr();
        self.wait_ready(addr);
    }

    /// `GET /metrics`, parsed. Panics if it does not answer 200.
    pub fn metrics(&self) -> Metrics {
        let addr = self.telemetry_addr();
        let resp = http_get(addr, "/metrics")
            .unwrap_or_else(|e| panic!("GET /metrics on {addr}: {e}\n{}", self.logs()));
        assert_eq!(resp.status, 200, "GET /metrics: {}", resp.text());
        Metrics::parse(&resp.text())
    }

    /// One value from `/metrics`: see [`Metrics::value`].
    pub fn metric(&self, series: &str) -> Option<f64> {
        self.metrics().value(series)
    }

    /// Sends SIGTERM.
    pub fn sigterm(&self) {
        self.signal(libc::SIGTERM);
    }

    /// Sends a signal.
    pub fn signal(&self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.child.id()).expect("pid fits pid_t");
        // SAFETY: kill(2) has no memory effects; the pid is our own child, not yet reaped
        // (we reap only in wait_exit / kill9 / drop, which take &mut self).
        let rc = unsafe { libc::kill(pid, signal) };
        assert_eq!(
            rc,
            0,
            "kill({pid}, {signal}): {}",
            std::io::Error::last_os_error()
        );
    }

    /// Waits for the process to exit; panics with its logs after `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            if Instant::now() >= deadline {
                panic!("cloudtail did not exit within {timeout:?}\n{}", self.logs());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The exit status if it has exited, without waiting.
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("try_wait")
    }

    /// SIGKILL, and reap.
    pub fn kill9(&mut self) -> ExitStatus {
        let _ = self.child.kill();
        self.child.wait().expect("wait after kill")
    }

    /// Resident memory in KiB (`VmRSS` of `/proc/<pid>/status`).
    pub fn rss_kb(&self) -> u64 {
        let path = format!("/proc/{}/status", self.child.id());
        let status = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {path}: {e}"));
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no VmRSS in {path}"))
    }

    /// Peak resident memory in KiB so far (`VmHWM` of `/proc/<pid>/status`).
    pub fn peak_rss_kb(&self) -> u64 {
        let path = format!("/proc/{}/status", self.child.id());
        let status = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {path}: {e}"));
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no VmHWM in {path}"))
    }

    /// What it printed on stdout so far.
    pub fn stdout(&self) -> String {
        std::fs::read_to_string(&self.stdout_path).unwrap_or_default()
    }

    /// What it printed on stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// `POST /GetSamplingRules` through the agent's TCP proxy; the status it answered.
    pub fn sampling_status(&self) -> u16 {
        crate::support::http_request(
            self.tcp_addr(),
            "POST",
            "/GetSamplingRules",
            &[("Content-Type", "application/json")],
            b"{}",
        )
        .expect("the sampling proxy answered")
        .status
    }

    /// stdout and stderr, labelled, for assertion messages.
    pub fn logs(&self) -> String {
        format!(
            "---- cloudtail {:?} stdout ----\n{}\n---- cloudtail stderr ----\n{}",
            self.args,
            self.stdout(),
            self.stderr()
        )
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
    }
}
