"""Writes the real-size (224x224 RGB) fixtures the tests use, once; no test needs this script, or
PyTorch, to run.

- cli/tests/fixtures/zoo/mobilenet_mini.onnx: a width-reduced MobileNetV3-style classifier (strided
  conv + hard-swish, a depthwise conv, squeeze-excitation with hard-sigmoid, pointwise convs,
  global average pooling, a linear head), the device model.
- cli/tests/fixtures/zoo/vit_mini.onnx: a width-reduced ViT (16x16 patch conv, LayerNormalization,
  one attention block with softmax, an MLP with PyTorch's exact (erf) GELU, mean pooling), the
  large model.
- cli/tests/fixtures/photos/{chelsea,coffee,astronaut}.jpg: three photos from scikit-image's data,
  scaled to 256 px on their short side (JPEG q90): chelsea and coffee are CC0 (by Stefan van der
  Walt and Rachel Michetti), astronaut is NASA's, in the public domain.

Both graphs take `x` [1, 3, 224, 224] float (ImageNet-normalised, NCHW) and output 10 logits; the
weights are random (seeded): these fixtures test that real architectures import, run and answer
alike everywhere, not accuracy. Each graph is run by onnxruntime here before it is written.

    python3 -m venv .venv && .venv/bin/pip install onnx==1.23.2 onnxruntime==1.32.0 numpy pillow
    pip download --no-deps scikit-image -d /tmp/sk && unzip -o /tmp/sk/*.whl 'skimage/data/*' -d /tmp/sk
    .venv/bin/python models/train/zoo_fixtures.py --skimage-data /tmp/sk/skimage/data
"""

import argparse
import pathlib

import numpy as np
import onnx
import onnxruntime
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

ROOT = pathlib.Path(__file__).resolve().parents[2]
CLASSES = 10


class Graph:
    """Nodes and initializers of one graph, named in order."""

    def __init__(self, seed):
        self.rng = np.random.default_rng(seed)
        self.nodes, self.inits, self.n = [], [], 0

    def name(self, prefix):
        self.n += 1
        return f"{prefix}{self.n}"

    def weight(self, shape, scale=None):
        fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else shape[0]
        scale = scale or np.sqrt(2.0 / fan_in)
        name = self.name("w")
        self.inits.append(numpy_helper.from_array(self.rng.normal(0, scale, shape).astype(np.float32), name))
        return name

    def const(self, value, dtype=np.float32):
        name = self.name("c")
        self.inits.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def op(self, op_type, inputs, **attrs):
        out = self.name(op_type.lower())
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=out, **attrs))
        return out

    def conv(self, x, cin, cout, k, stride=1, group=1, bias=True, pad=None):
        inputs = [x, self.weight([cout, cin // group, k, k])]
        if bias:
            inputs.append(self.const(self.rng.normal(0, 0.05, cout)))
        pad = k // 2 if pad is None else pad
        return self.op("Conv", inputs, kernel_shape=[k, k], strides=[stride, stride], pads=[pad] * 4, group=group)

    def model(self, output):
        graph = helper.make_graph(
            self.nodes,
            "zoo",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 224, 224])],
            [helper.make_tensor_value_info(output, TensorProto.FLOAT, [1, CLASSES])],
            self.inits,
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="hiedge zoo_fixtures.py")
        model.ir_version = 8
        onnx.checker.check_model(model, full_check=True)
        return model


def mobilenet_mini():
    g = Graph(1)
    x = g.op("HardSwish", [g.conv("x", 3, 16, 3, stride=2)])  # 112
    x = g.op("Relu", [g.conv(x, 16, 16, 3, stride=2, group=16)])  # depthwise, 56
    # Squeeze-excitation: global pool, two 1x1 convs, hard-sigmoid, channel-wise scale.
    s = g.op("GlobalAveragePool", [x])
    s = g.op("Relu", [g.conv(s, 16, 8, 1)])
    s = g.op("HardSigmoid", [g.conv(s, 8, 16, 1)], alpha=1.0 / 6, beta=0.5)
    x = g.op("Mul", [x, s])
    x = g.op("HardSwish", [g.conv(x, 16, 24, 1)])  # pointwise
    x = g.op("Relu", [g.conv(x, 24, 24, 3, stride=2, group=24)])  # 28
    x = g.op("HardSwish", [g.conv(x, 24, 32, 1)])
    x = g.op("Flatten", [g.op("GlobalAveragePool", [x])], axis=1)
    logits = g.op("Gemm", [x, g.weight([CLASSES, 32]), g.const(np.zeros(CLASSES))], transB=1)
    return g.model(logits)


def layer_norm(g, x, dim):
    return g.op("LayerNormalization", [x, g.const(np.ones(dim)), g.const(np.zeros(dim))], axis=-1, epsilon=1e-6)


def vit_mini(dim=48, hidden=96):
    g = Graph(2)
    x = g.conv("x", 3, dim, 16, stride=16, pad=0)  # patches: [1, dim, 14, 14]
    x = g.op("Reshape", [x, g.const([1, dim, -1], np.int64)])
    tokens = g.op("Transpose", [x], perm=[0, 2, 1])  # [1, T, dim]
    # Attention, one head.
    h = layer_norm(g, tokens, dim)
    q, k, v = (g.op("MatMul", [h, g.weight([dim, dim], scale=dim**-0.5)]) for _ in range(3))
    scores = g.op("MatMul", [q, g.op("Transpose", [k], perm=[0, 2, 1])])
    attn = g.op("Softmax", [g.op("Mul", [scores, g.const(dim**-0.5)])], axis=-1)
    out = g.op("MatMul", [g.op("MatMul", [attn, v]), g.weight([dim, dim], scale=dim**-0.5)])
    tokens = g.op("Add", [tokens, out])
    # MLP with PyTorch's default GELU, as torch.onnx.export writes it.
    h = layer_norm(g, tokens, dim)
    h = g.op("Add", [g.op("MatMul", [h, g.weight([dim, hidden], scale=dim**-0.5)]), g.const(np.zeros(hidden))])
    erf = g.op("Erf", [g.op("Div", [h, g.const(np.sqrt(2.0))])])
    h = g.op("Mul", [g.op("Mul", [h, g.op("Add", [erf, g.const(1.0)])]), g.const(0.5)])
    tokens = g.op("Add", [tokens, g.op("MatMul", [h, g.weight([hidden, dim], scale=hidden**-0.5)])])
    pooled = layer_norm(g, g.op("ReduceMean", [tokens], axes=[1], keepdims=0), dim)  # [1, dim]
    logits = g.op("Gemm", [pooled, g.weight([CLASSES, dim]), g.const(np.zeros(CLASSES))], transB=1)
    return g.model(logits)


def check_and_write(model, path):
    session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).normal(0, 1, (1, 3, 224, 224)).astype(np.float32)
    (y,) = session.run(None, {"x": x})
    assert y.shape == (1, CLASSES) and np.isfinite(y).all(), y
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, path)
    print(f"wrote {path.relative_to(ROOT)}: {path.stat().st_size} bytes; onnxruntime logits {np.round(y[0, :4], 3)}...")


def photos(skimage_data):
    out = ROOT / "cli/tests/fixtures/photos"
    out.mkdir(parents=True, exist_ok=True)
    for name in ["chelsea", "coffee", "astronaut"]:
        image = Image.open(pathlib.Path(skimage_data) / f"{name}.png").convert("RGB")
        scale = 256 / min(image.size)
        image = image.resize((round(image.width * scale), round(image.height * scale)), Image.LANCZOS)
        path = out / f"{name}.jpg"
        image.save(path, quality=90)
        print(f"wrote {path.relative_to(ROOT)}: {image.width}x{image.height}, {path.stat().st_size} bytes")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--skimage-data", help="scikit-image's data directory (for the photos)")
    args = parser.parse_args()
    zoo = ROOT / "cli/tests/fixtures/zoo"
    check_and_write(mobilenet_mini(), zoo / "mobilenet_mini.onnx")
    check_and_write(vit_mini(), zoo / "vit_mini.onnx")
    if args.skimage_data:
        photos(args.skimage_data)


if __name__ == "__main__":
    main()
