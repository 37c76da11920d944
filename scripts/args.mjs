// Every Node script's command line, read one way: node:util's parseArgs in strict mode, so an
// unknown flag, a flag without its value or a stray argument stops the script with its usage
// (exit status 2) instead of being ignored.
import { parseArgs } from "node:util";

/**
 * Parses `argv` (default: this process's arguments).
 * @param {object} spec
 * @param {string} spec.usage the usage line printed with an error
 * @param {Record<string, string | boolean | string[] | null>} [spec.flags] each `--flag` and its
 *   default: a string (or null for none) for a flag with a value, a boolean for a switch, an array
 *   for a flag that may be given several times
 * @param {[number, number]} [spec.positionals] how many plain arguments are allowed, [min, max]
 * @param {string[]} [argv]
 * @returns {{ values: Record<string, string | boolean | string[] | undefined>, positionals: string[] }}
 */
export function readArgs({ usage, flags = {}, positionals = [0, 0] }, argv = process.argv.slice(2)) {
  /** @type {import("node:util").ParseArgsConfig["options"]} */
  const options = { help: { type: "boolean", short: "h" } };
  for (const [name, value] of Object.entries(flags)) {
    if (typeof value === "boolean") options[name] = { type: "boolean", default: value };
    else if (Array.isArray(value)) options[name] = { type: "string", multiple: true, default: value };
    else options[name] = value === null ? { type: "string" } : { type: "string", default: value };
  }
  let parsed;
  try {
    parsed = parseArgs({ args: argv, options, allowPositionals: positionals[1] > 0, strict: true });
    const n = parsed.positionals.length;
    if (n < positionals[0] || n > positionals[1]) {
      throw new Error(`expected ${positionals[0] === positionals[1] ? positionals[0] : `${positionals[0]} to ${positionals[1]}`} argument(s), got ${n}`);
    }
  } catch (e) {
    console.error(`${e instanceof Error ? e.message : e}\nusage: ${usage}`);
    process.exit(2);
  }
  if (parsed.values.help) {
    console.log(`usage: ${usage}`);
    process.exit(0);
  }
  const values = /** @type {Record<string, string | boolean | string[] | undefined>} */ (parsed.values);
  return { values, positionals: parsed.positionals };
}
