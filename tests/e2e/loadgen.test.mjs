// banter-load speaks the same protocol as socket.io-client: an official client in one of its
// channels receives exactly the messages the load generator reports as acked and stored, with
// the same payload shape as a message the official client sends itself.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startCluster } from './cluster.mjs';
import { connect, connected, eventually, events, guest, send } from './client.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const bin = process.env.BANTER_LOAD_BIN ?? path.join(root, 'target/debug/banter-load');
let cluster;

before(async () => {
  cluster = await startCluster({ env: { RATE_LIMIT_MESSAGES: '100000' } });
});
after(() => cluster?.stop());

function runLoad(args) {
  return new Promise((resolve, reject) => {
    execFile(bin, args, { timeout: 120_000 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`banter-load failed: ${err.message}\n${stdout}\n${stderr}`));
      else resolve(stdout);
    });
  });
}

async function history(cookie, channel) {
  const res = await fetch(`${cluster.url}/api/channels/${channel}/messages?limit=200`, {
    headers: { cookie },
  });
  assert.equal(res.status, 200);
  return res.json();
}

test('a fanout run agrees with an official socket.io-client in the same channel', async () => {
  const run = `t${Date.now().toString(36)}`;
  const watched = `lg-${run}-0`;
  const observer = await guest(cluster, `watch${run}`.slice(0, 32));
  for (const name of [watched, `lg-${run}-1`]) {
    const res = await fetch(`${cluster.url}/api/channels`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', origin: cluster.origin, cookie: observer.cookie },
      body: JSON.stringify({ name }),
    });
    assert.equal(res.status, 201);
  }
  const socket = await connected(connect(cluster, { cookie: observer.cookie }));
  const joined = await socket.timeout(5000).emitWithAck('channel.join', { channel: watched });
  assert.equal(joined.ok, true);

  const out = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'banter-load-')), 'report.json');
  const [a, b] = cluster.instances;
  const table = await runLoad([
    'fanout', '--targets', `${a.addr},${b.addr}`, '--users', '20', '--channels', '2',
    '--rate', '5', '--duration', '2', '--drain', '2', '--procs', '2', '--sources', '4',
    '--run-id', run, '--label', 'check', '--out', out,
  ]);
  // On failure, the generator's own table says what went wrong.
  const report = JSON.parse(fs.readFileSync(out, 'utf8'));
  const check = (ok, what) => assert.ok(ok, `${what}\n${table}`);
  check(report.ok, 'the run is ok');
  check(report.counters.connected === 20, 'every user connected');
  check(report.counters.sent >= 150, `about 200 sent, got ${report.counters.sent}`);
  check(report.counters.acked === report.counters.sent, 'every send acked');
  check(report.persisted === report.counters.acked, 'every acked message stored, nothing more');
  // Every message reaches the 10 members of its channel.
  check(report.expected_deliveries === report.counters.acked * 10, 'ten receivers per message');
  check(report.counters.delivered === report.expected_deliveries, 'every delivery made');
  check(report.lost === 0, 'nothing lost');
  check(report.e2e.count === report.counters.delivered && report.e2e.p50_ms > 0, 'a latency per delivery');

  // The official client saw the stored messages of its channel, in seq order, once each.
  const stored = await history(observer.cookie, watched);
  const other = await history(observer.cookie, `lg-${run}-1`);
  assert.equal(stored.length + other.length, report.counters.acked);
  await eventually(() => events(socket, 'message.new').length >= stored.length, 'observer caught up');
  const seen = events(socket, 'message.new');
  assert.deepEqual(seen.map((m) => m.id), stored.map((m) => m.id));
  assert.deepEqual(seen.map((m) => m.seq), stored.map((_, i) => i + 1));
  for (const m of seen) assert.match(m.text, /^\d{16} x+$/, 'text: send timestamp (µs) and padding');

  // Same payload shape as a message sent by socket.io-client itself.
  const own = await send(socket, watched, 'from the official client');
  assert.equal(own.ok, true);
  await eventually(() => events(socket, 'message.new').some((m) => m.id === own.message.id), 'own message');
  const mine = events(socket, 'message.new').find((m) => m.id === own.message.id);
  assert.deepEqual(Object.keys(seen[0]).sort(), Object.keys(mine).sort());
  assert.match(seen[0].sender, new RegExp(`^lg${run}\\d+$`));
  socket.close();
});

test('a mixed run edits, reacts and reads, and an official client sees the same changes', async () => {
  const run = `m${Date.now().toString(36)}`;
  const watched = `lg-${run}-0`;
  const observer = await guest(cluster, `mwatch${run}`.slice(0, 32));
  const res = await fetch(`${cluster.url}/api/channels`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', origin: cluster.origin, cookie: observer.cookie },
    body: JSON.stringify({ name: watched }),
  });
  assert.equal(res.status, 201);
  const socket = await connected(connect(cluster, { cookie: observer.cookie }));
  assert.equal((await socket.timeout(5000).emitWithAck('channel.join', { channel: watched })).ok, true);

  const out = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'banter-load-')), 'report.json');
  const [a, b] = cluster.instances;
  const table = await runLoad([
    'mixed', '--targets', `${a.addr},${b.addr}`, '--users', '10', '--channels', '1',
    '--rate', '10', '--duration', '3', '--drain', '2', '--procs', '1', '--sources', '2',
    '--run-id', run, '--label', 'mixed', '--out', out,
  ]);
  const report = JSON.parse(fs.readFileSync(out, 'utf8'));
  const check = (ok, what) => assert.ok(ok, `${what}\n${table}`);
  check(report.ok, 'the run is ok');
  check(report.counters.acked === report.counters.sent, 'every send acked');
  check(report.persisted === report.counters.acked, 'every acked message stored');
  for (const op of ['edit', 'react', 'read']) {
    const o = report.ops[op];
    check(o && o.acked > 0 && o.errors === 0 && o.acked === o.sent, `${op}: sent and acked without errors`);
  }
  // The observer received every change of its channel, in change order, once each.
  const seenChanges = () => socket.received
    .filter((r) => r.event === 'message.updated' || r.event === 'message.reactions')
    .map((r) => r.args[0].change);
  const synced = await socket.timeout(5000).emitWithAck('messages.sync', { channel: watched, after_seq: 0, after_change: 0 });
  const last = synced.last_change;
  const acked = report.ops.edit.acked + report.ops.react.acked + (report.ops.unreact?.acked ?? 0);
  check(last > 0 && last <= acked, `changes made: ${last}, operations acked: ${acked}`);
  await eventually(() => seenChanges().length >= last, 'every change delivered');
  assert.deepEqual(seenChanges(), Array.from({ length: last }, (_, i) => i + 1));
  socket.close();
});
