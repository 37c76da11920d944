// Types of the `hiedge` package's entry (index.js). Everything but `init` and `HiClient` is the device
// build's, generated from the Rust types into hiedge.d.ts (the loader build's are in hiedge_loader.d.ts).
import type {
  BreakerState, Calibration, CalibrateOptions, ClassifyResult, ClientStats, HiClientOptions as WasmClientOptions,
  ImageShape, LoadProgress, Mode, MonitorState, OffloadRequest, OpTime, PolicyChoice, PolicyConfig, RolloutOptions,
  RolloutReport, ShadowReport,
} from "./hiedge.js";

export * from "./hiedge.js";

/** Options of `init`. */
export interface InitOptions {
  /** Where the wasm is: a URL, its bytes or a compiled module (default: hiedge_bg.wasm beside this file). */
  wasm?: string | URL | BufferSource | WebAssembly.Module;
  /** Keep the wasm in the Cache API, keyed by its sha256 (default true; only for the default URL). */
  cache?: boolean;
  /** Download progress (`stage: "download"`, `file: "wasm"`). */
  onProgress?: (progress: LoadProgress) => void;
  /** Time allowed for the download, ms (default 120000). */
  loadTimeoutMs?: number;
}

/**
 * Loads and instantiates the wasm once (later calls return the same promise), from the Cache API
 * when an earlier load stored it. `HiClient.create` calls it itself.
 */
export default function init(options?: InitOptions | { module_or_path: unknown }): Promise<WebAssembly.Module>;

/** A sample: model-sized bytes or an image source of any size. */
export type Sample =
  | Uint8Array | ImageData | HTMLCanvasElement | OffscreenCanvas | HTMLImageElement | HTMLVideoElement | ImageBitmap
  | VideoFrame | Blob;

/** The options of `HiClient.create`. */
export interface HiClientOptions extends WasmClientOptions {
  /**
   * Run the model in a Web Worker (default: true on a page that has workers). Same answers, same
   * API; the page stays responsive while the model runs. `false`: on the calling thread.
   */
  worker?: boolean;
  /**
   * Resolve `create` at once. Until the device model has loaded (`client.ready`), model-sized
   * `Uint8Array` samples go to the Worker (`answeredBy: "worker"`, `why: "loading"`, `localLabel`
   * -1) after the `allowOffload` hook agrees; image samples, and `only_local` mode, wait for the
   * device model. When the Worker does not answer either, `classify` rejects with code `NotReady`.
   */
  answerWhileLoading?: boolean;
  /**
   * Called with every result `classify` and `classifyLocal` resolve with (provenance included:
   * `decision`, `answeredBy`, `why`, `arm`, `shadowOffload`), before the caller sees it. A hook
   * that throws is reported on the console; the result is kept.
   */
  onDecision?: ((result: ClassifyResult) => void) | null;
}

/** Running statistics, plus the samples the Worker answered while the device model loaded. */
export interface HiClientStats extends ClientStats {
  answeredWhileLoading: number;
}

/**
 * The HI client: the tiny model and decision module in WebAssembly (in a Web Worker by default),
 * offload by `fetch`. Calls that change settings return Promises (they reach the worker in order).
 */
export declare class HiClient {
  private constructor();
  /** Loads the wasm, the manifest and the device model (all cached by sha256 in the Cache API). */
  static create(options: HiClientOptions): Promise<HiClient>;
  /** Whether `create(options)` would load with no network: the wasm, manifest and model files are cached. */
  static isCached(options: HiClientOptions): Promise<boolean>;
  /** Deletes the cached wasm, manifests and model files; resolves to whether there was a cache. */
  static clearCache(): Promise<boolean>;
  /** Resolves when the device model is loaded; rejects with why it could not be. */
  readonly ready: Promise<void>;
  /** Whether the device model is loaded. */
  readonly loaded: boolean;
  /** Where the model runs once loaded: "worker" or "main". */
  readonly runsIn: "worker" | "main" | null;
  /** Classifies one sample: device model, decision, and offload when the decision module asks. */
  classify(input: Sample): Promise<ClassifyResult>;
  /** The device model only (no network); `offloadWanted` says what the decision module would do. */
  classifyLocal(input: Exclude<Sample, Blob>): Promise<ClassifyResult>;
  /** The monitor's state (the `monitor` option), or null without one. */
  monitor(): Promise<MonitorState | null>;
  /** The circuit breaker's state (the `breaker` option), or null without one. */
  breaker(): Promise<BreakerState | null>;
  /** What the shadow policy would have done so far (the `shadow` option), or null without one. */
  shadowReport(): Promise<ShadowReport | null>;
  /** Shadows a candidate policy from the next sample on, its report from zero (null: stop). */
  setShadow(policy: PolicyChoice | null): Promise<void>;
  /** The rollout's counts per arm (the `rollout` option), or null without one. */
  rolloutReport(): Promise<RolloutReport | null>;
  /** Starts a rollout from the next sample on, its counts from zero (null: stop). */
  setRollout(rollout: RolloutOptions | null): Promise<void>;
  /** Per-operation times of the device model's plan over `runs` runs. */
  profile(pixels: Uint8Array, runs: number): Promise<OpTime[]>;
  /** Fits the policy's threshold on labelled samples (every sample is sent to the Worker). */
  calibrate(samples: Sample[], labels: ArrayLike<number>, target: CalibrateOptions): Promise<Calibration>;
  setPolicy(policy: PolicyChoice): Promise<void>;
  setMode(mode: Mode): Promise<void>;
  setAllowOffload(hook: ((request: OffloadRequest) => boolean | Promise<boolean>) | null): Promise<void>;
  setMaxOffloadsPerMinute(perMinute: number | null): Promise<void>;
  setNetworkDelay(ms: number): Promise<void>;
  setEndpoint(endpoint: string | null): Promise<void>;
  resetStats(): Promise<void>;
  /** The policy in use, as of the last answered call. Throws `NotReady` before loading. */
  policy(): PolicyConfig;
  /** The mode in use. */
  readonly mode: Mode;
  /** Running statistics as of the last answered call. Throws `NotReady` before loading. */
  stats(): HiClientStats;
  /** The manifest in use. Throws `NotReady` before loading. */
  manifest(): object;
  readonly classes: string[];
  readonly inputLength: number;
  readonly imageShape: ImageShape;
  readonly modelId: string;
  /** Stops the Web Worker; later calls reject. */
  close(): void;
}
