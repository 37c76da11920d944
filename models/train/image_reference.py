"""Reference outputs for hiedge's one image conversion (`hiedge_core::runtime::image`), from Pillow.

Run once; writes core/tests/image_parity.json, which core/tests/image_parity.rs compares with:

    python -m venv /tmp/pilenv && /tmp/pilenv/bin/pip install pillow numpy
    /tmp/pilenv/bin/python models/train/image_reference.py

Each case is a synthetic image (an integer formula, rebuilt identically by the Rust test) of an odd
size, resized by Pillow's antialiased BILINEAR filter on float32 channels ("F" mode, no 8-bit
rounding between passes), with `box=` for centre-crop, then converted to luma
0.299 R + 0.587 G + 0.114 B in float for gray models, and rounded to bytes once.
"""

import json
import pathlib

import numpy as np
import PIL
from PIL import Image

# (source width, height, source format, model height, width, colour, resize)
CASES = [
    (37, 23, "rgba", 28, 28, "gray", "stretch"),
    (37, 23, "rgba", 16, 16, "rgb", "center_crop"),
    (13, 101, "rgba", 32, 24, "rgb", "center_crop"),
    (150, 90, "rgba", 28, 28, "gray", "center_crop"),
    (5, 7, "rgba", 20, 20, "rgb", "stretch"),
    (64, 64, "gray", 28, 28, "gray", "stretch"),
    (61, 47, "gray", 32, 32, "rgb", "center_crop"),
]


def source(w, h, fmt):
    """The synthetic image, channels last (RGB of RGBA, or one gray channel), as integers."""
    y, x = np.mgrid[0:h, 0:w].astype(np.int64)
    if fmt == "gray":
        return ((x * y + 3 * x + 7 * y) % 256)[..., None]
    r = (x * 3 + y * 5) % 256
    g = (x * y) % 256
    b = (255 * x // max(w - 1, 1) + 40 * ((x // 4 + y // 4) % 2)) % 256
    return np.stack([r, g, b], axis=-1)


def box(w, h, out_w, out_h, resize):
    if resize == "stretch":
        return (0.0, 0.0, float(w), float(h))
    target = out_w / out_h
    if w / h > target:
        cw = h * target
        return ((w - cw) / 2.0, 0.0, (w - cw) / 2.0 + cw, float(h))
    ch = w / target
    return (0.0, (h - ch) / 2.0, float(w), (h - ch) / 2.0 + ch)


def convert(img, out_h, out_w, colour, resize):
    h, w, _ = img.shape
    b = box(w, h, out_w, out_h, resize)
    chans = [
        np.asarray(Image.fromarray(img[..., c].astype(np.float32), mode="F").resize((out_w, out_h), Image.BILINEAR, box=b))
        for c in range(img.shape[2])
    ]
    rgb = np.stack(chans * 3 if len(chans) == 1 else chans, axis=-1).astype(np.float64)
    if colour == "gray":
        rgb = (0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2])[..., None]
    return np.clip(np.floor(rgb + 0.5), 0, 255).astype(np.uint8).reshape(-1)


def main():
    cases = []
    for w, h, fmt, out_h, out_w, colour, resize in CASES:
        out = convert(source(w, h, fmt), out_h, out_w, colour, resize)
        cases.append({"width": w, "height": h, "format": fmt, "out_height": out_h, "out_width": out_w,
                      "color": colour, "resize": resize, "pixels": out.tolist()})
    doc = {"generator": f"models/train/image_reference.py, Pillow {PIL.__version__}, numpy {np.__version__}",
           "cases": cases}
    path = pathlib.Path(__file__).resolve().parents[2] / "core/tests/image_parity.json"
    path.write_text(json.dumps(doc, separators=(",", ":")) + "\n")
    print(f"wrote {path}: {len(cases)} cases")


if __name__ == "__main__":
    main()
