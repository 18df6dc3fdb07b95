// Starts a throw-away banter cluster (two instances, nginx, and this frontend's production
// build) from the repository's end-to-end helpers, prints its address, and stops it on Ctrl-C.
// No cargo: it runs an existing banter binary (BANTER_BIN, else target/debug or target/release).
//
//   npm run build && node scripts/cluster.mjs
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, "../..");

export function pickBanterBin() {
  if (process.env.BANTER_BIN) return process.env.BANTER_BIN;
  const candidates = ["target/debug/banter", "target/release/banter"].map((p) => path.join(root, p));
  const found = candidates.filter((p) => fs.existsSync(p)).sort((a, b) => fs.statSync(b).mtimeMs - fs.statSync(a).mtimeMs);
  return found[0];
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const bin = pickBanterBin();
  if (!bin) {
    console.error("no banter binary: build it first (cargo build), or set BANTER_BIN");
    process.exit(1);
  }
  process.env.BANTER_BIN = bin;
  const { startCluster } = await import(path.join(root, "tests/e2e/cluster.mjs"));
  const cluster = await startCluster({ frontend: true });
  console.log(`banter is up: ${cluster.url}/  (instances ${cluster.instances.map((i) => `${i.name}=${i.addr}`).join(", ")}; logs in ${cluster.work})`);
  const stop = async () => {
    await cluster.stop();
    process.exit(0);
  };
  process.on("SIGINT", stop);
  process.on("SIGTERM", stop);
  setInterval(() => {}, 1 << 30);
}
