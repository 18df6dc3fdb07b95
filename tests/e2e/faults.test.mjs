// The fault-injection suite: clients on both instances keep sending with acks while the suite
// restarts Redis, cuts Postgres off, kills an instance and restarts both one after the other.
// At the end three sets must agree: the acked messages, the rows in Postgres, and what every
// client holds (live plus messages.sync). Each scenario prints its figures.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { startCluster, waitFor200 } from './cluster.mjs';
import { ack, connect, connected, eventually, guest, sleep } from './client.mjs';
import { chatClient, checkHeld, keepSending, totals } from './chat.mjs';

const PER_INSTANCE = 4;
let cluster;

before(async () => {
  cluster = await startCluster({ ownRedis: true, postgresBehindProxy: true, env: { RATE_LIMIT_MESSAGES: '100000' } });
});
after(() => cluster?.stop());

/** Time until a message sent on one instance is seen on the other. */
async function crossInstanceRecovery(from, to, ms = 20_000) {
  const started = Date.now();
  for (;;) {
    const res = await ack(from.socket, 'message.send', { channel: 'general', text: 'probe', client_message_id: randomUUID() }).catch(() => null);
    if (res?.ok) {
      from.acked.push(res.message.id);
      from.sent++;
      const deadline = Date.now() + 500;
      while (Date.now() < deadline) {
        if (to.liveIds.includes(res.message.id)) return Date.now() - started;
        await sleep(20);
      }
    }
    if (Date.now() - started > ms) throw new Error('cross-instance delivery did not recover');
    await sleep(100);
  }
}

test('nothing acked is lost through Redis, Postgres and instance failures', async () => {
  const [a, b] = cluster.instances;
  const addresses = [...(await cluster.addressesFor(a, PER_INSTANCE)), ...(await cluster.addressesFor(b, PER_INSTANCE))];
  const clients = [];
  for (const [i, localAddress] of addresses.entries()) {
    const user = await guest(cluster, `chaos${i}`);
    const socket = connect(cluster, { cookie: user.cookie, localAddress, reconnection: true });
    clients.push(chatClient(socket, user));
    await connected(socket);
  }
  const onA = clients.slice(0, PER_INSTANCE);
  const onB = clients.slice(PER_INSTANCE);
  const state = { running: true };
  const senders = clients.map((c) => keepSending(c, state));
  const figures = [];
  const scenario = async (name, run) => {
    if (process.env.DEBUG_FAULTS) console.error(new Date().toISOString(), 'start', name);
    const before = totals(clients);
    const started = Date.now();
    const detail = await run();
    const after = totals(clients);
    const row = { scenario: name, sent: after.sent - before.sent, acked: after.acked - before.acked, refused: after.refused - before.refused, ms: Date.now() - started, ...detail };
    figures.push(row);
    console.log(JSON.stringify(row));
  };

  await sleep(1000);
  await scenario('redis restart', async () => {
    await cluster.redis.kill();
    await sleep(2000);
    await cluster.redis.restart();
    return { recovery_ms: await crossInstanceRecovery(onA[0], onB[0]) };
  });

  await scenario('postgres outage', async () => {
    cluster.pgProxy.cutOff();
    await sleep(2000);
    cluster.pgProxy.restore();
    const back = Date.now();
    for (;;) {
      const res = await ack(onB[0].socket, 'message.send', { channel: 'general', text: 'pg probe', client_message_id: randomUUID() });
      onB[0].sent++;
      if (res.ok) {
        onB[0].acked.push(res.message.id);
        break;
      }
      onB[0].refused++;
      assert.equal(res.error.code, 'unavailable');
      assert.ok(Date.now() - back < 20_000, 'sends recover after Postgres returns');
      await sleep(100);
    }
    return { recovery_ms: Date.now() - back };
  });

  await scenario('instance crash (SIGKILL a)', async () => {
    const killed = await a.kill('SIGKILL');
    assert.equal(killed.signal, 'SIGKILL');
    await eventually(() => onA.every((c) => c.socket.connected && c.reconnects > 0), 'clients of a reconnected to b', 30_000);
    const moved = Date.now();
    await a.start();
    return { recovered_clients: onA.length, restart_ms: Date.now() - moved };
  });

  await scenario('rolling restart (SIGTERM a, then b)', async () => {
    const exits = [];
    for (const inst of [a, b]) {
      exits.push(await inst.kill('SIGTERM'));
      await inst.start();
      await waitFor200(`${cluster.url}/ready`);
      await sleep(1500);
    }
    assert.deepEqual(exits.map((e) => e.code), [0, 0], 'clean exits on SIGTERM');
    return {};
  });

  state.running = false;
  await Promise.all(senders);
  await eventually(() => clients.every((c) => c.socket.connected), 'every client connected', 30_000);
  await sleep(500);
  await Promise.all(clients.map((c) => c.sync()));

  const t = totals(clients);
  assert.ok(t.acked > 50, `enough traffic: ${t.acked} acked`);
  const stored = checkHeld(cluster, clients);
  console.log(JSON.stringify({ total: t, stored: stored.length }));

  // Presence agrees with the live connections.
  const viewer = clients[0].user;
  await eventually(async () => {
    const res = await fetch(`${cluster.url}/api/presence/online?channel=general`, { headers: { cookie: viewer.cookie } });
    if (!res.ok) return false;
    const online = new Set((await res.json()).map((u) => u.userId));
    return online.size === clients.length && clients.every((c) => online.has(c.user.id));
  }, 'presence equal to the connected clients', 20_000);

  for (const inst of cluster.instances) assert.equal(inst.exited, null, `instance ${inst.name} is running`);
  for (const c of clients) c.close();
  console.table(figures);
});
