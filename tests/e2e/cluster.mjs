// A real banter cluster for end-to-end tests: a fresh Postgres database and Redis prefix, two
// `banter` processes, and nginx started from the project's nginx.conf (through
// scripts/nginx-local.sh), all on loopback. Optionally the built frontend behind the same nginx.

import { spawn, execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const SECRET = 'e2e-secret-e2e-secret-e2e-secret-0123456789';
const NGINX = fs.existsSync('/usr/sbin/nginx') ? '/usr/sbin/nginx' : 'nginx';
const HAPROXY = fs.existsSync('/usr/sbin/haproxy') ? '/usr/sbin/haproxy' : 'haproxy';
/**
 * The balancer in front of the instances: nginx (`ip_hash`-style stickiness by client address)
 * or haproxy (stickiness by an inserted `SERVERID` cookie), from BALANCER.
 */
export const BALANCER = process.env.BALANCER ?? 'nginx';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/** Waits until `url` answers 200, or throws after `ms`. */
export async function waitFor200(url, ms = 30_000) {
  const deadline = Date.now() + ms;
  for (;;) {
    try {
      const res = await fetch(url);
      if (res.ok) return;
    } catch {
      // not up yet
    }
    if (Date.now() > deadline) throw new Error(`${url} did not answer within ${ms} ms`);
    await sleep(100);
  }
}

function withDatabase(url, db) {
  const u = new URL(url);
  u.pathname = `/${db}`;
  return u.toString();
}

function psql(url, sql) {
  return execFileSync('psql', [url, '-Atqc', sql], { encoding: 'utf8', maxBuffer: 1024 * 1024 * 1024 }).trim();
}

/** A redis-server of the test's own, which it may kill and start again (empty). */
async function privateRedis(work) {
  const port = await freePort();
  const dir = path.join(work, 'redis');
  fs.mkdirSync(dir, { recursive: true });
  const redis = {
    url: `redis://127.0.0.1:${port}`,
    child: null,
    async start() {
      redis.child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir], { stdio: 'ignore' });
      for (let i = 0; i < 200; i++) {
        try {
          execFileSync('redis-cli', ['-p', String(port), 'ping'], { stdio: 'ignore' });
          return;
        } catch {
          await sleep(25);
        }
      }
      throw new Error('redis-server did not start');
    },
    /** SIGKILL: the data is gone. */
    async kill() {
      const child = redis.child;
      if (!child || child.exitCode !== null || child.signalCode !== null) return;
      await new Promise((r) => {
        child.once('exit', r);
        child.kill('SIGKILL');
      });
    },
    async restart() {
      await redis.kill();
      await redis.start();
    },
  };
  await redis.start();
  return redis;
}

/** A TCP proxy to Postgres that the test can cut (connections closed, new ones refused). */
async function postgresProxy(adminUrl) {
  const target = new URL(adminUrl);
  const sockets = new Set();
  const proxy = { cut: false, port: 0 };
  const server = net.createServer((inbound) => {
    if (proxy.cut) return inbound.destroy();
    const outbound = net.connect(Number(target.port || 5432), target.hostname);
    for (const s of [inbound, outbound]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => {});
    }
    inbound.pipe(outbound);
    outbound.pipe(inbound);
    inbound.on('close', () => outbound.destroy());
    outbound.on('close', () => inbound.destroy());
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  proxy.port = server.address().port;
  proxy.stop = () => {
    for (const s of sockets) s.destroy();
  };
  proxy.cutOff = () => {
    proxy.cut = true;
    for (const s of sockets) s.destroy();
  };
  proxy.restore = () => {
    proxy.cut = false;
  };
  proxy.close = () => {
    proxy.cutOff();
    server.close();
  };
  return proxy;
}

/**
 * Starts the cluster. Returns { url, origin, instances, upstreamOf, stop, ... }; every instance
 * is { name, port, addr, url, kill(signal), exited }.
 */
export async function startCluster({ frontend = false, env = {}, ownRedis = false, postgresBehindProxy = false } = {}) {
  const adminUrl = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
  const id = randomUUID().replaceAll('-', '').slice(0, 16);
  const dbName = `banter_test_e2e_${id}`;
  psql(adminUrl, `CREATE DATABASE ${dbName}`);
  const dbUrl = withDatabase(adminUrl, dbName);
  const prefix = `e2e${id}`;
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'banter-e2e-'));
  // Uploaded files: one folder that every instance stores to and serves from.
  const uploads = path.join(work, 'uploads');
  fs.mkdirSync(uploads, { recursive: true });
  const redis = ownRedis ? await privateRedis(work) : null;
  const redisUrl = redis ? redis.url : (process.env.REDIS_URL ?? 'redis://127.0.0.1:6379');
  const pgProxy = postgresBehindProxy ? await postgresProxy(adminUrl) : null;
  const instanceDbUrl = pgProxy
    ? (() => {
        const u = new URL(dbUrl);
        u.hostname = '127.0.0.1';
        u.port = String(pgProxy.port);
        return u.toString();
      })()
    : dbUrl;
  const bin = process.env.BANTER_BIN ?? path.join(root, 'target/debug/banter');
  const [portA, portB, portNginx, portFrontend, agentA, agentB] = await Promise.all([freePort(), freePort(), freePort(), freePort(), freePort(), freePort()]);
  const origin = `http://127.0.0.1:${portNginx}`;
  const children = [];

  const instances = ['a', 'b'].map((name, i) => {
    const port = i === 0 ? portA : portB;
    // HAProxy's agent check (its weight from its load, or drain).
    const agent = `127.0.0.1:${i === 0 ? agentA : agentB}`;
    const instance = {
      name,
      port,
      agent,
      addr: `127.0.0.1:${port}`,
      url: `http://127.0.0.1:${port}`,
      child: null,
      exited: null,
      /** Starts (or starts again) the process. */
      start() {
        const log = fs.openSync(path.join(work, `banter-${name}.log`), 'a');
        const child = spawn(bin, [], {
          env: {
            ...process.env,
            BANTER_ADDR: instance.addr,
            DATABASE_URL: instanceDbUrl,
            REDIS_URL: redisUrl,
            // The suite runs on a Redis Cluster when REDIS_CLUSTER_NODES is set, except for
            // scenarios with a private Redis of their own.
            REDIS_CLUSTER_NODES: redis ? '' : (process.env.REDIS_CLUSTER_NODES ?? ''),
            REDIS_PREFIX: prefix,
            JWT_SECRET: SECRET,
            INSTANCE_ID: `${prefix}-${name}`,
            ...(BALANCER === 'haproxy' ? { AGENT_CHECK_ADDR: agent } : {}),
            ALLOWED_ORIGINS: `${origin},http://localhost:${portNginx}`,
            PRESENCE_HEARTBEAT_SECS: '1',
            PRESENCE_OFFLINE_GRACE_SECS: '1',
            // nginx on loopback reports the client address; every test client shares one, so
            // the per-address caps are raised (the Rust suite tests them).
            TRUSTED_PROXIES: '127.0.0.1/32',
            GUESTS_PER_ADDRESS_PER_HOUR: '100000',
            GUEST_MESSAGES_PER_ADDRESS: '100000000',
            CHANNELS_PER_USER_PER_HOUR: '1000',
            MAX_PENDING_SESSIONS_PER_ADDRESS: '100000',
            RUST_LOG: 'info',
            STORAGE_URL: `file://${uploads}`,
            ...env,
          },
          stdio: ['ignore', log, log],
        });
        instance.child = child;
        instance.exited = null;
        child.once('exit', (code, signal) => {
          instance.exited = { code, signal };
        });
        children.push(child);
        return waitFor200(`${instance.url}/health`, 60_000);
      },
      /** Sends a signal and resolves with how the process ended. */
      kill(signal = 'SIGKILL') {
        const child = instance.child;
        if (instance.exited) return Promise.resolve(instance.exited);
        return new Promise((resolve) => {
          child.once('exit', (code, sig) => resolve({ code, signal: sig }));
          child.kill(signal);
        });
      },
    };
    instance.start().catch(() => {}); // awaited below, with the others
    return instance;
  });

  if (frontend) {
    const log = fs.openSync(path.join(work, 'frontend.log'), 'a');
    const child = spawn('npm', ['run', 'start', '--', '-H', '127.0.0.1', '-p', String(portFrontend)], {
      cwd: path.join(root, 'frontend'),
      env: { ...process.env },
      stdio: ['ignore', log, log],
      detached: true,
    });
    children.push(child);
  }

  const balancerArgs = [`127.0.0.1:${portNginx}`, instances[0].addr, instances[1].addr, `127.0.0.1:${portFrontend}`];
  const nginxDir = path.join(work, BALANCER);
  if (BALANCER === 'haproxy') {
    execFileSync(path.join(root, 'scripts/haproxy-local.sh'), [nginxDir, ...balancerArgs, instances[0].agent, instances[1].agent]);
    const haproxy = spawn(HAPROXY, ['-db', '-f', path.join(nginxDir, 'haproxy.cfg')], {
      stdio: ['ignore', fs.openSync(path.join(nginxDir, 'access.log'), 'a'), fs.openSync(path.join(work, 'haproxy.out'), 'a')],
    });
    children.push(haproxy);
  } else {
    execFileSync(path.join(root, 'scripts/nginx-local.sh'), [nginxDir, ...balancerArgs]);
    const nginx = spawn(NGINX, ['-p', nginxDir, '-c', path.join(nginxDir, 'nginx.conf'), '-e', path.join(nginxDir, 'error.log'), '-g', 'daemon off;'], {
      stdio: ['ignore', 'ignore', fs.openSync(path.join(work, 'nginx.out'), 'a')],
    });
    children.push(nginx);
  }

  const cluster = {
    url: origin,
    origin,
    balancer: BALANCER,
    work,
    uploads,
    dbUrl,
    redisUrl,
    prefix,
    instances,
    redis,
    pgProxy,
    /** Rows of the messages table of a channel, by seq. */
    messages(channel = 'general') {
      const out = psql(dbUrl, `SELECT m.seq FROM messages m JOIN channels c ON c.id = m.channel_id WHERE c.name = '${channel}' ORDER BY m.seq`);
      return out ? out.split('\n').map(Number) : [];
    },
    /** Ids of the messages table of a channel. */
    messageIds(channel = 'general') {
      const out = psql(dbUrl, `SELECT m.id FROM messages m JOIN channels c ON c.id = m.channel_id WHERE c.name = '${channel}' ORDER BY m.seq`);
      return out ? out.split('\n') : [];
    },
    /**
     * With HAProxy, the `SERVERID` cookie that places a client from this loopback source address
     * (its last octet's parity picks the instance), so that tests place clients as they do with
     * nginx's address hash; null with nginx.
     */
    placementCookie(localAddress) {
      if (BALANCER !== 'haproxy' || !localAddress) return null;
      const octet = Number(localAddress.split('.').pop());
      return `SERVERID=${octet % 2 === 0 ? 'a' : 'b'}`;
    },
    /** The value of an unlabelled series in `instance`'s /metrics (NaN when absent). */
    async metric(instance, name) {
      const text = await (await fetch(`${instance.url}/metrics`)).text();
      const line = text.split('\n').find((l) => l.startsWith(`${name} `));
      return line ? Number(line.split(' ')[1]) : NaN;
    },
    /**
     * With HAProxy, waits until every instance's agent reports at least `weight` percent and
     * HAProxy has asked again (every second), so that placement is by equal weights.
     */
    async agentsAtLeast(weight) {
      const deadline = Date.now() + 20_000;
      for (;;) {
        const weights = await Promise.all(instances.map((inst) => cluster.metric(inst, 'banter_agent_weight')));
        if (weights.every((w) => w >= weight)) break;
        if (Date.now() > deadline) throw new Error(`agent weights stay below ${weight}: ${weights}`);
        await sleep(250);
      }
      await sleep(2500);
    },
    /** The balancer's access log lines. */
    accessLog() {
      const file = path.join(nginxDir, 'access.log');
      return fs.existsSync(file) ? fs.readFileSync(file, 'utf8').split('\n').filter(Boolean) : [];
    },
    /** The instance the balancer sends requests from this loopback source address to. */
    async upstreamOf(localAddress) {
      const probe = randomUUID();
      const placement = cluster.placementCookie(localAddress);
      await new Promise((resolve, reject) => {
        const headers = placement ? { cookie: placement } : {};
        const req = http.get(`${origin}/ready?probe=${probe}`, { localAddress, agent: false, headers }, (res) => {
          res.resume();
          res.on('end', resolve);
        });
        req.setTimeout(15_000, () => req.destroy(new Error(`probe from ${localAddress}: no answer`)));
        req.on('error', reject);
      });
      for (let i = 0; i < 50; i++) {
        const line = cluster.accessLog().find((l) => l.includes(probe));
        if (line) return instances.find((inst) => line.includes(inst.addr));
        await sleep(20);
      }
      throw new Error(`no access log line for probe from ${localAddress}`);
    },
    /**
     * Resolves once the balancer sends requests to `instance` again: after a restart, nginx
     * keeps a failed upstream out for its fail_timeout and HAProxy for its health checks, and
     * until then every address maps to the others.
     */
    async routed(instance, ms = 20_000) {
      const deadline = Date.now() + ms;
      for (;;) {
        for (let host = 2; host < 40; host++) {
          if ((await cluster.upstreamOf(`127.0.0.${host}`)) === instance) return;
        }
        if (Date.now() > deadline) throw new Error(`the balancer sends nothing to ${instance.name}`);
        await sleep(250);
      }
    },
    /** Loopback source addresses whose requests nginx sends to `instance`. */
    async addressesFor(instance, count, start = 2) {
      const found = [];
      for (let host = start; host < 250 && found.length < count; host++) {
        const address = `127.0.0.${host}`;
        if ((await cluster.upstreamOf(address)) === instance) found.push(address);
      }
      if (found.length < count) throw new Error(`only ${found.length} addresses map to ${instance.name}`);
      return found;
    },
    async stop() {
      for (const child of children) {
        if (child.exitCode === null && child.signalCode === null) {
          try {
            if (child.spawnargs[0] === 'npm') process.kill(-child.pid, 'SIGTERM');
            else child.kill('SIGTERM');
          } catch {
            // already gone
          }
        }
      }
      await Promise.all(children.map((c) => (c.exitCode !== null || c.signalCode !== null ? null : new Promise((r) => { const t = setTimeout(() => { try { c.kill('SIGKILL'); } catch { /* gone */ } r(); }, 10_000); c.once('exit', () => { clearTimeout(t); r(); }); }))));
      pgProxy?.close();
      await redis?.kill();
      try {
        psql(adminUrl, `DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`);
      } catch {
        // best effort
      }
      // (A test Redis Cluster is thrown away whole when the suite ends.)
      if (!redis && !process.env.REDIS_CLUSTER_NODES) try {
        // Hash-tagged keys begin with '{', so the prefix may come after it.
        const keys = execFileSync('redis-cli', ['-u', redisUrl, '--scan', '--pattern', `*${prefix}*`], { encoding: 'utf8' }).split('\n').filter(Boolean);
        for (let i = 0; i < keys.length; i += 500) execFileSync('redis-cli', ['-u', redisUrl, 'DEL', ...keys.slice(i, i + 500)]);
      } catch {
        // best effort
      }
      if (!process.env.E2E_KEEP) fs.rmSync(work, { recursive: true, force: true });
    },
  };

  try {
    await Promise.all(instances.map((inst) => waitFor200(`${inst.url}/health`, 60_000)));
    await waitFor200(`${origin}/ready`, 30_000);
    if (BALANCER === 'haproxy') {
      // HAProxy's health checks see both instances up: a placed request reaches its instance.
      for (const [i, address] of ['127.0.0.2', '127.0.0.3'].entries()) {
        const deadline = Date.now() + 30_000;
        while ((await cluster.upstreamOf(address)) !== instances[i]) {
          if (Date.now() > deadline) throw new Error(`HAProxy does not send to instance ${instances[i].name}`);
          await sleep(200);
        }
      }
    }
    if (frontend) await waitFor200(`${origin}/`, 60_000);
  } catch (e) {
    await cluster.stop();
    throw e;
  }
  return cluster;
}
