// The reference stack of the A/B benchmark: what a team would write without
// collab.  A Node.js socket.io 4.x server speaking the same events and payloads
// (docs/protocol.md) for presence, locks and saves; editor locks live in Redis
// (SET NX PX, compare-and-delete / compare-and-pexpire Lua scripts run by
// EVALSHA), presence in Redis hashes (so that several instances could share
// it), resources in PostgreSQL reached through a `pg` pool.
//
// Hierarchical locks: a lock on R conflicts with a lock on an ancestor or a
// descendant of R.  Each lock key `lk:<R>` holds "token\tuserId\tusername\t
// connectionId\tacquiredAtMs" with a PX TTL; every ancestor A of a held lock has
// a sorted set `dz:<A>` of its locked descendants scored by expiry, so the
// acquire script checks the ancestors' keys and its own set in one step.
// Fencing tokens come from INCR of `fence`.  A save first renews the lock
// (compare-and-pexpire: the token must still be live), then UPDATEs the row.
//
// Access control (with BASELINE_ACL_DB): the grants of that database's
// collab.acl are copied into Redis at start, a hash acl:<R> of subject ->
// level (1 view, 2 edit, 3 admin); a user's level on R is the highest over R
// and its ancestors for the subjects "*", "user:<sub>" and "group:<g>" of the
// token's groups claim, read by one script.  As collab: a join needs view (a
// resource one may not view is RESOURCE_NOT_FOUND), an editor's join
// without edit is a viewer's, and lock:acquire, lock:renew and doc:save need
// edit (FORBIDDEN); the join's ack carries the permissions.
//
// Not covered (not measured by the benchmark): lock:expired events (keyspace
// notifications), lock:request, auth:refresh, live revocation, RS256/ES256
// tokens, reading history.  A save keeps its version in a history table, as
// collab keeps a revision, so that saves are compared doing the same work:
// one INSERT with the UPDATE (no hash chain).
//
// Environment: BASELINE_PORT, BASELINE_HOST (127.0.0.1), REDIS_PORT,
// BASELINE_JWT_SECRET, PGHOST/PGPORT/PGUSER/PGDATABASE, BASELINE_LOCK_TTL_MS
// (300000), BASELINE_PG_POOL (10), BASELINE_ACL_DB.  Prints "listening <port>" when ready.
import http from 'node:http';
import crypto from 'node:crypto';
import { Server } from 'socket.io';
import Redis from 'ioredis';
import pg from 'pg';

const PORT = Number(process.env.BASELINE_PORT || 8090);
const HOST = process.env.BASELINE_HOST || '127.0.0.1';
const SECRET = process.env.BASELINE_JWT_SECRET;
const TTL = Number(process.env.BASELINE_LOCK_TTL_MS || 300000);
if (!SECRET) throw new Error('BASELINE_JWT_SECRET must be set');

const redis = new Redis({ host: '127.0.0.1', port: Number(process.env.REDIS_PORT || 6379), enableAutoPipelining: true });
const pool = new pg.Pool({ max: Number(process.env.BASELINE_PG_POOL || 10) });

/* ------------------------------------------------------------ Lua scripts */
// KEYS[1] lk:R, KEYS[2] dz:R, then lk:A1, dz:A1, lk:A2, dz:A2... for the ancestors.
// ARGV: ttl, userId, username, connectionId, R, A1, A2...
// Returns {1, R, value, ttl} when granted, {0, conflicting resource, value, pttl} when not.
redis.defineCommand('lockAcquire', {
  lua: `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[1])
local cur = redis.call('GET', KEYS[1])
if cur then return {0, ARGV[5], cur, redis.call('PTTL', KEYS[1])} end
local na = (#KEYS - 2) / 2
for i = 1, na do
  local v = redis.call('GET', KEYS[1 + 2 * i])
  if v then return {0, ARGV[5 + i], v, redis.call('PTTL', KEYS[1 + 2 * i])} end
end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
for _, d in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
  local v = redis.call('GET', 'lk:' .. d)
  if v then return {0, d, v, redis.call('PTTL', 'lk:' .. d)} end
  redis.call('ZREM', KEYS[2], d)
end
local token = redis.call('INCR', 'fence')
local val = token .. '\\t' .. ARGV[2] .. '\\t' .. ARGV[3] .. '\\t' .. ARGV[4] .. '\\t' .. now
redis.call('SET', KEYS[1], val, 'PX', ttl)
for i = 1, na do
  local z = KEYS[2 + 2 * i]
  redis.call('ZADD', z, now + ttl, ARGV[5])
  if redis.call('PTTL', z) < ttl then redis.call('PEXPIRE', z, ttl) end
end
return {1, ARGV[5], val, ttl}`,
});
// Compare-and-delete.  KEYS[1] lk:R, KEYS[2..] dz of the ancestors; ARGV token, R.
redis.defineCommand('lockRelease', {
  lua: `
local v = redis.call('GET', KEYS[1])
if not v or string.sub(v, 1, #ARGV[1] + 1) ~= ARGV[1] .. '\\t' then return 0 end
redis.call('DEL', KEYS[1])
for i = 2, #KEYS do redis.call('ZREM', KEYS[i], ARGV[2]) end
return 1`,
});
// Compare-and-pexpire (renew, and the fencing check of a save).
// KEYS[1] lk:R, KEYS[2..] dz of the ancestors; ARGV token, ttl, R.  Returns the value or false.
redis.defineCommand('lockRenew', {
  lua: `
local v = redis.call('GET', KEYS[1])
if not v or string.sub(v, 1, #ARGV[1] + 1) ~= ARGV[1] .. '\\t' then return false end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2])
redis.call('PEXPIRE', KEYS[1], ttl)
for i = 2, #KEYS do
  redis.call('ZADD', KEYS[i], now + ttl, ARGV[3])
  if redis.call('PTTL', KEYS[i]) < ttl then redis.call('PEXPIRE', KEYS[i], ttl) end
end
return v`,
});

// KEYS acl:R, acl:A1, ...; ARGV the user's subjects.  The highest level granted.
redis.defineCommand('aclLevel', {
  lua: `
local best = 0
for i = 1, #KEYS do
  for _, v in ipairs(redis.call('HMGET', KEYS[i], unpack(ARGV))) do
    if v then local n = tonumber(v); if n > best then best = n end end
  end
end
return best`,
});
const ACL_DB = process.env.BASELINE_ACL_DB || '';
const PERMISSIONS = [[], ['view'], ['view', 'edit'], ['view', 'edit', 'admin']];

async function loadAcl() {
  const c = new pg.Client({ database: ACL_DB });
  await c.connect();
  const { rows } = await c.query(`SELECT resource_id, subject,
      max(CASE permission::text WHEN 'view' THEN 1 WHEN 'edit' THEN 2 ELSE 3 END) AS level
    FROM collab.acl GROUP BY 1, 2`);
  await c.end();
  const p = redis.pipeline();
  for (const r of rows) p.hset(`acl:${r.resource_id}`, r.subject, r.level);
  await p.exec();
}

/* ------------------------------------------------------------ helpers */
const SEG = /^[^/:\s]{1,128}:[^/\s]{1,128}$/;
function validRid(rid) {
  if (typeof rid !== 'string' || rid.length === 0 || rid.length > 1100) return false;
  const segs = rid.split('/');
  return segs.length <= 8 && segs.every((s) => Buffer.byteLength(s) <= 128 && SEG.test(s) && s.indexOf(':') > 0);
}
/** document:1/tab:a -> ['document:1'] (nearest last) */
function ancestors(rid) {
  const out = [];
  let i = rid.indexOf('/');
  while (i > 0) { out.push(rid.slice(0, i)); i = rid.indexOf('/', i + 1); }
  return out;
}
const iso = (ms) => new Date(ms).toISOString();
const err = (code, message) => ({ ok: false, error: { code, message } });
function parseLock(rid, val, pttl) {
  const [token, userId, username, , acquired] = val.split('\t');
  return {
    resourceId: rid, holder: { userId, username }, acquiredAt: iso(Number(acquired)),
    expiresAt: iso(Date.now() + Number(pttl)), token: Number(token),
  };
}
const publicLock = (l) => (l ? { resourceId: l.resourceId, holder: l.holder, acquiredAt: l.acquiredAt, expiresAt: l.expiresAt } : null);

// children of each resource seen (a document's tabs), for "every room on the path"
const childrenOf = new Map();
const pathRooms = (rid) => [rid, ...ancestors(rid), ...(childrenOf.get(rid) || [])];

function verifyJwt(token) {
  if (typeof token !== 'string' || token === '') return ['AUTH_TOKEN_MISSING', 'No token'];
  const parts = token.split('.');
  if (parts.length !== 3 || token.length > 8192) return ['AUTH_TOKEN_INVALID', 'Malformed token'];
  let header, claims;
  try {
    header = JSON.parse(Buffer.from(parts[0], 'base64url'));
    claims = JSON.parse(Buffer.from(parts[1], 'base64url'));
  } catch { return ['AUTH_TOKEN_INVALID', 'Malformed token']; }
  if (header.alg !== 'HS256') return ['AUTH_ALGORITHM_UNSUPPORTED', 'Unsupported algorithm'];
  const want = crypto.createHmac('sha256', SECRET).update(`${parts[0]}.${parts[1]}`).digest();
  const got = Buffer.from(parts[2], 'base64url');
  if (got.length !== want.length || !crypto.timingSafeEqual(got, want)) return ['AUTH_SIGNATURE_INVALID', 'Bad signature'];
  const now = Date.now() / 1000;
  if (typeof claims.exp !== 'number') return ['AUTH_CLAIM_INVALID', 'exp missing'];
  if (claims.exp < now) return ['AUTH_TOKEN_EXPIRED', 'Token expired'];
  if (typeof claims.nbf === 'number' && claims.nbf > now) return ['AUTH_CLAIM_INVALID', 'Token not yet valid'];
  if (typeof claims.sub !== 'string') return ['AUTH_CLAIM_INVALID', 'sub missing'];
  return [null, claims];
}

/* ------------------------------------------------------------ server */
const httpServer = http.createServer();
// connection state recovery, as collab offers it (BASELINE_RECOVERY=0: off):
// every broadcast then carries an offset and is kept for two minutes
const RECOVERY = process.env.BASELINE_RECOVERY !== '0'
  ? { connectionStateRecovery: { maxDisconnectionDuration: 2 * 60 * 1000, skipMiddlewares: true } } : {};
// long-polling and the upgrade, as collab offers them, for the transports phases
const io = new Server(httpServer, { transports: ['polling', 'websocket'], perMessageDeflate: false, serveClient: false, cors: { origin: true }, ...RECOVERY });

io.use((socket, next) => {
  const [code, claims] = verifyJwt(socket.handshake.auth && socket.handshake.auth.token);
  if (code) { const e = new Error(claims); e.data = { code }; return next(e); }
  socket.data.user = { userId: claims.sub, username: claims.name || claims.preferred_username || claims.sub };
  const groups = Array.isArray(claims.groups) ? claims.groups : [];
  if (!groups.every((g) => typeof g === 'string' && g !== '')) { const e = new Error('groups must be an array of names'); e.data = { code: 'AUTH_CLAIM_INVALID' }; return next(e); }
  socket.data.subjects = ['*', `user:${claims.sub}`, ...groups.map((g) => `group:${g}`)];
  socket.data.rooms = new Map();   // rid -> PresenceUser
  socket.data.locks = new Map();   // rid -> token
  next();
});

/** The user's level on rid (3 without access control). */
async function level(socket, rid) {
  if (!ACL_DB) return 3;
  const keys = [rid, ...ancestors(rid)].map((k) => `acl:${k}`);
  return Number(await redis.aclLevel(keys.length, ...keys, ...socket.data.subjects));
}
const forbidden = (rid) => err('FORBIDDEN', `you may not edit "${rid}"`);

async function acquire(socket, rid) {
  const anc = ancestors(rid);
  const keys = [`lk:${rid}`, `dz:${rid}`];
  for (const a of anc) keys.push(`lk:${a}`, `dz:${a}`);
  const u = socket.data.user;
  const [granted, who, val, pttl] = await redis.lockAcquire(keys.length, ...keys, TTL, u.userId, u.username, socket.id, rid, ...anc);
  const lock = parseLock(who, val, pttl);
  if (granted) socket.data.locks.set(rid, lock.token);
  return { granted: granted === 1, lock, holderResourceId: who };
}
async function release(socket, rid, reason) {
  const token = socket.data.locks.get(rid);
  if (token === undefined) return false;
  socket.data.locks.delete(rid);
  const dz = ancestors(rid).map((a) => `dz:${a}`);
  const ok = await redis.lockRelease(1 + dz.length, `lk:${rid}`, ...dz, token, rid);
  if (ok) {
    io.to(pathRooms(rid)).emit('lock:released', {
      resourceId: rid, previousHolder: socket.data.user, reason, releasedAt: new Date().toISOString(),
    });
  }
  return ok === 1;
}
function announceGrant(socket, lock) {
  const pub = publicLock(lock);
  io.to(pathRooms(lock.resourceId)).except(socket.id).emit('lock:acquired', pub);
  socket.emit('lock:acquired', lock);
}
function denied(socket, rid, r) {
  socket.emit('lock:denied', {
    resourceId: rid, holder: r.lock.holder, expiresAt: r.lock.expiresAt, reason: 'held',
    requester: socket.data.user, holderResourceId: r.holderResourceId,
  });
}
async function leaveRoom(socket, rid, reason) {
  const me = socket.data.rooms.get(rid);
  socket.data.rooms.delete(rid);
  await redis.hdel(`pr:${rid}`, socket.id);
  socket.leave(rid);
  await release(socket, rid, reason === 'left' ? 'left' : 'disconnected');
  io.to([rid, ...ancestors(rid)]).emit('presence:left', { resourceId: rid, user: me, reason });
}

io.on('connection', (socket) => {
  const on = (event, fn) => socket.on(event, async (payload, ack) => {
    if (typeof ack !== 'function') ack = (r) => { if (!r.ok) socket.emit('error', { ...r.error, resourceId: payload && payload.resourceId }); };
    try {
      if (payload === null || typeof payload !== 'object') return ack(err('BAD_REQUEST', 'The payload must be an object'));
      if (!validRid(payload.resourceId)) return ack(err('RESOURCE_ID_INVALID', 'Malformed resourceId'));
      ack(await fn(payload, payload.resourceId));
    } catch (e) {
      console.error(event, e);
      ack(err('INTERNAL', 'Internal error'));
    }
  });

  on('presence:join', async (p, rid) => {
    if (p.mode !== 'editor' && p.mode !== 'viewer') return err('BAD_REQUEST', 'mode must be editor or viewer');
    const lvl = await level(socket, rid);
    if (lvl < 1) return err('RESOURCE_NOT_FOUND', 'No such resource');
    const rows = (await pool.query(
      `SELECT id, parent_id, kind, title, version, content, saved_by, saved_by_name, saved_at
         FROM resources WHERE id = $1 OR parent_id = $1 ORDER BY id = $1 DESC, created_at, id`, [rid])).rows;
    if (rows.length === 0 || rows[0].id !== rid) return err('RESOURCE_NOT_FOUND', 'No such resource');
    const r = rows[0];
    const kids = rows.slice(1).map((c) => c.id);
    if (kids.length) childrenOf.set(rid, kids);
    let role = 'viewer';
    let lock = null;
    if (p.mode === 'editor' && lvl >= 2 && !socket.data.locks.has(rid)) {
      const a = await acquire(socket, rid);
      if (a.granted) { role = 'editor'; lock = a.lock; announceGrant(socket, a.lock); } else { lock = publicLock(a.lock); denied(socket, rid, a); }
    } else if (socket.data.locks.has(rid)) {
      role = 'editor';
    }
    const user = { ...socket.data.user, connectionId: socket.id, role, joinedAt: new Date().toISOString(), resourceId: rid };
    socket.data.rooms.set(rid, user);
    socket.join(rid);
    const rooms = [rid, ...kids];
    const multi = redis.pipeline().hset(`pr:${rid}`, socket.id, JSON.stringify(user));
    for (const k of rooms) multi.hvals(`pr:${k}`);
    if (!lock) multi.get(`lk:${rid}`).pttl(`lk:${rid}`);
    for (const k of kids) multi.get(`lk:${k}`).pttl(`lk:${k}`);
    const res = await multi.exec();
    let i = 1;
    const users = [];
    for (let k = 0; k < rooms.length; k++) for (const v of res[i++][1]) users.push(JSON.parse(v));
    if (!lock) { const v = res[i++][1]; const t = res[i++][1]; lock = v ? publicLock(parseLock(rid, v, t)) : null; }
    const children = kids.map((k, n) => {
      const v = res[i++][1]; const t = res[i++][1];
      const c = rows[n + 1];
      return { resourceId: k, kind: c.kind, title: c.title, version: Number(c.version), lock: v ? publicLock(parseLock(k, v, t)) : null };
    });
    io.to([rid, ...ancestors(rid)]).emit('presence:joined', { resourceId: rid, user });
    socket.emit('presence:state', { resourceId: rid, users });
    return {
      ok: true, role, permissions: PERMISSIONS[lvl], lock, users,
      resource: {
        resourceId: rid, kind: r.kind, title: r.title, version: Number(r.version), content: r.content,
        savedBy: r.saved_by ? { userId: r.saved_by, username: r.saved_by_name } : null,
        savedAt: r.saved_at ? r.saved_at.toISOString() : null,
      },
      children,
    };
  });

  on('presence:leave', async (p, rid) => {
    if (!socket.data.rooms.has(rid)) return err('NOT_JOINED', 'Not in this room');
    await leaveRoom(socket, rid, 'left');
    return { ok: true };
  });

  on('lock:acquire', async (p, rid) => {
    if (!socket.data.rooms.has(rid)) return err('NOT_JOINED', 'Not in this room');
    if (socket.data.locks.has(rid)) return err('BAD_REQUEST', 'Already holding this lock');
    if (await level(socket, rid) < 2) return forbidden(rid);
    const a = await acquire(socket, rid);
    if (!a.granted) {
      denied(socket, rid, a);
      return { ...err('LOCK_HELD', `${a.lock.holder.username} is editing`), lock: publicLock(a.lock) };
    }
    announceGrant(socket, a.lock);
    return { ok: true, lock: a.lock };
  });

  on('lock:renew', async (p, rid) => {
    const token = socket.data.locks.get(rid);
    if (token === undefined) return err('LOCK_NOT_HELD', 'No lock held');
    if (await level(socket, rid) < 2) return forbidden(rid);
    const dz = ancestors(rid).map((a) => `dz:${a}`);
    const v = await redis.lockRenew(1 + dz.length, `lk:${rid}`, ...dz, token, TTL, rid);
    if (!v) { socket.data.locks.delete(rid); return err('LOCK_EXPIRED', 'The lock expired'); }
    return { ok: true, lock: parseLock(rid, v, TTL) };
  });

  on('lock:release', async (p, rid) => {
    if (!socket.data.rooms.has(rid)) return err('NOT_JOINED', 'Not in this room');
    if (!(await release(socket, rid, 'released'))) return err('LOCK_NOT_HELD', 'No lock held');
    return { ok: true };
  });

  on('doc:save', async (p, rid) => {
    if (typeof p.content !== 'string') return err('BAD_REQUEST', 'content must be a string');
    if (p.baseVersion !== undefined && !Number.isInteger(p.baseVersion)) return err('BAD_REQUEST', 'baseVersion must be an integer');
    if (!socket.data.rooms.has(rid)) return err('NOT_JOINED', 'Not in this room');
    // the connection's lock on the resource or on an ancestor
    const lockRid = [rid, ...ancestors(rid)].find((x) => socket.data.locks.has(x));
    if (!lockRid) return err('LOCK_NOT_HELD', 'No lock held');
    if (await level(socket, rid) < 2) return forbidden(rid);
    const token = socket.data.locks.get(lockRid);
    const dz = ancestors(lockRid).map((a) => `dz:${a}`);
    if (!(await redis.lockRenew(1 + dz.length, `lk:${lockRid}`, ...dz, token, TTL, lockRid))) {
      socket.data.locks.delete(lockRid);
      return err('LOCK_EXPIRED', 'The lock expired');
    }
    const u = socket.data.user;
    // the new version and its history row in one statement (one transaction)
    const r = await pool.query(
      `WITH s AS (
         UPDATE resources SET content = $2, version = version + 1, saved_by = $3, saved_by_name = $4, saved_at = now()
          WHERE id = $1 AND ($5::bigint IS NULL OR version = $5)
          RETURNING id, version, content, saved_by, saved_by_name, saved_at)
       INSERT INTO history (resource_id, version, content, saved_by, saved_by_name, saved_at, token)
       SELECT id, version, content, saved_by, saved_by_name, saved_at, $6 FROM s
       RETURNING version, saved_at`,
      [rid, p.content, u.userId, u.username, p.baseVersion ?? null, token]);
    if (r.rowCount === 0) return err('VERSION_CONFLICT', 'The base version is not the current version');
    const version = Number(r.rows[0].version);
    io.to(pathRooms(rid)).emit('doc:saved', { resourceId: rid, version, savedBy: u, savedAt: r.rows[0].saved_at.toISOString() });
    return { ok: true, version };
  });

  socket.on('disconnect', async () => {
    try {
      for (const rid of [...socket.data.rooms.keys()]) await leaveRoom(socket, rid, 'disconnected');
      for (const rid of [...socket.data.locks.keys()]) await release(socket, rid, 'disconnected');
    } catch (e) { console.error('disconnect', e); }
  });
});

(ACL_DB ? loadAcl() : Promise.resolve()).then(() => {
  httpServer.listen(PORT, HOST, () => console.log(`listening ${PORT}`));
}, (e) => { console.error('could not load the grants', e); process.exit(1); });
for (const sig of ['SIGTERM', 'SIGINT']) {
  process.on(sig, () => { io.close(); redis.disconnect(); pool.end().finally(() => process.exit(0)); });
}
