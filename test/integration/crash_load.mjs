// Crash and restart under load, on a cluster of its own (crash_load.sh):
// editors lock, save, release and re-acquire continuously through
// socket.io-client with its built-in reconnection, another client holds a
// lock and idles, while (a) the collab worker is killed with SIGKILL, which
// makes PostgreSQL restart the whole cluster, and (b) the cluster is
// stopped with pg_ctl -m immediate and started again.  After each crash:
//   - every client reconnects by itself (a new connect event, a new id);
//   - the leases of the dead connections are released by the restarted
//     worker before it listens (collab.ws_worker_start, with
//     collab.disconnect_grace = 0 on this cluster: lock:released with
//     reason "disconnected", recorded in the audit trail), so they are gone
//     from collab.locks before any client is back.  That event is published
//     before anyone can have joined again, so a reconnected client learns
//     it from state instead: its join finds every tab unlocked, and it then
//     sees the editors' new lock:acquired;
//   - no acknowledged save is lost: each tab is at its last acknowledged
//     version and content (or one further, the save in flight at the crash);
//   - no fencing token is reissued: all tokens ever granted are distinct and
//     every token granted after a crash is greater than every earlier one;
//   - the audit trail has every grant once, except, with
//     collab.synchronous_grants off (the default), a lock:acquire answered
//     just before a crash: its commit may not have reached the disk.  Such
//     a grant must be its editor's last before that crash, with no
//     acknowledged save under it (a save's commit flushes the grant's).
//     crash_load.sh runs this file with the setting off, then on.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  newUser, connect, join, save, release, acquire, createDocument, q, eventually, mark, waitFor,
  teardown, ref,
} from './helpers.mjs';

const CLUSTER = process.env.COLLAB_CRASH_CLUSTER;
if (!CLUSTER) throw new Error('COLLAB_CRASH_CLUSTER is not set: run this through test/integration/crash_load.sh');
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const EDITORS = 4;
const SAVES_PER_PHASE = 6;

after(teardown);

const reconnecting = { reconnection: true, reconnectionDelay: 100, reconnectionDelayMax: 500, randomizationFactor: 0 };

// Tokens in grant order, with the phase (0 before the first crash, 1 after
// it, 2 after the second) in which they were granted.
const grants = [];
let phase = 0;
let paused = false;
let stopping = false;
let resume = null;
let resumed = Promise.resolve();
// Tokens whose lock a client released itself (lock:release sent).
const releaseSent = new Set();
const releaseAcked = new Set();

function pause() {
  paused = true;
  resumed = new Promise((r) => { resume = r; });
}
function unpause() {
  paused = false;
  resume();
}

/**
 * The phase whose server answers a request sent now on connection connId.
 * Sent on the live connection, it is answered by the current phase's server
 * (or not at all, if a crash ends the connection first), even when the test
 * reads the answer only after it has counted the crash: execFileSync holds
 * the event loop.  Sent while disconnected, it waits in socket.io-client's
 * buffer for the next server: null, the phase when the answer is read.
 */
function sendingPhase(e, connId) {
  return e.s.connected && e.s.id === connId ? phase : null;
}

function grantFrom(ack, e, what, via = 'join', sentIn = null) {
  const token = Number(ack.lock?.token);
  assert.ok(Number.isSafeInteger(token) && token > 0, `${what}: a positive integer token in ${JSON.stringify(ack)}`);
  grants.push({ token, phase: sentIn ?? phase, editor: e.user.name, via });
  e.currentToken = token;
}

/** One editor's loop: hold its tab, save, every third save release and re-acquire. */
async function runEditor(e) {
  let n = 0;
  while (!stopping) {
    if (paused || !e.s.connected) {
      await resumed;
      if (!e.s.connected) await waitFor(e.s, '$connect', () => true, { since: e.lastConnectMark(), timeout: 30000 });
      continue;
    }
    const connId = e.s.id;
    try {
      if (e.heldBy !== connId) {
        const sentIn = sendingPhase(e, connId);
        const ack = await join(e.s, e.rid, 'editor');
        if (!ack.ok) throw Object.assign(new Error(JSON.stringify(ack)), { ack });
        assert.equal(ack.role, 'editor', `${e.user.name} (re)joins its own tab as editor: ${JSON.stringify(ack)}`);
        grantFrom(ack, e, `${e.user.name} join`, 'join', sentIn);
        e.heldBy = connId;
      }
      n += 1;
      const content = `${e.user.name} save ${n} in phase ${phase}`;
      e.inflight = content;
      const ack = await save(e.s, e.rid, content);
      if (!ack.ok) throw Object.assign(new Error(JSON.stringify(ack)), { ack });
      e.inflight = null;
      assert.ok(Number.isSafeInteger(ack.version), JSON.stringify(ack));
      e.acked.push({ version: ack.version, content, phase, token: e.currentToken });
      e.savesInPhase[phase] = (e.savesInPhase[phase] ?? 0) + 1;
      if (n % 3 === 0) {
        releaseSent.add(e.currentToken);
        const r = await release(e.s, e.rid);
        if (!r.ok) throw Object.assign(new Error(JSON.stringify(r)), { ack: r });
        releaseAcked.add(e.currentToken);
        e.heldBy = null;
        const sentIn = sendingPhase(e, connId);
        const a = await acquire(e.s, e.rid);
        if (!a.ok) throw Object.assign(new Error(JSON.stringify(a)), { ack: a });
        grantFrom(a, e, `${e.user.name} acquire`, 'acquire', sentIn);
        e.heldBy = connId;
      }
    } catch (err) {
      // a request cut by the crash: the socket lost its connection (or the
      // ack was cut); anything else is a failure of the test
      if (e.s.connected && e.s.id === connId) {
        e.errors.push(err.message);
        stopping = true;
        return;
      }
      e.heldBy = null;
    }
  }
}

async function workerPid() {
  const rows = await q("SELECT pid FROM pg_stat_activity WHERE backend_type = 'collab worker'");
  return rows.length === 1 ? rows[0].pid : null;
}

async function waitForSaves(editors, p, count) {
  await eventually(() => {
    for (const e of editors) if (e.errors.length) throw new Error(`${e.user.name}: ${e.errors[0]}`);
    return editors.every((e) => (e.savesInPhase[p] ?? 0) >= count);
  }, `every editor made ${count} acknowledged saves in phase ${p}`, 20000, 50);
}

/**
 * The crash: pauses the editors, remembers their connections, runs crash(),
 * and checks everything that must hold once the cluster is back, before the
 * editors may go on.
 */
async function crashAndCheck(editors, viewer, holder, doc, crash, what) {
  pause();
  const marks = new Map([...editors, { s: viewer }, holder].map((c) => [c.s, mark(c.s)]));
  const oldIds = [...editors, holder].map((e) => e.s.id);
  const oldViewerId = viewer.id;
  const oldPid = await workerPid();
  assert.ok(oldPid, 'a collab worker runs');
  const maxBefore = Math.max(...grants.map((g) => g.token));

  await crash(oldPid);
  phase += 1;

  // every client notices and reconnects by itself (no connect() call here)
  for (const c of [...editors.map((e) => e.s), viewer, holder.s]) {
    await waitFor(c, '$disconnect', () => true, { since: marks.get(c), timeout: 15000 });
    await waitFor(c, '$connect', () => true, { since: marks.get(c), timeout: 30000 });
  }
  const newPid = await eventually(async () => { const p = await workerPid(); return p !== oldPid && p; },
    `${what}: a new collab worker runs`, 20000);
  assert.notEqual(newPid, oldPid);
  assert.ok([...editors, holder].every((e, i) => e.s.connected && e.s.id !== oldIds[i]), `${what}: new connection ids`);
  assert.notEqual(viewer.id, oldViewerId);

  // the dead connections' leases: released by the restarted worker, gone from collab.locks
  assert.deepEqual(
    await q('SELECT resource_id, holder_id FROM collab.locks WHERE holder_id = ANY ($1)', [oldIds]), [],
    `${what}: no lease of a dead connection is left`);
  const ends = await q(
    `SELECT g.token::text, g.holder_id, array_agg(e.action || ':' || e.reason ORDER BY e.id) FILTER (WHERE e.id IS NOT NULL) AS ends
       FROM collab.audit g
       LEFT JOIN collab.audit e ON e.token = g.token AND e.action IN ('release', 'expire', 'force_release')
      WHERE g.action = 'grant' AND g.holder_id = ANY ($1)
      GROUP BY g.token, g.holder_id`, [oldIds]);
  let orphans = 0;
  for (const r of ends) {
    // released by its client (acknowledged), by the restarted worker (never
    // asked to release), or either when the release was cut by the crash
    const t = Number(r.token);
    const want = releaseAcked.has(t) ? ['release:released']
      : releaseSent.has(t) ? ['release:released', 'release:disconnected'] : ['release:disconnected'];
    assert.ok(r.ends?.length === 1 && want.includes(r.ends[0]),
      `${what}: lease ${t} of ${r.holder_id} ended once, as ${want.join(' or ')}: ${JSON.stringify(r.ends)}`);
    if (r.ends[0] === 'release:disconnected') orphans += 1;
  }
  // the idle holder's lease is always among them
  assert.deepEqual(ends.find((r) => Number(r.token) === holder.currentToken)?.ends, ['release:disconnected'],
    `${what}: the idle holder's lease ${holder.currentToken} was released as disconnected`);
  assert.deepEqual(await q('SELECT connection_id FROM collab.connections WHERE connection_id = ANY ($1)', [[...oldIds, oldViewerId]]), [],
    `${what}: the dead connections are gone from collab.connections`);

  // no acknowledged save was lost
  for (const e of editors) {
    const last = e.acked.at(-1);
    const [row] = await q('SELECT version::int AS version, content FROM collab.resources WHERE id = $1', [e.rid]);
    if (e.inflight !== null && row.version === last.version + 1) {
      assert.equal(row.content, e.inflight, `${what}: ${e.rid} holds the save that was in flight`);
    } else {
      assert.deepEqual(row, { version: last.version, content: last.content },
        `${what}: ${e.rid} is at the last acknowledged save`);
    }
    e.inflight = null;
  }

  // a reconnected viewer finds every tab unlocked ...
  const vm = mark(viewer);
  for (const e of [...editors, holder]) {
    const ack = await join(viewer, e.rid, 'viewer');
    assert.equal(ack.ok, true, JSON.stringify(ack));
    assert.equal(ack.lock, null, `${what}: ${e.rid} is free for a reconnected client: ${JSON.stringify(ack.lock)}`);
  }
  // ... and sees the holder and each editor take their tabs again
  const hj = await join(holder.s, holder.rid, 'editor');
  assert.equal(hj.role, 'editor', `${what}: the reconnected holder takes its tab again: ${JSON.stringify(hj)}`);
  grantFrom(hj, holder, `${what}: holder join`);
  unpause();
  for (const e of [holder, ...editors]) {
    const acq = await waitFor(viewer, 'lock:acquired', (x) => x.resourceId === e.rid, { since: vm, timeout: 15000 });
    assert.deepEqual(acq.holder, ref(e.user));
    assert.equal(acq.token, undefined, 'a viewer never sees a token');
  }
  await waitForSaves(editors, phase, SAVES_PER_PHASE);

  const after = grants.filter((g) => g.phase === phase);
  assert.ok(after.length >= EDITORS, `${what}: tokens were granted after the restart`);
  const minAfter = Math.min(...after.map((g) => g.token));
  assert.ok(minAfter > maxBefore,
    `${what}: every token after the restart (lowest ${minAfter}) is above every earlier one (highest ${maxBefore})`);
  console.log(`# ${what}: worker ${oldPid} -> ${newPid}; ${orphans} orphaned leases released; ` +
    `tokens before <= ${maxBefore}, after >= ${minAfter}`);
}

test('editors under load survive SIGKILL of the worker and pg_ctl stop -m immediate', { timeout: 120000 }, async () => {
  const doc = await createDocument([...Array.from({ length: EDITORS }, (_, i) => `t${i}`), 'held'], 'crash');
  const editors = [];
  for (let i = 0; i < EDITORS; i++) {
    const user = newUser(`Editor${i}`);
    const s = await connect(user, reconnecting);
    const e = {
      user, s, rid: doc.tab(`t${i}`), heldBy: null, inflight: null, acked: [], errors: [], savesInPhase: {},
    };
    let connectMark = 0;
    s.on('disconnect', () => { connectMark = mark(s); });
    e.lastConnectMark = () => connectMark;
    editors.push(e);
  }
  const viewer = await connect(newUser('Viewer'), reconnecting);
  // holds one tab and does nothing else: always an orphan at the crash
  const holder = { user: newUser('Holder'), rid: doc.tab('held') };
  holder.s = await connect(holder.user, reconnecting);
  const hj = await join(holder.s, holder.rid, 'editor');
  assert.equal(hj.role, 'editor');
  grantFrom(hj, holder, 'holder join');
  const loops = editors.map((e) => runEditor(e));

  await waitForSaves(editors, 0, SAVES_PER_PHASE);

  await crashAndCheck(editors, viewer, holder, doc, async (pid) => {
    process.kill(pid, 'SIGKILL');
  }, 'SIGKILL of the worker');

  await crashAndCheck(editors, viewer, holder, doc, async () => {
    execFileSync('bash', [path.join(ROOT, 'scripts/cluster.sh'), 'stop', CLUSTER, 'immediate'], { stdio: 'inherit' });
    execFileSync('bash', [path.join(ROOT, 'scripts/cluster.sh'), 'restart', CLUSTER], { stdio: 'inherit' });
  }, 'pg_ctl stop -m immediate');

  stopping = true;
  await Promise.all(loops);
  // each client lost its connection exactly twice: at the two crashes, never under load alone
  for (const [label, s] of [...editors.map((e) => [e.user.name, e.s]), ['viewer', viewer], ['holder', holder.s]]) {
    assert.equal(s.__disconnects.length, 2, `${label} disconnected only at the crashes: ${JSON.stringify(s.__disconnects)}`);
  }
  for (const e of editors) assert.deepEqual(e.errors, [], `${e.user.name} saw no unexpected failure`);

  // every token ever granted is distinct, and each phase's tokens are above the previous phases'
  const tokens = grants.map((g) => g.token);
  assert.equal(new Set(tokens).size, tokens.length, `all ${tokens.length} tokens are distinct`);
  for (let p = 1; p <= phase; p++) {
    const before = Math.max(...grants.filter((g) => g.phase < p).map((g) => g.token));
    assert.ok(grants.filter((g) => g.phase >= p).every((g) => g.token > before), `phase ${p} tokens are above ${before}`);
  }
  // the audit trail recorded each of them at most once ...
  const audited = (await q("SELECT token::text FROM collab.audit WHERE action = 'grant' AND token = ANY ($1::bigint[])", [tokens]))
    .map((r) => Number(r.token));
  assert.equal(new Set(audited).size, audited.length, 'no grant is in the audit trail twice');
  // ... and every one, but for grants a crash may undo (see the top)
  const [{ synchronous }] = await q("SELECT current_setting('collab.synchronous_grants')::boolean AS synchronous");
  const missing = grants.filter((g) => !audited.includes(g.token));
  if (synchronous) assert.deepEqual(missing, [], 'every token a client was granted is in the audit trail');
  const savedUnder = new Set(editors.flatMap((e) => e.acked.map((a) => a.token)));
  for (const g of missing) {
    const lastOfPhase = grants.filter((x) => x.editor === g.editor && x.phase === g.phase).at(-1);
    assert.ok(g.via === 'acquire' && g.phase < phase && lastOfPhase === g && !savedUnder.has(g.token),
      `grant ${g.token} of ${g.editor} is missing from the audit trail, and it was not a lock:acquire answered ` +
      `just before a crash with no save under it: ${JSON.stringify(g)}`);
  }

  // acknowledged versions strictly increase per tab, and the final state is the last ack
  for (const e of editors) {
    const versions = e.acked.map((a) => a.version);
    assert.ok(versions.every((v, i) => i === 0 || v > versions[i - 1]), `${e.rid}: acked versions increase: ${versions}`);
    const [row] = await q('SELECT version::int AS version, content FROM collab.resources WHERE id = $1', [e.rid]);
    const last = e.acked.at(-1);
    if (e.inflight !== null && row.version === last.version + 1) assert.equal(row.content, e.inflight);
    else assert.deepEqual(row, { version: last.version, content: last.content }, `${e.rid} ends at its last acknowledged save`);
  }
  console.log(`# synchronous grants ${synchronous ? 'on' : 'off'}: ${tokens.length} tokens granted, ` +
    `${missing.length} of them undone by a crash, ${editors.reduce((n, e) => n + e.acked.length, 0)} saves acknowledged`);
  for (const e of editors) e.s.close();
  viewer.close();
  holder.s.close();
});
