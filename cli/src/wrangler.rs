//! A local hiedge Worker under `wrangler dev` (workerd), started on a free loopback port with no
//! telemetry, no account and no download, and stopped (its whole process group) when dropped.

use std::io::Read;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// Environment that keeps wrangler offline and quiet.
pub const OFFLINE_ENV: [(&str, &str); 4] = [
    ("WRANGLER_SEND_METRICS", "false"),
    ("WRANGLER_SEND_ERROR_REPORTS", "false"),
    ("CLOUDFLARE_CF_FETCH_ENABLED", "false"),
    ("WRANGLER_HIDE_BANNER", "true"),
];

/// A running `wrangler dev`.
pub struct WranglerDev {
    child: Option<Child>,
    /// Base URL, e.g. `http://127.0.0.1:41234`.
    pub url: String,
    log: PathBuf,
    _state: TempDir,
}

/// A free TCP port on 127.0.0.1 (bound, read, released).
pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// An HTTP agent for talking to the Worker: statuses are not errors, 30 s timeout.
pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .max_idle_connections_per_host(128)
        .build()
        .into()
}

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl WranglerDev {
    /// Starts the Worker built by `make worker` (repo `wrangler.toml`) with extra `--var`s, and waits
    /// until `GET /v1/health` answers (200, or 401 when an `API_TOKEN` is set).
    pub fn start(repo: &Path, vars: &[(&str, &str)]) -> Result<Self> {
        let wrangler = repo.join("node_modules/.bin/wrangler");
        if !wrangler.exists() {
            bail!("{} is missing: run `make tools`", wrangler.display());
        }
        if !repo.join("edge-worker/build/index.js").exists() {
            bail!("the Worker is not built: run `make worker`");
        }
        let port = free_port()?;
        let inspector = free_port()?;
        let state = std::env::temp_dir().join(format!("hiedge-wrangler-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&state)?;
        let log = state.join("wrangler.log");
        let out = std::fs::File::create(&log)?;
        let mut cmd = Command::new(&wrangler);
        cmd.current_dir(repo)
            .args(["dev", "--ip", "127.0.0.1", "--port", &port.to_string()])
            .args(["--inspector-ip", "127.0.0.1", "--inspector-port", &inspector.to_string()])
            .args(["--show-interactive-dev-session=false", "--log-level", "warn"])
            .arg("--persist-to")
            .arg(state.join("state"))
            .envs(OFFLINE_ENV)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .process_group(0);
        for (k, v) in vars {
            cmd.arg("--var").arg(format!("{k}:{v}"));
        }
        let child = cmd.spawn().with_context(|| format!("starting {}", wrangler.display()))?;
        let mut dev =
            WranglerDev { child: Some(child), url: format!("http://127.0.0.1:{port}"), log, _state: TempDir(state) };
        dev.wait_healthy(Duration::from_secs(90))?;
        Ok(dev)
    }

    fn wait_healthy(&mut self, limit: Duration) -> Result<()> {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(2)))
            .build()
            .new_agent();
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Some(child) = self.child.as_mut() {
                if let Some(status) = child.try_wait()? {
                    bail!("wrangler dev exited with {status}:\n{}", self.log_tail());
                }
            }
            if let Ok(resp) = agent.get(format!("{}/v1/health", self.url)).call() {
                // 401: up, but an API_TOKEN is set.
                if resp.status() == 200 || resp.status() == 401 {
                    return Ok(());
                }
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        bail!("wrangler dev did not answer /v1/health within {limit:?}:\n{}", self.log_tail())
    }

    /// The last lines wrangler printed.
    pub fn log_tail(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.log) {
            let _ = f.read_to_string(&mut s);
        }
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// Stops wrangler and workerd (the whole process group): TERM, then KILL after 5 s.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        let group = format!("-{}", child.id());
        let _ = Command::new("kill").args(["-TERM", "--", &group]).stderr(Stdio::null()).status();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(5) {
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = Command::new("kill").args(["-KILL", "--", &group]).stderr(Stdio::null()).status();
        let _ = child.wait();
    }
}

impl Drop for WranglerDev {
    fn drop(&mut self) {
        self.stop();
    }
}
