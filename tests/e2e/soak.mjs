// The adversarial soak: normal users chat on two instances behind the balancer (sends, edits,
// reactions, read markers, uploads, reconnects) for a given time while, at random moments,
// hostile clients attack (floods, stalled readers, decoding bombs, trickled uploads, files of
// others, oversized bodies, arbitrary payloads, bans) and faults are injected (a Redis restart,
// or with --redis-cluster a master failover on a Redis Cluster of its own; a Postgres cut; an
// instance SIGKILL and restart). Then it checks: every acked message stored
// once and held by every normal user, none delivered twice, no instance crashed, every hostile
// socket gone, each instance's RSS under a bound, the normal users' ack p99 under a bound, and
// every attack answered as the contract says.
//
//   node soak.mjs [--seconds 180] [--users 12] [--rss-mib 512] [--p99-ms 3000] [--report file]
//                 [--redis-cluster]
//
// It exits 0 when every check holds (its last line: "soak: N passed, 0 failed").

import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { randomUUID } from 'node:crypto';
import { startCluster, waitFor200 } from './cluster.mjs';
import { ack, connect, connected, eventually, guest, sleep } from './client.mjs';
import { chatClient, checkHeld, sendOne, totals } from './chat.mjs';
import { privateRedisCluster } from './rediscluster.mjs';

const arg = (name, fallback) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : fallback;
};
const SECONDS = Number(arg('seconds', '180'));
const USERS = Number(arg('users', '12'));
const RSS_MIB = Number(arg('rss-mib', '512'));
const P99_MS = Number(arg('p99-ms', '3000'));
const REPORT = arg('report', null);
const REDIS_CLUSTER = process.argv.includes('--redis-cluster');
const ATTACK_EVERY_MS = 6_000;
const FAULT_EVERY_MS = 40_000;

const log = (row) => console.log(JSON.stringify({ at: new Date().toISOString(), ...row }));
const pick = (list) => list[Math.floor(Math.random() * list.length)];

/** A 35-byte GIF whose screen is 8000 × 8000 pixels. */
const SCREEN_BOMB = Buffer.from('GIF89a\x40\x1f\x40\x1f\x80\x00\x00\xff\xff\xff\x00\x00\x00\x2c\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02\x44\x01\x00\x3b', 'latin1');

/** An HTTP request through the balancer from `localAddress`; resolves { status, body }. */
function request(cluster, { method = 'GET', path, cookie, localAddress, headers = {}, body }) {
  return new Promise((resolve) => {
    const req = http.request(`${cluster.url}${path}`, {
      method,
      localAddress,
      agent: false,
      headers: { origin: cluster.origin, ...(cookie ? { cookie } : {}), ...headers },
    }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let json = null;
        try {
          json = JSON.parse(text);
        } catch {
          // not JSON
        }
        resolve({ status: res.statusCode, body: json, text });
      });
    });
    req.on('error', (e) => resolve({ status: 0, body: null, text: String(e) }));
    req.setTimeout(30_000, () => req.destroy(new Error('timeout')));
    if (body) req.write(body);
    req.end();
  });
}

/** A multipart upload of `bytes`; resolves { status, body }. */
function upload(cluster, user, localAddress, bytes, name = 'note.txt', type = 'text/plain') {
  const boundary = `soak${randomUUID()}`;
  const head = Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="${name}"\r\nContent-Type: ${type}\r\n\r\n`);
  const tail = Buffer.from(`\r\n--${boundary}--\r\n`);
  return request(cluster, {
    method: 'POST',
    path: '/api/upload/upload',
    cookie: user.cookie,
    localAddress,
    headers: { 'content-type': `multipart/form-data; boundary=${boundary}` },
    body: Buffer.concat([head, bytes, tail]),
  });
}

async function register(cluster, username) {
  const res = await request(cluster, {
    method: 'POST',
    path: '/api/auth/register',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ username, email: `${username}@example.com`, password: 'password123' }),
  });
  if (res.status !== 201) throw new Error(`register ${username}: ${res.status} ${res.text}`);
  const cookie = await loginCookie(cluster, username);
  return { id: res.body.user.id, username, cookie };
}

async function loginCookie(cluster, username) {
  const res = await fetch(`${cluster.url}/api/auth/login`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', origin: cluster.origin },
    body: JSON.stringify({ username, password: 'password123' }),
  });
  return res.headers.getSetCookie().find((c) => c.startsWith('token=')).split(';')[0];
}

/** The value of a metric series on an instance (0 when it cannot be read). */
async function metric(instance, series) {
  try {
    const text = await (await fetch(`${instance.url}/metrics`)).text();
    const line = text.split('\n').find((l) => l.startsWith(`${series} `));
    return line ? Number(line.split(' ')[1]) : 0;
  } catch {
    return 0;
  }
}

function rssKiB(pid) {
  try {
    const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
    return Number(status.match(/VmRSS:\s+(\d+)/)[1]);
  } catch {
    return 0;
  }
}

/** What a normal user does, until stopped. */
async function behave(cluster, c, state, localAddress) {
  const mine = [];
  while (state.running) {
    const r = Math.random();
    try {
      if (!c.socket.connected) {
        await sleep(200);
        continue;
      }
      if (r < 0.6) {
        const m = await sendOne(c, `${c.user.username} ${c.sent}`);
        if (m) mine.push(m.id);
      } else if (r < 0.7 && mine.length) {
        const res = await ack(c.socket, 'message.edit', { channel: 'general', id: pick(mine), text: `edited ${c.sent}` });
        state.count(res.ok ? 'edit ok' : `edit ${res.error.code}`);
      } else if (r < 0.8 && c.held.size) {
        const target = pick([...c.held.values()]);
        const event = Math.random() < 0.7 ? 'reaction.add' : 'reaction.remove';
        const res = await ack(c.socket, event, { channel: 'general', id: target.id, emoji: pick(['👍', '🎉', '❤️', '👀']) });
        state.count(res.ok ? 'reaction ok' : `reaction ${res.error.code}`);
      } else if (r < 0.88 && c.held.size) {
        const res = await ack(c.socket, 'channel.read', { channel: 'general', seq: Math.max(...c.held.keys()) });
        state.count(res.ok ? 'read ok' : `read ${res.error.code}`);
      } else if (r < 0.92) {
        const res = await upload(cluster, c.user, localAddress, Buffer.from(`notes of ${c.user.username}\n`));
        state.count(`upload ${res.status}`);
        if (res.status === 200) {
          const m = await ack(c.socket, 'message.send', { channel: 'general', text: 'a file', client_message_id: randomUUID(), file: { url: res.body.url, name: 'note.txt', type: 'text/plain' } });
          c.sent++;
          if (m.ok) c.acked.push(m.message.id);
          else c.refused++;
        }
      } else if (r < 0.94) {
        // A reconnect, as a page reload does.
        c.socket.disconnect();
        await sleep(100);
        c.socket.connect();
        await connected(c.socket).catch(() => {});
        await c.sync().catch(() => {});
        state.count('reconnect');
      }
    } catch {
      state.count('no answer');
    }
    await sleep(150 + Math.random() * 150);
  }
}

/** Hostile clients, each answering what it got against what the contract says. */
function attacks(cluster, world) {
  let n = 0;
  const hostileAddress = () => `127.0.0.${200 + (n++ % 50)}`;
  const expect = (name, got, wanted) => {
    if (!wanted.includes(got)) world.violations.push(`${name}: got ${got}, expected ${wanted.join(' or ')}`);
    return got;
  };
  return {
    async 'sync flood'() {
      const user = await guest(cluster, `flood${randomUUID().slice(0, 8)}`);
      const s = connect(cluster, { cookie: user.cookie, localAddress: hostileAddress() });
      await connected(s);
      for (let i = 0; i < 3000; i++) s.emit('messages.sync', { channel: 'general', after_seq: 0, limit: 500 });
      await sleep(3000);
      const refused = s.received.filter((r) => r.event === 'error' && r.args[0]?.code === 'rate_limited').length;
      s.close();
      return { refused };
    },
    async 'stalled reader, then banned'() {
      const user = await register(cluster, `mal${randomUUID().slice(0, 8)}`);
      const s = connect(cluster, { cookie: user.cookie, localAddress: hostileAddress(), transports: ['websocket'] });
      await connected(s);
      // Stop reading: the kernel's buffers fill, then the server's.
      s.io.engine.transport.ws._socket.pause();
      for (let i = 0; i < 40; i++) s.emit('messages.sync', { channel: 'general', after_seq: 0, limit: 500 });
      await sleep(3000);
      const ban = await request(cluster, { method: 'POST', path: `/api/admin/users/${user.username}/ban`, cookie: world.admin.cookie });
      expect('ban', ban.status, [200]);
      await sleep(3000);
      s.io.engine.transport.ws._socket.resume();
      await eventually(() => !s.connected, 'the banned stalled socket closed', 15_000).catch(() => world.violations.push('a banned stalled socket stayed connected'));
      s.close();
      return { closed: !s.connected };
    },
    async 'decoding bombs'() {
      const user = await guest(cluster, `bomb${randomUUID().slice(0, 8)}`);
      const address = hostileAddress();
      const answers = await Promise.all(Array.from({ length: 8 }, () => upload(cluster, user, address, SCREEN_BOMB, 'tiny.gif', 'image/gif')));
      // Two at a time per user: the others are refused before they are read.
      for (const a of answers) expect('screen bomb', a.status, [413, 429]);
      return { statuses: answers.map((a) => a.status).join(',') };
    },
    async 'trickled uploads'() {
      const user = await guest(cluster, `trickle${randomUUID().slice(0, 8)}`);
      const sockets = [];
      for (let i = 0; i < 8; i++) {
        const sock = net.connect({ host: new URL(cluster.url).hostname, port: Number(new URL(cluster.url).port), localAddress: hostileAddress() });
        sock.on('error', () => {});
        const boundary = 'trickle';
        sock.write(`POST /api/upload/upload HTTP/1.1\r\nHost: x\r\nCookie: ${user.cookie}\r\nContent-Type: multipart/form-data; boundary=${boundary}\r\nContent-Length: 100000\r\n\r\n--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="slow.txt"\r\nContent-Type: text/plain\r\n\r\n`);
        sockets.push(sock);
      }
      const drip = setInterval(() => sockets.forEach((s) => s.write('x')), 2000);
      await sleep(12_000);
      clearInterval(drip);
      sockets.forEach((s) => s.destroy());
      return {};
    },
    async 'files of others'() {
      // A third party asks for a direct message's file and for a private channel's history.
      const res = await request(cluster, { path: world.dmFile, cookie: world.outsider.cookie });
      expect('a direct message file, asked by a third party', res.status, [404]);
      const history = await request(cluster, { path: `/api/channels/${world.dm}/messages`, cookie: world.outsider.cookie });
      expect('a direct message history, asked by a third party', history.status, [403]);
      return {};
    },
    async 'bodies over their limits'() {
      const user = await guest(cluster, `big${randomUUID().slice(0, 8)}`);
      const address = hostileAddress();
      const padded = `{"name": "a.txt", "type": "text/plain", "size": 1000}${' '.repeat(1024 * 1024)}`;
      const announce = await request(cluster, { method: 'POST', path: '/api/uploads', cookie: user.cookie, localAddress: address, headers: { 'content-type': 'application/json' }, body: padded });
      expect('a 1 MiB announcement', announce.status, [400, 413]);
      const ticket = await request(cluster, { method: 'POST', path: '/api/uploads', cookie: user.cookie, localAddress: address, headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name: 'a.txt', type: 'text/plain', size: 1000 }) });
      if (ticket.status === 201) {
        const put = await request(cluster, { method: 'PUT', path: ticket.body.upload.url, localAddress: address, headers: { 'content-type': 'text/plain' }, body: Buffer.alloc(20_000, 97) });
        expect('a PUT of 20 times its announced size', put.status, [413]);
      }
      const odd = await request(cluster, { path: '/api/channels/%ff%fe/messages', cookie: user.cookie, localAddress: address });
      expect('a path that is not UTF-8', odd.status, [400]);
      if (odd.body?.code !== 'invalid_payload') world.violations.push(`a path that is not UTF-8 answered ${odd.text.slice(0, 80)}`);
      return {};
    },
    async 'arbitrary payloads'() {
      const user = await guest(cluster, `fuzz${randomUUID().slice(0, 8)}`);
      const s = connect(cluster, { cookie: user.cookie, localAddress: hostileAddress() });
      await connected(s);
      const events = ['channel.join', 'message.send', 'messages.sync', 'message.edit', 'reaction.add', 'channel.read', 'user.typing'];
      const values = [null, 7, 'general', [], {}, { channel: 'general' }, { channel: 'general', emoji: '\u202e' }, { channel: 'x'.repeat(70) }, { channel: 'general', text: '\u0000' }];
      let answered = 0;
      for (let i = 0; i < 100; i++) {
        const res = await ack(s, pick(events), pick(values)).catch(() => null);
        if (res && (res.ok === true || typeof res.error?.code === 'string')) answered++;
      }
      expect('answers to 100 arbitrary payloads', answered, [100]);
      s.close();
      return { answered };
    },
    async 'typing flood'() {
      const user = await guest(cluster, `typist${randomUUID().slice(0, 8)}`);
      const s = connect(cluster, { cookie: user.cookie, localAddress: hostileAddress() });
      await connected(s);
      for (let i = 0; i < 5000; i++) s.emit('user.typing', { channel: 'general', isTyping: i % 2 === 0 });
      await sleep(1500);
      s.close();
      return {};
    },
  };
}

/** Faults, one at a time. */
function faults(cluster, world, redisCluster) {
  const [a, b] = cluster.instances;
  let kills = 0;
  const redisFault = redisCluster
    ? {
        async 'redis cluster master failover'() {
          const ms = await redisCluster.failOver(pick(redisCluster.masters()));
          world.failovers.push(ms);
        },
      }
    : {
        async 'redis restart'() {
          await cluster.redis.kill();
          await sleep(2000);
          await cluster.redis.restart();
        },
      };
  return {
    ...redisFault,
    async 'postgres cut'() {
      cluster.pgProxy.cutOff();
      await sleep(3000);
      cluster.pgProxy.restore();
    },
    async 'instance SIGKILL and restart'() {
      const victim = kills++ % 2 === 0 ? a : b;
      world.killed.add(victim.child.pid);
      await victim.kill('SIGKILL');
      await sleep(2000);
      await victim.start();
      world.pids.add(victim.child.pid);
    },
  };
}

async function main() {
  const redisCluster = REDIS_CLUSTER ? privateRedisCluster() : null;
  const cluster = await startCluster({
    ownRedis: !redisCluster,
    postgresBehindProxy: true,
    env: {
      RATE_LIMIT_MESSAGES: '100000',
      UPLOADS_PER_USER_PER_HOUR: '100000',
      ADMIN_USERS: 'soakadmin',
      RUST_LOG: 'warn',
      ...(redisCluster ? { REDIS_CLUSTER_NODES: redisCluster.nodes } : {}),
    },
  }).catch((e) => {
    redisCluster?.stop();
    throw e;
  });
  const checks = [];
  const check = (name, ok, detail = '') => {
    checks.push({ name, ok, detail });
    log({ check: name, ok, detail });
  };
  try {
    const world = { violations: [], failovers: [], killed: new Set(), pids: new Set(cluster.instances.map((i) => i.child.pid)), counts: {} };
    world.admin = await register(cluster, 'soakadmin');
    world.outsider = await guest(cluster, 'outsider');
    // A direct message with a file, which the outsider must not reach.
    const ann = await guest(cluster, 'dmann');
    await guest(cluster, 'dmbob');
    const opened = await request(cluster, { method: 'POST', path: '/api/dms', cookie: ann.cookie, headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username: 'dmbob' }) });
    world.dm = opened.body.channel.name;
    const dmUpload = await upload(cluster, ann, '127.0.0.199', Buffer.from('for dmbob only\n'));
    world.dmFile = dmUpload.body.url;
    const annSocket = connect(cluster, { cookie: ann.cookie });
    await connected(annSocket);
    await ack(annSocket, 'channel.join', world.dm);
    await ack(annSocket, 'message.send', { channel: world.dm, text: 'the file', client_message_id: randomUUID(), file: { url: world.dmFile, name: 'note.txt', type: 'text/plain' } });
    annSocket.close();

    const clients = [];
    const addresses = [];
    for (let i = 0; i < USERS; i++) {
      const localAddress = `127.0.0.${2 + i}`;
      const user = await guest(cluster, `soak${i}`);
      const socket = connect(cluster, { cookie: user.cookie, localAddress, reconnection: true });
      clients.push(chatClient(socket, user));
      addresses.push(localAddress);
      await connected(socket);
    }
    const state = {
      running: true,
      count: (what) => {
        world.counts[what] = (world.counts[what] ?? 0) + 1;
      },
    };
    const peaks = {};
    const sampler = setInterval(() => {
      for (const inst of cluster.instances) {
        if (!inst.child || inst.exited) continue;
        peaks[inst.name] = Math.max(peaks[inst.name] ?? 0, rssKiB(inst.child.pid));
      }
    }, 500);
    const users = clients.map((c, i) => behave(cluster, c, state, addresses[i]));

    const attackList = Object.entries(attacks(cluster, world));
    const faultList = Object.entries(faults(cluster, world, redisCluster));
    const tried = { attacks: {}, faults: {} };
    const started = Date.now();
    let nextFault = started + FAULT_EVERY_MS / 2;
    let a = 0;
    let f = 0;
    while (Date.now() - started < SECONDS * 1000) {
      if (Date.now() >= nextFault) {
        const [name, run] = faultList[f++ % faultList.length];
        log({ fault: name });
        await run().catch((e) => world.violations.push(`fault ${name} could not be injected: ${e.message}`));
        tried.faults[name] = (tried.faults[name] ?? 0) + 1;
        nextFault = Date.now() + FAULT_EVERY_MS;
        continue;
      }
      const [name, run] = attackList[a++ % attackList.length];
      const result = await run().catch((e) => ({ error: e.message }));
      log({ attack: name, ...result });
      tried.attacks[name] = (tried.attacks[name] ?? 0) + 1;
      await sleep(ATTACK_EVERY_MS * (0.5 + Math.random()));
    }

    state.running = false;
    await Promise.all(users);
    clearInterval(sampler);
    await Promise.all(cluster.instances.map((inst) => waitFor200(`${inst.url}/ready`, 60_000)));
    await eventually(() => clients.every((c) => c.socket.connected), 'every normal user connected', 60_000);
    await sleep(1000);
    await Promise.all(clients.map((c) => c.sync()));

    const t = totals(clients);
    const latencies = clients.flatMap((c) => c.latencies).sort((x, y) => x - y);
    const p99 = latencies[Math.floor(latencies.length * 0.99)] ?? 0;
    const p50 = latencies[Math.floor(latencies.length * 0.5)] ?? 0;
    let stored = [];
    try {
      stored = checkHeld(cluster, clients);
      check('every acked message stored once and held by every user, none twice', true, `${t.acked} acked, ${stored.length} stored`);
    } catch (e) {
      check('every acked message stored once and held by every user, none twice', false, e.message);
    }
    check('enough traffic', t.acked > USERS * SECONDS / 4, `${t.acked} acked of ${t.sent} sent`);
    const crashed = cluster.instances.filter((inst) => inst.exited && !world.killed.has(inst.child.pid));
    check('no instance crashed', crashed.length === 0, crashed.map((i) => `${i.name} ${JSON.stringify(i.exited)}`).join(', '));
    const sockets = (await Promise.all(cluster.instances.map((i) => metric(i, 'banter_sockets')))).reduce((x, y) => x + y, 0);
    await eventually(async () => (await Promise.all(cluster.instances.map((i) => metric(i, 'banter_sockets')))).reduce((x, y) => x + y, 0) === USERS, 'only the normal users connected', 60_000).catch(() => {});
    const left = (await Promise.all(cluster.instances.map((i) => metric(i, 'banter_sockets')))).reduce((x, y) => x + y, 0);
    check('every hostile socket gone', left === USERS, `${left} sockets for ${USERS} users (${sockets} when the run ended)`);
    const peakMiB = Math.max(...Object.values(peaks)) / 1024;
    check(`RSS under ${RSS_MIB} MiB per instance`, peakMiB < RSS_MIB, `peaks ${JSON.stringify(Object.fromEntries(Object.entries(peaks).map(([k, v]) => [k, Math.round(v / 1024)])))} MiB`);
    check(`normal users' ack p99 under ${P99_MS} ms`, p99 < P99_MS, `p50 ${p50.toFixed(1)} ms, p99 ${p99.toFixed(1)} ms over ${latencies.length} acks`);
    check('every attack answered as the contract says', world.violations.length === 0, world.violations.join('; '));
    const report = { seconds: SECONDS, users: USERS, redis: redisCluster ? 'cluster' : 'single', failover_ms: world.failovers, tried, totals: t, stored: stored.length, p50_ms: p50, p99_ms: p99, rss_peak_mib: Object.fromEntries(Object.entries(peaks).map(([k, v]) => [k, Math.round(v / 1024)])), actions: world.counts, checks };
    log({ report });
    if (REPORT) fs.writeFileSync(REPORT, JSON.stringify(report, null, 2));
    for (const c of clients) c.close();
  } finally {
    await cluster.stop();
    redisCluster?.stop();
  }
  const failed = checks.filter((c) => !c.ok).length;
  console.log(`soak: ${checks.length - failed} passed, ${failed} failed`);
  process.exit(failed === 0 ? 0 : 1);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
