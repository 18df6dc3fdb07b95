// Presence through nginx for a user with one tab on each instance.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startCluster } from './cluster.mjs';
import { connect, connected, events, guest, sleep, waitForEvent } from './client.mjs';

let cluster;
before(async () => {
  cluster = await startCluster();
});
after(() => cluster?.stop());

async function onlineIds(viewer) {
  const res = await fetch(`${cluster.url}/api/presence/online?channel=general`, { headers: { cookie: viewer.cookie } });
  assert.equal(res.status, 200);
  return (await res.json()).map((u) => u.userId);
}

test('two tabs on two instances are one presence', async () => {
  const [onA] = await cluster.addressesFor(cluster.instances[0], 1);
  const [onB] = await cluster.addressesFor(cluster.instances[1], 1);
  const watcherUser = await guest(cluster, 'watcher');
  const watcher = await connected(connect(cluster, { cookie: watcherUser.cookie, localAddress: onA }));
  const user = await guest(cluster, 'twotabs');
  const statuses = (status) => events(watcher, 'user.status').filter((e) => e.userId === user.id && e.status === status);

  const tab1 = await connected(connect(cluster, { cookie: user.cookie, localAddress: onA }));
  await waitForEvent(watcher, 'user.status', (e) => e.userId === user.id && e.status === 'online');
  const tab2 = await connected(connect(cluster, { cookie: user.cookie, localAddress: onB }));
  await sleep(700);
  assert.equal(statuses('online').length, 1, 'the second tab, on the other instance, announces nothing');
  assert.ok((await onlineIds(watcherUser)).includes(user.id));

  tab1.close();
  await sleep(700);
  assert.equal(statuses('offline').length, 0, 'one tab left: still online');
  assert.ok((await onlineIds(watcherUser)).includes(user.id));

  tab2.close();
  await waitForEvent(watcher, 'user.status', (e) => e.userId === user.id && e.status === 'offline');
  assert.ok(!(await onlineIds(watcherUser)).includes(user.id));
  watcher.close();
});
