//! The three tiers end to end: the real Worker under `wrangler dev` in front of a real Open
//! Inference Protocol server from PyPI (KServe's Python ModelServer running the committed
//! Fashion-MNIST large model with onnxruntime, `tests/oip/kserve_onnx.py`), and in front of a
//! hostile one that answers garbage. Run by `make test-oip`, which installs the server's Python
//! environment and passes its interpreter as `HIEDGE_OIP_PYTHON`.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use hiedge_cli::wrangler::WranglerDev;
use hiedge_core::manifest::PerChannel;
use hiedge_core::prob::{softmax, top2};
use hiedge_core::protocol::{ClassifyResponse, ErrorCode, Tier, TierWhy};
use hiedge_core::runtime::image::{to_model_pixels, Image, PixelFormat};
use hiedge_core::{Manifest, Model};
use hiedge_eval::fixture::Fixture;
use serde_json::{json, Value};
use support::http::{assert_error, req, send, Resp};
use support::repo;

/// The client's token for the Worker (`API_TOKEN`), which must never reach the server.
const CLIENT_TOKEN: &str = "client-token-6a1f";
/// The Worker's token for the server (the `OIP_TOKEN` secret).
const SERVER_TOKEN: &str = "worker-to-server-93c2";
/// Agreement with onnxruntime's reference logits, as probabilities.
const TOLERANCE: f32 = 1e-4;

/// KServe's ModelServer on a loopback port it chose, with every line it printed on stdout.
struct OipServer {
    child: Option<Child>,
    url: String,
    lines: Arc<Mutex<Vec<String>>>,
}

/// `0.5`, or `0.485,0.456,0.406`: a manifest's per-channel value as the server script takes it.
fn per_channel(v: &PerChannel) -> String {
    match v {
        PerChannel::All(x) => x.to_string(),
        PerChannel::Each(xs) => xs.iter().map(f32::to_string).collect::<Vec<_>>().join(","),
    }
}

impl OipServer {
    /// Serves `onnx` (relative to the repository) as `model`, its output named `logits`,
    /// normalising UINT8 input as `m` says.
    fn start(m: &Manifest, model: &str, onnx: &str) -> Self {
        let python = std::env::var("HIEDGE_OIP_PYTHON")
            .expect("HIEDGE_OIP_PYTHON names the Python with kserve and onnxruntime: run `make test-oip`");
        let norm = &m.input.normalize;
        let mut child = Command::new(python)
            .current_dir(repo())
            .arg("tests/oip/kserve_onnx.py")
            .args(["--model-name", model, "--onnx", onnx, "--output-name", "logits"])
            .args(["--token", SERVER_TOKEN, "--scale", &norm.scale.to_string()])
            .args(["--mean", &per_channel(&norm.mean), "--std", &per_channel(&norm.std)])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("start the KServe server");
        let stdout = child.stdout.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let kept = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(|l| l.ok()) {
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    if let Some(url) = v["url"].as_str() {
                        let _ = tx.send(url.to_string());
                    }
                }
                kept.lock().unwrap().push(line);
            }
        });
        let url = rx.recv_timeout(Duration::from_secs(180)).expect("the KServe server did not report its URL");
        OipServer { child: Some(child), url, lines }
    }

    /// The `{"event": "request", ...}` lines: one per inference request the model received.
    fn requests(&self) -> Vec<Value> {
        let lines = self.lines.lock().unwrap();
        lines.iter().filter_map(|l| serde_json::from_str::<Value>(l).ok()).filter(|v| v["event"] == "request").collect()
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").args(["-KILL", "--", &format!("-{}", child.id())]).status();
            let _ = child.wait();
        }
    }
}

impl Drop for OipServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A hostile Open Inference Protocol server: ready, then answers each model by its name with
/// something that is not an answer (`junk`, `inf`, `shape`, `status`, `huge`), is not ready
/// (`notready`), or never answers (`slow`, until the caller gives up and closes).
fn hostile_server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming().map_while(Result::ok) {
            std::thread::spawn(move || answer_hostile(stream));
        }
    });
    url
}

fn answer_hostile(mut stream: TcpStream) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).unwrap_or(0) == 0 {
            return;
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_string();
    let path = head.split_whitespace().nth(1).unwrap_or_default().to_string();
    let length = head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap_or(0)))
        .unwrap_or(0usize);
    let mut body = vec![0u8; length];
    let _ = stream.read_exact(&mut body);
    let model = path.split('/').nth(3).unwrap_or_default().to_string();
    let reply = |stream: &mut TcpStream, status: &str, body: &[u8]| {
        let head = format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        let _ = stream.write_all(head.as_bytes());
        let _ = stream.write_all(body);
    };
    let output = |data: &str, shape: &str| {
        format!(
            r#"{{"model_name":"x","outputs":[{{"name":"logits","shape":{shape},"datatype":"FP32","data":{data}}}]}}"#
        )
    };
    if path.ends_with("/ready") {
        let ok = model != "notready";
        return reply(&mut stream, if ok { "200 OK" } else { "503 Service Unavailable" }, b"{}");
    }
    match model.as_str() {
        "junk" => reply(&mut stream, "200 OK", b"<html>hostile-secret: not an answer</html>"),
        "inf" => reply(&mut stream, "200 OK", output("[1e39,0,0,0,0,0,0,0,0,0]", "[1,10]").as_bytes()),
        "shape" => reply(&mut stream, "200 OK", output("[0.1,0.2,0.7]", "[1,3]").as_bytes()),
        "status" => reply(&mut stream, "500 Internal Server Error", b"{\"error\":\"hostile-secret stack trace\"}"),
        "huge" => {
            // Two MiB of one JSON string, announced and sent.
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2097152\r\n\r\n");
            let _ = stream.write_all(&vec![b' '; 2 << 20]);
        }
        // "slow": read until the Worker gives up and closes the connection.
        _ => while stream.read(&mut byte).unwrap_or(0) > 0 {},
    }
}

/// The committed Fashion-MNIST set copied as `name`, with `oip` in its manifest.
fn write_set(assets: &Path, name: &str, oip: Value) {
    write_set_from(assets, "models/fashion-mnist", name, oip)
}

/// The committed set in `from` (relative to the repository) copied as `name`, with `oip`.
fn write_set_from(assets: &Path, from: &str, name: &str, oip: Value) {
    let from = repo().join(from);
    let to = assets.join(name);
    std::fs::create_dir_all(&to).unwrap();
    for entry in std::fs::read_dir(&from).unwrap() {
        let path = entry.unwrap().path();
        let file = path.file_name().unwrap().to_str().unwrap().to_string();
        if path.is_file() && file.ends_with(".nnef.tar") {
            std::fs::copy(&path, to.join(&file)).unwrap();
        }
    }
    let mut m: Value = serde_json::from_str(&std::fs::read_to_string(from.join("manifest.json")).unwrap()).unwrap();
    m["name"] = name.into();
    m["oip"] = oip;
    let parsed = Manifest::from_json(&m.to_string()).unwrap_or_else(|e| panic!("{name}: {e}"));
    parsed.oip_tier().unwrap_or_else(|e| panic!("{name}: {e}"));
    std::fs::write(to.join("manifest.json"), serde_json::to_string_pretty(&m).unwrap()).unwrap();
}

/// The Worker under `wrangler dev` serving the sets in `assets` (the default `default_set`), with
/// the client's token, `server` as `OIP_URL`, the Worker's token for it as `OIP_TOKEN`, and `more`.
fn start_worker(assets: &Path, default_set: &str, server: &OipServer, more: &[(&str, &str)]) -> WranglerDev {
    std::fs::copy(repo().join("models/.assetsignore"), assets.join(".assetsignore")).unwrap();
    let mut vars = vec![
        ("DEFAULT_MODEL_SET", default_set),
        ("API_TOKEN", CLIENT_TOKEN),
        ("OIP_URL", server.url.as_str()),
        ("OIP_TOKEN", SERVER_TOKEN),
    ];
    vars.extend_from_slice(more);
    WranglerDev::start_with_assets(&repo(), &vars, Some(assets)).unwrap()
}

fn classify(base: &str, set: &str, pixels: &[u8]) -> Resp {
    let r = req("POST", &format!("/v1/models/{set}/classify"))
        .header("Authorization", &format!("Bearer {CLIENT_TOKEN}"))
        .octets(pixels.to_vec());
    send(base, &r)
}

/// Nothing the client receives names the server or its token.
fn assert_nothing_leaks(resp: &Resp, secrets: &[&str], what: &str) {
    let headers: Vec<String> = resp.headers.iter().map(|(k, v)| format!("{k}: {}", v.to_str().unwrap_or(""))).collect();
    for secret in secrets {
        assert!(!resp.body.contains(secret), "{what}: the body names `{secret}`: {}", resp.body);
        assert!(!headers.iter().any(|h| h.contains(secret)), "{what}: a header names `{secret}`: {headers:?}");
    }
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

#[test]
#[ignore = "needs the built Worker, wrangler and the KServe environment: run by `make test-oip`"]
fn the_worker_cascades_to_a_real_oip_server_and_survives_a_broken_one() {
    let repo = repo();
    let m = Manifest::from_json(&std::fs::read_to_string(repo.join("models/fashion-mnist/manifest.json")).unwrap())
        .unwrap();
    let fx =
        Fixture::load(&repo.join("models/fashion-mnist/fixture"), &["mid", "large"], m.input_len(), m.classes.len())
            .unwrap();
    // onnxruntime's own answers for the large and mid models (models/train wrote them with onnxruntime).
    let reference = |i: usize| softmax(fx.reference_logits("large", i).unwrap(), 1.0);
    let mid_reference = |i: usize| softmax(fx.reference_logits("mid", i).unwrap(), 1.0);
    let mut server = OipServer::start(&m, "fashion-large", "models/fashion-mnist/large.onnx");
    let hostile = hostile_server();
    let host = |url: &str| url.trim_start_matches("http://").to_string();
    let secrets = [host(&server.url), host(&hostile), SERVER_TOKEN.to_string(), "hostile-secret".to_string()];
    let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();

    let tmp = tempfile::tempdir().unwrap();
    let assets = tmp.path().join("assets");
    let always = json!({"kind": "always"});
    // Every sample to the server, pixels as UINT8 JSON, the Worker's model when the server fails.
    let tier3_json = json!({"model": "fashion-large", "input_name": "image", "output_name": "logits",
        "datatype": "UINT8", "output": "logits", "escalate": always, "timeout_ms": 30000, "token_secret": "OIP_TOKEN"});
    write_set(&assets, "tier3-json", tier3_json);
    // Three tiers: the Worker runs the mid model and sends a sample to the server only when it is
    // unsure, normalised FP32 through the binary extension, an error when the server fails.
    let escalate = json!({"kind": "max_prob", "threshold": 0.9});
    let tier3_binary = json!({"model": "fashion-large", "input_name": "image", "output_name": "logits",
        "datatype": "FP32", "output": "logits", "binary": true, "escalate": escalate, "on_failure": "error",
        "timeout_ms": 30000, "token_secret": "OIP_TOKEN", "worker_model": "mid"});
    write_set(&assets, "tier3-binary", tier3_binary);
    // Its large model runs on the server only: it is not deployed with the Worker.
    std::fs::remove_file(assets.join("tier3-binary/large.nnef.tar")).unwrap();
    let bad = |model: &str, on_failure: &str| {
        json!({"model": model, "input_name": "image", "output_name": "logits", "datatype": "UINT8",
            "output": "logits", "escalate": always, "on_failure": on_failure, "timeout_ms": 500, "url_var": "HOSTILE_URL"})
    };
    let hostile_cases = [
        ("junk", ErrorCode::UpstreamBadResponse),
        ("inf", ErrorCode::UpstreamBadResponse),
        ("shape", ErrorCode::UpstreamBadResponse),
        ("status", ErrorCode::UpstreamBadResponse),
        ("huge", ErrorCode::UpstreamBadResponse),
        ("notready", ErrorCode::UpstreamUnavailable),
        ("slow", ErrorCode::UpstreamUnavailable),
    ];
    for (model, _) in hostile_cases {
        write_set(&assets, &format!("bad-{model}"), bad(model, "error"));
    }
    write_set(&assets, "bad-fallback", bad("junk", "worker"));
    let dev = start_worker(&assets, "tier3-json", &server, &[("HOSTILE_URL", hostile.as_str())]);
    let base = dev.url.as_str();

    // The manifest a browser downloads names the variable and the secret, never their values.
    let served =
        send(base, &req("GET", "/v1/models/tier3-json").header("Authorization", &format!("Bearer {CLIENT_TOKEN}")));
    assert_eq!(served.status, 200, "{}", served.body);
    assert!(served.body.contains("OIP_TOKEN"));
    assert_nothing_leaks(&served, &secrets, "the manifest");

    // 1. JSON, UINT8: every sample answered by the server, as onnxruntime answers it.
    let mut json_diff = 0.0f32;
    for i in 0..20 {
        let resp = classify(base, "tier3-json", fx.image(i));
        assert_eq!(resp.status, 200, "tier3-json {i}: {}", resp.body);
        assert_nothing_leaks(&resp, &secrets, "tier3-json");
        let r = ClassifyResponse::from_json(&resp.body, 10).unwrap();
        assert_eq!((r.tier, r.why, r.model.as_str()), (Tier::Server, Some(TierWhy::Escalated), "oip:fashion-large"));
        let want = reference(i);
        json_diff = json_diff.max(max_diff(&r.probs, &want));
        let (p1, p2) = top2(&want);
        if p1 - p2 > TOLERANCE {
            assert_eq!(r.label as usize, hiedge_core::prob::argmax(&want), "tier3-json {i}");
        }
    }
    assert!(json_diff <= TOLERANCE, "JSON answers differ from onnxruntime's by {json_diff}");

    // 2. Binary extension, FP32, three tiers: the Worker's mid model keeps what it is sure of and
    //    sends the rest on; its answers are onnxruntime's mid model's, the server's its large
    //    model's. Samples within the tolerance of the threshold are not judged.
    let (mut kept, mut escalated, mut binary_diff) = (0, 0, 0.0f32);
    for i in 0..100 {
        let resp = classify(base, "tier3-binary", fx.image(i));
        assert_eq!(resp.status, 200, "tier3-binary {i}: {}", resp.body);
        assert_nothing_leaks(&resp, &secrets, "tier3-binary");
        let r = ClassifyResponse::from_json(&resp.body, 10).unwrap();
        let confidence = top2(&mid_reference(i)).0;
        match (r.tier, r.why) {
            (Tier::Worker, Some(TierWhy::Confident)) => {
                kept += 1;
                assert!(confidence > 0.9 - TOLERANCE, "{i}: kept at {confidence}");
                assert!(r.model.starts_with("mid@"), "{}", r.model);
                binary_diff = binary_diff.max(max_diff(&r.probs, &mid_reference(i)));
            }
            (Tier::Server, Some(TierWhy::Escalated)) => {
                escalated += 1;
                assert!(confidence <= 0.9 + TOLERANCE, "{i}: sent on at {confidence}");
                assert_eq!(r.model, "oip:fashion-large");
                binary_diff = binary_diff.max(max_diff(&r.probs, &reference(i)));
            }
            other => panic!("tier3-binary {i}: {other:?}"),
        }
    }
    assert!(kept > 0 && escalated > 0, "kept {kept}, escalated {escalated}");
    assert!(binary_diff <= TOLERANCE, "three-tier answers differ from onnxruntime's by {binary_diff}");

    // The server saw one request per escalated sample, each with the Worker's token and none with
    // the client's (a forwarded client token would read as `wrong`).
    let seen = server.requests();
    assert_eq!(seen.len(), 20 + escalated, "{seen:?}");
    assert!(seen.iter().all(|r| r["authorization"] == "ok"), "{seen:?}");
    eprintln!(
        "oip: 20 JSON answers (max |diff| {json_diff:e}); 100 three-tier samples: {kept} kept by the Worker's mid \
         model, {escalated} answered by the server (binary; max |diff| {binary_diff:e}); {} server requests, all with the Worker's token",
        seen.len()
    );

    // 3. A hostile server: each wrong answer is a 502 or 503 JSON naming nothing of it.
    for (model, code) in hostile_cases {
        let resp = classify(base, &format!("bad-{model}"), fx.image(0));
        assert_error(&resp, code.status(), code, &format!("bad-{model}"));
        assert_nothing_leaks(&resp, &secrets, &format!("bad-{model}"));
    }
    // ... or, where the set says so, the Worker's own answer, flagged.
    let resp = classify(base, "bad-fallback", fx.image(0));
    assert_eq!(resp.status, 200, "{}", resp.body);
    let r = ClassifyResponse::from_json(&resp.body, 10).unwrap();
    assert_eq!((r.tier, r.why), (Tier::Worker, Some(TierWhy::ServerFailed)));
    assert!(max_diff(&r.probs, &reference(0)) <= TOLERANCE);

    // 4. The server stops mid-run: no sample is lost. tier3-json answers every one with the
    //    Worker's model (flagged); tier3-binary answers 503 JSON for those it would send on.
    server.stop();
    for i in 20..30 {
        let resp = classify(base, "tier3-json", fx.image(i));
        assert_eq!(resp.status, 200, "after the stop, tier3-json {i}: {}", resp.body);
        let r = ClassifyResponse::from_json(&resp.body, 10).unwrap();
        assert_eq!((r.tier, r.why), (Tier::Worker, Some(TierWhy::ServerFailed)), "{i}");
        assert!(max_diff(&r.probs, &reference(i)) <= TOLERANCE);
    }
    let (mut answered, mut unavailable) = (0, 0);
    for i in 0..100 {
        let confidence = top2(&mid_reference(i)).0;
        if (confidence - 0.9).abs() <= TOLERANCE {
            continue;
        }
        let resp = classify(base, "tier3-binary", fx.image(i));
        assert_nothing_leaks(&resp, &secrets, "tier3-binary after the stop");
        if confidence > 0.9 {
            assert_eq!(resp.status, 200, "{i}: {}", resp.body);
            answered += 1;
        } else {
            assert_error(&resp, 503, ErrorCode::UpstreamUnavailable, &format!("tier3-binary {i} after the stop"));
            unavailable += 1;
        }
    }
    eprintln!(
        "oip: hostile answers -> {} errors as JSON; server stopped: 10 of 10 answered by the Worker (fallback), \
         {answered} kept and {unavailable} answered 503 (on_failure: error)",
        hostile_cases.len()
    );
}

/// At real size, in another layout: the committed 224x224 RGB set (models/zoo-rgb, NCHW, ImageNet's
/// per-channel normalisation, random weights) with its large model on the server, fed three photos
/// through hiedge-core's image conversion. As JSON with UINT8 pixels (the server normalises per
/// channel) and as the binary extension with the Worker's FP32 values, the server's answers are
/// those of native tract on the same model within 1e-3 (tract and onnxruntime); the photos' answers
/// differ from each other by far more than that, so a sample sent in the wrong layout or order
/// would not pass.
#[test]
#[ignore = "needs the built Worker, wrangler and the KServe environment: run by `make test-oip`"]
fn a_224x224_rgb_set_reaches_the_server_in_its_layout() {
    const RGB_TOLERANCE: f32 = 1e-3;
    let repo = repo();
    let dir = repo.join("models/zoo-rgb");
    let m = Manifest::from_json(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap();
    let large = Model::load(&m, "large", &std::fs::read(dir.join(&m.model("large").unwrap().file)).unwrap()).unwrap();
    let photos: Vec<Vec<u8>> = ["chelsea", "coffee", "astronaut"]
        .iter()
        .map(|name| {
            let photo = hiedge_eval::dataset::open_image(&repo.join(format!("cli/tests/fixtures/photos/{name}.jpg")))
                .unwrap()
                .to_rgba8();
            let img =
                Image::new(photo.as_raw(), photo.width() as usize, photo.height() as usize, PixelFormat::Rgba).unwrap();
            to_model_pixels(&img, &m.input).unwrap()
        })
        .collect();
    let want: Vec<Vec<f32>> = photos.iter().map(|p| large.predict(p, 1.0).unwrap().probs).collect();
    let spread = (0..want.len())
        .flat_map(|a| (a + 1..want.len()).map(move |b| (a, b)))
        .map(|(a, b)| max_diff(&want[a], &want[b]))
        .fold(f32::INFINITY, f32::min);
    assert!(spread > 20.0 * RGB_TOLERANCE, "the photos' answers are too alike to tell a layout apart: {spread}");

    let server = OipServer::start(&m, "zoo-large", "models/zoo-rgb/large.onnx");
    let tmp = tempfile::tempdir().unwrap();
    let assets = tmp.path().join("assets");
    for (name, datatype, binary) in [("zoo-json", "UINT8", false), ("zoo-binary", "FP32", true)] {
        let oip = json!({"model": "zoo-large", "input_name": m.model("large").unwrap().input_name, "output_name": "logits",
            "datatype": datatype, "binary": binary, "output": "logits", "escalate": {"kind": "always"},
            "on_failure": "error", "timeout_ms": 30000, "token_secret": "OIP_TOKEN"});
        write_set_from(&assets, "models/zoo-rgb", name, oip);
    }
    let dev = start_worker(&assets, "zoo-json", &server, &[]);
    let mut worst = 0.0f32;
    for set in ["zoo-json", "zoo-binary"] {
        for (i, pixels) in photos.iter().enumerate() {
            let resp = classify(&dev.url, set, pixels);
            assert_eq!(resp.status, 200, "{set} photo {i}: {}", resp.body);
            let r = ClassifyResponse::from_json(&resp.body, m.classes.len()).unwrap();
            assert_eq!((r.tier, r.model.as_str()), (Tier::Server, "oip:zoo-large"), "{set} photo {i}");
            let diff = max_diff(&r.probs, &want[i]);
            assert!(diff <= RGB_TOLERANCE, "{set} photo {i}: the server's answer is {diff} from native tract's");
            worst = worst.max(diff);
        }
    }
    assert_eq!(server.requests().len(), 6);
    eprintln!(
        "oip at 224x224 RGB (NCHW): 3 photos as UINT8 JSON and as FP32 binary, max |diff| to native tract {worst:e} \
         (photos differ from each other by at least {spread:e})"
    );
}
