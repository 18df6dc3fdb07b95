// Both Socket.IO transports through nginx: the default (HTTP long-polling, then the upgrade to
// websocket), polling alone and websocket alone, on each of the two instances.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { startCluster } from './cluster.mjs';
import { ack, connect, connected, guest, waitForEvent } from './client.mjs';

let cluster;
let placed; // [address on instance a, address on instance b]

before(async () => {
  cluster = await startCluster();
  placed = [
    (await cluster.addressesFor(cluster.instances[0], 1))[0],
    (await cluster.addressesFor(cluster.instances[1], 1))[0],
  ];
});
after(() => cluster?.stop());

/** Sends `n` messages with acks and checks each comes back as message.new. */
async function roundTrips(socket, n) {
  for (let i = 0; i < n; i++) {
    const id = randomUUID();
    const res = await ack(socket, 'message.send', { channel: 'general', text: `m${i}`, client_message_id: id });
    assert.equal(res.ok, true, JSON.stringify(res));
    await waitForEvent(socket, 'message.new', (m) => m.client_message_id === id);
  }
}

/** Every request of an Engine.IO session went to one instance. */
function upstreamsOf(sid) {
  const lines = cluster.accessLog().filter((l) => l.includes(`sid=${sid}`));
  return new Set(lines.map((l) => cluster.instances.find((i) => l.includes(i.addr))?.name));
}

test('default transports: polling first, then upgraded to websocket, on both instances', async () => {
  for (const [i, localAddress] of placed.entries()) {
    const user = await guest(cluster, `upgrader${i}`);
    const socket = connect(cluster, { cookie: user.cookie, localAddress });
    const seen = { first: null, upgraded: null };
    socket.io.on('open', () => {
      seen.first = socket.io.engine.transport.name;
      socket.io.engine.once('upgrade', (t) => (seen.upgraded = t.name));
    });
    let disconnects = 0;
    socket.on('disconnect', () => disconnects++);
    await connected(socket);
    const sid = socket.io.engine.id;
    for (let t = 0; t < 100 && !seen.upgraded; t++) await new Promise((r) => setTimeout(r, 50));
    assert.equal(seen.first, 'polling');
    assert.equal(seen.upgraded, 'websocket');
    assert.equal(socket.io.engine.transport.name, 'websocket');
    await roundTrips(socket, 3);
    assert.equal(disconnects, 0);
    assert.deepEqual([...upstreamsOf(sid)], [cluster.instances[i].name], 'sticky to one instance');
    socket.close();
  }
});

test('polling only stays on one instance for every request (no "Session ID unknown")', async () => {
  for (const [i, localAddress] of placed.entries()) {
    const user = await guest(cluster, `poller${i}`);
    const socket = connect(cluster, { cookie: user.cookie, localAddress, transports: ['polling'] });
    const errors = [];
    socket.on('connect_error', (e) => errors.push(e.message));
    let disconnects = 0;
    socket.on('disconnect', () => disconnects++);
    await connected(socket);
    const sid = socket.io.engine.id;
    await roundTrips(socket, 10);
    assert.equal(socket.io.engine.transport.name, 'polling');
    assert.deepEqual(errors, []);
    assert.equal(disconnects, 0);
    const requests = cluster.accessLog().filter((l) => l.includes(`sid=${sid}`));
    assert.ok(requests.length >= 10, `long-polling made ${requests.length} requests`);
    assert.ok(requests.every((l) => / 200 /.test(l)), 'every poll answered 200');
    assert.deepEqual([...upstreamsOf(sid)], [cluster.instances[i].name]);
    socket.close();
  }
});

test('websocket only', async () => {
  for (const [i, localAddress] of placed.entries()) {
    const user = await guest(cluster, `websocket${i}`);
    const socket = connect(cluster, { cookie: user.cookie, localAddress, transports: ['websocket'] });
    await connected(socket);
    assert.equal(socket.io.engine.transport.name, 'websocket');
    await roundTrips(socket, 3);
    socket.close();
  }
});
