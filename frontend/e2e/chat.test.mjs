// The browser end-to-end suite: real Chromium (Debian's, through playwright-core) on the app
// behind nginx, in front of a two-instance banter cluster. Everything is checked as a person
// would: by role, label and visible text.
//
//   npm run test:e2e                                  a throw-away cluster from tests/e2e/cluster.mjs
//                                                     (built frontend and an existing banter binary)
//   BANTER_URL=http://127.0.0.1:8080 npm run test:e2e against a running cluster; the scenario
//                                                     that kills an instance is skipped there
//
// Screenshots of the main screens go to ../test-artifacts/.

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import {
  PHONE,
  cookieHeader,
  emitAck,
  eventually,
  guestCookie,
  pngBytes,
  registerThroughUi,
  screenshot,
  seedMessages,
  sleep,
  socketFor,
  startAppCluster,
  windows,
} from "./helpers.mjs";

const TEST_TIMEOUT = 150_000;
const tag = Math.random().toString(36).slice(2, 7);

let baseUrl;
let cluster = null;
const chromium = windows();

before(async () => {
  if (process.env.BANTER_URL) {
    baseUrl = process.env.BANTER_URL.replace(/\/$/, "");
  } else {
    // One administrator, for the moderation scenario.
    cluster = await startAppCluster({ env: { ADMIN_USERS: `boss_${tag}` } });
    baseUrl = cluster.url;
  }
  await chromium.start();
}, { timeout: 180_000 });

after(async () => {
  await chromium.close();
  await cluster?.stop();
}, { timeout: 60_000 });

const app = (options) => chromium.app(baseUrl, options);

const composer = (page) => page.getByRole("textbox", { name: /^Message / });
const messages = (page) => page.getByRole("log");
const connection = (page) => page.getByRole("status", { name: /^Connection:/ });

/** A channel's entry in the sidebar; its name is followed by its unread counts, if any. */
const channelEntry = (page, name) =>
  page.getByRole("navigation", { name: "Channels" }).getByRole("button", { name: new RegExp(`^${name}(,| \\(|$)`) });

async function openChannel(page, name) {
  await channelEntry(page, name).click();
  await page.getByRole("heading", { level: 1, name }).waitFor();
}

async function createChannel(page, name, password) {
  await page.getByRole("button", { name: "Create channel" }).click();
  const dialog = page.getByRole("dialog", { name: "Create a channel" });
  await dialog.getByLabel("Channel name").fill(name);
  if (password) {
    await dialog.getByLabel("Private channel").check();
    await dialog.getByLabel("Channel password").fill(password);
  }
  await dialog.getByRole("button", { name: "Create channel" }).click();
  await page.getByRole("heading", { level: 1, name }).waitFor();
}

async function send(page, text) {
  await composer(page).fill(text);
  await composer(page).press("Enter");
}

/** How many times a message with exactly this text is shown. */
function countMessage(page, text) {
  return messages(page).getByText(text, { exact: true }).count();
}

test("two people exchange messages, see each other online and typing", { timeout: TEST_TIMEOUT }, async () => {
  const room = `room-${tag}`;
  const ann = await app();
  await registerThroughUi(ann.page, `ann-${tag}`);
  await createChannel(ann.page, room);

  const ben = await app();
  const benSockets = [];
  ben.page.on("websocket", (ws) => benSockets.push(ws.url()));
  await registerThroughUi(ben.page, `ben-${tag}`);
  await openChannel(ben.page, room);

  // Each sees the other in the channel's online list.
  await ann.page.getByRole("list", { name: "Online users" }).getByText(`ben-${tag}`).waitFor();
  await ben.page.getByRole("list", { name: "Online users" }).getByText(`ann-${tag}`).waitFor();
  await ann.page.getByRole("button", { name: "2 online in this channel" }).waitFor();
  // The pane says whom it lists: the people in this channel.
  await ann.page.getByRole("heading", { name: "In this channel — 2 online" }).waitFor();

  // Typing shows on the other side, and stops after sending.
  await composer(ann.page).pressSequentially("Hello Ben", { delay: 30 });
  await ben.page.getByText(`ann-${tag} is typing…`).waitFor();
  await composer(ann.page).press("Enter");
  await messages(ben.page).getByText("Hello Ben", { exact: true }).waitFor();
  await ben.page.getByText(`ann-${tag} is typing…`).waitFor({ state: "hidden" });

  // The other direction, with the Send button and a line break (Shift+Enter).
  await composer(ben.page).fill("Hi Ann!");
  await composer(ben.page).press("Shift+Enter");
  await composer(ben.page).pressSequentially("Second line");
  await ben.page.getByRole("button", { name: "Send" }).click();
  const multi = messages(ann.page).getByText(/Hi Ann!\s+Second line/);
  await multi.waitFor();
  assert.equal(await multi.evaluate((el) => el.innerText), "Hi Ann!\nSecond line");

  // Text is text: markup arrives as the characters that were typed.
  await send(ann.page, "<b>not bold</b> <img src=x onerror=alert(1)>");
  await messages(ben.page).getByText("<b>not bold</b> <img src=x onerror=alert(1)>", { exact: true }).waitFor();
  assert.equal(await messages(ben.page).locator("b, img").count(), 0);

  // A file link is a link when it is http(s) or a same-origin path.
  const annSocket = await socketFor(baseUrl, await cookieHeader(ann.context));
  await emitAck(annSocket, "channel.join", { channel: room });
  const file = { url: "https://example.com/spec.pdf", name: "spec.pdf", type: "application/pdf" };
  const withFile = await emitAck(annSocket, "message.send", { channel: room, text: "The spec", client_message_id: crypto.randomUUID(), file });
  assert.equal(withFile.ok, true, JSON.stringify(withFile));
  annSocket.disconnect();
  const link = messages(ben.page).getByRole("link", { name: /spec\.pdf/ });
  await link.waitFor();
  assert.equal(await link.getAttribute("href"), file.url);

  // Switching channels kept the one connection of the tab.
  await openChannel(ben.page, "general");
  await openChannel(ben.page, room);
  assert.equal(benSockets.length, 1, `websockets opened: ${benSockets.join(", ")}`);

  // Each message once on both sides, and nothing left pending.
  for (const page of [ann.page, ben.page]) {
    await eventually(async () => (await page.getByText("Sending…").count()) === 0, 10_000, "no pending messages");
    assert.equal(await countMessage(page, "Hello Ben"), 1);
  }
  await screenshot(ann.page, "e2e-two-users");
});

test("a picture attached with the paperclip shows inline for the other person; other files are downloads", { timeout: TEST_TIMEOUT }, async () => {
  const room = `files-${tag}`;
  const kim = await app();
  await registerThroughUi(kim.page, `kim-${tag}`);
  await createChannel(kim.page, room);
  const lee = await app();
  await registerThroughUi(lee.page, `lee-${tag}`);
  await openChannel(lee.page, room);

  // The paperclip opens the file picker; the upload starts at once and shows its progress.
  const png = pngBytes(64, 48);
  const chooser = kim.page.waitForEvent("filechooser");
  await kim.page.getByRole("button", { name: "Attach a file" }).click();
  await (await chooser).setFiles({ name: "gradient.png", mimeType: "image/png", buffer: png });
  const attached = kim.page.getByRole("group", { name: "Attachment: gradient.png" });
  await attached.waitFor();
  assert.match(await attached.innerText(), /gradient\.png/);
  await attached.getByText("Ready to send").waitFor();
  await composer(kim.page).fill("A gradient");
  await composer(kim.page).press("Enter");
  await attached.waitFor({ state: "hidden" });

  // The stored message carries the file, its size and a thumbnail.
  const history = await fetch(`${baseUrl}/api/channels/${room}/messages?limit=10`, {
    headers: { cookie: await cookieHeader(lee.context) },
    signal: AbortSignal.timeout(10_000),
  });
  assert.equal(history.status, 200);
  const stored = (await history.json()).find((m) => m.text === "A gradient");
  assert.ok(stored?.file, `the message has a file: ${JSON.stringify(stored)}`);
  assert.equal(stored.file.name, "gradient.png");
  assert.equal(stored.file.type, "image/png");
  assert.match(stored.file.url, /^\/uploads\//);
  assert.match(stored.file.thumbnail ?? "", /^\/uploads\//);
  assert.equal(stored.file.width, 64);
  assert.equal(stored.file.height, 48);

  // The other person sees the picture: the thumbnail, sized from the message, actually loaded,
  // and a link to the full file.
  const picture = messages(lee.page).getByRole("img", { name: "gradient.png" });
  await picture.waitFor();
  assert.equal(await picture.getAttribute("src"), stored.file.thumbnail);
  assert.equal(await picture.getAttribute("width"), "64");
  assert.equal(await picture.getAttribute("height"), "48");
  await eventually(() => picture.evaluate((img) => img.complete && img.naturalWidth > 0), 10_000, "the thumbnail to load");
  const box = await picture.boundingBox();
  assert.ok(box && Math.abs(box.width - 64) <= 1 && Math.abs(box.height - 48) <= 1, `shown at 64×48: ${JSON.stringify(box)}`);
  const full = messages(lee.page).getByRole("link", { name: "gradient.png" });
  assert.equal(await full.getAttribute("href"), stored.file.url);
  assert.equal(await full.getAttribute("target"), "_blank");
  await messages(lee.page).getByText("A gradient", { exact: true }).waitFor();

  // The file is the bytes that were sent, for a signed-in person only.
  const body = await fetch(`${baseUrl}${stored.file.url}`, { headers: { cookie: await cookieHeader(lee.context) }, signal: AbortSignal.timeout(10_000) });
  assert.equal(body.status, 200);
  assert.deepEqual(Buffer.from(await body.arrayBuffer()), png);
  const anonymous = await fetch(`${baseUrl}${stored.file.url}`, { signal: AbortSignal.timeout(10_000) });
  assert.notEqual(anonymous.status, 200, "a file is not served without a session");
  await screenshot(lee.page, "e2e-image-preview");

  // A file dropped on the chat, sent without words: a download card with its size and kind.
  await kim.page.evaluate(() => {
    const data = new DataTransfer();
    data.items.add(new File(["first line\nsecond line\n"], "notes.txt", { type: "text/plain" }));
    const target = document.querySelector("main");
    target.dispatchEvent(new DragEvent("dragenter", { dataTransfer: data, bubbles: true, cancelable: true }));
    target.dispatchEvent(new DragEvent("drop", { dataTransfer: data, bubbles: true, cancelable: true }));
  });
  const dropped = kim.page.getByRole("group", { name: "Attachment: notes.txt" });
  await dropped.getByText("Ready to send").waitFor();
  await kim.page.getByRole("button", { name: "Send" }).click();
  const card = messages(lee.page).getByRole("link", { name: /notes\.txt/ });
  await card.waitFor();
  assert.match(await card.getAttribute("href"), /^\/uploads\//);
  assert.equal(await card.getAttribute("download"), "notes.txt");
  assert.match(await card.innerText(), /23 B · Text/);
  // Its name is not repeated as the message's text.
  assert.equal(await messages(lee.page).getByText("notes.txt", { exact: true }).count(), 1);

  // Refusals say why, before any byte is sent: a type that is not allowed (pasted), a file
  // over the size limit (picked).
  await composer(kim.page).evaluate((area) => {
    const data = new DataTransfer();
    data.items.add(new File(["MZ"], "setup.exe", { type: "application/x-msdownload" }));
    area.dispatchEvent(new ClipboardEvent("paste", { clipboardData: data, bubbles: true, cancelable: true }));
  });
  await kim.page.getByRole("group", { name: "Attachment: setup.exe" }).getByRole("alert").filter({ hasText: "can’t be shared" }).waitFor();
  const huge = kim.page.waitForEvent("filechooser");
  await kim.page.getByRole("button", { name: "Attach a file" }).click();
  await (await huge).setFiles({ name: "huge.zip", mimeType: "application/zip", buffer: Buffer.alloc(10 * 1024 * 1024 + 1) });
  const refused = kim.page.getByRole("group", { name: "Attachment: huge.zip" }).getByRole("alert");
  await refused.waitFor();
  assert.match(await refused.innerText(), /too large/i);
  await screenshot(kim.page, "e2e-upload-refused");
  await kim.page.getByRole("button", { name: "Remove huge.zip" }).click();
  assert.equal(await kim.page.getByRole("group", { name: /^Attachment:/ }).count(), 0);
});

test("scrolling up loads older history without moving what is on screen", { timeout: TEST_TIMEOUT }, async () => {
  const channel = `history-${tag}`;
  const owner = await guestCookie(baseUrl);
  const created = await fetch(`${baseUrl}/api/channels`, {
    method: "POST",
    headers: { "Content-Type": "application/json", cookie: owner },
    body: JSON.stringify({ name: channel }),
    signal: AbortSignal.timeout(10_000),
  });
  assert.equal(created.status, 201);
  await seedMessages(baseUrl, channel, 120, "Note");

  const reader = await app();
  await reader.page.getByRole("button", { name: "Continue as guest" }).click();
  await connection(reader.page).filter({ hasText: "Connected" }).waitFor();
  await openChannel(reader.page, channel);
  const log = messages(reader.page);
  await log.getByText("Note 120", { exact: true }).waitFor();
  assert.equal(await log.getByText("Note 1", { exact: true }).count(), 0, "only the newest page at first");

  // Scroll to the top: the next page is prepended, and the message that was at the top does
  // not move on screen in any frame while that happens (sampled on every animation frame).
  const drift = await log.evaluate(async (el) => {
    const find = (text) => [...el.querySelectorAll("p")].find((p) => p.textContent === text);
    const target = find("Note 71");
    el.scrollTop = 0;
    const y0 = target.getBoundingClientRect().top;
    let worst = 0;
    const deadline = performance.now() + 10_000;
    let loaded = false;
    while (performance.now() < deadline) {
      await new Promise((r) => requestAnimationFrame(r));
      worst = Math.max(worst, Math.abs(target.getBoundingClientRect().top - y0));
      if (loaded) break;
      loaded = Boolean(find("Note 21"));
    }
    return { worst, loaded };
  });
  assert.ok(drift.loaded, "the older page was loaded");
  assert.ok(drift.worst <= 4, `the view jumped by ${drift.worst}px when older messages came in`);

  // Keep going up to the very first message and the start of the channel.
  await eventually(
    async () => {
      await log.evaluate((el) => (el.scrollTop = 0));
      return (await log.getByText("Note 1", { exact: true }).count()) === 1;
    },
    20_000,
    "message 1",
  );
  await reader.page.getByText(`Welcome to #${channel}`).waitFor();
  for (const n of [1, 2, 50, 51, 70, 71, 120]) {
    assert.equal(await log.getByText(`Note ${n}`, { exact: true }).count(), 1, `Note ${n} shown once`);
  }
  await screenshot(reader.page, "e2e-history-top");
});

test("a channel someone creates appears in everyone's list without a reload", { timeout: TEST_TIMEOUT }, async () => {
  const ned = await app();
  await registerThroughUi(ned.page, `ned-${tag}`);
  const oli = await app();
  await registerThroughUi(oli.page, `oli-${tag}`);
  const fresh = `fresh-${tag}`;
  // Oli's tab cannot fetch the channel list meanwhile (it does every 20 s): only the event can
  // bring the new channel.
  const list = (url) => url.pathname === "/api/channels";
  await oli.page.route(list, (route) => route.abort());
  await createChannel(ned.page, fresh);
  await channelEntry(oli.page, fresh).waitFor({ timeout: 15_000 });
  await oli.page.unroute(list);
  await openChannel(oli.page, fresh);
});

test("a private channel asks for its password", { timeout: TEST_TIMEOUT }, async () => {
  const vault = `vault-${tag}`;
  const cara = await app();
  await registerThroughUi(cara.page, `cara-${tag}`);
  await createChannel(cara.page, vault, "open-sesame-42");

  const dan = await app({ viewport: PHONE, phone: true });
  await dan.page.getByRole("button", { name: "Continue as guest" }).click();
  await connection(dan.page).filter({ hasText: "Connected" }).waitFor();
  await dan.page.getByRole("button", { name: "Open channels" }).click();
  await dan.page.getByRole("dialog", { name: "Channels" }).getByRole("button", { name: vault }).click();

  const prompt = dan.page.getByRole("dialog", { name: `#${vault} is private` });
  await prompt.getByLabel("Channel password").fill("not-the-password");
  await prompt.getByRole("button", { name: "Join channel" }).click();
  await prompt.getByText("Wrong password. Try again.").waitFor();
  await screenshot(dan.page, "e2e-private-password");
  await prompt.getByLabel("Channel password").fill("open-sesame-42");
  await prompt.getByRole("button", { name: "Join channel" }).click();
  await dan.page.getByRole("heading", { level: 1, name: vault }).waitFor();
  await prompt.waitFor({ state: "hidden" });

  await send(dan.page, "Made it in");
  await messages(cara.page).getByText("Made it in", { exact: true }).waitFor();
});

test("a burst is held, not refused; a flood shows a countdown, and waiting messages go out by themselves", { timeout: TEST_TIMEOUT }, async () => {
  const eve = await app();
  await registerThroughUi(eve.page, `eve-${tag}`);
  const channel = `burst-${tag}`;
  await createChannel(eve.page, channel);

  // 24 messages typed as fast as the page takes them: over the limit of 20 per 10 s, the last
  // ones are held by the server for their turn; none is refused and no block starts.
  const total = 24;
  for (let i = 1; i <= total; i++) await send(eve.page, `burst ${i}`);
  const log = messages(eve.page);
  await eventually(
    async () => (await eve.page.getByText(/Sending…|Waiting to send/).count()) === 0,
    30_000,
    "every message of the burst sent",
  );
  for (let i = 1; i <= total; i++) {
    assert.equal(await log.getByText(`burst ${i}`, { exact: true }).count(), 1, `burst ${i} once`);
  }
  const banner = eve.page.getByRole("alert").filter({ hasText: "sending messages too fast" });
  assert.equal(await banner.count(), 0, "no block for a burst");

  // A flood from three more connections of the same user, 16 sends at once on each (a
  // socket's limit of events in flight): more than the 20 sends of the limit plus the 20 the
  // hold takes, so the block starts; the tab shows the countdown, and what is typed meanwhile
  // waits.
  const cookie = await cookieHeader(eve.context);
  const floods = await Promise.all([1, 2, 3].map(() => socketFor(baseUrl, cookie)));
  for (const flood of floods) await emitAck(flood, "channel.join", { channel });
  await Promise.all(
    floods.flatMap((flood, k) =>
      Array.from({ length: 16 }, (_, i) =>
        emitAck(flood, "message.send", { channel, text: `flood ${k}.${i}`, client_message_id: crypto.randomUUID() }, 20_000),
      ),
    ),
  );
  for (const flood of floods) flood.disconnect();
  await banner.waitFor();
  const seconds = async () => Number(/send again in (\d+)s/.exec(await banner.innerText())?.[1]);
  const first = await seconds();
  assert.ok(first > 0 && first <= 30, `countdown starts at ${first}s`);
  await send(eve.page, "after the flood 1");
  await send(eve.page, "after the flood 2");
  await eve.page.getByText("Waiting to send — rate limited").first().waitFor();
  await screenshot(eve.page, "e2e-rate-limited");
  await sleep(2200);
  assert.ok((await seconds()) < first, "the countdown runs");

  // When the block ends, the banner goes and the waiting messages are sent, each once.
  await banner.waitFor({ state: "hidden", timeout: 40_000 });
  await eventually(
    async () => (await eve.page.getByText(/Sending…|Waiting to send/).count()) === 0,
    20_000,
    "every message sent",
  );
  for (const text of ["after the flood 1", "after the flood 2"]) {
    assert.equal(await log.getByText(text, { exact: true }).count(), 1, `${text} once`);
  }
});

test("sign-up errors show next to their fields; log out, then sign in by username or email", { timeout: TEST_TIMEOUT }, async () => {
  const name = `ida-${tag}`;
  const { page } = await app();
  await page.getByRole("tab", { name: "Create account" }).click();
  await page.getByLabel("Username").fill("x");
  await page.getByLabel("Email").fill("not-an-email");
  await page.getByLabel("Password").fill("short");
  await page.getByRole("button", { name: "Create account", exact: true }).click();
  // Each server error is the description of its own field.
  for (const label of ["Username", "Email", "Password"]) {
    const field = page.getByLabel(label);
    await eventually(async () => (await field.getAttribute("aria-invalid")) === "true", 10_000, `${label} marked invalid`);
    const described = await field.evaluate((el) => document.getElementById(el.getAttribute("aria-describedby").split(" ")[0]).textContent);
    assert.ok(described.length > 3, `${label} has an error in words: ${described}`);
  }
  await screenshot(page, "e2e-signup-errors");

  await registerThroughUi(page, name);
  await page.getByRole("button", { name: "Log out" }).click();
  await page.getByLabel("Email or username").fill(name);
  await page.getByLabel("Password").fill("wrong-password-1");
  await page.getByRole("button", { name: "Sign in", exact: true }).click();
  await page.getByText("Wrong email, username or password.").waitFor();
  await page.getByLabel("Password").fill("correct-horse-1");
  await page.getByRole("button", { name: "Sign in", exact: true }).click();
  await connection(page).filter({ hasText: "Connected" }).waitFor();
  await page.getByRole("button", { name: "Log out" }).click();
  await page.getByLabel("Email or username").fill(`${name}@example.com`);
  await page.getByLabel("Password").fill("correct-horse-1");
  await page.getByRole("button", { name: "Sign in", exact: true }).click();
  await connection(page).filter({ hasText: "Connected" }).waitFor();

  // A taken name is refused, next to the username.
  await page.getByRole("button", { name: "Log out" }).click();
  await page.getByRole("tab", { name: "Create account" }).click();
  await page.getByLabel("Username").fill(name);
  await page.getByLabel("Email").fill(`other-${name}@example.com`);
  await page.getByLabel("Password").fill("correct-horse-1");
  await page.getByRole("button", { name: "Create account", exact: true }).click();
  await page.getByText("That username or email is already taken.").waitFor();
});

test("two tabs of one person stay in step", { timeout: TEST_TIMEOUT }, async () => {
  const first = await app();
  await registerThroughUi(first.page, `jo-${tag}`);
  const second = await first.context.newPage();
  await second.goto("/");
  await connection(second).filter({ hasText: "Connected" }).waitFor();

  await composer(second).pressSequentially("typing in the other tab", { delay: 20 });
  await send(first.page, "sent from tab one");
  await messages(second).getByText("sent from tab one", { exact: true }).waitFor();
  await sleep(500);
  assert.equal(await countMessage(first.page, "sent from tab one"), 1);
  assert.equal(await countMessage(second, "sent from tab one"), 1);
  // One's own typing in another tab is not news.
  assert.equal(await first.page.getByText(/is typing/).count(), 0);
  // Both tabs count one person online.
  await first.page.getByRole("list", { name: "Online users" }).getByText(`jo-${tag}`).waitFor();
  assert.equal(await first.page.getByRole("list", { name: "Online users" }).getByText(`jo-${tag}`).count(), 1);
});

test(
  "after the banter instance it used is killed, the page's session is recovered on the other and shows what it missed once",
  { timeout: TEST_TIMEOUT, skip: process.env.BANTER_URL ? "needs its own cluster (BANTER_URL is set)" : false },
  async () => {
    assert.ok(cluster, "no cluster handle");
    const fay = await app();
    await registerThroughUi(fay.page, `fay-${tag}`);
    const channel = `ops-${tag}`;
    await createChannel(fay.page, channel);

    // The browser reaches nginx from 127.0.0.1: that is the instance to kill. The other
    // person stays on the survivor (a source address that nginx sends there).
    const victim = await cluster.upstreamOf("127.0.0.1");
    const survivor = cluster.instances.find((i) => i !== victim);
    const [survivorAddress] = await cluster.addressesFor(survivor, 1);
    const gus = await socketFor(baseUrl, await guestCookie(baseUrl, `gus-${tag}`), { localAddress: survivorAddress });
    const seenByGus = [];
    gus.on("message.new", (m) => seenByGus.push(m.text));
    assert.equal((await emitAck(gus, "channel.join", { channel })).ok, true);

    await send(fay.page, "before the crash");
    await eventually(() => seenByGus.includes("before the crash"), 10_000, "gus to get the first message");

    // Hold the page's reconnection back until the other person has spoken, so that the
    // message can only arrive through the catch-up after reconnecting.
    // What the page sends once it may reconnect (over polling, then websocket) is kept.
    let networkDown = true;
    const sentAfter = [];
    await fay.page.route("**/socket.io/**", (route) => {
      if (networkDown) return route.abort();
      const body = route.request().postData();
      if (body) sentAfter.push(body);
      return route.continue();
    });
    await fay.page.routeWebSocket(/\/socket\.io\//, (ws) => {
      if (networkDown) return ws.close();
      const server = ws.connectToServer();
      ws.onMessage((m) => {
        sentAfter.push(String(m));
        server.send(m);
      });
    });
    await victim.kill("SIGKILL");
    await connection(fay.page).filter({ hasText: /Reconnecting|Offline/ }).waitFor({ timeout: 20_000 });
    await fay.page.getByText("Connection lost.").or(fay.page.getByText("You’re offline.")).waitFor();
    await screenshot(fay.page, "e2e-connection-lost");

    const missed = `while you were away ${tag}`;
    const sent = await emitAck(gus, "message.send", { channel, text: missed, client_message_id: crypto.randomUUID() });
    assert.equal(sent.ok, true, JSON.stringify(sent));

    networkDown = false;
    await connection(fay.page).filter({ hasText: "Connected" }).waitFor({ timeout: 45_000 });
    await messages(fay.page).getByText(missed, { exact: true }).waitFor({ timeout: 15_000 });
    await sleep(1500);
    assert.equal(await countMessage(fay.page, missed), 1, "the missed message is shown exactly once");
    assert.equal(await countMessage(fay.page, "before the crash"), 1);
    // The session was recovered on the survivor (connection state recovery): the page sent its
    // pid back and the server replayed the message; the page joined nothing and synced nothing.
    assert.ok(sentAfter.some((f) => f.includes('"pid"')), `the CONNECT carries the pid: ${sentAfter.join(" | ")}`);
    assert.ok(!sentAfter.some((f) => f.includes('"channel.join"') || f.includes('"messages.sync"')), `no join, no sync: ${sentAfter.join(" | ")}`);

    // And the page can talk again, through the survivor.
    await send(fay.page, "back online");
    await eventually(() => seenByGus.includes("back online"), 15_000, "gus to get the message sent after reconnecting");
    assert.equal(seenByGus.filter((t) => t === "back online").length, 1);
    await screenshot(fay.page, "e2e-reconnected");
    gus.disconnect();
  },
);

test("the chat works on a phone-sized screen", { timeout: TEST_TIMEOUT }, async () => {
  const hal = await app({ viewport: PHONE, phone: true });
  await registerThroughUi(hal.page, `hal-${tag}`);
  // Panels collapse into drawers that open from the header.
  await hal.page.getByRole("button", { name: /online in this channel/ }).click();
  const online = hal.page.getByRole("dialog", { name: "Online users" });
  await online.getByText(`hal-${tag}`).waitFor();
  await online.getByRole("button", { name: "Close online users" }).click();
  // The length limit shows before it is reached, and a draft over it cannot be sent.
  await composer(hal.page).fill("x".repeat(3990));
  await hal.page.getByText("3,990 / 4,000").waitFor();
  await composer(hal.page).fill("x".repeat(4001));
  await hal.page.getByText("4,001 / 4,000 — too long").waitFor();
  assert.equal(await hal.page.getByRole("button", { name: "Send" }).isDisabled(), true);
  await send(hal.page, "Hello from a phone");
  await messages(hal.page).getByText("Hello from a phone", { exact: true }).waitFor();
  await screenshot(hal.page, "e2e-phone");
});

// ---------------------------------------------------------------------------------------------
// Conversations: edits, deletes, reactions, replies, mentions, unread badges, direct messages
// and moderation.

/** The row of the message whose text (or a quote of it) is exactly `text`; the message itself is the first. */
const messageRow = (page, text) =>
  messages(page)
    .getByRole("listitem")
    .filter({ has: page.getByText(text, { exact: true }) })
    .first();

/** Opens a message's "More actions" menu and picks an item. */
async function messageMenu(page, text, item) {
  const row = messageRow(page, text);
  await row.hover();
  await row.getByRole("button", { name: "More actions" }).click();
  await page.getByRole("menuitem", { name: item }).click();
}

/** A direct-message entry in the sidebar: the person's name, unread counts, then presence. */
const dmEntry = (page, username) =>
  page.getByRole("navigation", { name: "Direct messages" }).getByRole("button", { name: new RegExp(`^${username}(,| \\()`) });

test("messages are edited, deleted, reacted to and answered; the channel's owner deletes others' messages", { timeout: TEST_TIMEOUT }, async () => {
  const room = `talk-${tag}`;
  const ann = await app();
  await registerThroughUi(ann.page, `amy-${tag}`);
  await createChannel(ann.page, room);
  const ben = await app();
  await registerThroughUi(ben.page, `bob-${tag}`);
  await openChannel(ben.page, room);

  // An edit: in place, then "(edited)" for both.
  await send(ben.page, "Original from Bob");
  await messages(ann.page).getByText("Original from Bob", { exact: true }).waitFor();
  await messageMenu(ben.page, "Original from Bob", "Edit message");
  const editBox = ben.page.getByRole("textbox", { name: "Edit message" });
  await editBox.fill("Edited by Bob");
  await editBox.press("Enter");
  for (const page of [ann.page, ben.page]) {
    const row = messageRow(page, "Edited by Bob");
    await row.getByText("(edited)").waitFor();
    assert.equal(await messages(page).getByText("Original from Bob", { exact: true }).count(), 0);
  }

  // Reactions: picked from the picker, counted for both, the reader's own pressed, toggled.
  const annRow = messageRow(ann.page, "Edited by Bob");
  await annRow.hover();
  await annRow.getByRole("button", { name: "Add reaction" }).click();
  await ann.page.getByRole("button", { name: "React with 👍" }).click();
  const benChip = messageRow(ben.page, "Edited by Bob").getByRole("button", { name: /^👍 1 reaction/ });
  await benChip.waitFor();
  assert.equal(await benChip.getAttribute("aria-pressed"), "false");
  await benChip.click();
  await messageRow(ann.page, "Edited by Bob").getByRole("button", { name: "👍 2 reactions, including yours" }).waitFor();
  const benPressed = messageRow(ben.page, "Edited by Bob").getByRole("button", { name: "👍 2 reactions, including yours" });
  await benPressed.waitFor();
  assert.equal(await benPressed.getAttribute("aria-pressed"), "true");
  await benPressed.click();
  await messageRow(ann.page, "Edited by Bob").getByRole("button", { name: "👍 1 reaction, including yours" }).waitFor();

  // A reply: the quote in the composer, then above the answer; a click on it finds the original.
  await annRow.hover();
  await annRow.getByRole("button", { name: "Reply" }).click();
  await ann.page.getByRole("group", { name: `Replying to bob-${tag}` }).getByText("Edited by Bob").waitFor();
  await send(ann.page, "Answer from Amy");
  await ann.page.getByRole("group", { name: /^Replying to/ }).waitFor({ state: "hidden" });
  const quote = messageRow(ben.page, "Answer from Amy").getByRole("button", { name: `Reply to bob-${tag}: Edited by Bob` });
  await quote.waitFor();
  await quote.click();
  await screenshot(ben.page, "e2e-edit-react-reply");

  // Someone who is not a moderator has no menu on others' messages; one's own can be deleted.
  const answerRow = messageRow(ben.page, "Answer from Amy");
  await answerRow.hover();
  assert.equal(await answerRow.getByRole("button", { name: "More actions" }).count(), 0);
  await send(ben.page, "Second from Bob");
  await messages(ann.page).getByText("Second from Bob", { exact: true }).waitFor();
  await messageMenu(ben.page, "Second from Bob", "Delete message");
  await ben.page.getByRole("dialog", { name: "Delete this message?" }).getByRole("button", { name: "Delete" }).click();
  await eventually(async () => (await messages(ann.page).getByText("Second from Bob", { exact: true }).count()) === 0, 10_000, "the delete to reach Amy");
  await messages(ann.page).getByText("This message was deleted").waitFor();

  // The channel's owner deletes another person's message; the reply's quote says so.
  await messageMenu(ann.page, "Edited by Bob", "Delete message");
  await ann.page.getByRole("dialog", { name: "Delete this message?" }).getByRole("button", { name: "Delete" }).click();
  for (const page of [ann.page, ben.page]) {
    await eventually(async () => (await messages(page).getByText("This message was deleted").count()) === 2, 10_000, "two tombstones");
    await messageRow(page, "Answer from Amy").getByRole("button", { name: /Original message was deleted/ }).waitFor();
    assert.equal(await messages(page).getByText("Edited by Bob", { exact: true }).count(), 0);
  }
  await screenshot(ann.page, "e2e-deleted");
});

test("mentions show as badges, and reading in one tab clears the badge in the other", { timeout: TEST_TIMEOUT }, async () => {
  const news = `news-${tag}`;
  const dov = await app();
  await registerThroughUi(dov.page, `dov-${tag}`);
  await createChannel(dov.page, news);

  const cat = await app();
  await registerThroughUi(cat.page, `cat-${tag}`);
  await openChannel(cat.page, news); // gives cat a read position there
  await openChannel(cat.page, "general");
  const second = await cat.context.newPage();
  await second.goto("/#general");
  await connection(second).filter({ hasText: "Connected" }).waitFor();

  await send(dov.page, "plain news");
  await send(dov.page, `look at this @cat-${tag}`);
  for (const page of [cat.page, second]) {
    await channelEntry(page, news).and(page.getByRole("button", { name: new RegExp(`^${news}, 2 unread, 1 mention$`) })).waitFor();
  }
  await screenshot(cat.page, "e2e-unread-badges");

  // Read in the first tab: the message that mentions cat stands out, and both badges clear.
  await openChannel(cat.page, news);
  const mention = messageRow(cat.page, `look at this @cat-${tag}`);
  await mention.getByText("Mentions you.").waitFor();
  assert.equal(await messageRow(cat.page, "plain news").getByText("Mentions you.").count(), 0);
  await second.getByRole("navigation", { name: "Channels" }).getByRole("button", { name: news, exact: true }).waitFor();
  assert.equal(await second.getByRole("navigation", { name: "Channels" }).getByRole("button", { name: news, exact: true }).count(), 1);
});

test("direct messages: started from the online list, an unread mention for the other, last seen once they leave", { timeout: TEST_TIMEOUT }, async () => {
  const eli = await app();
  await registerThroughUi(eli.page, `eli-${tag}`);
  const fox = await app();
  await registerThroughUi(fox.page, `fox-${tag}`);

  // A name that is no one's is refused in words.
  await eli.page.getByRole("button", { name: "New direct message" }).click();
  const dialog = eli.page.getByRole("dialog", { name: "New direct message" });
  await dialog.getByLabel("Username").fill(`nobody-${tag}`);
  await dialog.getByRole("button", { name: "Start conversation" }).click();
  await dialog.getByText(`There is no user named nobody-${tag}.`).waitFor();
  await dialog.getByRole("button", { name: "Cancel" }).click();

  // From the online list of the channel both are in.
  await eli.page.getByRole("list", { name: "Online users" }).getByRole("button", { name: `Message fox-${tag}` }).click();
  await eli.page.getByRole("heading", { level: 1, name: `fox-${tag}` }).waitFor();
  await eli.page.getByText("Online", { exact: true }).waitFor();
  await send(eli.page, "psst, fox");
  await messages(eli.page).getByText("psst, fox", { exact: true }).waitFor();

  // Fox, elsewhere, gets the conversation in the sidebar with an unread mention.
  const entry = dmEntry(fox.page, `eli-${tag}`);
  await entry.and(fox.page.getByRole("button", { name: /, 1 unread, 1 mention \(online\)$/ })).waitFor();
  await screenshot(fox.page, "e2e-dm-unread");
  await entry.click();
  await fox.page.getByRole("heading", { level: 1, name: `eli-${tag}` }).waitFor();
  await messages(fox.page).getByText("psst, fox", { exact: true }).waitFor();
  await dmEntry(fox.page, `eli-${tag}`).and(fox.page.getByRole("button", { name: `eli-${tag} (online)` })).waitFor();
  await send(fox.page, "hi eli");
  await messages(eli.page).getByText("hi eli", { exact: true }).waitFor();

  // Fox leaves: Eli sees when fox was last seen.
  await fox.context.close();
  await eventually(
    async () => {
      await dmEntry(eli.page, `fox-${tag}`).click();
      return (await eli.page.locator("main header").getByText(/last seen/).count()) === 1;
    },
    30_000,
    "last seen",
  );
  await dmEntry(eli.page, `fox-${tag}`).and(eli.page.getByRole("button", { name: /\(last seen (just now|1 minute ago)\)$/ })).waitFor();
  await screenshot(eli.page, "e2e-dm-last-seen");
});

test("someone who signs in again shows online in the others' direct messages at once", { timeout: TEST_TIMEOUT }, async () => {
  const kai = await app();
  await registerThroughUi(kai.page, `kai-${tag}`);
  const uma = await app();
  await registerThroughUi(uma.page, `uma-${tag}`);
  await kai.page.getByRole("list", { name: "Online users" }).getByRole("button", { name: `Message uma-${tag}` }).click();
  await kai.page.getByRole("heading", { level: 1, name: `uma-${tag}` }).waitFor();
  await openChannel(kai.page, "general");

  // Uma signs out; Kai's direct messages say she was last seen.
  await uma.page.getByRole("button", { name: "Log out" }).click();
  await eventually(
    async () => (await dmEntry(kai.page, `uma-${tag}`).and(kai.page.getByRole("button", { name: /\(last seen/ })).count()) === 1,
    30_000,
    "uma last seen",
  );

  // She signs in again. Kai's tab cannot fetch the direct-message list meanwhile (it does every
  // 20 s): her presence in the channel must show her online there too.
  const dmList = (url) => url.pathname === "/api/dms";
  await kai.page.route(dmList, (route) => route.abort());
  await uma.page.getByLabel("Email or username").fill(`uma-${tag}`);
  await uma.page.getByLabel("Password").fill("correct-horse-1");
  await uma.page.getByRole("button", { name: "Sign in", exact: true }).click();
  await kai.page.getByRole("list", { name: "Online users" }).getByText(`uma-${tag}`).waitFor();
  await dmEntry(kai.page, `uma-${tag}`).and(kai.page.getByRole("button", { name: `uma-${tag} (online)` })).waitFor();
  await kai.page.unroute(dmList);
});

test("moderation: the owner removes a member, who is told; an administrator bans them, and they are signed out", { timeout: TEST_TIMEOUT }, async () => {
  const room = `mod-${tag}`;
  const boss = await app();
  await registerThroughUi(boss.page, `boss_${tag}`);
  await createChannel(boss.page, room);
  const gil = await app();
  await registerThroughUi(gil.page, `gil-${tag}`);
  await openChannel(gil.page, room);
  await send(gil.page, "spam from gil");
  await messages(boss.page).getByText("spam from gil", { exact: true }).waitFor();

  // Removed from the channel: a notice, and back in general.
  await messageMenu(boss.page, "spam from gil", `Remove gil-${tag} from #${room}`);
  await boss.page.getByRole("dialog", { name: `Remove gil-${tag} from #${room}?` }).getByRole("button", { name: "Remove" }).click();
  await gil.page.getByRole("alert").filter({ hasText: `You were removed from #${room}` }).waitFor();
  await gil.page.getByRole("heading", { level: 1, name: "general" }).waitFor();
  await screenshot(gil.page, "e2e-removed");

  // Banned: signed out at once with a notice, and signing in again is refused.
  await messageMenu(boss.page, "spam from gil", `Ban gil-${tag}`);
  await boss.page.getByRole("dialog", { name: `Ban gil-${tag}?` }).getByRole("button", { name: "Ban" }).click();
  await gil.page.getByRole("alert").filter({ hasText: /banned/ }).waitFor({ timeout: 20_000 });
  await gil.page.getByLabel("Email or username").fill(`gil-${tag}`);
  await gil.page.getByLabel("Password").fill("correct-horse-1");
  await gil.page.getByRole("button", { name: "Sign in", exact: true }).click();
  await gil.page.getByText("This account is banned: it can no longer sign in.").waitFor();
  await screenshot(gil.page, "e2e-banned");
});
