// "Your own image": a file resized to the model's input size and channels, classified like any sample.
import { $, client, ms, state } from "./state";
import { drawPixels } from "./detail";

/** The file's pixels at the model's size: interleaved, row-major, gray (luma) or RGB. */
async function pixelsOf(file: File): Promise<Uint8Array> {
  const { width, height, channels } = state.shape;
  const bitmap = await createImageBitmap(file);
  const c = document.createElement("canvas");
  c.width = width;
  c.height = height;
  const ctx = c.getContext("2d")!;
  ctx.drawImage(bitmap, 0, 0, width, height);
  const rgba = ctx.getImageData(0, 0, width, height).data;
  const out = new Uint8Array(width * height * channels);
  for (let i = 0; i < width * height; i++) {
    if (channels >= 3) out.set([rgba[4 * i], rgba[4 * i + 1], rgba[4 * i + 2]], i * channels);
    else out[i] = Math.round(0.299 * rgba[4 * i] + 0.587 * rgba[4 * i + 1] + 0.114 * rgba[4 * i + 2]);
  }
  if (channels === 1) {
    // Fashion-MNIST-like sets are a light object on black: invert photos with a light background
    // (judged by the border).
    let border = 0;
    for (let x = 0; x < width; x++) border += out[x] + out[(height - 1) * width + x];
    for (let y = 0; y < height; y++) border += out[y * width] + out[y * width + width - 1];
    if (border / (2 * (width + height)) > 127) for (let i = 0; i < out.length; i++) out[i] = 255 - out[i];
  }
  return out;
}

export function setUpUpload(): void {
  $("upload-result").textContent = `Upload an image (it is resized to ${state.shape.width}x${state.shape.height}${state.shape.channels === 1 ? " gray" : ""}).`;
  $("upload").addEventListener("change", async () => {
    const file = ($("upload") as HTMLInputElement).files?.[0];
    if (!file) return;
    const out = $("upload-result");
    try {
      const pixels = await pixelsOf(file);
      const preview = $("upload-preview") as HTMLCanvasElement;
      const small = document.createElement("canvas");
      drawPixels(small, pixels, state.shape);
      const pctx = preview.getContext("2d")!;
      pctx.imageSmoothingEnabled = false;
      pctx.clearRect(0, 0, preview.width, preview.height);
      pctx.drawImage(small, 0, 0, preview.width, preview.height);
      const r = await client().classify(pixels);
      out.textContent = `${r.className} (${(100 * r.confidence).toFixed(1)}%), ${r.decision}` +
        `${r.fallbackReason ? ` (${r.fallbackReason})` : ""}; tiny said ${state.classes[r.localLabel] ?? r.localLabel}; ${ms(r.timings.totalMs)} ms`;
    } catch (e) {
      out.textContent = `Could not classify this file: ${e}`;
    }
  });
}
