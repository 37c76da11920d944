// Thumbnails of the answered samples and the detail of one: decisions, scores, timings and both
// models' probabilities. Untrusted strings (network, URL, files) are only ever text, never HTML.
import { $, ms, sample, state, type ImageShape, type Row } from "./state";

/** Draws raw pixels (gray or RGB, interleaved, row-major) of `shape` on `canvas`. */
export function drawPixels(canvas: HTMLCanvasElement, pixels: Uint8Array, shape: ImageShape): void {
  const { width, height, channels } = shape;
  canvas.width = width;
  canvas.height = height;
  const ctx = canvas.getContext("2d")!;
  const img = ctx.createImageData(width, height);
  for (let i = 0; i < width * height; i++) {
    const p = i * channels;
    const [r, g, b] = channels >= 3 ? [pixels[p], pixels[p + 1], pixels[p + 2]] : [pixels[p], pixels[p], pixels[p]];
    img.data.set([r, g, b, 255], i * 4);
  }
  ctx.putImageData(img, 0, 0);
}

/** An element with text children only. */
export function el(tag: string, children: (string | Node)[] = [], props: { className?: string; style?: string } = {}): HTMLElement {
  const e = document.createElement(tag);
  if (props.className) e.className = props.className;
  if (props.style) e.setAttribute("style", props.style);
  e.append(...children);
  return e;
}

const className = (label: number) => state.classes[label] ?? `class ${label}`;

export function addThumb(row: Row): void {
  const div = document.createElement("div");
  const wrong = row.result.label !== row.truth;
  div.className = `thumb ${row.result.decision}${wrong ? " wrong" : ""}`;
  div.dataset.decision = row.result.decision;
  div.dataset.correct = String(!wrong);
  div.title = `#${row.index}: ${row.result.className} (${row.result.decision}), truth ${className(row.truth)}, ${ms(row.result.timings.totalMs)} ms`;
  const c = document.createElement("canvas");
  drawPixels(c, sample(row.index), state.shape);
  div.append(c);
  div.addEventListener("click", () => showDetail(row));
  $("grid").append(div);
}

function probsTable(title: string, probs: number[]): HTMLElement {
  const rows = probs.map((v, i) =>
    el("tr", [el("td", [className(i)]), el("td", [v.toFixed(3)]),
      el("td", [el("span", [], { className: "bar", style: `width:${Math.round(Math.max(0, Math.min(1, v)) * 120)}px` })])]));
  const head = el("th", [title]);
  head.setAttribute("colspan", "3");
  return el("table", [el("tr", [head]), ...rows]);
}

export function showDetail(row: Row): void {
  const r = row.result;
  const t = r.timings;
  const name = (label: number | null) => (label === null ? "not asked" : className(label));
  const lines: (string | Node)[][] = [
    [el("b", [`#${row.index}`]), ": answered ", el("b", [r.className]), ` (${r.decision}${r.explored ? ", exploring" : ""}), truth `,
      el("b", [name(row.truth)]), r.label === row.truth ? " ✔" : " ✘"],
    [`tiny: ${name(r.localLabel)}; large: ${name(r.remoteLabel)}; answered by the ${r.answeredBy} (why: ${r.why}${r.remoteWhy ? `; at the Worker: ${r.remoteWhy}` : ""})`],
    // The fallback reason can quote the offload endpoint's response body: text only.
    ...(r.fallbackReason ? [[el("span", [`fallback: ${r.fallbackReason}`], { className: "fallback-reason" })]] : []),
    [`local stage: ${r.localStage}${r.localStage === "full" ? "" : " (EE-HI)"}; score ${r.score.toFixed(3)} vs threshold ${r.threshold === null ? "n/a" : r.threshold.toFixed(3)}`],
    [`preprocess ${ms(t.preprocessMs)} ms, tiny ${ms(t.localMs)} ms, decision ${ms(t.decisionMs)} ms, round trip ${ms(t.roundTripMs)} ms ` +
      `(Worker inference ${t.remoteMs === null ? "not measurable there" : ms(t.remoteMs) + " ms"}), total ${ms(t.totalMs)} ms, ${r.bytesSent} bytes sent`],
  ];
  const detail = $("detail");
  detail.replaceChildren(...lines.map((parts) => el("div", parts)), probsTable("tiny model probabilities", r.localProbs));
  if (r.remoteLabel !== null) detail.append(probsTable("large model probabilities", r.probs));
}
