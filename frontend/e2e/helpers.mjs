// Shared by the browser end-to-end suite and the screenshot script: Debian's Chromium through
// playwright-core, sign-up through the real UI, and a few direct clients of the public API
// (REST and Socket.IO, with a user's cookie) to seed data quickly.

import { execFileSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import zlib from "node:zlib";
import { chromium } from "playwright-core";
import { io } from "socket.io-client";

export const frontendDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
export const repoRoot = path.resolve(frontendDir, "..");
export const artifacts = path.join(repoRoot, "test-artifacts");

export const DESKTOP = { width: 1280, height: 800 };
export const PHONE = { width: 390, height: 844 };

/** The newest banter binary already built (no cargo here), unless BANTER_BIN names one. */
export function pickBanterBin() {
  if (process.env.BANTER_BIN) return process.env.BANTER_BIN;
  const found = ["target/debug/banter", "target/release/banter"]
    .map((p) => path.join(repoRoot, p))
    .filter((p) => fs.existsSync(p))
    .sort((a, b) => fs.statSync(b).mtimeMs - fs.statSync(a).mtimeMs);
  return found[0];
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * A throw-away cluster from tests/e2e/cluster.mjs with the web app: two banter instances (the
 * binary pickBanterBin finds) behind nginx, and the built frontend (built first when it is not).
 * `env` is added to the instances' environment (ADMIN_USERS, DRAIN_GRACE_SECS, ...).
 */
export async function startAppCluster({ env = {} } = {}) {
  if (!fs.existsSync(path.join(frontendDir, ".next", "BUILD_ID"))) {
    execFileSync("npm", ["run", "build"], { cwd: frontendDir, stdio: "inherit", timeout: 600_000 });
  }
  const bin = pickBanterBin();
  if (!bin) throw new Error("no banter binary in target/: build banter first, or set BANTER_BIN or BANTER_URL");
  process.env.BANTER_BIN = bin;
  const { startCluster } = await import(path.join(repoRoot, "tests/e2e/cluster.mjs"));
  return startCluster({ frontend: true, env });
}

export function launch() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM_PATH ?? "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"],
    timeout: 30_000,
  });
}

/** A fresh browser profile (its own cookies) with one page on the app. */
export async function openApp(browser, baseUrl, { viewport = DESKTOP, phone = false } = {}) {
  const context = await browser.newContext({
    viewport,
    baseURL: baseUrl,
    ...(phone ? { isMobile: true, hasTouch: true, deviceScaleFactor: 2 } : { deviceScaleFactor: 1 }),
  });
  context.setDefaultTimeout(15_000);
  context.setDefaultNavigationTimeout(30_000);
  const page = await context.newPage();
  await page.goto("/");
  return { context, page };
}

/**
 * The Chromium of one test file and the app windows it opened: `app(baseUrl, options)` opens one
 * (see openApp), `close()` closes them all and the browser.
 */
export function windows() {
  let browser = null;
  const opened = [];
  return {
    async start() {
      browser = await launch();
    },
    async app(baseUrl, options) {
      const session = await openApp(browser, baseUrl, options);
      opened.push(session.context);
      return session;
    },
    async close() {
      for (const c of opened) await c.close().catch(() => {});
      await browser?.close();
    },
  };
}

export async function screenshot(page, name) {
  fs.mkdirSync(artifacts, { recursive: true });
  await page.screenshot({ path: path.join(artifacts, `${name}.png`) });
}

/** Creates an account through the sign-up form and waits for the chat. */
export async function registerThroughUi(page, username, password = "correct-horse-1") {
  await page.getByRole("tab", { name: "Create account" }).click();
  await page.getByLabel("Username").fill(username);
  await page.getByLabel("Email").fill(`${username}@example.com`);
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Create account", exact: true }).click();
  await page.getByRole("button", { name: "Send" }).waitFor();
  await page.getByRole("status", { name: "Connection: Connected" }).waitFor();
}

/** The `token` cookie of a browser context, as a Cookie header. */
export async function cookieHeader(context) {
  const cookies = await context.cookies();
  const token = cookies.find((c) => c.name === "token");
  if (!token) throw new Error("no session cookie in this browser context");
  return `token=${token.value}`;
}

/** A guest session made directly through the API; returns its Cookie header. */
export async function guestCookie(baseUrl, username) {
  const res = await fetch(`${baseUrl}/api/auth/guest`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(username ? { username } : {}),
    signal: AbortSignal.timeout(10_000),
  });
  if (res.status !== 201) throw new Error(`guest sign-in answered ${res.status}: ${await res.text()}`);
  const setCookie = res.headers.get("set-cookie") ?? "";
  const token = /token=([^;]+)/.exec(setCookie)?.[1];
  if (!token) throw new Error("guest sign-in set no cookie");
  return `token=${token}`;
}

/**
 * A Socket.IO client of the public contract, signed in with `cookie`, from `localAddress` when
 * given (nginx places clients by address). With `reconnect` it comes back by itself after the
 * server closes its connection (as a browser's does), within about a second.
 */
export async function socketFor(baseUrl, cookie, { localAddress, reconnect = false } = {}) {
  const socket = io(baseUrl, {
    path: "/socket.io",
    transports: ["websocket"],
    extraHeaders: { cookie },
    reconnection: reconnect,
    ...(reconnect ? { reconnectionDelay: 200, reconnectionDelayMax: 1000 } : {}),
    forceNew: true,
    ...(localAddress ? { localAddress } : {}),
  });
  await new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error("socket did not connect within 10 s")), 10_000);
    socket.once("connect", () => {
      clearTimeout(t);
      resolve();
    });
    socket.once("connect_error", (e) => {
      clearTimeout(t);
      reject(e);
    });
  });
  return socket;
}

export function emitAck(socket, event, payload, ms = 10_000) {
  return socket.timeout(ms).emitWithAck(event, payload);
}

/** Joins `channel` and sends `texts` one after the other; throws on any refusal. */
export async function sendAll(socket, channel, texts) {
  const joined = await emitAck(socket, "channel.join", { channel });
  if (!joined.ok) throw new Error(`join ${channel}: ${JSON.stringify(joined)}`);
  for (const text of texts) {
    const ack = await emitAck(socket, "message.send", { channel, text, client_message_id: crypto.randomUUID() });
    if (!ack.ok) throw new Error(`send: ${JSON.stringify(ack)}`);
  }
}

/**
 * Seeds `count` numbered messages ("<prefix> 1" …) into a channel, 20 per guest user so that
 * the default rate limit (20 per 10 s per user) is never reached.
 */
export async function seedMessages(baseUrl, channel, count, prefix) {
  for (let start = 1; start <= count; start += 20) {
    const socket = await socketFor(baseUrl, await guestCookie(baseUrl));
    try {
      const texts = [];
      for (let i = start; i < Math.min(start + 20, count + 1); i++) texts.push(`${prefix} ${i}`);
      await sendAll(socket, channel, texts);
    } finally {
      socket.disconnect();
    }
  }
}

/** Polls `check` until it returns a truthy value, or throws after `ms`. */
export async function eventually(check, ms = 15_000, what = "condition") {
  const deadline = Date.now() + ms;
  let last;
  for (;;) {
    try {
      const value = await check();
      if (value) return value;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last ? `: ${last.message}` : ""}`);
    await sleep(150);
  }
}

const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});

function crc32(bytes) {
  let c = 0xffffffff;
  for (const b of bytes) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function pngChunk(type, data) {
  const head = Buffer.alloc(8);
  head.writeUInt32BE(data.length, 0);
  head.write(type, 4, "ascii");
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(Buffer.concat([head.subarray(4), data])), 0);
  return Buffer.concat([head, data, crc]);
}

/** A valid RGB PNG of `width` × `height`: a colour gradient, so that every pixel differs a little. */
export function pngBytes(width, height) {
  const header = Buffer.alloc(13);
  header.writeUInt32BE(width, 0);
  header.writeUInt32BE(height, 4);
  header[8] = 8; // bit depth
  header[9] = 2; // colour type: RGB
  const rows = Buffer.alloc((width * 3 + 1) * height);
  for (let y = 0; y < height; y++) {
    const row = y * (width * 3 + 1);
    rows[row] = 0; // filter: none
    for (let x = 0; x < width; x++) {
      rows[row + 1 + x * 3] = Math.round((255 * x) / Math.max(1, width - 1));
      rows[row + 2 + x * 3] = Math.round((255 * y) / Math.max(1, height - 1));
      rows[row + 3 + x * 3] = 160;
    }
  }
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    pngChunk("IHDR", header),
    pngChunk("IDAT", zlib.deflateSync(rows)),
    pngChunk("IEND", Buffer.alloc(0)),
  ]);
}
