// A stock Socket.IO client pasting 25 lines against banter's default limits (20 sends per 10 s,
// sends over it held up to 10 s): it asks for no acks and ignores error events, as chat apps
// written for SocketChat do; every line is stored and delivered, in the order it was sent.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { startCluster } from './cluster.mjs';
import { connect, connected, eventually, events, guest, sleep } from './client.mjs';

let cluster;

before(async () => {
  cluster = await startCluster();
});
after(() => cluster?.stop());

test('25 messages sent in about a second with the default limits are all stored and delivered in order', async () => {
  const paster = await guest(cluster, 'paster');
  const reader = await guest(cluster, 'reader');
  const sender = connect(cluster, { cookie: paster.cookie, localAddress: '127.0.0.21' });
  const watcher = connect(cluster, { cookie: reader.cookie, localAddress: '127.0.0.22' });
  await Promise.all([connected(sender), connected(watcher)]);

  const lines = Array.from({ length: 25 }, (_, n) => `line ${n}`);
  for (const text of lines) {
    sender.emit('message.send', { channel: 'general', text, client_message_id: randomUUID() });
    await sleep(40);
  }
  await eventually(() => events(watcher, 'message.new').length >= 25, 'all 25 delivered');
  assert.deepEqual(events(watcher, 'message.new').map((m) => m.text), lines, 'delivered in the order sent');
  assert.deepEqual(cluster.messages(), Array.from({ length: 25 }, (_, k) => k + 1), 'all 25 stored');
  assert.equal(events(sender, 'rate_limited').length, 0, 'the sender was not blocked');
  sender.close();
  watcher.close();
});
