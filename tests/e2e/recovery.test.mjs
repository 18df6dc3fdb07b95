// Connection state recovery with the official socket.io-client, as a stock client uses it: no
// messages.sync, only `socket.recovered`. A lost transport and a SIGKILLed instance each come
// back with exactly the missed messages and changes, in order, none twice; past the window, or
// with someone else's pid, nothing is recovered.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startCluster } from './cluster.mjs';
import { WAIT_MS, ack, connect, connected, events, eventually, guest, keepSending, send, sleep, waitForEvent } from './client.mjs';

const WINDOW_SECS = 5;

let cluster;
before(async () => {
  cluster = await startCluster({
    env: { RATE_LIMIT_MESSAGES: '1000', RECOVERY_MAX_DISCONNECT_SECS: String(WINDOW_SECS), RUST_LOG: process.env.E2E_RUST_LOG ?? 'info' },
  });
});
after(() => cluster?.stop());

/** The durable events a socket got, in order: `new <seq>` or `<event> <change>`. */
function durable(socket) {
  return socket.received
    .filter((r) => ['message.new', 'message.updated', 'message.deleted', 'message.reactions'].includes(r.event))
    .map((r) => (r.event === 'message.new' ? `new ${r.args[0].seq}` : `${r.event} ${r.args[0].change}`));
}

/** Resolves with the next `connect` of a socket; rejects on its `connect_error` or after WAIT_MS. */
function nextConnect(socket) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('no connect within timeout')), WAIT_MS);
    socket.once('connect', () => {
      clearTimeout(timer);
      resolve();
    });
    socket.once('connect_error', (err) => {
      clearTimeout(timer);
      reject(new Error(`connect_error: ${err?.message ?? err}`));
    });
  });
}

test('a lost transport recovers with exactly the messages and changes missed', async () => {
  const ann = await guest(cluster, 'rc_ann');
  const bob = await guest(cluster, 'rc_bob');
  const a = await connected(connect(cluster, { cookie: ann.cookie, localAddress: '127.0.0.2' }));
  const b = await connected(connect(cluster, { cookie: bob.cookie, localAddress: '127.0.0.3' }));
  assert.equal(a.recovered, false);
  const one = await send(b, 'general', 'one');
  const two = await send(b, 'general', 'two');
  await waitForEvent(a, 'message.new', (m) => m.seq === two.message.seq);
  const before = a.received.length;

  // The transport goes; the client does not come back until told to.
  a.io.reconnection(false);
  const gone = new Promise((resolve) => a.once('disconnect', resolve));
  a.io.engine.close();
  // socket.io-client reports closing its own engine as 'forced close'; the server sees a
  // closed transport, as after a lost connection.
  assert.equal(await gone, 'forced close');
  const three = await send(b, 'general', 'three');
  const edited = await ack(b, 'message.edit', { channel: 'general', id: one.message.id, text: 'one, edited' });
  assert.equal(edited.ok, true, JSON.stringify(edited));
  const reacted = await ack(b, 'reaction.add', { channel: 'general', id: two.message.id, emoji: '🎉' });
  assert.equal(reacted.ok, true, JSON.stringify(reacted));
  const four = await send(b, 'general', 'four');

  const back = nextConnect(a);
  a.connect();
  await back;
  assert.equal(a.recovered, true, 'socket.recovered');
  await eventually(() => durable(a).length >= 6, 'the missed events');
  await sleep(300);
  const missed = a.received.slice(before).filter((r) => r.event !== 'channel.presence' && r.event !== 'user.status');
  assert.deepEqual(
    missed.map((r) => (r.event === 'message.new' ? `new ${r.args[0].seq}` : `${r.event} ${r.args[0].change}`)),
    [`new ${three.message.seq}`, `new ${four.message.seq}`, `message.updated ${edited.message.change}`, `message.reactions ${reacted.message.change}`],
  );
  assert.equal(events(a, 'message.updated').at(-1).text, 'one, edited');
  assert.equal(events(a, 'message.reactions').at(-1).emoji, '🎉');
  // Back in its channel: the next message comes once.
  const five = await send(b, 'general', 'five');
  await waitForEvent(a, 'message.new', (m) => m.seq === five.message.seq);
  await sleep(300);
  const seqs = events(a, 'message.new').map((m) => m.seq);
  assert.equal(new Set(seqs).size, seqs.length, `nothing twice: ${seqs}`);
  a.close();
  b.close();
});

test('the clients of a SIGKILLed instance recover on the other with every message in order', async () => {
  const [victim, survivor] = cluster.instances;
  const onVictim = await cluster.addressesFor(victim, 4);
  const onSurvivor = await cluster.addressesFor(survivor, 1);
  const clients = [];
  for (const [i, localAddress] of onVictim.entries()) {
    const user = await guest(cluster, `rk${i}`);
    const socket = await connected(connect(cluster, { cookie: user.cookie, localAddress, reconnection: true }));
    socket.connects = 0;
    socket.on('connect', () => {
      socket.connects++;
      socket.recoveries = (socket.recoveries ?? 0) + (socket.recovered ? 1 : 0);
    });
    clients.push(socket);
  }
  const senderUser = await guest(cluster, 'rk_sender');
  const sender = await connected(connect(cluster, { cookie: senderUser.cookie, localAddress: onSurvivor[0] }));
  // Refused around the kill: not acked.
  const sending = keepSending(sender, 'general', { prefix: 'k' });
  const { acked } = sending;
  await sleep(800);
  await victim.kill('SIGKILL');
  await eventually(() => clients.every((c) => c.connects >= 1), 'every client reconnected', 20_000);
  await sleep(800);
  await sending.stop();
  await sleep(1000);

  const stored = cluster.messages();
  assert.ok(acked.every((seq) => stored.includes(seq)), 'every acked message is stored');
  for (const [i, c] of clients.entries()) {
    assert.equal(c.recoveries, c.connects, `client ${i} recovered each time (socket.recovered)`);
    const seqs = events(c, 'message.new').map((m) => m.seq);
    assert.equal(new Set(seqs).size, seqs.length, `client ${i} got no message twice`);
    // From its first message on, every stored one, in seq order.
    const expected = stored.filter((s) => s >= seqs[0]);
    if (JSON.stringify(seqs) !== JSON.stringify(expected)) console.log(`client ${i}'s last events`, JSON.stringify(c.received.map((r) => [r.event, r.args[0]?.seq ?? r.args[0], r.args.at(-1)]).slice(-60)));
    assert.deepEqual(seqs, expected, `client ${i} holds every stored message in order`);
  }
  console.log(`recovery after SIGKILL: ${acked.length} acked, ${stored.length} stored, ${clients.length} clients recovered`);
  for (const c of clients) c.close();
  sender.close();
  await victim.start();
  // Until the balancer takes the victim back, every address maps to the survivor.
  await cluster.routed(victim);
});

test('past the window, or with another user\'s pid, nothing is recovered', async () => {
  const [, survivor] = cluster.instances;
  const [address] = await cluster.addressesFor(survivor, 1);
  const ann = await guest(cluster, 'rw_ann');
  const mal = await guest(cluster, 'rw_mal');
  const bob = await guest(cluster, 'rw_bob');
  const b = await connected(connect(cluster, { cookie: bob.cookie, localAddress: address }));
  const a = await connected(connect(cluster, { cookie: ann.cookie, localAddress: address }));
  await send(b, 'general', 'seen');
  await waitForEvent(a, 'message.new', (m) => m.text === 'seen');
  const { _pid: pid, _lastOffset: offset } = a;
  assert.ok(pid && offset, 'a pid and an offset');

  a.io.reconnection(false);
  a.io.engine.close();
  await send(b, 'general', 'while away');

  // Someone else presents Ann's pid and offset: a session of their own, nothing replayed.
  const m = connect(cluster, { cookie: mal.cookie, localAddress: address });
  m.auth = { pid, offset };
  await connected(m);
  assert.notEqual(m._pid, pid);
  await sleep(500);
  assert.deepEqual(durable(m), []);

  await sleep(WINDOW_SECS * 1000 + 1500);
  const before = a.received.length;
  const back = nextConnect(a);
  a.connect();
  await back;
  assert.equal(a.recovered, false, 'past the window');
  await sleep(500);
  assert.deepEqual(durable({ received: a.received.slice(before) }), []);
  for (const s of [a, b, m]) s.close();
});
