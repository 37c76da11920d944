// The `hiedge` package's entry: `init` loads the wasm through the Cache API, and `HiClient` runs the
// wasm client (hiedge.js, generated from Rust) in a Web Worker by default, on the main thread where
// there are no workers, and can answer through the Worker before the device model has loaded.
// Every HI decision is the wasm's; this file only moves messages, caches the wasm and, while the
// wasm is still downloading, sends model-sized bytes to the Worker's classify route.
import initWasm, { HiClient as WasmClient } from "./hiedge.js";
import { host } from "./host.js";

export * from "./hiedge.js";

/** sha256 of hiedge_bg.wasm, written by the package build. */
const WASM_SHA256 = "__HIEDGE_WASM_SHA256__";
/** The Cache API cache the wasm client uses too: hiedge-core's `CLIENT_CACHE_NAME`, written by the package build. */
const CACHE_NAME = "__HIEDGE_CACHE_NAME__";
/** hiedge-core's set-name rule (`protocol::is_set_name`), written by the package build. */
const SET_NAME = new RegExp("__HIEDGE_SET_NAME_PATTERN__");
const WASM_KEY = `https://cache.hiedge.invalid/sha256/${WASM_SHA256}`;

const codedError = (code, message) => Object.assign(new Error(message), { code });

/** Most bytes read for the wasm, and for a manifest or a classify answer (never sized by a header). */
const MAX_WASM_BYTES = 64 * 1024 * 1024;
const MAX_JSON_BYTES = 1024 * 1024;
/** Default time allowed for the wasm or a manifest to arrive (`loadTimeoutMs`). */
const LOAD_TIMEOUT_MS = 120_000;

/**
 * A response's body, read chunk by chunk and refused as soon as it passes `cap` bytes: the size a
 * server announces (`Content-Length`) is never trusted to size an allocation. `report(loaded)`
 * hears of every chunk.
 * @param {Response} response
 * @param {number} cap most bytes read
 * @param {string} what what the body is, for the error
 * @param {(loaded: number) => void} [report]
 * @returns {Promise<Uint8Array<ArrayBuffer>>}
 */
async function readCapped(response, cap, what, report = () => {}) {
  const announced = Number(response.headers.get("Content-Length"));
  if (Number.isFinite(announced) && announced > cap) {
    response.body?.cancel().catch(() => {});
    throw codedError("FetchFailed", `the ${what} is ${announced} bytes, more than the ${cap} hiedge reads`);
  }
  if (!response.body) {
    const bytes = new Uint8Array(await response.arrayBuffer());
    if (bytes.length > cap) throw codedError("FetchFailed", `the ${what} is more than the ${cap} bytes hiedge reads`);
    return bytes;
  }
  const chunks = [];
  let received = 0;
  for (const reader = response.body.getReader(); ; ) {
    const { done, value } = await reader.read();
    if (done) break;
    received += value.length;
    if (received > cap) {
      reader.cancel().catch(() => {});
      throw codedError("FetchFailed", `the ${what} is more than the ${cap} bytes hiedge reads`);
    }
    chunks.push(value);
    report(received);
  }
  const bytes = new Uint8Array(received);
  let at = 0;
  for (const chunk of chunks) bytes.set(chunk, (at += chunk.length) - chunk.length);
  return bytes;
}

/** A non-negative finite number of milliseconds, or `fallback`. */
const millis = (v, fallback) => (Number.isFinite(v) && v >= 0 ? v : fallback);
const openCache = async () => (typeof caches === "undefined" ? null : caches.open(CACHE_NAME).catch(() => null));

let loaded = null;
/** The wasm's last download report, and the callback that got it (replayed to a later create's). */
let wasmReport = null;
let wasmReportedTo = null;

/**
 * Loads and instantiates the wasm once (later calls return the same promise): from the Cache API
 * when an earlier load stored it (keyed by its sha256), otherwise downloaded with progress and
 * stored. Resolves to the compiled `WebAssembly.Module`.
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
 * The compiled wasm: given, from the Cache API, or downloaded.
 * @param {{ wasm?: string | URL | WebAssembly.Module | ArrayBuffer | ArrayBufferView, cache?: boolean,
 *   onProgress?: (report: object) => void, loadTimeoutMs?: number }} options
 * @returns {Promise<WebAssembly.Module>}
 */
async function loadModule({ wasm, cache = true, onProgress, loadTimeoutMs }) {
  if (wasm instanceof WebAssembly.Module) return wasm;
  if (wasm instanceof ArrayBuffer || ArrayBuffer.isView(wasm)) return WebAssembly.compile(/** @type {BufferSource} */ (wasm));
  wasmReportedTo = onProgress ?? null;
  const report = (loadedBytes, total, fromCache) => {
    const message = fromCache ? `wasm: ${loadedBytes} bytes from the cache` : `wasm: ${loadedBytes} of ${total ?? "?"} bytes`;
    wasmReport = { stage: "download", message, file: "wasm", loaded: loadedBytes, total, fromCache };
    try {
      onProgress?.(wasmReport);
    } catch {} // A throwing progress callback must not stop loading.
  };
  const store = cache && wasm === undefined ? await openCache() : null;
  const hit = await store?.match(WASM_KEY).catch(() => undefined);
  if (hit) {
    const bytes = await hit.arrayBuffer();
    report(bytes.byteLength, bytes.byteLength, true);
    return WebAssembly.compile(bytes);
  }
  const url = wasm ?? new URL("./hiedge_bg.wasm", import.meta.url);
  const bytes = await download(url, report, millis(loadTimeoutMs, LOAD_TIMEOUT_MS));
  if (store && (await sha256(bytes)) === WASM_SHA256) await store.put(WASM_KEY, new Response(bytes)).catch(() => {});
  return WebAssembly.compile(bytes);
}

async function download(url, report, timeoutMs) {
  let response;
  const signal = AbortSignal.timeout(timeoutMs);
  const failed = (why) => codedError("FetchFailed", `could not fetch the wasm from ${url}: ${why}`);
  try {
    response = await fetch(url, { signal });
  } catch (e) {
    throw failed(signal.aborted ? `no answer in ${timeoutMs} ms` : e?.message ?? e);
  }
  if (!response.ok) throw failed(`HTTP ${response.status}`);
  const encoded = (response.headers.get("Content-Encoding") ?? "identity") !== "identity";
  const announced = Number(response.headers.get("Content-Length"));
  const total = !encoded && Number.isFinite(announced) && announced > 0 && announced <= MAX_WASM_BYTES ? announced : null;
  report(0, total, false);
  try {
    return await readCapped(response, MAX_WASM_BYTES, "wasm", (received) => report(received, total, false));
  } catch (e) {
    throw signal.aborted ? failed(`not downloaded in ${timeoutMs} ms`) : e;
  }
}

async function sha256(bytes) {
  if (!globalThis.crypto?.subtle) return null;
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Whether a Web Worker can run the client here (a page, not already inside a worker). */
const workersHere = () => typeof Worker === "function" && typeof window !== "undefined";

/** Inputs a worker cannot receive as they are; they become ImageBitmaps on the page first. */
const isElement = (input) =>
  ["HTMLCanvasElement", "HTMLImageElement", "HTMLVideoElement", "OffscreenCanvas", "SVGImageElement"].some(
    (name) => typeof globalThis[name] === "function" && input instanceof globalThis[name],
  );

/** hiedge-core's `MAX_IMAGE_PIXELS` (core/src/runtime/image.rs): the wasm refuses larger images too. */
const MAX_IMAGE_PIXELS = 64 * 1024 * 1024;

/** Why an element is too large to read (from its dimensions alone), or null. */
function oversize(element) {
  const dim = (w, h) => [element[w], element[h]].every((v) => Number.isFinite(v) && v >= 1) && [element[w], element[h]];
  const size = dim("naturalWidth", "naturalHeight") || dim("videoWidth", "videoHeight") || dim("width", "height");
  if (!size) return null; // not loaded yet: createImageBitmap says so
  const [w, h] = size;
  return w * h > MAX_IMAGE_PIXELS ? `a ${w}x${h} image is empty or larger than ${MAX_IMAGE_PIXELS} pixels` : null;
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
  #onProgress;
  #queue = Promise.resolve();
  #early = null;
  #whileLoading = 0;
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
    const client = new HiClient(CREATE);
    client.#onProgress = typeof options.onProgress === "function" ? options.onProgress : null;
    client.#hook = options.allowOffload ?? null;
    client.ready = client.#load(options);
    if (options.answerWhileLoading) {
      client.#early = earlyRoute(options);
      client.ready.catch(() => {});
      return client;
    }
    await client.ready;
    return client;
  }

  /** Whether `HiClient.create(options)` would load with no network: wasm, manifest and model files cached. */
  static async isCached(options) {
    const store = await openCache();
    if (!store || !(await store.match(WASM_KEY).catch(() => undefined))) return false;
    await init();
    return WasmClient.isCached(strip(options));
  }

  /** Deletes the cached wasm, manifests and model files; resolves to whether there was a cache. */
  static async clearCache() {
    return typeof caches === "undefined" ? false : caches.delete(CACHE_NAME);
  }

  async #load(options) {
    const module = await init({
      cache: options.cache !== false, onProgress: this.#onProgress ?? undefined, loadTimeoutMs: options.loadTimeoutMs,
    });
    // The wasm was loaded before (by `init()` or another client): say how it came, once.
    if (this.#onProgress && wasmReportedTo !== this.#onProgress && wasmReport) this.#receive({ op: "progress", value: wasmReport });
    const message = { options: { ...strip(options), hasAllowOffload: !!options.allowOffload, hasProgress: !!this.#onProgress } };
    if (options.worker ?? workersHere()) {
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
      askHook(this.#hook, msg.request, false).then((value) => this.#send({ op: "allowed", ask: msg.ask, value }));
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

  /** Classifies one sample (see the wasm client's `classify`). */
  classify(input) {
    if (this.#info) return this.#sample("classify", input);
    if (this.#early && input instanceof Uint8Array) return this.#classifyWhileLoading(input);
    return this.ready.then(() => this.#sample("classify", input));
  }

  async #classifyWhileLoading(input) {
    const early = this.#early;
    const start = performance.now();
    if (early.mode === "only_local") return this.ready.then(() => this.classify(input));
    const request = { localLabel: -1, confidence: 0, score: 0, why: "loading", bytes: input.length };
    if (!(await askHook(this.#hook, request, true))) return this.ready.then(() => this.classify(input));
    let answer;
    try {
      answer = await postSample(early, input);
      // The answer is checked against the set's classes, as the wasm checks every answer: the
      // class names were asked for when the client was created, in parallel with this sample, so
      // on a slow network they may come just after it. Wait for them (at most the offload timeout
      // again); without them the answer cannot be checked, and is not used.
      if (!early.classes) await Promise.race([early.classesKnown, new Promise((ok) => setTimeout(ok, early.timeoutMs))]);
      if (!early.classes) throw new Error("the set's classes are unknown, so the answer cannot be checked");
      checkClassifyAnswer(answer, early.classes.length);
    } catch (reason) {
      if (this.#info) return this.classify(input);
      throw codedError("NotReady", `the device model is still loading and the Worker did not answer: ${reason?.message ?? reason}`);
    }
    const totalMs = performance.now() - start;
    this.#whileLoading++;
    return {
      label: answer.label, className: early.classes?.[answer.label] ?? String(answer.label), probs: answer.probs,
      confidence: answer.probs[answer.label], decision: "offloaded", score: 0, threshold: null, offloadWanted: true,
      explored: false, localLabel: -1, localProbs: [], remoteLabel: answer.label, remoteModel: answer.model,
      fallbackReason: null,
      timings: { preprocessMs: 0, localMs: 0, decisionMs: 0, roundTripMs: totalMs, remoteMs: answer.infer_ms ?? null, totalMs },
      bytesSent: input.length, localStage: "full", answeredBy: "worker", why: "loading",
    };
  }

  /** The local model only (see the wasm client); a Promise in this facade. */
  classifyLocal(input) {
    this.#loaded();
    return this.#sample("classifyLocal", input);
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
    if (this.#early) this.#early.mode = mode;
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
    if (this.#early) this.#early = null;
    return this.ready.then(() => this.#call("setEndpoint", [endpoint]));
  }
  resetStats() {
    this.#whileLoading = 0;
    return this.ready.then(() => this.#call("resetStats", []));
  }
  /** The policy in use (as of the last answered call). */
  policy() {
    this.#loaded();
    return this.#state.policy;
  }
  /** The mode in use (as of the last answered call). */
  get mode() {
    return this.#state?.mode ?? this.#early?.mode ?? "cascade";
  }
  /** Running statistics as of the last answered call, plus `answeredWhileLoading`. */
  stats() {
    this.#loaded();
    return { ...this.#state.stats, answeredWhileLoading: this.#whileLoading };
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
 * The `allowOffload` hook's answer: true only for `true` or a Promise of `true` (a throw or a
 * rejection refuses); `absent` when there is no hook.
 */
const askHook = (hook, request, absent) =>
  hook ? Promise.resolve().then(() => hook(request)).then((v) => v === true, () => false) : Promise.resolve(absent);

/**
 * The options the wasm client reads (functions stay on the page), with relative URLs made absolute
 * against the page, since a worker would resolve them against its own script.
 */
function strip(options) {
  const { allowOffload, onProgress, worker, answerWhileLoading, ...rest } = options ?? {};
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

/** Where samples go while the wasm and model download: the Worker's classify route, or nowhere. */
function earlyRoute(options) {
  const { endpoint, modelSet, token, timeoutMs, mode, manifest } = options;
  if (typeof endpoint !== "string" || !/^(https?:\/\/|\/)/.test(endpoint)) return null;
  if (modelSet !== undefined && !SET_NAME.test(modelSet)) return null;
  const base = endpoint.replace(/\/+$/, "");
  const route = {
    url: base + (modelSet ? `/v1/models/${modelSet}/classify` : "/v1/classify"),
    token: token || null,
    timeoutMs: Number.isFinite(timeoutMs) && timeoutMs >= 0 ? timeoutMs : 3000,
    mode: mode ?? "cascade",
    classes: null,
    // Settles once the class names are known or cannot be had (an answer waits for it, see below).
    classesKnown: Promise.resolve(),
  };
  // Class names for the answers (and their count, which every answer is checked against): the
  // given manifest's, or fetched from the manifest's URL or the Worker's set, in parallel with the
  // first samples. The token goes to the Worker only.
  const given = typeof manifest === "string" && manifest.trim().startsWith("{") ? safeJson(manifest) : manifest;
  const fromWorker = modelSet && manifest === undefined;
  const url = fromWorker ? `${base}/v1/models/${modelSet}` : typeof manifest === "string" && given === manifest ? manifest : null;
  if (given && typeof given === "object" && Array.isArray(given.classes)) route.classes = given.classes.map(String);
  else if (url) {
    const headers = fromWorker && route.token ? { Authorization: `Bearer ${route.token}` } : {};
    route.classesKnown = fetch(url, {
      headers, redirect: fromWorker ? "error" : "follow", signal: AbortSignal.timeout(millis(options.loadTimeoutMs, LOAD_TIMEOUT_MS)),
    })
      .then((r) => (r.ok ? readCapped(r, MAX_JSON_BYTES, "manifest") : null))
      .then((bytes) => bytes && safeJson(new TextDecoder().decode(bytes)))
      .then((m) => {
        if (Array.isArray(m?.classes) && m.classes.length > 0) route.classes = m.classes.map(String);
      })
      .catch(() => {});
  }
  return route;
}

function safeJson(text) {
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}

/**
 * POSTs model-sized bytes to the classify route; resolves to the parsed answer (checked by
 * `checkClassifyAnswer` once the classes are known). Redirects are errors: an answer comes from the
 * endpoint the page named, or from nowhere.
 */
async function postSample(route, input) {
  const headers = { "Content-Type": "application/octet-stream" };
  if (route.token) headers.Authorization = `Bearer ${route.token}`;
  const response = await fetch(route.url, {
    method: "POST", mode: "cors", redirect: "error", headers, body: input, signal: AbortSignal.timeout(route.timeoutMs),
  });
  const text = new TextDecoder().decode(await readCapped(response, MAX_JSON_BYTES, "answer"));
  if (!response.ok) throw new Error(`HTTP ${response.status}: ${text.slice(0, 200)}`);
  return safeJson(text);
}

/**
 * The check hiedge-core makes of every classify answer (`ClassifyResponse::from_json` in
 * core/src/protocol.rs, with `prob::validate_probs`), for the answers that arrive before the wasm
 * has loaded: exactly the fields `label`, `probs`, `model`, `infer_ms`; one probability per class,
 * each finite and within 0..=1 (1e-6 slack), summing to 1 within 1e-3; the label an integer class
 * whose probability is the largest. Throws "bad response: ..." otherwise.
 */
function checkClassifyAnswer(answer, classes) {
  const bad = (why) => {
    throw new Error(`bad response: ${why}`);
  };
  if (answer === null || typeof answer !== "object" || Array.isArray(answer)) bad("not a classify result");
  for (const key of Object.keys(answer)) {
    if (!["label", "probs", "model", "infer_ms"].includes(key)) bad(`unknown field \`${key}\``);
  }
  const { label, probs, model, infer_ms: inferMs } = answer;
  if (!Array.isArray(probs) || probs.length !== classes) bad(`response has ${probs?.length} probabilities, expected ${classes}`);
  probs.forEach((p, i) => {
    if (typeof p !== "number" || !Number.isFinite(p)) bad(`probability ${i} is ${p}, not a finite number`);
    if (p < -1e-6 || p > 1 + 1e-6) bad(`probability ${i} is ${p}, outside 0..=1`);
  });
  const sum = probs.reduce((a, b) => a + b, 0);
  if (Math.abs(sum - 1) > 1e-3) bad(`probabilities sum to ${sum}, not 1`);
  if (!Number.isInteger(label) || label < 0 || label >= classes || probs.some((p) => p > probs[label])) {
    bad(`response label ${label} is not the argmax`);
  }
  if (typeof model !== "string") bad("`model` is not a string");
  if (inferMs !== undefined && inferMs !== null && (typeof inferMs !== "number" || !Number.isFinite(inferMs))) {
    bad("`infer_ms` is not a number or null");
  }
  return answer;
}
