//! `hiedge eval`: the HI trade-off table on the test set.

use anyhow::Result;
use hiedge_core::manifest::{Manifest, OffloadCodec};
use hiedge_core::policy::{ScoreRule, ThresholdPolicy};
use hiedge_core::prob::argmax;
use hiedge_core::PolicyConfig;
use hiedge_eval::sweep::Samples;
use hiedge_eval::Metrics;
use serde::Serialize;

use hiedge_core::manifest::{EeHiThresholds, EeOutcome};

use crate::data::{device_ms, ee_samples, logits, parse_tiers, split_ms, test_split, three_tier_samples, ModelSet};
use crate::Paths;
use hiedge_eval::split::{SplitOutcome, SplitSamples};
use hiedge_eval::three_tier::{ThreeTier, TierOutcome};

/// Offload costs reported for every row.
pub const BETAS: [f64; 3] = [0.1, 0.3, 0.5];
/// Thresholds of the sweep rows for every threshold policy.
const GRID: [f32; 12] = [0.3, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.98, 0.99, 0.995, 0.999];

/// One line of the table.
#[derive(Serialize)]
pub struct Row {
    pub policy: String,
    /// `0.900`, `calibrated 0.912`, `best 0.934`, `beta=0.3`, or `-`.
    pub param: String,
    pub threshold: Option<f32>,
    pub offload_fraction: f64,
    pub hi_accuracy: f64,
    pub kept_accuracy: Option<f64>,
    /// Cost per image at each of [`BETAS`].
    pub cost: Vec<(f64, f64)>,
}

impl Row {
    fn new(policy: &str, param: String, threshold: Option<f32>, m: &Metrics) -> Self {
        Row {
            policy: policy.into(),
            param,
            threshold,
            offload_fraction: m.offload_fraction(),
            hi_accuracy: m.hi_accuracy(),
            kept_accuracy: m.kept_accuracy(),
            cost: BETAS.iter().map(|&b| (b, m.cost_per_image(b))).collect(),
        }
    }
}

#[derive(Serialize)]
struct Report {
    /// `--offload-codec`: the large model on compressed samples.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    offload_codecs: Vec<CodecRow>,
    /// The model set's name (from its manifest).
    model_set: String,
    images: usize,
    /// What accuracy is scored against: `labels`, or `large` (agreement with the large model).
    scored_against: &'static str,
    large_only_accuracy: f64,
    target_accuracy: f64,
    rows: Vec<Row>,
    /// Per threshold policy: the least offloading that reaches the target (None: never).
    operating_points: Vec<(String, Option<Row>)>,
    /// EE-HI at its calibrated thresholds, when the model set has an early-exit model.
    ee_hi: Option<EeReport>,
    /// The split model, when the model set has one.
    split: Option<SplitReport>,
    /// `--tiers`: device -> Worker -> server.
    #[serde(skip_serializing_if = "Option::is_none")]
    three_tier: Option<ThreeTierReport>,
}

/// Three tiers (`--tiers DEVICE,WORKER,SERVER`, manifest roles), `max_prob` at both hops: the
/// device at the manifest's calibrated threshold, the Worker at each threshold of the grid and at
/// the cheapest one that reaches the server's accuracy less `--max-drop`.
#[derive(Serialize)]
struct ThreeTierReport {
    /// The roles: device, Worker, server.
    tiers: [String; 3],
    /// Accuracy of each tier answering every sample alone.
    alone: [f64; 3],
    /// The device's threshold (the manifest's calibrated `max_prob`).
    device_threshold: f32,
    /// Two tiers for comparison: the device and the Worker's model (nothing sent on).
    device_worker: TierOutcome,
    /// Two tiers for comparison: the device and the server's model (everything sent on).
    device_server: TierOutcome,
    /// The Worker's threshold at each grid value.
    rows: Vec<TierOutcome>,
    /// The server's accuracy alone less `--max-drop`.
    target_accuracy: f64,
    /// The cheapest Worker threshold that reaches the target (None: none does).
    fitted: Option<TierOutcome>,
    /// At the manifest's own `oip.escalate`, where its `oip.worker_model` is the Worker role here:
    /// what a deployment of this set does (`always`: every sample the Worker receives goes on).
    #[serde(skip_serializing_if = "Option::is_none")]
    deployed: Option<Deployed>,
}

/// The outcome of the manifest's `oip.escalate`, and the rule it uses.
#[derive(Serialize)]
struct Deployed {
    /// `max_prob`, `margin`, `entropy` or `always`.
    rule: &'static str,
    outcome: TierOutcome,
}

/// The three-tier report for the roles in `tiers` (`device,worker,server`).
fn three_tier(
    paths: &Paths,
    set: &ModelSet,
    split: &hiedge_eval::dataset::Split,
    computed: [&[Vec<f32>]; 2],
    tiers: &str,
    max_drop: f64,
) -> Result<ThreeTierReport> {
    let [device, worker, server] = parse_tiers(tiers)?;
    let device_threshold = set.manifest.threshold("max_prob").ok_or_else(|| {
        anyhow::anyhow!("--tiers needs the device's calibrated max_prob threshold: run `hiedge calibrate` first")
    })?;
    let t = three_tier_samples(paths, set, split, computed, [device, worker, server], set.manifest.temperature())?;
    let rule = ScoreRule::MaxProb;
    let alone = [0, 1, 2].map(|k| t.single_tier_accuracy(k));
    let target = alone[2] - max_drop / 100.0;
    Ok(ThreeTierReport {
        tiers: [device, worker, server].map(String::from),
        alone,
        device_threshold,
        device_worker: t.at(device_threshold, &rule, f32::NEG_INFINITY),
        device_server: t.at(device_threshold, &rule, f32::INFINITY),
        rows: GRID.iter().map(|&w| t.at(device_threshold, &rule, w)).collect(),
        target_accuracy: target,
        fitted: t.fit_worker(device_threshold, &rule, target),
        deployed: deployed(&set.manifest, &t, device_threshold, worker)?,
    })
}

/// The manifest's `oip.escalate` on these samples, when its Worker model is `worker`.
fn deployed(manifest: &Manifest, t: &ThreeTier, device_threshold: f32, worker: &str) -> Result<Option<Deployed>> {
    let Some(oip) = manifest.oip_tier()? else { return Ok(None) };
    if oip.worker_model != worker {
        return Ok(None);
    }
    Ok(Some(match ThresholdPolicy::escalation(&oip.escalate) {
        Some(p) => Deployed { rule: p.rule.key(), outcome: t.at(device_threshold, &p.rule, p.threshold) },
        None => Deployed { rule: "always", outcome: t.at(device_threshold, &ScoreRule::MaxProb, f32::INFINITY) },
    }))
}

fn print_three_tier(r: &ThreeTierReport) {
    let [d, w, s] = &r.tiers;
    println!("\nThree tiers: {d} (device) -> {w} (Worker) -> {s} (server), max_prob at both hops");
    println!(
        "alone: {d} {}%, {w} {}%, {s} {}%; the device sends at max_prob <= {:.4} (calibrated)",
        pct(r.alone[0]),
        pct(r.alone[1]),
        pct(r.alone[2]),
        r.device_threshold
    );
    println!("| tiers | Worker threshold | to Worker % | to server % | sent on at the Worker % | accuracy % |");
    println!("|---|---|---:|---:|---:|---:|");
    let row = |name: &str, param: String, o: &TierOutcome| {
        println!(
            "| {name} | {param} | {} | {} | {} | {} |",
            pct(o.to_worker),
            pct(o.to_server),
            pct(o.worker_escalation),
            pct(o.accuracy)
        );
    };
    row(&format!("{d} -> {w}"), "-".into(), &r.device_worker);
    row(&format!("{d} -> {s}"), "-".into(), &r.device_server);
    for o in &r.rows {
        row(&format!("{d} -> {w} -> {s}"), format!("{:.3}", o.worker_threshold), o);
    }
    match &r.fitted {
        Some(o) => row(&format!("{d} -> {w} -> {s}"), format!("fitted {:.4}", o.worker_threshold), o),
        None => println!("no Worker threshold reaches {}% (the server alone less --max-drop)", pct(r.target_accuracy)),
    }
    if let Some(dep) = &r.deployed {
        let at = match dep.rule {
            "always" => "always".to_string(),
            rule => format!("{rule} {:.4}", dep.outcome.worker_threshold),
        };
        row(&format!("{d} -> {w} -> {s}"), format!("manifest's oip.escalate: {at}"), &dep.outcome);
    }
}

/// The split model (MDI-Exit) on the test set: without exit, with the calibrated exit, and at the
/// exit threshold that reaches the report's target.
#[derive(Serialize)]
struct SplitReport {
    exit_head_accuracy: f64,
    /// Trunk + tail, no exit, float features (no quantisation).
    f32_accuracy: f64,
    /// Trunk + tail, no exit, u8 features (what the Worker sees).
    u8_accuracy: f64,
    /// Bytes of a raw sample (HI's offload) and of a features body (split's).
    raw_bytes: usize,
    feature_bytes: usize,
    /// At the manifest's calibrated exit threshold.
    calibrated: Option<SplitOutcome>,
    /// The most exits that still reach the report's target accuracy.
    at_target: Option<SplitOutcome>,
    /// Median native ms of the trunk and of the tail (one thread).
    trunk_ms: f64,
    tail_ms: f64,
}

/// EE-HI on the test set, next to HI, with native device compute per sample.
#[derive(Serialize)]
struct EeReport {
    thresholds: EeHiThresholds,
    outcome: EeOutcome,
    exit_head_accuracy: f64,
    final_head_accuracy: f64,
    /// Median native ms: tiny model, stage 1, stage 2 (one thread, interleaved).
    tiny_ms: f64,
    stage1_ms: f64,
    stage2_ms: f64,
    /// HI with the calibrated logistic_top2 on the same images, for comparison.
    hi: Option<Row>,
}

fn rules(set: &ModelSet) -> Vec<ScoreRule> {
    let mut rules = vec![ScoreRule::MaxProb, ScoreRule::Margin, ScoreRule::Entropy];
    if let Some(d) = &set.manifest.decision {
        rules.push(ScoreRule::LogisticTop2(d.logistic_top2));
    }
    rules
}

/// What the large model keeps when it sees samples sent with one offload codec.
#[derive(Serialize)]
struct CodecRow {
    codec: String,
    /// Mean bytes sent per offloaded sample.
    mean_bytes: f64,
    /// `mean_bytes` / the raw sample's bytes.
    size_ratio: f64,
    /// The large model's accuracy on every test image sent this way.
    large_accuracy: f64,
    /// How often its label equals its label on the raw sample.
    agreement_with_raw: f64,
    /// HI at the calibrated logistic_top2 threshold with the large model's answers on these samples.
    hi_accuracy: Option<f64>,
    offload_fraction: Option<f64>,
}

/// The large model on every test image round-tripped through each codec (encoded as the client
/// would, decoded by the Worker's decoder), beside its raw answers.
fn codec_rows(
    set: &ModelSet,
    split: &hiedge_eval::dataset::Split,
    tiny: &[Vec<f32>],
    large_raw: &[Vec<f32>],
    codecs: &[OffloadCodec],
) -> Result<Vec<CodecRow>> {
    let raw_labels: Vec<usize> = large_raw.iter().map(|l| argmax(l)).collect();
    let calibrated = set.manifest.threshold("logistic_top2").zip(rules(set).pop());
    codecs
        .iter()
        .map(|&codec| {
            let (mut bytes, mut logits) = (0usize, Vec::with_capacity(split.len()));
            for i in 0..split.len() {
                let (sent, seen) = hiedge_eval::codec::round_trip(split.image(i), &set.manifest.input, codec)?;
                bytes += sent;
                logits.push(set.large.logits(&seen)?);
            }
            let n = split.len().max(1) as f64;
            let labels: Vec<usize> = logits.iter().map(|l| argmax(l)).collect();
            let correct = labels.iter().zip(&split.labels).filter(|(a, b)| a == b).count();
            let agree = labels.iter().zip(&raw_labels).filter(|(a, b)| a == b).count();
            let samples = Samples::from_outputs(
                split.labels.clone(),
                tiny,
                set.tiny.output_kind(),
                &logits,
                set.manifest.temperature(),
            )?;
            let hi = calibrated.as_ref().map(|(t, rule)| samples.at_threshold(rule, *t));
            Ok(CodecRow {
                codec: codec.to_string(),
                mean_bytes: bytes as f64 / n,
                size_ratio: bytes as f64 / n / set.manifest.input_len() as f64,
                large_accuracy: correct as f64 / n,
                agreement_with_raw: agree as f64 / n,
                hi_accuracy: hi.as_ref().map(|m| m.hi_accuracy()),
                offload_fraction: hi.as_ref().map(|m| m.offload_fraction()),
            })
        })
        .collect()
}

fn print_codecs(rows: &[CodecRow], raw_bytes: usize) {
    println!("\nCompressed offloads: the large model on every test image sent as each codec ({raw_bytes} bytes raw)\n");
    println!("| codec | mean bytes | of raw | large-model accuracy % | same label as raw % | HI accuracy % (calibrated) | offload % |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for r in rows {
        let opt = |v: Option<f64>| v.map_or("-".into(), pct);
        println!(
            "| {} | {:.0} | {:.3} | {} | {} | {} | {} |",
            r.codec,
            r.mean_bytes,
            r.size_ratio,
            pct(r.large_accuracy),
            pct(r.agreement_with_raw),
            opt(r.hi_accuracy),
            opt(r.offload_fraction)
        );
    }
}

/// What `hiedge eval` scores answers against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Truth {
    /// The test set's labels.
    Labels,
    /// The large model's answers: accuracy becomes agreement with the large model.
    Large,
}

pub fn run(
    paths: &Paths,
    json: bool,
    limit: Option<usize>,
    max_drop: f64,
    codecs: &[OffloadCodec],
    truth: Truth,
    tiers: Option<&str>,
) -> Result<()> {
    let set = ModelSet::load(&paths.models)?;
    let split = test_split(paths, &set.manifest, limit)?;
    let tiny = logits(&set.tiny, &split, "tiny")?;
    let large = logits(&set.large, &split, "large")?;
    let mut samples =
        Samples::from_outputs(split.labels.clone(), &tiny, set.tiny.output_kind(), &large, set.manifest.temperature())?;
    if truth == Truth::Large {
        samples.labels = samples.large_pred.clone();
    }

    let large_only = samples.baseline(true);
    let target = large_only.hi_accuracy() - max_drop / 100.0;
    let mut rows = vec![
        Row::new("tiny-only", "-".into(), None, &samples.baseline(false)),
        Row::new("large-only", "-".into(), None, &large_only),
    ];
    let mut operating_points = Vec::new();
    for rule in rules(&set) {
        let key = rule.key();
        for t in GRID {
            rows.push(Row::new(key, format!("{t:.3}"), Some(t), &samples.at_threshold(&rule, t)));
        }
        if let Some(t) = set.manifest.threshold(key) {
            rows.push(Row::new(key, format!("calibrated {t:.4}"), Some(t), &samples.at_threshold(&rule, t)));
        }
        let op = samples.operating_point(&rule, target);
        if let Some(op) = &op {
            rows.push(Row::new(key, format!("best {:.4}", op.threshold), Some(op.threshold), &op.metrics));
        }
        operating_points.push((
            key.to_string(),
            op.map(|op| Row::new(key, format!("{:.4}", op.threshold), Some(op.threshold), &op.metrics)),
        ));
    }
    for beta in BETAS {
        let mut policy = PolicyConfig::online_hedge(beta as f32).build()?;
        let m = samples.run_policy(policy.as_mut())?;
        let learnt = policy.threshold();
        let param = format!("beta={beta} (learnt {:.2})", learnt.unwrap_or(f32::NAN));
        rows.push(Row::new("online_hedge", param, learnt, &m));
    }

    let ee_hi = match (&set.ee, set.manifest.decision.as_ref().and_then(|d| d.early_exit)) {
        (Some(ee), Some(cal)) => {
            let ee_set = ee_samples(ee, &split, &large)?;
            let (tiny_ms, stage1_ms, stage2_ms) = device_ms(&set.tiny, ee, &split, 500)?;
            let hi = set.manifest.threshold("logistic_top2").zip(rules(&set).pop()).map(|(t, rule)| {
                Row::new(rule.key(), format!("calibrated {t:.4}"), Some(t), &samples.at_threshold(&rule, t))
            });
            Some(EeReport {
                thresholds: cal.thresholds,
                outcome: ee_set.simulate(&cal.thresholds)?,
                exit_head_accuracy: ee_set.exit_head_accuracy(),
                final_head_accuracy: ee_set.final_head_accuracy(),
                tiny_ms,
                stage1_ms,
                stage2_ms,
                hi,
            })
        }
        _ => None,
    };
    let split_report = match &set.split {
        Some((trunk, tail)) => {
            let s = SplitSamples::compute(trunk, tail, &split)?;
            let (trunk_ms, tail_ms) = split_ms(trunk, tail, &split, 500)?;
            let calibrated = set.manifest.decision.as_ref().and_then(|d| d.split).map(|c| s.at_exit(c.exit));
            Some(SplitReport {
                exit_head_accuracy: s.exit_head_accuracy(),
                f32_accuracy: s.tail_f32_accuracy(),
                u8_accuracy: s.tail_u8_accuracy(),
                raw_bytes: s.raw_bytes,
                feature_bytes: s.feature_bytes,
                calibrated,
                at_target: s.fit_exit(target),
                trunk_ms,
                tail_ms,
            })
        }
        None => None,
    };
    let offload_codecs = codec_rows(&set, &split, &tiny, &large, codecs)?;
    let three_tier = tiers.map(|t| three_tier(paths, &set, &split, [&tiny, &large], t, max_drop)).transpose()?;
    let report = Report {
        offload_codecs,
        model_set: set.manifest.name.clone(),
        ee_hi,
        split: split_report,
        images: samples.len(),
        scored_against: if truth == Truth::Large { "large" } else { "labels" },
        large_only_accuracy: large_only.hi_accuracy(),
        target_accuracy: target,
        rows,
        operating_points,
        three_tier,
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_tables(&report, max_drop);
        if let Some(e) = &report.ee_hi {
            print_ee(e);
        }
        if let Some(sp) = &report.split {
            print_split(sp, report.target_accuracy);
        }
        if !report.offload_codecs.is_empty() {
            print_codecs(&report.offload_codecs, set.manifest.input_len());
        }
        if let Some(t) = &report.three_tier {
            print_three_tier(t);
        }
    }
    Ok(())
}

fn pct(x: f64) -> String {
    format!("{:.2}", 100.0 * x)
}

fn print_tables(r: &Report, max_drop: f64) {
    println!("HI on {} test images of `{}` (tiny on every image, large on offloaded ones)", r.images, r.model_set);
    if r.scored_against == "large" {
        println!("Accuracy is agreement with the large model's answers (--truth large), not with the labels.");
    }
    println!();
    let costs: Vec<String> = BETAS.iter().map(|b| format!("cost β={b}")).collect();
    println!("| policy | threshold / param | offload % | HI acc % | tiny acc on kept % | {} |", costs.join(" | "));
    println!("|---|---|---:|---:|---:|{}", "---:|".repeat(BETAS.len()));
    for row in &r.rows {
        let kept = row.kept_accuracy.map_or("-".into(), pct);
        let cost: Vec<String> = row.cost.iter().map(|(_, c)| format!("{c:.4}")).collect();
        println!(
            "| {} | {} | {} | {} | {} | {} |",
            row.policy,
            row.param,
            pct(row.offload_fraction),
            pct(row.hi_accuracy),
            kept,
            cost.join(" | ")
        );
    }
    println!(
        "\nOperating points: least offloading that reaches large-only - {max_drop} pts = {}% HI accuracy\n",
        pct(r.target_accuracy)
    );
    println!("| policy | threshold | offload % | HI acc % |");
    println!("|---|---:|---:|---:|");
    for (policy, row) in &r.operating_points {
        match row {
            Some(row) => {
                println!("| {policy} | {} | {} | {} |", row.param, pct(row.offload_fraction), pct(row.hi_accuracy))
            }
            None => println!("| {policy} | never reached | - | - |"),
        }
    }
}

fn print_ee(e: &EeReport) {
    let t = e.thresholds;
    println!(
        "\nEE-HI (early-exit tiny model + HI) at the calibrated thresholds: exit when the exit head's p1 > {:.2}, \
         offload at once when p1 <= {:.2}, else run stage 2 and offload when its p1 <= {:.2}. Device compute: \
         median native ms per stage (one thread), weighted by how often each stage runs.\n",
        t.exit, t.offload, t.hi
    );
    println!("| | accuracy % | offload % | exit head answered % | offloaded after stage 1 % | ran stage 2 % | device compute ms/sample |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    if let Some(hi) = &e.hi {
        println!(
            "| HI, tiny + logistic_top2 {} | {} | {} | - | - | - | {:.4} |",
            hi.param,
            pct(hi.hi_accuracy),
            pct(hi.offload_fraction),
            e.tiny_ms
        );
    }
    let o = e.outcome;
    let ee_ms = e.stage1_ms + o.stage2 * e.stage2_ms;
    println!(
        "| EE-HI | {} | {} | {} | {} | {} | {ee_ms:.4} |",
        pct(o.accuracy),
        pct(o.offloaded),
        pct(o.exited),
        pct(1.0 - o.exited - o.stage2),
        pct(o.stage2)
    );
    println!(
        "| early-exit model, exit head only | {} | 0.00 | 100.00 | 0.00 | 0.00 | {:.4} |",
        pct(e.exit_head_accuracy),
        e.stage1_ms
    );
    println!(
        "| early-exit model, final head only | {} | 0.00 | 0.00 | 0.00 | 100.00 | {:.4} |",
        pct(e.final_head_accuracy),
        e.stage1_ms + e.stage2_ms
    );
    if e.hi.is_some() {
        println!(
            "\nEE-HI device compute vs HI: {:.1}% lower ({ee_ms:.4} vs {:.4} ms per sample).",
            100.0 * (1.0 - ee_ms / e.tiny_ms),
            e.tiny_ms
        );
    }
}

fn print_split(s: &SplitReport, target: f64) {
    println!(
        "\nSplit model (MDI-Exit): the device runs the trunk and answers with its exit head when p1 > exit, else \
         sends the trunk's features (u8, {} bytes; a raw sample is {} bytes) and the Worker runs the tail. Device \
         compute: the trunk, {:.4} ms native median (the tail, at the edge: {:.4} ms native).\n",
        s.feature_bytes, s.raw_bytes, s.trunk_ms, s.tail_ms
    );
    println!("| | accuracy % | exit % | bytes sent per sample |");
    println!("|---|---:|---:|---:|");
    println!("| split, no exit, f32 features (not sent: reference) | {} | 0.00 | - |", pct(s.f32_accuracy));
    println!("| split, no exit, u8 features | {} | 0.00 | {} |", pct(s.u8_accuracy), s.feature_bytes);
    println!("| split, exit head only | {} | 100.00 | 0 |", pct(s.exit_head_accuracy));
    let row = |what: String, o: &SplitOutcome| {
        println!("| {what} | {} | {} | {:.1} |", pct(o.accuracy), pct(o.exited), o.bytes_per_sample)
    };
    if let Some(o) = &s.calibrated {
        row(format!("split + exit, calibrated p1 > {:.2}", o.exit), o);
    }
    match &s.at_target {
        Some(o) => row(format!("split + exit for {}%: p1 > {:.2}", pct(target), o.exit), o),
        None => println!("| split + exit for {}% | never reached | - | - |", pct(target)),
    }
}
