// The competing writers of the stress run: a browser-like socket.io-client
// writer and an application backend writing through the SQL API.  Both
// record every operation as an invoke record before it is sent and an ok /
// fail / unknown record when its outcome is known (see checker.mjs).
//
// A writer takes a lock, reads the content under it, and saves the content
// it read plus one line naming the operation and the token it presents.  It
// thinks between steps, sometimes for longer than collab.lock_ttl; a save
// sent when the writer's own last renewal is more than a TTL old is marked
// expect: 'refused' (the lease has certainly lapsed on the server, whose
// renewal preceded the acknowledgement the writer timed it from).
import crypto from 'node:crypto';
import pg from 'pg';
import { io } from 'socket.io-client';
import { lineFor } from './checker.mjs';

export const now = () => Number(process.hrtime.bigint()) / 1e6;
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const ACK_TIMEOUT = 8000;

/** A small seeded generator (mulberry32). */
export function rng(seed) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  next.int = (lo, hi) => lo + Math.floor(next() * (hi - lo + 1));
  next.pick = (xs) => xs[Math.floor(next() * xs.length)];
  return next;
}

export function seedFor(seed, name) {
  return crypto.createHash('sha256').update(`${seed}/${name}`).digest().readUInt32LE(0);
}

export function makeJwt(secret, sub, name) {
  const b64u = (x) => Buffer.from(JSON.stringify(x)).toString('base64url');
  const t = Math.floor(Date.now() / 1000);
  const input = `${b64u({ alg: 'HS256', typ: 'JWT' })}.${b64u({ sub, name, iat: t, exp: t + 3600 })}`;
  return `${input}.${crypto.createHmac('sha256', secret).update(input).digest('base64url')}`;
}

/**
 * Think times: mostly short; with probability pLong longer than the TTL,
 * so that the lease lapses before the next step.
 */
function think(r, cfg) {
  if (r() < cfg.pLong) return Math.round(cfg.ttlMs * (1.25 + r() * 0.75));
  return r.int(20, Math.min(400, Math.round(cfg.ttlMs * 0.4)));
}

/**
 * The resource to compete for: mostly a tab.  A document is free only when
 * none of its tabs is locked, so every third period of 3 s (the same for
 * every process: the clock is CLOCK_MONOTONIC) is a "document period" in
 * which most writers go for the documents, and the tab locks drain.
 */
function pickTarget(r, cfg) {
  const d = r.pick(cfg.docs);
  const documentPeriod = Math.floor((now() - cfg.t0) / 3000) % 3 === 2;
  return r() < (documentPeriod ? 0.9 : 0.2) ? d.id : r.pick(d.tabs);
}

function docOf(docs, res) {
  return docs.find((d) => d.id === res);
}

/* ------------------------------------------------------------------------
 * socket.io-client writer
 * ------------------------------------------------------------------------ */

/**
 * cfg: { url, secret, clientId, docs: [{id, tabs}], ttlMs, pLong, seed, t0,
 *        stopping(): bool, rec(record), stall(ms) | null, stallMs: [lo, hi],
 *        pStall, pCut, onSocket(socket), cuts?: [bool], reserved?: tab id }
 * cuts: the writer's next cycles that hold a lock end with a cut, one per
 * entry; after a cut whose entry is true it reconnects and joins the same
 * resource again as editor at once (within collab.disconnect_grace: it
 * takes its lock over), after one whose entry is false it goes elsewhere.
 * reserved: a tab nobody else writes, which it works on while it has cuts
 * to make.
 */
export async function runWsClient(cfg) {
  const r = rng(seedFor(cfg.seed, cfg.clientId));
  let n = 0;
  const user = cfg.clientId;
  const nextId = () => `${cfg.clientId}#${++n}`;
  while (!cfg.stopping()) {
    let sess;
    try {
      sess = await wsConnect(cfg, user);
    } catch (e) {
      cfg.rec({ k: 'note', client: cfg.clientId, msg: `connect failed: ${e.message}`, t: now() });
      await sleep(200);
      continue;
    }
    while (!cfg.stopping() && !sess.dead) {
      await wsCycle(cfg, r, sess, nextId, user);
    }
    if (!sess.destroyed) sess.socket.close();
  }
}

function wsConnect(cfg, user) {
  return new Promise((resolve, reject) => {
    const socket = io(cfg.url, {
      ...transportOptions(cfg),
      auth: { token: makeJwt(cfg.secret, user, `Writer ${user}`) },
      reconnection: false,
      forceNew: true,
      timeout: 5000,
    });
    const sess = {
      socket, conn: null, dead: false, destroyed: false, joined: new Set(), lock: null, known: new Map(),
      suspended: new Set(), onSuspended: null,
    };
    // suspensions heard, kept from the first packet on (one may come with a join's ack)
    socket.on('lock:suspended', (e) => {
      sess.suspended.add(e.resourceId);
      sess.onSuspended?.(e.resourceId);
    });
    socket.on('connect', () => {
      sess.conn = socket.id;
      cfg.onSocket?.(socket);
      resolve(sess);
    });
    socket.on('connect_error', (e) => { socket.close(); reject(e); });
    socket.on('disconnect', (reason) => {
      sess.dead = true;
      cfg.rec({ k: 'note', client: cfg.clientId, conn: sess.conn, msg: `disconnect: ${reason}`, t: now() });
    });
  });
}

const WS_EVENT = {
  join: 'presence:join', leave: 'presence:leave', acquire: 'lock:acquire',
  renew: 'lock:renew', release: 'lock:release', save: 'doc:save',
};

async function wsOp(cfg, sess, nextId, user, op, payload, fields = {}) {
  const id = nextId();
  cfg.rec({ k: 'invoke', id, client: cfg.clientId, user, conn: sess.conn, kind: 'ws', op, res: payload.resourceId, ...fields, t: now() });
  let ack;
  try {
    if (sess.dead) throw new Error('connection closed');
    ack = await sess.socket.timeout(ACK_TIMEOUT).emitWithAck(WS_EVENT[op], payload);
  } catch (e) {
    cfg.rec({ k: 'unknown', id, message: e.message, t: now() });
    sess.dead = true; // the outcome is unknown: start over on a new connection
    return null;
  }
  const t = now();
  if (ack && ack.ok === true) {
    const done = { k: 'ok', id, t };
    if (op === 'join') {
      done.role = ack.role;
      done.read = { res: ack.resource.resourceId, version: ack.resource.version, content: ack.resource.content };
    }
    if (ack.lock && typeof ack.lock.token === 'number' && (op !== 'join' || ack.role === 'editor')) {
      done.grant = { res: ack.lock.resourceId, token: ack.lock.token };
    }
    if (op === 'save') done.version = ack.version;
    cfg.rec(done);
  } else {
    cfg.rec({ k: 'fail', id, code: ack?.error?.code ?? 'NO_CODE', message: ack?.error?.message, t });
  }
  return { ack, t };
}

async function wsCycle(cfg, r, sess, nextId, user) {
  const op = (name, payload, fields) => wsOp(cfg, sess, nextId, user, name, payload, fields);
  const back = cfg.comeBackTo;
  // a writer with cuts still to make works on its own tab until it has made them
  const target = back ?? (cfg.cuts?.length > 0 && cfg.reserved ? cfg.reserved : pickTarget(r, cfg));
  cfg.comeBackTo = null;
  sess.lock = null;
  sess.known.clear();

  // take the lock: join as editor, or (already in the room) lock:acquire and re-join to read
  let res;
  if (back || !sess.joined.has(target) || r() < 0.6) {
    res = await op('join', { resourceId: target, mode: 'editor' });
    if (!res) return;
    if (back && res.ack.ok && res.ack.role !== 'editor' && res.ack.lock?.holder?.userId === user) {
      // back before the server saw the cut connection go: in the room now,
      // it hears the suspension of its own lock, then takes the lock over
      const suspended = sess.suspended.has(target) || await new Promise((resolve) => {
        const timer = setTimeout(() => { sess.onSuspended = null; resolve(false); }, 5000);
        sess.onSuspended = (rid) => {
          if (rid !== target) return;
          clearTimeout(timer);
          sess.onSuspended = null;
          resolve(true);
        };
      });
      if (suspended && !(await op('leave', { resourceId: target }))) return;
      if (suspended) res = await op('join', { resourceId: target, mode: 'editor' });
      if (!res) return;
    }
    if (res.ack.ok) sess.joined.add(target);
    if (res.ack.ok && res.ack.role === 'editor' && res.ack.lock?.token) {
      sess.lock = { res: target, token: res.ack.lock.token, lastRenew: res.t };
      sess.known.set(target, { version: res.ack.resource.version, content: res.ack.resource.content });
    }
  } else {
    res = await op('acquire', { resourceId: target });
    if (!res) return;
    if (res.ack.ok) {
      sess.lock = { res: target, token: res.ack.lock.token, lastRenew: res.t };
      res = await op('join', { resourceId: target, mode: 'editor' });
      if (!res) return;
      if (res.ack.ok && res.ack.role === 'editor' && res.ack.lock?.token === sess.lock.token) {
        sess.lock.lastRenew = res.t;
        sess.known.set(target, { version: res.ack.resource.version, content: res.ack.resource.content });
      } else {
        sess.lock = null; // lost it in between (expired or forced)
      }
    }
  }
  if (!sess.lock) {
    await sleep(think(r, { ...cfg, pLong: 0 }));
    if (r() < 0.3) {
      const x = await op('leave', { resourceId: target });
      if (x) sess.joined.delete(target);
    }
    return;
  }

  const lock = sess.lock;
  const saves = r.int(1, 6);
  for (let i = 0; i < saves && !cfg.stopping(); i++) {
    await sleep(think(r, cfg));
    if (cfg.stall && r() < cfg.pStall) {
      // SIGSTOPped by the parent past the lease, then SIGCONTed
      await cfg.stall(r.int(cfg.stallMs[0], cfg.stallMs[1]));
    }
    if (sess.dead) return;
    if (r() < 0.15) {
      const x = await op('renew', { resourceId: lock.res }, { token: lock.token });
      if (!x) return;
      if (!x.ack.ok) { sess.lock = null; break; }
      lock.lastRenew = x.t;
    }
    const doc = docOf(cfg.docs, lock.res);
    const s = doc && r() < 0.5 ? r.pick(doc.tabs) : lock.res;
    if (!sess.known.has(s)) {
      // a tab under the document lock: read it (nobody else can write it now)
      const x = await op('join', { resourceId: s, mode: 'viewer' });
      if (!x) return;
      if (!x.ack.ok) { sess.lock = null; break; }
      sess.joined.add(s);
      sess.known.set(s, { version: x.ack.resource.version, content: x.ack.resource.content });
    }
    const known = sess.known.get(s);
    const id = nextId();
    const line = lineFor(id, lock.token);
    const payload = { resourceId: s, content: known.content + line + '\n', token: lock.token };
    if (r() < 0.5) payload.baseVersion = known.version;
    const late = now() - lock.lastRenew;
    const fields = { token: lock.token, line, base: payload.baseVersion ?? null, lockRes: lock.res };
    if (late > cfg.ttlMs + 25) Object.assign(fields, { expect: 'refused', why: `${Math.round(late)} ms after the writer's last renewal (ttl ${cfg.ttlMs} ms)` });
    const x = await wsOpWithId(cfg, sess, id, user, 'save', payload, fields);
    if (!x) return;
    if (!x.ack.ok) { sess.lock = null; break; }
    sess.known.set(s, { version: x.ack.version, content: payload.content });
    lock.lastRenew = x.t;
  }

  if (!sess.lock || sess.dead || cfg.stopping()) return;
  const forced = cfg.cuts?.length > 0;
  const end = forced ? 1 : r();
  if (end < 0.35) {
    const x = await op('release', { resourceId: lock.res }, { token: lock.token });
    if (x && x.ack.ok && r() < 0.4) {
      // a save with the released token must be refused
      const known = sess.known.get(lock.res);
      if (known) {
        const id = nextId();
        const line = lineFor(id, lock.token);
        await wsOpWithId(cfg, sess, id, user, 'save',
          { resourceId: lock.res, content: known.content + line + '\n', token: lock.token },
          { token: lock.token, line, base: null, lockRes: lock.res, expect: 'refused', why: 'after the writer released the lock' });
      }
    }
  } else if (end < 0.6) {
    const x = await op('leave', { resourceId: lock.res }, { token: lock.token });
    if (x && x.ack.ok) sess.joined.delete(lock.res);
  } else if (end < 1 - cfg.pCut) {
    // walk away: the lease expires
  } else {
    // the connection is cut without a close frame
    cfg.rec({ k: 'note', client: cfg.clientId, conn: sess.conn, msg: 'cutting the TCP connection', t: now() });
    const gone = new Promise((resolve) => sess.socket.once('disconnect', resolve));
    sess.destroyed = true;
    sess.dead = true;
    if (cfg.cut) await cfg.cut(sess);
    else sess.socket.io.engine.transport.ws._socket.destroy();
    if (forced && cfg.cuts.shift()) cfg.comeBackTo = lock.res;
    else if (!forced && r() < 0.6) await wsRecover(cfg, r, sess, nextId, user, lock, gone);
  }
  sess.lock = null;
}

/*
 * After a cut: the writer connects again on the same socket, whose
 * socket.io-client sends its pid and offset (connection state recovery),
 * after a blip that is sometimes longer than collab.disconnect_grace.
 * Recovered, it is the same connection: it saves once more with the token
 * it held (accepted only if its lease was kept and is still live), then
 * releases. Not recovered, it goes on as a new connection.
 */
async function wsRecover(cfg, r, sess, nextId, user, lock, gone) {
  await gone;
  await sleep(r.int(50, 700));
  if (cfg.stopping()) return;
  const socket = sess.socket;
  const back = await new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), 5000);
    socket.once('connect', () => { clearTimeout(timer); resolve(true); });
    socket.once('connect_error', () => { clearTimeout(timer); resolve(false); });
    socket.connect();
  });
  if (!back) {
    cfg.rec({ k: 'note', client: cfg.clientId, conn: sess.conn, msg: 'reconnect failed', t: now() });
    socket.close();
    return;
  }
  cfg.rec({ k: 'note', client: cfg.clientId, conn: sess.conn, msg: `reconnected: recovered ${socket.recovered} as ${socket.id}`, t: now() });
  sess.dead = false;
  sess.destroyed = false;
  if (!socket.recovered) {
    sess.conn = socket.id;
    sess.joined.clear();
    return;
  }
  const known = sess.known.get(lock.res);
  if (!known) return;
  const id = nextId();
  const line = lineFor(id, lock.token);
  const x = await wsOpWithId(cfg, sess, id, user, 'save',
    { resourceId: lock.res, content: known.content + line + '\n', token: lock.token },
    { token: lock.token, line, base: null, lockRes: lock.res });
  if (x && x.ack.ok) await wsOp(cfg, sess, nextId, user, 'release', { resourceId: lock.res }, { token: lock.token });
}

/* ------------------------------------------------------------------------
 * socket.io-client writers on long-polling or the default transports
 * ------------------------------------------------------------------------ */

/** socket.io-client's transports for cfg.transport: websocket (unset), polling, or default (none given). */
function transportOptions(cfg) {
  const t = cfg.transport ?? 'websocket';
  return t === 'default' ? {} : { transports: [t] };
}

/**
 * The socket.io writer on cfg.transport ('polling' or 'default'), its
 * requests through a TCP proxy of its own: a cut drops every connection of
 * the client at once (the waiting poll, a post, or the WebSocket it upgraded
 * to) and refuses new ones until the client has noticed, as a network that
 * goes away does.  cfg.proxy: a started Proxy (test/failover/proxy.mjs).
 */
const OUTAGE_MS = 500;
const IDLE_BEFORE_CUT_MS = 100;
export async function runProxiedWsClient(cfg) {
  const { proxy } = cfg;
  const backend = Number(new URL(cfg.url).port);
  proxy.setTarget(backend);
  // The holder idles a moment first, so that on long-polling its next poll
  // waits at the server (whose socket going away is a loss seen at once;
  // without a waiting poll the loss shows only at the next missed ping,
  // after the lease has expired).  The network then stays away for a
  // while: the client, seeing its requests fail, sends a close packet on a
  // new connection, which must not arrive (it would make the loss a clean
  // close).  Meanwhile the writer's reconnections fail and are retried.
  const cut = async () => {
    await sleep(IDLE_BEFORE_CUT_MS);
    proxy.setTarget(null);
    proxy.cutAll();
    setTimeout(() => proxy.setTarget(backend), OUTAGE_MS);
  };
  return runWsClient({ ...cfg, url: `http://127.0.0.1:${proxy.port}`, cut });
}

// A save names its own operation id in its line, so the id is taken first.
async function wsOpWithId(cfg, sess, id, user, op, payload, fields) {
  return wsOp(cfg, sess, () => id, user, op, payload, fields);
}

/* ------------------------------------------------------------------------
 * SQL API writer (an application backend)
 * ------------------------------------------------------------------------ */
export const SQLSTATE_CODE = {
  CL001: 'BAD_REQUEST', CL002: 'RESOURCE_ID_INVALID', CL003: 'RESOURCE_NOT_FOUND', CL004: 'NOT_JOINED',
  CL005: 'RESOURCE_EXISTS', CL010: 'LOCK_HELD', CL011: 'LOCK_NOT_HELD', CL012: 'LOCK_EXPIRED',
  CL020: 'VERSION_CONFLICT', CL021: 'PAYLOAD_TOO_LARGE', CL030: 'RATE_LIMITED', CL999: 'INTERNAL',
};

/**
 * cfg: { clientId, pgUser, admin: bool, docs, ttlMs, pLong, seed, t0, stopping(), rec() }
 * PGHOST / PGPORT come from the environment.
 */
export async function runSqlClient(cfg) {
  const r = rng(seedFor(cfg.seed, cfg.clientId));
  let n = 0;
  let session = 0;
  const user = cfg.clientId;
  while (!cfg.stopping()) {
    session += 1;
    const client = new pg.Client({ database: 'postgres', user: cfg.pgUser });
    client.on('error', () => {});
    try {
      await client.connect();
    } catch (e) {
      cfg.rec({ k: 'note', client: cfg.clientId, msg: `connect failed: ${e.message}`, t: now() });
      await sleep(200);
      continue;
    }
    const sess = { client, conn: `${cfg.clientId}.s${session}`, dead: false };
    const op = async (name, res, sql, params, fields = {}, id = `${cfg.clientId}#${++n}`) => {
      cfg.rec({ k: 'invoke', id, client: cfg.clientId, user, conn: sess.conn, kind: 'sql', op: name, res, ...fields, t: now() });
      try {
        const rows = (await client.query(sql, params)).rows;
        return { rows, t: now(), id };
      } catch (e) {
        const code = SQLSTATE_CODE[e.code];
        if (code) {
          cfg.rec({ k: 'fail', id, code, message: e.message, t: now() });
          return { err: code, t: now(), id };
        }
        if (e.code) {
          cfg.rec({ k: 'fail', id, code: `SQLSTATE ${e.code}`, message: e.message, t: now() });
          return { err: e.code, t: now(), id };
        }
        cfg.rec({ k: 'unknown', id, message: e.message, t: now() });
        sess.dead = true;
        return null;
      }
    };
    const okRec = (x, extra = {}) => cfg.rec({ k: 'ok', id: x.id, t: x.t, ...extra });
    try {
      while (!cfg.stopping() && !sess.dead) {
        if (cfg.admin && r() < 0.35) {
          const res = pickTarget(r, cfg);
          const x = await op('force', res, 'SELECT collab.force_release($1, $2) AS released', [res, 'stress: an administrator takes the lock']);
          if (!x) break;
          if (!x.err) okRec(x, { released: x.rows[0].released });
        }
        await sqlCycle(cfg, r, op, okRec, sess, user, () => `${cfg.clientId}#${++n}`);
      }
    } finally {
      await client.end().catch(() => {});
    }
  }
}

async function sqlCycle(cfg, r, op, okRec, sess, user, nextId) {
  const target = pickTarget(r, cfg);
  const a = await op('acquire', target,
    'SELECT granted, token::int8 AS token FROM collab.acquire($1, $2, $3, $4)',
    [target, user, `App ${user}`, sess.conn]);
  if (!a || a.err) return;
  const row = a.rows[0];
  if (!row.granted) {
    okRec(a, { granted: false });
    await sleep(think(r, { ...cfg, pLong: 0 }));
    return;
  }
  const token = Number(row.token);
  okRec(a, { granted: true, grant: { res: target, token } });
  let lastRenew = a.t;
  const known = new Map();
  const doc = docOf(cfg.docs, target);
  let held = true;
  const saves = r.int(1, 6);
  for (let i = 0; i < saves && !cfg.stopping(); i++) {
    await sleep(think(r, cfg));
    if (r() < 0.15) {
      const x = await op('renew', target, 'SELECT expires_at FROM collab.renew($1)', [token], { token });
      if (!x) return;
      if (x.err) { held = false; break; }
      okRec(x);
      lastRenew = x.t;
    }
    const s = doc && r() < 0.5 ? r.pick(doc.tabs) : target;
    if (!known.has(s)) {
      const x = await op('read', s, 'SELECT content, version::int8 AS version FROM collab.resources WHERE id = $1', [s]);
      if (!x) return;
      const k = { version: Number(x.rows[0].version), content: x.rows[0].content };
      okRec(x, { read: { res: s, ...k } });
      known.set(s, k);
    }
    const id = nextId();
    const line = lineFor(id, token);
    const content = known.get(s).content + line + '\n';
    const base = r() < 0.5 ? known.get(s).version : null;
    const late = now() - lastRenew;
    const fields = { token, line, base, lockRes: target };
    if (late > cfg.ttlMs + 25) Object.assign(fields, { expect: 'refused', why: `${Math.round(late)} ms after the writer's last renewal (ttl ${cfg.ttlMs} ms)` });
    const x = await op('save', s, 'SELECT collab.save($1, $2, $3, $4)::int8 AS version', [s, token, content, base], fields, id);
    if (!x) return;
    if (x.err) { held = false; break; }
    const version = Number(x.rows[0].version);
    okRec(x, { version });
    known.set(s, { version, content });
    lastRenew = x.t;
  }
  if (!held || cfg.stopping()) return;
  if (r() < 0.5) {
    const x = await op('release', target, 'SELECT collab.release($1) AS res', [token], { token });
    if (!x || x.err) return;
    okRec(x);
    if (r() < 0.5) {
      // the released token must not save any more
      const s = target;
      const k = known.get(s) ?? { content: '', version: 0 };
      const id = nextId();
      const line = lineFor(id, token);
      const y = await op('save', s, 'SELECT collab.save($1, $2, $3)::int8 AS version', [s, token, k.content + line + '\n'],
        { token, line, base: null, lockRes: target, expect: 'refused', why: 'after the writer released the lock' }, id);
      if (y && !y.err) okRec(y, { version: Number(y.rows[0].version) });
    }
  }
  // else: walk away, the lease expires
}
