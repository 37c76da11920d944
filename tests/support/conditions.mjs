// Emulated devices and networks, applied through the browser's own DevTools protocol. Shared by
// the benchmark (scripts/bench.mjs) and the browser tests. Figures and sources:
// - Networks: Chrome DevTools' presets as front_end/core/sdk/NetworkManager.ts defines them (bytes
//   per second, latency per request in ms; "Slow 4G" was called "Fast 3G" and "3G" was called
//   "Slow 3G" until May 2024, crbug.com/342406608), and Lighthouse's desktop "broadband" figures
//   (core/config/constants.js: 40 ms RTT, 10 * 1024 kbit/s), which DevTools has no preset for.
//   DevTools' latency is added to every request; its presets already multiply the target RTT
//   (3.75x, 2.75x, 5x) to stand for a cold page load's handshakes, so for one request on a warm
//   connection they are pessimistic. The broadband profile takes Lighthouse's RTT as it is.
// - Devices: `Emulation.setCPUThrottlingRate` on the page's main thread: 1x (this desktop), 4x
//   (Lighthouse's mobile preset, cpuSlowdownMultiplier 4, a mid-range phone) and 6x (DevTools' "6x
//   slowdown", a low-end phone). Chromium does not throttle Web Workers (measured: a busy loop took
//   885 ms on the throttled page and 208 ms in its worker at 4x), so what must feel the device runs
//   on the main thread.

/** Network profiles for `Network.emulateNetworkConditions`; `null` is no emulation (loopback). */
export const NETWORKS = {
  loopback: null,
  broadband: { offline: false, latency: 40, downloadThroughput: (10 * 1024 * 1024) / 8, uploadThroughput: (10 * 1024 * 1024) / 8 },
  "4g": { offline: false, latency: 60 * 2.75, downloadThroughput: ((9 * 1000 * 1000) / 8) * 0.9, uploadThroughput: ((1.5 * 1000 * 1000) / 8) * 0.9 },
  "slow-4g": { offline: false, latency: 150 * 3.75, downloadThroughput: ((1.6 * 1000 * 1000) / 8) * 0.9, uploadThroughput: ((750 * 1000) / 8) * 0.9 },
  "3g": { offline: false, latency: 400 * 5, downloadThroughput: ((500 * 1000) / 8) * 0.8, uploadThroughput: ((500 * 1000) / 8) * 0.8 },
};

/** What each network profile is, for tables. */
export const NETWORK_NAMES = {
  loopback: "loopback (no emulation)",
  broadband: "broadband (Lighthouse desktop: 40 ms, 10 Mbit/s)",
  "4g": "4G (DevTools Fast 4G: 165 ms, 8.1 / 1.35 Mbit/s)",
  "slow-4g": "slow 4G (DevTools Slow 4G, once Fast 3G: 562.5 ms, 1.44 / 0.675 Mbit/s)",
  "3g": "3G (DevTools 3G, once Slow 3G: 2,000 ms, 0.4 / 0.4 Mbit/s)",
};

/** Device classes by CPU throttling rate. */
export const DEVICES = { 1: "desktop (1x)", 4: "mid-range phone (4x)", 6: "low-end phone (6x)" };

/** Applies `network` (a key of NETWORKS) to a page's CDP session. */
export async function emulateNetwork(cdp, network) {
  if (!(network in NETWORKS)) throw new Error(`unknown network ${network}: use ${Object.keys(NETWORKS).join(", ")}`);
  await cdp.send("Network.enable");
  await cdp.send("Network.emulateNetworkConditions", NETWORKS[network] ?? { offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: -1 });
}

/** Applies a CPU throttling `rate` (1 = none) to a page's CDP session. */
export async function emulateDevice(cdp, rate) {
  if (!(rate >= 1)) throw new Error(`CPU throttling rate must be >= 1, not ${rate}`);
  await cdp.send("Emulation.setCPUThrottlingRate", { rate });
}
