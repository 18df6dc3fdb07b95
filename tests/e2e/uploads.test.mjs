// Attachments through the balancer (nginx or HAProxy), the way a SocketChat client does it: the file posted to
// /api/upload/upload (multipart), its URL sent with message.send over socket.io-client, and the
// file read back by another person from /uploads/<key>; plus the presigned (signed-URL) upload
// of the web app, with the bytes PUT by a plain HTTP client.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { startCluster } from './cluster.mjs';
import { ack, connect, connected, guest, waitForEvent } from './client.mjs';

let cluster;
before(async () => {
  cluster = await startCluster();
});
after(() => cluster?.stop());

// A 1×1 PNG.
const PNG = Buffer.from(
  '89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489' +
    '0000000d49444154789c63f8cfc0f01f00050001ff89993d1d0000000049454e44ae426082',
  'hex',
);

async function getFile(path, cookie) {
  const res = await fetch(`${cluster.url}${path}`, { headers: cookie ? { cookie } : {} });
  return { status: res.status, headers: res.headers, body: Buffer.from(await res.arrayBuffer()) };
}

test('a multipart upload, sent as a message, is opened by another person through the balancer', async () => {
  const ann = await guest(cluster, 'ann-files');
  const ben = await guest(cluster, 'ben-files');
  const form = new FormData();
  form.append('file', new Blob([PNG], { type: 'image/png' }), 'dot.png');
  const res = await fetch(`${cluster.url}/api/upload/upload`, {
    method: 'POST',
    headers: { cookie: ann.cookie, origin: cluster.origin },
    body: form,
  });
  const uploaded = await res.json();
  assert.equal(res.status, 200, JSON.stringify(uploaded));
  assert.equal(uploaded.filename, 'dot.png');
  assert.equal(uploaded.type, 'image/png');
  assert.match(uploaded.url, /^\/uploads\/[0-9a-f-]{36}$/);

  const sender = connect(cluster, { cookie: ann.cookie, localAddress: '127.0.0.11' });
  const reader = connect(cluster, { cookie: ben.cookie, localAddress: '127.0.0.12' });
  await Promise.all([connected(sender), connected(reader)]);
  const arrived = waitForEvent(reader, 'message.new', (m) => m.text === 'a dot');
  const sent = await ack(sender, 'message.send', {
    channel: 'general',
    text: 'a dot',
    client_message_id: randomUUID(),
    file: { url: uploaded.url, name: uploaded.filename, type: uploaded.type },
  });
  assert.equal(sent.ok, true, JSON.stringify(sent));
  const message = await arrived;
  assert.deepEqual(message.file, sent.message.file);
  assert.equal(message.file.width, 1);
  assert.equal(message.file.size, PNG.length);

  const file = await getFile(message.file.url, ben.cookie);
  assert.equal(file.status, 200);
  assert.deepEqual(file.body, PNG);
  assert.equal(file.headers.get('content-type'), 'image/png');
  assert.match(file.headers.get('content-security-policy'), /^sandbox/);
  assert.equal((await getFile(message.file.thumbnail, ben.cookie)).status, 200);
  assert.equal((await getFile(message.file.url)).status, 401);
  sender.close();
  reader.close();
});

test('a presigned upload: the bytes go to the signed URL, the message carries the file', async () => {
  const kim = await guest(cluster, 'kim-files');
  const page = Buffer.from('<html><script>alert(document.cookie)</script></html>');
  const res = await fetch(`${cluster.url}/api/uploads`, {
    method: 'POST',
    headers: { cookie: kim.cookie, origin: cluster.origin, 'content-type': 'application/json' },
    body: JSON.stringify({ name: 'page.html', type: 'text/html', size: page.length }),
  });
  const ticket = await res.json();
  assert.equal(res.status, 201, JSON.stringify(ticket));
  const put = await fetch(new URL(ticket.upload.url, cluster.url), {
    method: ticket.upload.method,
    headers: ticket.upload.headers,
    body: page,
  });
  assert.equal(put.status, 200, await put.clone().text());
  assert.equal((await put.json()).file.type, 'text/plain; charset=utf-8');

  const socket = connect(cluster, { cookie: kim.cookie, localAddress: '127.0.0.13' });
  await connected(socket);
  const sent = await ack(socket, 'message.send', {
    channel: 'general',
    text: 'a page',
    client_message_id: randomUUID(),
    file: ticket.file,
  });
  assert.equal(sent.ok, true, JSON.stringify(sent));
  const file = await getFile(ticket.file.url, kim.cookie);
  assert.equal(file.status, 200);
  assert.equal(file.headers.get('content-type'), 'text/plain; charset=utf-8');
  assert.match(file.headers.get('content-disposition'), /^attachment; filename="page.html"/);
  assert.equal(file.headers.get('x-content-type-options'), 'nosniff');
  socket.close();
});
