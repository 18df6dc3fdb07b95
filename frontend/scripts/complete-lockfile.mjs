// Completes package-lock.json with the platform-specific optional packages (native builds of
// Next's SWC, Tailwind's oxide and the ESLint resolver for other systems) that a registry
// mirror without them leaves out. Without those entries `npm ci` refuses the lockfile
// ("Missing: … from lock file"). Each entry carries its os/cpu/libc, so npm skips it on other
// platforms without fetching it.
//
//   node scripts/complete-lockfile.mjs      (after any `npm install` on such a mirror)
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const file = path.join(path.dirname(fileURLToPath(import.meta.url)), "..", "package-lock.json");
const lock = JSON.parse(fs.readFileSync(file, "utf8"));
const OS = ["darwin", "win32", "linux", "android", "freebsd", "openharmony"];
const CPU = ["arm64", "x64", "ia32", "arm", "loong64", "ppc64", "riscv64", "s390x"];

/** os, cpu and libc read from a platform package's name, e.g. `…-linux-arm-musleabihf`. */
function platformOf(name) {
  const parts = name.split("/").pop().split("-");
  if (parts.includes("wasm32")) return { cpu: ["wasm32"] };
  const os = parts.find((p) => OS.includes(p));
  const cpu = parts.find((p) => CPU.includes(p));
  if (!os || !cpu) return null;
  const abi = parts[parts.indexOf(cpu) + 1] ?? "";
  const libc = os === "linux" ? (abi.startsWith("musl") ? ["musl"] : abi.startsWith("gnu") ? ["glibc"] : undefined) : undefined;
  return { os: [os], cpu: [cpu], ...(libc ? { libc } : {}) };
}

let added = 0;
for (const [where, pkg] of Object.entries(lock.packages)) {
  for (const [name, version] of Object.entries(pkg.optionalDependencies ?? {})) {
    if (lock.packages[`node_modules/${name}`] || lock.packages[`${where}/node_modules/${name}`]) continue;
    const platform = platformOf(name);
    if (!platform || !/^\d+\.\d+\.\d+/.test(version)) continue;
    lock.packages[`node_modules/${name}`] = {
      version,
      ...platform,
      ...(pkg.dev ? { dev: true } : {}),
      optional: true,
    };
    added++;
  }
}
lock.packages = Object.fromEntries(
  Object.entries(lock.packages).sort(([a], [b]) => (a === "" ? -1 : b === "" ? 1 : a.localeCompare(b))),
);
fs.writeFileSync(file, `${JSON.stringify(lock, null, 2)}\n`);
console.log(`package-lock.json: ${added} platform entries added`);
