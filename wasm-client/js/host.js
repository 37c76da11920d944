// Runs one wasm HiClient for the package's HiClient facade (index.js), in a Web Worker (worker.js)
// or on the main thread, behind the same messages: {id, op, args} in, {id, ok, value | error,
// state} out, plus {op: "progress"} and {op: "allow"} (the allowOffload hook, answered by the page).
import initWasm, { HiClient as WasmClient } from "./hiedge.js";

/** The calls the facade forwards as they are. */
const FORWARDED = new Set([
  "classify", "classifyLocal", "profile", "setPolicy", "setMode", "setMaxOffloadsPerMinute",
  "setNetworkDelay", "setEndpoint", "resetStats", "calibrate", "monitor", "breaker", "shadowReport",
  "rolloutReport", "setShadow", "setRollout",
]);

/**
 * A message to the facade: a call's answer (`id`, `ok`, `value` or `error`, the client's `state`),
 * a load report (`op: "progress"`) or a question for the page's allowOffload hook (`op: "allow"`).
 * @typedef {{ id: number, ok: boolean, value?: unknown, error?: { name: string, message: string, code: string },
 *   state: object | null } | { op: "progress", value: unknown } | { op: "allow", ask: number, request: unknown }} ToFacade
 */

/**
 * A message from the facade: a call (`id`, `op`, `args`; `create` adds `options` and the compiled
 * `module`), or the page's answer to an `allow` question (`op: "allowed"`, `ask`, `value`).
 * @typedef {{ op: string, id?: number, args?: any[], options?: any, module?: WebAssembly.Module,
 *   ask?: number, value?: unknown }} FromFacade
 */

/**
 * A message handler; `send` delivers a message to the facade.
 * @param {(msg: ToFacade) => void} send
 * @returns {(msg: FromFacade) => Promise<void>}
 */
export function host(send) {
  let client = null;
  const asks = new Map();
  let nextAsk = 0;
  const allow = (request) =>
    new Promise((answer) => {
      const ask = nextAsk++;
      asks.set(ask, answer);
      send({ op: "allow", ask, request });
    });
  const state = () => ({ mode: client.mode, policy: client.policy(), stats: client.stats() });

  return async function handle(msg) {
    if (msg.op === "allowed") {
      asks.get(msg.ask)?.(msg.value === true);
      asks.delete(msg.ask);
      return;
    }
    try {
      let value;
      if (msg.op === "create") {
        if (msg.module) await initWasm({ module_or_path: msg.module });
        const { hasAllowOffload, hasProgress, ...options } = msg.options;
        client = await WasmClient.create({
          ...options,
          onProgress: hasProgress ? (value) => send({ op: "progress", value }) : undefined,
          allowOffload: hasAllowOffload ? allow : null,
        });
        value = {
          classes: client.classes, inputLength: client.inputLength, imageShape: client.imageShape,
          modelId: client.modelId, manifest: client.manifest(),
        };
      } else if (client === null) {
        throw Object.assign(new Error("the client is not loaded"), { code: "NotReady" });
      } else if (msg.op === "setAllowOffload") {
        client.setAllowOffload(msg.args[0] ? allow : null);
      } else if (FORWARDED.has(msg.op)) {
        // Called before any await, so samples are taken in the order they arrive.
        value = await client[msg.op](...msg.args);
      } else {
        throw Object.assign(new Error(`unknown operation ${msg.op}`), { code: "Internal" });
      }
      send({ id: msg.id, ok: true, value, state: state() });
    } catch (e) {
      const error = { name: e?.name ?? "Error", message: String(e?.message ?? e), code: e?.code ?? "Internal" };
      send({ id: msg.id, ok: false, error, state: client ? state() : null });
    }
  };
}
