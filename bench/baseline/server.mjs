// Baseline chat server: the usual Node.js stack (Socket.IO + Redis adapter + Postgres + JWT
// cookie) speaking the subset of banter's wire contract (docs/PROTOCOL.md) that the load
// generator uses, so one load generator drives both servers. See README.md.

import { createServer } from 'node:http';
import { randomBytes, randomUUID } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import jwt from 'jsonwebtoken';
import pg from 'pg';
import { createClient } from 'redis';
import { Server } from 'socket.io';
import { createAdapter } from '@socket.io/redis-adapter';

// ---------------------------------------------------------------------------------------------
// Configuration

const PORT = Number(process.env.PORT || 4101);
const DATABASE_URL =
  process.env.DATABASE_URL || 'postgres://postgres@127.0.0.1:5432/banter_baseline';
const REDIS_URL = process.env.REDIS_URL || 'redis://127.0.0.1:6379';
const JWT_SECRET = process.env.JWT_SECRET;
const REDIS_PREFIX = process.env.REDIS_PREFIX || 'baseline';
const DEFAULT_CHANNEL = (process.env.DEFAULT_CHANNEL ?? 'general').trim().toLowerCase();

if (!JWT_SECRET) {
  console.error('JWT_SECRET is required');
  process.exit(2);
}
if (!Number.isInteger(PORT) || PORT < 1 || PORT > 65535) {
  console.error(`invalid PORT: ${process.env.PORT}`);
  process.exit(2);
}

const SESSION_TTL_SECS = 7 * 24 * 3600;
const MAX_BODY_BYTES = 64 * 1024;
const MAX_TEXT_CHARS = 4000;
// A user.status is not sent to a room with more sockets than this on this instance.
const PRESENCE_FANOUT_MAX = 100;
const PRESENCE_KEY = `${REDIS_PREFIX}:presence`;

const CHANNEL_NAME = /^[a-z0-9_-]{1,64}$/;
const USERNAME = /^[A-Za-z0-9_.-]{3,32}$/;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

// ---------------------------------------------------------------------------------------------
// Errors: the same codes and statuses as banter (docs/PROTOCOL.md, "Error codes").

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}
const invalid = (message) => new ApiError(400, 'invalid_payload', message);
const tooLong = (message) => new ApiError(400, 'too_long', message);
const unauthorized = () => new ApiError(401, 'unauthorized', 'not signed in');
const notFound = (message = 'not found') => new ApiError(404, 'not_found', message);
const notInChannel = () => new ApiError(403, 'not_in_channel', 'not in that channel');

// ---------------------------------------------------------------------------------------------
// Postgres

pg.types.setTypeParser(pg.types.builtins.INT8, Number); // seq and last_seq as JSON numbers

const pool = new pg.Pool({
  connectionString: DATABASE_URL,
  max: 16,
  connectionTimeoutMillis: 3000,
  statement_timeout: 10000,
});
pool.on('error', (err) => console.error('postgres idle client:', err.message));

// Runs one statement. A unique violation becomes `conflict`; any other failure `unavailable`.
async function db(text, params, conflictMessage = 'already exists') {
  try {
    return await pool.query(text, params);
  } catch (err) {
    if (err.code === '23505') throw new ApiError(409, 'conflict', conflictMessage);
    console.error('postgres:', err.message);
    throw new ApiError(503, 'unavailable', 'database unavailable');
  }
}

// Creates the database if needed, applies schema.sql and makes sure the default channel exists.
async function prepareDatabase() {
  const url = new URL(DATABASE_URL);
  const dbName = decodeURIComponent(url.pathname.slice(1));
  url.pathname = '/postgres';
  const admin = new pg.Client({ connectionString: url.toString() });
  await admin.connect();
  try {
    const { rowCount } = await admin.query('SELECT 1 FROM pg_database WHERE datname = $1', [dbName]);
    if (rowCount === 0) {
      try {
        await admin.query(`CREATE DATABASE "${dbName.replaceAll('"', '""')}"`);
      } catch (err) {
        // Another instance created it meanwhile.
        if (err.code !== '42P04' && err.code !== '23505') throw err;
      }
    }
  } finally {
    await admin.end();
  }

  const schema = await readFile(new URL('./schema.sql', import.meta.url), 'utf8');
  const client = await pool.connect();
  try {
    // Two instances may start at once; concurrent CREATE TABLE IF NOT EXISTS can still collide.
    await client.query('SELECT pg_advisory_lock(7306034712)');
    try {
      await client.query(schema);
      if (DEFAULT_CHANNEL) {
        await client.query(
          `INSERT INTO channels (id, name, description) VALUES ($1, $2, '')
           ON CONFLICT (name) DO NOTHING`,
          [randomUUID(), DEFAULT_CHANNEL],
        );
      }
    } finally {
      await client.query('SELECT pg_advisory_unlock(7306034712)');
    }
  } finally {
    client.release();
  }
}

const CHANNEL_COLUMNS = 'id, name, description, created_at';
const MESSAGE_COLUMNS = 'id, seq, text, sender_name, sender_id, client_message_id, created_at';

async function findChannel(name) {
  const { rows } = await db(`SELECT ${CHANNEL_COLUMNS} FROM channels WHERE name = $1`, [name]);
  return rows[0] ?? null;
}

const toChannel = (row) => ({
  name: row.name,
  description: row.description,
  private: false,
  createdAt: row.created_at.toISOString(),
});

const toMessage = (row, channel) => ({
  id: row.id,
  channel,
  seq: row.seq,
  text: row.text,
  sender: row.sender_name,
  sender_id: row.sender_id,
  client_message_id: row.client_message_id,
  createdAt: row.created_at.toISOString(),
});

// One round trip per new message: bump the channel's last_seq and insert with that seq in the
// same statement. The UPDATE holds the channel row lock until commit, so seqs follow commit
// order. A client_message_id already stored skips the UPDATE (no seq is used); two concurrent
// sends with the same client_message_id can still burn one seq (see README.md).
const INSERT_MESSAGE = `
  WITH prior AS (
    SELECT 1 FROM messages WHERE sender_id = $3 AND client_message_id = $6
  ), s AS (
    UPDATE channels SET last_seq = last_seq + 1
    WHERE id = $1 AND NOT EXISTS (SELECT 1 FROM prior)
    RETURNING last_seq
  )
  INSERT INTO messages (id, channel_id, seq, sender_id, sender_name, text, client_message_id)
  SELECT $2::uuid, $1::uuid, s.last_seq, $3::uuid, $4::text, $5::text, $6::uuid FROM s
  ON CONFLICT (sender_id, client_message_id) DO NOTHING
  RETURNING ${MESSAGE_COLUMNS}`;

// Only asked when the insert stored nothing: a retry.
const STORED_MESSAGE = `
  SELECT m.id, m.seq, m.text, m.sender_name, m.sender_id, m.client_message_id, m.created_at,
         c.name AS channel
  FROM messages m JOIN channels c ON c.id = m.channel_id
  WHERE m.sender_id = $1 AND m.client_message_id = $2`;

// Messages of a channel, oldest first: after `after`, before `before`, or the newest.
async function listMessages(channel, { after = null, before = null, limit }) {
  let rows;
  if (after !== null) {
    ({ rows } = await db(
      `SELECT ${MESSAGE_COLUMNS} FROM messages WHERE channel_id = $1 AND seq > $2
       ORDER BY seq LIMIT $3`,
      [channel.id, after, limit],
    ));
  } else {
    ({ rows } = await db(
      `SELECT ${MESSAGE_COLUMNS} FROM messages WHERE channel_id = $1 AND seq < $2
       ORDER BY seq DESC LIMIT $3`,
      [channel.id, before ?? Number.MAX_SAFE_INTEGER, limit],
    ));
    rows.reverse();
  }
  return rows.map((row) => toMessage(row, channel.name));
}

// ---------------------------------------------------------------------------------------------
// Sessions

function signSession(user) {
  return jwt.sign({ sub: user.id, username: user.username, jti: randomUUID() }, JWT_SECRET, {
    algorithm: 'HS256',
    expiresIn: SESSION_TTL_SECS,
  });
}

// The user of a valid token, or null.
function verifySession(token) {
  if (typeof token !== 'string' || token.length === 0 || token.length > 4096) return null;
  try {
    const claims = jwt.verify(token, JWT_SECRET, { algorithms: ['HS256'] });
    if (typeof claims.sub !== 'string' || !UUID.test(claims.sub)) return null;
    if (typeof claims.username !== 'string' || typeof claims.exp !== 'number') return null;
    return { id: claims.sub, username: claims.username };
  } catch {
    return null;
  }
}

function cookieValue(header, name) {
  if (typeof header !== 'string') return null;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return null;
}

// ---------------------------------------------------------------------------------------------
// Validation helpers

const isObject = (value) => value !== null && typeof value === 'object' && !Array.isArray(value);

function channelName(value) {
  if (typeof value !== 'string') throw invalid('channel must be a string');
  const name = value.trim().toLowerCase();
  if (!CHANNEL_NAME.test(name)) throw invalid('invalid channel name');
  return name;
}

// A non-negative integer from a query string or payload, or null when absent.
function cursor(value, field) {
  if (value === undefined || value === null) return null;
  const n = typeof value === 'string' && /^\d{1,15}$/.test(value) ? Number(value) : value;
  if (!Number.isSafeInteger(n) || n < 0) throw invalid(`${field} must be a non-negative integer`);
  return n;
}

function limitParam(value, fallback, max) {
  const n = cursor(value, 'limit') ?? fallback;
  if (n < 1 || n > max) throw invalid(`limit must be in 1..=${max}`);
  return n;
}

// ---------------------------------------------------------------------------------------------
// HTTP

function sendJson(res, status, body, headers = {}) {
  const payload = JSON.stringify(body);
  res.writeHead(status, {
    'Content-Type': 'application/json',
    'Content-Length': Buffer.byteLength(payload),
    ...headers,
  });
  res.end(payload);
}

async function readJson(req) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > MAX_BODY_BYTES) throw invalid('body too large');
    chunks.push(chunk);
  }
  const text = Buffer.concat(chunks).toString('utf8').trim();
  if (text === '') return {};
  let body;
  try {
    body = JSON.parse(text);
  } catch {
    throw invalid('body is not JSON');
  }
  if (!isObject(body)) throw invalid('body must be a JSON object');
  return body;
}

function requireUser(req) {
  const user = verifySession(cookieValue(req.headers.cookie, 'token'));
  if (!user) throw unauthorized();
  return user;
}

async function createGuest(req, res) {
  const body = await readJson(req);
  let username = body.username ?? null;
  if (username === null) {
    username = `guest-${randomBytes(4).toString('hex')}`;
  } else {
    if (typeof username !== 'string' || !USERNAME.test(username.trim())) {
      throw invalid('username must be 3..=32 chars of [A-Za-z0-9_.-]');
    }
    username = username.trim();
  }
  const user = { id: randomUUID(), username };
  await db('INSERT INTO users (id, username) VALUES ($1, $2)', [user.id, username], 'username taken');
  const cookie = `token=${signSession(user)}; HttpOnly; Path=/; SameSite=Lax; Max-Age=${SESSION_TTL_SECS}`;
  sendJson(
    res,
    201,
    { message: 'guest session', user: { id: user.id, username, email: null } },
    { 'Set-Cookie': cookie },
  );
}

async function createChannel(req, res) {
  requireUser(req);
  const body = await readJson(req);
  const name = channelName(body.name);
  const description = body.description ?? '';
  if (typeof description !== 'string') throw invalid('description must be a string');
  if ([...description.trim()].length > 280) throw tooLong('description over 280 chars');
  const { rows } = await db(
    `INSERT INTO channels (id, name, description) VALUES ($1, $2, $3) RETURNING ${CHANNEL_COLUMNS}`,
    [randomUUID(), name, description.trim()],
    'channel exists',
  );
  sendJson(res, 201, toChannel(rows[0]));
}

async function channelHistory(req, res, url, rawName) {
  requireUser(req);
  let decoded;
  try {
    decoded = decodeURIComponent(rawName);
  } catch {
    throw invalid('invalid channel name');
  }
  const name = channelName(decoded);
  const q = url.searchParams;
  const after = cursor(q.get('after'), 'after');
  const before = cursor(q.get('before'), 'before');
  if (after !== null && before !== null) throw invalid('before and after together');
  const limit = limitParam(q.get('limit'), 50, 200);
  const channel = await findChannel(name);
  if (!channel) throw notFound('no such channel');
  sendJson(res, 200, await listMessages(channel, { after, before, limit }));
}

async function route(req, res) {
  const url = new URL(req.url, 'http://localhost');
  const path = url.pathname;
  if (req.method === 'GET' && path === '/health') return sendJson(res, 200, { status: 'ok' });
  if (req.method === 'POST' && path === '/api/auth/guest') return createGuest(req, res);
  if (req.method === 'POST' && path === '/api/channels') return createChannel(req, res);
  const history = /^\/api\/channels\/([^/]+)\/messages$/.exec(path);
  if (req.method === 'GET' && history) return channelHistory(req, res, url, history[1]);
  throw notFound('no such route');
}

const httpServer = createServer(async (req, res) => {
  try {
    await route(req, res);
  } catch (err) {
    if (!(err instanceof ApiError)) console.error('http:', err);
    const e = err instanceof ApiError ? err : new ApiError(500, 'internal', 'internal error');
    if (!res.headersSent) sendJson(res, e.status, { code: e.code, message: e.message });
    else res.destroy();
  }
});

// ---------------------------------------------------------------------------------------------
// Socket.IO

const redis = createClient({ url: REDIS_URL });
const redisSub = redis.duplicate();
redis.on('error', (err) => console.error('redis:', err.message));
redisSub.on('error', (err) => console.error('redis (sub):', err.message));

const io = new Server(httpServer, {
  path: '/socket.io',
  transports: ['polling', 'websocket'],
  maxHttpBufferSize: 2 * 1024 * 1024,
});

const room = (name) => `channel:${name}`;
const localRoomSize = (name) => io.of('/').adapter.rooms.get(room(name))?.size ?? 0;

let defaultChannel = null; // {id, name} once the database is prepared

io.use((socket, next) => {
  const { headers, auth } = socket.handshake;
  const cookieToken = cookieValue(headers.cookie, 'token');
  const user = verifySession(cookieToken ?? auth?.token);
  if (!user) return next(new Error('unauthorized'));
  socket.data.user = user;
  next();
});

// Registers an event handler: `handler(payload)` returns the ack body or throws. Nothing a
// client sends can make it throw past here.
function handle(socket, event, handler) {
  socket.on(event, async (...args) => {
    const ack = typeof args[args.length - 1] === 'function' ? args.pop() : null;
    let reply;
    try {
      reply = { ok: true, ...(await handler(args[0])) };
    } catch (err) {
      if (!(err instanceof ApiError)) console.error(`${event}:`, err);
      const error = err instanceof ApiError
        ? { code: err.code, message: err.message }
        : { code: 'invalid_payload', message: 'invalid payload' };
      reply = { ok: false, error };
    }
    try {
      if (ack) ack(reply);
      else if (!reply.ok) socket.emit('error', reply.error);
    } catch (err) {
      console.error(`${event} reply:`, err);
    }
  });
}

// Presence: a per-user connection count in one Redis hash shared by all instances.
const DECREMENT_PRESENCE = `
  local n = redis.call('HINCRBY', KEYS[1], ARGV[1], -1)
  if n <= 0 then redis.call('HDEL', KEYS[1], ARGV[1]) end
  return n`;

const pending = new Set(); // presence updates in flight, awaited on shutdown
function track(promise) {
  pending.add(promise);
  promise.finally(() => pending.delete(promise));
}

// user.status goes to the socket's current channel, unless that room is crowded here.
function announce(socket, status) {
  const channel = socket.data.channel;
  if (!channel || localRoomSize(channel.name) > PRESENCE_FANOUT_MAX) return;
  const { id: userId, username } = socket.data.user;
  io.to(room(channel.name)).emit('user.status', { userId, username, status });
}

async function presenceUp(socket) {
  try {
    const n = await redis.hIncrBy(PRESENCE_KEY, socket.data.user.id, 1);
    if (n === 1) announce(socket, 'online');
  } catch (err) {
    console.error('presence:', err.message);
  }
}

async function presenceDown(socket) {
  try {
    const n = await redis.eval(DECREMENT_PRESENCE, {
      keys: [PRESENCE_KEY],
      arguments: [socket.data.user.id],
    });
    if (n <= 0) announce(socket, 'offline');
  } catch (err) {
    console.error('presence:', err.message);
  }
}

io.on('connection', (socket) => {
  const user = socket.data.user;
  socket.join(`user:${user.id}`);
  if (defaultChannel) {
    socket.join(room(defaultChannel.name));
    socket.data.channel = defaultChannel;
  }

  // A client may emit an event named "error"; without a listener Node would throw.
  socket.on('error', () => {});

  handle(socket, 'channel.join', async (payload) => {
    const name = channelName(isObject(payload) ? payload.channel : payload);
    const channel = await findChannel(name);
    if (!channel) throw notFound('no such channel');
    const previous = socket.data.channel;
    if (previous?.name !== channel.name) {
      if (previous) socket.leave(room(previous.name));
      socket.join(room(channel.name));
      socket.data.channel = { id: channel.id, name: channel.name };
    }
    socket.emit('channel.joined', channel.name);
    return { channel: toChannel(channel), online: localRoomSize(channel.name) };
  });

  handle(socket, 'message.send', async (payload) => {
    if (!isObject(payload)) throw invalid('payload must be an object');
    const { text, client_message_id: clientId, file } = payload;
    if (typeof text !== 'string') throw invalid('text must be a string');
    if (typeof payload.channel !== 'string') throw invalid('channel must be a string');
    if (typeof clientId !== 'string' || !UUID.test(clientId)) {
      throw invalid('client_message_id must be a UUID');
    }
    if (file !== undefined && file !== null && !isObject(file)) throw invalid('file must be an object');
    const name = channelName(payload.channel);
    const channel = socket.data.channel;
    if (channel?.name !== name) throw notInChannel();
    const body = text.trim();
    if (body.length === 0) throw invalid('text is empty');
    if ([...body].length > MAX_TEXT_CHARS) throw tooLong(`text over ${MAX_TEXT_CHARS} chars`);

    const { rows } = await db(INSERT_MESSAGE, [
      channel.id,
      randomUUID(),
      user.id,
      user.username,
      body,
      clientId.toLowerCase(),
    ]);
    if (rows.length === 0) {
      const stored = await db(STORED_MESSAGE, [user.id, clientId.toLowerCase()]);
      if (stored.rows.length === 0) throw notFound('no such channel');
      const row = stored.rows[0];
      return { message: toMessage(row, row.channel), duplicate: true };
    }
    const message = toMessage(rows[0], channel.name);
    io.to(room(channel.name)).emit('message.new', message);
    return { message, duplicate: false };
  });

  handle(socket, 'user.typing', async (payload) => {
    if (!isObject(payload)) throw invalid('payload must be an object');
    const name = channelName(payload.channel);
    if (typeof payload.isTyping !== 'boolean') throw invalid('isTyping must be a boolean');
    if (socket.data.channel?.name !== name) throw notInChannel();
    socket.to(room(name)).emit('user.typing', {
      userId: user.id,
      username: user.username,
      channel: name,
      isTyping: payload.isTyping,
    });
    return {};
  });

  handle(socket, 'messages.sync', async (payload) => {
    if (!isObject(payload)) throw invalid('payload must be an object');
    const name = channelName(payload.channel);
    const after = cursor(payload.after_seq, 'after_seq');
    if (after === null) throw invalid('after_seq is required');
    const limit = limitParam(payload.limit, 100, 500);
    const channel = await findChannel(name);
    if (!channel) throw notFound('no such channel');
    const messages = await listMessages(channel, { after, limit: limit + 1 });
    const has_more = messages.length > limit;
    return { messages: messages.slice(0, limit), has_more };
  });

  socket.on('disconnect', () => track(presenceDown(socket)));
  track(presenceUp(socket));
});

// ---------------------------------------------------------------------------------------------
// Start and stop

async function main() {
  await prepareDatabase();
  if (DEFAULT_CHANNEL) {
    const channel = await findChannel(DEFAULT_CHANNEL);
    if (channel) defaultChannel = { id: channel.id, name: channel.name };
  }
  await Promise.all([redis.connect(), redisSub.connect()]);
  io.adapter(createAdapter(redis, redisSub, { key: REDIS_PREFIX }));
  await new Promise((resolve, reject) => {
    httpServer.once('error', reject);
    httpServer.listen(PORT, resolve);
  });
  console.log(`baseline listening on :${PORT} (redis prefix ${REDIS_PREFIX})`);
}

let stopping = false;
async function shutdown(signal) {
  if (stopping) return;
  stopping = true;
  console.log(`${signal}: shutting down`);
  setTimeout(() => process.exit(0), 10_000).unref();
  try {
    await io.close(); // disconnects every socket (presence decrements) and closes the HTTP server
    await Promise.allSettled([...pending]);
    await Promise.allSettled([redis.quit(), redisSub.quit(), pool.end()]);
  } catch (err) {
    console.error('shutdown:', err.message);
  }
  process.exit(0);
}
process.on('SIGTERM', () => shutdown('SIGTERM'));
process.on('SIGINT', () => shutdown('SIGINT'));

main().catch((err) => {
  console.error('startup failed:', err.message);
  process.exit(1);
});
