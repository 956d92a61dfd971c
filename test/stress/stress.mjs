// The concurrent-writer stress run: socket.io-client writers (some in child
// processes that are SIGSTOPped, SIGCONTed and SIGKILLed, some whose TCP
// connection is cut without a close frame) and SQL-API writers compete for
// the tabs of a few documents and for the documents themselves, while an
// observer connection joined to every resource records every event.  At the
// end the history is checked (checker.mjs); any violation exits 1.
//
// Run through test/stress/run.sh, which starts a cluster with a short
// collab.lock_ttl.  Environment:
//   PGHOST PGPORT COLLAB_WS_URL COLLAB_JWT_SECRET   the cluster (from run.sh)
//   STRESS_WORK          directory for the histories (kept: history.json)
//   STRESS_SECONDS       length of the run (default 120)
//   STRESS_WS_CLIENTS    socket.io-client writers on WebSocket (default 20)
//   STRESS_CHILDREN      how many of them run in child processes (default 6)
//   STRESS_SQL_CLIENTS   SQL-API writers, the first one also an administrator (default 4)
//   STRESS_POLL_CLIENTS  socket.io writers on long-polling only (default 3)
//   STRESS_DEFAULT_CLIENTS  socket.io writers on the client's default transports (default 2)
//   STRESS_DOCS, STRESS_TABS   documents and tabs per document (default 2 and 3)
//   STRESS_SEED          seed of every random choice (default: random, printed)
import { fork } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { io } from 'socket.io-client';
import { check, CHECKS } from './checker.mjs';
import { runWsClient, runProxiedWsClient, runSqlClient, makeJwt, now, sleep, rng, seedFor } from './clients.mjs';
import { Proxy } from '../failover/proxy.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const env = (k, d) => (process.env[k] === undefined || process.env[k] === '' ? d : process.env[k]);
const int = (k, d) => {
  const x = Number(env(k, d));
  if (!Number.isInteger(x) || x < 0) throw new Error(`${k} must be a non-negative integer, got ${process.env[k]}`);
  return x;
};

const SECONDS = int('STRESS_SECONDS', 120);
const WS_CLIENTS = int('STRESS_WS_CLIENTS', 20);
const CHILDREN = Math.min(int('STRESS_CHILDREN', 6), WS_CLIENTS);
const SQL_CLIENTS = int('STRESS_SQL_CLIENTS', 4);
const POLL_CLIENTS = int('STRESS_POLL_CLIENTS', 3);
const DEFAULT_CLIENTS = int('STRESS_DEFAULT_CLIENTS', 2);
const DOCS = Math.max(1, int('STRESS_DOCS', 2));
const TABS = Math.max(1, int('STRESS_TABS', 3));
const SEED = int('STRESS_SEED', Math.floor(Math.random() * 2 ** 31));
const WORK = env('STRESS_WORK', null);
const URL = env('COLLAB_WS_URL', null);
const SECRET = env('COLLAB_JWT_SECRET', null);
for (const [k, x] of [['STRESS_WORK', WORK], ['COLLAB_WS_URL', URL], ['COLLAB_JWT_SECRET', SECRET], ['PGHOST', env('PGHOST', null)]]) {
  if (!x) throw new Error(`${k} is not set: run test/stress/run.sh`);
}

const log = (...a) => console.log(`[${((now() - T0) / 1000).toFixed(1).padStart(6)} s]`, ...a);
const T0 = now();
// a worker that stops answering must fail the run, not hang it
setTimeout(() => {
  console.log(`stress: FAILED: still running ${SECONDS + 180} s after the start`);
  process.exit(1);
}, (SECONDS + 180) * 1000).unref();

/* ------------------------------------------------------------------------
 * Set-up
 * ------------------------------------------------------------------------ */
const admin = new pg.Client({ database: 'postgres', user: 'postgres' });
await admin.connect();
const q = async (sql, params) => (await admin.query(sql, params)).rows;

const ttlMs = Number((await q('SELECT (extract(epoch FROM collab.lock_ttl()) * 1000)::float8 AS ms'))[0].ms);
const pingMs = Number((await q("SELECT setting::int AS v FROM pg_settings WHERE name = 'collab.ping_interval'"))[0].v);
const pingTimeoutMs = Number((await q("SELECT setting::int AS v FROM pg_settings WHERE name = 'collab.ping_timeout'"))[0].v);
if (!(ttlMs * 1.4 < pingTimeoutMs * 0.8)) {
  throw new Error(`collab.lock_ttl (${ttlMs} ms) must be well below collab.ping_timeout (${pingTimeoutMs} ms), so that a writer can be stopped past its lease and still be connected`);
}
await q(`DO $$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'stress_app') THEN CREATE ROLE stress_app LOGIN IN ROLE collab_app; END IF;
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'stress_admin') THEN CREATE ROLE stress_admin LOGIN IN ROLE collab_admin; END IF;
END $$`);
const runKey = `stress-${SEED.toString(36)}-${Date.now().toString(36)}`;
const docs = [];
for (let d = 1; d <= DOCS; d++) {
  const tabs = Array.from({ length: TABS }, (_, i) => `t${i + 1}`);
  const [{ id }] = await q('SELECT collab.create_document($1, $2, $3::text[]) AS id', [`${runKey}-${d}`, `Stress document ${d}`, tabs]);
  await q("SELECT collab.grant($1, '*', 'edit')", [id]);
  docs.push({ id, tabs: tabs.map((t) => `${id}/tab:${t}`) });
}
// the writers' documents; one more whose tabs are each reserved for one of
// the writers whose first locked cycles end with a cut, so that every run
// has its suspensions, takeover and ended graces, however busy the others
const shared = docs.slice();
const reserved = [];
{
  const tabs = ['r1', 'r2', 'r3'];
  const [{ id }] = await q('SELECT collab.create_document($1, $2, $3::text[]) AS id', [`${runKey}-cuts`, 'Stress document of the cut writers', tabs]);
  await q("SELECT collab.grant($1, '*', 'edit')", [id]);
  docs.push({ id, tabs: tabs.map((t) => `${id}/tab:${t}`) });
  reserved.push(...docs[docs.length - 1].tabs);
}
const resourceIds = docs.flatMap((d) => [d.id, ...d.tabs]);
const [{ base: auditBase }] = await q('SELECT coalesce(max(id), 0)::int8 AS base FROM collab.audit');

log(`seed ${SEED}; ${SECONDS} s; ${WS_CLIENTS} socket.io writers (${CHILDREN} in child processes), ` +
  `${POLL_CLIENTS} on long-polling, ${DEFAULT_CLIENTS} on the default transports, ${SQL_CLIENTS} SQL writers; ` +
  `${DOCS} documents x ${TABS} tabs; collab.lock_ttl ${ttlMs} ms, ping ${pingMs}/${pingTimeoutMs} ms`);

/* ------------------------------------------------------------------------
 * The observer: in every room, records every event
 * ------------------------------------------------------------------------ */
const events = [];
let observerLost = null;
const observer = io(URL, {
  transports: ['websocket'], reconnection: false, forceNew: true, timeout: 10000,
  auth: { token: makeJwt(SECRET, 'observer', 'Observer') },
});
await new Promise((resolve, reject) => {
  observer.on('connect', resolve);
  observer.on('connect_error', (e) => reject(new Error(`the observer could not connect: ${e.message}`)));
});
observer.onAny((event, payload) => events.push({ t: now(), event, payload }));
observer.on('disconnect', (reason) => { observerLost = reason; });
for (const id of resourceIds) {
  const ack = await observer.timeout(5000).emitWithAck('presence:join', { resourceId: id, mode: 'viewer' });
  if (!ack.ok) throw new Error(`observer could not join ${id}: ${JSON.stringify(ack)}`);
}

/* ------------------------------------------------------------------------
 * Writers
 * ------------------------------------------------------------------------ */
let stopping = false;
const records = [];
const rec = (x) => records.push(x);
const common = { url: URL, secret: SECRET, docs: shared, ttlMs, seed: SEED, pLong: 0.12, t0: now() };
const stallMs = [Math.round(ttlMs * 1.4), Math.round(Math.min(ttlMs * 2.2, pingTimeoutMs * 0.8))];
const chaos = { stalls: 0, stops: 0, longStops: 0, kills: 0, cuts: 0, recovered: 0, notRecovered: 0 };
const sockets = new Set();
const tasks = [];

for (let i = CHILDREN + 1; i <= WS_CLIENTS; i++) {
  const clientId = `w${String(i).padStart(2, '0')}`;
  tasks.push(runWsClient({
    ...common, clientId, pStall: 0, stallMs, pCut: 0.15, stall: null,
    // the first cuts its first two locked cycles short: it comes back for
    // the first lock at once (a takeover), leaves the second to its grace
    cuts: i === CHILDREN + 1 ? [true, false] : [],
    reserved: i === CHILDREN + 1 ? reserved[0] : null,
    stopping: () => stopping,
    rec: (x) => {
      if (x.msg === 'cutting the TCP connection') chaos.cuts += 1;
      if (x.msg?.startsWith('reconnected: recovered true')) chaos.recovered += 1;
      if (x.msg?.startsWith('reconnected: recovered false')) chaos.notRecovered += 1;
      rec(x);
    },
    onSocket: (s) => { sockets.add(s); s.on('disconnect', () => sockets.delete(s)); },
  }));
}
for (let k = 1; k <= SQL_CLIENTS; k++) {
  const clientId = `sql${k}`;
  tasks.push(runSqlClient({
    ...common, clientId, admin: k === 1, pgUser: k === 1 ? 'stress_admin' : 'stress_app',
    stopping: () => stopping, rec,
  }));
}

// socket.io writers on long-polling and on the default transports (polling,
// then the upgrade), each behind a proxy of its own that can drop all of its
// connections; the first of each kind drops its first two locked cycles and
// comes back elsewhere: its graces end
const proxies = [];
async function startTransportWriters(transport, prefix, n) {
  for (let i = 1; i <= n; i++) {
    const clientId = `${prefix}${String(i).padStart(2, '0')}`;
    const proxy = new Proxy(`${clientId}'s network`);
    await proxy.listen();
    proxies.push(proxy);
    tasks.push(runProxiedWsClient({
      ...common, clientId, transport, proxy, pStall: 0, stallMs, pCut: 0.15, stall: null,
      cuts: i === 1 ? [false, false] : [],
      reserved: i === 1 ? reserved[transport === 'polling' ? 1 : 2] : null,
      stopping: () => stopping,
      rec: (x) => { if (x.msg === 'cutting the TCP connection') chaos.cuts += 1; rec(x); },
      onSocket: (s) => { sockets.add(s); s.on('disconnect', () => sockets.delete(s)); },
    }));
  }
}
await startTransportWriters('polling', 'p', POLL_CLIENTS);
await startTransportWriters('default', 'd', DEFAULT_CLIENTS);

// child-process writers
const children = new Map(); // clientId -> {proc, stopped, timer, file, exited}
const historyFiles = [];
let incarnation = 0;
function spawnChild(slot) {
  incarnation += 1;
  const clientId = `w${String(slot).padStart(2, '0')}p${incarnation}`;
  const file = path.join(WORK, `history-${clientId}.jsonl`);
  historyFiles.push(file);
  const cfg = { ...common, clientId, historyFile: file, pStall: 0.3, stallMs, pCut: 0 };
  const proc = fork(path.join(HERE, 'child.mjs'), [JSON.stringify(cfg)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const c = { clientId, slot, proc, stopped: false, timer: null, exited: null };
  c.exited = new Promise((resolve) => proc.on('exit', (code, sig) => resolve({ code, sig })));
  proc.on('error', () => {});
  proc.on('message', (m) => {
    if (m.type === 'stall' && !c.stopped && !stopping) {
      chaos.stalls += 1;
      stopFor(c, m.ms, true);
    } else if (m.type === 'stall') {
      proc.send({ type: 'resumed' });
    }
  });
  children.set(clientId, c);
  return c;
}
function stopFor(c, ms, notify) {
  c.stopped = true;
  try { process.kill(c.proc.pid, 'SIGSTOP'); } catch { c.stopped = false; return; }
  c.timer = setTimeout(() => resumeChild(c, notify), ms);
}
function resumeChild(c, notify) {
  clearTimeout(c.timer);
  c.timer = null;
  if (!c.stopped) return;
  c.stopped = false;
  try { process.kill(c.proc.pid, 'SIGCONT'); } catch { return; }
  if (notify && c.proc.connected) c.proc.send({ type: 'resumed' });
}
for (let slot = 1; slot <= CHILDREN; slot++) spawnChild(slot);

// chaos: random stops of child processes (now and then past the heartbeat), kills
const chaosRng = rng(seedFor(SEED, 'chaos'));
const chaosTask = (async () => {
  let round = 0;
  while (!stopping && CHILDREN > 0) {
    await sleep(chaosRng.int(800, 2500));
    if (stopping) break;
    const live = [...children.values()].filter((c) => !c.stopped && c.proc.exitCode === null && c.proc.signalCode === null);
    if (live.length === 0) continue;
    const c = chaosRng.pick(live);
    // the second round always kills, so that even a short run has a SIGKILL
    const x = ++round === 2 ? 0.7 : chaosRng();
    if (x < 0.6) {
      const long = chaosRng() < 0.15;
      if (long) chaos.longStops += 1; else chaos.stops += 1;
      const ms = long ? pingMs + pingTimeoutMs + 1500 : chaosRng.int(200, stallMs[1]);
      log(`SIGSTOP ${c.clientId} for ${ms} ms`);
      stopFor(c, ms, false);
    } else if (x < 0.8) {
      chaos.kills += 1;
      log(`SIGKILL ${c.clientId}`);
      children.delete(c.clientId);
      clearTimeout(c.timer);
      c.proc.kill('SIGKILL');
      await c.exited;
      spawnChild(c.slot);
    }
  }
})();

/* ------------------------------------------------------------------------
 * Run, stop, drain
 * ------------------------------------------------------------------------ */
// the most connections each worker process served at once (collab.workers > 1)
const perWorker = {};
const workerCount = Number((await q("SELECT current_setting('collab.workers')::int AS n"))[0].n);
const progress = setInterval(async () => {
  const saves = records.filter((r) => r.k === 'ok' && r.version !== undefined).length;
  log(`${events.length} events, ${saves} in-process saves acknowledged, ${sockets.size} sockets, chaos ${JSON.stringify(chaos)}`);
  for (const r of await q('SELECT worker, count(*)::int AS n FROM collab.connections GROUP BY worker').catch(() => [])) {
    perWorker[r.worker] = Math.max(perWorker[r.worker] ?? 0, r.n);
  }
}, 10000);
await sleep(SECONDS * 1000);
stopping = true;
clearInterval(progress);
log('stopping the writers');
for (const c of children.values()) {
  resumeChild(c, true);
  if (c.proc.connected) c.proc.send({ type: 'stop' });
}
await chaosTask;
const finished = await Promise.race([
  Promise.all([...tasks, ...[...children.values()].map((c) => c.exited)]).then(() => true),
  sleep(30000).then(() => false),
]);
if (!finished) {
  log('writers still busy after 30 s: killing the child processes');
  for (const c of children.values()) c.proc.kill('SIGKILL');
}
for (const s of sockets) s.close();
await Promise.all(proxies.map((p) => p.close()));

// every lease ends (released at disconnect, or expired and swept) and its
// events reach the observer
const auditRows = () => q(
  `SELECT id::int8 AS id, (extract(epoch FROM at) * 1000)::float8 AS at, action, resource_id,
          token::int8 AS token, user_id, holder_id, reason
     FROM collab.audit WHERE id > $1 AND resource_id = ANY ($2) ORDER BY id`, [auditBase, resourceIds]);
const resourceRows = () => q(
  'SELECT id, content, version::int8 AS version FROM collab.resources WHERE id = ANY ($1) ORDER BY id', [resourceIds]);
const settled = async () => {
  const [{ n }] = await q('SELECT count(*)::int AS n FROM collab.leases WHERE resource_id = ANY ($1)', [resourceIds]);
  if (n > 0) return false;
  const audit = await auditRows();
  const rows = await resourceRows();
  const count = (e) => events.filter((x) => x.event === e).length;
  const rowsOf = (pred) => audit.filter(pred).length;
  const takeover = (a) => a.reason === 'takeover';
  return count('lock:acquired') >= rowsOf((a) => a.action === 'grant' && !takeover(a)) &&
    count('lock:released') >= rowsOf((a) => (a.action === 'release' && !takeover(a)) || a.action === 'force_release') &&
    count('lock:expired') >= rowsOf((a) => a.action === 'expire') &&
    count('lock:suspended') >= rowsOf((a) => a.action === 'suspend') &&
    count('lock:resumed') >= rowsOf((a) => a.action === 'resume' || (a.action === 'grant' && takeover(a))) &&
    count('doc:saved') >= rows.reduce((s, r) => s + Number(r.version), 0);
};
const drainUntil = now() + Math.max(15000, ttlMs * 4);
let isSettled = false;
while (now() < drainUntil) {
  if (await settled()) { isSettled = true; break; }
  await sleep(100);
}
log(isSettled ? 'every lease ended and its events arrived' : 'leases or events still outstanding after the drain (see check 4)');
await sleep(200); // duplicates, if any, would arrive now
observer.off('disconnect');
observer.close();

const audit = (await auditRows()).map((a) => ({ ...a, id: Number(a.id), token: a.token === null ? null : Number(a.token) }));
const resources = (await resourceRows()).map((r) => ({ ...r, version: Number(r.version) }));
// the revisions of the resources as they are now (a deleted and recreated
// id would start a chain of its own), times as JSON gives them (microseconds)
const num = (x) => (x === null ? null : Number(x));
const revisions = (await q(
  `SELECT v.resource_id, v.version, v.content, v.saved_by, v.saved_by_name, to_json(v.saved_at) #>> '{}' AS saved_at,
          v.token, v.path::text AS path, v.restored_from, encode(v.prev_hash, 'hex') AS prev_hash, encode(v.hash, 'hex') AS hash
     FROM collab.revisions v JOIN collab.resources r ON r.id = v.resource_id AND r.created_at = v.resource_created_at
    WHERE v.resource_id = ANY ($1) ORDER BY v.resource_id, v.version`, [resourceIds]))
  .map((x) => ({ ...x, version: num(x.version), token: num(x.token), restored_from: num(x.restored_from) }));
const verified = (await q(
  `SELECT r.id, v.ok, v.first_bad_version::int8 AS first_bad_version, v.problem
     FROM unnest($1::text[]) r(id), collab.verify_history(r.id) v`, [resourceIds]))
  .map((x) => ({ ...x, first_bad_version: num(x.first_bad_version) }));
await admin.end();

for (const f of historyFiles) {
  if (!fs.existsSync(f)) continue;
  for (const line of fs.readFileSync(f, 'utf8').split('\n')) {
    if (!line) continue;
    try { records.push(JSON.parse(line)); } catch { /* a line cut by SIGKILL */ }
  }
}

/* ------------------------------------------------------------------------
 * Check and report
 * ------------------------------------------------------------------------ */
const result = check({ ttlMs, records, events, audit, resources, resourceIds, revisions, verified });
fs.writeFileSync(path.join(WORK, 'history.json'), JSON.stringify({ seed: SEED, ttlMs, docs, records, events, audit, resources, revisions, verified }));

const table = (title, rows) => {
  console.log(`\n${title}`);
  const w = Math.max(...rows.map((r) => r[0].length));
  for (const [k, x] of rows) console.log(`  ${k.padEnd(w)}  ${x}`);
};
const byOp = new Map();
for (const o of result.ops) {
  const k = `${o.kind} ${o.op}`;
  if (!byOp.has(k)) byOp.set(k, { ok: 0, fail: 0, unknown: 0, codes: new Map() });
  const b = byOp.get(k);
  b[o.outcome] += 1;
  if (o.outcome === 'fail') b.codes.set(o.code, (b.codes.get(o.code) ?? 0) + 1);
}
table('operations (ok / fail / unknown; failure codes)', [...byOp.entries()].sort().map(([k, b]) => [k,
  `${String(b.ok).padStart(6)} ${String(b.fail).padStart(6)} ${String(b.unknown).padStart(6)}   ${[...b.codes].map(([c, n]) => `${c} ${n}`).join(', ')}`]));
// holders whose connection was lost uncleanly, and how their leases ended
const graces = { suspended: 0, ended: 0, expired: 0, takenOver: 0, endedPolling: 0, endedDefault: 0 };
for (const l of result.leases.values()) {
  if (l.suspended.length === 0) continue;
  graces.suspended += 1;
  if (l.end?.action === 'release' && l.end.reason === 'disconnected') {
    graces.ended += 1;
    if (/^p\d/.test(l.user)) graces.endedPolling += 1;
    if (/^d\d/.test(l.user)) graces.endedDefault += 1;
  }
  if (l.end?.action === 'expire') graces.expired += 1;
  if (l.end?.reason === 'takeover') graces.takenOver += 1;
}
const evCounts = new Map();
for (const e of events) evCounts.set(e.event, (evCounts.get(e.event) ?? 0) + 1);
const c = result.counts;
const lapsedOk = c['lapsed-lease saves ok'] ?? 0;
const lapsedFail = c['lapsed-lease saves fail'] ?? 0;
table('history', [
  ['saves acknowledged', String(result.ops.filter((o) => o.op === 'save' && o.outcome === 'ok').length)],
  ['saves accepted (sum of final versions)', String(c['accepted saves (final versions)'] ?? 0)],
  ['saves refused', String(c['save fail'] ?? 0)],
  ['saves with unknown outcome', String(c['save unknown'] ?? 0)],
  ['saves sent on a lapsed lease (refused / accepted / unknown)', `${lapsedFail} / ${lapsedOk} / ${c['lapsed-lease saves unknown'] ?? 0}`],
  ['lock grants (audit)', String(c['audit grant'] ?? 0)],
  ['client-observed grants', String(c['client-observed grants'] ?? 0)],
  ['client validity proofs (acknowledged grants, renewals, saves)', String(c['client validity proofs'] ?? 0)],
  ['renewals (audit)', String(c['audit renew'] ?? 0)],
  ['releases / forced releases (audit)', `${c['audit release'] ?? 0} / ${c['audit force_release'] ?? 0}`],
  ['expiries (audit)', String(c['audit expire'] ?? 0)],
  ['holders lost: leases suspended / graces ended (released "disconnected") / expired while suspended / taken over',
    `${graces.suspended} / ${graces.ended} / ${graces.expired} / ${graces.takenOver}`],
  ['graces ended of holders on long-polling / on the default transports',
    `${graces.endedPolling} / ${graces.endedDefault}`],
  ['saves acknowledged to writers on long-polling / on the default transports',
    `${result.ops.filter((o) => o.op === 'save' && o.outcome === 'ok' && /^p\d/.test(o.client)).length} / ` +
    `${result.ops.filter((o) => o.op === 'save' && o.outcome === 'ok' && /^d\d/.test(o.client)).length}`],
  ['denials (audit)', String(c['audit deny'] ?? 0)],
  ['reads checked', String(c.reads ?? 0)],
  ['revisions checked (content, token, saver, path, time, chain)', String(c['revisions checked'] ?? 0)],
  ['events seen by the observer', `${events.length} (${[...evCounts].sort().map(([k, n]) => `${k} ${n}`).join(', ')})`],
  ['child stops: asked past the lease / random / past the heartbeat', `${chaos.stalls} / ${chaos.stops} / ${chaos.longStops}`],
  ['child processes SIGKILLed', String(chaos.kills)],
  ['connections cut without a close frame', String(chaos.cuts)],
  ['cut connections recovered (socket.recovered) / connected anew', `${chaos.recovered} / ${chaos.notRecovered}`],
  [`connections per worker, most at once (collab.workers = ${workerCount})`,
    Object.keys(perWorker).sort().map((w) => `${w}: ${perWorker[w]}`).join(', ') || 'none sampled'],
]);
table('violations per check', Object.entries(CHECKS).map(([k, name]) => [`(${k}) ${name}`, String(result.perCheck[k])]));

let failed = false;
if (result.violations.length) {
  failed = true;
  console.log(`\n${result.violations.length} violation(s):`);
  for (const x of result.violations) console.log(`  (${x.check}) ${x.kind}: ${x.msg}`);
}
if (observerLost) {
  failed = true;
  console.log(`\nthe observer lost its connection (${observerLost}): the event checks are incomplete`);
}
// a run that exercised nothing proves nothing
const coverage = [
  ['accepted saves', c['accepted saves (final versions)'] ?? 0],
  ['revisions', c['revisions checked'] ?? 0],
  ['expiries', c['audit expire'] ?? 0],
  ['refused saves on a lapsed lease', lapsedFail],
  ['lock grants to SQL writers', result.ops.filter((o) => o.kind === 'sql' && o.grant && o.outcome === 'ok').length],
  ['holders that dropped past the grace', graces.ended],
  ['holders back within the grace (takeovers)', graces.takenOver],
];
if (CHILDREN > 0) coverage.push(['child stops past the lease', chaos.stalls]);
if (POLL_CLIENTS > 0) {
  coverage.push(['saves acknowledged over long-polling', result.ops.filter((o) => o.op === 'save' && o.outcome === 'ok' && /^p\d/.test(o.client)).length]);
}
if (DEFAULT_CLIENTS > 0) {
  coverage.push(['saves acknowledged on the default transports', result.ops.filter((o) => o.op === 'save' && o.outcome === 'ok' && /^d\d/.test(o.client)).length]);
}
if (POLL_CLIENTS + DEFAULT_CLIENTS > 0) {
  // most default-transport writers hold their locks on the WebSocket they upgraded to
  coverage.push(['holders on long-polling or the default transports that dropped past the grace', graces.endedPolling + graces.endedDefault]);
}
if (workerCount > 1 && SECONDS >= 20) coverage.push(['worker serving clients beside the first', Object.keys(perWorker).length - 1]);
for (const [what, n] of coverage) {
  if (n === 0) { failed = true; console.log(`\nno ${what} in this run: it proves nothing (make it longer)`); }
}
console.log(`\nhistory: ${path.join(WORK, 'history.json')} (seed ${SEED})`);
console.log(failed ? 'stress: FAILED' : 'stress: ok, zero violations');
process.exit(failed ? 1 : 0);
