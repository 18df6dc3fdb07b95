// Refused handshakes through nginx, as a browser's socket.io-client reports them.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startCluster } from './cluster.mjs';
import { connect, connected, guest } from './client.mjs';

let cluster;
before(async () => {
  cluster = await startCluster();
});
after(() => cluster?.stop());

async function refusal(options) {
  const socket = connect(cluster, options);
  try {
    await connected(socket);
    assert.fail('the handshake should have been refused');
  } catch (err) {
    return err.message;
  } finally {
    socket.close();
  }
}

test('no session cookie: connect_error "unauthorized"', async () => {
  for (const transports of [undefined, ['websocket']]) {
    assert.equal(await refusal({ transports }), 'unauthorized');
  }
});

test('a page on a foreign origin: connect_error "forbidden_origin"', async () => {
  const user = await guest(cluster, 'victim');
  for (const transports of [undefined, ['websocket']]) {
    const message = await refusal({ cookie: user.cookie, origin: 'https://evil.example', transports });
    assert.equal(message, 'forbidden_origin');
  }
});

test('the same cookie from the right origin connects', async () => {
  const user = await guest(cluster, 'welcome');
  const socket = connect(cluster, { cookie: user.cookie });
  await connected(socket);
  socket.close();
});
