// The cluster page of administrators, in Chromium, on a two-instance cluster of its own: its
// figures are exact only when nothing else uses the cluster, and a drain disturbs everyone on
// the drained instance. The page shows the sockets, users and channels the test opened, a drain
// from the page moves an instance's sockets to the other one while the page follows live, and
// people who are not administrators are neither offered the page nor given its figures.
//
//   npm run test:e2e      (with the browser suite; BANTER_URL skips these tests)

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import {
  PHONE,
  cookieHeader,
  emitAck,
  eventually,
  guestCookie,
  registerThroughUi,
  screenshot,
  sleep,
  socketFor,
  startAppCluster,
  windows,
} from "./helpers.mjs";

const TEST_TIMEOUT = 180_000;
const skip = process.env.BANTER_URL ? "needs a cluster of its own (BANTER_URL is set)" : false;
const tag = Math.random().toString(36).slice(2, 7);
const ADMIN = `chief_${tag}`;

let cluster = null;
let baseUrl;
const chromium = windows();
const sockets = [];

before(async () => {
  if (skip) return;
  // Sockets move as soon as a drain starts (no grace), so that the page's figures change fast.
  cluster = await startAppCluster({ env: { ADMIN_USERS: ADMIN, DRAIN_GRACE_SECS: "0" } });
  baseUrl = cluster.url;
  await chromium.start();
}, { timeout: 240_000 });

after(async () => {
  for (const s of sockets) s.disconnect();
  await chromium.close();
  await cluster?.stop();
}, { timeout: 60_000 });

const app = (options) => chromium.app(baseUrl, options);

const connection = (page) => page.getByRole("status", { name: /^Connection:/ });
const clusterEntry = (page) => page.getByRole("navigation", { name: "Administration" }).getByRole("button", { name: "Cluster" });

/** What a page's `fetch` of `path` answers: status and error code. */
function fetchFrom(page, path, method = "GET") {
  return page.evaluate(
    async ({ path, method }) => {
      const res = await fetch(path, { method, credentials: "include" });
      const body = await res.json().catch(() => ({}));
      return { status: res.status, code: body.code ?? body.error?.code ?? null };
    },
    { path, method },
  );
}

/** The rows of the table captioned `caption`, each as {column heading: the cell's text}. */
function tableRows(page, caption) {
  return page.evaluate((caption) => {
    const table = [...document.querySelectorAll("table")].find((t) => t.caption?.textContent.trim() === caption);
    if (!table) return null;
    const headings = [...table.tHead.rows[0].cells].map((c) => c.textContent.trim());
    return [...table.tBodies[0].rows].map((row) =>
      Object.fromEntries([...row.cells].map((cell, i) => [headings[i] || `column ${i}`, cell.innerText.trim()])),
    );
  }, caption);
}

/** The cluster's totals at the top of the page: {label: value}. */
function totals(page) {
  return page.evaluate(() =>
    Object.fromEntries([...document.querySelectorAll("main dl dt")].map((dt) => [dt.textContent.trim(), dt.nextElementSibling?.textContent.trim()])),
  );
}

/** The instances table as {id: row}. */
async function instanceRows(page) {
  const rows = (await tableRows(page, "Instances")) ?? [];
  return Object.fromEntries(rows.map((r) => [r.Instance, r]));
}

/**
 * Waits until the page shows what `expect` asserts of its figures (they arrive every 2 s);
 * the last failed assertion says what differed.
 */
async function pageShows(page, what, expect, ms = 20_000) {
  await eventually(
    async () => {
      expect({ instances: await instanceRows(page), totals: await totals(page), channels: (await tableRows(page, "Busiest channels")) ?? [] });
      return true;
    },
    ms,
    what,
  );
}

test("someone who is not an administrator is not offered the cluster page, and the server refuses them its figures", { timeout: TEST_TIMEOUT, skip }, async () => {
  const nia = await app();
  await registerThroughUi(nia.page, `nia-${tag}`);
  // Whether she is an administrator was asked on connecting: no entry for her.
  await sleep(1500);
  assert.equal(await nia.page.getByRole("navigation", { name: "Administration" }).count(), 0);
  assert.equal(await nia.page.getByRole("button", { name: "Cluster" }).count(), 0);

  // Her own page's requests are refused: 403 forbidden, for the figures and for a drain.
  assert.deepEqual(await fetchFrom(nia.page, "/api/admin/cluster"), { status: 403, code: "forbidden" });
  const instance = cluster.instances[0];
  const drain = `/api/admin/instances/${encodeURIComponent(`${cluster.prefix}-${instance.name}`)}/drain`;
  assert.deepEqual(await fetchFrom(nia.page, drain, "POST"), { status: 403, code: "forbidden" });
  assert.deepEqual(await fetchFrom(nia.page, drain, "DELETE"), { status: 403, code: "forbidden" });
  // A guest is refused the same; without a session the answer is 401.
  const guest = await fetch(`${baseUrl}/api/admin/cluster`, { headers: { cookie: await guestCookie(baseUrl, `nib-${tag}`) }, signal: AbortSignal.timeout(10_000) });
  assert.equal(guest.status, 403);
  const anonymous = await fetch(`${baseUrl}/api/admin/cluster`, { signal: AbortSignal.timeout(10_000) });
  assert.equal(anonymous.status, 401);
  // Her tab goes away, so that the next test counts only its own sockets.
  await nia.context.close();
});

test("an administrator sees the cluster live, and a drain from the page moves an instance's sockets to the other", { timeout: TEST_TIMEOUT, skip }, async () => {
  // Browsers reach nginx from 127.0.0.1: their instance ("home") is the one drained. Test
  // clients are placed on either instance by their source address.
  const home = await cluster.upstreamOf("127.0.0.1");
  const away = cluster.instances.find((i) => i !== home);
  const homeId = `${cluster.prefix}-${home.name}`;
  const awayId = `${cluster.prefix}-${away.name}`;
  const [h1, h2] = await cluster.addressesFor(home, 2);
  const [a1, a2, a3] = await cluster.addressesFor(away, 3);

  const boss = await app();
  await registerThroughUi(boss.page, ADMIN);
  const bossCookie = await cookieHeader(boss.context);
  const mia = await app();
  await registerThroughUi(mia.page, `mia-${tag}`);

  // A channel with four guests in it over five sockets: g1 on both instances, g2 at home, g3
  // and g4 away. The administrator and Mia stay in general.
  const deck = `deck-${tag}`;
  const created = await fetch(`${baseUrl}/api/channels`, {
    method: "POST",
    headers: { "Content-Type": "application/json", cookie: bossCookie },
    body: JSON.stringify({ name: deck }),
    signal: AbortSignal.timeout(10_000),
  });
  assert.equal(created.status, 201);
  const placements = [
    [`g1-${tag}`, [h1, a1]],
    [`g2-${tag}`, [h2]],
    [`g3-${tag}`, [a2]],
    [`g4-${tag}`, [a3]],
  ];
  for (const [name, addresses] of placements) {
    const cookie = await guestCookie(baseUrl, name);
    for (const localAddress of addresses) {
      const socket = await socketFor(baseUrl, cookie, { localAddress, reconnect: true });
      sockets.push(socket);
      const joined = await emitAck(socket, "channel.join", { channel: deck });
      assert.equal(joined.ok, true, JSON.stringify(joined));
    }
  }

  // Something in the moderation log: the administrator bans a spammer.
  const spammer = `spam-${tag}`;
  await guestCookie(baseUrl, spammer);
  const banned = await fetch(`${baseUrl}/api/admin/users/${spammer}/ban`, { method: "POST", headers: { cookie: bossCookie }, signal: AbortSignal.timeout(10_000) });
  assert.equal(banned.status, 200, await banned.text());

  // The administrator opens the page from the sidebar.
  await clusterEntry(boss.page).click();
  await boss.page.getByRole("heading", { level: 1, name: "Cluster" }).waitFor();
  await boss.page.getByText(/^Updated /).waitFor();

  // Home: the administrator, Mia, g1 and g2; away: g1, g3 and g4. Seven sockets, six people.
  await pageShows(boss.page, "the sockets the test opened", ({ instances, totals, channels }) => {
    assert.deepEqual(Object.keys(instances).sort(), [homeId, awayId].sort());
    assert.equal(instances[homeId]["Sockets / capacity"], "4 / 10,000");
    assert.equal(instances[awayId]["Sockets / capacity"], "3 / 10,000");
    assert.equal(instances[homeId].Users, "4");
    assert.equal(instances[awayId].Users, "3");
    for (const id of [homeId, awayId]) {
      assert.equal(instances[id].Status, "Serving");
      assert.equal(instances[id].Moved, "0");
      assert.match(instances[id].CPU, /^(<1|\d+)%$/);
      assert.match(instances[id].RSS, /^[\d,.]+ MiB$/);
      assert.match(instances[id]["Last report"], /^(just now|\d s ago)$/);
    }
    assert.equal(totals.Sockets, "7");
    assert.equal(totals["Users online"], "6");
    assert.equal(totals.Instances, "2");
    const channel = channels.find((c) => c.Channel === deck);
    assert.ok(channel, `${deck} among the busiest channels: ${JSON.stringify(channels)}`);
    assert.equal(channel.Online, "4");
    assert.equal(channel.Sockets, "5");
  });
  const health = boss.page.getByRole("region", { name: "Dependencies" });
  for (const name of ["PostgreSQL", "Redis"]) {
    assert.match(await health.getByRole("listitem").filter({ hasText: name }).first().innerText(), /OK/);
  }
  await boss.page.getByText("Every registered instance is reporting.").waitFor();
  const log = await tableRows(boss.page, "Moderation log");
  assert.ok(
    log?.some((r) => r.By === ADMIN && r.Action === "Banned" && r.Target === spammer),
    `the ban in the moderation log: ${JSON.stringify(log)}`,
  );
  // An instance that is not registered cannot be drained.
  assert.deepEqual(await fetchFrom(boss.page, `/api/admin/instances/nowhere-${tag}/drain`, "POST"), { status: 404, code: "not_found" });
  await screenshot(boss.page, "e2e-cluster");

  // Mia's tab is told it is moving; it notes what it said meanwhile.
  await mia.page.evaluate(() => {
    window.sawMoving = false;
    window.sawLost = false;
    const look = () => {
      const text = document.body.textContent;
      if (text.includes("Moving you to another server")) window.sawMoving = true;
      if (text.includes("Connection lost.")) window.sawLost = true;
    };
    new MutationObserver(look).observe(document.body, { subtree: true, childList: true, characterData: true });
  });

  // Drain home from the page, after confirming.
  await boss.page.getByRole("button", { name: `Drain ${homeId}` }).click();
  const confirm = boss.page.getByRole("dialog", { name: `Drain ${homeId}?` });
  await confirm.getByText(/moves its 4 sockets to the other instances/).waitFor();
  await confirm.getByRole("button", { name: "Drain", exact: true }).click();
  await confirm.waitFor({ state: "hidden" });

  // Its row says so, and its sockets end up on the other instance, counted live. Each client
  // reconnected by itself and its session was recovered: the guests are still in the channel.
  await pageShows(boss.page, "the drained instance's sockets on the other", ({ instances, totals, channels }) => {
    assert.equal(instances[homeId].Status, "Draining");
    assert.equal(instances[homeId]["Sockets / capacity"], "0 / 10,000");
    assert.equal(instances[homeId].Moved, "4");
    assert.equal(instances[awayId]["Sockets / capacity"], "7 / 10,000");
    assert.equal(instances[awayId].Users, "6");
    assert.equal(instances[awayId].Status, "Serving");
    assert.equal(totals.Sockets, "7");
    assert.equal(totals["Users online"], "6");
    assert.equal(channels.find((c) => c.Channel === deck)?.Sockets, "5");
  }, 30_000);
  await boss.page.getByRole("button", { name: `Undrain ${homeId}` }).waitFor();
  await screenshot(boss.page, "e2e-cluster-drained");
  assert.ok(sockets.every((s) => s.connected), "every test client reconnected");
  // Mia was told she was moving (not that her connection was lost), and is connected again;
  // so is the administrator.
  await eventually(() => mia.page.evaluate(() => window.sawMoving), 10_000, "Mia's tab to say it is moving");
  await connection(mia.page).filter({ hasText: "Connected" }).waitFor({ timeout: 20_000 });
  await connection(boss.page).filter({ hasText: "Connected" }).waitFor({ timeout: 20_000 });
  assert.equal(await mia.page.evaluate(() => window.sawLost), false, "no “Connection lost” while moving");

  // Undrain: the row says it serves again, and a new client from a home address lands there.
  await boss.page.getByRole("button", { name: `Undrain ${homeId}` }).click();
  await boss.page.getByRole("dialog", { name: `Undrain ${homeId}?` }).getByRole("button", { name: "Undrain", exact: true }).click();
  await pageShows(boss.page, "the instance serving again", ({ instances }) => {
    assert.equal(instances[homeId].Status, "Serving");
  });
  await boss.page.getByRole("button", { name: `Drain ${homeId}` }).waitFor();
  // Each nginx worker keeps an instance that answered a handshake 503 out for its fail_timeout
  // (5 s), each on its own: one probe that reaches home proves nothing of the other worker.
  await sleep(5500);
  await eventually(async () => (await cluster.upstreamOf(h1)) === home, 30_000, "the balancer to send clients home again");
  sockets.push(await socketFor(baseUrl, await guestCookie(baseUrl, `g5-${tag}`), { localAddress: h1 }));
  // (A browser tab may come back home too: nginx hashes its later polling requests there.)
  await pageShows(boss.page, "a new socket on the undrained instance", ({ instances, totals }) => {
    assert.notEqual(instances[homeId]["Sockets / capacity"], "0 / 10,000");
    assert.equal(totals.Sockets, "8");
  });

  // On a phone: the entry is in the channels drawer, and the tables scroll sideways.
  await boss.page.setViewportSize(PHONE);
  await boss.page.getByRole("button", { name: "Open channels" }).click();
  const drawer = boss.page.getByRole("dialog", { name: "Channels" });
  await drawer.getByRole("button", { name: "Cluster" }).click();
  await drawer.waitFor({ state: "hidden" });
  await boss.page.getByRole("heading", { level: 1, name: "Cluster" }).waitFor();
  const table = boss.page.getByRole("region", { name: "Instances table" });
  assert.ok(await table.evaluate((el) => el.scrollWidth > el.clientWidth), "the instances table scrolls inside its region");
  assert.ok(await boss.page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth), "the page itself does not scroll sideways");
  await screenshot(boss.page, "e2e-cluster-phone");
});
