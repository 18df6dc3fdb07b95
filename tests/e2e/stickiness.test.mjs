// Stickiness behind NAT, with HAProxy (BALANCER=haproxy): clients that share one address are
// spread over the instances, and each stays on its own for every HTTP long-polling request,
// carried by the cookie HAProxy inserts in its first answer (as a browser keeps it). With nginx
// (`ip_hash`) the same clients would all land on one instance; this file runs only behind HAProxy.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { startCluster, BALANCER } from './cluster.mjs';
import { guest } from './client.mjs';

const skip = BALANCER !== 'haproxy' && 'stickiness by cookie is HAProxy’s (BALANCER=haproxy)';
let cluster;
before(async () => {
  if (!skip) cluster = await startCluster();
});
after(() => cluster?.stop());

/** One HTTP request from `localAddress`; resolves with { status, headers, body }. */
function request(url, { method = 'GET', headers = {}, body, localAddress } = {}) {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, headers, localAddress, agent: false }, (res) => {
      let data = '';
      res.setEncoding('utf8');
      res.on('data', (c) => (data += c));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: data }));
    });
    req.on('error', reject);
    if (body) req.write(body);
    req.end();
  });
}

test('clients behind one address spread over both instances, each sticky by its cookie', { skip }, async () => {
  const user = await guest(cluster, 'behind-nat');
  const localAddress = '127.0.0.9';
  const placements = [];
  // HAProxy places by the agents' weights, from each instance's load: a just-started instance
  // busy with its start reports less room. Equal weights first, so that placement alternates.
  await cluster.agentsAtLeast(90);
  for (let i = 0; i < 6; i++) {
    const base = `${cluster.url}/socket.io/?EIO=4&transport=polling`;
    const headers = { cookie: user.cookie, origin: cluster.origin };
    // The Engine.IO handshake, with no stickiness cookie yet: HAProxy picks and says which.
    const open = await request(`${base}&t=${i}`, { headers, localAddress });
    assert.equal(open.status, 200, open.body);
    const sticky = (open.headers['set-cookie'] ?? []).find((c) => c.startsWith('SERVERID='));
    assert.ok(sticky, `HAProxy inserts its cookie: ${JSON.stringify(open.headers)}`);
    assert.match(sticky, /HttpOnly/i);
    const sid = JSON.parse(open.body.slice(1)).sid;
    // Every later request of the session carries the cookie, as a browser does.
    const withCookie = { ...headers, cookie: `${user.cookie}; ${sticky.split(';')[0]}` };
    const connect = await request(`${base}&sid=${sid}`, { method: 'POST', headers: withCookie, body: '40', localAddress });
    assert.equal(connect.status, 200, connect.body);
    // Polls until the namespace CONNECT answer arrives (a ping may come first).
    let received = '';
    let polls = 0;
    while (!received.split('\x1e').some((p) => p.startsWith('40{"sid":')) && polls < 4) {
      const poll = await request(`${base}&sid=${sid}`, { headers: withCookie, localAddress });
      assert.equal(poll.status, 200, poll.body);
      received += `\x1e${poll.body}`;
      polls += 1;
    }
    assert.ok(received.includes('40{"sid":'), `the namespace CONNECT came back on the same session: ${received}`);
    // HAProxy writes a request's log line when it ends: wait for all of them.
    let lines = [];
    for (let wait = 0; wait < 100 && lines.length < 1 + polls; wait++) {
      lines = cluster.accessLog().filter((l) => l.includes(`sid=${sid}`));
      await new Promise((r) => setTimeout(r, 20));
    }
    const instances = new Set(lines.map((l) => cluster.instances.find((inst) => l.includes(inst.addr))?.name));
    assert.equal(lines.length, 1 + polls, lines.join('\n'));
    assert.equal(instances.size, 1, `one session, one instance: ${lines.join('\n')}`);
    placements.push([...instances][0]);
  }
  // One address, both instances: the balancing does not key on the address.
  assert.deepEqual(new Set(placements), new Set(['a', 'b']), `placements: ${placements}`);
});
