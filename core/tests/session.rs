//! The client session on the committed models, natively: local, offloaded and fallback results,
//! OnlineHedge learning from remote labels, modes and their reasons, the allowOffload hook and the
//! offload cap, calibration on labelled samples, profiling, and the stream session.

#[path = "support/committed.rs"]
mod committed;

use hiedge_core::policy::tradeoff::{CalibrationTarget, ScoredSample};
use hiedge_core::protocol::{ClassifyResponse, Tier, TierWhy};
use hiedge_core::server::ModelService;
use hiedge_core::session::{HiSession, Mode, Outcome, RemoteOutcome, Side, Why};
use hiedge_core::{Manifest, Model, PolicyConfig};
use hiedge_eval::fixture::Fixture;

use committed::{clock, fixture, manifest_json, models_dir, session, softmax_f64};

#[test]
fn session_keeps_offloads_and_falls_back_without_losing_samples() {
    let mut s = session(PolicyConfig::AlwaysOffload);
    let fx = fixture(s.manifest());
    let clock = clock();
    let response = |label: u32| {
        let mut probs = vec![0.0; 10];
        probs[label as usize] = 1.0;
        ClassifyResponse {
            label,
            probs,
            model: "large@test".into(),
            infer_ms: None,
            tier: Default::default(),
            why: None,
        }
    };
    let local = s.run_local(fx.image(0), &clock).unwrap();
    assert!(local.decision.is_offload());
    let r = s.finish(local, RemoteOutcome::Answered { response: response(3), round_trip_ms: 12.5 }, clock()).unwrap();
    assert_eq!((r.decision, r.label, r.remote_label, r.bytes_sent), (Outcome::Offloaded, 3, Some(3), 784));
    assert_eq!((r.timings.round_trip_ms, r.timings.remote_ms), (12.5, None));

    let local = s.run_local(fx.image(1), &clock).unwrap();
    let local_label = local.prediction.label;
    let r = s
        .finish(local, RemoteOutcome::Failed { reason: "timeout after 10 ms".into(), round_trip_ms: 10.0 }, clock())
        .unwrap();
    assert_eq!((r.decision, r.label, r.remote_label), (Outcome::Fallback, local_label, None));
    assert_eq!(r.fallback_reason.as_deref(), Some("timeout after 10 ms"));

    // Offload decided but no request made: a caller bug, reported, not a silent local answer.
    let local = s.run_local(fx.image(2), &clock).unwrap();
    assert!(s.finish(local, RemoteOutcome::NotAsked, clock()).is_err());

    s.set_policy(PolicyConfig::AlwaysLocal).unwrap();
    let local = s.run_local(fx.image(3), &clock).unwrap();
    let r = s.finish(local, RemoteOutcome::NotAsked, clock()).unwrap();
    assert_eq!((r.decision, r.bytes_sent, r.offload_wanted), (Outcome::Local, 0, false));
    assert!(r.timings.total_ms >= r.timings.local_ms);

    let st = s.stats();
    assert_eq!((st.samples, st.local, st.offloaded, st.fallback), (3, 1, 1, 1));
    assert!((st.offload_fraction - 2.0 / 3.0).abs() < 1e-12);
    assert_eq!(st.bytes_sent, 2 * 784);
    assert!((st.mean_round_trip_ms - 11.25).abs() < 1e-9);
    assert!(s.check_input(783).unwrap_err().to_string().contains("783"));
    assert_eq!((r.answered_by, st.server), (Side::Device, 0));

    // A set with a server tier: the result says the server answered, through the Worker, and why;
    // the stats count it among the offloaded.
    s.set_policy(PolicyConfig::AlwaysOffload).unwrap();
    let local = s.run_local(fx.image(4), &clock).unwrap();
    let from_server =
        ClassifyResponse { tier: Tier::Server, why: Some(TierWhy::Escalated), model: "oip:big".into(), ..response(5) };
    let r = s.finish(local, RemoteOutcome::Answered { response: from_server, round_trip_ms: 40.0 }, clock()).unwrap();
    assert_eq!(
        (r.answered_by, r.remote_why, r.remote_model.as_deref()),
        (Side::Server, Some(TierWhy::Escalated), Some("oip:big"))
    );
    let local = s.run_local(fx.image(5), &clock).unwrap();
    let kept = ClassifyResponse { why: Some(TierWhy::Confident), ..response(6) };
    let r = s.finish(local, RemoteOutcome::Answered { response: kept, round_trip_ms: 9.0 }, clock()).unwrap();
    assert_eq!((r.answered_by, r.remote_why), (Side::Worker, Some(TierWhy::Confident)));
    let st = s.stats();
    assert_eq!((st.offloaded, st.server), (3, 1));
}

#[test]
fn online_hedge_learns_from_remote_labels_in_a_session() {
    let mut s = session(PolicyConfig::online_hedge(0.3));
    let fx = fixture(s.manifest());
    let clock = clock();
    let start = s.run_local(fx.image(0), &clock).unwrap();
    let first_threshold = s.finish(start, RemoteOutcome::LocalOnly, clock()).unwrap().threshold;
    let mut last = first_threshold;
    for i in 0..400 {
        let local = s.run_local(fx.image(i), &clock).unwrap();
        let remote = if local.decision.is_offload() {
            let logits = fx.reference_logits("large", i).unwrap();
            let label = hiedge_core::prob::argmax(logits);
            let probs = hiedge_core::prob::softmax(logits, 1.0);
            RemoteOutcome::Answered {
                response: ClassifyResponse {
                    label: label as u32,
                    probs,
                    model: "large".into(),
                    infer_ms: None,
                    tier: Default::default(),
                    why: None,
                },
                round_trip_ms: 1.0,
            }
        } else {
            RemoteOutcome::NotAsked
        };
        last = s.finish(local, remote, clock()).unwrap().threshold;
    }
    let (first, last) = (first_threshold.unwrap(), last.unwrap());
    let temperature = s.manifest().temperature();
    // What the learnt threshold should achieve, computed independently of the policy code from
    // onnxruntime's outputs in the fixture: the cost per sample beta * offloaded + errors kept, on
    // 400 images it did not learn from (400..800; the large model's label taken as the truth, as
    // the session does).
    let cost = |theta: f32| {
        (400..800)
            .map(|i| {
                let tiny = softmax_f64(fx.reference_logits("tiny", i).unwrap(), temperature);
                let p1 = tiny.iter().cloned().fold(0.0, f64::max);
                let argmax = |v: &[f64]| (0..v.len()).max_by(|&a, &b| v[a].total_cmp(&v[b])).unwrap();
                let large = softmax_f64(fx.reference_logits("large", i).unwrap(), 1.0);
                if p1 <= theta as f64 {
                    0.3
                } else {
                    (argmax(&tiny) != argmax(&large)) as u8 as f64
                }
            })
            .sum::<f64>()
            / 400.0
    };
    let best = (1..=100).map(|b| cost(b as f32 / 100.0)).fold(f64::INFINITY, f64::min);
    assert!(
        cost(last) < cost(first),
        "learning from remote labels did not lower the cost: threshold {first} -> {last}, cost {} -> {} (best {best})",
        cost(first),
        cost(last)
    );
    let st = s.stats();
    assert!(st.offloaded > 0 && st.local > 0, "{st:?}");
}

#[test]
fn profiling_names_every_operation_and_times_them() {
    let s = session(PolicyConfig::AlwaysLocal);
    let fx = fixture(s.manifest());
    let ops = s.model().profile(fx.image(0), 20, &clock()).unwrap();
    assert!(ops.len() >= 3, "{ops:?}");
    assert!(ops.windows(2).all(|w| w[0].ms >= w[1].ms), "slowest first");
    assert!(ops[0].ms > 0.0 && ops.iter().all(|o| !o.op.is_empty()));
    assert!(s.model().profile(&[0u8; 3], 1, &clock()).is_err());
}

/// The stream session with the real split trunk on the device and, for its requests, the real
/// services the Worker runs (split tail, large model), natively. A scripted clock drives admission.
#[test]
fn a_stream_answers_every_sample_once_and_skips_only_by_its_rule() {
    use hiedge_core::policy::planner::{PlannerConfig, SplitAction};
    use hiedge_core::runtime::split;
    use hiedge_core::server::SplitService;
    use hiedge_core::stream::{Step, StreamDecision, StreamSession};
    use std::cell::Cell;

    let json = manifest_json();
    let manifest = Manifest::from_json(&json).unwrap();
    let fx = fixture(&manifest);
    let sp = manifest.split.clone().unwrap();
    let trunk = split::load_trunk(&manifest, &std::fs::read(models_dir().join(&sp.trunk.file)).unwrap()).unwrap();
    let tiny = Model::load(&manifest, "tiny", &std::fs::read(models_dir().join("tiny.nnef.tar")).unwrap()).unwrap();
    let tail = SplitService::new(&json, std::fs::read(models_dir().join(&sp.tail.file)).unwrap()).unwrap();
    let large = ModelService::new(&json, "large", std::fs::read(models_dir().join("large.nnef.tar")).unwrap()).unwrap();
    // `exit` left out: the manifest's calibrated threshold.
    let config = PlannerConfig { max_wait_ms: Some(100.0), explore_every: 4, ..Default::default() };
    let mut stream =
        StreamSession::new(manifest.clone(), "fashion-mnist", trunk, Some(tiny.clone()), Some(config)).unwrap();

    let now = Cell::new(0.0f64);
    let clock = || now.get();
    let mut results = Vec::new();
    for i in 0..200 {
        // Samples 100..110 arrived 500 ms before the device got to them: over the 100 ms budget.
        let arrived = if (100..110).contains(&i) { now.get() - 500.0 } else { now.get() };
        let index = stream.arrive(arrived);
        // The Worker is "down" for samples 150..170: requests fail.
        let down = (150..170).contains(&i);
        match stream.take(index, fx.image(i).to_vec(), arrived, &clock).unwrap() {
            Step::Done(r) => results.push(r),
            Step::Send(p) => {
                now.set(now.get() + 5.0);
                let outcome = if down {
                    RemoteOutcome::Failed { reason: "network error: scripted outage".into(), round_trip_ms: 5.0 }
                } else if p.path.ends_with("/classify") {
                    RemoteOutcome::Answered { response: large.classify(&p.body, &clock).unwrap(), round_trip_ms: 5.0 }
                } else {
                    let response = tail.classify(&p.body, 1 << 20, &clock).unwrap();
                    RemoteOutcome::Answered { response, round_trip_ms: 5.0 }
                };
                results.push(stream.finish(p, outcome, now.get()).unwrap());
            }
        }
        now.set(now.get() + 1.0);
    }
    assert_eq!(stream.config().exit, manifest.decision.as_ref().unwrap().split.map(|s| s.exit));
    let stats = stream.stats();
    let count = |d: StreamDecision| results.iter().filter(|r| r.decision == d).count() as u64;
    assert_eq!((stats.arrived, results.len()), (200, 200), "every sample answered exactly once");
    assert_eq!(stats.processed + stats.skipped, 200);
    assert_eq!(stats.skipped, 10, "exactly the ten late samples are skipped");
    assert!(results[100..110].iter().all(|r| r.decision == StreamDecision::Skipped && r.label.is_none()));
    assert!(results[100].reason.as_deref().unwrap().contains("waited 500.0 ms"));
    for (d, n) in [
        (StreamDecision::Exit, stats.exited),
        (StreamDecision::Features, stats.features),
        (StreamDecision::Raw, stats.raw),
        (StreamDecision::Device, stats.device),
        (StreamDecision::Fallback, stats.fallback),
    ] {
        assert_eq!(count(d), n, "{d:?}");
    }
    assert!(stats.exited > 100 && stats.features > 0 && stats.raw > 0, "{stats:?}");
    // During the outage: failed requests fall back to the tiny model's answer, then after three
    // failures the planner finishes on the device by plan (probing now and then).
    let outage = &results[150..170];
    assert!(outage.iter().any(|r| r.decision == StreamDecision::Fallback));
    assert!(
        outage.iter().any(|r| r.decision == StreamDecision::Device),
        "{:?}",
        outage.iter().map(|r| r.decision).collect::<Vec<_>>()
    );
    for r in outage.iter().filter(|r| matches!(r.decision, StreamDecision::Fallback | StreamDecision::Device)) {
        let i = r.index as usize;
        assert_eq!(r.label, Some(tiny.predict(fx.image(i), manifest.temperature()).unwrap().label));
    }
    assert!(
        results[175..].iter().any(|r| matches!(r.decision, StreamDecision::Features | StreamDecision::Raw)),
        "the network comes back"
    );
    // Remote answers are the services' own; exits are the exit head's.
    for r in &results {
        match r.decision {
            StreamDecision::Features => assert!(r.remote_model.as_deref().unwrap().starts_with("split_tail@")),
            StreamDecision::Raw => assert!(r.remote_model.as_deref().unwrap().starts_with("large@")),
            StreamDecision::Exit => assert_eq!(r.action, Some(SplitAction::Exit)),
            _ => {}
        }
    }
    let answered: Vec<_> = results.iter().filter(|r| r.label.is_some()).collect();
    let right = answered.iter().filter(|r| r.label == Some(fx.labels[r.index as usize] as usize)).count();
    let accuracy = right as f64 / answered.len() as f64;
    assert!(accuracy >= 0.88, "stream accuracy {accuracy}");
    eprintln!("stream: {stats:?}, accuracy {accuracy:.4}");
}

/// The Worker's answer for fixture image `i`: onnxruntime's large-model logits from the fixture.
fn large_answer(fx: &Fixture, i: usize) -> RemoteOutcome {
    let logits = fx.reference_logits("large", i).unwrap();
    RemoteOutcome::Answered {
        response: ClassifyResponse {
            label: hiedge_core::prob::argmax(logits) as u32,
            probs: hiedge_core::prob::softmax(logits, 1.0),
            model: "large@fixture".into(),
            infer_ms: None,
            tier: Default::default(),
            why: None,
        },
        round_trip_ms: 5.0,
    }
}

fn failed() -> RemoteOutcome {
    RemoteOutcome::Failed { reason: "network error: refused".into(), round_trip_ms: 1.0 }
}

#[test]
fn every_mode_answers_where_it_says_and_says_why() {
    let mut s = session(PolicyConfig::calibrated(&Manifest::from_json(&manifest_json()).unwrap()).unwrap());
    let fx = fixture(s.manifest());
    let clock = clock();
    // Cascade: the route follows the decision module, on images it keeps and images it sends.
    let (mut kept, mut sent) = (0, 0);
    for i in 0..200 {
        let local = s.run_local(fx.image(i), &clock).unwrap();
        assert_eq!(local.route.send, local.decision.is_offload(), "image {i}");
        let remote = if local.route.send { large_answer(&fx, i) } else { RemoteOutcome::NotAsked };
        let r = s.finish(local, remote, clock()).unwrap();
        match r.decision {
            Outcome::Local => {
                kept += 1;
                assert_eq!((r.answered_by, r.why), (Side::Device, Why::Confident));
            }
            Outcome::Offloaded => {
                sent += 1;
                assert_eq!((r.answered_by, r.why), (Side::Worker, Why::Unsure));
            }
            Outcome::Fallback => panic!("no failure here"),
        }
    }
    assert!(kept > 100 && sent > 10, "kept {kept}, sent {sent}");

    // only_local and prefer_local: never a request, whatever the decision; offloadWanted still told.
    for mode in [Mode::OnlyLocal, Mode::PreferLocal] {
        s.set_mode(mode);
        for i in 0..60 {
            let local = s.run_local(fx.image(i), &clock).unwrap();
            assert!(!local.route.send);
            let wanted = local.decision.is_offload();
            let r = s.finish(local, RemoteOutcome::NotAsked, clock()).unwrap();
            assert_eq!((r.decision, r.answered_by, r.why, r.bytes_sent), (Outcome::Local, Side::Device, Why::Mode, 0));
            assert_eq!(r.offload_wanted, wanted);
        }
    }
    // prefer_remote: every sample is sent; a failure is answered on the device.
    s.set_mode(Mode::PreferRemote);
    let local = s.run_local(fx.image(0), &clock).unwrap();
    assert!(local.route.send && !local.decision.is_offload(), "image 0 is one the decision module keeps");
    let r = s.finish(local, large_answer(&fx, 0), clock()).unwrap();
    assert_eq!(
        (r.decision, r.answered_by, r.why, r.offload_wanted),
        (Outcome::Offloaded, Side::Worker, Why::Mode, false)
    );
    let local = s.run_local(fx.image(1), &clock).unwrap();
    let r = s.finish(local, failed(), clock()).unwrap();
    assert_eq!((r.decision, r.answered_by, r.why), (Outcome::Fallback, Side::Device, Why::Mode));
    // only_remote: a failure rejects (no device answer), an answer is the Worker's.
    s.set_mode(Mode::OnlyRemote);
    let local = s.run_local(fx.image(2), &clock).unwrap();
    let e = s.finish(local, failed(), clock()).unwrap_err();
    assert_eq!(e.code(), "RemoteUnavailable");
    assert!(e.to_string().contains("network error: refused"), "{e}");
    let local = s.run_local(fx.image(3), &clock).unwrap();
    assert_eq!(s.finish(local, large_answer(&fx, 3), clock()).unwrap().answered_by, Side::Worker);
    // A request for a sample routed to the device is a caller bug, reported.
    s.set_mode(Mode::OnlyLocal);
    let local = s.run_local(fx.image(4), &clock).unwrap();
    assert!(s.finish(local, large_answer(&fx, 4), clock()).is_err());
}

#[test]
fn the_hook_and_the_offload_cap_keep_samples_on_the_device() {
    let mut s = session(PolicyConfig::AlwaysOffload);
    let fx = fixture(s.manifest());
    let clock = clock();
    // The hook said no: answered on the device, flagged, counted.
    let mut local = s.run_local(fx.image(0), &clock).unwrap();
    local.withhold(Why::Refused);
    assert!(!s.admit_request(&mut local, 0.0));
    let r = s.finish(local, RemoteOutcome::NotAsked, clock()).unwrap();
    assert_eq!(
        (r.decision, r.why, r.offload_wanted, r.answered_by),
        (Outcome::Local, Why::Refused, true, Side::Device)
    );

    // At most 2 requests in any 60 s (clock readings in ms).
    s.set_offload_cap(Some(2));
    let mut admitted = Vec::new();
    for (i, now) in [0.0, 1_000.0, 2_000.0, 59_999.0, 60_000.0, 60_500.0, 61_000.0].into_iter().enumerate() {
        let mut local = s.run_local(fx.image(i), &clock).unwrap();
        let ok = s.admit_request(&mut local, now);
        admitted.push(ok);
        let remote = if ok { large_answer(&fx, i) } else { RemoteOutcome::NotAsked };
        let r = s.finish(local, remote, clock()).unwrap();
        assert_eq!(r.why, if ok { Why::Unsure } else { Why::OffloadCap }, "sample {i} at {now} ms");
    }
    // 0 and 1000 fill the window; 60000 frees the slot of 0, 61000 the slot of 1000.
    assert_eq!(admitted, [true, true, false, false, true, false, true]);
    let st = s.stats();
    assert_eq!((st.withheld, st.offloaded, st.local), (4, 4, 4), "1 refused + 3 over the cap; 4 sent");
    s.set_offload_cap(None);
    let mut local = s.run_local(fx.image(9), &clock).unwrap();
    assert!(s.admit_request(&mut local, 61_001.0));
}

#[test]
fn calibrating_on_labelled_samples_hits_its_target_on_held_out_ones() {
    let mut s = session(PolicyConfig::MaxProb { threshold: 0.5 });
    let fx = fixture(s.manifest());
    let clock = clock();
    // Scored as the browser's HiClient.calibrate does: the device model's score and whether each
    // model was right; the Worker's answers are onnxruntime's large-model logits.
    let scored = |s: &mut HiSession, range: std::ops::Range<usize>| -> Vec<ScoredSample> {
        range
            .map(|i| {
                let local = s.run_local(fx.image(i), &clock).unwrap();
                let large = hiedge_core::prob::argmax(fx.reference_logits("large", i).unwrap());
                ScoredSample {
                    score: s.calibration_rule().unwrap().score_unchecked(&local.prediction.probs),
                    local_right: local.prediction.label == fx.labels[i] as usize,
                    remote_right: large == fx.labels[i] as usize,
                }
            })
            .collect()
    };
    let (fit, held_out) = (scored(&mut s, 0..500), scored(&mut s, 500..1000));
    // Written out here, not by the code under test: share offloaded and accuracy at a threshold.
    let at = |samples: &[ScoredSample], t: f32| {
        let off = samples.iter().filter(|x| x.score <= t).count() as f64 / samples.len() as f64;
        let right = samples.iter().filter(|x| if x.score <= t { x.remote_right } else { x.local_right }).count();
        (off, right as f64 / samples.len() as f64)
    };

    let p = s.calibrate(&fit, CalibrationTarget::Offload(0.2)).unwrap();
    assert!(p.offloaded <= 0.2 && p.offloaded > 0.18, "{p:?}");
    assert_eq!(s.policy(), &PolicyConfig::MaxProb { threshold: p.threshold });
    assert_eq!(s.stats().calibrated_offload_fraction, Some(p.offloaded));
    let (off, _) = at(&held_out, p.threshold);
    assert!((off - 0.2).abs() <= 0.05, "held-out offload share {off} for target 0.2 (tolerance 0.05)");

    let local_acc = held_out.iter().filter(|x| x.local_right).count() as f64 / 500.0;
    let p = s.calibrate(&fit, CalibrationTarget::Accuracy(0.92)).unwrap();
    assert!(p.accuracy >= 0.92, "{p:?}");
    let (off, acc) = at(&held_out, p.threshold);
    assert!(acc >= 0.92 - 0.02, "held-out accuracy {acc} for target 0.92 (tolerance 0.02); tiny alone {local_acc}");
    assert!(off < 1.0, "it does not offload everything: {off}");

    assert_eq!(s.calibrate(&fit, CalibrationTarget::Accuracy(1.0)).unwrap_err().code(), "InvalidPolicy");
    s.set_policy(PolicyConfig::AlwaysLocal).unwrap();
    assert!(s.calibrate(&fit, CalibrationTarget::Offload(0.2)).unwrap_err().to_string().contains("has none"));
}

#[test]
fn the_breaker_stops_offloads_after_failures_and_probes_after_the_cooldown() {
    use hiedge_core::session::breaker::{BreakerConfig, BreakerPhase, FailMode};
    let mut s = session(PolicyConfig::AlwaysOffload);
    let fx = fixture(s.manifest());
    let clock = clock();
    s.set_breaker(Some(BreakerConfig { failures: 3, cooldown_ms: 1_000.0, ..Default::default() })).unwrap();
    // The Worker is down: 3 failures, then samples are answered on the device without a request.
    let mut whys = Vec::new();
    for (i, now) in [0.0, 10.0, 20.0, 30.0, 500.0, 999.0].into_iter().enumerate() {
        let mut local = s.run_local(fx.image(i), &clock).unwrap();
        let sent = s.admit_request(&mut local, now);
        let r = s.finish(local, if sent { failed() } else { RemoteOutcome::NotAsked }, now).unwrap();
        whys.push((r.decision, r.why));
    }
    let f = (Outcome::Fallback, Why::Unsure);
    let open = (Outcome::Local, Why::CircuitOpen);
    assert_eq!(whys, [f, f, f, open, open, open]);
    let st = s.breaker_state().unwrap();
    assert_eq!((st.phase, st.open_until_ms, st.refused, st.opened), (BreakerPhase::Open, Some(1_020.0), 3, 1));
    // After the cooldown one probe goes; while it is out the next sample stays on the device.
    let mut probe = s.run_local(fx.image(6), &clock).unwrap();
    assert!(s.admit_request(&mut probe, 1_020.0));
    let mut during = s.run_local(fx.image(7), &clock).unwrap();
    assert!(!s.admit_request(&mut during, 1_021.0));
    assert_eq!(s.finish(during, RemoteOutcome::NotAsked, 1_021.0).unwrap().why, Why::CircuitOpen);
    // The Worker is back: the probe's answer closes the breaker and offloads resume.
    assert_eq!(s.finish(probe, large_answer(&fx, 6), 1_030.0).unwrap().decision, Outcome::Offloaded);
    assert_eq!(s.breaker_state().unwrap().phase, BreakerPhase::Closed);
    let mut local = s.run_local(fx.image(8), &clock).unwrap();
    assert!(s.admit_request(&mut local, 1_031.0));
    assert_eq!(s.finish(local, large_answer(&fx, 8), 1_040.0).unwrap().decision, Outcome::Offloaded);
    let st = s.stats();
    assert_eq!(st.samples, 9, "every sample answered");

    // fail_mode wait: a refused sample waits for the probe, and gives up only after a failed one.
    s.set_breaker(Some(BreakerConfig {
        failures: 1,
        cooldown_ms: 100.0,
        fail_mode: FailMode::Wait,
        ..Default::default()
    }))
    .unwrap();
    let mut first = s.run_local(fx.image(0), &clock).unwrap();
    assert_eq!(s.breaker_wait(&mut first, s.breaker_ticket(), 0.0), hiedge_core::session::BreakerWait::Go);
    assert!(s.admit_request(&mut first, 0.0));
    s.finish(first, failed(), 5.0).unwrap(); // open until 105
    let mut waiting = s.run_local(fx.image(1), &clock).unwrap();
    let ticket = s.breaker_ticket();
    use hiedge_core::session::BreakerWait;
    assert_eq!(s.breaker_wait(&mut waiting, ticket, 50.0), BreakerWait::Until(105.0));
    assert_eq!(s.breaker_wait(&mut waiting, ticket, 105.0), BreakerWait::Go);
    assert!(s.admit_request(&mut waiting, 105.0), "the waiting sample is the probe");
    let mut second = s.run_local(fx.image(2), &clock).unwrap();
    let ticket2 = s.breaker_ticket();
    assert_eq!(s.breaker_wait(&mut second, ticket2, 106.0), BreakerWait::Until(106.0), "a probe is out");
    s.finish(waiting, failed(), 110.0).unwrap(); // the probe failed: open until 210
    assert_eq!(s.breaker_wait(&mut second, ticket2, 111.0), BreakerWait::GiveUp);
    let r = s.finish(second, RemoteOutcome::NotAsked, 111.0).unwrap();
    assert_eq!((r.decision, r.why, r.answered_by), (Outcome::Local, Why::CircuitOpen, Side::Device));
}

#[test]
fn shadow_and_rollout_report_what_the_candidate_did_or_would_do() {
    use hiedge_core::session::candidate::{Arm, Rollout, RolloutUnit};
    let mut s = session(PolicyConfig::MaxProb { threshold: 0.7 });
    let fx = fixture(s.manifest());
    let clock = clock();
    s.set_mode(Mode::PreferRemote); // every sample answered by the large model: every one checked
    s.set_shadow(Some(PolicyConfig::MaxProb { threshold: 0.95 })).unwrap();
    let (n, mut offloads, mut kept, mut kept_agree) = (100, 0, 0, 0);
    for i in 0..n {
        let mut local = s.run_local(fx.image(i), &clock).unwrap();
        let p1 = local.prediction.probs[local.prediction.label];
        let local_label = local.prediction.label;
        assert_eq!(local.shadow_offload, Some(p1 <= 0.95), "image {i}");
        assert!(s.admit_request(&mut local, 0.0));
        let r = s.finish(local, large_answer(&fx, i), clock()).unwrap();
        if p1 <= 0.95 {
            offloads += 1;
        } else {
            kept += 1;
            kept_agree += u64::from(Some(local_label) == r.remote_label);
        }
    }
    let report = s.shadow_report().unwrap();
    assert_eq!((report.samples, report.offloads, report.checked, report.kept_checked), (100, offloads, 100, kept));
    let agreement = (offloads + kept_agree) as f64 / n as f64;
    assert!((report.agreement.unwrap() - agreement).abs() < 1e-12);
    assert!(report.expected_kept_accuracy.is_some_and(|a| a > 0.8 && a <= 1.0));
    assert!(offloads > 5 && kept > 50, "offloads {offloads}, kept {kept}");

    // Rollout by sample: the candidate (always offload) decides exactly its hashed samples.
    s.set_mode(Mode::Cascade);
    s.set_shadow(None).unwrap();
    let rollout = Rollout::new(PolicyConfig::AlwaysOffload, 0.5, RolloutUnit::Sample, None).unwrap();
    let arms: Vec<Arm> = (0..40).map(|i| rollout.arm(fx.image(i))).collect();
    s.set_rollout(Some(rollout)).unwrap();
    for (i, arm) in arms.iter().enumerate() {
        let mut local = s.run_local(fx.image(i), &clock).unwrap();
        assert_eq!(local.arm, Some(*arm));
        if *arm == Arm::Candidate {
            assert!(local.decision.is_offload());
        }
        let remote = if s.admit_request(&mut local, 0.0) { large_answer(&fx, i) } else { RemoteOutcome::NotAsked };
        assert_eq!(s.finish(local, remote, clock()).unwrap().arm, Some(*arm));
    }
    let r = s.rollout_report().unwrap();
    let candidates = arms.iter().filter(|a| **a == Arm::Candidate).count() as u64;
    assert_eq!(
        (r.candidate.samples, r.candidate.offloads, r.control.samples),
        (candidates, candidates, 40 - candidates)
    );
    assert!(candidates > 5 && candidates < 35, "{candidates}");
    // EE-HI decides on the exit head: no shadow beside it.
    assert!(s.set_policy(PolicyConfig::EeHi { exit: 0.9, offload: 0.3, hi: 0.8 }).is_err());
}

#[test]
fn the_session_monitor_sees_its_decisions() {
    let manifest = Manifest::from_json(&manifest_json()).unwrap();
    let mut s = session(PolicyConfig::calibrated(&manifest).unwrap());
    let fx = fixture(s.manifest());
    let clock = clock();
    s.set_monitor(Some(Default::default())).unwrap();
    let mut wanted = 0;
    for i in 0..50 {
        let mut local = s.run_local(fx.image(i), &clock).unwrap();
        wanted += u64::from(local.decision.is_offload());
        let remote = if s.admit_request(&mut local, 0.0) { large_answer(&fx, i) } else { RemoteOutcome::NotAsked };
        s.finish(local, remote, clock()).unwrap();
    }
    let m = s.monitor_state().unwrap();
    assert_eq!(m.samples, 50);
    assert!((m.offload.overall_rate - wanted as f64 / 50.0).abs() < 1e-12);
    assert_eq!(m.classes.iter().map(|c| c.offloaded).sum::<u64>(), wanted);
    assert_eq!(m.accuracy.offloaded_answered, wanted);
    // Without a threshold policy there is no calibrated rate to watch: the monitor pauses, and
    // comes back from scratch with a calibrated policy.
    s.set_policy(PolicyConfig::AlwaysOffload).unwrap();
    assert!(s.monitor_state().is_none());
    assert!(s.set_monitor(Some(Default::default())).is_err());
    s.set_monitor(None).unwrap();
    s.set_monitor(Some(Default::default())).unwrap_err();
    s.set_policy(PolicyConfig::calibrated(&manifest).unwrap()).unwrap();
    assert!(s.monitor_state().is_none(), "set_monitor failed, so nothing was asked for");
    s.set_monitor(Some(Default::default())).unwrap();
    s.set_policy(PolicyConfig::AlwaysLocal).unwrap();
    s.set_policy(PolicyConfig::calibrated(&manifest).unwrap()).unwrap();
    assert_eq!(s.monitor_state().map(|m| m.samples), Some(0), "back, from scratch");
}
