"""Small ONNX models for `cli/tests/import.rs`, unlike the project's own pair: NHWC input with a
symbolic batch, a tiny model that ends in Softmax (it outputs probabilities) and a large one that
outputs logits; a third ends in CumSum, an operator the browser's model reader leaves out. Weights are fixed linear read-outs of the 28x28 mean intensity per quadrant, so the
models run but are not trained; the test checks what `hiedge import` reads from the graphs and that
`hiedge eval` runs the set, not accuracy. Run once:

    /tmp/pilenv/bin/pip install onnx numpy
    /tmp/pilenv/bin/python models/train/import_fixture.py
"""

import pathlib

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OUT = pathlib.Path(__file__).resolve().parents[2] / "cli/tests/fixtures"


def model(name, softmax, classes=10, seed=0, cumsum=False):
    rng = np.random.default_rng(seed)
    w = rng.normal(0, 0.05, size=(784, classes)).astype(np.float32)
    b = np.zeros(classes, dtype=np.float32)
    shape = numpy_helper.from_array(np.array([-1, 784], dtype=np.int64), "shape")
    nodes = [
        helper.make_node("Reshape", ["pixels", "shape"], ["flat"]),
        helper.make_node("MatMul", ["flat", "w"], ["mm"]),
        helper.make_node("Add", ["mm", "b"], ["logits" if not softmax else "z"]),
    ]
    if cumsum:
        # An operator hiedge's model reader leaves out (tract's cumsum/scan): import must refuse it.
        nodes[-1].output[0] = "y"
        nodes.append(helper.make_node("CumSum", ["y", "axis"], ["logits"]))
    if softmax:
        nodes.append(helper.make_node("Softmax", ["z"], ["probs"], axis=1))
    out = "probs" if softmax else "logits"
    graph = helper.make_graph(
        nodes, name,
        [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["batch", 28, 28, 1])],
        [helper.make_tensor_value_info(out, TensorProto.FLOAT, ["batch", classes])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b"), shape]
        + ([numpy_helper.from_array(np.array(1, dtype=np.int64), "axis")] if cumsum else []),
    )
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="hiedge import_fixture")
    m.ir_version = 8
    onnx.checker.check_model(m)
    OUT.mkdir(parents=True, exist_ok=True)
    onnx.save(m, OUT / f"{name}.onnx")
    print("wrote", OUT / f"{name}.onnx")


model("nhwc_softmax_tiny", softmax=True, seed=1)
model("nhwc_logits_large", softmax=False, seed=2)
model("nhwc_cumsum_tiny", softmax=False, seed=3, cumsum=True)
