//! `hiedge bench`: native tract timings of both models, measured side by side in one run.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};
use hiedge_core::Model;
use hiedge_eval::metrics::quantile;

use crate::data::{test_split, ModelSet};
use crate::Paths;

/// Latency summary in milliseconds.
pub(crate) struct Summary {
    pub median: f64,
    pub p95: f64,
    pub mean: f64,
}

pub(crate) fn summarise(ms: Vec<f64>) -> Summary {
    Summary { median: quantile(&ms, 0.5), p95: quantile(&ms, 0.95), mean: ms.iter().sum::<f64>() / ms.len() as f64 }
}

fn time_one(model: &Model, pixels: &[u8], temperature: f32) -> Result<f64> {
    let t0 = Instant::now();
    let p = model.predict(pixels, temperature)?;
    let ms = t0.elapsed().as_secs_f64() * 1e3;
    std::hint::black_box(p);
    Ok(ms)
}

pub(crate) fn cpu_name() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

pub fn run(paths: &Paths, n: usize, out: &Path) -> Result<()> {
    let set = ModelSet::load(&paths.models)?;
    let split = test_split(paths, &set.manifest, Some(n))?;
    let t = set.manifest.temperature();
    // warm up both plans
    for i in 0..20.min(split.len()) {
        time_one(&set.tiny, split.image(i), t)?;
        time_one(&set.large, split.image(i), t)?;
    }
    let (mut tiny, mut large) = (Vec::with_capacity(n), Vec::with_capacity(n));
    eprintln!("timing {} images, tiny and large interleaved...", split.len());
    for i in 0..split.len() {
        tiny.push(time_one(&set.tiny, split.image(i), t)?);
        large.push(time_one(&set.large, split.image(i), t)?);
    }
    let (ts, ls) = (summarise(tiny), summarise(large));
    let mut md = String::new();
    md += "# Native tract benchmark (`hiedge bench`)\n\n";
    md += &format!(
        "{} Fashion-MNIST test images, one image per call (batch 1), single thread, tiny and large \
         interleaved image by image in one run. Machine: {} ({} logical CPUs, shared). \
         Per call: preprocessing + tract inference + softmax.\n\n",
        split.len(),
        cpu_name(),
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
    );
    md += "| model | params | median ms | p95 ms | mean ms | images/s (1 thread) |\n|---|---:|---:|---:|---:|---:|\n";
    for (name, s) in [("tiny", &ts), ("large", &ls)] {
        let params = set.manifest.model(name)?.params.map_or("-".into(), |p| p.to_string());
        md +=
            &format!("| {name} | {params} | {:.4} | {:.4} | {:.4} | {:.0} |\n", s.median, s.p95, s.mean, 1e3 / s.mean);
    }
    md += &format!("\nlarge / tiny median latency ratio: {:.1}x\n", ls.median / ts.median);
    print!("{md}");
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(out, &md).with_context(|| format!("writing {}", out.display()))?;
    eprintln!("wrote {}", out.display());
    Ok(())
}
