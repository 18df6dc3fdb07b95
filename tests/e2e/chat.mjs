// A chat client that keeps a channel's messages by seq (live, and with messages.sync after a
// reconnect or a gap), a sender that acks every message, and the check that what was acked is
// stored once and held by everyone: shared by the fault-injection suite and the soak.

import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { ack, sleep } from './client.mjs';

/**
 * A chat client: holds the channel's messages by seq, syncs after reconnecting and on gaps.
 * Like the web app, it connects again by itself when the server refused its handshake (during
 * an outage) or closed it, which socket.io-client does not do; `close()` ends it for good.
 */
export function chatClient(socket, user, channel = 'general') {
  const c = { socket, user, channel, held: new Map(), liveIds: [], acked: [], sent: 0, refused: 0, reconnects: 0, syncing: null, latencies: [], closed: false };
  // Sync from the end of the gap-free prefix: it fills holes as well as the tail.
  const contiguous = () => {
    let k = 0;
    while (c.held.has(k + 1)) k++;
    return k;
  };
  const sync = async () => {
    for (;;) {
      const after = contiguous();
      const res = await ack(socket, 'messages.sync', { channel, after_seq: after, limit: 500 });
      if (!res.ok) throw new Error(JSON.stringify(res));
      for (const m of res.messages) c.held.set(m.seq, m);
      if (!res.has_more) return;
    }
  };
  c.sync = () => {
    c.syncing ??= sync().finally(() => (c.syncing = null));
    return c.syncing;
  };
  socket.on('message.new', (m) => {
    if (m.channel !== channel) return;
    c.liveIds.push(m.id);
    c.held.set(m.seq, m);
    if (m.seq > contiguous() + 1) c.sync().catch(() => {});
  });
  socket.io.on('reconnect', () => {
    c.reconnects++;
    c.sync().catch(() => {});
  });
  let connectedBefore = false;
  socket.on('connect', () => {
    // A connection made again by hand (below, or by a page reload) syncs too.
    if (connectedBefore && !socket.recovered) c.sync().catch(() => {});
    connectedBefore = true;
  });
  const again = () => {
    if (c.closed) return;
    setTimeout(() => {
      if (!c.closed && !socket.connected && !socket.active) socket.connect();
    }, 300 + Math.random() * 700);
  };
  socket.on('connect_error', () => {
    if (!socket.active) again();
  });
  socket.on('disconnect', (reason) => {
    if (reason === 'io server disconnect') again();
  });
  c.close = () => {
    c.closed = true;
    socket.close();
  };
  return c;
}

/** Sends one message with an ack; counts it as acked (with its latency) or refused. */
export async function sendOne(c, text) {
  c.sent++;
  const started = performance.now();
  try {
    const res = await ack(c.socket, 'message.send', { channel: c.channel, text, client_message_id: randomUUID() });
    if (res.ok) {
      c.acked.push(res.message.id);
      c.latencies.push(performance.now() - started);
      return res.message;
    }
    c.refused++;
  } catch {
    c.refused++; // no ack in time (disconnected)
  }
  return null;
}

/** Sends until stopped; every send has its ack, or counts as refused. */
export function keepSending(c, state) {
  return (async () => {
    while (state.running) {
      await sendOne(c, `${c.user.username} ${c.sent}`);
      await sleep(100 + Math.random() * 100);
    }
  })();
}

export const totals = (clients) => ({
  sent: clients.reduce((n, c) => n + c.sent, 0),
  acked: clients.reduce((n, c) => n + c.acked.length, 0),
  refused: clients.reduce((n, c) => n + c.refused, 0),
});

/**
 * What every promise of delivery comes to, once the clients have synced: the stored seqs have
 * no gap, every acked message is stored once, and every client holds exactly the stored
 * messages and got none of them twice live. Returns the stored seqs.
 */
export function checkHeld(cluster, clients, channel = 'general') {
  const stored = cluster.messages(channel);
  const storedIds = new Set(cluster.messageIds(channel));
  const acked = clients.flatMap((c) => c.acked);
  assert.deepEqual(stored, Array.from({ length: stored.length }, (_, k) => k + 1), 'no gap in stored seqs');
  for (const id of acked) assert.ok(storedIds.has(id), `acked message ${id} is in Postgres`);
  assert.equal(new Set(acked).size, acked.length, 'no message acked twice');
  for (const c of clients) {
    const held = [...c.held.keys()].sort((x, y) => x - y);
    const missing = stored.filter((seq) => !c.held.has(seq));
    const extra = held.filter((seq) => !stored.includes(seq));
    assert.deepEqual({ missing, extra }, { missing: [], extra: [] }, `${c.user.username} holds exactly the stored messages`);
    const ids = [...c.held.values()].map((m) => m.id);
    assert.ok(ids.every((id) => storedIds.has(id)), `${c.user.username} holds nothing that is not stored`);
    assert.equal(new Set(c.liveIds).size, c.liveIds.length, `${c.user.username} got no message twice`);
  }
  return stored;
}
