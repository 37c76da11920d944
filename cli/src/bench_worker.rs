//! `hiedge bench-worker`: the Worker under `wrangler dev` on loopback, measured from outside.
//!
//! * throughput and latency at several concurrencies, each for a fixed duration;
//! * the Worker model's inference time in workerd vs native tract on the same samples in the
//!   same run, for any set (`--models`; its route `/v1/models/<set>/classify`, samples from
//!   `--data`: IDX files or a folder of class folders of images, converted to the set's input). workerd does not advance its clock during CPU work, so the Worker cannot time itself:
//!   inference is estimated as median(classify latency) - median(`/v1/health` latency), the two
//!   requests interleaved one by one over the same connection pool;
//! * the built bundle's size, raw and gzip.

use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use hiedge_cli::wrangler::{agent, WranglerDev};
use hiedge_core::protocol::ClassifyResponse;
use hiedge_eval::metrics::quantile;

use crate::bench::{cpu_name, summarise, Summary};
use crate::data::{load_model, read_manifest, test_split};
use crate::Paths;

fn post(agent: &ureq::Agent, url: &str, pixels: &[u8]) -> Result<f64> {
    post_body(agent, url, pixels).map(|(ms, _)| ms)
}

fn post_body(agent: &ureq::Agent, url: &str, pixels: &[u8]) -> Result<(f64, String)> {
    let t0 = Instant::now();
    let mut resp = agent.post(url).header("Content-Type", "application/octet-stream").send(pixels)?;
    let body = resp.body_mut().read_to_string()?;
    let ms = t0.elapsed().as_secs_f64() * 1e3;
    if resp.status() != 200 {
        bail!("classify answered {}: {body}", resp.status());
    }
    Ok((ms, body))
}

fn get(agent: &ureq::Agent, url: &str) -> Result<f64> {
    let t0 = Instant::now();
    let mut resp = agent.get(url).call()?;
    resp.body_mut().read_to_string()?;
    let ms = t0.elapsed().as_secs_f64() * 1e3;
    if resp.status() != 200 {
        bail!("health answered {}", resp.status());
    }
    Ok(ms)
}

struct LoadResult {
    concurrency: usize,
    requests: usize,
    errors: usize,
    first_error: Option<String>,
    seconds: f64,
    latency: Summary,
    p99: f64,
}

fn load(base: &str, images: &Arc<Vec<Vec<u8>>>, concurrency: usize, duration: Duration) -> LoadResult {
    let url = format!("{base}/v1/classify");
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|w| {
            let (url, images, stop) = (url.clone(), images.clone(), stop.clone());
            std::thread::spawn(move || {
                let agent = agent();
                let (mut ms, mut errors, mut first) = (Vec::new(), 0usize, None);
                let mut i = w;
                while !stop.load(Ordering::Relaxed) {
                    match post(&agent, &url, &images[i % images.len()]) {
                        Ok(t) => ms.push(t),
                        Err(e) => {
                            errors += 1;
                            first.get_or_insert(e.to_string());
                        }
                    }
                    i += concurrency;
                }
                (ms, errors, first)
            })
        })
        .collect();
    std::thread::sleep(duration);
    stop.store(true, Ordering::Relaxed);
    let (mut all, mut errors, mut first_error) = (Vec::new(), 0, None);
    for w in workers {
        if let Ok((ms, e, first)) = w.join() {
            all.extend(ms);
            errors += e;
            first_error = first_error.or(first);
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    let requests = all.len();
    let p99 = quantile(&all, 0.99);
    LoadResult {
        concurrency,
        requests,
        errors,
        first_error,
        seconds,
        latency: if all.is_empty() {
            Summary { median: f64::NAN, p95: f64::NAN, mean: f64::NAN }
        } else {
            summarise(all)
        },
        p99,
    }
}

fn gzip_len(bytes: &[u8]) -> Result<usize> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    enc.write_all(bytes)?;
    Ok(enc.finish()?.len())
}

/// Runs the benchmark against `url`, or against a `wrangler dev` it starts itself.
pub fn run(
    paths: &Paths,
    url: Option<String>,
    seconds: u64,
    concurrency: &[usize],
    pairs: usize,
    out: &Path,
) -> Result<()> {
    let manifest = read_manifest(&paths.models)?;
    // The model the Worker runs for this set (`large`, or a three-tier set's `oip.worker_model`),
    // natively here, on the same samples.
    let role = manifest.worker_model()?;
    let worker_model = load_model(&paths.models, &manifest, &role)?;
    let split = test_split(paths, &manifest, Some(1000))?;
    let images: Arc<Vec<Vec<u8>>> = Arc::new((0..split.len()).map(|i| split.image(i).to_vec()).collect());
    if images.is_empty() {
        bail!("{} holds no samples", paths.data.display());
    }
    let repo = std::env::current_dir()?;
    let _dev;
    let base = match url {
        Some(u) => u.trim_end_matches('/').to_string(),
        None => {
            // The set's own directory of sets is the Worker's assets; the set is its default.
            let models = std::fs::canonicalize(&paths.models)?;
            let assets = models.parent().context("the set's directory has no parent")?;
            eprintln!("starting wrangler dev on the sets of {}...", assets.display());
            let dev = WranglerDev::start_with_assets(&repo, &[("DEFAULT_MODEL_SET", &manifest.name)], Some(assets))?;
            let u = dev.url.clone();
            _dev = dev;
            u
        }
    };
    let agent = agent();
    let classify_url = format!("{base}/v1/models/{}/classify", manifest.name);
    let health_url = format!("{base}/v1/health");
    eprintln!("warming up {base}...");
    for img in images.iter().take(50) {
        post(&agent, &classify_url, img)?;
    }

    // Inference in workerd vs native tract, same images, same run.
    eprintln!("{pairs} interleaved health/classify pairs and native tract on the same images...");
    let (mut health, mut classify, mut native, mut reported) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for i in 0..pairs {
        let img = &images[i % images.len()];
        health.push(get(&agent, &health_url)?);
        let (ms, body) = post_body(&agent, &classify_url, img)?;
        classify.push(ms);
        let response = ClassifyResponse::from_json(&body, manifest.classes.len())
            .map_err(|e| anyhow::anyhow!("bad classify response: {e}"))?;
        reported.extend(response.infer_ms);
        let t0 = Instant::now();
        std::hint::black_box(worker_model.predict(img, 1.0)?);
        native.push(t0.elapsed().as_secs_f64() * 1e3);
    }
    let n_reported = reported.len();
    let reported_note = if reported.is_empty() {
        format!("None of the {pairs} responses carried `infer_ms` (the clock did not advance during inference).")
    } else {
        let r = summarise(reported);
        format!(
            "{n_reported} of the {pairs} responses carried the Worker's own `infer_ms` (its clock advanced during \
             inference under this `wrangler dev`): median {:.3} ms, p95 {:.3} ms. Production Workers freeze the \
             clock during CPU work, so there the outside measurement is the one to use.",
            r.median, r.p95
        )
    };
    let (h, c, n) = (summarise(health), summarise(classify), summarise(native));
    let workerd_infer = c.median - h.median;

    let mut rows = Vec::new();
    for &k in concurrency {
        eprintln!("concurrency {k} for {seconds} s...");
        rows.push(load(&base, &images, k, Duration::from_secs(seconds)));
    }

    let wasm = std::fs::read(repo.join("edge-worker/build/index_bg.wasm")).context("reading the built Worker wasm")?;
    let js = std::fs::read(repo.join("edge-worker/build/index.js")).context("reading the built Worker JS")?;
    let (wasm_gz, js_gz) = (gzip_len(&wasm)?, gzip_len(&js)?);

    let mut md = String::from("# Worker benchmark (`hiedge bench-worker`)\n\n");
    md += &format!(
        "The hiedge Worker (set `{}`, its `{role}` model: {} params) under `wrangler dev` (workerd) on \
         127.0.0.1, driven from the same machine: {} ({} logical CPUs, shared, so client, proxy and workerd \
         compete for the cores). Bodies are {}-byte samples (input {:?}) of `{}`, round-robin over the first {}.\n\n",
        manifest.name,
        manifest.model(&role)?.params.unwrap_or(0),
        cpu_name(),
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        manifest.input_len(),
        manifest.input.shape,
        paths.data.display(),
        images.len()
    );
    md += "## Throughput and latency\n\n| concurrency | seconds | requests | errors | requests/s | p50 ms | p99 ms | mean ms |\n|---:|---:|---:|---:|---:|---:|---:|---:|\n";
    for r in &rows {
        md += &format!(
            "| {} | {:.1} | {} | {} | {:.1} | {:.2} | {:.2} | {:.2} |\n",
            r.concurrency,
            r.seconds,
            r.requests,
            r.errors,
            r.requests as f64 / r.seconds,
            r.latency.median,
            r.p99,
            r.latency.mean
        );
    }
    for r in rows.iter().filter(|r| r.errors > 0) {
        md += &format!(
            "\nAt concurrency {}, {} request(s) failed; the first: `{}`.\n",
            r.concurrency,
            r.errors,
            r.first_error.as_deref().unwrap_or("?")
        );
    }
    md += &format!(
        "\n## Worker-model inference: workerd vs native tract\n\n\
         Workers freeze their clock during CPU work, so a Worker cannot in general time its own inference. \
         Measured from outside instead, at concurrency 1 over {pairs} interleaved \
         pairs: median `POST /v1/models/<set>/classify` latency minus median `GET /v1/health` latency (same route through \
         wrangler's proxy, no inference). Native: the same images through the same hiedge-core code, \
         native tract, in this process, in the same loop.\n\n\
         | measure | median ms | p95 ms |\n|---|---:|---:|\n\
         | `GET /v1/health` round trip | {:.3} | {:.3} |\n\
         | `POST /v1/models/<set>/classify` round trip | {:.3} | {:.3} |\n\
         | native tract, the Worker's model | {:.3} | {:.3} |\n\n\
         workerd inference (classify - health medians): **{workerd_infer:.3} ms**; native: **{:.3} ms**; \
         ratio workerd / native: **{:.2}x** (goal <= 2x). The Workers Free plan allows 10 ms CPU per request. \
         The difference also holds what a classify request costs beyond a health check besides inference: \
         sending, reading and checking its {}-byte body.\n\n\
         {reported_note}\n",
        h.median,
        h.p95,
        c.median,
        c.p95,
        n.median,
        n.p95,
        n.median,
        workerd_infer / n.median,
        manifest.input_len()
    );
    md += &format!(
        "\n## Bundle\n\n| file | raw bytes | gzip -9 bytes |\n|---|---:|---:|\n\
         | edge-worker/build/index_bg.wasm | {} | {} |\n| edge-worker/build/index.js | {} | {} |\n\n\
         Cloudflare's limits page (developers.cloudflare.com/workers/platform/limits) currently lists a \
         Worker size of 64 MiB on both plans; its earlier versions listed 3 MB (Free) / 10 MB (Paid) after \
         compression, which the gzip column is to be compared with.\n",
        wasm.len(),
        wasm_gz,
        js.len(),
        js_gz
    );
    print!("{md}");
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(out, &md).with_context(|| format!("writing {}", out.display()))?;
    eprintln!("wrote {}", out.display());
    Ok(())
}
