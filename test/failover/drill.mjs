// The failover drill: a primary and a streaming standby on this machine,
// socket.io-client writers behind a load balancer (a health-checked TCP
// proxy) and SQL writers behind a database address (a proxy a failover
// manager moves), the replication link lagging, the primary stopped with
// pg_ctl stop -m immediate, the standby promoted, the clients reconnecting
// by themselves; then one history check over both primaries
// (checkFailover in ../stress/checker.mjs).  Run through run.sh, which
// starts the primary.  Environment:
//   FAILOVER_MODE        async (default) or sync (synchronous standby, remote_apply)
//   FAILOVER_SECONDS     load before and after the failover (default 20)
//   FAILOVER_LAG_MS      how long the replication link stalls before the stop (default 1000)
//   FAILOVER_WORK        the run's directory (the primary is FAILOVER_WORK/primary)
//   FAILOVER_WS_PORT     the primary's worker port
//   COLLAB_JWT_SECRET    the clusters' collab.jwt_secret
//   FAILOVER_SEED        seed of the writers' random choices (default: random, printed)
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import pg from 'pg';
import { io } from 'socket.io-client';
import { checkFailover, CHECKS, FAILOVER_CHECKS, foldHistory, lineFor, onOnePath } from '../stress/checker.mjs';
import { makeJwt, now, sleep, rng, seedFor, SQLSTATE_CODE } from '../stress/clients.mjs';
import { Proxy, HealthRoutedProxy, healthz } from './proxy.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const run = promisify(execFile);
const env = (k, d) => (process.env[k] === undefined || process.env[k] === '' ? d : process.env[k]);
const MODE = env('FAILOVER_MODE', 'async');
if (!['async', 'sync'].includes(MODE)) throw new Error(`FAILOVER_MODE must be async or sync, not ${MODE}`);
const SYNC = MODE === 'sync';
const SECONDS = Number(env('FAILOVER_SECONDS', 20));
const LAG_MS = Number(env('FAILOVER_LAG_MS', 1000));
const WORK = env('FAILOVER_WORK', null);
const SECRET = env('COLLAB_JWT_SECRET', null);
const P_WS = Number(env('FAILOVER_WS_PORT', 0));
const SEED = Number(env('FAILOVER_SEED', Math.floor(Math.random() * 2 ** 31)));
if (!WORK || !SECRET || !P_WS) throw new Error('FAILOVER_WORK, COLLAB_JWT_SECRET and FAILOVER_WS_PORT are unset: run test/failover/run.sh');
const WS_WRITERS = 6;
const SQL_WRITERS = 3;
const DOCS = 2;
const TABS = 3;
const ACK_TIMEOUT = 3000;

const T0 = now();
const log = (...a) => console.log(`[${MODE} ${((now() - T0) / 1000).toFixed(1).padStart(5)} s]`, ...a);
setTimeout(() => {
  console.log(`failover drill (${MODE}): FAILED: still running ${2 * SECONDS + 120} s after the start`);
  process.exit(1);
}, (2 * SECONDS + 120) * 1000).unref();

const cluster = (...args) => run('bash', [path.join(ROOT, 'scripts/cluster.sh'), ...args]);
const freePort = async () => Number((await cluster('free-port')).stdout.trim());
async function until(what, fn, timeoutMs, everyMs = 50) {
  const end = now() + timeoutMs;
  for (;;) {
    const x = await fn();
    if (x) return x;
    if (now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(everyMs);
  }
}
const pgAt = async (dir, port, database = 'postgres') => {
  const c = new pg.Client({ host: dir, port, user: 'postgres', database });
  c.on('error', () => {});
  await c.connect();
  return c;
};
const rows = async (c, sql, params) => (await c.query(sql, params)).rows;

/* ------------------------------------------------------------------------
 * The primary, the lagging replication link, the standby
 * ------------------------------------------------------------------------ */
const P = { dir: path.join(WORK, 'primary'), ws: P_WS };
P.pg = Number(fs.readFileSync(path.join(P.dir, 'port'), 'utf8'));
const S = { dir: path.join(WORK, 'standby'), ws: await freePort() };
let primary = await pgAt(P.dir, P.pg);

await rows(primary, `DO $$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'drill_app') THEN CREATE ROLE drill_app LOGIN IN ROLE collab_app; END IF;
END $$`);
const docs = [];
for (let d = 1; d <= DOCS; d++) {
  const tabs = Array.from({ length: TABS }, (_, i) => `t${i + 1}`);
  const [{ id }] = await rows(primary, 'SELECT collab.create_document($1, $2, $3::text[]) AS id', [`drill-${d}`, `Drill document ${d}`, tabs]);
  // every drill user may edit (access control has tests of its own)
  await rows(primary, "SELECT collab.grant($1, '*', 'edit')", [id]);
  docs.push({ id, tabs: tabs.map((t) => `${id}/tab:${t}`) });
}
const resourceIds = docs.flatMap((d) => [d.id, ...d.tabs]);
const ttlMs = Number((await rows(primary, 'SELECT (extract(epoch FROM collab.lock_ttl()) * 1000)::float8 AS ms'))[0].ms);

const repl = new Proxy('replication', P.pg);
await repl.listen();
await cluster('standby', S.dir, `host=127.0.0.1 port=${repl.port} user=postgres`, `collab.port = ${S.ws}`);
S.pg = Number(fs.readFileSync(path.join(S.dir, 'port'), 'utf8'));
await until('the standby to stream', async () =>
  (await rows(primary, "SELECT count(*)::int AS n FROM pg_stat_replication WHERE state = 'streaming'"))[0].n === 1, 30000);
if (SYNC) {
  // collab.conf already has synchronous_commit = remote_apply; now it waits
  await rows(primary, "ALTER SYSTEM SET synchronous_standby_names = '*'");
  await rows(primary, 'SELECT pg_reload_conf()');
  await until('the standby to be synchronous', async () =>
    (await rows(primary, "SELECT count(*)::int AS n FROM pg_stat_replication WHERE sync_state = 'sync'"))[0].n === 1, 10000);
}
const [{ sc }] = await rows(primary, "SELECT current_setting('synchronous_commit') AS sc");
log(`primary :${P.pg} (worker :${P.ws}), standby :${S.pg} (worker :${S.ws}) through the replication link :${repl.port}; ` +
  `${SYNC ? 'synchronous standby' : 'asynchronous standby'}, synchronous_commit = ${sc}; collab.lock_ttl ${ttlMs} ms; seed ${SEED}`);

/* ------------------------------------------------------------------------
 * The load balancer (routes to the worker whose /healthz answers 200) and
 * the database address (moved to the new primary after the promotion)
 * ------------------------------------------------------------------------ */
let tSwitch = null;
const lb = new HealthRoutedProxy('browsers', [P.ws, S.ws], 100, (port) => {
  log(`load balancer: ${port === P.ws ? 'the primary' : port === S.ws ? 'the new primary' : 'no healthy worker'}`);
  if (port === S.ws && tSwitch === null) tSwitch = now();
});
await lb.listen();
lb.start();
await until('the primary worker to be healthy', () => lb.target === P.ws, 15000);
const db = new Proxy('database', P.pg);
await db.listen();
const LB_URL = `http://127.0.0.1:${lb.port}`;

// Before the failover, the standby's worker: /healthz, a browser, a polling handshake.
const standbyWorker = async () => (await rows(standbyPg, "SELECT pid FROM pg_stat_activity WHERE backend_type = 'collab worker'")).map((w) => w.pid);
const standbyPg = await pgAt(S.dir, S.pg);
const standbyBefore = { health: await healthz(S.ws), grant: await grantOnStandby(), polling: await pollingHandshake(S.ws),
  workers: await standbyWorker() };

async function grantOnStandby() {
  const s = io(`http://127.0.0.1:${S.ws}`, { transports: ['websocket'], reconnection: false, forceNew: true, timeout: 2000,
    auth: { token: makeJwt(SECRET, 'standby-probe', 'Standby probe') } });
  try {
    await new Promise((resolve, reject) => {
      s.on('connect', resolve);
      s.on('connect_error', reject);
    });
  } catch (e) {
    s.close();
    return { connected: false, granted: false, why: `${e.message}: ${e.description?.message ?? e.description}` };
  }
  const ack = await s.timeout(3000).emitWithAck('presence:join', { resourceId: docs[0].tabs[0], mode: 'editor' }).catch((e) => ({ error: e.message }));
  s.close();
  return { connected: true, granted: ack?.ok === true && ack.role === 'editor', ack };
}

async function pollingHandshake(port) {
  const res = await fetch(`http://127.0.0.1:${port}/socket.io/?EIO=4&transport=polling`);
  return { status: res.status, body: await res.text() };
}

/* ------------------------------------------------------------------------
 * History
 * ------------------------------------------------------------------------ */
let stopping = false;
let tDown = Infinity; // the old primary is dead from here on
let firstServed = null; // the first browser request the new primary answered
const records = [];
const rec = (x) => records.push(x);
const events = [];

// The observer: through the load balancer, in every room, on every connection.
const observer = io(LB_URL, { transports: ['websocket'], forceNew: true, timeout: 3000,
  reconnectionDelay: 100, reconnectionDelayMax: 1000, randomizationFactor: 0.3,
  auth: { token: makeJwt(SECRET, 'observer', 'Observer') } });
observer.onAny((event, payload) => events.push({ t: now(), event, payload }));
observer.on('connect', async () => {
  for (const id of resourceIds) {
    await observer.timeout(ACK_TIMEOUT).emitWithAck('presence:join', { resourceId: id, mode: 'viewer' }).catch(() => {});
  }
});
await until('the observer to connect', () => observer.connected, 10000);

const WS_EVENT = { join: 'presence:join', leave: 'presence:leave', release: 'lock:release', save: 'doc:save' };
const pickTarget = (r) => {
  const d = r.pick(docs);
  return r() < 0.1 ? d.id : r.pick(d.tabs);
};

/* A browser: socket.io-client through the load balancer, reconnecting by itself. */
function wsWriter(id) {
  const r = rng(seedFor(SEED, id));
  const socket = io(LB_URL, { transports: ['websocket'], forceNew: true, timeout: ACK_TIMEOUT,
    reconnectionDelay: 100, reconnectionDelayMax: 1000, randomizationFactor: 0.3,
    auth: { token: makeJwt(SECRET, id, `Writer ${id}`) } });
  const w = { id, socket, connects: [], servedAfter: null, holding: null, rejoin: null };
  socket.on('connect', () => {
    w.connects.push(now());
    rec({ k: 'note', client: id, conn: socket.id, msg: 'connect', t: now() });
  });
  socket.on('disconnect', (reason) => {
    rec({ k: 'note', client: id, msg: `disconnect: ${reason}`, t: now() });
    // as an editor's page does: back, it opens what it was editing again
    w.rejoin = w.holding;
  });
  let n = 0;
  const op = async (name, payload, fields = {}, opId = `${id}#${++n}`) => {
    rec({ k: 'invoke', id: opId, client: id, user: id, conn: socket.id, kind: 'ws', op: name, res: payload.resourceId, ...fields, t: now() });
    if (!socket.connected) {
      rec({ k: 'unknown', id: opId, message: 'not connected', t: now() });
      return null;
    }
    let ack;
    try {
      // volatile: never queued for a later connection
      ack = await socket.volatile.timeout(ACK_TIMEOUT).emitWithAck(WS_EVENT[name], payload);
    } catch (e) {
      rec({ k: 'unknown', id: opId, message: e.message, t: now() });
      return null;
    }
    const t = now();
    if (ack?.ok === true) {
      const done = { k: 'ok', id: opId, t };
      if (name === 'join') {
        done.role = ack.role;
        done.read = { res: ack.resource.resourceId, version: ack.resource.version, content: ack.resource.content };
        if (ack.role === 'editor' && typeof ack.lock?.token === 'number') done.grant = { res: ack.lock.resourceId, token: ack.lock.token };
      }
      if (name === 'save') done.version = ack.version;
      rec(done);
      if (t > tDown) {
        firstServed ??= t;
        w.servedAfter ??= t;
      }
    } else {
      rec({ k: 'fail', id: opId, code: ack?.error?.code ?? 'NO_CODE', message: ack?.error?.message, t });
    }
    return { ack, t };
  };
  w.task = (async () => {
    while (!stopping) {
      if (!socket.connected) {
        await sleep(50);
        continue;
      }
      const target = w.rejoin ?? pickTarget(r);
      w.rejoin = null;
      const j = await op('join', { resourceId: target, mode: 'editor' });
      if (!j || !j.ack.ok || j.ack.role !== 'editor') {
        if (j?.ack.ok && r() < 0.5) await op('leave', { resourceId: target });
        await sleep(r.int(50, 300));
        continue;
      }
      const token = j.ack.lock.token;
      w.holding = target;
      let known = { version: j.ack.resource.version, content: j.ack.resource.content };
      let held = true;
      for (let i = r.int(1, 4); i > 0 && held && !stopping; i--) {
        await sleep(r.int(50, 300));
        const opId = `${id}#${++n}`;
        const line = lineFor(opId, token);
        const content = known.content + line + '\n';
        const x = await op('save', { resourceId: target, content, token, baseVersion: known.version },
          { token, line, base: known.version, lockRes: target }, opId);
        if (!x || !x.ack.ok) held = false;
        else known = { version: x.ack.version, content };
      }
      if (held && !stopping) await op(r() < 0.6 ? 'release' : 'leave', { resourceId: target }, { token });
      w.holding = null;
    }
    socket.close();
  })();
  return w;
}

/* An application backend: the SQL API through the database address. */
const CONNECTION_LOST = (e) => !e.code || e.code.startsWith('08') || ['57P01', '57P02', '57P03', '25006'].includes(e.code);
function sqlWriter(id) {
  const r = rng(seedFor(SEED, id));
  const w = { id, sessions: 0 };
  let n = 0;
  // the lock this backend believes it holds, kept across a lost connection
  let lock = null;
  w.task = (async () => {
    while (!stopping) {
      const client = new pg.Client({ host: '127.0.0.1', port: db.port, user: 'drill_app', database: 'postgres',
        connectionTimeoutMillis: 2000, query_timeout: 8000 });
      client.on('error', () => {});
      try {
        await client.connect();
      } catch {
        await sleep(100);
        continue;
      }
      w.sessions += 1;
      let alive = true;
      const op = async (name, res, sql, params, fields = {}, opId = `${id}#${++n}`) => {
        rec({ k: 'invoke', id: opId, client: id, user: id, conn: id, kind: 'sql', op: name, res, ...fields, t: now() });
        try {
          const out = (await client.query(sql, params)).rows;
          return { rows: out, t: now(), id: opId };
        } catch (e) {
          if (CONNECTION_LOST(e)) {
            rec({ k: 'unknown', id: opId, message: e.message, t: now() });
            alive = false;
            return null;
          }
          const code = SQLSTATE_CODE[e.code] ?? `SQLSTATE ${e.code}`;
          rec({ k: 'fail', id: opId, code, message: e.message, t: now() });
          return { err: code, t: now(), id: opId };
        }
      };
      const ok = (x, extra = {}) => rec({ k: 'ok', id: x.id, t: x.t, ...extra });
      const save = async (extra = {}) => {
        const opId = `${id}#${++n}`;
        const line = lineFor(opId, lock.token);
        const content = lock.known.content + line + '\n';
        const x = await op('save', lock.res, 'SELECT collab.save($1, $2, $3, $4)::int8 AS version',
          [lock.res, lock.token, content, lock.known.version],
          { token: lock.token, line, base: lock.known.version, lockRes: lock.res, ...extra }, opId);
        if (!x) return false;
        if (x.err) { lock = null; return false; }
        const version = Number(x.rows[0].version);
        ok(x, { version });
        lock.known = { version, content };
        return true;
      };
      try {
        // back on a connection (to the new primary, after a failover):
        // save once more with the token of before
        if (lock && lock.grantedAt < tDown && now() > tDown) {
          await save({ preFailover: true, allow: ['VERSION_CONFLICT'] });
          if (!alive) continue;
        }
        while (!stopping && alive) {
          if (!lock) {
            const target = pickTarget(r);
            const a = await op('acquire', target, 'SELECT granted, token::int8 AS token FROM collab.acquire($1, $2, $3, $4)',
              [target, id, `App ${id}`, id]);
            if (!a || a.err) continue;
            if (!a.rows[0].granted) {
              ok(a, { granted: false });
              await sleep(r.int(50, 300));
              continue;
            }
            const token = Number(a.rows[0].token);
            ok(a, { granted: true, grant: { res: target, token } });
            lock = { res: target, token, grantedAt: a.t };
            const x = await op('read', target, 'SELECT content, version::int8 AS version FROM collab.resources WHERE id = $1', [target]);
            if (!x || x.err) continue;
            lock.known = { version: Number(x.rows[0].version), content: x.rows[0].content };
            ok(x, { read: { res: target, ...lock.known } });
          }
          await sleep(r.int(50, 300));
          if (!lock.known) { lock = null; continue; }
          if (!(await save())) continue;
          if (r() < 0.3) {
            const x = await op('release', lock.res, 'SELECT collab.release($1) AS res', [lock.token], { token: lock.token });
            if (!x) continue;
            if (!x.err) ok(x);
            lock = null;
          }
        }
      } finally {
        await client.end().catch(() => {});
      }
    }
  })();
  return w;
}

/* ------------------------------------------------------------------------
 * Load, failover, load
 * ------------------------------------------------------------------------ */
const ws = Array.from({ length: WS_WRITERS }, (_, i) => wsWriter(`w${i + 1}`));
const sql = Array.from({ length: SQL_WRITERS }, (_, i) => sqlWriter(`sql${i + 1}`));
await sleep(SECONDS * 1000);

log(`the replication link stalls for ${LAG_MS} ms`);
repl.pause();
await sleep(LAG_MS);
log('pg_ctl stop -m immediate of the primary');
await cluster('stop', P.dir, 'immediate');
await primary.end().catch(() => {});
repl.cutAll();
repl.setTarget(null);
await sleep(100); // acknowledgements the old primary sent are in by now
tDown = now();

// what the standby has at the promotion (a hot standby answers reads)
const standby = standbyPg;
const workersAtPromotion = await standbyWorker();
const leasesAtPromotion = (await rows(standby,
  `SELECT token::int8 AS token, resource_id, holder_id, (extract(epoch FROM expires_at) * 1000)::float8 AS expires_at
     FROM collab.leases WHERE expires_at > clock_timestamp() AND resource_id = ANY ($1)`, [resourceIds]))
  .map((l) => ({ ...l, token: Number(l.token) }));
const promotedAt = Date.now();
const tPromote = now();
await cluster('promote', S.dir);
const tPromoted = now();
log(`standby promoted in ${(tPromoted - tPromote).toFixed(0)} ms`);

// the new primary's worker extends the live leases by itself, before it serves
const newPrimary = await pgAt(S.dir, S.pg);
const [{ graceMs }] = await rows(newPrimary, 'SELECT (extract(epoch FROM collab.disconnect_grace()) * 1000)::float8 AS "graceMs"');
const extension = await until('the worker to extend the live leases', async () => (await rows(newPrimary,
  `SELECT leases_extended AS n, (extract(epoch FROM leases_extended_by) * 1000)::float8 AS "byMs",
          (extract(epoch FROM leases_extended_at) * 1000)::float8 AS at
     FROM collab.token_epochs WHERE timeline = (collab._token_issuer()).timeline AND leases_extended_at IS NOT NULL`))[0], 30000, 20);
const extendedAgain = Number((await rows(newPrimary, 'SELECT collab.extend_leases_after_promotion(collab.disconnect_grace()) AS n'))[0].n);
log(`the worker extended ${extension.n} live lease(s) by ${extension.byMs} ms, ${(extension.at - promotedAt).toFixed(0)} ms after the promotion started; a second call: ${extendedAgain}`);
db.setTarget(S.pg);
log('the database address moved to the new primary');

await until('the load balancer to route to the new primary', () => tSwitch !== null, 30000, 20);
await until('a browser request served by the new primary', () => firstServed !== null, 30000, 20);
log(`first browser request served ${(firstServed - tPromote).toFixed(0)} ms after the promotion started`);
const newHealth = await healthz(S.ws);
const workersAfter = await standbyWorker();
await sleep(SECONDS * 1000);

stopping = true;
log('stopping the writers');
await Promise.race([Promise.all([...ws, ...sql].map((w) => w.task)), sleep(15000)]);
observer.close();
lb.stop();

/* ------------------------------------------------------------------------
 * Both primaries' data
 * ------------------------------------------------------------------------ */
// expired leases are swept (and audited) by the new primary's worker
await until('the sweep of expired leases', async () =>
  (await rows(newPrimary, 'SELECT count(*)::int AS n FROM collab.leases WHERE expires_at <= clock_timestamp()'))[0].n === 0, 15000, 100)
  .catch((e) => log(e.message));
const readData = async (c) => ({
  audit: (await rows(c,
    `SELECT id::int8 AS id, (extract(epoch FROM at) * 1000)::float8 AS at, action::text AS action, resource_id,
            token::int8 AS token, user_id, holder_id, reason,
            CASE WHEN reason = 'promotion' THEN (extract(epoch FROM (detail->>'expiresAt')::timestamptz) * 1000)::float8 END AS "expiresAt"
       FROM collab.audit WHERE resource_id = ANY ($1) ORDER BY id`, [resourceIds]))
    .map((a) => ({ ...a, id: Number(a.id), token: a.token === null ? null : Number(a.token) })),
  resources: (await rows(c, 'SELECT id, content, version::int8 AS version FROM collab.resources WHERE id = ANY ($1) ORDER BY id', [resourceIds]))
    .map((x) => ({ ...x, version: Number(x.version) })),
  epochs: (await rows(c, 'SELECT epoch, timeline::int AS timeline, base::int8 AS base, reason FROM collab.token_epochs ORDER BY epoch'))
    .map((e) => ({ ...e, base: Number(e.base) })),
});
const nowData = await readData(newPrimary);
await newPrimary.end();
await standbyPg.end();
// The old primary's data after crash recovery holds everything it committed;
// started without collab (no worker) and read-only, on a port nobody knows.
const oldPort = await freePort();
await cluster('restart', P.dir, `-c shared_preload_libraries='' -c listen_addresses='' -c port=${oldPort} -c default_transaction_read_only=on`);
primary = await pgAt(P.dir, oldPort);
const oldData = await readData(primary);
await primary.end();
await cluster('stop', P.dir, 'fast');

/* ------------------------------------------------------------------------
 * Check and report
 * ------------------------------------------------------------------------ */
const result = checkFailover({ ttlMs, records, events, resourceIds, synchronous: SYNC, tDown, promotedAt, old: oldData, now: nowData });
fs.writeFileSync(path.join(WORK, `history-${MODE}.json`), JSON.stringify({ seed: SEED, mode: MODE, ttlMs, tDown, promotedAt, docs, records, events, old: oldData, now: nowData }));
const st = result.stats;
const EPOCH_BITS = 36;
const epochOf = (t) => Math.floor(t / 2 ** EPOCH_BITS);
const counterOf = (t) => t - epochOf(t) * 2 ** EPOCH_BITS;
const baseOf = (data, e) => data.epochs.find((x) => x.epoch === e)?.base;
// the sequence values behind the tokens: what a token without an epoch would have been
const rawOld = new Set(oldData.audit.filter((a) => a.action === 'grant' && !nowData.audit.some((b) => b.id === a.id && b.token === a.token))
  .map((a) => baseOf(oldData, epochOf(a.token)) + counterOf(a.token)));
const newGrants = nowData.audit.filter((a) => a.action === 'grant' && a.at >= promotedAt);
const reissuedRaw = newGrants.filter((a) => rawOld.has(baseOf(nowData, epochOf(a.token)) + counterOf(a.token))).length;
const epochsOld = [...new Set(oldData.audit.filter((a) => a.action === 'grant').map((a) => epochOf(a.token)))];
const epochsNew = [...new Set(newGrants.map((a) => epochOf(a.token)))];
const newEpochRow = nowData.epochs.find((e) => epochsNew.includes(e.epoch));
const savesRefusedStale = foldHistory(records).filter((o) => o.op === 'save' && o.outcome === 'fail' && ['LOCK_NOT_HELD', 'LOCK_EXPIRED'].includes(o.code)).length;
const pre = Object.entries(st).filter(([k]) => k.startsWith('pre-failover saves ')).map(([k, x]) => `${k.slice(19)} ${x}`);

const table = (title, list) => {
  console.log(`\n${title}`);
  const w = Math.max(...list.map((x) => x[0].length));
  for (const [k, x] of list) console.log(`  ${k.padEnd(w)}  ${x}`);
};
table(`failover drill, ${SYNC ? 'synchronous standby (synchronous_commit = remote_apply)' : 'asynchronous standby'}`, [
  ['tokens issued before the failover (old primary, all it committed)', `${st['tokens issued by the old primary']} (epoch ${epochsOld.join(', ')}, up to ${st['highest old token']})`],
  ['tokens issued after the failover (new primary)', `${st['tokens issued by the new primary']} (epoch ${epochsNew.join(', ')}, from ${st['lowest new token']}; timeline ${newEpochRow?.timeline}, ${newEpochRow?.reason})`],
  ['grants the standby never received', `${oldData.audit.filter((a) => a.action === 'grant').length - nowData.audit.filter((a) => a.action === 'grant' && a.at < promotedAt).length} (acknowledged to a client: ${st['grants lost']})`],
  ['grants undone by the old primary\'s crash (answered before their WAL flush)', String(st['grants undone by the crash'])],
  ['sequence values the new primary handed out again (harmless: another epoch)', String(reissuedRaw)],
  ['acknowledged saves lost (acknowledged by the old primary, not replicated)', String(st['saves lost'])],
  ['other acknowledgements lost (releases, reads of lost versions)', `${st['releases lost']}, ${st['reads of lost versions']}`],
  ['saves refused for stale or expired tokens (LOCK_NOT_HELD, LOCK_EXPIRED)', String(savesRefusedStale)],
  ['saves with a pre-failover token on the new primary', `${st['pre-failover saves']}${pre.length ? ` (${pre.join('; ')})` : ''}`],
  ['promotion (pg_ctl promote -w)', `${(tPromoted - tPromote).toFixed(0)} ms`],
  ['promotion start to the load balancer routing to the new primary', `${(tSwitch - tPromote).toFixed(0)} ms`],
  ['promotion start to the first served browser request', `${(firstServed - tPromote).toFixed(0)} ms`],
  ['audit rows: old primary / replicated / new primary', `${oldData.audit.length} / ${nowData.audit.filter((a) => a.at < promotedAt).length} / ${newGrants.length} grants of ${nowData.audit.filter((a) => a.at >= promotedAt).length}`],
  ['operations recorded; events seen by the observer', `${records.filter((x) => x.k === 'invoke').length}; ${events.length}`],
]);
table('violations per check', [
  ...Object.entries(FAILOVER_CHECKS).map(([k, name]) => [`(${k}) ${name}`, String(result.perCheck[k])]),
  ...Object.entries(CHECKS).filter(([k]) => k !== '4').map(([k, name]) => [`(${k}) ${name}`, String(result.perCheck[k])]),
]);

let failed = false;
const must = (what, cond, detail = '') => {
  if (!cond) failed = true;
  console.log(`  ${cond ? 'ok' : 'FAILED'}  ${what}${detail ? `: ${detail}` : ''}`);
};
console.log('\nassertions');
must('no violation of the history checks', result.violations.length === 0, `${result.violations.length}`);
must('the standby grants nothing: socket.io-client\'s connect is refused with 503',
  !standbyBefore.grant.connected && /^websocket error: Unexpected server response: 503$/.test(standbyBefore.grant.why),
  standbyBefore.grant.connected ? 'it connected' : standbyBefore.grant.why);
const REFUSAL = '{"code":3,"message":"this server is a standby: connect to the primary","role":"standby"}';
must('a polling handshake on the standby is refused with 503 and the body naming the role',
  standbyBefore.polling.status === 503 && standbyBefore.polling.body === REFUSAL, JSON.stringify(standbyBefore.polling));
must('the standby\'s /healthz answers 503 with role "standby"',
  standbyBefore.health.status === 503 && JSON.stringify(standbyBefore.health.body) ===
  '{"status":"unavailable","role":"standby","worker":"ok","database":"in recovery","connections":0}', JSON.stringify(standbyBefore.health));
must('the standby\'s worker ran without restarting until the promotion, and after it',
  standbyBefore.workers.length === 1 && JSON.stringify(workersAtPromotion) === JSON.stringify(standbyBefore.workers) &&
  JSON.stringify(workersAfter) === JSON.stringify(standbyBefore.workers), `pids ${standbyBefore.workers} / ${workersAtPromotion} / ${workersAfter}`);
const workerLog = fs.readFileSync(path.join(S.dir, 'server.log'), 'utf8').split('\n').filter((l) => l.includes(`[${standbyBefore.workers[0]}]`));
const workerErrors = workerLog.filter((l) => /(ERROR|FATAL|PANIC):/.test(l));
must('the standby\'s worker logged no error (it tried no write)', workerErrors.length === 0, workerErrors.slice(0, 3).join(' | '));
must('the standby\'s worker noticed the promotion by itself', workerLog.some((l) => l.endsWith('the server was promoted; it serves as the primary')),
  workerLog.filter((l) => l.includes('promot')).join(' | ') || 'not in its log');
must('the new primary\'s /healthz answers 200 with role "primary"',
  newHealth.status === 200 && newHealth.body?.status === 'ok' && newHealth.body.role === 'primary' && newHealth.body.database === 'ok',
  JSON.stringify(newHealth.body ?? newHealth));
must('the new primary started a later epoch for its timeline', !!newEpochRow && newEpochRow.reason === 'promotion' &&
  epochsOld.every((e) => e < newEpochRow.epoch), JSON.stringify(nowData.epochs));
// The worker extends before it serves: exactly the leases live then, each
// by collab.disconnect_grace, once.
const extensionRows = nowData.audit.filter((a) => a.action === 'renew' && a.reason === 'promotion');
const liveAtExtension = leasesAtPromotion.filter((l) => l.expires_at > extension.at);
const extendedRight = extensionRows.filter((a) => {
  const l = leasesAtPromotion.find((x) => x.token === a.token);
  return l && Math.abs(a.expiresAt - l.expires_at - graceMs) < 1;
});
must('the new primary\'s worker extended every live lease by collab.disconnect_grace, once, before it served',
  extendedAgain === 0 && extension.byMs === graceMs && extensionRows.length === extension.n &&
  extendedRight.length === extensionRows.length && liveAtExtension.every((l) => extensionRows.some((a) => a.token === l.token)) &&
  extension.at <= promotedAt + (firstServed - tPromote),
  `${extension.n} extended by ${extension.byMs} ms (${extendedRight.length} by exactly the grace), ` +
  `${liveAtExtension.length} of ${leasesAtPromotion.length} replicated leases still live then; a second call: ${extendedAgain}`);
must('every browser reconnected by itself and was served by the new primary',
  ws.every((w) => w.connects.some((t) => t > tDown) && w.servedAfter !== null),
  ws.filter((w) => !(w.connects.some((t) => t > tDown) && w.servedAfter !== null)).map((w) => w.id).join(', ') || `${ws.length} of ${ws.length}`);
must('every SQL writer came back through the database address', sql.every((w) => w.sessions >= 2), sql.map((w) => `${w.id} ${w.sessions} sessions`).join(', '));
must('grants on both sides of the failover', st['tokens issued by the old primary'] > 0 && st['tokens issued by the new primary'] > 0);
if (SYNC) must('nothing acknowledged was lost (synchronous standby)', st['saves lost'] + st['grants lost'] + st['releases lost'] + st['reads of lost versions'] === 0);
else must('the lagging standby missed grants (the failover tested what it should)', st['audit rows lost'] > 0, `${st['audit rows lost']} audit rows`);

// Socket.IO holders across the promotion (the holder's grace): the new
// primary's worker detaches the old one's connections, suspending their
// leases instead of releasing them, and a holder who joins its resource
// again takes its lease over (a new token) before anyone else gets it.
const wsLive = leasesAtPromotion.filter((l) => !l.holder_id.startsWith('sql'));
const holderOf = (l) => nowData.audit.find((a) => a.token === l.token && a.action === 'grant')?.user_id;
const releasedAtStart = wsLive.filter((l) => nowData.audit.some((a) => a.at >= promotedAt && a.token === l.token &&
  a.action === 'release' && a.reason === 'disconnected')).length;
const suspendedAtStart = wsLive.filter((l) => nowData.audit.some((a) => a.at >= promotedAt && a.token === l.token &&
  a.action === 'suspend')).length;
must('socket.io holders live at the promotion keep their leases: suspended by the new primary\'s worker, none released',
  releasedAtStart === 0 && suspendedAtStart === wsLive.length,
  `${suspendedAtStart} of ${wsLive.length} suspended, ${releasedAtStart} released with reason "disconnected"`);
// holders who joined their resource again after the failover
const rejoined = wsLive.filter((l) => records.some((x) => x.k === 'invoke' && x.op === 'join' && x.t > tDown &&
  x.res === l.resource_id && x.user === holderOf(l)));
// the first grant on the resource after the promotion went to the lease's own user
const regained = rejoined.filter((l) => {
  const first = newGrants.find((a) => onOnePath(a.resource_id, l.resource_id));
  return first && first.user_id === holderOf(l) && first.reason === 'takeover';
}).length;
must('holders who join their resource again take their leases over before anyone else (lock:resumed)',
  regained === rejoined.length,
  `${regained} of ${rejoined.length} (of ${wsLive.length} live at the promotion) went first to the same user, by a takeover`);

// ... and save: with a new token after the takeover (socket.io), with
// their token of before if its lease was replicated (SQL).
const ops = foldHistory(records);
const savedAfter = rejoined.filter((l) => ops.some((o) => o.op === 'save' && o.outcome === 'ok' && o.t > tDown &&
  o.res === l.resource_id && o.user === holderOf(l)));
must('holders who came back within the grace saved again', savedAfter.length === rejoined.length,
  `${savedAfter.length} of ${rejoined.length} socket.io holders`);
const replicatedGrants = new Set(nowData.audit.filter((a) => a.action === 'grant' && a.at < promotedAt).map((a) => a.token));
const preFailover = ops.filter((o) => o.preFailover && o.outcome !== 'unknown');
const preReplicated = preFailover.filter((o) => replicatedGrants.has(o.token));
must('SQL holders save with their pre-failover token when its lease was replicated',
  preReplicated.every((o) => o.outcome === 'ok' || o.code === 'VERSION_CONFLICT') && (!SYNC || preReplicated.length === preFailover.length),
  `${preReplicated.filter((o) => o.outcome === 'ok').length} of ${preReplicated.length} replicated accepted (${preFailover.length} pre-failover saves)`);

if (result.violations.length) {
  console.log(`\n${result.violations.length} violation(s):`);
  for (const x of result.violations.slice(0, 50)) console.log(`  (${x.check}) ${x.kind}: ${x.msg}`);
}
console.log(`\nhistory: ${path.join(WORK, `history-${MODE}.json`)} (seed ${SEED})`);
console.log(failed ? `failover drill (${MODE}): FAILED` : `failover drill (${MODE}): ok`);
await Promise.all([lb.close(), db.close(), repl.close()]);
process.exit(failed ? 1 : 0);
