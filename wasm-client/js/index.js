// The `hiedge` package's entry. It only moves messages: between the page and the loader build
// (hiedge_loader.js, the client's network layer in Rust: it downloads and caches the device build,
// answers samples through the Worker while that loads, and reads or clears the cache), and between
// the page and the device build (hiedge.js: HiClient with tract), which runs in a Web Worker by
// default (worker.js) and on the main thread where there are no workers (host.js). Every fetch,
// cache entry, check of a Worker's answer and HI decision is the Rust code's.
import initWasm, { HiClient as WasmClient } from "./hiedge.js";
import initLoader, * as loader from "./hiedge_loader.js";
import { host } from "./host.js";

export * from "./hiedge.js";

/** sha256 of hiedge_bg.wasm, written by the package build: the loader caches it under this key. */
const WASM_SHA256 = "__HIEDGE_WASM_SHA256__";

const codedError = (code, message) => Object.assign(new Error(message), { code });

/** The loader build, instantiated once (a failed load is tried again by the next call). */
let loaderReady = null;
function loadLoader() {
  loaderReady ??= initLoader().catch((e) => {
    loaderReady = null;
    throw codedError("FetchFailed", `could not load hiedge_loader_bg.wasm: ${e?.message ?? e}`);
  });
  return loaderReady;
}

let loaded = null;
/** The wasm's last download report, and the callback that got it (replayed to a later create's). */
let wasmReport = null;
let wasmReportedTo = null;

/**
 * Loads and instantiates the device build once (later calls return the same promise): the loader
 * takes it from the Cache API when an earlier load stored it (keyed by its sha256), or downloads
 * it with progress and stores it. Resolves to the compiled `WebAssembly.Module`.
 */
export default function init(options = {}) {
  // wasm-bindgen's own forms: `init({ module_or_path })`, or the source itself.
  if (typeof options === "string" || options instanceof URL || options instanceof WebAssembly.Module ||
      options instanceof ArrayBuffer || ArrayBuffer.isView(options)) options = { wasm: options };
  else if (options && typeof options === "object" && "module_or_path" in options) options = { wasm: options.module_or_path };
  loaded ??= loadModule(options ?? {}).then(async (module) => {
    await initWasm({ module_or_path: module });
    return module;
  });
  loaded.catch(() => (loaded = null));
  return loaded;
}

/**
 * The compiled device build: given, or through the loader (Cache API or download).
 * @param {{ wasm?: string | URL | WebAssembly.Module | ArrayBuffer | ArrayBufferView, cache?: boolean,
 *   onProgress?: (report: object) => void, loadTimeoutMs?: number }} options
 * @returns {Promise<WebAssembly.Module>}
 */
async function loadModule({ wasm, cache = true, onProgress, loadTimeoutMs }) {
  if (wasm instanceof WebAssembly.Module) return wasm;
  if (wasm instanceof ArrayBuffer || ArrayBuffer.isView(wasm)) return WebAssembly.compile(/** @type {BufferSource} */ (wasm));
  await loadLoader();
  wasmReportedTo = onProgress ?? null;
  return loader.loadDeviceWasm({
    url: String(wasm ?? new URL("./hiedge_bg.wasm", import.meta.url)),
    // Only the package's own wasm is cached (under its hash); one given by URL is downloaded.
    sha256: wasm === undefined ? WASM_SHA256 : undefined,
    cache, loadTimeoutMs,
    onProgress: (report) => {
      wasmReport = report;
      onProgress?.(report);
    },
  });
}

/** Whether a Web Worker can run the client here (a page, not already inside a worker). */
const workersHere = () => typeof Worker === "function" && typeof window !== "undefined";

/** Inputs a worker cannot receive as they are; they become ImageBitmaps on the page first. */
const isElement = (input) =>
  ["HTMLCanvasElement", "HTMLImageElement", "HTMLVideoElement", "OffscreenCanvas", "SVGImageElement"].some(
    (name) => typeof globalThis[name] === "function" && input instanceof globalThis[name],
  );

/** Why an element is too large to read (from its dimensions alone, against hiedge-core's limit), or null. */
function oversize(element) {
  const dim = (w, h) => [element[w], element[h]].every((v) => Number.isFinite(v) && v >= 1) && [element[w], element[h]];
  const size = dim("naturalWidth", "naturalHeight") || dim("videoWidth", "videoHeight") || dim("width", "height");
  if (!size) return null; // not loaded yet: createImageBitmap says so
  const [w, h] = size;
  const most = loader.maxImagePixels();
  return w * h > most ? `a ${w}x${h} image is empty or larger than ${most} pixels` : null;
}

/**
 * The HI client. `HiClient.create(options)` loads the wasm, the manifest and the device model and
 * runs them in a Web Worker (`worker: false` for the main thread); see hiedge.d.ts / index.d.ts.
 */
export class HiClient {
  #send = null;
  #worker = null;
  #pending = new Map();
  #next = 0;
  #info = null;
  #state = null;
  #hook = null;
  #onDecision = null;
  #onProgress;
  #queue = Promise.resolve();
  /** The loader's WhileLoading route (`answerWhileLoading`), a Promise of it or of null. */
  #early = null;
  /** The same route once it exists. */
  #route = null;
  /** Resolves when the device model is loaded (rejects with why it could not be). */
  ready;
  /** Where the model runs: "worker" or "main" (null until the device model is loaded). */
  runsIn = null;

  constructor(secret) {
    if (secret !== CREATE) throw new TypeError("use `await HiClient.create(options)`");
  }

  /**
   * Loads the client. With `answerWhileLoading: true` it resolves at once and, until the device
   * model is loaded, sends model-sized `Uint8Array` samples to the Worker (`why: "loading"`).
   */
  static async create(options) {
    if (options === null || typeof options !== "object") {
      throw codedError("InvalidOptions", "HiClient.create needs an options object: { model, manifest, endpoint }");
    }
    if (options.onDecision != null && typeof options.onDecision !== "function") {
      throw codedError("InvalidOptions", "`onDecision` must be a function (or null)");
    }
    if (options.clock != null && options.worker === true) {
      throw codedError("InvalidOptions", "a `clock` function cannot be sent to a Web Worker: leave `worker` out or set it false");
    }
    const client = new HiClient(CREATE);
    client.#onProgress = typeof options.onProgress === "function" ? options.onProgress : null;
    client.#onDecision = options.onDecision ?? null;
    client.#hook = options.allowOffload ?? null;
    client.ready = client.#load(options);
    if (options.answerWhileLoading) {
      // No route (no endpoint, unreadable options): samples wait for the device model, whose load
      // reports what was wrong.
      client.#early = loadLoader()
        .then(() => (client.#route = new loader.WhileLoading(strip(options))))
        .catch(() => null);
      client.ready.catch(() => {});
      return client;
    }
    await client.ready;
    return client;
  }

  /** Whether `HiClient.create(options)` would load with no network: wasm, manifest and model files cached. */
  static async isCached(options) {
    await loadLoader();
    return loader.isCached(strip(options), WASM_SHA256);
  }

  /** Deletes the cached wasm, manifests and model files; resolves to whether there was a cache. */
  static async clearCache() {
    await loadLoader();
    return loader.clearCache();
  }

  async #load(options) {
    const module = await init({
      cache: options.cache !== false, onProgress: this.#onProgress ?? undefined, loadTimeoutMs: options.loadTimeoutMs,
    });
    // The wasm was loaded before (by `init()` or another client): say how it came, once.
    if (this.#onProgress && wasmReportedTo !== this.#onProgress && wasmReport) this.#receive({ op: "progress", value: wasmReport });
    const message = { options: { ...strip(options), hasAllowOffload: !!options.allowOffload, hasProgress: !!this.#onProgress } };
    // A clock is a function: it stays on this thread, and so does the model.
    if (options.clock == null && (options.worker ?? workersHere())) {
      try {
        this.#startWorker();
        this.#info = await this.#call("create", [], { ...message, module });
        this.runsIn = "worker";
        return;
      } catch (e) {
        this.#worker?.terminate();
        this.#worker = null;
        if (e?.code !== "WorkerFailed" || options.worker === true) throw e;
      }
    }
    const handle = host((msg) => this.#receive(msg));
    this.#send = (msg) => void handle(msg);
    this.#info = await this.#call("create", [], message);
    this.runsIn = "main";
  }

  #startWorker() {
    const worker = new Worker(new URL("./worker.js", import.meta.url), { type: "module" });
    worker.onmessage = (event) => this.#receive(event.data);
    worker.onerror = (event) => {
      event.preventDefault?.();
      const error = codedError("WorkerFailed", `the Web Worker failed: ${event.message ?? "could not start"}`);
      for (const { reject } of this.#pending.values()) reject(error);
      this.#pending.clear();
    };
    this.#worker = worker;
    this.#send = (msg, transfer) => worker.postMessage(msg, transfer ?? []);
  }

  #receive(msg) {
    if (msg.op === "progress") {
      try {
        this.#onProgress?.(msg.value);
      } catch {}
      return;
    }
    if (msg.op === "allow") {
      askHook(this.#hook, msg.request).then((value) => this.#send({ op: "allowed", ask: msg.ask, value }));
      return;
    }
    const pending = this.#pending.get(msg.id);
    if (!pending) return;
    this.#pending.delete(msg.id);
    if (msg.state) this.#state = msg.state;
    if (msg.ok) pending.resolve(msg.value);
    else pending.reject(Object.assign(new Error(msg.error.message), msg.error));
  }

  #call(op, args, extra = {}, transfer) {
    return new Promise((resolve, reject) => {
      const id = this.#next++;
      this.#pending.set(id, { resolve, reject });
      this.#send({ id, op, args, ...extra }, transfer);
    });
  }

  /**
   * Forwards a call with one sample, page elements turned into ImageBitmaps first (after a size
   * check on their dimensions, before any pixel is copied), in call order.
   */
  #sample(op, input, ...rest) {
    if (!this.#worker) return this.#call(op, [input, ...rest]);
    const tooBig = isElement(input) ? oversize(input) : null;
    if (tooBig) return Promise.reject(codedError("InvalidInput", tooBig));
    const bitmap = isElement(input)
      ? createImageBitmap(input).catch((e) => {
          throw codedError("InvalidInput", `could not read the image: ${e?.message ?? e}`);
        })
      : null;
    const sent = this.#queue.then(async () => {
      const sample = bitmap ? await bitmap : input;
      return this.#call(op, [sample, ...rest], {}, bitmap ? [sample] : undefined);
    });
    this.#queue = sent.then(() => {}, () => {});
    return sent;
  }

  #loaded() {
    if (!this.#info) throw codedError("NotReady", "the device model is still loading: await client.ready first");
    return this.#info;
  }

  /** Whether the device model is loaded. */
  get loaded() {
    return this.#info !== null;
  }

  /** Classifies one sample (see the wasm client's `classify`); `onDecision` sees its result. */
  classify(input) {
    if (this.#info) return this.#decided(this.#sample("classify", input));
    if (this.#early && input instanceof Uint8Array) return this.#decided(this.#classifyWhileLoading(input));
    return this.#decided(this.ready.then(() => this.#sample("classify", input)));
  }

  /** Hands a result to the `onDecision` hook (a hook that throws is reported, the result kept). */
  #decided(promise) {
    if (!this.#onDecision) return promise;
    return promise.then((result) => {
      try {
        this.#onDecision?.(result);
      } catch (e) {
        console.error("hiedge: the onDecision hook threw", e);
      }
      return result;
    });
  }

  /**
   * A model-sized sample before the device model has loaded: the loader's route sends it to the
   * Worker and checks the answer; it resolves to nothing when the device must answer (mode
   * `only_local`, or the hook said no), and rejects with `NotReady` when the Worker did not answer.
   */
  async #classifyWhileLoading(input) {
    const route = await this.#early;
    const answer = route && !this.#info
      ? await route.classify(input, this.#hook).catch((e) => {
          if (this.#info) return undefined; // loaded meanwhile: the device answers
          throw e;
        })
      : undefined;
    return answer ?? this.ready.then(() => this.#sample("classify", input));
  }

  /** The local model only (see the wasm client); a Promise in this facade. */
  classifyLocal(input) {
    this.#loaded();
    return this.#decided(this.#sample("classifyLocal", input));
  }
  /** The monitor's state, or null without one (see the wasm client). */
  monitor() {
    return this.ready.then(() => this.#call("monitor", []));
  }
  /** The circuit breaker's state, or null without one. */
  breaker() {
    return this.ready.then(() => this.#call("breaker", []));
  }
  /** What the shadow policy would have done so far, or null without one. */
  shadowReport() {
    return this.ready.then(() => this.#call("shadowReport", []));
  }
  /** Shadows a candidate policy from the next sample on (null: stop). */
  setShadow(policy) {
    return this.ready.then(() => this.#call("setShadow", [policy]));
  }
  /** The rollout's counts per arm, or null without one. */
  rolloutReport() {
    return this.ready.then(() => this.#call("rolloutReport", []));
  }
  /** Starts a rollout from the next sample on (null: stop). */
  setRollout(rollout) {
    return this.ready.then(() => this.#call("setRollout", [rollout]));
  }
  /** Per-op times of the local model (see the wasm client); a Promise in this facade. */
  profile(pixels, runs) {
    this.#loaded();
    return this.#call("profile", [pixels, runs]);
  }
  /** Fits the threshold on labelled samples (see the wasm client). */
  async calibrate(samples, labels, target) {
    await this.ready;
    const ready = this.#worker ? await Promise.all(Array.from(samples, (s) => (isElement(s) ? createImageBitmap(s) : s))) : samples;
    return this.#call("calibrate", [ready, Array.from(labels), target]);
  }
  setPolicy(policy) {
    return this.ready.then(() => this.#call("setPolicy", [policy]));
  }
  setMode(mode) {
    // Registered before any later sample's wait on the route, so it applies to them.
    this.#early?.then((route) => route?.setMode(mode));
    return this.ready.then(() => this.#call("setMode", [mode]));
  }
  setAllowOffload(hook) {
    if (hook !== null && hook !== undefined && typeof hook !== "function") {
      return Promise.reject(codedError("InvalidOptions", "`allowOffload` must be a function (or null)"));
    }
    this.#hook = hook ?? null;
    return this.ready.then(() => this.#call("setAllowOffload", [!!hook]));
  }
  setMaxOffloadsPerMinute(perMinute) {
    return this.ready.then(() => this.#call("setMaxOffloadsPerMinute", [perMinute]));
  }
  setNetworkDelay(ms) {
    return this.ready.then(() => this.#call("setNetworkDelay", [ms]));
  }
  setEndpoint(endpoint) {
    this.#early = null;
    this.#route = null;
    return this.ready.then(() => this.#call("setEndpoint", [endpoint]));
  }
  resetStats() {
    this.#route?.resetStats();
    return this.ready.then(() => this.#call("resetStats", []));
  }
  /** The policy in use (as of the last answered call). */
  policy() {
    this.#loaded();
    return this.#state.policy;
  }
  /** The mode in use (as of the last answered call). */
  get mode() {
    return this.#state?.mode ?? this.#route?.mode ?? "cascade";
  }
  /** Running statistics as of the last answered call, plus `answeredWhileLoading`. */
  stats() {
    this.#loaded();
    return { ...this.#state.stats, answeredWhileLoading: this.#route?.answered ?? 0 };
  }
  manifest() {
    return this.#loaded().manifest;
  }
  get classes() {
    return this.#loaded().classes;
  }
  get inputLength() {
    return this.#loaded().inputLength;
  }
  get imageShape() {
    return this.#loaded().imageShape;
  }
  get modelId() {
    return this.#loaded().modelId;
  }
  /** Stops the Web Worker (calls after this reject). */
  close() {
    this.#worker?.terminate();
    const error = codedError("NotReady", "the client was closed");
    for (const { reject } of this.#pending.values()) reject(error);
    this.#pending.clear();
    this.#send = () => {};
    this.#info = null;
  }
}

const CREATE = Symbol("HiClient.create");

/**
 * The page's `allowOffload` hook asked for the Web Worker (which asks only when there is one):
 * true only for `true` or a Promise of `true`; a throw, a rejection or a hook since removed refuse.
 */
const askHook = (hook, request) =>
  Promise.resolve().then(() => hook?.(request)).then((v) => v === true, () => false);

/**
 * The options the wasm client reads (functions stay on the page), with relative URLs made absolute
 * against the page, since a worker would resolve them against its own script.
 */
function strip(options) {
  const { allowOffload, onProgress, onDecision, worker, answerWhileLoading, ...rest } = options ?? {};
  const base = globalThis.document?.baseURI ?? globalThis.location?.href;
  const absolute = (url) => {
    try {
      return base ? new URL(url, base).href : url;
    } catch {
      return url; // the wasm client reports it
    }
  };
  if (typeof rest.model === "string") rest.model = absolute(rest.model);
  if (typeof rest.manifest === "string" && !rest.manifest.trim().startsWith("{")) rest.manifest = absolute(rest.manifest);
  if (typeof rest.endpoint === "string" && rest.endpoint.startsWith("/")) rest.endpoint = absolute(rest.endpoint);
  const stages = rest.earlyExit;
  if (stages && typeof stages === "object" && !ArrayBuffer.isView(stages)) {
    rest.earlyExit = { ...stages };
    for (const k of ["stage1", "stage2"]) if (typeof stages[k] === "string") rest.earlyExit[k] = absolute(stages[k]);
  }
  return rest;
}

