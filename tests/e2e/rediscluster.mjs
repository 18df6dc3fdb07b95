// A Redis Cluster of a scenario's own (three masters, three replicas on loopback, from
// scripts/redis-cluster.sh), for scenarios that fail its masters over.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { sleep } from './client.mjs';

const script = path.join(path.dirname(fileURLToPath(import.meta.url)), '../../scripts/redis-cluster.sh');

/** `redis-cli -p port ...args`; null when the node does not answer. */
function cli(port, ...args) {
  try {
    return execFileSync('redis-cli', ['-p', String(port), ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: 5000 }).trim();
  } catch {
    return null;
  }
}

/** Starts one; resolves { nodes, masters(), failOver(), stop() }. */
export function privateRedisCluster() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'banter-redis-cluster-'));
  fs.rmSync(dir, { recursive: true });
  const nodes = execFileSync(script, ['start', dir], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] }).trim();
  const ports = nodes.split(',').map((u) => Number(u.split(':').pop()));
  const alive = (port) => cli(port, 'PING') === 'PONG';
  const cluster = {
    nodes,
    /** The ports of the masters serving slots, as the first live node sees them. */
    masters() {
      const port = ports.find(alive);
      const table = port ? cli(port, 'CLUSTER', 'NODES') ?? '' : '';
      return table
        .split('\n')
        .map((line) => line.split(' '))
        .filter((f) => f.length > 8 && f[2].includes('master') && !f[2].includes('fail'))
        .map((f) => Number(f[1].split('@')[0].split(':').pop()));
    },
    /** Whether every node answers, sees every slot served, and every replica is in sync. */
    healthy() {
      return ports.every((port) => {
        if (!(cli(port, 'CLUSTER', 'INFO') ?? '').includes('cluster_state:ok')) return false;
        const replication = cli(port, 'INFO', 'replication') ?? '';
        return !replication.includes('role:slave') || replication.includes('master_link_status:up');
      });
    },
    /**
     * Kills the master on `port` (SIGKILL), waits until its replica has taken over its slots,
     * then starts it again (it rejoins as a replica) and waits until the cluster is whole.
     * Resolves the milliseconds from the kill until every slot was served again.
     */
    async failOver(port) {
      const pid = fs.readFileSync(path.join(dir, String(port), 'redis.pid'), 'utf8').trim();
      process.kill(Number(pid), 'SIGKILL');
      const killed = Date.now();
      const survivor = ports.find((p) => p !== port);
      let served = null;
      for (const deadline = killed + 60_000; Date.now() < deadline; await sleep(100)) {
        const info = cli(survivor, 'CLUSTER', 'INFO') ?? '';
        if (info.includes('cluster_state:ok') && !cluster.masters().includes(port)) {
          served = Date.now() - killed;
          break;
        }
      }
      if (served === null) throw new Error(`no replica took over from the master on ${port}`);
      execFileSync(script, ['restart', dir, String(port)], { stdio: 'ignore' });
      for (const deadline = Date.now() + 60_000; !cluster.healthy(); await sleep(200)) {
        if (Date.now() > deadline) throw new Error(`the node on ${port} did not rejoin the cluster`);
      }
      return served;
    },
    stop() {
      if (stopped) return;
      stopped = true;
      execFileSync(script, ['stop', dir], { stdio: 'ignore' });
    },
  };
  // Stopped when the scenario ends, however it ends.
  let stopped = false;
  process.once('exit', () => cluster.stop());
  return cluster;
}
