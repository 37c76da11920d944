//! A local hiedge Worker for the Rust tests and `hiedge bench-worker`, started by the project's one
//! Worker runner (`tests/support/wrangler.mjs`, which picks the port, keeps wrangler offline and waits
//! for `/v1/health`); this side reads the URL it prints and stops it when dropped.

use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// A running `wrangler dev`, started through `tests/support/wrangler.mjs`.
pub struct WranglerDev {
    child: Option<Child>,
    /// Kept open: the runner stops the Worker when its stdin closes (also if this process dies).
    stdin: Option<ChildStdin>,
    /// Base URL, e.g. `http://127.0.0.1:41234`.
    pub url: String,
    log: PathBuf,
}

/// What wrangler dev's own proxy answers (503, plain text) when its connection to the Worker is lost
/// under a request with a body: it sends GETs again itself, never POSTs. The Worker's own answers are
/// JSON, and a deployed Worker has no such proxy. The known cause is a pooled connection closed by
/// its 5 s keep-alive timeout just as a request is sent on it (cloudflare/workers-sdk#14641, open;
/// the text is in wrangler's `templates/startDevWorker/ProxyWorker.ts`): seen here on 6 of 16 POSTs
/// sent every ~5 s, and once after a 26.7 MB model's first load kept the pool idle that long. The
/// Worker may have run such a request (that run logged 11 requests for 10 answers); classifying
/// changes nothing, so the tests send it again.
pub const DEV_PROXY_DROPPED: &str = "Your worker restarted mid-request. Please try sending the request again. Only GET or HEAD requests are retried automatically.";

/// How many times a test sends a request again that [`dropped_by_dev_proxy`] says was lost.
pub const DEV_PROXY_RESENDS: usize = 2;

/// Whether a response is wrangler dev's proxy saying it lost the request ([`DEV_PROXY_DROPPED`]):
/// not the Worker's answer.
pub fn dropped_by_dev_proxy(status: u16, body: &str) -> bool {
    status == 503 && body.trim() == DEV_PROXY_DROPPED
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

/// The runner's answer once the Worker is up.
#[derive(serde::Deserialize)]
struct Started {
    url: String,
}

impl WranglerDev {
    /// Starts the Worker built by `make worker` (repo `wrangler.toml`) with extra `--var`s, and waits
    /// until the runner reports it up (`GET /v1/health` answered, whatever the status).
    pub fn start(repo: &Path, vars: &[(&str, &str)]) -> Result<Self> {
        Self::start_with_assets(repo, vars, None)
    }

    /// [`start`](Self::start) serving the model sets of `assets` (a directory of set directories)
    /// instead of the repository's `models/`: the same built Worker, no rebuild.
    pub fn start_with_assets(repo: &Path, vars: &[(&str, &str)], assets: Option<&Path>) -> Result<Self> {
        let runner = repo.join("tests/support/wrangler.mjs");
        if !repo.join("node_modules/.bin/wrangler").exists() {
            bail!("{} is missing: run `make tools`", repo.join("node_modules/.bin/wrangler").display());
        }
        let log = std::env::temp_dir().join(format!("hiedge-wrangler-{}-{}.log", std::process::id(), unique()));
        let err = std::fs::File::create(&log)?;
        let mut cmd = Command::new("node");
        cmd.current_dir(repo).arg(&runner);
        for (k, v) in vars {
            cmd.arg("--var").arg(format!("{k}:{v}"));
        }
        if let Some(dir) = assets {
            cmd.arg("--assets").arg(dir);
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(err)
            .process_group(0)
            .spawn()
            .with_context(|| format!("starting node {}", runner.display()))?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().context("the runner's stdout")?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(|l| l.ok()) {
                if let Ok(started) = serde_json::from_str::<Started>(&line) {
                    let _ = tx.send(started.url);
                }
            }
        });
        let mut dev = WranglerDev { child: Some(child), stdin, url: String::new(), log };
        let limit = Duration::from_secs(120);
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Ok(url) = rx.recv_timeout(Duration::from_millis(200)) {
                dev.url = url;
                return Ok(dev);
            }
            if let Some(status) = dev.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                bail!("the Worker runner exited with {status}:\n{}", dev.log_tail());
            }
        }
        bail!("the Worker runner did not report a URL within {limit:?}:\n{}", dev.log_tail())
    }

    /// Everything wrangler and the Worker printed so far (console output included).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
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

    /// Stops the Worker: closes the runner's stdin and sends it TERM (it stops wrangler and workerd,
    /// their own process group), then KILLs the runner after 10 s.
    pub fn stop(&mut self) {
        drop(self.stdin.take());
        let Some(mut child) = self.child.take() else { return };
        let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).stderr(Stdio::null()).status();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

/// A number unique within this process, for log file names.
fn unique() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

impl Drop for WranglerDev {
    fn drop(&mut self) {
        self.stop();
    }
}
