// socket.io-client helpers for the end-to-end tests: sign in through nginx, connect from a
// chosen loopback address (so nginx's hash places the client), emit with acks, await events.

import http from 'node:http';
import { randomUUID } from 'node:crypto';
import { io } from 'socket.io-client';

export const WAIT_MS = 15_000;
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Signs in a guest through nginx; returns { id, username, cookie }. */
export async function guest(cluster, username) {
  const res = await fetch(`${cluster.url}/api/auth/guest`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', origin: cluster.origin },
    body: JSON.stringify({ username }),
    signal: AbortSignal.timeout(WAIT_MS),
  });
  if (res.status !== 201) throw new Error(`guest ${username}: ${res.status} ${await res.text()}`);
  const cookie = res.headers.getSetCookie().find((c) => c.startsWith('token=')).split(';')[0];
  const body = await res.json();
  return { id: body.user.id, username: body.user.username, cookie };
}

/** Clients placed without a chosen address so far (behind HAProxy). */
let placed = 0;

/**
 * Opens a socket through nginx. Options: cookie, origin (default: the cluster's), localAddress,
 * transports, reconnection (default false). Records every event in `socket.received`.
 */
export function connect(cluster, { cookie, origin = cluster.origin, localAddress, transports, reconnection = false } = {}) {
  const extraHeaders = {};
  // Behind HAProxy every client carries a stickiness cookie, as a browser does from HAProxy's
  // first answer on: the one of its chosen address, else one of each instance in turn.
  const placement = cluster.placementCookie?.(localAddress ?? `127.0.0.${(placed++ % 2) + 2}`);
  const cookies = [cookie, placement].filter(Boolean).join('; ');
  if (cookies) extraHeaders.Cookie = cookies;
  if (origin) extraHeaders.Origin = origin;
  const socket = io(cluster.url, {
    forceNew: true,
    reconnection,
    reconnectionDelay: 200,
    reconnectionDelayMax: 1000,
    randomizationFactor: 0.5,
    timeout: 5000,
    extraHeaders,
    ...(transports ? { transports } : {}),
    ...(localAddress ? { agent: new http.Agent({ localAddress, keepAlive: true }), localAddress } : {}),
  });
  socket.received = [];
  socket.onAny((event, ...args) => socket.received.push({ event, args }));
  return socket;
}

/** Resolves on `connect`, rejects with the connect_error. */
export function connected(socket) {
  return new Promise((resolve, reject) => {
    if (socket.connected) return resolve(socket);
    const timer = setTimeout(() => reject(new Error('no connect within timeout')), WAIT_MS);
    socket.once('connect', () => {
      clearTimeout(timer);
      resolve(socket);
    });
    socket.once('connect_error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}

/** Emits with an ack and resolves with the ack payload. */
export async function ack(socket, event, payload) {
  return socket.timeout(WAIT_MS).emitWithAck(event, payload);
}

/** Sends a message to a channel; resolves with the ack. */
export function send(socket, channel, text) {
  return ack(socket, 'message.send', { channel, text, client_message_id: randomUUID() });
}

/** Resolves with the first event `name` (already received or coming) whose payload matches. */
export async function waitForEvent(socket, name, pred = () => true, ms = WAIT_MS) {
  const deadline = Date.now() + ms;
  for (;;) {
    const hit = socket.received.find((r) => r.event === name && pred(r.args[0]));
    if (hit) return hit.args[0];
    if (Date.now() > deadline) throw new Error(`no ${name} event within ${ms} ms`);
    await sleep(20);
  }
}

/** Payloads of every `name` event received so far. */
export function events(socket, name) {
  return socket.received.filter((r) => r.event === name).map((r) => r.args[0]);
}

/** Waits until `check()` is true. */
export async function eventually(check, what, ms = WAIT_MS) {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

/**
 * Sends to `channel` from `socket` every `everyMs` until `stop()`, each message with its own
 * client_message_id; `stop()` resolves once the last send is answered. `acked` holds the seqs
 * of the acked sends, `refused` counts the others (refused, or no ack in time).
 */
export function keepSending(socket, channel, { prefix = 'm', everyMs = 20 } = {}) {
  const sender = { acked: [], refused: 0 };
  let sending = true;
  const loop = (async () => {
    for (let n = 0; sending; n++) {
      try {
        const res = await ack(socket, 'message.send', { channel, text: `${prefix}${n}`, client_message_id: randomUUID() });
        if (res.ok) sender.acked.push(res.message.seq);
        else sender.refused++;
      } catch {
        sender.refused++;
      }
      await sleep(everyMs);
    }
  })();
  sender.stop = async () => {
    sending = false;
    await loop;
  };
  return sender;
}
