// Conversations through the balancer with the official client, on two instances: edits,
// deletes, reactions and replies reach everyone in change order; a client that was away syncs
// what changed; mentions and direct messages reach a user outside the channel; reading on one
// tab clears the other's badge; a channel's owner deletes others' messages and removes members;
// last seen; a ban puts a user out of every instance.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { startCluster } from './cluster.mjs';
import { ack, connect, connected, events, guest, send, waitForEvent } from './client.mjs';

const ADMIN = 'boss_e2e';
let cluster;
let addrA;
let addrB;

before(async () => {
  cluster = await startCluster({ env: { ADMIN_USERS: ADMIN, RATE_LIMIT_MESSAGES: '1000' } });
  [addrA] = await cluster.addressesFor(cluster.instances[0], 1);
  [addrB] = await cluster.addressesFor(cluster.instances[1], 1, 60);
});
after(() => cluster?.stop());

/** A REST call through the balancer with a session cookie. */
async function api(user, method, path, body) {
  const res = await fetch(`${cluster.url}${path}`, {
    method,
    headers: { 'content-type': 'application/json', origin: cluster.origin, cookie: user.cookie },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null, headers: res.headers };
}

async function register(username) {
  const res = await fetch(`${cluster.url}/api/auth/register`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', origin: cluster.origin },
    body: JSON.stringify({ username, email: `${username}@example.com`, password: 'password123' }),
  });
  assert.equal(res.status, 201, `register ${username}`);
  const cookie = res.headers.getSetCookie().find((c) => c.startsWith('token=')).split(';')[0];
  const body = await res.json();
  return { id: body.user.id, username, cookie };
}

async function socketOn(user, localAddress) {
  const s = connect(cluster, { cookie: user.cookie, localAddress });
  await connected(s);
  return s;
}

test('edits, deletes, reactions and replies reach both instances in change order', async () => {
  const alice = await guest(cluster, 'conv_alice');
  const bob = await guest(cluster, 'conv_bob');
  const a = await socketOn(alice, addrA);
  const b = await socketOn(bob, addrB);
  const first = (await send(a, 'general', 'helo')).message;
  const edited = await ack(a, 'message.edit', { channel: 'general', id: first.id, text: 'hello' });
  assert.equal(edited.ok, true, JSON.stringify(edited));
  const reacted = await ack(b, 'reaction.add', { channel: 'general', id: first.id, emoji: '👍' });
  assert.deepEqual(reacted.message.reactions, [{ emoji: '👍', count: 1, me: true }]);
  const reply = await ack(b, 'message.send', {
    channel: 'general', text: 'hi!', client_message_id: randomUUID(), reply_to: first.id,
  });
  assert.equal(reply.message.reply_to.text, 'hello');
  const second = (await send(a, 'general', 'oops')).message;
  assert.equal((await ack(a, 'message.delete', { channel: 'general', id: second.id })).ok, true);
  assert.equal((await ack(b, 'message.delete', { channel: 'general', id: first.id })).error.code, 'forbidden');

  for (const s of [a, b]) {
    await waitForEvent(s, 'message.deleted', (d) => d.id === second.id);
    const updated = await waitForEvent(s, 'message.updated', (u) => u.id === first.id);
    assert.equal(updated.text, 'hello');
    const r = await waitForEvent(s, 'message.reactions', (x) => x.id === first.id);
    assert.equal(r.user_id, bob.id);
    const changes = ['message.updated', 'message.reactions', 'message.deleted']
      .flatMap((e) => events(s, e))
      .map((c) => c.change)
      .sort((x, y) => x - y);
    assert.deepEqual(changes, [1, 2, 3]);
    const quoted = await waitForEvent(s, 'message.new', (m) => m.id === reply.message.id);
    assert.equal(quoted.reply_to.id, first.id);
  }
  const history = await api(bob, 'GET', '/api/channels/general/messages');
  assert.equal(history.headers.get('x-last-change'), '3');
  const bySeq = Object.fromEntries(history.body.map((m) => [m.seq, m]));
  assert.equal(bySeq[first.seq].text, 'hello');
  assert.ok(bySeq[first.seq].edited_at);
  assert.equal(bySeq[second.seq].deleted, true);
  a.close();
  b.close();
});

test('a client that was away syncs the edits and deletes it missed', async () => {
  const alice = await guest(cluster, 'sync_alice');
  const bob = await guest(cluster, 'sync_bob');
  const a = await socketOn(alice, addrA);
  await ack(a, 'channel.join', 'general');
  const m1 = (await send(a, 'general', 'one')).message;
  const m2 = (await send(a, 'general', 'two')).message;
  let b = await socketOn(bob, addrB);
  const start = await ack(b, 'messages.sync', { channel: 'general', after_seq: 0, after_change: 0, limit: 500 });
  const lastSeq = start.messages.at(-1).seq;
  const cursor = start.last_change;
  b.close();

  await ack(a, 'message.edit', { channel: 'general', id: m1.id, text: 'one, edited' });
  await ack(a, 'message.delete', { channel: 'general', id: m2.id });
  const m3 = (await send(a, 'general', 'three')).message;

  b = await socketOn(bob, addrB);
  const synced = await ack(b, 'messages.sync', { channel: 'general', after_seq: lastSeq, after_change: cursor });
  assert.equal(synced.ok, true, JSON.stringify(synced));
  assert.deepEqual(synced.messages.map((m) => m.id), [m3.id]);
  const changed = Object.fromEntries(synced.changes.map((m) => [m.id, m]));
  assert.equal(changed[m1.id].text, 'one, edited');
  assert.equal(changed[m2.id].deleted, true);
  assert.equal(synced.last_change, cursor + 2);
  a.close();
  b.close();
});

test('mentions and direct messages reach a user outside the channel; reading on one tab clears the other', async () => {
  const alice = await guest(cluster, 'dm_alice');
  const bob = await guest(cluster, 'dm_bob');
  const a = await socketOn(alice, addrA);
  const tab1 = await socketOn(bob, addrA);
  const tab2 = await socketOn(bob, addrB);
  // Bob has a read position in general, then opens a direct message with alice.
  await ack(tab1, 'channel.join', 'general');
  const opened = await api(bob, 'POST', '/api/dms', { username: 'dm_alice' });
  assert.equal(opened.status, 200, JSON.stringify(opened.body));
  const dm = opened.body.channel.name;
  for (const s of [tab1, tab2]) assert.equal((await ack(s, 'channel.join', dm)).ok, true);

  const mention = (await send(a, 'general', 'ping @dm_bob')).message;
  for (const s of [tab1, tab2]) await waitForEvent(s, 'mention', (m) => m.message.id === mention.id);
  assert.equal((await ack(a, 'channel.join', dm)).ok, true);
  await ack(tab1, 'channel.join', 'general');
  await ack(tab2, 'channel.join', 'general');
  const direct = (await send(a, dm, 'just you')).message;
  for (const s of [tab1, tab2]) await waitForEvent(s, 'mention', (m) => m.message.id === direct.id);

  const dms = await api(bob, 'GET', '/api/dms');
  assert.equal(dms.body[0].channel.name, dm);
  assert.equal(dms.body[0].channel.unread, 1);
  assert.equal(dms.body[0].user.username, 'dm_alice');
  assert.equal(dms.body[0].user.online, true);
  const list = await api(bob, 'GET', '/api/channels');
  const general = list.body.find((c) => c.name === 'general');
  assert.ok(general.unread_mentions >= 1, JSON.stringify(general));

  const read = await ack(tab1, 'channel.read', { channel: dm, seq: direct.seq });
  assert.equal(read.read_seq, direct.seq);
  const told = await waitForEvent(tab2, 'channel.read', (r) => r.channel === dm);
  assert.equal(told.read_seq, direct.seq);
  const after = await api(bob, 'GET', '/api/dms');
  assert.equal(after.body[0].channel.unread, 0);
  for (const s of [a, tab1, tab2]) s.close();
});

test('a banned user is out of every instance within a second', async () => {
  const boss = await register(ADMIN);
  const troll = await register('troll_e2e');
  const s1 = await socketOn(troll, addrA);
  const s2 = await socketOn(troll, addrB);
  const gone = [s1, s2].map((s) => new Promise((r) => s.once('disconnect', (reason) => r([reason, Date.now()]))));
  const started = Date.now();
  const banned = await api(boss, 'POST', `/api/admin/users/${troll.username}/ban`);
  assert.equal(banned.status, 200, JSON.stringify(banned.body));
  for (const [reason, at] of await Promise.all(gone)) {
    assert.equal(reason, 'io server disconnect');
    assert.ok(at - started < 1000, `out after ${at - started} ms`);
  }
  assert.equal((await api(troll, 'GET', '/api/auth/me')).status, 401);
  const again = connect(cluster, { cookie: troll.cookie, localAddress: addrB });
  await assert.rejects(connected(again), /unauthorized/);
  again.close();
  const log = await api(boss, 'GET', '/api/admin/moderation-log');
  assert.equal(log.body[0].action, 'user.ban');
  assert.equal(log.body[0].target, troll.username);
});

test("a channel's owner deletes others' messages and removes members on every instance; last seen", async () => {
  const owner = await guest(cluster, 'own_owner');
  const member = await guest(cluster, 'own_member');
  const created = await api(owner, 'POST', '/api/channels', { name: 'own-club', password: 'password123' });
  assert.equal(created.status, 201);
  assert.equal(created.body.created_by, owner.id);
  const o = await socketOn(owner, addrA);
  const m1 = await socketOn(member, addrA);
  const m2 = await socketOn(member, addrB);
  assert.equal((await ack(o, 'channel.join', 'own-club')).ok, true);
  for (const s of [m1, m2]) {
    assert.equal((await ack(s, 'channel.join', { channel: 'own-club', password: 'password123' })).ok, true);
  }
  const spam = (await send(m2, 'own-club', 'spam')).message;
  const deleted = await ack(o, 'message.delete', { channel: 'own-club', id: spam.id });
  assert.equal(deleted.ok, true, JSON.stringify(deleted));
  for (const s of [m1, m2]) await waitForEvent(s, 'message.deleted', (d) => d.id === spam.id);

  const removed = await api(owner, 'DELETE', '/api/channels/own-club/members/own_member');
  assert.equal(removed.status, 200, JSON.stringify(removed.body));
  for (const s of [m1, m2]) await waitForEvent(s, 'channel.removed', (r) => r.channel === 'own-club');
  await send(o, 'own-club', 'members only');
  assert.equal((await ack(m1, 'channel.join', 'own-club')).error.code, 'forbidden');
  const log = await api(owner, 'GET', '/api/admin/moderation-log');
  assert.equal(log.status, 403, 'the log is for administrators');

  // Last seen, once the member's sockets are gone.
  m1.close();
  m2.close();
  const deadline = Date.now() + 10_000;
  for (;;) {
    const who = await api(owner, 'GET', '/api/users/own_member');
    if (who.body.online === false) {
      assert.ok(Date.parse(who.body.last_seen) > Date.now() - 60_000, JSON.stringify(who.body));
      break;
    }
    assert.ok(Date.now() < deadline, 'still online');
    await new Promise((r) => setTimeout(r, 200));
  }
  assert.ok(!events(m1, 'message.new').some((x) => x.text === 'members only'));
  o.close();
});
