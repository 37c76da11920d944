//! `hiedge monitor`: replay a stream of samples through a set's calibrated HI natively (the tiny
//! model decides, the large model answers what it offloads) and print what a deployment's monitor
//! (`hiedge_core::monitor`, the same code the client and the Worker run) says over time. A shift
//! applied from a chosen sample on (darker or inverted images, or another dataset) lets a team see
//! its alarms fire, and how soon, before users do.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use hiedge_core::monitor::{AlarmKind, Monitor, MonitorConfig, MonitorState, Observation};
use hiedge_core::PolicyConfig;

use crate::data::{test_split, ModelSet};
use crate::Paths;

/// What happens to the stream from `--shift-at` on.
#[derive(Debug, Clone, PartialEq)]
pub enum Shift {
    /// Nothing: the stream stays the test set.
    None,
    /// Every pixel value times this factor (0..1 darkens).
    Darken(f32),
    /// Every pixel value `v` becomes `255 - v`.
    Invert,
    /// The samples come from another dataset's test files (the same input size), e.g. MNIST
    /// digits into a Fashion-MNIST deployment.
    Data(PathBuf),
}

/// `none`, `darken:F`, `invert` or `data:DIR`.
pub fn parse_shift(s: &str) -> std::result::Result<Shift, String> {
    match s.split_once(':') {
        None if s == "none" => Ok(Shift::None),
        None if s == "invert" => Ok(Shift::Invert),
        Some(("darken", f)) => match f.parse::<f32>() {
            Ok(f) if (0.0..=1.0).contains(&f) => Ok(Shift::Darken(f)),
            _ => Err(format!("darken:{f}: the factor must be a number in 0..=1")),
        },
        Some(("data", dir)) if !dir.is_empty() => Ok(Shift::Data(PathBuf::from(dir))),
        _ => Err(format!("`{s}` is not none, darken:F, invert or data:DIR")),
    }
}

/// `hiedge monitor`'s options.
#[derive(clap::Args)]
pub struct MonitorArgs {
    #[command(flatten)]
    pub paths: Paths,
    /// Use only the first N test samples (before and after the shift).
    #[arg(long)]
    pub limit: Option<usize>,
    /// How the stream changes from --shift-at on: none, darken:F, invert, data:DIR.
    #[arg(long, value_parser = parse_shift, default_value = "none")]
    pub shift: Shift,
    /// The sample (0-based) the shift starts at.
    #[arg(long, default_value_t = 5000)]
    pub shift_at: usize,
    /// Print a row every N samples.
    #[arg(long, default_value_t = 500)]
    pub every: usize,
    /// The monitor's window (rates, estimates, drift blocks).
    #[arg(long, default_value_t = MonitorConfig::default().window)]
    pub window: usize,
    /// At most one false offload-rate alarm per this many samples on average.
    #[arg(long, default_value_t = MonitorConfig::default().false_alarm_run)]
    pub false_alarm_run: f64,
    /// Level of each drift block's test.
    #[arg(long, default_value_t = MonitorConfig::default().drift_alpha)]
    pub drift_alpha: f64,
    /// Print JSON (every row's full monitor state and the true accuracies) instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Also draw the rows as a PNG: offload rate vs the calibrated rate, the accuracy estimate
    /// against the labels' truth, the shift and every alarm (one point per --every samples).
    #[arg(long)]
    pub plot: Option<std::path::PathBuf>,
}

/// One printed row: the monitor's state after `sample` samples, and what the labels say.
#[derive(serde::Serialize)]
struct Row {
    sample: usize,
    shifted: bool,
    /// True accuracy of the tiny model on the samples it kept in the last `window` samples.
    true_kept_window: Option<f64>,
    /// The same over every kept sample with a label of this set so far.
    true_kept_overall: Option<f64>,
    state: MonitorState,
}

pub fn run(args: &MonitorArgs) -> Result<()> {
    if args.every == 0 {
        bail!("--every must be at least 1");
    }
    let set = ModelSet::load(&args.paths.models)?;
    let manifest = &set.manifest;
    let config =
        MonitorConfig { window: args.window, false_alarm_run: args.false_alarm_run, drift_alpha: args.drift_alpha };
    let mut monitor = Monitor::from_manifest(manifest, None, config)?;
    let mut policy = PolicyConfig::calibrated(manifest)?.build()?;
    let temperature = manifest.temperature();
    let data = test_split(&args.paths, manifest, args.limit)?;
    let other = match &args.shift {
        Shift::Data(dir) => {
            let paths = Paths { models: args.paths.models.clone(), data: dir.clone() };
            Some(test_split(&paths, manifest, args.limit).with_context(|| format!("--shift data:{}", dir.display()))?)
        }
        _ => None,
    };
    let n = data.len();
    let mut recent: std::collections::VecDeque<Option<bool>> = std::collections::VecDeque::new();
    let mut rows = Vec::new();
    let (mut kept_labelled, mut kept_right) = (0u64, 0u64);
    for i in 0..n {
        let shifted = i >= args.shift_at;
        let (pixels, label): (Vec<u8>, Option<usize>) = match (&args.shift, shifted) {
            (Shift::Darken(f), true) => {
                (data.image(i).iter().map(|v| (f32::from(*v) * f).round() as u8).collect(), Some(data.labels[i]))
            }
            (Shift::Invert, true) => (data.image(i).iter().map(|v| 255 - v).collect(), Some(data.labels[i])),
            // Another dataset's labels are not this set's classes: no true accuracy after the shift.
            (Shift::Data(_), true) => {
                let o = other.as_ref().context("the other dataset")?;
                (o.image(i % o.len()).to_vec(), None)
            }
            _ => (data.image(i).to_vec(), Some(data.labels[i])),
        };
        let tiny = set.tiny.predict(&pixels, temperature)?;
        let decision = policy.decide(&tiny.probs)?;
        let remote = if decision.is_offload() { Some(set.large.predict(&pixels, 1.0)?.label) } else { None };
        monitor.observe(&Observation {
            probs: &tiny.probs,
            offloaded: decision.is_offload(),
            remote_label: remote,
            at_ms: i as f64,
        })?;
        if recent.len() == args.window {
            recent.pop_front();
        }
        let right = if decision.is_offload() { None } else { label.map(|l| l == tiny.label) };
        if let Some(r) = right {
            kept_labelled += 1;
            kept_right += u64::from(r);
        }
        recent.push_back(right);
        if (i + 1) % args.every == 0 || i + 1 == n {
            let kept: Vec<bool> = recent.iter().flatten().copied().collect();
            let known = (label.is_some() && !kept.is_empty())
                .then(|| kept.iter().filter(|r| **r).count() as f64 / kept.len() as f64);
            let overall = (kept_labelled > 0).then(|| kept_right as f64 / kept_labelled as f64);
            rows.push(Row {
                sample: i + 1,
                shifted,
                true_kept_window: known,
                true_kept_overall: overall,
                state: monitor.state(),
            });
        }
    }
    if let Some(path) = &args.plot {
        let points: Vec<crate::plot::Point> = rows
            .iter()
            .map(|r| crate::plot::Point {
                sample: r.sample,
                state: r.state.clone(),
                true_kept_window: r.true_kept_window,
            })
            .collect();
        crate::plot::write(path, &points, n, args.shift_at)?;
        eprintln!("wrote {}", path.display());
    }
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({ "set": manifest.name, "shift": format!("{:?}", args.shift), "shift_at": args.shift_at, "rows": rows })
            )?
        );
        return Ok(());
    }
    print_table(&rows, args);
    Ok(())
}

fn print_table(rows: &[Row], args: &MonitorArgs) {
    let pct = |x: Option<f64>| x.map_or("-".to_string(), |x| format!("{:.1}%", 100.0 * x));
    println!(
        "| sample | shifted | offload (window) | target | CUSUM up / down (h) | drift chi2 (critical) | PSI | est. kept acc | true kept acc | alarms |"
    );
    println!("|---:|---|---:|---:|---|---|---:|---:|---:|---|");
    for r in rows {
        let s = &r.state;
        let c = &s.offload.cusum;
        let drift = s
            .drift
            .last
            .map_or(("-".to_string(), "-".to_string()), |t| (format!("{:.1}", t.chi2), format!("{:.3}", t.psi)));
        let alarms =
            s.alarms.iter().filter(|a| a.sample as usize > r.sample.saturating_sub(args.every)).map(|a| match a.kind {
                AlarmKind::OffloadRate => format!("offload rate at {}", a.sample),
                AlarmKind::ConfidenceDrift => format!("drift at {}", a.sample),
            });
        println!(
            "| {} | {} | {:.1}% | {:.1}% | {:.1} / {:.1} ({:.1}) | {} ({:.1}) | {} | {} | {} | {} |",
            r.sample,
            if r.shifted { "yes" } else { "no" },
            100.0 * s.offload.window_rate,
            100.0 * s.offload.target,
            c.up,
            c.down,
            c.h,
            drift.0,
            s.drift.critical,
            drift.1,
            pct(s.accuracy.kept_window),
            pct(r.true_kept_window),
            alarms.collect::<Vec<_>>().join(", ")
        );
    }
    if let Some(last) = rows.last() {
        let first = |k: AlarmKind| {
            last.state
                .alarms
                .iter()
                .find(|a| a.kind == k && a.sample as usize > args.shift_at)
                .map(|a| a.sample as usize - args.shift_at)
        };
        let before = last.state.alarms.iter().filter(|a| (a.sample as usize) <= args.shift_at).count();
        eprintln!(
            "alarms before sample {}: {before}; after it, the offload-rate alarm after {} samples, the drift alarm after {}",
            args.shift_at,
            first(AlarmKind::OffloadRate).map_or("none".into(), |d| d.to_string()),
            first(AlarmKind::ConfidenceDrift).map_or("none".into(), |d| d.to_string())
        );
    }
}
