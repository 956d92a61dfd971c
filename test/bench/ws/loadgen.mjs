// Load generator of the collab WebSocket benchmark (called by run.sh).
//
// Phases (BENCH_PHASES, comma-separated, in this order):
//   sql       baselines through libpq: a commit, collab.acquire/release, and the
//             NOTIFY delivery of their events to a LISTENing client
//   lock      one viewer: lock:acquire -> ack, lock:release -> ack, uncontended
//   contend   50 clients on 10 tabs looping acquire/release for a fixed time
//   save      doc:save of 2 kB with the lock held -> ack
//   presence  N passive members (LiteClient, split over BENCH_PROCS child
//             processes) in one room; a socket.io-client joiner joins and leaves
//             repeatedly; join -> the last member receiving presence:joined
//   idle      (optional) the lock loop with BENCH_IDLE_SIZES (0,1000,5000) idle
//             connections open
//
// Environment: COLLAB_WS_URL, COLLAB_JWT_SECRET, PGHOST/PGPORT/PGUSER (database
// postgres runs the worker), BENCH_DOC (the document, with tabs a, lock, save,
// sql, c0..c9), BENCH_OUT_MD / BENCH_OUT_JSON (where to write the results).
// Tunables: BENCH_SIZES (100,1000), BENCH_ROUNDS (100), BENCH_WARMUP_ROUNDS (5),
// BENCH_PROCS (2), BENCH_LOCK_ITERS (1000), BENCH_SAVE_ITERS (500),
// BENCH_SQL_ITERS (500), BENCH_CONTEND_CLIENTS (50), BENCH_CONTEND_TABS (10),
// BENCH_CONTEND_SECS (10), BENCH_CONTENT_BYTES (2048), BENCH_IDLE_LOCK_ITERS (300:
// the lock loop again, after each presence size, with its members connected).
//
// Every latency is process.hrtime.bigint() (CLOCK_MONOTONIC), taken in the
// callback that receives the message.  Percentiles are nearest-rank.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import pg from 'pg';
import { io } from 'socket.io-client';
import { makeToken } from './token.mjs';
import { Child } from '../child.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const env = (k, d) => (process.env[k] === undefined || process.env[k] === '' ? d : process.env[k]);
const URL_ = env('COLLAB_WS_URL');
const SECRET = env('COLLAB_JWT_SECRET');
if (!URL_ || !SECRET) throw new Error('COLLAB_WS_URL and COLLAB_JWT_SECRET must be set (run test/bench/ws/run.sh)');
const DOC = env('BENCH_DOC', 'document:bench');
const PHASES = env('BENCH_PHASES', 'sql,lock,contend,save,presence').split(',').map((s) => s.trim()).filter(Boolean);
const SIZES = env('BENCH_SIZES', '100,1000').split(',').map(Number);
const ROUNDS = Number(env('BENCH_ROUNDS', 100));
const WARMUP_ROUNDS = Number(env('BENCH_WARMUP_ROUNDS', 5));
const PROCS = Number(env('BENCH_PROCS', 2));
const LOCK_ITERS = Number(env('BENCH_LOCK_ITERS', 1000));
const SAVE_ITERS = Number(env('BENCH_SAVE_ITERS', 500));
const SQL_ITERS = Number(env('BENCH_SQL_ITERS', 500));
const CONTEND_CLIENTS = Number(env('BENCH_CONTEND_CLIENTS', 50));
const CONTEND_TABS = Number(env('BENCH_CONTEND_TABS', 10));
const CONTEND_SECS = Number(env('BENCH_CONTEND_SECS', 10));
const CONTENT_BYTES = Number(env('BENCH_CONTENT_BYTES', 2048));
const IDLE_LOCK_ITERS = Number(env('BENCH_IDLE_LOCK_ITERS', 300));
const JOIN_CONCURRENCY = Number(env('BENCH_JOIN_CONCURRENCY', 20));
const TARGET_PRESENCE_P99 = 20;   // ms, 1000 clients, join -> last delivery
const TARGET_PRESENCE_N = 1000;
const TARGET_LOCK_P99 = 2;        // ms, uncontended lock round trip

const tab = (t) => `${DOC}/tab:${t}`;
const hr = () => process.hrtime.bigint();
const msBetween = (a, b) => Number(b - a) / 1e6;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const log = (...a) => console.log(...a);

/* ------------------------------------------------------------------ stats */
function pct(sorted, p) {
  if (sorted.length === 0) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1));
  return sorted[i];
}
function summary(values) {
  const s = [...values].sort((a, b) => a - b);
  const mean = s.reduce((x, y) => x + y, 0) / (s.length || 1);
  return { n: s.length, p50: pct(s, 0.5), p90: pct(s, 0.9), p99: pct(s, 0.99), max: s[s.length - 1] ?? NaN, min: s[0] ?? NaN, mean };
}
const f2 = (x) => (Number.isFinite(x) ? x.toFixed(2) : '—');
const f1 = (x) => (Number.isFinite(x) ? x.toFixed(1) : '—');
const fmtS = (s) => `n=${s.n} p50 ${f2(s.p50)} p90 ${f2(s.p90)} p99 ${f2(s.p99)} max ${f2(s.max)} ms`;

/* ------------------------------------------------------------------ CPU */
let workerPid = null;
let listenerPid = null;
let postmasterPid = null;
/** CPU ns of the postmaster and each of its children (every process of our cluster), by pid. */
function clusterNs() {
  const m = new Map([[postmasterPid, schedNs(postmasterPid)]]);
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const st = fs.readFileSync(`/proc/${d}/stat`, 'utf8');
      if (Number(st.slice(st.lastIndexOf(')') + 2).split(' ')[1]) === postmasterPid) m.set(Number(d), schedNs(d));
    } catch { /* gone */ }
  }
  return m;
}
/** CPU ns the cluster used between two clusterNs() maps (processes that exited meanwhile are lost). */
function clusterDelta(a, b) {
  let sum = 0;
  for (const [pid, ns] of b) sum += ns - (a.get(pid) || 0);
  return sum;
}
function schedNs(pid) {
  try {
    return Number(fs.readFileSync(`/proc/${pid}/schedstat`, 'utf8').split(' ')[0]);
  } catch {
    try {  // fallback: utime+stime in clock ticks (assume 100 Hz)
      const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
      return (Number(f[11]) + Number(f[12])) * 1e7;
    } catch { return NaN; }
  }
}
function machineTicks() {
  const f = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  const total = f.slice(0, 8).reduce((a, b) => a + b, 0);
  return { total, idle: f[3] + f[4] };
}
const children = [];
async function cpuSnap() {
  const kids = await Promise.all(children.map((c) => c.call({ cmd: 'cpu' }, 'cpu')));
  const p = process.cpuUsage();
  return {
    t: hr(), parentUs: p.user + p.system, parentElu: performance.eventLoopUtilization(),
    kidsUs: kids.map((k) => k.us), worker: schedNs(workerPid), listener: schedNs(listenerPid),
    cluster: clusterNs(), machine: machineTicks(),
  };
}
function cpuDelta(a, b) {
  const wallMs = msBetween(a.t, b.t);
  const pctOf = (us) => (us / 1000 / wallMs) * 100;
  const kidsPct = b.kidsUs.map((u, i) => pctOf(u - a.kidsUs[i]));
  const parentPct = pctOf(b.parentUs - a.parentUs);
  const dt = b.machine.total - a.machine.total;
  const d = {
    wallMs, parentPct, kidsPct,
    nodeTotalPct: parentPct + kidsPct.reduce((x, y) => x + y, 0),
    nodeMaxPct: Math.max(parentPct, ...kidsPct),
    parentElu: performance.eventLoopUtilization(b.parentElu, a.parentElu).utilization * 100,
    workerPct: ((b.worker - a.worker) / 1e6 / wallMs) * 100,
    workerCpuMs: (b.worker - a.worker) / 1e6,
    listenerPct: ((b.listener - a.listener) / 1e6 / wallMs) * 100,
    clusterPct: (clusterDelta(a.cluster, b.cluster) / 1e6 / wallMs) * 100,
    machinePct: dt > 0 ? ((dt - (b.machine.idle - a.machine.idle)) / dt) * 100 : NaN,
  };
  // whatever ran on the machine besides this benchmark (core-%; clamps the tick rounding)
  d.outsidePct = Math.max(0, (d.machinePct / 100) * os.cpus().length * 100 - d.nodeTotalPct - d.clusterPct);
  return d;
}
const cpuRows = [];
async function measured(name, fn) {
  const a = await cpuSnap();
  const extra = await fn();
  const b = await cpuSnap();
  const d = cpuDelta(a, b);
  d.name = name;
  Object.assign(d, extra || {});
  cpuRows.push(d);
  log(`  cpu: wall ${f1(d.wallMs / 1000)} s, node ${f1(d.nodeTotalPct)}% (busiest process ${f1(d.nodeMaxPct)}%), ` +
    `worker ${f1(d.workerPct)}%, listener ${f1(d.listenerPct)}%, whole cluster ${f1(d.clusterPct)}%, ` +
    `machine ${f1(d.machinePct)}% of ${os.cpus().length} cores, other processes ${f1(d.outsidePct)}%`);
  return d;
}

/* ------------------------------------------------------------------ clients */
let userSeq = 0;
function sioConnect(name) {
  userSeq++;
  const token = makeToken(SECRET, { sub: `bench-${name}-${userSeq}`, name: `Bench ${name} ${userSeq}` });
  const s = io(URL_, { transports: ['websocket'], auth: { token }, reconnection: false, forceNew: true });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${name}: connect timeout`)), 15000);
    s.on('connect', () => { clearTimeout(timer); resolve(s); });
    s.on('connect_error', (e) => { clearTimeout(timer); reject(new Error(`${name}: connect_error ${e.message} ${JSON.stringify(e.data)}`)); });
  });
}
/** emit with an ack; resolves { ack, ms } with the time taken in the ack callback. */
function ackTimed(sock, event, payload, timeoutMs = 10000) {
  return new Promise((resolve, reject) => {
    const t0 = hr();
    sock.timeout(timeoutMs).emit(event, payload, (err, ack) => {
      const t1 = hr();
      if (err) reject(new Error(`${event}: ${err.message}`));
      else resolve({ ack, ms: msBetween(t0, t1) });
    });
  });
}
function must(ok, what) { if (!ok) throw new Error(what); }

/* member process i (members.mjs) */
function member(i) {
  return new Child(path.join(HERE, 'members.mjs'), { name: `member process ${i}`, env: { BENCH_CHILD_NO: String(i) } });
}

/* ------------------------------------------------------------------ phases */
const results = { phases: {} };

async function phaseSql(pgc) {
  log(`\n== sql: baselines through libpq (${SQL_ITERS} iterations each)`);
  const listener = new pg.Client({ database: 'postgres', application_name: 'bench listener' });
  await listener.connect();
  await listener.query('LISTEN collab_events');
  let waitNote = null;
  listener.on('notification', (n) => {
    const t = hr();
    if (waitNote && n.payload.includes(waitNote.rid)) { const w = waitNote; waitNote = null; w.resolve(t); }
  });
  const expectNote = (rid) => new Promise((resolve) => { waitNote = { rid, resolve }; });
  const rid = tab('sql');
  const r = { select1: [], commit: [], acquire: [], acquireNotify: [], release: [], releaseNotify: [] };
  await measured('sql baselines', async () => {
    for (let i = 0; i < SQL_ITERS + 20; i++) {
      const keep = i >= 20;
      let t0 = hr();
      await pgc.query('SELECT 1');
      let t1 = hr();
      if (keep) r.select1.push(msBetween(t0, t1));
      t0 = hr();
      await pgc.query('SELECT txid_current()');   // an xid: the commit writes and flushes WAL
      t1 = hr();
      if (keep) r.commit.push(msBetween(t0, t1));

      let note = expectNote(rid);
      t0 = hr();
      const a = await pgc.query("SELECT granted, token FROM collab.acquire($1, 'sql-user', 'SQL User', 'sql-conn')", [rid]);
      t1 = hr();
      must(a.rows[0].granted, 'sql acquire not granted');
      let tn = await note;
      if (keep) { r.acquire.push(msBetween(t0, t1)); r.acquireNotify.push(msBetween(t0, tn)); }

      note = expectNote(rid);
      t0 = hr();
      await pgc.query('SELECT collab.release($1)', [a.rows[0].token]);
      t1 = hr();
      tn = await note;
      if (keep) { r.release.push(msBetween(t0, t1)); r.releaseNotify.push(msBetween(t0, tn)); }
    }
  });
  await listener.end();
  const out = Object.fromEntries(Object.entries(r).map(([k, v]) => [k, summary(v)]));
  for (const [k, s] of Object.entries(out)) log(`  ${k.padEnd(15)} ${fmtS(s)}`);
  results.phases.sql = out;
}

/** One viewer of rid: iters x (lock:acquire -> ack, lock:release -> ack) after warm-up ones. */
async function lockLoop(name, rid, iters, warmup) {
  const s = await sioConnect(name);
  const j = await ackTimed(s, 'presence:join', { resourceId: rid, mode: 'viewer' });
  must(j.ack.ok, `${name} join: ` + JSON.stringify(j.ack).slice(0, 300));
  const acq = [];
  const rel = [];
  for (let i = 0; i < iters + warmup; i++) {
    const a = await ackTimed(s, 'lock:acquire', { resourceId: rid });
    must(a.ack.ok, 'acquire: ' + JSON.stringify(a.ack));
    const r = await ackTimed(s, 'lock:release', { resourceId: rid });
    must(r.ack.ok, 'release: ' + JSON.stringify(r.ack));
    if (i >= warmup) { acq.push(a.ms); rel.push(r.ms); }
  }
  s.close();
  return { acquire: summary(acq), release: summary(rel) };
}

async function phaseLock() {
  log(`\n== lock: uncontended acquire/release round trips (${LOCK_ITERS} iterations, 50 warm-up)`);
  let loop;
  const d = await measured('lock uncontended', async () => {
    loop = await lockLoop('lock', tab('lock'), LOCK_ITERS, 50);
  });
  const out = { acquire: loop.acquire, release: loop.release, cpu: d };
  log(`  acquire -> ack ${fmtS(out.acquire)}`);
  log(`  release -> ack ${fmtS(out.release)}`);
  results.phases.lock = out;
}

async function phaseContend() {
  log(`\n== contend: ${CONTEND_CLIENTS} clients on ${CONTEND_TABS} tabs, acquire/release loops for ${CONTEND_SECS} s`);
  const socks = [];
  for (let i = 0; i < CONTEND_CLIENTS; i++) {
    const s = await sioConnect(`contend${i}`);
    const rid = tab(`c${i % CONTEND_TABS}`);
    const j = await ackTimed(s, 'presence:join', { resourceId: rid, mode: 'viewer' });
    must(j.ack.ok, 'contend join: ' + JSON.stringify(j.ack));
    socks.push({ s, rid });
  }
  const all = [];
  const granted = [];
  const held = [];
  const rel = [];
  const other = {};
  let stop = false;
  const d = await measured('lock contended', async () => {
    const t0 = hr();
    setTimeout(() => { stop = true; }, CONTEND_SECS * 1000);
    await Promise.all(socks.map(async ({ s, rid }) => {
      while (!stop) {
        const a = await ackTimed(s, 'lock:acquire', { resourceId: rid });
        all.push(a.ms);
        if (a.ack.ok) {
          granted.push(a.ms);
          const r = await ackTimed(s, 'lock:release', { resourceId: rid });
          must(r.ack.ok, 'contended release: ' + JSON.stringify(r.ack));
          rel.push(r.ms);
        } else if (a.ack.error && a.ack.error.code === 'LOCK_HELD') {
          held.push(a.ms);
        } else {
          const code = a.ack.error ? a.ack.error.code : 'unknown';
          other[code] = (other[code] || 0) + 1;
        }
      }
    }));
    return { requests: all.length + rel.length, secs: msBetween(t0, hr()) / 1000 };
  });
  for (const { s } of socks) s.close();
  const out = {
    acquire: summary(all), granted: summary(granted), held: summary(held), release: summary(rel),
    nGranted: granted.length, nHeld: held.length, other, requestsPerSec: d.requests / d.secs, cpu: d,
  };
  log(`  acquire -> ack (all)      ${fmtS(out.acquire)}`);
  log(`  acquire -> ack (granted)  ${fmtS(out.granted)}`);
  log(`  acquire -> ack (LOCK_HELD) ${fmtS(out.held)}`);
  log(`  release -> ack            ${fmtS(out.release)}`);
  log(`  granted ${out.nGranted}, LOCK_HELD ${out.nHeld}, other ${JSON.stringify(other)}; ${f1(out.requestsPerSec)} requests/s`);
  results.phases.contend = out;
}

function clinicalText(bytes, seed) {
  const words = ('patient presented with acute abdominal pain laparoscopic appendectomy was performed under ' +
    'general anesthesia the appendix inflamed without perforation hemostasis achieved irrigation trocar sites ' +
    'closed with absorbable sutures estimated blood loss minimal no complications postoperative course ' +
    'uneventful diagnosis confirmed histology pending antibiotics continued').split(' ');
  let x = seed * 2654435761 % 4294967296;
  let s = `[${seed}] `;
  while (s.length < bytes) { x = (x * 1103515245 + 12345) % 2147483648; s += words[x % words.length] + ' '; }
  return s.slice(0, bytes);
}

async function phaseSave() {
  log(`\n== save: doc:save of ${CONTENT_BYTES} bytes with the lock held (${SAVE_ITERS} iterations, 20 warm-up)`);
  const s = await sioConnect('save');
  const rid = tab('save');
  const j = await ackTimed(s, 'presence:join', { resourceId: rid, mode: 'editor' });
  must(j.ack.ok && j.ack.role === 'editor', 'save client join as editor: ' + JSON.stringify(j.ack));
  const lat = [];
  let lastVersion = 0;
  const d = await measured('save', async () => {
    for (let i = 0; i < SAVE_ITERS + 20; i++) {
      const content = clinicalText(CONTENT_BYTES, i);
      const r = await ackTimed(s, 'doc:save', { resourceId: rid, content });
      must(r.ack.ok, 'save: ' + JSON.stringify(r.ack));
      must(r.ack.version > lastVersion, 'save version did not advance');
      lastVersion = r.ack.version;
      if (i >= 20) lat.push(r.ms);
    }
  });
  s.close();
  const out = { save: summary(lat), cpu: d, bytes: CONTENT_BYTES };
  log(`  doc:save -> ack ${fmtS(out.save)}`);
  results.phases.save = out;
}

async function phasePresence() {
  const rid = tab('a');
  results.phases.presence = {};
  log(`\n== presence: members in ${rid}, split over ${PROCS} member process(es)`);
  for (let i = 0; i < PROCS; i++) children.push(member(i));
  await Promise.all(children.map((c) => c.next('ready', 20000)));
  const joiner = await sioConnect('joiner');
  let selfWait = null;
  joiner.on('presence:joined', (ev) => {
    const t = hr();
    if (selfWait && ev.user && ev.user.connectionId === joiner.id) { const w = selfWait; selfWait = null; w(t); }
  });

  for (const N of SIZES) {
    // grow the room to N members
    const tg = hr();
    await Promise.all(children.map((c, i) => {
      const share = Math.floor(N / PROCS) + (i < N % PROCS ? 1 : 0);
      return c.call({ cmd: 'grow', total: share, resourceId: rid, concurrency: JOIN_CONCURRENCY, offset: i * 1000000 }, 'grown', 300000);
    }));
    const growMs = msBetween(tg, hr());
    await sleep(500);   // let the tail of the growth's fan-out drain
    log(`  N=${N}: room grown in ${f1(growMs / 1000)} s`);

    const rows = [];
    const failures = [];
    const d = await measured(`presence N=${N}`, async () => {
      for (let r = 0; r < WARMUP_ROUNDS + ROUNDS; r++) {
        const row = await presenceRound(r, joiner, rid, N, (w) => { selfWait = w; });
        if (row.failure) failures.push(row.failure);
        if (r >= WARMUP_ROUNDS && !row.failure) rows.push(row);
      }
    });
    // the same uncontended lock loop as phase 'lock', now with N idle connections open
    const idle = await lockLoop(`lock-idle${N}`, tab('lock'), IDLE_LOCK_ITERS, 20);
    const col = (k) => summary(rows.map((x) => x[k]));
    const out = {
      N, rounds: rows.length, failures, growMs,
      joinAck: col('joinAck'), joinSelf: col('joinSelf'), joinFirst: col('joinFirst'), joinLast: col('joinLast'),
      joinSpread: col('joinSpread'), leaveAck: col('leaveAck'), leaveLast: col('leaveLast'),
      burstCpu: summary(rows.flatMap((x) => x.burstCpu)), burstElu: summary(rows.flatMap((x) => x.burstElu)),
      workerCpuPerRoundMs: d.workerCpuMs / (WARMUP_ROUNDS + ROUNDS),
      cpu: d, lockAcquire: idle.acquire, lockRelease: idle.release,
    };
    log(`  N=${N} join -> ack                ${fmtS(out.joinAck)}`);
    log(`  N=${N} join -> joiner's own event  ${fmtS(out.joinSelf)}`);
    log(`  N=${N} join -> first member        ${fmtS(out.joinFirst)}`);
    log(`  N=${N} join -> LAST member         ${fmtS(out.joinLast)}`);
    log(`  N=${N} first -> last member        ${fmtS(out.joinSpread)}`);
    log(`  N=${N} leave -> ack               ${fmtS(out.leaveAck)}`);
    log(`  N=${N} leave -> LAST member        ${fmtS(out.leaveLast)}`);
    log(`  N=${N} member process CPU during a burst (% of one core, per process per round): p50 ${f1(out.burstCpu.p50)} max ${f1(out.burstCpu.max)}`);
    log(`  N=${N} worker CPU per round (join + leave): ${f2(out.workerCpuPerRoundMs)} ms`);
    log(`  N=${N} idle connections: lock:acquire -> ack ${fmtS(out.lockAcquire)}`);
    log(`  N=${N} idle connections: lock:release -> ack ${fmtS(out.lockRelease)}`);
    if (failures.length) log(`  N=${N} FAILED ROUNDS: ${failures.length}: ${failures.slice(0, 3).join('; ')}`);
    results.phases.presence[N] = out;
  }
  joiner.close();
  for (const c of children) c.proc.send({ cmd: 'close' });
}

// Optional phase 'idle': the uncontended lock loop with K idle connections
// (connected, in no room) open, for each K of BENCH_IDLE_SIZES: what the
// connection count alone costs a request.
async function phaseIdle() {
  const sizes = env('BENCH_IDLE_SIZES', '0,1000,5000').split(',').map(Number);
  log(`\n== idle: lock round trips with ${sizes.join(', ')} idle connections open`);
  const kids = [];
  for (let i = 0; i < PROCS; i++) kids.push(member(100 + i));
  await Promise.all(kids.map((c) => c.next('ready', 20000)));
  results.phases.idle = {};
  for (const K of sizes) {
    const t0 = hr();
    await Promise.all(kids.map((c, i) => {
      const share = Math.floor(K / PROCS) + (i < K % PROCS ? 1 : 0);
      return c.call({ cmd: 'grow', total: share, resourceId: null, concurrency: 50, offset: (100 + i) * 1000000 }, 'grown', 300000);
    }));
    await sleep(300);
    const r = await lockLoop(`idle${K}`, tab('lock'), IDLE_LOCK_ITERS, 20);
    log(`  K=${K} (connected in ${f1(msBetween(t0, hr()) / 1000)} s): acquire -> ack ${fmtS(r.acquire)}; release -> ack ${fmtS(r.release)}`);
    results.phases.idle[K] = r;
  }
  for (const c of kids) c.proc.send({ cmd: 'close' });
}

async function presenceRound(round, joiner, rid, N, setSelfWait) {
  const ROUND_TIMEOUT = 15000;
  const row = {};
  // join
  await Promise.all(children.map((c) => c.call({ cmd: 'arm', round, kind: 'joined', connId: joiner.id }, 'armed')));
  let dones = Promise.allSettled(children.map((c) => c.next('done', ROUND_TIMEOUT)));
  const selfP = new Promise((resolve) => setSelfWait(resolve));
  const t0 = hr();
  const ack = await ackTimed(joiner, 'presence:join', { resourceId: rid, mode: 'viewer' });
  must(ack.ack.ok, 'joiner join: ' + JSON.stringify(ack.ack).slice(0, 300));
  must(ack.ack.users.length === N + 1, `join ack lists ${ack.ack.users.length} users, expected ${N + 1}`);
  row.joinAck = ack.ms;
  let got = await dones;
  const tSelf = await Promise.race([selfP, sleep(ROUND_TIMEOUT).then(() => null)]);
  row.joinSelf = tSelf ? msBetween(t0, tSelf) : NaN;
  if (got.some((g) => g.status !== 'fulfilled')) return { failure: await disarm(round, 'joined', got) };
  let vals = got.map((g) => g.value);
  if (vals.reduce((x, v) => x + v.count, 0) !== N) return { failure: `round ${round}: ${vals.reduce((x, v) => x + v.count, 0)} of ${N} got presence:joined` };
  const first = vals.reduce((m, v) => (v.first < m ? v.first : m), vals[0].first);
  const last = vals.reduce((m, v) => (v.last > m ? v.last : m), vals[0].last);
  row.joinFirst = msBetween(t0, first);
  row.joinLast = msBetween(t0, last);
  row.joinSpread = msBetween(first, last);
  row.burstCpu = vals.map((v) => (v.cpuUs / 1000 / msBetween(v.tArm, v.tDone)) * 100);
  row.burstElu = vals.map((v) => v.elu * 100);
  row.dupes = vals.reduce((x, v) => x + v.dupes, 0);
  // leave
  await Promise.all(children.map((c) => c.call({ cmd: 'arm', round, kind: 'left', connId: joiner.id }, 'armed')));
  dones = Promise.allSettled(children.map((c) => c.next('done', ROUND_TIMEOUT)));
  const t1 = hr();
  const lack = await ackTimed(joiner, 'presence:leave', { resourceId: rid });
  must(lack.ack.ok, 'joiner leave: ' + JSON.stringify(lack.ack));
  row.leaveAck = lack.ms;
  got = await dones;
  if (got.some((g) => g.status !== 'fulfilled')) return { failure: await disarm(round, 'left', got) };
  vals = got.map((g) => g.value);
  row.leaveLast = msBetween(t1, vals.reduce((m, v) => (v.last > m ? v.last : m), vals[0].last));
  return row;
}

async function disarm(round, kind, got) {
  const counts = await Promise.all(children.map((c) => c.call({ cmd: 'disarm', round }, 'disarmed')));
  // a late 'done' would confuse the next round
  await sleep(100);
  for (const c of children) c.queue = c.queue.filter((m) => m.cmd !== 'done');
  return `round ${round} ${kind}: ${got.map((g) => g.status).join(',')}; per-process counts ${counts.map((c) => `${c.count}/${c.members}`).join(' ')}`;
}

/* ------------------------------------------------------------------ report */
function markdown(meta) {
  const L = [];
  const P = results.phases;
  const verdict = (v, t) => (Number.isFinite(v) ? (v <= t ? '**PASS**' : '**MISS**') : 'n/a');
  const row = (name, s, target = '', v = '') => `| ${name} | ${s.n} | ${f2(s.p50)} | ${f2(s.p99)} | ${f2(s.max)} | ${target} | ${v} |`;
  L.push('# collab WebSocket benchmark', '');
  L.push(`${meta.date}, ${meta.git}, ${meta.cores} cores (${meta.cpuModel}), PostgreSQL ${meta.pgVersion}, Node ${process.version}; ` +
    `${env('BENCH_BUILD', '')}; member processes: ${PROCS}; percentiles are nearest-rank; total ${f1(meta.totalS)} s.`);
  if (meta.extraConf) L.push('', `Extra server settings: \`${meta.extraConf}\``);
  L.push('', '| measurement | n | p50 ms | p99 ms | max ms | target | verdict |', '|---|---:|---:|---:|---:|---|---|');
  if (P.presence) {
    for (const N of Object.keys(P.presence).map(Number).sort((a, b) => a - b)) {
      const p = P.presence[N];
      const isT = N === TARGET_PRESENCE_N;
      L.push(row(`presence N=${N}: join → LAST member got \`presence:joined\``, p.joinLast,
        isT ? `p99 ≤ ${TARGET_PRESENCE_P99}` : '', isT ? verdict(p.joinLast.p99, TARGET_PRESENCE_P99) : ''));
      L.push(row(`presence N=${N}: join → first member`, p.joinFirst));
      L.push(row(`presence N=${N}: join → joiner's ack`, p.joinAck));
      L.push(row(`presence N=${N}: leave → LAST member got \`presence:left\``, p.leaveLast));
      L.push(row(`lock uncontended with the N=${N} members connected: \`lock:acquire\` → ack`, p.lockAcquire));
      if (p.failures.length) L.push(`| presence N=${N}: **failed rounds** | ${p.failures.length} | | | | | |`);
    }
  }
  if (P.lock) {
    L.push(row('lock uncontended: `lock:acquire` → ack', P.lock.acquire, `p99 ≤ ${TARGET_LOCK_P99}`, verdict(P.lock.acquire.p99, TARGET_LOCK_P99)));
    L.push(row('lock uncontended: `lock:release` → ack', P.lock.release, `p99 ≤ ${TARGET_LOCK_P99}`, verdict(P.lock.release.p99, TARGET_LOCK_P99)));
  }
  if (P.contend) {
    const c = P.contend;
    const who = `${CONTEND_CLIENTS} clients/${CONTEND_TABS} tabs`;
    L.push(row(`lock contended (${who}): acquire → ack, all`, c.acquire));
    L.push(row(`lock contended (${who}): acquire → ack, granted`, c.granted));
    L.push(row(`lock contended (${who}): acquire → ack, LOCK_HELD`, c.held));
    L.push(row(`lock contended (${who}): release → ack`, c.release));
  }
  if (P.idle) {
    for (const K of Object.keys(P.idle).map(Number).sort((a, b) => a - b)) {
      L.push(row(`lock uncontended, ${K} idle connections open: \`lock:acquire\` → ack`, P.idle[K].acquire));
    }
  }
  if (P.save) L.push(row(`save: \`doc:save\` (${P.save.bytes} B, lock held) → ack`, P.save.save));
  if (P.sql) {
    const s = P.sql;
    L.push(row('SQL via libpq: `SELECT 1`', s.select1));
    L.push(row('SQL via libpq: `SELECT txid_current()` (commit with WAL flush)', s.commit));
    L.push(row('SQL via libpq: `collab.acquire`', s.acquire));
    L.push(row('SQL via libpq: `collab.acquire` → its `collab_events` notification at a LISTENer', s.acquireNotify));
    L.push(row('SQL via libpq: `collab.release`', s.release));
  }
  if (P.contend) {
    const c = P.contend;
    L.push('', `Contended locks: **${c.nGranted} granted**, **${c.nHeld} LOCK_HELD**` +
      `${Object.keys(c.other).length ? `, other ${JSON.stringify(c.other)}` : ''}; ${f1(c.requestsPerSec)} requests/s over ${CONTEND_SECS} s.`);
  }
  if (P.presence) {
    L.push('');
    for (const N of Object.keys(P.presence).map(Number).sort((a, b) => a - b)) {
      const p = P.presence[N];
      L.push(`Presence N=${N}: ${p.rounds} rounds (+${WARMUP_ROUNDS} warm-up); room grown in ${f1(p.growMs / 1000)} s; ` +
        `join → joiner's own \`presence:joined\` p50 ${f2(p.joinSelf.p50)} ms; first → last member p50 ${f2(p.joinSpread.p50)} / p99 ${f2(p.joinSpread.p99)} ms; ` +
        `worker CPU ${f2(p.workerCpuPerRoundMs)} ms per round (join + leave); member process CPU during a burst p50 ${f1(p.burstCpu.p50)}% / max ${f1(p.burstCpu.max)}% of a core.`);
    }
  }
  L.push('', '| phase (CPU, % of one core) | wall s | load generator, sum | busiest Node process | collab worker | worker LISTEN backend (if any) | whole cluster | other processes on the machine |',
    '|---|---:|---:|---:|---:|---:|---:|---:|');
  for (const d of cpuRows) {
    L.push(`| ${d.name} | ${f1(d.wallMs / 1000)} | ${f1(d.nodeTotalPct)} | ${f1(d.nodeMaxPct)} | ${f1(d.workerPct)} | ${f1(d.listenerPct)} | ${f1(d.clusterPct)} | ${f1(d.outsidePct)} |`);
  }
  L.push('', `Machine load before the run (1 s sample, % of all ${meta.cores} cores): ${f1(meta.idleLoadPct)}%.` +
    (meta.idleLoadPct > 10 ? ' **Something else was running: the figures are disturbed.**' : ''));
  return L.join('\n') + '\n';
}

/* ------------------------------------------------------------------ main */
async function main() {
  const tStart = hr();
  const pgc = new pg.Client({ database: 'postgres', application_name: 'bench loadgen' });
  await pgc.connect();
  const w = await pgc.query("SELECT pid FROM pg_stat_activity WHERE backend_type = 'collab worker'");
  must(w.rows.length === 1, `expected one collab worker, found ${w.rows.length}`);
  workerPid = w.rows[0].pid;
  // builds that receive events by LISTEN have a libpq connection of their own
  const l = await pgc.query(`SELECT pid FROM pg_stat_activity
     WHERE application_name = 'collab listener' OR (backend_type = 'client backend' AND query ILIKE 'LISTEN collab_events%')`);
  listenerPid = l.rows.length ? l.rows[0].pid : null;
  postmasterPid = Number(fs.readFileSync(`/proc/${workerPid}/stat`, 'utf8').split(') ')[1].split(' ')[1]);
  const m0 = machineTicks();
  await sleep(1000);
  const m1 = machineTicks();
  const idleLoadPct = ((m1.total - m0.total - (m1.idle - m0.idle)) / (m1.total - m0.total)) * 100;
  log(`collab worker pid ${workerPid}, listener backend pid ${listenerPid}, postmaster ${postmasterPid}; ${URL_}`);
  log(`machine load before the run: ${f1(idleLoadPct)}% of ${os.cpus().length} cores${idleLoadPct > 10 ? ' (something else is running: figures will be disturbed)' : ''}`);

  for (const ph of PHASES) {
    if (ph === 'sql') await phaseSql(pgc);
    else if (ph === 'lock') await phaseLock();
    else if (ph === 'contend') await phaseContend();
    else if (ph === 'save') await phaseSave();
    else if (ph === 'presence') await phasePresence();
    else if (ph === 'idle') await phaseIdle();
    else throw new Error('unknown phase ' + ph);
  }
  const stats = await pgc.query(`SELECT (SELECT count(*) FROM collab.ws_connections) AS conns,
    (SELECT setting FROM pg_settings WHERE name = 'server_version') AS version`);
  await pgc.end();

  let git = '?';
  try { git = fs.readFileSync(path.join(HERE, '../../../.git/HEAD'), 'utf8').trim(); } catch { /* not a checkout */ }
  if (git.startsWith('ref: ')) {
    try { git = fs.readFileSync(path.join(HERE, '../../../.git', git.slice(5)), 'utf8').trim(); } catch { /* packed */ }
  }
  const meta = {
    date: new Date().toISOString().replace(/\.\d+Z$/, 'Z'), git: git.slice(0, 10), cores: os.cpus().length,
    cpuModel: os.cpus()[0].model.trim(), pgVersion: stats.rows[0].version, totalS: msBetween(tStart, hr()) / 1000,
    extraConf: env('BENCH_WS_CONF', '').split('\n').filter(Boolean).join('; '), idleLoadPct,
  };
  results.meta = meta;
  results.cpu = cpuRows;
  const md = markdown(meta);
  log('\n' + md);
  const outMd = env('BENCH_OUT_MD');
  if (outMd) { fs.mkdirSync(path.dirname(outMd), { recursive: true }); fs.writeFileSync(outMd, md); log(`written to ${outMd}`); }
  const outJson = env('BENCH_OUT_JSON');
  if (outJson) {
    fs.mkdirSync(path.dirname(outJson), { recursive: true });
    fs.writeFileSync(outJson, JSON.stringify(results, (k, v) => (typeof v === 'bigint' ? v.toString() : v), 2));
  }
  for (const c of children) c.proc.kill();
}

main().then(() => process.exit(0), (e) => {
  console.error('loadgen failed:', e && e.stack || e);
  for (const c of children) c.proc.kill();
  process.exit(1);
});
