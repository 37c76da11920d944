// The one check every script makes before it reads, copies or uploads a file a model set names:
// the same rule as core's manifest checks (relative, no `..`, no backslash), plus what only the file
// system can tell: no symbolic link anywhere between the set's directory and the file, and the file
// a regular file inside that directory. A manifest naming `../../../root/.wrangler/...` is refused.
import { lstatSync, readdirSync, realpathSync } from "node:fs";
import { join, relative, sep } from "node:path";

/**
 * The path of `file` (as a manifest gives it, relative to `setDir`), or throws naming `field`.
 * @param {string} setDir the model set's directory
 * @param {unknown} file the manifest's value
 * @param {string} field where the manifest gives it, for the error (`models.tiny.file`)
 * @returns {string}
 */
export function setFilePath(setDir, file, field) {
  const bad = (why) => new Error(`${setDir}: manifest field \`${field}\` ${why}`);
  if (typeof file !== "string" || file === "") throw bad("must be a non-empty relative path");
  if (file.startsWith("/") || /^[A-Za-z]:/.test(file)) throw bad(`is an absolute path (\`${file}\`)`);
  if (file.includes("\\") || file.includes("\0")) throw bad(`has a backslash or NUL (\`${JSON.stringify(file)}\`)`);
  const parts = file.split("/").filter((p) => p !== "" && p !== ".");
  if (parts.includes("..")) throw bad(`leaves the set's directory (\`${file}\`)`);
  if (parts.length === 0) throw bad("names no file");
  let at = setDir;
  for (const part of [...parts]) {
    at = join(at, part);
    let stat;
    try {
      stat = lstatSync(at);
    } catch {
      throw bad(`names \`${file}\`, which does not exist`);
    }
    if (stat.isSymbolicLink()) throw bad(`names \`${file}\`, which is or goes through a symbolic link`);
  }
  if (!lstatSync(at).isFile()) throw bad(`names \`${file}\`, which is not a regular file`);
  const inside = relative(realpathSync(setDir), realpathSync(at));
  if (inside.startsWith("..") || inside.startsWith(sep)) throw bad(`names \`${file}\`, outside the set's directory`);
  return at;
}

/**
 * Throws when the set's directory holds a symbolic link at any depth (the Worker's assets are
 * uploaded whole: a link would publish whatever it points at).
 * @param {string} setDir
 */
export function refuseLinks(setDir) {
  for (const entry of readdirSync(setDir, { withFileTypes: true })) {
    const path = join(setDir, entry.name);
    if (entry.isSymbolicLink()) throw new Error(`${path} is a symbolic link: model sets hold regular files only`);
    if (entry.isDirectory()) refuseLinks(path);
  }
}
