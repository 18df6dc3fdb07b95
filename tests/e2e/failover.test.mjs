// One instance killed with SIGKILL while clients are connected and messages flow: its clients
// reconnect through nginx to the survivor, call messages.sync from their last seq, and end up
// with exactly the stored messages, none twice. Connection state recovery is off here, so that
// the sync alone does it.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startCluster } from './cluster.mjs';
import { ack, connect, connected, eventually, guest, keepSending, sleep } from './client.mjs';

let cluster;
before(async () => {
  // Recovery off: the clients repair with messages.sync alone (recovery.test.mjs tests it on).
  cluster = await startCluster({ env: { RATE_LIMIT_MESSAGES: '1000', RECOVERY_MAX_DISCONNECT_SECS: '0' } });
});
after(() => cluster?.stop());

/** A client that keeps the channel's messages by seq and fills gaps with messages.sync. */
function syncingClient(socket) {
  const held = new Map(); // seq → message
  const liveSeqs = [];
  const state = { held, liveSeqs, reconnects: 0, syncs: 0 };
  socket.on('message.new', (m) => {
    liveSeqs.push(m.seq);
    held.set(m.seq, m);
  });
  // Sync from the end of the gap-free prefix, so holes are filled as well as the tail.
  async function sync() {
    for (;;) {
      let after = 0;
      while (held.has(after + 1)) after++;
      const res = await ack(socket, 'messages.sync', { channel: 'general', after_seq: after });
      assert.equal(res.ok, true, JSON.stringify(res));
      state.syncs++;
      for (const m of res.messages) held.set(m.seq, m);
      if (!res.has_more) return;
    }
  }
  socket.io.on('reconnect', () => {
    state.reconnects++;
    sync().catch(() => {});
  });
  state.sync = sync;
  return state;
}

test('clients of a killed instance reconnect and sync exactly what they missed', async () => {
  const [victim, survivor] = cluster.instances;
  const onVictim = await cluster.addressesFor(victim, 8);
  const onSurvivor = await cluster.addressesFor(survivor, 8);
  const clients = [];
  for (const [i, localAddress] of [...onVictim, ...onSurvivor].entries()) {
    const user = await guest(cluster, `fo${i}`);
    const socket = connect(cluster, { cookie: user.cookie, localAddress, reconnection: true });
    clients.push({ socket, state: syncingClient(socket), onVictim: i < onVictim.length });
    await connected(socket);
  }
  const senderUser = await guest(cluster, 'sender');
  const sender = await connected(connect(cluster, { cookie: senderUser.cookie, localAddress: onSurvivor[0] }));

  const sending = keepSending(sender, 'general', { prefix: 'n', everyMs: 25 });
  const { acked } = sending;

  await sleep(1000);
  const killed = await victim.kill('SIGKILL');
  assert.equal(killed.signal, 'SIGKILL');
  await sleep(2500);
  await sending.stop();

  const stored = cluster.messages();
  assert.ok(acked.length > 20, `messages acked around the kill: ${acked.length}`);
  assert.ok(acked.every((seq) => stored.includes(seq)), 'every acked message is stored');
  assert.deepEqual(stored, Array.from({ length: stored.length }, (_, k) => k + 1), 'stored seqs have no gap');

  // Every client ends up with exactly the stored messages.
  await eventually(() => clients.every((c) => c.socket.connected), 'every client reconnected', 30_000);
  for (const c of clients) await c.state.sync();
  for (const [i, c] of clients.entries()) {
    assert.deepEqual([...c.state.held.keys()].sort((x, y) => x - y), stored, `client ${i} holds every stored message`);
    const live = c.state.liveSeqs;
    assert.equal(new Set(live).size, live.length, `client ${i} got no message twice`);
    if (c.onVictim) {
      assert.ok(c.state.reconnects >= 1, `client ${i} of the killed instance reconnected`);
      assert.ok(live.length < stored.length, `client ${i} missed messages live and synced them`);
    } else {
      assert.equal(c.state.reconnects, 0, `client ${i} of the survivor stayed connected`);
    }
  }
  console.log(`failover: ${acked.length} acked, ${sending.refused} refused, ${stored.length} stored, ${onVictim.length} clients moved`);
  for (const c of clients) c.socket.close();
  sender.close();
});
