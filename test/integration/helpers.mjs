// Shared helpers for the WebSocket worker's end-to-end tests (ws_*.test.mjs).
//
// Environment (set by scripts/run-tests.sh or test/integration/run-ws.sh):
//   PGHOST, PGPORT, PGUSER   the test cluster; database postgres runs the worker
//   COLLAB_WS_URL            http://127.0.0.1:<collab.port>
//   COLLAB_JWT_SECRET        the cluster's collab.jwt_secret (HS256)
//   COLLAB_TEST_WORK         a scratch directory readable by the postgres user
//   COLLAB_TRANSPORTS        how socket.io-client connects (connect(), tryConnect()):
//                              websocket (the default here): transports: ['websocket']
//                              polling:   transports: ['polling'] (HTTP long-polling only)
//                              default:   socket.io-client's own default, long-polling
//                                         first, then the upgrade to WebSocket
//
// Every socket a test opens is logged from its first packet on (onAny), so
// waitFor() finds an event whether it arrived before or after the call.
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import assert from 'node:assert/strict';
import pg from 'pg';
import { io } from 'socket.io-client';
import WebSocket from 'ws';

for (const v of ['COLLAB_WS_URL', 'COLLAB_JWT_SECRET', 'COLLAB_TEST_WORK', 'PGHOST']) {
  if (!process.env[v]) throw new Error(`${v} is not set: run the WebSocket tests with test/integration/run-ws.sh`);
}

export const WS_URL = process.env.COLLAB_WS_URL.replace(/\/+$/, '');
export const RAW_WS_URL = WS_URL.replace(/^http/, 'ws') + '/socket.io/?EIO=4&transport=websocket';
export const SECRET = process.env.COLLAB_JWT_SECRET;
export const WORK = process.env.COLLAB_TEST_WORK;
export const DEFAULT_TIMEOUT = 5000;

/** The client setup of this run: 'websocket', 'polling' or 'default' (COLLAB_TRANSPORTS). */
export const TRANSPORTS = process.env.COLLAB_TRANSPORTS || 'websocket';
if (!['websocket', 'polling', 'default'].includes(TRANSPORTS)) {
  throw new Error(`COLLAB_TRANSPORTS must be websocket, polling or default, not "${TRANSPORTS}"`);
}
/** socket.io-client options for that setup: none for its default transports. */
export const transportOptions = () => (TRANSPORTS === 'default' ? {} : { transports: [TRANSPORTS] });
export const DEFAULT_TTL_MS = 5 * 60 * 1000;

export const ISO_RE = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:?\d\d)$/;

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
export const nowSec = () => Math.floor(Date.now() / 1000);

let seq = 0;
const runTag = `${process.pid.toString(36)}${crypto.randomBytes(2).toString('hex')}`;
/** A string unique to this test run: prefix-<run>-<n>. */
export function uniq(prefix = 'x') {
  seq += 1;
  return `${prefix}-${runTag}-${seq}`;
}

/* ------------------------------------------------------------------------
 * Tokens
 * ------------------------------------------------------------------------ */
const b64u = (x) => Buffer.from(typeof x === 'string' ? x : JSON.stringify(x)).toString('base64url');

/** A user: a unique sub and a display name. */
export function newUser(name = 'User', extra = {}) {
  return { sub: uniq('u-' + name.toLowerCase().replace(/[^a-z0-9]/g, '')), name, ...extra };
}

/**
 * A signed JWT. claims are merged over {iat, exp: now+1h}; a claim given as
 * undefined is left out. opts: alg ('HS256' default, 'HS512', 'RS256',
 * 'ES256', 'none', or any string with opts.sign), secret (HS*), key (a
 * private KeyObject for RS256/ES256), header (merged into the header),
 * sign (input string => Buffer signature, overrides everything).
 */
export function makeToken(claims = {}, opts = {}) {
  const alg = opts.alg ?? 'HS256';
  const header = { alg, typ: 'JWT', ...(opts.header ?? {}) };
  const body = { iat: nowSec(), exp: nowSec() + 3600, ...claims };
  const input = `${b64u(header)}.${b64u(body)}`;
  let sig;
  if (opts.sign) sig = opts.sign(input);
  else if (alg === 'HS256') sig = crypto.createHmac('sha256', opts.secret ?? SECRET).update(input).digest();
  else if (alg === 'HS512') sig = crypto.createHmac('sha512', opts.secret ?? SECRET).update(input).digest();
  else if (alg === 'RS256') sig = crypto.sign('sha256', Buffer.from(input), opts.key);
  else if (alg === 'ES256') sig = crypto.sign('sha256', Buffer.from(input), { key: opts.key, dsaEncoding: 'ieee-p1363' });
  else sig = Buffer.alloc(0);
  return `${input}.${Buffer.from(sig).toString('base64url')}`;
}

/** Token for a user made by newUser(). */
export const tokenFor = (user, extra = {}, opts = {}) => makeToken({ ...user, ...extra }, opts);

/** Writes a PEM into COLLAB_TEST_WORK (readable by the server) and returns its path. */
export function writeWorkFile(name, text) {
  const p = path.join(WORK, name);
  fs.writeFileSync(p, text, { mode: 0o644 });
  fs.chmodSync(p, 0o644);
  return p;
}

/* ------------------------------------------------------------------------
 * PostgreSQL
 * ------------------------------------------------------------------------ */
export const pool = new pg.Pool({ database: 'postgres', max: 4 });
pool.on('error', () => {});

export async function q(sql, params = []) {
  return (await pool.query(sql, params)).rows;
}

const created = [];
/**
 * Creates document:<unique key> with the given tabs, which every user may
 * edit (the tests of access control grant their own).
 */
export async function createDocument(tabs = ['a', 'b'], prefix = 'ws') {
  const key = uniq(prefix);
  const [{ id }] = await q('SELECT collab.create_document($1, NULL, $2::text[]) AS id', [key, tabs]);
  await q("SELECT collab.grant($1, '*', 'edit')", [id]);
  created.push(id);
  const doc = {
    id,
    tab: (t) => `${id}/tab:${t}`,
  };
  return doc;
}

/** The row of collab.resources, for "nothing changed" checks. */
export async function resourceRow(id) {
  const rows = await q('SELECT content, version, saved_by, saved_by_name FROM collab.resources WHERE id = $1', [id]);
  assert.equal(rows.length, 1, `resource ${id} exists`);
  return rows[0];
}

/** Rows of collab.locks (live leases) on one resource. */
export async function locksOn(id) {
  return q('SELECT resource_id, user_id, username, holder_id, expires_at FROM collab.locks WHERE resource_id = $1', [id]);
}

function literal(v) {
  return `'${String(v).replace(/'/g, "''")}'`;
}

/** ALTER SYSTEM SET name = value; reload. Remember to resetConf() in a finally. */
export async function setConf(name, value) {
  await q(`ALTER SYSTEM SET ${name} = ${literal(value)}`);
  await q('SELECT pg_reload_conf()');
}

/**
 * Waits until the worker serving socket grants locks lasting ttlMs (after
 * setConf('collab.lock_ttl', ...), which each worker applies on its own
 * reload): joins probeResourceId as editor and leaves it, until the grant has
 * that length.
 */
export async function waitForLockTtl(socket, probeResourceId, ttlMs) {
  await eventually(async () => {
    const j = await emitAck(socket, 'presence:join', { resourceId: probeResourceId, mode: 'editor' });
    const ms = j.lock ? Date.parse(j.lock.expiresAt) - Date.parse(j.lock.acquiredAt) : null;
    await emitAck(socket, 'presence:leave', { resourceId: probeResourceId });
    return ms === ttlMs;
  }, `${socket.__label}'s worker grants locks of ${ttlMs} ms`);
}

/** Sets collab.disconnect_grace to ms and waits until every worker has reloaded. */
export async function setGrace(ms) {
  await setWorkerConf('collab.disconnect_grace', `${ms}ms`);
}

export async function resetConf(...names) {
  for (const n of names) await q(`ALTER SYSTEM RESET ${n}`);
  await q('SELECT pg_reload_conf()');
}

/** A counter or gauge of the worker's /metrics (summed over the workers). */
export async function metric(name) {
  const text = await (await fetch(`${WS_URL}/metrics`)).text();
  const m = text.match(new RegExp(`^${name} (\\S+)$`, 'm'));
  return m ? Number(m[1]) : null;
}

/** Waits until every worker has reloaded its configuration since reloads was read. */
async function workersReloaded(reloads) {
  const workers = await metric('collab_workers');
  await eventually(async () => (await metric('collab_config_reloads_total')) >= reloads + workers,
    'every worker has reloaded its configuration', 5000, 20);
}

/** setConf, and then waits until every worker has the new value (the worker's settings). */
export async function setWorkerConf(name, value) {
  const reloads = await metric('collab_config_reloads_total');
  await setConf(name, value);
  await workersReloaded(reloads);
}

/** resetConf, and then waits until every worker has reloaded. */
export async function resetWorkerConf(...names) {
  const reloads = await metric('collab_config_reloads_total');
  await resetConf(...names);
  await workersReloaded(reloads);
}

/**
 * Retries fn until it returns a truthy value (which is returned); rejects
 * with `what` and the last value/error after timeout ms.
 */
export async function eventually(fn, what, timeout = 6000, interval = 150) {
  const end = Date.now() + timeout;
  let last;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
      last = v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > end) {
      throw new Error(`not true within ${timeout} ms: ${what}; last result: ${last instanceof Error ? last.message : JSON.stringify(last)}`);
    }
    await sleep(interval);
  }
}

/* ------------------------------------------------------------------------
 * Socket.IO clients
 * ------------------------------------------------------------------------ */
const sockets = new Set();

function attachLog(socket, label) {
  socket.__label = label;
  socket.__log = [];
  socket.__waiters = new Set();
  socket.__disconnects = [];
  const push = (entry) => {
    socket.__log.push(entry);
    for (const w of [...socket.__waiters]) w(entry);
  };
  socket.onAny((event, ...args) => push({ event, payload: args[0], args }));
  socket.on('disconnect', (reason) => {
    socket.__disconnects.push(reason);
    push({ event: '$disconnect', payload: reason, args: [reason] });
  });
  socket.on('connect', () => push({ event: '$connect', payload: socket.id, args: [] }));
}

/*
 * Each client's long-polling requests go through an agent of its own, so
 * that killSocket() can cut its connections.  Without keep-alive, as
 * socket.io-client's own default in Node (the browser test has it).
 */
function pollingAgent() {
  if (TRANSPORTS === 'websocket' || !WS_URL.startsWith('http:')) return {};
  return { agent: new http.Agent({ keepAlive: false }) };
}

function socketOptions(auth, opts) {
  const { reconnection = false, nsp = '', label, ...rest } = opts;
  return {
    url: WS_URL + nsp,
    label,
    options: {
      ...transportOptions(),
      ...pollingAgent(),
      ...(auth === undefined ? {} : { auth }),
      reconnection,
      forceNew: true,
      timeout: 5000,
      ...rest,
    },
  };
}

/**
 * Connects as user (from newUser(): a token is made for it), or with an
 * explicit auth object ({ token }) when user is a string token or has
 * .auth. Resolves with the connected socket; rejects with the
 * connect_error (err.message, err.data) otherwise.
 */
export function connect(user, opts = {}) {
  let auth;
  let label;
  if (typeof user === 'string') { auth = { token: user }; label = 'token'; }
  else if (user && 'auth' in user) { auth = user.auth; label = 'custom'; }
  else { auth = { token: tokenFor(user) }; label = user.name; }
  const { url, options } = socketOptions(auth, opts);
  const socket = io(url, options);
  attachLog(socket, opts.label ?? label);
  sockets.add(socket);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      cleanupListeners();
      reject(new Error(`${socket.__label}: no connect or connect_error within 6000 ms`));
    }, 6000);
    const onConnect = () => { cleanupListeners(); resolve(socket); };
    const onError = (err) => {
      cleanupListeners();
      socket.close();
      const e = new Error(`${socket.__label}: connect_error: ${err.message} ${JSON.stringify(err.data ?? null)}`);
      e.connectError = err;
      reject(e);
    };
    function cleanupListeners() {
      clearTimeout(timer);
      socket.off('connect', onConnect);
      socket.off('connect_error', onError);
    }
    socket.on('connect', onConnect);
    socket.on('connect_error', onError);
  });
}

/**
 * Connects with auth (undefined: no auth payload at all) expecting a
 * refusal; resolves with the connect_error Error (message, data), or with
 * null if it connected (the socket is closed again).
 */
export function tryConnect(auth, opts = {}) {
  const { url, options } = socketOptions(auth, opts);
  const socket = io(url, options);
  sockets.add(socket);
  return new Promise((resolve) => {
    const timer = setTimeout(() => { socket.close(); resolve({ message: 'timeout', data: { code: '(no answer within 6000 ms)' } }); }, 6000);
    socket.on('connect', () => { clearTimeout(timer); socket.close(); resolve(null); });
    socket.on('connect_error', (err) => { clearTimeout(timer); socket.close(); resolve(err); });
  });
}

/** The refusal of tryConnect() as "CODE" (or "connected"). */
export async function refusalCode(auth, opts = {}) {
  const err = await tryConnect(auth, opts);
  return err === null ? 'connected' : (err.data?.code ?? `(no code; message "${err.message}")`);
}

function describeLog(socket, n = 12) {
  return JSON.stringify(socket.__log.slice(-n).map((e) => [e.event, e.payload]));
}

/** Index into the socket's log: waitFor(..., { since }) only looks after it. */
export const mark = (socket) => socket.__log.length;

/**
 * Resolves with the payload of the first event named `event` (since the
 * optional mark) for which predicate(payload) is true; rejects with a
 * message naming the socket, the event and what it did receive.
 */
export function waitFor(socket, event, predicate = () => true, timeoutOrOpts = DEFAULT_TIMEOUT) {
  const opts = typeof timeoutOrOpts === 'number' ? { timeout: timeoutOrOpts } : timeoutOrOpts;
  const timeout = opts.timeout ?? DEFAULT_TIMEOUT;
  const since = opts.since ?? 0;
  const test = (e) => e.event === event && predicate(e.payload);
  const found = socket.__log.slice(since).find(test);
  if (found) return Promise.resolve(found.payload);
  return new Promise((resolve, reject) => {
    const waiter = (e) => {
      if (test(e)) { clearTimeout(timer); socket.__waiters.delete(waiter); resolve(e.payload); }
    };
    const timer = setTimeout(() => {
      socket.__waiters.delete(waiter);
      reject(new Error(`${socket.__label}: no "${event}" matching ${predicate.toString().slice(0, 160)} within ${timeout} ms; last received: ${describeLog(socket)}`));
    }, timeout);
    socket.__waiters.add(waiter);
  });
}

/** Every logged event `event` matching predicate (since the optional mark). */
export function received(socket, event, predicate = () => true, since = 0) {
  return socket.__log.slice(since).filter((e) => e.event === event && predicate(e.payload)).map((e) => e.payload);
}

/** Resolves with the reason of the next (or an already logged) disconnect. */
export function waitDisconnect(socket, timeout = DEFAULT_TIMEOUT, since = 0) {
  return waitFor(socket, '$disconnect', () => true, { timeout, since });
}

/** Emits with an acknowledgement; rejects if none arrives in time. */
export async function emitAck(socket, event, payload, timeout = DEFAULT_TIMEOUT) {
  try {
    return payload === undefined
      ? await socket.timeout(timeout).emitWithAck(event)
      : await socket.timeout(timeout).emitWithAck(event, payload);
  } catch (e) {
    throw new Error(`${socket.__label}: no acknowledgement for ${event} ${JSON.stringify(payload)?.slice(0, 200)} within ${timeout} ms (${e.message}); last received: ${describeLog(socket)}`);
  }
}

/** Asserts a successful ack and returns it. */
export function ok(ack, what = '') {
  assert.ok(ack && ack.ok === true, `expected {ok:true}${what ? ' for ' + what : ''}, got ${JSON.stringify(ack)}`);
  return ack;
}

/** Asserts a failed ack with error.code === code and a message; returns it. */
export function fails(ack, code, what = '') {
  assert.ok(ack && ack.ok === false && ack.error && typeof ack.error === 'object',
    `expected {ok:false, error:{code:${code}}}${what ? ' for ' + what : ''}, got ${JSON.stringify(ack)}`);
  assert.equal(ack.error.code, code, `error code${what ? ' for ' + what : ''}: ${JSON.stringify(ack)}`);
  assert.equal(typeof ack.error.message, 'string', `error.message is a string: ${JSON.stringify(ack)}`);
  assert.ok(ack.error.message.length > 0, 'error.message is not empty');
  return ack;
}

export const join = (s, resourceId, mode = 'viewer') => emitAck(s, 'presence:join', { resourceId, mode });
export const leave = (s, resourceId) => emitAck(s, 'presence:leave', { resourceId });
export const acquire = (s, resourceId) => emitAck(s, 'lock:acquire', { resourceId });
export const renew = (s, resourceId) => emitAck(s, 'lock:renew', { resourceId });
export const release = (s, resourceId) => emitAck(s, 'lock:release', { resourceId });
export const save = (s, resourceId, content, extra = {}) => emitAck(s, 'doc:save', { resourceId, content, ...extra });

/** UserRef of a newUser() */
export const ref = (user) => ({ userId: user.sub, username: user.name });

/** The pid of the one collab worker. */
export async function currentWorkerPid() {
  const rows = await q("SELECT pid FROM pg_stat_activity WHERE backend_type = 'collab worker'");
  assert.equal(rows.length, 1, 'one collab worker runs');
  return rows[0].pid;
}

/**
 * A client that edits a tab of its own while hostile input goes to the
 * worker: served(what) saves once more and asserts the ack, its doc:saved
 * event, that the client is still connected and that the worker is the
 * process it was at the start.
 */
export async function startBystander(prefix) {
  const workerPid = await currentWorkerPid();
  const doc = await createDocument(['t'], prefix);
  const socket = await connect(newUser('Bystander'), { label: 'bystander' });
  assert.equal(ok(await join(socket, doc.tab('t'), 'editor')).role, 'editor');
  let saves = 0;
  return {
    socket,
    resourceId: doc.tab('t'),
    async served(what) {
      saves += 1;
      const m = mark(socket);
      const ack = await save(socket, doc.tab('t'), `bystander save ${saves}`);
      assert.deepEqual(ack, { ok: true, version: saves }, `bystander save after ${what}`);
      const ev = await waitFor(socket, 'doc:saved', (e) => e.version === saves, { since: m });
      assert.equal(ev.resourceId, doc.tab('t'));
      assert.ok(socket.connected, `bystander still connected after ${what}`);
      assert.equal(await currentWorkerPid(), workerPid, `same worker process after ${what}`);
    },
  };
}

/**
 * A bystander that keeps asking while something hostile happens: a
 * socket.io-client connection, editor of a tab of its own, renews its lock
 * every everyMs and times each acknowledgement.  measure(what, fn) runs fn
 * meanwhile, prints the bystander's figures and asserts that it got answers
 * all along, none slower than maxMs (generous: the machine is shared, and
 * the point is milliseconds against the seconds a wait in the event loop
 * would take); it returns what fn returned.
 */
export async function startTimedBystander(prefix, { everyMs = 40 } = {}) {
  const doc = await createDocument(['t'], prefix);
  const socket = await connect(newUser('TimedBystander'), { label: 'timed bystander' });
  assert.equal(ok(await join(socket, doc.tab('t'), 'editor')).role, 'editor');
  return {
    socket,
    resourceId: doc.tab('t'),
    // maxMs tells a loop that stalled behind a hostile session (it would
    // wait for the whole hold, seconds) from a machine that is merely busy:
    // the figures themselves are printed, not judged.
    async measure(what, fn, { maxMs = 2000 } = {}) {
      const times = [];
      const failures = [];
      let running = true;
      const loop = (async () => {
        while (running) {
          const t0 = performance.now();
          try {
            const ack = await emitAck(socket, 'lock:renew', { resourceId: doc.tab('t') }, 15000);
            if (!ack.ok) failures.push(JSON.stringify(ack));
          } catch (e) {
            failures.push(e.message);
          }
          times.push(performance.now() - t0);
          await sleep(everyMs);
        }
      })();
      let result;
      try {
        result = await fn();
      } finally {
        running = false;
        await loop;
      }
      const sorted = [...times].sort((a, b) => a - b);
      const at = (p) => sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))];
      console.log(`# bystander during ${what}: ${sorted.length} answers, p50 ${at(0.5).toFixed(1)} ms, ` +
        `p99 ${at(0.99).toFixed(1)} ms, max ${sorted[sorted.length - 1].toFixed(1)} ms`);
      assert.deepEqual(failures, [], `the bystander's requests all succeeded during ${what}`);
      assert.ok(sorted.length >= 1, `the bystander got answers during ${what}`);
      assert.ok(sorted[sorted.length - 1] <= maxMs,
        `the bystander was answered within ${maxMs} ms during ${what}: slowest ${sorted[sorted.length - 1].toFixed(1)} ms`);
      assert.ok(socket.connected, `the bystander is still connected after ${what}`);
      return result;
    },
  };
}

/**
 * What the server calls a loss made with killSocket(): 'disconnected', as
 * it sees the transport close.  On long-polling it sees that only if a
 * poll is waiting at the server: one answered a moment before the cut (a
 * ping at pingInterval) leaves it nothing to see close, and the session
 * ends at the ping timeout, 'timeout'.  killed(reason) maps either to
 * 'disconnected', and no other reason.
 */
export const killed = (reason) =>
  (reason === 'timeout' && TRANSPORTS !== 'websocket' ? 'disconnected' : reason);

/**
 * Cuts a socket.io-client socket off without a goodbye: the TCP connection
 * under its WebSocket is destroyed without a close frame; on long-polling,
 * the connections of its requests in flight are destroyed (the poll that
 * waits at the server among them: the server sees its client go), waiting
 * for one if the client is between two polls; its later requests fail
 * before they leave.
 */
export async function killSocket(socket) {
  const engine = socket.io.engine;
  const agent = socket.io.opts.agent;
  const inFlight = () => (agent ? Object.values(agent.sockets).flat() : []);
  // a poll the server has (sent whole, no answer yet): its connection
  // closing is what the server sees of the loss
  const waitingPoll = () => engine.transport.name === 'polling' && !engine.upgrading && inFlight().some((s) => {
    const req = s._httpMessage;
    return req && req.method === 'GET' && req.writableFinished && !req.res;
  });
  // with the default transports the probe may be under way: wait for either
  await eventually(() => engine.transport.name === 'websocket' || waitingPoll(),
    'a WebSocket, or a poll waiting at the server', 2000, 5);
  if (engine.transport.name === 'websocket') {
    const ws = engine.transport.ws;
    assert.ok(ws && ws._socket, 'socket has a ws transport with a TCP socket');
    ws._socket.destroy();
    return;
  }
  assert.ok(agent, 'a long-polling socket has an agent of its own');
  // the network is gone: the goodbye the client posts when its poll fails
  // (a close packet) must not reach the server either
  agent.addRequest = (req) => process.nextTick(() => req.destroy(new Error('killSocket: network down')));
  for (const s of inFlight()) s.destroy();
}

/* ------------------------------------------------------------------------
 * Raw Engine.IO / WebSocket clients (wire-level tests)
 * ------------------------------------------------------------------------ */
const raws = new Set();

/**
 * Opens ws://.../socket.io/?<query>. Resolves with a client whose .frames
 * are the text frames received (strings; binary frames as Buffers), and
 * .closed a promise of {code, reason}. Rejects on a refused upgrade with
 * err.statusCode. autoPong answers the server's "2" pings with "3".
 */
export function rawOpen({ query = 'EIO=4&transport=websocket', autoPong = false, headers } = {}) {
  const url = WS_URL.replace(/^http/, 'ws') + '/socket.io/?' + query;
  const ws = new WebSocket(url, { headers, handshakeTimeout: 5000 });
  raws.add(ws);
  const client = {
    ws,
    frames: [],
    waiters: new Set(),
    isClosed: false,
    closeInfo: null,
  };
  client.closed = new Promise((resolve) => {
    ws.on('close', (code, reason) => {
      client.isClosed = true;
      client.closeInfo = { code, reason: reason.toString() };
      for (const w of [...client.waiters]) w(null);
      resolve(client.closeInfo);
    });
  });
  ws.on('message', (data, isBinary) => {
    const f = isBinary ? data : data.toString('utf8');
    client.frames.push(f);
    if (autoPong && f === '2') ws.send('3');
    for (const w of [...client.waiters]) w(f);
  });
  ws.on('error', () => {});
  client.send = (data, opts) => ws.send(data, opts);
  /** First frame (since index `since`) matching pred (a RegExp, string prefix or function). */
  client.waitFrame = (pred, timeout = DEFAULT_TIMEOUT, since = 0) => {
    const test = typeof pred === 'function' ? pred
      : pred instanceof RegExp ? (f) => typeof f === 'string' && pred.test(f)
        : (f) => typeof f === 'string' && f.startsWith(pred);
    const found = client.frames.slice(since).find(test);
    if (found !== undefined) return Promise.resolve(found);
    return new Promise((resolve, reject) => {
      const waiter = (f) => {
        if (f === null) {
          client.waiters.delete(waiter); clearTimeout(timer);
          reject(new Error(`raw socket closed (${JSON.stringify(client.closeInfo)}) before a frame matching ${pred}; frames: ${JSON.stringify(client.frames.slice(-10))}`));
        } else if (test(f)) { client.waiters.delete(waiter); clearTimeout(timer); resolve(f); }
      };
      const timer = setTimeout(() => {
        client.waiters.delete(waiter);
        reject(new Error(`no raw frame matching ${pred} within ${timeout} ms; frames: ${JSON.stringify(client.frames.slice(-10).map(String))}`));
      }, timeout);
      client.waiters.add(waiter);
    });
  };
  client.waitClosed = (timeout = DEFAULT_TIMEOUT) => Promise.race([
    client.closed,
    sleep(timeout).then(() => { throw new Error(`raw socket not closed within ${timeout} ms; frames: ${JSON.stringify(client.frames.slice(-10).map(String))}`); }),
  ]);
  /** Socket.IO EVENT with an ack id; resolves with the ack's first argument. */
  client.emitAck = async (id, event, payload, timeout = DEFAULT_TIMEOUT) => {
    const since = client.frames.length;
    ws.send(`42${id}${JSON.stringify([event, payload])}`);
    const f = await client.waitFrame((x) => typeof x === 'string' && x.startsWith(`43${id}[`), timeout, since);
    return JSON.parse(f.slice(2 + String(id).length))[0];
  };
  return new Promise((resolve, reject) => {
    ws.once('open', () => resolve(client));
    ws.once('unexpected-response', (req, res) => {
      const e = new Error(`upgrade refused with HTTP ${res.statusCode}`);
      e.statusCode = res.statusCode;
      res.resume();
      ws.terminate?.();
      reject(e);
    });
    ws.once('error', (e) => reject(e));
  });
}

/** Raw client through the Socket.IO CONNECT: resolves with {client, sid, open}. */
export async function rawConnect(token, opts = {}) {
  const client = await rawOpen(opts);
  const openFrame = await client.waitFrame('0{');
  client.send(`40${JSON.stringify({ token })}`);
  const f = await client.waitFrame(/^4[04]/);
  if (!f.startsWith('40')) throw new Error(`raw CONNECT refused: ${f}`);
  return { client, sid: JSON.parse(f.slice(2)).sid, open: JSON.parse(openFrame.slice(1)) };
}

/** Kills the TCP connection of a raw client without a close frame. */
export function killRaw(client) {
  client.ws._socket.destroy();
}

/* ------------------------------------------------------------------------
 * Raw Engine.IO long-polling clients (wire-level tests)
 * ------------------------------------------------------------------------ */
const pollClients = new Set();

/**
 * One HTTP request to /socket.io/?<query> with fetch (keep-alive, as a
 * browser). Resolves with {status, headers, text, json (or null)}.
 */
export async function pollFetch(query, { method = 'GET', body, headers = {}, timeout = DEFAULT_TIMEOUT } = {}) {
  const res = await fetch(`${WS_URL}/socket.io/?${query}`, {
    method,
    body,
    headers: body === undefined ? headers : { 'content-type': 'text/plain;charset=UTF-8', ...headers },
    signal: AbortSignal.timeout(timeout),
  });
  const text = await res.text();
  let json = null;
  try { json = JSON.parse(text); } catch { /* not JSON */ }
  return { status: res.status, headers: res.headers, text, json };
}

/** The packets of a polling answer. */
export const packetsOf = (text) => text.split('\x1e');

/**
 * Opens a long-polling session (the handshake GET). The client has
 * get(opts) / post(body, opts) for its sid, recv(pred) that polls until a
 * packet matches (answering pings when autoPong), connect(token),
 * emitAck(id, event, payload) and close(); .packets is everything received.
 */
export async function pollOpen({ headers = {}, autoPong = true } = {}) {
  const r = await pollFetch('EIO=4&transport=polling', { headers });
  assert.equal(r.status, 200, `handshake: ${r.status} ${r.text}`);
  assert.ok(r.text.startsWith('0{'), `handshake answers the open packet: ${r.text}`);
  const open = JSON.parse(r.text.slice(1));
  const query = `EIO=4&transport=polling&sid=${encodeURIComponent(open.sid)}`;
  const c = {
    sid: open.sid,
    open,
    packets: [],
    headers,
    closed: false,
    get: (opts = {}) => pollFetch(query, { headers, ...opts }),
    post: (body, opts = {}) => pollFetch(query, { method: 'POST', body, headers, ...opts }),
  };
  pollClients.add(c);
  /** Polls until a packet matches pred (a string prefix, RegExp or function); resolves with it. */
  c.recv = async (pred, timeout = DEFAULT_TIMEOUT) => {
    const test = typeof pred === 'function' ? pred : pred instanceof RegExp ? (p) => pred.test(p) : (p) => p.startsWith(pred);
    const end = Date.now() + timeout;
    for (;;) {
      const seen = c.packets.find((p) => !p.__taken && test(p.valueOf()));
      if (seen) { seen.__taken = true; return seen.valueOf(); }
      if (Date.now() > end) throw new Error(`no polled packet matching ${pred} within ${timeout} ms; packets: ${JSON.stringify(c.packets.slice(-10).map(String))}`);
      const r = await c.get({ timeout: Math.max(end - Date.now(), 100) });
      if (r.status !== 200) throw new Error(`poll answered ${r.status} ${r.text}`);
      for (const p of packetsOf(r.text)) {
        c.packets.push(new String(p));
        if (p === '2' && autoPong) await c.post('3');
        if (p === '1') c.closed = true;
      }
    }
  };
  c.connect = async (token) => {
    assert.equal((await c.post(`40${JSON.stringify({ token })}`)).text, 'ok');
    const f = await c.recv(/^4[04]/);
    if (!f.startsWith('40')) throw new Error(`polling CONNECT refused: ${f}`);
    c.connectionId = JSON.parse(f.slice(2)).sid;
    return c.connectionId;
  };
  c.emitAck = async (id, event, payload) => {
    assert.equal((await c.post(`42${id}${JSON.stringify([event, payload])}`)).text, 'ok');
    const f = await c.recv(`43${id}[`);
    return JSON.parse(f.slice(2 + String(id).length))[0];
  };
  c.close = async () => {
    if (c.closed) return;
    c.closed = true;
    await c.post('1').catch(() => {});
  };
  return c;
}

/** A polling session through CONNECT: resolves with the client (its .connectionId set). */
export async function pollConnect(token, opts = {}) {
  const c = await pollOpen(opts);
  await c.connect(token);
  return c;
}

/**
 * The worker still serves: a fresh client connects, joins a resource and
 * gets its ack. Used after each malformed-frame test.
 */
export async function assertWorkerServes(resourceId) {
  const u = newUser('Probe');
  const s = await connect(u, { label: 'probe' });
  try {
    const ack = ok(await join(s, resourceId, 'viewer'), 'probe join');
    assert.ok(ack.users.some((p) => p.connectionId === s.id), 'probe is in its own presence list');
    ok(await leave(s, resourceId), 'probe leave');
  } finally {
    s.close();
  }
}

/* ------------------------------------------------------------------------
 * Teardown: call from after() in every test file.
 * ------------------------------------------------------------------------ */
export async function closeAll() {
  for (const s of sockets) s.close();
  sockets.clear();
  for (const ws of raws) ws.terminate();
  raws.clear();
  await Promise.all([...pollClients].map((c) => c.close()));
  pollClients.clear();
}

export async function teardown() {
  await closeAll();
  try {
    // let the worker finish its disconnect work before the rows go away
    await eventually(async () => {
      const [{ n }] = await q(
        'SELECT count(*)::int AS n FROM collab.ws_presence WHERE resource_id = ANY ($1)', [created]);
      return n === 0;
    }, 'presence of this file\'s resources is gone', 3000).catch(() => {});
    if (created.length) await q('DELETE FROM collab.resources WHERE id = ANY ($1)', [created]);
  } finally {
    await pool.end();
  }
}

/**
 * Asserts a PresenceUser: exact userId, username, connectionId, role and
 * resourceId, and an ISO joinedAt.
 */
export function assertPresenceUser(p, { user, socket, connectionId, role, resourceId }, what = 'PresenceUser') {
  assert.ok(p && typeof p === 'object', `${what}: ${JSON.stringify(p)}`);
  assert.deepEqual(
    { userId: p.userId, username: p.username, connectionId: p.connectionId, role: p.role, resourceId: p.resourceId },
    { userId: user.sub, username: user.name, connectionId: connectionId ?? socket.id, role, resourceId },
    `${what}: ${JSON.stringify(p)}`);
  assert.match(p.joinedAt, ISO_RE, `${what}.joinedAt`);
}
