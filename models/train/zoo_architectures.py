"""Checks hiedge on the full-size torchvision architectures (random weights, 1000 classes) and writes
models/architectures.md. Needs PyTorch and torchvision (no test does); run by hand:

    python3 -m venv /tmp/tvenv && /tmp/tvenv/bin/pip install torch==2.15.0 torchvision==0.29.2 \
        onnx==1.23.2 onnxruntime==1.32.0 onnxscript numpy pillow
    make build wasm worker
    /tmp/tvenv/bin/python models/train/zoo_architectures.py --hiedge $CARGO_TARGET_DIR/release/hiedge \
        --weights --browser

For each architecture it:
1. builds the torchvision model with seeded random weights and exports it to ONNX (opset 17,
   PyTorch's TorchScript exporter, as `torch.onnx.export(..., dynamo=False)` writes it);
2. runs onnxruntime on the three committed photos (cli/tests/fixtures/photos), centre-cropped to
   224x224 by Pillow here, so hiedge converts nothing (the pixels are the model's input as they are);
3. `hiedge import`s it as the large model of a set (compiled to NNEF, checked against tract's ONNX
   import, Cloudflare's limits checked, the Worker's memory measured), or records the refusal;
4. `hiedge predict`s the same three photos natively and compares the logits with onnxruntime's
   (TOL, relative to the largest logit);
5. with `--browser`, also runs it in headless Chromium (the npm package) and through the Worker
   under `wrangler dev` on the same images (scripts/browser-predict.mjs), against `hiedge predict`;
6. with `--weights`, also `hiedge quantize`s the set (f16, int8) on the three photos with the gate
   off (random weights have no accuracy to keep), recording the file size and the Worker's memory.

The full-size pair of the benchmark (`make bench-zoo-full`) is written by `--pair DIR`: MobileNetV3-small
(the device) and EfficientNet-B0 (the Worker), random weights, imported as one set.
"""

import argparse
import json
import pathlib
import re
import subprocess
import sys
import tempfile
import time

import numpy as np
import onnxruntime
import torch
import torchvision
from PIL import Image

ROOT = pathlib.Path(__file__).resolve().parents[2]
PHOTOS = ROOT / "cli/tests/fixtures/photos"
MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)
# Tolerance on logits, max |a - b| <= TOL * max |a| (relative to the largest logit): tract and
# onnxruntime sum in different orders, and a 50-layer network with random weights amplifies rounding.
TOL = 1e-3


def vit_ti_16():
    """ViT-Ti/16: DeiT-tiny's shape (12 layers, 3 heads, width 192), torchvision's implementation."""
    from torchvision.models.vision_transformer import VisionTransformer

    return VisionTransformer(image_size=224, patch_size=16, num_layers=12, num_heads=3, hidden_dim=192, mlp_dim=768)


ARCHITECTURES = {
    "MobileNetV2": lambda: torchvision.models.mobilenet_v2(),
    "MobileNetV3-small": lambda: torchvision.models.mobilenet_v3_small(),
    "MobileNetV3-large": lambda: torchvision.models.mobilenet_v3_large(),
    "EfficientNet-B0": lambda: torchvision.models.efficientnet_b0(),
    "ResNet-18": lambda: torchvision.models.resnet18(),
    "ResNet-50": lambda: torchvision.models.resnet50(),
    "RegNetY-400MF": lambda: torchvision.models.regnet_y_400mf(),
    "ConvNeXt-tiny": lambda: torchvision.models.convnext_tiny(),
    "SqueezeNet 1.1": lambda: torchvision.models.squeezenet1_1(),
    "ShuffleNetV2 x1.0": lambda: torchvision.models.shufflenet_v2_x1_0(),
    "ViT-Ti/16 (DeiT-tiny shape)": vit_ti_16,
}


def slug(name):
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def export(name, path):
    torch.manual_seed(0)
    model = ARCHITECTURES[name]().eval()
    # torchvision initialises some heads to zero (ViT) or near it (N(0, 0.01)): logits that small
    # would make any comparison pass. Every linear layer gets N(0, 1/fan_in) weights instead.
    for m in model.modules():
        if isinstance(m, torch.nn.Linear):
            torch.nn.init.normal_(m.weight, 0.0, m.in_features ** -0.5)
    # BatchNorm's initial statistics (mean 0, variance 1) let a deep random network's signal fade
    # to nothing (MobileNetV3-small's logits were ~1e-8, its probabilities uniform): set them from
    # a few seeded random batches, as training would, so outputs are of order one.
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if norms:
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # a cumulative average over the batches below
        model.train()
        with torch.no_grad():
            for _ in range(4):
                model(torch.randn(8, 3, 224, 224))
        model.eval()
    x = torch.zeros(1, 3, 224, 224)
    with torch.no_grad():
        torch.onnx.export(model, x, str(path), input_names=["x"], output_names=["logits"], opset_version=17,
                          dynamo=False)


def cropped_photos(out):
    """The photos centre-cropped to 224x224 PNGs (lossless), and their normalised NCHW tensors."""
    files, tensors = [], []
    for photo in sorted(PHOTOS.glob("*.jpg")):
        img = Image.open(photo).convert("RGB")
        w, h = img.size
        left, top = (w - 224) // 2, (h - 224) // 2
        img = img.crop((left, top, left + 224, top + 224))
        file = out / f"{photo.stem}.png"
        img.save(file)
        files.append(file)
        x = (np.asarray(img, np.float32) / 255.0 - MEAN) / STD
        tensors.append(x.transpose(2, 0, 1)[None].astype(np.float32))
    return files, tensors


def run(cmd):
    started = time.time()
    p = subprocess.run(cmd, capture_output=True, text=True)
    return p.returncode, p.stdout + p.stderr, time.time() - started


def worker_mb(text):
    m = re.search(r"took ([0-9.]+) MB to load and run once", text)
    return float(m.group(1)) if m else None


def set_bytes(set_dir, name):
    return sum(f.stat().st_size for f in set_dir.glob(f"{name}.nnef.tar*"))


def predict(hiedge, set_dir, files):
    code, text, _ = run([hiedge, "predict", "--models", str(set_dir), "--model", "large", "--logits",
                         *map(str, files)])
    if code != 0:
        raise RuntimeError(text)
    return [np.array(r["logits"], np.float32) for r in json.loads(text)["results"]]


def softmax(logits):
    z = np.asarray(logits, np.float64)
    e = np.exp(z - z.max())
    return e / e.sum()


def max_rel(a, b):
    """Largest difference relative to the reference's largest logit (inf for all-zero logits)."""
    scale = float(np.max(np.abs(a)))
    return float(np.max(np.abs(a - b))) / scale if scale > 0 else float("inf")


def check(hiedge, name, work, files, tensors, weights, browser):
    row = {"architecture": name}
    onnx_path = work / f"{slug(name)}.onnx"
    export(name, onnx_path)
    row["onnx_mb"] = onnx_path.stat().st_size / 1e6
    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    want = [session.run(None, {"x": t})[0][0] for t in tensors]
    set_dir = work / slug(name)
    # A small device model beside it (only the large model is under test; a set needs both).
    code, text, secs = run([hiedge, "import", "--name", slug(name), "--tiny", str(work / "device.onnx"), "--large",
                            str(onnx_path), "--classes-file", str(work / "classes.txt"), "--mean",
                            "0.485,0.456,0.406", "--std", "0.229,0.224,0.225", "--resize", "center-crop",
                            "--out", str(set_dir)])
    row["import_s"] = secs
    row["memory_mb"] = worker_mb(text)
    if code != 0:
        row["result"] = "refused: " + text.strip().splitlines()[-1].removeprefix("error: ")
        return row
    row["nnef_mb"] = set_bytes(set_dir, "large") / 1e6
    row["parts"] = len(list(set_dir.glob("large.nnef.tar.part-*")))
    got = predict(hiedge, set_dir, files)
    row["max_rel_diff"] = max(max_rel(w, g) for w, g in zip(want, got))
    row["same_top1"] = sum(int(np.argmax(w) == np.argmax(g)) for w, g in zip(want, got))
    row["result"] = "ok" if row["max_rel_diff"] <= TOL else f"differs from onnxruntime beyond {TOL}"
    if browser:
        # The npm package in headless Chromium (the model as the device model), and the Worker
        # under wrangler dev (the model as the set's large model), on the same PNG files.
        code, text, _ = run(["node", str(ROOT / "scripts/browser-predict.mjs"), "--models", str(set_dir), "--worker",
                             *map(str, files)])
        if code != 0:
            row["browser"] = text.strip().splitlines()[-1]
        else:
            seen = json.loads(text.strip().splitlines()[-1])
            native = [softmax(g) for g in got]
            for side in ("browser", "worker"):
                if seen[side] is not None:  # the browser's is None for a model in parts (the Worker's only)
                    row[f"{side}_max_prob_diff"] = max(float(np.max(np.abs(np.array(p, np.float64) - n)))
                                                       for p, n in zip(seen[side], native))
    if weights:
        for storage in ("f16", "int8"):
            code, text, _ = run([hiedge, "quantize", "--models", str(set_dir), "--data", str(work / "photos"),
                                 "--weights", storage, "--max-drop", "100"])
            if code != 0:
                row[storage] = {"result": text.strip().splitlines()[-1]}
                continue
            q = predict(hiedge, set_dir, files)
            row[storage] = {
                "nnef_mb": set_bytes(set_dir, "large") / 1e6,
                "memory_mb": worker_mb(text),
                "max_rel_diff": max(max_rel(w, g) for w, g in zip(want, q)),
                "same_top1": sum(int(np.argmax(w) == np.argmax(g)) for w, g in zip(want, q)),
            }
    return row


def device_model(path):
    """A small 1000-class device model: torchvision's MobileNetV3-small at width 0.25 would still be
    2 MB; a 3x3 conv, global pooling and a linear head are enough to stand beside the model under test."""
    torch.manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, stride=4), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                                torch.nn.Flatten(), torch.nn.Linear(8, 1000)).eval()
    with torch.no_grad():
        torch.onnx.export(model, torch.zeros(1, 3, 224, 224), str(path), input_names=["x"], output_names=["logits"],
                          opset_version=17, dynamo=False)


def fmt(v, digits=1):
    return "" if v is None else f"{v:.{digits}f}"


def table(rows, weights):
    head = ("| architecture | ONNX MB | NNEF MB (parts) | Worker memory MB | max rel. diff vs onnxruntime "
            "(3 photos) | same top-1 | browser / Worker max prob. diff vs native | result |")
    lines = [head, "|---|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        nnef = f"{fmt(r.get('nnef_mb'))} ({r['parts']})" if "nnef_mb" in r else ""
        diff = f"{r['max_rel_diff']:.1e}" if "max_rel_diff" in r else ""
        top1 = f"{r['same_top1']}/3" if "same_top1" in r else ""
        if "worker_max_prob_diff" in r:
            b = r.get("browser_max_prob_diff")
            seen = f"{'in parts: Worker only' if b is None else f'{b:.1e}'} / {r['worker_max_prob_diff']:.1e}"
        else:
            seen = r.get("browser", "")
        lines.append(f"| {r['architecture']} | {fmt(r['onnx_mb'])} | {nnef} | {fmt(r.get('memory_mb'))} | "
                     f"{diff} | {top1} | {seen} | {r['result']} |")
    if weights:
        lines += ["", "Stored weights (`hiedge quantize`, gate off: random weights have no accuracy to keep):", "",
                  "| architecture | f32 NNEF MB | f16 MB | f16 Worker memory MB | f16 max rel. diff | "
                  "int8 MB | int8 Worker memory MB | int8 max rel. diff | int8 same top-1 |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in rows:
            if "f16" not in r:
                continue
            f16, i8 = r["f16"], r["int8"]
            lines.append(f"| {r['architecture']} | {fmt(r.get('nnef_mb'))} | {fmt(f16.get('nnef_mb'))} | "
                         f"{fmt(f16.get('memory_mb'))} | {f16.get('max_rel_diff', float('nan')):.1e} | "
                         f"{fmt(i8.get('nnef_mb'))} | {fmt(i8.get('memory_mb'))} | "
                         f"{i8.get('max_rel_diff', float('nan')):.1e} | {i8.get('same_top1', '')}/3 |")
    return "\n".join(lines)


def pair(hiedge, out):
    """The benchmark's full-size pair: MobileNetV3-small on the device, EfficientNet-B0 in the Worker."""
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        export("MobileNetV3-small", tmp / "tiny.onnx")
        export("EfficientNet-B0", tmp / "large.onnx")
        (tmp / "classes.txt").write_text("".join(f"class {i}\n" for i in range(1000)))
        code, text, _ = run([hiedge, "import", "--name", "zoo-full", "--tiny", str(tmp / "tiny.onnx"), "--large",
                             str(tmp / "large.onnx"), "--classes-file", str(tmp / "classes.txt"), "--mean",
                             "0.485,0.456,0.406", "--std", "0.229,0.224,0.225", "--resize", "center-crop",
                             "--offload-codec", "webp:80", "--out", str(out)])
        print(text)
        if code == 0:
            # Say what the models are (import cannot know): the benchmarks' tables name them.
            path = out / "manifest.json"
            manifest = json.loads(path.read_text())
            for name, arch in (("tiny", "MobileNetV3-small"), ("large", "EfficientNet-B0")):
                manifest["models"][name]["architecture"] = f"{arch} (torchvision {torchvision.__version__}, random weights)"
            path.write_text(json.dumps(manifest, indent=2) + "\n")
        sys.exit(code)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hiedge", required=True, help="the hiedge binary (a release build)")
    ap.add_argument("--only", action="append", help="check only these architectures (repeatable)")
    ap.add_argument("--weights", action="store_true", help="also store the weights as f16 and int8")
    ap.add_argument("--browser", action="store_true",
                    help="also run each model in headless Chromium and in the Worker (needs make wasm worker tools)")
    ap.add_argument("--pair", type=pathlib.Path, help="write the benchmark's full-size pair into this directory")
    ap.add_argument("--out", type=pathlib.Path, default=ROOT / "models/architectures.md")
    args = ap.parse_args()
    if args.pair:
        pair(args.hiedge, args.pair)
    names = args.only or list(ARCHITECTURES)
    # Inside the repository (the browser's page is served from it), removed afterwards.
    (ROOT / "test-results").mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(dir=ROOT / "test-results", prefix="architectures-") as tmp:
        work = pathlib.Path(tmp)
        (work / "classes.txt").write_text("".join(f"class {i}\n" for i in range(1000)))
        device_model(work / "device.onnx")
        # An image folder (one sub-folder per class) for quantize's data: the photos under class 0.
        (work / "photos" / "class 0").mkdir(parents=True)
        files, tensors = cropped_photos(work / "photos" / "class 0")
        rows = []
        for name in names:
            row = check(args.hiedge, name, work, files, tensors, args.weights, args.browser)
            print(json.dumps(row), flush=True)
            rows.append(row)
    browser = args.browser
    text = table(rows, args.weights)
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    header = (
        "# hiedge on torchvision's architectures\n\n"
        "Generated by `models/train/zoo_architectures.py` (PyTorch "
        f"{torch.__version__}, torchvision {torchvision.__version__}, onnxruntime {onnxruntime.__version__}) on "
        f"{cpu}. Each architecture at full size (1000 classes, seeded random weights), exported to ONNX and "
        "imported as a set's large model: `hiedge import` compiles it to NNEF, checks the archive against tract's "
        "ONNX import, checks Cloudflare's limits (25 MiB per static asset, 128 MB per isolate: "
        "https://developers.cloudflare.com/workers/platform/limits/) and measures the heap the Worker's model "
        "takes to load and run once, natively. `hiedge predict` then runs it on the three committed photos "
        f"(centre-cropped to 224x224) and its logits are compared with onnxruntime's: the largest difference over "
        f"the three photos relative to the largest logit, within {TOL}. Every linear layer's weights are drawn from "
        "N(0, 1/fan-in) (torchvision starts some heads at zero) and BatchNorm statistics are set from seeded random "
        "batches, so the logits are not vanishingly small. "
        + ("The browser / Worker column: the npm package in headless Chromium runs the model on the same images (the "
           "client decodes and converts them), and the Worker under `wrangler dev` answers them offloaded raw as the "
           "set's large model; each is compared with `hiedge predict` (largest probability difference). "
           if browser else "")
        + "\n\n"
    )
    args.out.write_text(header + text + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
