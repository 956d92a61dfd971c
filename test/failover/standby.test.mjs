// The worker on a hot standby and across its promotion, with exact
// outcomes: /healthz answers 503 with role "standby", every request that
// would open a session is refused with 503 and a JSON body naming the
// role (socket.io-client sees connect_error and retries by itself), the
// worker writes nothing and does not restart; after SELECT pg_promote() it
// serves by itself, detaches the old primary's connections (their leases
// suspended for collab.disconnect_grace), extends every live lease by the
// grace once, and the holders save again.  Starts a primary and a
// streaming standby of its own (scripts/cluster.sh, as the drill does).
// Run by run.sh before the drill; alone: node --test failover/standby.test.mjs
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import pg from 'pg';
import { io } from 'socket.io-client';
import { makeJwt, now, sleep } from '../stress/clients.mjs';
import { healthz } from './proxy.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const run = promisify(execFile);
const cluster = (...args) => run('bash', [path.join(ROOT, 'scripts/cluster.sh'), ...args]);
const freePort = async () => Number((await cluster('free-port')).stdout.trim());

const SECRET = crypto.randomBytes(24).toString('hex');
const GRACE_MS = 30000;
const STANDBY_HEALTH = { status: 'unavailable', role: 'standby', worker: 'ok', database: 'in recovery', connections: 0 };
const REFUSAL = { code: 3, message: 'this server is a standby: connect to the primary', role: 'standby' };

const WORK = fs.mkdtempSync(path.join(process.env.COLLAB_TEST_WORK ?? os.tmpdir(), 'collab-standby-'));
fs.chmodSync(WORK, 0o755);
const P = { dir: path.join(WORK, 'primary') };
const S = { dir: path.join(WORK, 'standby') };
const clients = [];
let primary;
let standby;
let doc;
let workerPid;

async function pgAt(node) {
  const c = new pg.Client({ host: node.dir, port: node.pg, user: 'postgres', database: 'postgres' });
  c.on('error', () => {});
  await c.connect();
  return c;
}
const rows = async (c, sql, params) => (await c.query(sql, params)).rows;
async function until(what, fn, timeoutMs = 10000, everyMs = 20) {
  const end = now() + timeoutMs;
  for (;;) {
    const x = await fn();
    if (x) return x;
    if (now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(everyMs);
  }
}
function client(port, user, opts = {}) {
  const s = io(`http://127.0.0.1:${port}`, { forceNew: true, timeout: 2000, transports: ['websocket'],
    auth: { token: makeJwt(SECRET, user, `User ${user}`) }, ...opts });
  clients.push(s);
  return s;
}
const connected = (s) => new Promise((resolve, reject) => {
  s.once('connect', resolve);
  s.once('connect_error', reject);
});
/** A raw HTTP request: { status, headers, body } (an upgrade's refusal included). */
function request(port, pathname, headers = {}) {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path: pathname, headers, agent: false });
    req.on('response', (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => { body += d; });
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body }));
    });
    req.on('upgrade', (res, socket) => {
      socket.destroy();
      resolve({ status: res.statusCode, upgraded: true });
    });
    req.on('error', reject);
    req.end();
  });
}
const UPGRADE = {
  Connection: 'Upgrade', Upgrade: 'websocket', 'Sec-WebSocket-Version': '13',
  'Sec-WebSocket-Key': crypto.randomBytes(16).toString('base64'),
};
const workerOf = async (c) => (await rows(c,
  "SELECT pid, backend_start FROM pg_stat_activity WHERE backend_type = 'collab worker'"));

before(async () => {
  P.ws = await freePort();
  await cluster('start', P.dir, `collab.jwt_secret = '${SECRET}'`, `collab.port = ${P.ws}`,
    "collab.database = 'postgres'", "collab.lock_ttl = '60s'", "collab.sweep_interval = '100ms'",
    `collab.disconnect_grace = '${GRACE_MS}ms'`);
  P.pg = Number(fs.readFileSync(path.join(P.dir, 'port'), 'utf8'));
  primary = await pgAt(P);
  await rows(primary, 'CREATE EXTENSION collab');
  const [{ id }] = await rows(primary, "SELECT collab.create_document('standby-test', 'Standby test', ARRAY['a', 'b']) AS id");
  await rows(primary, "SELECT collab.grant($1, '*', 'edit')", [id]);
  doc = { id, a: `${id}/tab:a`, b: `${id}/tab:b` };
  await until('the primary worker', async () => (await healthz(P.ws)).status === 200);
  S.ws = await freePort();
  await cluster('standby', S.dir, `host=${P.dir} port=${P.pg} user=postgres`, `collab.port = ${S.ws}`);
  S.pg = Number(fs.readFileSync(path.join(S.dir, 'port'), 'utf8'));
  standby = await pgAt(S);
  await until('the standby worker', async () => (await healthz(S.ws)).status === 503, 15000);
  [{ pid: workerPid }] = await workerOf(standby);
});

after(async () => {
  for (const s of clients) s.close();
  await primary?.end().catch(() => {});
  await standby?.end().catch(() => {});
  for (const d of [P.dir, S.dir]) {
    // the servers' logs stay with a failed run
    if (fs.existsSync(path.join(d, 'server.log'))) fs.copyFileSync(path.join(d, 'server.log'), `${d}.log`);
    await cluster('destroy', d).catch(() => {});
  }
  if (process.exitCode) console.log(`kept ${WORK} (the servers' logs)`);
  else fs.rmSync(WORK, { recursive: true, force: true });
});

test('the standby\'s /healthz answers 503 with role "standby"; /metrics answers', async () => {
  const res = await request(S.ws, '/healthz');
  assert.equal(res.status, 503);
  assert.equal(res.headers['content-type'], 'application/json');
  assert.equal(res.headers['cache-control'], 'no-store');
  assert.deepEqual(JSON.parse(res.body), STANDBY_HEALTH);
  // key order as documented
  assert.deepEqual(Object.keys(JSON.parse(res.body)), Object.keys(STANDBY_HEALTH));
  const m = await request(S.ws, '/metrics');
  assert.equal(m.status, 200);
  assert.match(m.body, /^collab_workers 1$/m);
  assert.match(m.body, /^collab_connections 0$/m);
  // the primary, for comparison
  const p = await healthz(P.ws);
  assert.equal(p.status, 200);
  assert.deepEqual(p.body, { status: 'ok', role: 'primary', worker: 'ok', database: 'ok', connections: 0 });
});

test('a polling handshake on the standby is refused: 503, the JSON body naming the role', async () => {
  const res = await request(S.ws, '/socket.io/?EIO=4&transport=polling');
  assert.equal(res.status, 503);
  assert.equal(res.headers['content-type'], 'application/json');
  assert.deepEqual(JSON.parse(res.body), REFUSAL);
  // an allowed Origin gets its CORS headers, so that a browser can read the refusal
  const cors = await request(S.ws, '/socket.io/?EIO=4&transport=polling', { Origin: 'http://app.example' });
  assert.equal(cors.status, 503);
  assert.equal(cors.headers['access-control-allow-origin'], 'http://app.example');
  // requests that are not handshakes are answered as on a primary
  const bad = await request(S.ws, '/socket.io/?EIO=3&transport=polling');
  assert.equal(bad.status, 400);
  assert.deepEqual(JSON.parse(bad.body), { code: 5, message: 'Unsupported protocol version: collab speaks Engine.IO v4 (EIO=4)' });
  const unknown = await request(S.ws, `/socket.io/?EIO=4&transport=polling&sid=${'x'.repeat(20)}`);
  assert.equal(unknown.status, 400);
  assert.equal(JSON.parse(unknown.body).code, 1);
});

test('a WebSocket upgrade on the standby is refused before the switch: 503, the same body', async () => {
  const res = await request(S.ws, '/socket.io/?EIO=4&transport=websocket', UPGRADE);
  assert.equal(res.upgraded, undefined, 'no switch of protocols');
  assert.equal(res.status, 503);
  assert.equal(res.headers['content-type'], 'application/json');
  assert.deepEqual(JSON.parse(res.body), REFUSAL);
  // on the primary the same request switches protocols
  const p = await request(P.ws, '/socket.io/?EIO=4&transport=websocket', UPGRADE);
  assert.deepEqual(p, { status: 101, upgraded: true });
});

test('socket.io-client against the standby: connect_error with the 503, then it retries by itself', async () => {
  // WebSocket only: the handshake's status is what the client reports
  const ws = client(S.ws, 'probe-ws', { reconnectionDelay: 50, reconnectionDelayMax: 100 });
  const errors = [];
  ws.on('connect_error', (e) => errors.push(e));
  await until('three refused attempts', () => errors.length >= 3, 10000);
  assert.equal(ws.connected, false);
  for (const e of errors) {
    assert.equal(e.message, 'websocket error');
    assert.match(String(e.description?.message ?? e.description), /Unexpected server response: 503/);
  }
  ws.close();
  // polling (socket.io-client's default first transport): the status
  const polling = client(S.ws, 'probe-polling', { transports: ['polling'], reconnection: false });
  const e = await connected(polling).then(() => null, (x) => x);
  assert.ok(e, 'refused');
  assert.equal(e.message, 'xhr poll error');
  assert.equal(e.description, 503);
  // (the client aborts the request before it reports it: the body is the
  // raw request's above)
});

test('the standby\'s worker writes nothing and runs without restarting', async () => {
  // the same process since the start, and no error of it in the log
  assert.deepEqual((await workerOf(standby)).map((w) => w.pid), [workerPid]);
  const log = fs.readFileSync(path.join(S.dir, 'server.log'), 'utf8');
  assert.deepEqual(log.split('\n').filter((l) => l.includes(`[${workerPid}]`) && /(ERROR|FATAL|PANIC):/.test(l)), []);
  assert.match(log, new RegExp(`\\[${workerPid}\\] LOG:  collab worker 1 listening on .* port ${S.ws} .*\\(a standby: no session until the server is promoted\\)`));
  // a write would have failed (and been logged) in recovery; the worker's
  // session never had a transaction id
  const [act] = await rows(standby, "SELECT backend_xid FROM pg_stat_activity WHERE backend_type = 'collab worker'");
  assert.deepEqual(act, { backend_xid: null });
});

test('after pg_promote() the worker serves by itself: holders suspended, leases extended once, saves with their tokens', async () => {
  // on the primary: a browser holds tab a, an application tab b
  const anna = client(P.ws, 'anna');
  await connected(anna);
  const held = await anna.timeout(3000).emitWithAck('presence:join', { resourceId: doc.a, mode: 'editor' });
  assert.equal(held.role, 'editor');
  const annaId = anna.id;
  const [app] = await rows(primary, "SELECT token::int8 AS token FROM collab.acquire($1, 'app-1', 'App', 'app-1')", [doc.b]);
  const saved = await rows(primary, "SELECT collab.save($1, $2, 'by the app', 0)::int8 AS v", [doc.b, app.token]);
  assert.deepEqual(saved, [{ v: '1' }]);
  const lsn = (await rows(primary, 'SELECT pg_current_wal_lsn()::text AS l'))[0].l;
  await until('the standby to replay', async () =>
    (await rows(standby, 'SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn AS ok', [lsn]))[0].ok);
  const leasesSql = `SELECT token::int8 AS token, resource_id, (extract(epoch FROM expires_at) * 1000)::float8 AS expires
                       FROM collab.leases ORDER BY resource_id`;
  const before = await rows(standby, leasesSql);
  assert.deepEqual(before.map((l) => [l.resource_id, l.token]), [[doc.a, String(held.lock.token)], [doc.b, app.token]]);

  // the primary fails; the standby is promoted
  await primary.end();
  primary = null;
  await cluster('stop', P.dir, 'immediate');
  anna.close();
  const t0 = now();
  assert.deepEqual(await rows(standby, 'SELECT pg_promote() AS ok'), [{ ok: true }]);
  const health = await until('/healthz 200', async () => {
    const h = await healthz(S.ws);
    return h.status === 200 ? h : null;
  });
  const tHealthy = now() - t0;
  assert.deepEqual(health.body, { status: 'ok', role: 'primary', worker: 'ok', database: 'ok', connections: 0 });
  // the same worker process, which noticed by itself
  assert.deepEqual((await workerOf(standby)).map((w) => w.pid), [workerPid]);
  const log = fs.readFileSync(path.join(S.dir, 'server.log'), 'utf8');
  assert.match(log, new RegExp(`\\[${workerPid}\\] LOG:  collab worker 1: the server was promoted; it serves as the primary`));
  assert.match(log, new RegExp(`\\[${workerPid}\\] LOG:  collab worker extended 2 live lease\\(s\\) by collab.disconnect_grace after the promotion`));

  // by the time it answers 200: both leases extended by the grace, once
  const after = await rows(standby, leasesSql);
  assert.deepEqual(after.map((l) => [l.resource_id, l.token]), before.map((l) => [l.resource_id, l.token]));
  for (let i = 0; i < 2; i++) assert.ok(Math.abs(after[i].expires - before[i].expires - GRACE_MS) < 1, `${after[i].resource_id} extended by the grace`);
  const [epoch] = await rows(standby, `SELECT timeline::int, reason, leases_extended, (extract(epoch FROM leases_extended_by) * 1000)::int AS by_ms
                                         FROM collab.token_epochs WHERE leases_extended_at IS NOT NULL`);
  assert.deepEqual(epoch, { timeline: 2, reason: 'promotion', leases_extended: 2, by_ms: GRACE_MS });
  const renewals = await rows(standby, "SELECT resource_id, token::int8 AS token FROM collab.audit WHERE action = 'renew' AND reason = 'promotion' ORDER BY resource_id");
  assert.deepEqual(renewals, before.map((l) => ({ resource_id: l.resource_id, token: l.token })));
  // the browser's connection: detached, its lease suspended for the grace
  const [sus] = await rows(standby, 'SELECT suspended_until IS NOT NULL AS suspended FROM collab.leases WHERE resource_id = $1', [doc.a]);
  assert.deepEqual(sus, { suspended: true });
  const [conn] = await rows(standby, 'SELECT detached_at IS NOT NULL AS detached FROM collab.ws_connections WHERE connection_id = $1', [annaId]);
  assert.deepEqual(conn, { detached: true });
  // a second call extends nothing
  assert.deepEqual(await rows(standby, "SELECT collab.extend_leases_after_promotion('30s') AS n"), [{ n: 0 }]);

  // the application saves with its token of before; the browser takes its lock over and saves
  assert.deepEqual(await rows(standby, "SELECT collab.save($1, $2, 'by the app, again', 1)::int8 AS v", [doc.b, app.token]), [{ v: '2' }]);
  const back = client(S.ws, 'anna');
  await connected(back);
  const again = await back.timeout(3000).emitWithAck('presence:join', { resourceId: doc.a, mode: 'editor' });
  assert.equal(again.role, 'editor');
  assert.ok(again.lock.token > held.lock.token, 'a new token, above the old one');
  const ack = await back.timeout(3000).emitWithAck('doc:save', { resourceId: doc.a, content: 'by Anna', token: again.lock.token, baseVersion: again.resource.version });
  assert.deepEqual(ack, { ok: true, version: again.resource.version + 1 });
  const [grant] = await rows(standby, "SELECT reason FROM collab.audit WHERE action = 'grant' AND token = $1", [again.lock.token]);
  assert.deepEqual(grant, { reason: 'takeover' });
  console.log(`# promotion (pg_promote) to /healthz 200: ${tHealthy.toFixed(0)} ms`);
});

test('a restart of the new primary extends nothing more', async () => {
  await standby.end();
  await cluster('stop', S.dir, 'fast');
  await cluster('restart', S.dir);
  standby = await pgAt(S);
  await until('/healthz 200', async () => (await healthz(S.ws)).status === 200, 15000);
  const [w] = await workerOf(standby);
  assert.notEqual(w.pid, workerPid);
  assert.deepEqual(await rows(standby, "SELECT count(*)::int AS n FROM collab.audit WHERE action = 'renew' AND reason = 'promotion'"), [{ n: 2 }]);
  assert.deepEqual(await rows(standby, 'SELECT count(*)::int AS n FROM collab.token_epochs WHERE leases_extended_at IS NOT NULL'), [{ n: 1 }]);
});
