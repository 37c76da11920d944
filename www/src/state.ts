// The page's shared state: the client, the loaded samples and every result so far.
import type { ClassifyResult, HiClient, ImageShape } from "hiedge";

export type Row = { index: number; truth: number; result: ClassifyResult; wall: number };

/** One model set the page was built with (data/sets.json, written by scripts/build-www.sh). */
export type ModelSetEntry = {
  name: string;
  /** Whether the page ships test images for it (images.u8, labels.u8, large_logits.f32). */
  samples: boolean;
  tiny: string;
  earlyExit: { stage1: string; stage2: string } | null;
  /** Whether its manifest has calibrated decision parameters (`hiedge calibrate`); a set without
   * them (the real-size zoo-rgb set has random weights) runs the online policy, which needs none. */
  calibrated: boolean;
  /** Whether `hiedge calibrate` stored what a deployment is watched against (`decision.monitoring`):
   * the page's monitoring panel needs it. */
  monitoring: boolean;
};

/** Height, width and channels of one sample, from the client (`HiClient.imageShape`). */
export type { ImageShape };

export const state = {
  client: null as HiClient | null,
  sets: [] as ModelSetEntry[],
  set: null as ModelSetEntry | null,
  images: new Uint8Array(0) as Uint8Array,
  labels: new Uint8Array(0) as Uint8Array,
  largeLabels: [] as number[],
  classes: [] as string[],
  sampleLength: 0,
  shape: { height: 0, width: 0, channels: 1 } as ImageShape,
  rows: [] as Row[],
  next: 0,
  running: false,
  workerUrl: "",
  workerDown: false,
  /** The input shift applied to the stream (the monitoring panel's button): "none", "darken",
   * "invert" or "rotate". */
  shift: "none" as Shift,
};

/** A change applied to every streamed sample, so the monitor's alarms can be seen firing. */
export type Shift = "none" | "darken" | "invert" | "rotate";

/**
 * For the end-to-end tests and the curious: every result, as the page has it. `rendered` is the
 * number of samples the totals and charts last showed (`renders` counts renders), so tests wait on
 * them instead of sleeping.
 */
export const demo = {
  state,
  rows: state.rows,
  ready: false,
  finished: 0,
  rendered: 0,
  renders: 0,
  /** Samples the monitoring panel last showed. */
  monitored: 0,
  /** The last uploaded image's result (for the end-to-end tests). */
  lastUpload: null as ClassifyResult | null,
};
(window as unknown as { hiedgeDemo: typeof demo }).hiedgeDemo = demo;

export const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
export const pct = (x: number) => `${(100 * x).toFixed(2)}%`;
export const ms = (x: number) => x.toFixed(2);

/** The pixels of sample `index`. */
export function sample(index: number): Uint8Array {
  return state.images.subarray(index * state.sampleLength, (index + 1) * state.sampleLength);
}

/** The client, once loaded. */
export function client(): HiClient {
  if (!state.client) throw new Error("the client is not loaded yet");
  return state.client;
}
