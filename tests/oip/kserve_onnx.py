"""An Open Inference Protocol server for hiedge's tests: KServe's Python ModelServer (PyPI `kserve`)
with a custom model (KServe's documented custom-runtime pattern, a `kserve.Model` subclass) that
runs an ONNX file with onnxruntime.

    python tests/oip/kserve_onnx.py --model-name fashion-large --onnx models/fashion-mnist/large.onnx \
        --token s3cret --scale 0.00392156862745098 --mean 0.2858 --std 0.3529

It binds a loopback port of its own choosing (port 0) and prints one JSON line,
`{"url": "http://127.0.0.1:PORT"}`, once it answers `/v2/health/ready`. It serves `FP32` input
as is and normalises `UINT8` pixels with --scale/--mean/--std (what a preprocessing server does;
--mean and --std take one value, or one per channel of an NCHW input: `0.485,0.456,0.406`),
answers as JSON or, where the request asks, with the binary tensor data extension. With --token,
a request without `Authorization: Bearer TOKEN` is refused (400). Every request prints one line
`{"event": "request", "authorization": "ok" | "missing" | "wrong", "headers": [...]}` with the
header names it carried, so a test can check what the Worker forwarded.
"""

import argparse
import json
import socket
import sys
import threading
import time
import urllib.request

import numpy as np
import onnxruntime as ort
from kserve import InferOutput, InferRequest, InferResponse, Model, ModelServer
from kserve.errors import InvalidInput
from kserve.protocol.rest import server as rest


def per_channel(values):
    """`0.5` as a scalar; `0.485,0.456,0.406` shaped to broadcast over an NCHW tensor's channels."""
    v = np.array([float(x) for x in values.split(",")], dtype=np.float32)
    return v[0] if v.size == 1 else v.reshape(1, -1, 1, 1)


class OnnxModel(Model):
    def __init__(self, args):
        super().__init__(args.model_name)
        self.args = args
        self.load()

    def load(self):
        self.session = ort.InferenceSession(self.args.onnx, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name
        self.output = self.session.get_outputs()[0].name
        self.ready = True
        return self.ready

    def predict(self, payload: InferRequest, headers=None) -> InferResponse:
        headers = {k.lower(): v for k, v in (headers or {}).items()}
        auth = headers.get("authorization")
        verdict = "missing" if auth is None else ("ok" if auth == f"Bearer {self.args.token}" else "wrong")
        print(json.dumps({"event": "request", "authorization": verdict, "headers": sorted(headers)}), flush=True)
        if self.args.token and verdict != "ok":
            raise InvalidInput("unauthorized: a bearer token is required")
        tensor = payload.inputs[0]
        x = tensor.as_numpy()
        if tensor.datatype == "UINT8":
            x = (x.astype(np.float32) * self.args.scale - per_channel(self.args.mean)) / per_channel(self.args.std)
        elif tensor.datatype != "FP32":
            raise InvalidInput(f"input datatype {tensor.datatype} is not UINT8 or FP32")
        (y,) = self.session.run([self.output], {self.input: x.astype(np.float32)})
        out = InferOutput(name=self.args.output_name or self.output, shape=list(y.shape), datatype="FP32")
        out.set_data_from_numpy(y.astype(np.float32), binary_data=False)
        # KServe writes the outputs the request asked for, as JSON or binary as each asks.
        return InferResponse(
            response_id=payload.id,
            model_name=self.name,
            infer_outputs=[out],
            use_binary_outputs=payload.use_binary_outputs,
            requested_outputs=payload.request_outputs,
        )


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model-name", required=True)
    p.add_argument("--onnx", required=True)
    p.add_argument("--output-name", default=None, help="the output tensor's name (default: the ONNX output's)")
    p.add_argument("--token", default="")
    p.add_argument("--scale", type=float, default=1 / 255)
    p.add_argument("--mean", default="0", help="one value, or one per channel (NCHW), comma-separated")
    p.add_argument("--std", default="1", help="one value, or one per channel (NCHW), comma-separated")
    args = p.parse_args()

    # The port: this process binds a loopback socket on port 0 (the kernel picks a free one) and
    # keeps it; uvicorn serves on that socket instead of binding 0.0.0.0 itself (kserve 0.21's
    # server class takes sockets through uvicorn's `serve(sockets=...)`).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    serve = rest._RefreshingServer.serve

    async def serve_on_our_socket(self, sockets=None):
        await serve(self, sockets=[sock])

    rest._RefreshingServer.serve = serve_on_our_socket

    def announce():
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{url}/v2/health/ready", timeout=2) as r:
                    if r.status == 200:
                        print(json.dumps({"url": url}), flush=True)
                        return
            except OSError:
                time.sleep(0.1)
        print(json.dumps({"error": "not ready within 120 s"}), flush=True)

    threading.Thread(target=announce, daemon=True).start()
    ModelServer(http_port=port, enable_grpc=False, workers=1).start([OnnxModel(args)])


if __name__ == "__main__":
    sys.exit(main())
