// Starts a throw-away banter cluster (two instances, nginx, and this frontend's production
// build) from the repository's end-to-end helpers, prints its address, and stops it on Ctrl-C.
// No cargo: it runs an existing banter binary (BANTER_BIN, else target/debug or target/release).
//
//   npm run build && node scripts/cluster.mjs
import path from "node:path";
import { pickBanterBin, repoRoot } from "../e2e/helpers.mjs";

const bin = pickBanterBin();
if (!bin) {
  console.error("no banter binary: build it first (cargo build), or set BANTER_BIN");
  process.exit(1);
}
process.env.BANTER_BIN = bin;
const { startCluster } = await import(path.join(repoRoot, "tests/e2e/cluster.mjs"));
const cluster = await startCluster({ frontend: true });
const instances = cluster.instances.map((i) => `${i.name}=${i.addr}`).join(", ");
console.log(`banter is up: ${cluster.url}/  (instances ${instances}; logs in ${cluster.work})`);
const stop = async () => {
  await cluster.stop();
  process.exit(0);
};
process.on("SIGINT", stop);
process.on("SIGTERM", stop);
setInterval(() => {}, 1 << 30);
