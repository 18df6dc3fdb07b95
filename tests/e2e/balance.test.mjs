// Load-aware balancing and draining. Through HAProxy (BALANCER=haproxy) each instance reports
// its weight on its agent check, so new sessions go mostly to the instance with room (nginx OSS
// has no agent checks: that test runs behind HAProxy only). Behind either balancer a drain
// moves every socket of an instance to the other, polling clients too, with nothing acked lost
// and each session recovered (socket.recovered), and the drained instance takes no new session.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { io } from 'socket.io-client';
import { startCluster, BALANCER } from './cluster.mjs';
import { connect, connected, events, eventually, guest, keepSending, sleep } from './client.mjs';

const skip = BALANCER !== 'haproxy' && 'agent checks are HAProxy’s (BALANCER=haproxy)';
const ADMIN = 'opsadmin';
const LOADED = 2000;
const CAPACITY = 2500;

let cluster;
before(async () => {
  cluster = await startCluster({
    env: {
      ADMIN_USERS: ADMIN,
      INSTANCE_SOCKET_CAPACITY: String(CAPACITY),
      MAX_SOCKETS_PER_USER: '5000',
      RATE_LIMIT_MESSAGES: '1000',
      DRAIN_GRACE_SECS: '1',
      RECOVERY_MAX_DISCONNECT_SECS: '60',
    },
  });
});
after(() => cluster?.stop());

/** One HTTP request; resolves with { status, headers, body }. */
function request(url, { method = 'GET', headers = {}, body } = {}) {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, headers, agent: false }, (res) => {
      let data = '';
      res.setEncoding('utf8');
      res.on('data', (c) => (data += c));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: data }));
    });
    req.setTimeout(15_000, () => req.destroy(new Error(`${method} ${url}: no answer`)));
    req.on('error', reject);
    if (body) req.write(body);
    req.end();
  });
}

/** The instance HAProxy placed a new Engine.IO session on (its SERVERID cookie), or null. */
async function placeNewSession(headers = {}) {
  const res = await request(`${cluster.url}/socket.io/?EIO=4&transport=polling`, { headers });
  assert.equal(res.status, 200, res.body);
  const cookie = (res.headers['set-cookie'] ?? []).find((c) => c.startsWith('SERVERID='));
  return cookie ? cookie.slice('SERVERID='.length).split(';')[0] : null;
}

async function admin() {
  const res = await request(`${cluster.url}/api/auth/register`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', origin: cluster.origin },
    body: JSON.stringify({ username: ADMIN, email: `${ADMIN}@example.com`, password: 'password123' }),
  });
  assert.equal(res.status, 201, res.body);
  return res.headers['set-cookie'].find((c) => c.startsWith('token=')).split(';')[0];
}

test('new sessions go mostly to the instance with room, by the agents’ weights', { skip }, async () => {
  const [a] = cluster.instances;
  const user = await guest(cluster, 'bal_load');
  // 2,000 sockets on a, straight to it (so HAProxy itself has no connection count to go by).
  const loaded = [];
  for (let i = 0; i < LOADED; i += 100) {
    const batch = Array.from({ length: 100 }, () =>
      io(a.url, { forceNew: true, reconnection: false, transports: ['websocket'], extraHeaders: { Cookie: user.cookie, Origin: cluster.origin } }),
    );
    await Promise.all(batch.map((s) => connected(s)));
    loaded.push(...batch);
  }
  await eventually(async () => (await cluster.metric(a, 'banter_agent_weight')) <= 25, 'a reports its load', 15_000);
  // HAProxy asks every second.
  await sleep(2500);

  const placed = { a: 0, b: 0 };
  for (let i = 0; i < 200; i++) placed[await placeNewSession()]++;
  console.log(`200 new sessions with a at ${LOADED}/${CAPACITY} sockets: a ${placed.a}, b ${placed.b} (agent weights a ${await cluster.metric(a, 'banter_agent_weight')}%, b ${await cluster.metric(cluster.instances[1], 'banter_agent_weight')}%)`);
  assert.equal(placed.a + placed.b, 200);
  assert.ok(placed.b >= 140, `most on the empty instance: ${JSON.stringify(placed)}`);
  for (const s of loaded) s.close();
  await eventually(async () => (await cluster.metric(a, 'banter_sockets')) === 0, 'the load gone', 20_000);
});

test('a drain moves every socket to the other instance, nothing lost, each session recovered', async () => {
  const [a, b] = cluster.instances;
  const adminCookie = await admin();
  // Addresses that go to a (with HAProxy: an even last octet carries SERVERID=a, as a browser
  // placed on a does, and keeps it); the sender on b.
  const [onA] = await cluster.addressesFor(a, 1);
  const [onB] = await cluster.addressesFor(b, 1);
  const clients = [];
  for (let i = 0; i < 10; i++) {
    const user = await guest(cluster, `bal_d${i}`);
    // Default transports: long-polling first, then the websocket upgrade.
    const socket = connect(cluster, { cookie: user.cookie, localAddress: onA, reconnection: true });
    await connected(socket);
    socket.connects = 0;
    socket.recoveries = 0;
    socket.on('connect', () => {
      socket.connects++;
      if (socket.recovered) socket.recoveries++;
    });
    clients.push(socket);
  }
  await eventually(async () => (await cluster.metric(a, 'banter_sockets')) === 10, 'the clients counted on a');
  const senderUser = await guest(cluster, 'bal_sender');
  const sender = await connected(connect(cluster, { cookie: senderUser.cookie, localAddress: onB }));
  const sending = keepSending(sender, 'general', { prefix: 'd' });
  const { acked } = sending;
  await sleep(500);

  const view = JSON.parse((await request(`${cluster.url}/api/admin/cluster`, { headers: { cookie: adminCookie } })).body);
  const aId = `${cluster.prefix}-a`;
  assert.ok([...view.instances.map((i) => i.id), ...view.silent].includes(aId), JSON.stringify(view));
  const drained = await request(`${cluster.url}/api/admin/instances/${aId}/drain`, {
    method: 'POST',
    headers: { cookie: adminCookie, origin: cluster.origin },
  });
  assert.equal(drained.status, 202, drained.body);

  await eventually(() => clients.every((c) => c.connected && c.connects >= 1), 'every client moved', 20_000);
  await eventually(async () => (await cluster.metric(a, 'banter_sockets')) === 0, 'a has no socket', 10_000);
  await sleep(800);
  await sending.stop();
  await sleep(1000);

  const stored = cluster.messages();
  assert.ok(acked.length > 20 && acked.every((seq) => stored.includes(seq)), 'every acked message is stored');
  for (const [i, c] of clients.entries()) {
    assert.ok(events(c, 'instance.draining').length >= 1, `client ${i} was told`);
    assert.equal(c.recoveries, c.connects, `client ${i} recovered (socket.recovered)`);
    const seqs = events(c, 'message.new').map((m) => m.seq);
    assert.equal(new Set(seqs).size, seqs.length, `client ${i} got nothing twice`);
    assert.deepEqual(seqs, stored.filter((s) => s >= seqs[0]), `client ${i} holds every stored message in order`);
  }
  await eventually(async () => (await cluster.metric(b, 'banter_sockets')) === 11, 'every client counted on b');
  assert.equal(await cluster.metric(a, 'banter_sockets_moved_total'), 10);
  // A new session that would go to a lands on b; a is out of the balancer.
  if (BALANCER === 'haproxy') assert.equal(await placeNewSession({ cookie: 'SERVERID=a' }), 'b');
  assert.equal((await request(`${a.url}/ready`)).status, 503);

  const undrained = await request(`${cluster.url}/api/admin/instances/${aId}/drain`, {
    method: 'DELETE',
    headers: { cookie: adminCookie, origin: cluster.origin },
  });
  assert.equal(undrained.status, 202, undrained.body);
  await eventually(async () => (await request(`${a.url}/ready`)).status === 200, 'a is ready again', 10_000);
  console.log(`drain behind ${BALANCER}: ${acked.length} acked while 10 sockets moved from a to b, every one recovered`);
  for (const c of clients) c.close();
  sender.close();
});
