// The camera source: frames from getUserMedia go to the client as the <video> element itself;
// hiedge-core converts each frame to the model's input (size, colour, resize rule of the
// manifest), as it does for the samples and uploads. Frames have no ground truth, so they are
// counted apart from the sample stream's totals.
import type { ClassifyResult } from "hiedge";
import { $, client, demo, ms, state } from "./state";

let stream: MediaStream | null = null;

/** For the end-to-end tests: frames classified since the camera started, and the last answer. */
export const camera = { frames: 0, last: null as ClassifyResult | null, error: null as string | null };
(demo as unknown as { camera: typeof camera }).camera = camera;

function stop(): void {
  stream?.getTracks().forEach((t) => t.stop());
  stream = null;
  ($("camera") as HTMLButtonElement).textContent = "Start camera";
  ($("camera-video") as HTMLVideoElement).srcObject = null;
}

async function start(): Promise<void> {
  const out = $("camera-result");
  if (!navigator.mediaDevices?.getUserMedia) {
    out.textContent = "This browser has no camera access here (getUserMedia needs https or localhost).";
    return;
  }
  try {
    stream = await navigator.mediaDevices.getUserMedia({ video: true, audio: false });
  } catch (e) {
    camera.error = String(e);
    out.textContent = `No camera: ${e}`;
    return;
  }
  const video = $("camera-video") as HTMLVideoElement;
  video.srcObject = stream;
  await video.play();
  ($("camera") as HTMLButtonElement).textContent = "Stop camera";
  camera.frames = 0;
  camera.error = null;
  const own = stream;
  while (stream === own) {
    const started = performance.now();
    if (video.readyState >= HTMLMediaElement.HAVE_CURRENT_DATA && video.videoWidth > 0) {
      try {
        const r = await client().classify(video);
        if (stream !== own) break;
        camera.frames++;
        camera.last = r;
        out.textContent = `frame ${camera.frames}: ${r.className} (${(100 * r.confidence).toFixed(1)}%), ${r.decision}` +
          `${r.fallbackReason ? ` (${r.fallbackReason})` : ""}; tiny said ${state.classes[r.localLabel] ?? r.localLabel}; ` +
          `${ms(r.timings.totalMs)} ms (${video.videoWidth}x${video.videoHeight} frame -> ${state.shape.width}x${state.shape.height})`;
      } catch (e) {
        camera.error = String(e);
        out.textContent = `Could not classify a frame: ${e}`;
      }
    }
    // About 5 frames a second: enough to follow, little enough to leave the page responsive.
    await new Promise((r) => setTimeout(r, Math.max(0, 200 - (performance.now() - started))));
  }
}

export function setUpCamera(): void {
  $("camera").addEventListener("click", () => (stream ? stop() : void start()));
}
