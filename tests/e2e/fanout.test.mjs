// 50 clients spread over both instances through nginx all receive every message of their
// channel, in seq order.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startCluster } from './cluster.mjs';
import { connect, connected, eventually, events, guest, send } from './client.mjs';

const CLIENTS = 50;
const PER_SENDER = 20;
let cluster;

before(async () => {
  cluster = await startCluster({ env: { RATE_LIMIT_MESSAGES: '1000' } });
});
after(() => cluster?.stop());

test(`${CLIENTS} clients on both instances get every message in seq order`, async () => {
  const addresses = Array.from({ length: CLIENTS }, (_, i) => `127.0.0.${10 + i}`);
  const placement = await Promise.all(addresses.map((a) => cluster.upstreamOf(a)));
  const perInstance = cluster.instances.map((inst) => placement.filter((p) => p === inst).length);
  assert.ok(perInstance.every((n) => n >= 5), `clients spread over both instances: ${perInstance}`);

  const sockets = [];
  for (const [i, localAddress] of addresses.entries()) {
    const user = await guest(cluster, `fan${i}`);
    sockets.push(connect(cluster, { cookie: user.cookie, localAddress }));
  }
  await Promise.all(sockets.map((s) => s.connected || new Promise((r) => s.once('connect', r))));

  // One sender on each instance, sending at the same time.
  const senders = cluster.instances.map((inst) => sockets[placement.indexOf(inst)]);
  const acks = await Promise.all(
    senders.map(async (s, k) => {
      const out = [];
      for (let n = 0; n < PER_SENDER; n++) out.push(await send(s, 'general', `sender${k} #${n}`));
      return out;
    }),
  );
  assert.ok(acks.flat().every((a) => a.ok), 'every send acked');
  const total = PER_SENDER * senders.length;

  await eventually(() => sockets.every((s) => events(s, 'message.new').length >= total), 'every delivery');
  await new Promise((r) => setTimeout(r, 300));
  for (const [i, s] of sockets.entries()) {
    const seqs = events(s, 'message.new').map((m) => m.seq);
    assert.deepEqual(seqs, Array.from({ length: total }, (_, k) => k + 1), `client ${i} got 1..${total} in order, once each`);
  }
  assert.deepEqual(cluster.messages(), Array.from({ length: total }, (_, k) => k + 1));
  for (const s of sockets) s.close();
});
