// Named test cases for the Node-driven suites (tests/hostile/): each case runs in order, a failure
// is printed with its stack and does not stop the others, and `finish` prints the closing line CI
// reads ("<label>: N passed, M failed") and exits non-zero on any failure.

const results = [];

/**
 * Runs one named case.
 * @param {string} name
 * @param {() => unknown} body
 */
export async function check(name, body) {
  try {
    await body();
    results.push({ name, ok: true });
    console.log(`ok   ${name}`);
  } catch (e) {
    results.push({ name, ok: false });
    console.log(`FAIL ${name}\n     ${String(e?.stack ?? e).split("\n").slice(0, 8).join("\n     ")}`);
  }
}

/**
 * Prints the summary line and exits: 0 when every case passed.
 * @param {string} label
 */
export function finish(label) {
  const failed = results.filter((r) => !r.ok).length;
  console.log(`${label}: ${results.length - failed} passed, ${failed} failed`);
  process.exit(failed ? 1 : 0);
}
