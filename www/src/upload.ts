// "Your own image": the file goes to the client as it is; hiedge-core converts it to the model's
// input (size, colour and resize rule from the manifest), the same conversion the CLI and the tests use.
import { $, client, demo, ms, state } from "./state";

let wired = false;

/** Says what an upload is converted to (for the current set) and, once, wires the file input. */
export function setUpUpload(): void {
  const { width, height, channels } = state.shape;
  $("upload-result").textContent = `Upload an image (converted to ${width}x${height}${channels === 1 ? " gray" : " RGB"}, as the manifest says).`;
  if (wired) return;
  wired = true;
  $("upload").addEventListener("change", async () => {
    const file = ($("upload") as HTMLInputElement).files?.[0];
    if (!file) return;
    const out = $("upload-result");
    try {
      const preview = $("upload-preview") as HTMLCanvasElement;
      const bitmap = await createImageBitmap(file);
      const pctx = preview.getContext("2d")!;
      pctx.clearRect(0, 0, preview.width, preview.height);
      pctx.drawImage(bitmap, 0, 0, preview.width, preview.height);
      const r = await client().classify(file);
      demo.lastUpload = r;
      const sent = r.bytesSent ? `; ${r.bytesSent} bytes sent of ${state.sampleLength} raw` : "";
      out.textContent = `${r.className} (${(100 * r.confidence).toFixed(1)}%), ${r.decision}` +
        `${r.fallbackReason ? ` (${r.fallbackReason})` : ""}; tiny said ${state.classes[r.localLabel] ?? r.localLabel}; ${ms(r.timings.totalMs)} ms${sent}`;
    } catch (e) {
      out.textContent = `Could not classify this file: ${e}`;
    }
  });
}
