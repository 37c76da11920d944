//! `hiedge calibrate`: fit the decision module on the calibration set and write it to the manifest.

use std::collections::BTreeMap;

use anyhow::Result;
use hiedge_core::manifest::{DecisionParams, Escalate, Manifest, OutputKind};
use hiedge_core::policy::{ScoreRule, ThresholdPolicy};
use hiedge_eval::calibrate::{fit_logistic_top2, fit_temperature, nll};
use hiedge_eval::split::SplitSamples;
use hiedge_eval::sweep::Samples;

use hiedge_core::manifest::{EeCost, EeHiCalibrated};

use crate::data::{calibration_split, device_ms, ee_samples, logits, parse_tiers, three_tier_samples, ModelSet};
use crate::Paths;
use hiedge_eval::three_tier::ThreeTier;

/// Where `calibrate` fits.
#[derive(clap::Args)]
pub struct CalibrationData {
    /// Held-out labelled data to fit on: IDX files (their `train` ones) or an image folder
    /// (`<dir>/<class>/*.png`); default `--data`, which works for IDX only.
    #[arg(long)]
    pub calibration_data: Option<std::path::PathBuf>,
    /// Which samples of it: `START..END` (IDX default: 55000..60000 of Fashion-MNIST's 60,000).
    #[arg(long, value_parser = parse_range)]
    pub calibration_range: Option<std::ops::Range<usize>>,
}

fn parse_range(s: &str) -> std::result::Result<std::ops::Range<usize>, String> {
    let (a, b) = s.split_once("..").ok_or_else(|| format!("`{s}` is not START..END"))?;
    let (a, b) = (a.trim().parse::<usize>(), b.trim().parse::<usize>());
    match (a, b) {
        (Ok(a), Ok(b)) if a < b => Ok(a..b),
        _ => Err(format!("`{s}` is not START..END with START < END")),
    }
}

pub fn run(
    paths: &Paths,
    data: &CalibrationData,
    max_drop: f64,
    rtt_ms: f64,
    tiers: Option<&str>,
    dry_run: bool,
) -> Result<()> {
    // Checked before any work.
    let roles = tiers.map(parse_tiers).transpose()?;
    let mut set = ModelSet::load(&paths.models)?;
    let (split, described) =
        calibration_split(paths, &set.manifest, data.calibration_data.as_deref(), data.calibration_range.clone())?;
    eprintln!("calibrating on {described}: {} samples", split.len());
    let tiny = logits(&set.tiny, &split, "tiny")?;
    let large = logits(&set.large, &split, "large")?;

    let output = set.tiny.output_kind();
    let temperature = match output {
        OutputKind::Logits => {
            let t = fit_temperature(&tiny, &split.labels)?;
            eprintln!(
                "temperature {t:.4}: calibration NLL {:.4} -> {:.4}",
                nll(&tiny, &split.labels, 1.0),
                nll(&tiny, &split.labels, t)
            );
            t
        }
        OutputKind::Probabilities => {
            eprintln!("temperature 1: the tiny model outputs probabilities, which cannot be rescaled");
            1.0
        }
    };
    let samples = Samples::from_outputs(split.labels.clone(), &tiny, output, &large, temperature)?;
    let correct: Vec<bool> = (0..samples.len()).map(|i| samples.tiny_pred[i] == samples.labels[i]).collect();
    let logistic_top2 = fit_logistic_top2(&samples.tiny_probs, &correct)?;
    eprintln!("logistic_top2: {logistic_top2:?}");

    let target = samples.baseline(true).hi_accuracy() - max_drop / 100.0;
    eprintln!(
        "calibration set: tiny {:.2}%, large {:.2}%, target {:.2}%",
        100.0 * samples.baseline(false).hi_accuracy(),
        100.0 * samples.baseline(true).hi_accuracy(),
        100.0 * target
    );
    let mut thresholds = BTreeMap::new();
    let mut offload_fractions = BTreeMap::new();
    for rule in [ScoreRule::MaxProb, ScoreRule::Margin, ScoreRule::Entropy, ScoreRule::LogisticTop2(logistic_top2)] {
        match samples.operating_point(&rule, target) {
            Some(op) => {
                eprintln!(
                    "{:>14}: threshold {:.4} offloads {:.2}% for {:.2}%",
                    rule.key(),
                    op.threshold,
                    100.0 * op.metrics.offload_fraction(),
                    100.0 * op.metrics.hi_accuracy()
                );
                thresholds.insert(rule.key().to_string(), op.threshold);
                offload_fractions.insert(rule.key().to_string(), op.metrics.offload_fraction() as f32);
            }
            None => eprintln!("{:>14}: no threshold reaches the target", rule.key()),
        }
    }
    let early_exit = match &set.ee {
        None => None,
        Some(ee) => {
            let ee_set = ee_samples(ee, &split, &large)?;
            let (_, stage1_ms, stage2_ms) = device_ms(&set.tiny, ee, &split, 500)?;
            let cost = EeCost { stage1_ms, stage2_ms, offload_ms: rtt_ms };
            match ee_set.fit(target, &cost) {
                Some((thresholds, calibration)) => {
                    eprintln!(
                        "{:>14}: {thresholds:?} offloads {:.2}%, exits {:.2}% after stage 1, runs stage 2 on {:.2}%, \
                         {:.2}% (fitted for stage 1 {stage1_ms:.3} ms, stage 2 {stage2_ms:.3} ms, round trip {rtt_ms} ms)",
                        "ee_hi",
                        100.0 * calibration.offloaded,
                        100.0 * calibration.exited,
                        100.0 * calibration.stage2,
                        100.0 * calibration.accuracy
                    );
                    Some(EeHiCalibrated { thresholds, fitted_for: cost, calibration })
                }
                None => {
                    eprintln!("{:>14}: no thresholds reach the target", "ee_hi");
                    None
                }
            }
        }
    };
    let split_exit = match &set.split {
        None => None,
        Some((trunk, tail)) => {
            let samples = SplitSamples::compute(trunk, tail, &split)?;
            let own = samples.tail_u8_accuracy() - max_drop / 100.0;
            let fitted = samples.calibrated(target).or_else(|| {
                eprintln!(
                    "{:>14}: trunk + tail reach {:.2}% on the calibration set, under the target; fitting the exit for \
                     its own accuracy - {max_drop} pts = {:.2}%",
                    "split",
                    100.0 * samples.tail_u8_accuracy(),
                    100.0 * own
                );
                samples.calibrated(own)
            });
            match fitted {
                Some(c) => eprintln!(
                    "{:>14}: exit when p1 > {:.2}: {:.2}% exit at the trunk, {:.2}% accuracy (u8 features, {} bytes)",
                    "split",
                    c.exit,
                    100.0 * c.exited,
                    100.0 * c.accuracy,
                    samples.feature_bytes
                ),
                None => eprintln!("{:>14}: no exit threshold reaches the target", "split"),
            }
            fitted
        }
    };
    if let Some(roles) = roles {
        let device_t = *thresholds.get("max_prob").ok_or_else(|| {
            anyhow::anyhow!(
                "--tiers: no device max_prob threshold reaches the target, so the Worker's hop cannot be fitted"
            )
        })?;
        let t = three_tier_samples(paths, &set, &split, [&tiny, &large], roles, temperature)?;
        fit_escalation(&mut set.manifest, &t, device_t, roles, max_drop);
    }
    // What a deployment is watched against (hiedge_core::monitor): each policy's offload share
    // here and the tiny model's top probability in 10 quantile bins.
    let p1: Vec<f32> = samples.tiny_probs.iter().map(|p| hiedge_core::prob::top2(p).0).collect();
    let monitoring = hiedge_core::monitor::baseline_from_calibration(&p1, offload_fractions, 10)?;
    eprintln!("monitoring baseline: p1 edges {:?}", monitoring.p1_edges);
    set.manifest.decision = Some(DecisionParams {
        monitoring: Some(monitoring),
        early_exit,
        split: split_exit,
        temperature,
        logistic_top2,
        thresholds,
        target_accuracy: Some(target),
        calibration_set: Some(described),
    });
    set.manifest.validate()?;
    let json = set.manifest.to_json_pretty()?;
    if dry_run {
        print!("{json}");
    } else {
        let path = paths.models.join("manifest.json");
        std::fs::write(&path, json)?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

/// The Worker's hop (`--tiers`): the cheapest threshold, on the rule of the manifest's
/// `oip.escalate` (`max_prob` without one), that reaches the server model's own accuracy less
/// `max_drop` with the device at its fitted `max_prob` threshold; written into `oip.escalate` when
/// the manifest has a threshold rule there, printed either way.
fn fit_escalation(manifest: &mut Manifest, t: &ThreeTier, device_t: f32, roles: [&str; 3], max_drop: f64) {
    let mut oip = match manifest.oip_tier() {
        Ok(oip) => oip,
        Err(e) => {
            eprintln!("{:>14}: {e}", "escalate");
            return;
        }
    };
    let escalate = oip.as_ref().map(|o| o.escalate);
    // The manifest's threshold rule; `max_prob` without one (no `oip`, or `always`).
    let rule = escalate.as_ref().and_then(ThresholdPolicy::escalation).map_or(ScoreRule::MaxProb, |p| p.rule);
    let [device, worker, server] = roles;
    let target = t.single_tier_accuracy(2) - max_drop / 100.0;
    let Some(fit) = t.fit_worker(device_t, &rule, target) else {
        eprintln!(
            "{:>14}: no {worker} threshold reaches {:.2}% ({server} alone less {max_drop} pts)",
            "escalate",
            100.0 * target
        );
        return;
    };
    // Never sending on is a threshold below every score.
    let threshold = if fit.worker_threshold.is_finite() { fit.worker_threshold } else { 0.0 };
    eprintln!(
        "{:>14}: {device} -> {worker} -> {server}: {worker} sends on at {} <= {threshold:.4}: {:.2}% reach {worker}, {:.2}% {server}, {:.2}%",
        "escalate",
        rule.key(),
        100.0 * fit.to_worker,
        100.0 * fit.to_server,
        100.0 * fit.accuracy
    );
    match oip.as_mut() {
        // The threshold is for the model the Worker runs: fitted on another, it is not written.
        Some(tier) if tier.worker_model != worker => eprintln!(
            "{:>14}: the Worker runs oip.worker_model `{}`, not `{worker}`: oip.escalate left as it is",
            "escalate",
            tier.worker_model.escape_debug()
        ),
        Some(tier) if escalate != Some(Escalate::Always) => {
            tier.escalate = tier.escalate.with_threshold(threshold);
            manifest.oip = serde_json::to_value(tier).ok();
        }
        Some(_) => eprintln!("{:>14}: oip.escalate is `always`: left as it is", "escalate"),
        None => eprintln!("{:>14}: the manifest has no `oip`: put this threshold in its `escalate`", "escalate"),
    }
}
