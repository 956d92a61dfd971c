// A/B load generator (called by run.sh): every scenario against the collab
// worker (A) and the Node socket.io + Redis + PostgreSQL baseline (B) in one
// run, interleaved in blocks (A B, then B A, ...) so that drifting machine load
// hits both alike.
//
// First a check that both stacks give the same outcomes for a lock scenario.
// Phases (AB_PHASES; 'check' runs the check alone): idle first and once (a
// worker that served thousands of connections before keeps their freed
// memory, and the RSS difference would no longer be what new connections
// cost); then the latency phases (lock, save, contend, presence, stall)
// AB_RUNS times, one run of every phase after the other, each run starting
// with the other stack than the one before, as long as the runs fit in
// AB_BUDGET_S; then growth once.  The report judges every target of the
// latency phases on the median of the per-run figures.
//   lock      one viewer: lock:acquire -> ack, lock:release -> ack, uncontended;
//             timed by a C client (members.c's `lock` command) and, in the same
//             blocks, by socket.io-client, whose JavaScript adds its own share
//   save      doc:save of 2 kB with the lock held -> ack
//   contend   50 clients on 10 tabs looping acquire (release when granted)
//   presence  N passive members (members-c.mjs + members.c processes, or
//             ws/members.mjs with AB_MEMBERS=node, or both with AB_MEMBERS=c,node)
//             in one room per stack; a socket.io-client joiner joins and leaves;
//             join -> the LAST member's presence:joined, for N in AB_SIZES
//   poll      the presence fan-out with every client on HTTP long-polling,
//             for N in AB_POLL_SIZES (100, 1000); members held by members.c in
//             its poll mode (members-c.mjs), or by members-poll.mjs with
//             AB_POLL_MEMBERS=node
//   upgrade   socket.io-client on its default transports: io() -> connected,
//             -> the first ack (presence:join), -> upgraded to WebSocket;
//             and io() -> the first ack on WebSocket alone, for reference
//   stall     100 bystanders (stall-clients.mjs) looping lock and save round
//             trips on documents of their own, first on an idle server, then
//             while 10 database sessions each hold another document for 5 s
//             and a client per held document asks for it (or the other way round)
//   idle      AB_IDLE_CONNS raw idle connections (idle-conns.mjs) per stack,
//             one stack after the other, opened for at most AB_IDLE_SECS (90):
//             how many it holds, RSS per connection
//   growth    lock round trip (C client) with 10^3 resource rows, then again after both
//             stacks were loaded to AB_BIG_ROWS rows
//   recovery  a viewer in a room loses its WebSocket (engine.close(), no close
//             packet) and connects again with its pid and offset: connect ->
//             CONNECT reply with socket.recovered, against a fresh io() ->
//             connect -> presence:join ack (both stacks with connection
//             state recovery: the baseline's BASELINE_RECOVERY)
//
// Environment (set by run.sh): COLLAB_WS_URL, BASELINE_URL, AB_JWT_SECRET (both
// stacks accept the same tokens), BASELINE_PID, REDIS_PID, REDIS_PORT,
// PGHOST/PGPORT/PGUSER, AB_OUT_DIR.  Percentiles are nearest-rank; times are
// process.hrtime.bigint() taken in the callback that receives the message.
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import Redis from 'ioredis';
import { io } from 'socket.io-client';
import { makeToken } from '../ws/token.mjs';
import { Child } from '../child.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const env = (k, d) => (process.env[k] === undefined || process.env[k] === '' ? d : process.env[k]);
const SECRET = env('AB_JWT_SECRET');
const PHASES = env('AB_PHASES', 'idle,lock,save,contend,presence,poll,upgrade,stall,recovery,growth').split(',').map((s) => s.trim()).filter(Boolean);
const SIZES = env('AB_SIZES', '10,100,500,1000').split(',').map(Number);
const ROUNDS = Number(env('AB_ROUNDS', 300));
const WARMUP = Number(env('AB_WARMUP', 5));
const PROCS = Number(env('AB_PROCS', 2));
const PIN = env('AB_PIN', '1') !== '0';
// room members: 'c' (members-c.mjs driving members.c), 'node' (../ws/members.mjs),
// or both ('c,node'): the presence phase then runs once per generator
const MEMBERS = env('AB_MEMBERS', 'c').split(',').map((s) => s.trim()).filter(Boolean);
const MEMBER_SCRIPTS = { c: 'members-c.mjs', node: '../ws/members.mjs' };
for (const g of MEMBERS) if (!MEMBER_SCRIPTS[g]) throw new Error(`AB_MEMBERS: unknown generator ${g} (c or node)`);
const LOCK_ITERS = Number(env('AB_LOCK_ITERS', 2000));
const SAVE_ITERS = Number(env('AB_SAVE_ITERS', 500));
const BLOCKS = Number(env('AB_BLOCKS', 6));
const CONTEND_CLIENTS = Number(env('AB_CONTEND_CLIENTS', 50));
const CONTEND_TABS = Number(env('AB_CONTEND_TABS', 10));
const CONTEND_SECS = Number(env('AB_CONTEND_SECS', 8));
const IDLE_CONNS = Number(env('AB_IDLE_CONNS', 50000));
const NOFILE = Number(env('AB_NOFILE', 1048576));
/* the most connections one process of the server held: its busiest worker */
async function perProcessConns(pgc, t) {
  if (t.name !== 'collab') return null;
  const r = await pgc.query('SELECT max(n)::int AS n FROM (SELECT count(*) AS n FROM collab.ws_connections GROUP BY worker) w');
  return r.rows[0].n;
}
const IDLE_SECS = Number(env('AB_IDLE_SECS', 90));
const IDLE_PROCS = Number(env('AB_IDLE_PROCS', Math.max(2, Math.ceil(IDLE_CONNS / 15000))));
const GROWTH_ITERS = Number(env('AB_GROWTH_ITERS', 600));
// the stall phase: bystanders on documents of their own while other documents are held
const STALL_CLIENTS = Number(env('AB_STALL_CLIENTS', 100));
const STALL_HOLDERS = Number(env('AB_STALL_HOLDERS', 10));
const STALL_HOLD_S = Number(env('AB_STALL_HOLD_S', 5));
const STALL_PAUSE_MS = Number(env('AB_STALL_PAUSE_MS', 250));
const STALL_PROCS = Number(env('AB_STALL_PROCS', 2));
// the latency phases run AB_RUNS times (0: as many as fit in AB_BUDGET_S), one
// run of every phase after the other, a run started only if it fits in the budget
const REPEATED = ['lock', 'save', 'contend', 'presence', 'poll', 'upgrade', 'stall', 'recovery'];
const RECOVERY_ITERS = Number(env('AB_RECOVERY_ITERS', 120));
// the transports phases: long-polling members, and connections that upgrade
const POLL_SIZES = env('AB_POLL_SIZES', '100,1000').split(',').map(Number);
// long-polling members: 'c' (members-c.mjs driving members.c in its poll mode)
// or 'node' (members-poll.mjs, whose JavaScript keeps its core busy at 1000)
const POLL_MEMBERS = env('AB_POLL_MEMBERS', 'c');
const POLL_MEMBER_SCRIPTS = { c: 'members-c.mjs', node: 'members-poll.mjs' };
if (!POLL_MEMBER_SCRIPTS[POLL_MEMBERS]) throw new Error(`AB_POLL_MEMBERS: unknown generator ${POLL_MEMBERS} (c or node)`);
const POLL_ROUNDS = Number(env('AB_POLL_ROUNDS', 100));
const UPGRADE_ITERS = Number(env('AB_UPGRADE_ITERS', 60));
const RUNS = Number(env('AB_RUNS', 3));
const BUDGET_S = Number(env('AB_BUDGET_S', 720));
const BIG_ROWS = Number(env('AB_BIG_ROWS', 1000000));
const CONTENT_BYTES = 2048;
const DOC = 'document:bench';
const FLOOR_RID = 'not-a-resource';   // RESOURCE_ID_INVALID in both stacks, before any storage
const tab = (t) => `${DOC}/tab:${t}`;

const hr = () => process.hrtime.bigint();
const msBetween = (a, b) => Number(b - a) / 1e6;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const log = (...a) => console.log(...a);
const must = (ok, what) => { if (!ok) throw new Error(what); };
function pct(sorted, p) {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))];
}
function summary(values) {
  const s = [...values].sort((a, b) => a - b);
  return { n: s.length, p50: pct(s, 0.5), p99: pct(s, 0.99), max: s[s.length - 1] ?? NaN };
}
const f2 = (x) => (Number.isFinite(x) ? x.toFixed(2) : '—');
const f1 = (x) => (Number.isFinite(x) ? x.toFixed(1) : '—');
const fmtS = (s) => `n=${s.n} p50 ${f2(s.p50)} p99 ${f2(s.p99)} max ${f2(s.max)} ms`;

/* ------------------------------------------------------------ the two stacks */
const T = {
  collab: { name: 'collab', url: env('COLLAB_WS_URL'), pids: [] },
  baseline: { name: 'baseline', url: env('BASELINE_URL'), pids: [Number(env('BASELINE_PID'))] },
};
const REDIS_PID = Number(env('REDIS_PID'));
const ORDER = [['collab', 'baseline'], ['baseline', 'collab']];
// which stack goes first alternates from run to run too
let FLIP = 0;
const turn = (i) => ORDER[(i + 2 + FLIP) % 2];
// appended to the names of the CPU rows and settling waits of a run
let RUN_TAG = '';
let postmasterPid = null;

/* ------------------------------------------------------------ CPU and memory */
function schedNs(pid) {
  if (Array.isArray(pid)) return pid.reduce((x, p) => x + schedNs(p), 0);
  try { return Number(fs.readFileSync(`/proc/${pid}/schedstat`, 'utf8').split(' ')[0]); } catch { return NaN; }
}
/* resident memory of a server: the sum over its processes (collab.workers) */
function rssKiB(pids) {
  return pids.reduce((x, pid) => x + Number(/VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))[1]), 0);
}
/* the postmaster and its children: every process of the cluster */
function clusterPids() {
  const pids = [postmasterPid];
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const st = fs.readFileSync(`/proc/${d}/stat`, 'utf8');
      if (Number(st.slice(st.lastIndexOf(')') + 2).split(' ')[1]) === postmasterPid) pids.push(Number(d));
    } catch { /* gone */ }
  }
  return pids;
}
function clusterNs() {
  return clusterPids().reduce((sum, pid) => sum + schedNs(pid), 0);
}
function machineTicks() {
  const f = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal: steal is time the host gave the VM's CPUs to others
  return { total: f.slice(0, 8).reduce((a, b) => a + b, 0), idle: f[3] + f[4], irq: f[5] + f[6], steal: f[7] };
}

/*
 * Before a latency phase: wait (at most AB_SETTLE_S seconds) until the machine
 * is quiet, i.e. less than 15 % of all cores busy, steal included, for 2
 * seconds in a row.  The idle phase before it opens and closes tens of
 * thousands of connections and restarts the servers, and what the kernel
 * and the host still do about that is not the next phase's to measure.
 */
const SETTLE_S = Number(env('AB_SETTLE_S', 20));
async function settle(name) {
  let quiet = 0; let waited = 0; let busy = NaN;
  while (waited < SETTLE_S && quiet < 2) {
    const a = machineTicks();
    await sleep(1000);
    const b = machineTicks();
    busy = ((b.total - a.total - (b.idle - a.idle)) / (b.total - a.total)) * 100;
    waited++;
    quiet = busy < 15 ? quiet + 1 : 0;
  }
  R.settle[name + RUN_TAG] = { waitedS: waited, quiet: quiet >= 2, busyPct: busy };
  if (quiet < 2) log(`  (${name}: the machine stayed busy for ${waited} s, ${f1(busy)} % of all cores at the end; measuring anyway)`);
}
const kids = new Set();   // every child process of the load generator
async function snap() {
  const k = await Promise.all([...kids].map((c) => c.call({ cmd: 'cpu' }, 'cpu').then((m) => m.us * 1000, () => 0)));
  const p = process.cpuUsage();
  return {
    t: hr(), gen: [(p.user + p.system) * 1000, ...k], worker: schedNs(T.collab.pids), cluster: clusterNs(),
    node: schedNs(T.baseline.pids), redis: schedNs(REDIS_PID), machine: machineTicks(),
  };
}
function delta(a, b) {
  const wall = msBetween(a.t, b.t) * 1e6;
  const pc = (ns) => (ns / wall) * 100;
  const gen = b.gen.map((v, i) => pc(v - (a.gen[i] || 0)));
  const dt = b.machine.total - a.machine.total;
  const d = {
    wallS: wall / 1e9, genSum: gen.reduce((x, y) => x + y, 0), genMax: Math.max(...gen),
    worker: pc(b.worker - a.worker), cluster: pc(b.cluster - a.cluster), node: pc(b.node - a.node), redis: pc(b.redis - a.redis),
    machine: dt > 0 ? ((dt - (b.machine.idle - a.machine.idle)) / dt) * 100 * os.cpus().length : NaN,
    steal: dt > 0 ? ((b.machine.steal - a.machine.steal) / dt) * 100 * os.cpus().length : NaN,
    irq: dt > 0 ? ((b.machine.irq - a.machine.irq) / dt) * 100 * os.cpus().length : NaN,
  };
  d.other = Math.max(0, d.machine - d.genSum - d.cluster - d.node - d.redis - d.steal - d.irq);
  return d;
}
const cpuRows = [];
async function measured(name, fn) {
  const a = await snap();
  const r = await fn();
  const d = delta(a, await snap());
  d.name = name + RUN_TAG;
  cpuRows.push(d);
  log(`  cpu (% of one core): load generator ${f1(d.genSum)} (busiest process ${f1(d.genMax)}), collab worker ${f1(d.worker)}, ` +
    `cluster ${f1(d.cluster)}, baseline node ${f1(d.node)}, redis ${f1(d.redis)}, interrupts ${f1(d.irq)}, steal ${f1(d.steal)}, other ${f1(d.other)}; wall ${f1(d.wallS)} s`);
  return r;
}

/*
 * A phase whose absolute figures are judged (lock p99 ≤ 2 ms): the host of
 * this VM may take its CPUs away (steal) for whole seconds, which no server
 * can answer for.  When it stole more than AB_STEAL_MAX % of one core during
 * an attempt, the phase runs again after settling, at most AB_ATTEMPTS times
 * in all; the report lists every attempt with its steal and figures, and
 * uses the one with the least steal, whatever its figures: both stacks are
 * measured in the same blocks of every attempt.
 */
const STEAL_MAX = Number(env('AB_STEAL_MAX', 5));
const ATTEMPTS = Number(env('AB_ATTEMPTS', 3));
async function undisturbed(name, run) {
  const all = [];
  for (let i = 1; i <= ATTEMPTS; i++) {
    const label = i === 1 ? name : `${name} (attempt ${i})`;
    if (i > 1) {
      log(`  the host stole ${f1(all[all.length - 1].steal)} % of a core (more than ${STEAL_MAX} %): attempt ${i}`);
      await settle(label);
    }
    const r = await run(label);
    all.push({ steal: cpuRows[cpuRows.length - 1].steal, r });
    if (all[all.length - 1].steal <= STEAL_MAX) break;
  }
  const best = all.reduce((a, b) => (b.steal < a.steal ? b : a));
  return { pick: best.r, all };
}

/* ------------------------------------------------------------ clients */
let userSeq = 0;
function sioConnect(t, name, opts = {}) {
  userSeq++;
  const token = makeToken(SECRET, { sub: `ab-${name}-${userSeq}`, name: `AB ${name} ${userSeq}` });
  const s = io(t.url, { transports: ['websocket'], auth: { token }, reconnection: false, forceNew: true, perMessageDeflate: false, ...opts });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${t.name} ${name}: connect timeout`)), 15000);
    s.on('connect', () => { clearTimeout(timer); resolve(s); });
    s.on('connect_error', (e) => { clearTimeout(timer); reject(new Error(`${t.name} ${name}: connect_error ${e.message} ${JSON.stringify(e.data)}`)); });
  });
}
function ackTimed(sock, event, payload, timeoutMs = 10000) {
  return new Promise((resolve, reject) => {
    const t0 = hr();
    sock.timeout(timeoutMs).emit(event, payload, (e, ack) => {
      const t1 = hr();
      if (e) reject(new Error(`${event}: ${e.message}`)); else resolve({ ack, ms: msBetween(t0, t1) });
    });
  });
}
async function joined(t, name, rid, mode = 'viewer') {
  const s = await sioConnect(t, name);
  const j = await ackTimed(s, 'presence:join', { resourceId: rid, mode });
  must(j.ack.ok, `${t.name} ${name} join: ${JSON.stringify(j.ack).slice(0, 300)}`);
  return s;
}

/* a child process of the load generator, kept in kids */
function child(script, env) {
  return new Child(path.join(HERE, script), { name: script, env, registry: kids });
}

/* ------------------------------------------------------------ phases */
const R = { phases: {}, settle: {} };

/**
 * Before measuring: the same lock scenario against both stacks must give the
 * same outcomes (hierarchical conflicts both ways, siblings free, saves fenced,
 * a document lock covering its tabs), so that both do the same work.
 */
async function checkEquivalence() {
  const rid = 'document:s5';
  const t1 = `${rid}/tab:1`;
  const t2 = `${rid}/tab:2`;
  const outcome = (x) => (x.ok ? `ok${x.role ? ':' + x.role : ''}` : x.error.code);
  const seqs = {};
  for (const n of Object.keys(T)) {
    const A = await sioConnect(T[n], 'check-a');
    const B = await sioConnect(T[n], 'check-b');
    const e = async (s, ev, p) => outcome(await s.timeout(10000).emitWithAck(ev, p));
    seqs[n] = [
      await e(A, 'presence:join', { resourceId: t1, mode: 'editor' }),
      await e(B, 'presence:join', { resourceId: rid, mode: 'editor' }),
      await e(B, 'lock:acquire', { resourceId: rid }),
      await e(B, 'presence:join', { resourceId: t2, mode: 'editor' }),
      await e(A, 'lock:release', { resourceId: t1 }),
      await e(A, 'presence:join', { resourceId: rid, mode: 'viewer' }),
      await e(A, 'lock:acquire', { resourceId: rid }),
      await e(B, 'doc:save', { resourceId: t2, content: 'b' }),
      await e(A, 'doc:save', { resourceId: t1, content: 'a' }),
      await e(B, 'lock:release', { resourceId: t2 }),
      await e(A, 'lock:acquire', { resourceId: rid }),
      await e(B, 'lock:acquire', { resourceId: t2 }),
      await e(A, 'doc:save', { resourceId: t1, content: 'a' }),
      await e(A, 'lock:release', { resourceId: rid }),
    ];
    A.close();
    B.close();
  }
  const want = 'ok:editor ok:viewer LOCK_HELD ok:editor ok ok:viewer LOCK_HELD ok LOCK_NOT_HELD ok ok LOCK_HELD ok ok';
  for (const n of Object.keys(T)) must(seqs[n].join(' ') === want, `${n} lock semantics: ${seqs[n].join(' ')}, expected ${want}`);
  log(`both stacks agree on the lock scenario (${seqs.collab.length} steps)`);
}

/*
 * A lock prober in C: one members.c process (AB_MEMBERS_BIN) with one member
 * joined as a viewer, running `lock RESOURCE N` (N lock:acquire -> ack,
 * lock:release -> ack round trips, timed right after the read that delivered
 * each ack).  socket.io-client adds its own JavaScript and event-loop wake-ups
 * to every round trip, and its share of the tail is the load generator's,
 * not the server's; the lock phase reports both.  Kept in kids, so its CPU
 * counts as the load generator's.
 */
class CProbe {
  static async open(t, name, rid) {
    const p = new CProbe(t, name);
    kids.add(p);
    userSeq++;
    p.send(`token ${makeToken(SECRET, { sub: `ab-${name}-${userSeq}`, name: `AB ${name} ${userSeq}` })}\ngrow ${rid} 1`);
    const w = await p.line();
    must(w[0] === 'grown' && w[1] === '1', `${t.name} ${name}: ${w.join(' ').slice(0, 300)}`);
    return p;
  }

  constructor(t, name) {
    const url = new URL(t.url);
    this.what = `${t.name} ${name} (members.c)`;
    this.proc = spawn(env('AB_MEMBERS_BIN'), [url.hostname, url.port], { stdio: ['pipe', 'pipe', 'inherit'] });
    this.waiting = [];
    this.proc.stdin.on('error', () => { /* it exited: the exit handler reports it */ });
    this.proc.on('exit', (code) => {
      kids.delete(this);
      this.failed = this.failed || new Error(`${this.what} exited (${code})`);
      for (const w of this.waiting.splice(0)) w.reject(this.failed);
    });
    readline.createInterface({ input: this.proc.stdout }).on('line', (l) => {
      if (l.startsWith('error ')) this.failed = new Error(`${this.what}: ${l.slice(6, 300)}`);
      const w = this.waiting.shift();
      if (w) { if (l.startsWith('error ')) w.reject(this.failed); else w.resolve(l.split(' ')); }
    });
  }

  send(line) { this.proc.stdin.write(line + '\n'); }

  line() {
    if (this.failed) return Promise.reject(this.failed);
    return new Promise((resolve, reject) => this.waiting.push({ resolve, reject }));
  }

  /* n round trips on rid: { acquire: [ms], release: [ms] } */
  async run(rid, n) {
    this.send(`lock ${rid} ${n}`);
    const w = await this.line();
    must(w[0] === 'locked' && w.length === 1 + 2 * n, `${this.what}: ${w.join(' ').slice(0, 300)}`);
    const out = { acquire: [], release: [] };
    for (let i = 0; i < n; i++) { out.acquire.push(Number(w[1 + 2 * i]) / 1e6); out.release.push(Number(w[2 + 2 * i]) / 1e6); }
    return out;
  }

  /* n lock:acquire of a malformed resource id, refused without storage: the floor */
  async refuse(n) {
    this.send(`refuse ${FLOOR_RID} ${n}`);
    const w = await this.line();
    must(w[0] === 'refused' && w.length === 1 + n, `${this.what}: ${w.join(' ').slice(0, 300)}`);
    return { acquire: w.slice(1).map((x) => Number(x) / 1e6), release: [] };
  }

  /* the Child interface that snap() uses: { us } of CPU */
  async call(msg, reply) {
    must(msg.cmd === 'cpu' && reply === 'cpu', `${this.what}: ${msg.cmd}`);
    this.send('cpu');
    const w = await this.line();
    return { us: Number(w[1]) };
  }

  close() { kids.delete(this); this.send('close'); }

  kill() { kids.delete(this); this.proc.kill(); }
}

/* the same interface on a socket.io-client socket */
function sioProbe(sock) {
  return {
    async run(rid, n) {
      const out = { acquire: [], release: [] };
      for (let i = 0; i < n; i++) {
        const a = await ackTimed(sock, 'lock:acquire', { resourceId: rid });
        must(a.ack.ok, `acquire: ${JSON.stringify(a.ack).slice(0, 300)}`);
        const r = await ackTimed(sock, 'lock:release', { resourceId: rid });
        must(r.ack.ok, `release: ${JSON.stringify(r.ack).slice(0, 300)}`);
        out.acquire.push(a.ms);
        out.release.push(r.ms);
      }
      return out;
    },
    close() { sock.close(); },
  };
}

/**
 * Lock loops, one prober per name (a stack through one client), interleaved
 * in blocks; returns acquire/release samples per name.  With pgc, each block
 * also runs collab.acquire/release through libpq on sqlRid (no worker
 * involved): a control for machine drift.
 */
async function lockBlocks(probes, rid, iters, blocks, warm = 50, pgc = null, sqlRid = null) {
  const names = Object.keys(probes);
  const order = [names, [...names].reverse()];
  const out = { sql: { acquire: [], release: [] } };
  for (const n of names) out[n] = { acquire: [], release: [] };
  const per = Math.ceil(iters / blocks);
  for (let b = -1; b < blocks; b++) {
    if (pgc) {
      for (let i = 0; i < (b < 0 ? warm : per); i++) {
        let t0 = hr();
        const a = await pgc.query("SELECT granted, token FROM collab.acquire($1, 'sql-user', 'SQL User', 'sql-conn')", [sqlRid]);
        const ta = msBetween(t0, hr());
        must(a.rows[0].granted, 'libpq acquire not granted');
        t0 = hr();
        await pgc.query('SELECT collab.release($1)', [a.rows[0].token]);
        if (b >= 0) { out.sql.acquire.push(ta); out.sql.release.push(msBetween(t0, hr())); }
      }
    }
    for (const name of order[(b + 2 + FLIP) % 2]) {
      const r = await probes[name].run(rid, b < 0 ? warm : per);
      if (b >= 0) { out[name].acquire.push(...r.acquire); out[name].release.push(...r.release); }
    }
  }
  return out;
}

async function phaseLock() {
  log(`\n== lock: uncontended lock:acquire/lock:release round trips, ${LOCK_ITERS} per stack and client in ${BLOCKS} interleaved blocks; ` +
    'clients: members.c (C), and socket.io-client');
  const probes = {};
  for (const n of Object.keys(T)) probes[n] = await CProbe.open(T[n], 'lock', tab('lock'));
  for (const n of Object.keys(T)) probes[`${n} sio`] = sioProbe(await joined(T[n], 'lock-sio', tab('lock')));
  // a floor in the same blocks: a request each stack refuses before any storage (the C client and the loopback)
  for (const n of Object.keys(T)) probes[`${n} floor`] = { run: (rid, k) => probes[n].refuse(k), close() {} };
  const attempts = await undisturbed('lock uncontended', async (name) => {
    const o = await measured(name, () => lockBlocks(probes, tab('lock'), LOCK_ITERS, BLOCKS));
    const r = { sio: {}, floor: {} };
    for (const n of Object.keys(T)) {
      r[n] = { acquire: summary(o[n].acquire), release: summary(o[n].release) };
      r.sio[n] = { acquire: summary(o[`${n} sio`].acquire), release: summary(o[`${n} sio`].release) };
      r.floor[n] = summary(o[`${n} floor`].acquire);
      log(`  ${n.padEnd(8)} C client:         acquire -> ack ${fmtS(r[n].acquire)}; release -> ack ${fmtS(r[n].release)}`);
      log(`  ${n.padEnd(8)} socket.io-client: acquire -> ack ${fmtS(r.sio[n].acquire)}; release -> ack ${fmtS(r.sio[n].release)}`);
      log(`  ${n.padEnd(8)} floor (C client, ${FLOOR_RID} refused) ${fmtS(r.floor[n])}`);
    }
    return r;
  });
  R.phases.lock = attempts.pick;
  R.phases.lock.attempts = attempts.all.map(({ steal, r }) => ({ steal, collab: r.collab.acquire, baseline: r.baseline.acquire }));
  for (const p of Object.values(probes)) p.close();
}

function clinicalText(bytes, seed) {
  const words = ('patient presented with acute abdominal pain laparoscopic appendectomy was performed under ' +
    'general anesthesia the appendix inflamed without perforation hemostasis achieved irrigation trocar sites ' +
    'closed with absorbable sutures estimated blood loss minimal no complications postoperative course').split(' ');
  let x = (seed * 2654435761) % 4294967296;
  let s = `[${seed}] `;
  while (s.length < bytes) { x = (x * 1103515245 + 12345) % 2147483648; s += words[x % words.length] + ' '; }
  return s.slice(0, bytes);
}

async function phaseSave() {
  log(`\n== save: doc:save of ${CONTENT_BYTES} B with the lock held -> ack, ${SAVE_ITERS} per stack in ${BLOCKS} interleaved blocks`);
  const socks = {};
  const last = {};
  for (const n of Object.keys(T)) {
    const s = await sioConnect(T[n], 'save');
    const j = await ackTimed(s, 'presence:join', { resourceId: tab('save'), mode: 'editor' });
    must(j.ack.ok && j.ack.role === 'editor', `${n} save join: ${JSON.stringify(j.ack).slice(0, 300)}`);
    socks[n] = s;
    last[n] = 0;
  }
  const lat = { collab: [], baseline: [] };
  const per = Math.ceil(SAVE_ITERS / BLOCKS);
  let seq = 0;
  await measured('save', async () => {
    for (let b = -1; b < BLOCKS; b++) {
      for (const n of turn(b)) {
        for (let i = 0; i < (b < 0 ? 20 : per); i++) {
          const r = await ackTimed(socks[n], 'doc:save', { resourceId: tab('save'), content: clinicalText(CONTENT_BYTES, seq++) });
          must(r.ack.ok && r.ack.version > last[n], `${n} save: ${JSON.stringify(r.ack).slice(0, 300)}`);
          last[n] = r.ack.version;
          if (b >= 0) lat[n].push(r.ms);
        }
      }
    }
  });
  R.phases.save = {};
  for (const n of Object.keys(T)) {
    R.phases.save[n] = summary(lat[n]);
    log(`  ${n.padEnd(8)} doc:save -> ack ${fmtS(R.phases.save[n])}`);
    socks[n].close();
  }
}

/*
 * A socket that saw an event with an offset (socket.io-client sends it back
 * when it reconnects): collab's session:ready, or the baseline's own
 * presence:joined.
 */
function offsetSeen(s) {
  if (s._lastOffset !== undefined) return Promise.resolve();
  return new Promise((resolve) => s.onAny(function seen() {
    setImmediate(() => { if (s._lastOffset !== undefined) { s.offAny(seen); resolve(); } });
  }));
}

async function phaseRecovery() {
  log(`\n== recovery: a viewer's WebSocket closed without a close packet, then connect -> recovered CONNECT, against io() -> connect -> join ack; ${RECOVERY_ITERS} per stack`);
  const lat = {};
  for (const n of Object.keys(T)) lat[n] = { recover: [], fresh: [], refused: 0 };
  const per = Math.ceil(RECOVERY_ITERS / BLOCKS);
  await measured('recovery', async () => {
    for (let b = -1; b < BLOCKS; b++) {
      for (const n of turn(b)) {
        for (let i = 0; i < (b < 0 ? 5 : per); i++) {
          const t0 = hr();
          const s = await sioConnect(T[n], 'recovery');
          const j = await ackTimed(s, 'presence:join', { resourceId: tab('a'), mode: 'viewer' });
          const fresh = msBetween(t0, hr());
          must(j.ack.ok, `${n} recovery join: ${JSON.stringify(j.ack).slice(0, 300)}`);
          await offsetSeen(s);
          const gone = new Promise((resolve) => s.once('disconnect', resolve));
          s.io.engine.close();
          await gone;
          // the server sees the close before the client is back, as after a real blip
          await sleep(20);
          const t1 = hr();
          await new Promise((resolve, reject) => {
            s.once('connect', resolve);
            s.once('connect_error', (e) => reject(new Error(`${n} recovery: ${e.message}`)));
            s.connect();
          });
          const rec = msBetween(t1, hr());
          if (b >= 0) {
            lat[n].fresh.push(fresh);
            if (s.recovered) lat[n].recover.push(rec); else lat[n].refused++;
          }
          s.close();
        }
      }
    }
  });
  R.phases.recovery = {};
  for (const n of Object.keys(T)) {
    const r = { recover: summary(lat[n].recover), fresh: summary(lat[n].fresh), refused: lat[n].refused };
    r.ratio = ratio(r.recover.p50, r.fresh.p50);
    R.phases.recovery[n] = r;
    log(`  ${n.padEnd(8)} recovered ${fmtS(r.recover)} (${r.refused} not recovered); fresh connect + join ${fmtS(r.fresh)}; p50 ratio ${fr(r.ratio)}`);
  }
}

async function phaseContend() {
  log(`\n== contend: ${CONTEND_CLIENTS} clients on ${CONTEND_TABS} tabs looping acquire (release when granted), ` +
    `2 blocks of ${CONTEND_SECS / 2} s per stack, interleaved`);
  const socks = {};
  for (const n of Object.keys(T)) {
    socks[n] = [];
    for (let i = 0; i < CONTEND_CLIENTS; i++) {
      const rid = tab(`c${i % CONTEND_TABS}`);
      socks[n].push({ s: await joined(T[n], `contend${i}`, rid), rid });
    }
  }
  const acc = {};
  for (const n of Object.keys(T)) acc[n] = { all: [], granted: 0, held: 0, other: {}, requests: 0, secs: 0 };
  async function block(n, secs) {
    let stop = false;
    const a = acc[n];
    const t0 = hr();
    setTimeout(() => { stop = true; }, secs * 1000);
    await Promise.all(socks[n].map(async ({ s, rid }) => {
      while (!stop) {
        const r = await ackTimed(s, 'lock:acquire', { resourceId: rid });
        a.all.push(r.ms);
        a.requests++;
        if (r.ack.ok) {
          a.granted++;
          const x = await ackTimed(s, 'lock:release', { resourceId: rid });
          must(x.ack.ok, `${n} contended release: ${JSON.stringify(x.ack)}`);
          a.requests++;
        } else if (r.ack.error && r.ack.error.code === 'LOCK_HELD') a.held++;
        else { const c = r.ack.error ? r.ack.error.code : '?'; a.other[c] = (a.other[c] || 0) + 1; }
      }
    }));
    a.secs += msBetween(t0, hr()) / 1000;
  }
  await measured('lock contended', async () => {
    for (let b = 0; b < 2; b++) for (const n of turn(b)) await block(n, CONTEND_SECS / 2);
  });
  R.phases.contend = {};
  for (const n of Object.keys(T)) {
    const a = acc[n];
    R.phases.contend[n] = { acquire: summary(a.all), granted: a.granted, held: a.held, other: a.other, rps: a.requests / a.secs, grantsPerSec: a.granted / a.secs };
    log(`  ${n.padEnd(8)} acquire -> ack ${fmtS(R.phases.contend[n].acquire)}; granted ${a.granted}, LOCK_HELD ${a.held}, ` +
      `other ${JSON.stringify(a.other)}; ${f1(R.phases.contend[n].rps)} requests/s, ${f1(R.phases.contend[n].grantsPerSec)} grants/s`);
    for (const { s } of socks[n]) s.close();
  }
}

/*
 * The stall phase: can a database session that holds some documents stop a
 * stack from serving everyone else?  STALL_CLIENTS bystanders (socket.io-client,
 * in STALL_PROCS child processes) loop lock:acquire, doc:save, lock:release
 * and a pause of STALL_PAUSE_MS on tabs of documents s10..s89, one tab each.
 * They are measured in three windows of about STALL_HOLD_S seconds each:
 * on an otherwise idle server, then while STALL_HOLDERS database sessions
 * each hold a document of s90..s99 in an open transaction and, on each held
 * document, a victim client asks for the lock of a tab (again 500 ms after
 * every answer), then idle again.  The idle figure pools the windows before
 * and after, so that what drifts while the bystanders run (the tables they
 * grow, the host's other work) weighs on both figures alike rather than on
 * whichever window comes second.  A stack whose event loop never waits for
 * the database answers the bystanders as fast in every window.
 *
 * The holds are what each design has: for collab, `BEGIN; SELECT
 * collab.acquire(document); SELECT pg_sleep(...); SELECT collab.release(token);
 * COMMIT` (the transaction keeps the path locks of the decision); for the
 * baseline, its Redis lock key on the document (SET NX PX, the format its
 * scripts read) and the document's rows `SELECT ... FOR UPDATE` in a
 * transaction that sleeps as long.  A round trip belongs to the window in
 * which it was sent; the stall window runs from the moment every holder has
 * its document to the moment the last holder's COMMIT returned.
 */
const STALL_DOCS = 80;      // bystanders' documents: s10..s89
const stallRid = (i) => `document:s${10 + (i % STALL_DOCS)}/tab:${1 + Math.floor(i / STALL_DOCS)}`;
const heldRid = (k) => `document:s${99 - k}`;
const nowUs = () => Number(hr() / 1000n);

async function holdCollab(c, k, onHeld) {
  await c.query('BEGIN');
  try {
    const a = await c.query('SELECT granted, token FROM collab.acquire($1, $2, $3, $4)',
      [heldRid(k), `stall-holder-${k}`, `Stall holder ${k}`, `stall-holder-${k}`]);
    must(a.rows[0].granted, `collab holder ${k}: ${heldRid(k)} not granted: ${JSON.stringify(a.rows[0])}`);
    onHeld();
    await c.query('SELECT pg_sleep($1)', [STALL_HOLD_S]);
    await c.query('SELECT collab.release($1)', [a.rows[0].token]);
    await c.query('COMMIT');
  } catch (e) {
    await c.query('ROLLBACK').catch(() => {});
    throw e;
  }
}

async function holdBaseline(c, redis, k, onHeld) {
  const rid = heldRid(k);
  const token = await redis.incr('fence');
  const val = `${token}\tstall-holder-${k}\tStall holder ${k}\tstall-conn-${k}\t${Date.now()}`;
  must(await redis.set(`lk:${rid}`, val, 'PX', (STALL_HOLD_S + 60) * 1000, 'NX') === 'OK', `baseline holder ${k}: ${rid} is locked`);
  try {
    await c.query('BEGIN');
    try {
      const r = await c.query('SELECT id FROM resources WHERE id = $1 OR parent_id = $1 FOR UPDATE', [rid]);
      must(r.rows.length === 10, `baseline holder ${k}: ${r.rows.length} rows of ${rid}`);
      onHeld();
      await c.query('SELECT pg_sleep($1)', [STALL_HOLD_S]);
      await c.query('COMMIT');
    } catch (e) {
      await c.query('ROLLBACK').catch(() => {});
      throw e;
    }
  } finally {
    if (await redis.get(`lk:${rid}`) === val) await redis.del(`lk:${rid}`);
  }
}

/* a victim: lock:acquire on a tab of a held document until stopped; the answers and their times */
async function victimLoop(sock, rid, out, stopped) {
  while (!stopped()) {
    const t0 = hr();
    let ack;
    try {
      ack = await sock.timeout(30000).emitWithAck('lock:acquire', { resourceId: rid });
    } catch {
      ack = { ok: false, error: { code: 'TIMEOUT' } };
    }
    out.ms.push(msBetween(t0, hr()));
    const code = ack.ok ? 'ok' : String((ack.error && ack.error.code) || 'MALFORMED');
    out.codes[code] = (out.codes[code] || 0) + 1;
    if (ack.ok) {
      const r = await sock.timeout(30000).emitWithAck('lock:release', { resourceId: rid });
      must(r.ok, `victim release ${rid}: ${JSON.stringify(r).slice(0, 300)}`);
    }
    if (!stopped()) await sleep(500);
  }
}

/* the bystanders' round trips sent in the windows [from, to) (microseconds) */
function stallWindow(got, windows) {
  const all = []; const kinds = [[], [], []]; const failed = {};
  const within = (t) => windows.some(([from, to]) => t >= from && t < to);
  for (const g of got) {
    for (let i = 0; i < g.ms.length; i++) {
      if (!within(g.sentUs[i])) continue;
      all.push(g.ms[i]);
      kinds[g.kind[i]].push(g.ms[i]);
      if (g.code[i]) failed[g.code[i]] = (failed[g.code[i]] || 0) + 1;
    }
  }
  return {
    all: summary(all), acquire: summary(kinds[0]), save: summary(kinds[1]), release: summary(kinds[2]),
    failed, nFailed: Object.values(failed).reduce((a, b) => a + b, 0),
    seconds: windows.reduce((a, [from, to]) => a + (to - from) / 1e6, 0),
  };
}

async function stallStack(n, ctx) {
  await Promise.all(ctx.kids.map((c) => c.call({ cmd: 'start', pauseMs: STALL_PAUSE_MS, contentBytes: CONTENT_BYTES }, 'started')));
  await sleep(1000);   // every bystander in its loop
  const win = { idle: [] };
  const victims = { ms: [], codes: {} };
  for (const w of ['idle', 'stall', 'idle']) {
    if (w === 'idle') {
      const t0 = nowUs();
      await sleep(STALL_HOLD_S * 1000);
      win.idle.push([t0, nowUs()]);
    } else {
      let held = 0;
      let heldAll;
      const allHeld = new Promise((r) => { heldAll = r; });
      const onHeld = () => { if (++held === STALL_HOLDERS) heldAll(); };
      const holds = Promise.all(ctx.holders.map((c, k) => (n === 'collab' ? holdCollab(c, k, onHeld) : holdBaseline(c, ctx.redis, k, onHeld))));
      // a holder that fails before every document is held must not leave us waiting
      await Promise.race([allHeld, holds.then(() => must(held === STALL_HOLDERS, `${n}: only ${held} holders held their document`))]);
      const t1 = nowUs();
      let stop = false;
      const vs = Promise.all(ctx.victims.map((s, k) => victimLoop(s, `${heldRid(k)}/tab:1`, victims, () => stop)));
      await holds;
      win.stall = [[t1, nowUs()]];
      stop = true;
      await vs;
    }
    await sleep(1500);   // what the window left behind is answered before the next one
  }
  const got = await Promise.all(ctx.kids.map((c) => c.call({ cmd: 'stop' }, 'stopped', 120000)));
  const r = { order: 'idle, stall, idle' };
  for (const w of ['idle', 'stall']) r[w] = stallWindow(got, win[w]);
  const vm = [...victims.ms].sort((a, b) => a - b);
  r.victims = { n: vm.length, codes: victims.codes, p50: pct(vm, 0.5), max: vm[vm.length - 1] ?? NaN };
  return r;
}

async function phaseStall() {
  log(`\n== stall: ${STALL_CLIENTS} bystanders looping lock:acquire, doc:save (${CONTENT_BYTES} B), lock:release and ${STALL_PAUSE_MS} ms of pause ` +
    `on documents of their own; ${STALL_HOLD_S} s on an idle server, and ${STALL_HOLD_S} s while ${STALL_HOLDERS} database sessions hold other documents ` +
    'and a client asks for each');
  must(STALL_HOLDERS >= 1 && STALL_HOLDERS <= 10, 'AB_STALL_HOLDERS: 1 to 10 (the documents s90..s99)');
  must(STALL_CLIENTS >= 1 && STALL_CLIENTS <= STALL_DOCS * 9, `AB_STALL_CLIENTS: 1 to ${STALL_DOCS * 9} (the tabs of s10..s89)`);
  const ctx = {};
  for (const n of Object.keys(T)) {
    const procs = Array.from({ length: Math.min(STALL_PROCS, STALL_CLIENTS) }, () => child('stall-clients.mjs', {}));
    await Promise.all(procs.map((c) => c.next('ready', 20000)));
    await Promise.all(procs.map((c, p) => c.call({
      cmd: 'open', url: T[n].url, secret: SECRET, name: `stall-${n}-${p}-${++userSeq}`,
      rids: Array.from({ length: STALL_CLIENTS }, (_, i) => i).filter((i) => i % procs.length === p).map(stallRid),
    }, 'opened', 120000)));
    const victims = [];
    for (let k = 0; k < STALL_HOLDERS; k++) victims.push(await joined(T[n], `stall-victim-${k}`, `${heldRid(k)}/tab:1`));
    const holders = [];
    for (let k = 0; k < STALL_HOLDERS; k++) {
      const c = new pg.Client({ database: n === 'collab' ? 'postgres' : 'baseline', application_name: `ab stall holder ${k}` });
      await c.connect();
      holders.push(c);
    }
    ctx[n] = { kids: procs, victims, holders, redis: n === 'baseline' ? new Redis({ host: '127.0.0.1', port: Number(env('REDIS_PORT')) }) : null };
  }
  const res = {};
  try {
    await measured('stall', async () => {
      for (const n of turn(0)) res[n] = await stallStack(n, ctx[n]);
    });
  } finally {
    for (const n of Object.keys(ctx)) {
      await Promise.all(ctx[n].kids.map((c) => c.call({ cmd: 'close' }, 'closed', 20000).catch(() => {})));
      for (const c of ctx[n].kids) c.kill();
      for (const s of ctx[n].victims) s.close();
      for (const c of ctx[n].holders) await c.end().catch(() => {});
      if (ctx[n].redis) ctx[n].redis.disconnect();
    }
  }
  R.phases.stall = res;
  for (const n of Object.keys(T)) {
    const r = res[n];
    for (const w of ['idle', 'stall']) {
      const x = r[w];
      log(`  ${n.padEnd(8)} ${w.padEnd(5)} ${fmtS(x.all)} over ${f1(x.seconds)} s (acquire p99 ${f2(x.acquire.p99)}, save p99 ${f2(x.save.p99)}, ` +
        `release p99 ${f2(x.release.p99)})${x.nFailed ? `; FAILED ${JSON.stringify(x.failed)}` : ''}`);
    }
    log(`  ${n.padEnd(8)} stall / idle p99 ${fr(ratio(r.stall.all.p99, r.idle.all.p99))}; requests on the held documents: ${r.victims.n}, ` +
      `answers ${JSON.stringify(r.victims.codes)}, p50 ${f2(r.victims.p50)} ms, longest ${f2(r.victims.max)} ms (order ${r.order})`);
  }
}

/*
 * Waits (at most 60 s) until the joiner finds nobody else in the room: a
 * server notices a killed long-polling member of an earlier run only after
 * its ping timeout, and a round's count of users must be the members it
 * grew.
 */
async function roomEmpty(ctx) {
  const until = Date.now() + 60000;
  for (;;) {
    const j = await ackTimed(ctx.joiner, 'presence:join', { resourceId: ctx.rid, mode: 'viewer' });
    must(j.ack.ok, `${ctx.name} join: ${JSON.stringify(j.ack).slice(0, 200)}`);
    const l = await ackTimed(ctx.joiner, 'presence:leave', { resourceId: ctx.rid });
    must(l.ack.ok, `${ctx.name} leave: ${JSON.stringify(l.ack).slice(0, 200)}`);
    if (j.ack.users.length === 1) return;
    must(Date.now() < until, `${ctx.name}: ${j.ack.users.length - 1} earlier members still in ${ctx.rid} after 60 s`);
    await sleep(500);
  }
}

async function presenceRound(ctx, round) {
  const { members, joiner, rid, N } = ctx;
  await Promise.all(members.map((c) => c.call({ cmd: 'arm', round, kind: 'joined', connId: joiner.id }, 'armed')));
  let dones = Promise.allSettled(members.map((c) => c.next('done', 15000)));
  const t0 = hr();
  const ack = await ackTimed(joiner, 'presence:join', { resourceId: rid, mode: 'viewer' });
  must(ack.ack.ok && ack.ack.users.length === N + 1, `${ctx.name} join ack: ${JSON.stringify(ack.ack).slice(0, 200)} (${ack.ack.users && ack.ack.users.length} users)`);
  let got = await dones;
  must(got.every((g) => g.status === 'fulfilled'), `${ctx.name} N=${N} round ${round}: not every member got presence:joined`);
  // at: the round's start, ms on CLOCK_MONOTONIC (as perf record -k CLOCK_MONOTONIC)
  const row = { at: Number(t0) / 1e6, ack: ack.ms, last: msBetween(t0, got.reduce((m, g) => (g.value.last > m ? g.value.last : m), 0n)) };
  // the FIRST receipt: how long before the server starts writing the fan-out
  row.first = msBetween(t0, got.reduce((m, g) => (m === null || g.value.first < m ? g.value.first : m), null));
  // the generator's CPU per received member message, from arm to its last receipt
  // (members-c: the C process alone in genCUsPerMsg; cpuUs also has its Node driver)
  const sum = (k) => got.reduce((a, g) => a + (g.value[k] ?? NaN), 0);
  row.genUsPerMsg = sum('cpuUs') / sum('count');
  row.genCUsPerMsg = sum('cpuUsC') / sum('count');
  row.genElu = Math.max(...got.map((g) => g.value.elu));
  row.dupes = sum('dupes');
  await Promise.all(members.map((c) => c.call({ cmd: 'arm', round, kind: 'left', connId: joiner.id }, 'armed')));
  dones = Promise.allSettled(members.map((c) => c.next('done', 15000)));
  const t1 = hr();
  const l = await ackTimed(joiner, 'presence:leave', { resourceId: rid });
  must(l.ack.ok, `${ctx.name} leave: ${JSON.stringify(l.ack)}`);
  got = await dones;
  must(got.every((g) => g.status === 'fulfilled'), `${ctx.name} N=${N} round ${round}: not every member got presence:left`);
  row.leaveLast = msBetween(t1, got.reduce((m, g) => (g.value.last > m ? g.value.last : m), 0n));
  return row;
}

/*
 * The presence phase gives the servers and the load generator cores of their
 * own (AB_PIN=0: not).  On loopback, each frame of a fan-out wakes a member
 * process, and the kernel places a woken process on the sender's core: traced
 * on collab's worker, 300 rounds of 1000 members, the member processes took
 * its core away 52 times in the median fan-out and up to 533 times in a slow
 * one.  Members on another machine never would.  So while the phase
 * runs, every process of the PostgreSQL cluster (the collab worker, and the
 * baseline's pool backends), the baseline's node and redis are confined to
 * all cores but the last, and this process (the joiners) and the member
 * processes it starts to the last one.
 */
function cpuList(pid) {
  const out = execFileSync('taskset', ['-p', '-c', String(pid)]).toString();
  const ids = [];
  for (const part of out.slice(out.lastIndexOf(':') + 1).trim().split(',')) {
    const [a, b = a] = part.split('-').map(Number);
    for (let c = a; c <= b; c++) ids.push(c);
  }
  return ids;
}

function pinCores(on) {
  const all = pinCores.all || (pinCores.all = cpuList(process.pid));
  if (all.length < 2) return null;
  const set = (cpus, pid) => {
    try { execFileSync('taskset', ['-a', '-p', '-c', cpus.join(','), String(pid)], { stdio: 'ignore' }); } catch { /* gone */ }
  };
  const gen = all.slice(-1);
  const srv = all.slice(0, -1);
  for (const pid of [...clusterPids(), ...T.baseline.pids, REDIS_PID]) set(on ? srv : all, pid);
  set(on ? gen : all, process.pid);
  return on ? { servers: srv.join(','), generator: gen.join(',') } : null;
}

/* Grows each stack's room to N members, shared out over its member processes. */
async function growRooms(ctx, N, rid, what) {
  for (const n of Object.keys(T)) {
    const tg = hr();
    await Promise.all(ctx[n].members.map((c, i) => {
      const share = Math.floor(N / PROCS) + (i < N % PROCS ? 1 : 0);
      return c.call({ cmd: 'grow', total: share, resourceId: rid, concurrency: 20, offset: i * 1000000 }, 'grown', 300000);
    }));
    ctx[n].N = N;
    log(`  ${n}: room of ${N}${what} grown in ${f1(msBetween(tg, hr()) / 1000)} s`);
  }
}

async function phasePresence(gen) {
  R.presencePinned = PIN ? pinCores(true) : null;
  try {
    await presenceRooms(gen, R.presencePinned);
  } finally {
    if (R.presencePinned) pinCores(false);
  }
}

async function presenceRooms(gen, pinned) {
  const rid = tab('a');
  log(`\n== presence (${gen} members, ${MEMBER_SCRIPTS[gen]}): rooms of ${SIZES.join(', ')} members per stack (${PROCS} member processes each), ${ROUNDS} rounds each, alternating` +
    (pinned ? `; servers on CPU ${pinned.servers}, load generator on CPU ${pinned.generator}` : ''));
  const ctx = {};
  for (const n of Object.keys(T)) {
    const members = Array.from({ length: PROCS }, (_, i) => child(MEMBER_SCRIPTS[gen], {
      COLLAB_WS_URL: T[n].url, COLLAB_JWT_SECRET: SECRET, BENCH_CHILD_NO: String((n === 'collab' ? 0 : 50) + i), AB_MEMBERS_TRANSPORT: 'websocket',
    }));
    await Promise.all(members.map((c) => c.next('ready', 20000)));
    const joiner = await sioConnect(T[n], 'joiner');
    ctx[n] = { name: n, members, joiner, rid };
  }
  const P = {};
  R.presenceByGen = R.presenceByGen || {};
  R.presenceByGen[gen] = P;
  R.presenceRounds = R.presenceRounds || {};
  R.presenceRounds[gen] = {};
  // the first generator's figures make the main table and the targets
  if (!R.phases.presence) R.phases.presence = P;
  for (const N of SIZES) {
    await growRooms(ctx, N, rid, '');
    await sleep(500);
    const rows = { collab: [], baseline: [] };
    await measured(`presence N=${N} (${gen} members)`, async () => {
      for (let r = 0; r < WARMUP + ROUNDS; r++) {
        for (const n of turn(r)) {
          const row = await presenceRound(ctx[n], r);
          if (r >= WARMUP) rows[n].push(row);
        }
      }
    });
    P[N] = {};
    R.presenceRounds[gen][N] = rows;
    for (const n of Object.keys(T)) {
      const col = (k) => summary(rows[n].map((x) => x[k]));
      P[N][n] = { last: col('last'), first: col('first'), ack: col('ack'), leaveLast: col('leaveLast'), genUsPerMsg: col('genUsPerMsg'), genCUsPerMsg: col('genCUsPerMsg'), genElu: col('genElu') };
      log(`  N=${N} ${n.padEnd(8)} join -> LAST member ${fmtS(P[N][n].last)}; join -> ack p50 ${f2(P[N][n].ack.p50)}; ` +
        `leave -> LAST p50 ${f2(P[N][n].leaveLast.p50)} p99 ${f2(P[N][n].leaveLast.p99)}`);
      log(`  N=${N} ${n.padEnd(8)} join -> FIRST member p50 ${f2(P[N][n].first.p50)} p99 ${f2(P[N][n].first.p99)}`);
      log(`  N=${N} ${n.padEnd(8)} ${gen} members: CPU per member message p50 ${f2(P[N][n].genUsPerMsg.p50)} us p99 ${f2(P[N][n].genUsPerMsg.p99)} us` +
        (gen === 'c' ? ` (the C processes alone p50 ${f2(P[N][n].genCUsPerMsg.p50)} p99 ${f2(P[N][n].genCUsPerMsg.p99)} us)` : '') +
        `; busiest member process busy p50 ${f1(100 * P[N][n].genElu.p50)} % of the round; duplicates ${rows[n].reduce((a, r) => a + r.dupes, 0)}`);
    }
  }
  for (const n of Object.keys(T)) {
    ctx[n].joiner.close();
    for (const c of ctx[n].members) c.proc.send({ cmd: 'close' });
  }
  await sleep(1500);
  for (const n of Object.keys(T)) for (const c of ctx[n].members) c.kill();
}

/*
 * The presence fan-out over HTTP long-polling: long-polling members (members.c
 * in its poll mode, or members-poll.mjs with AB_POLL_MEMBERS=node) and a
 * socket.io-client joiner on transports ['polling'], in both stacks, with the
 * cores shared out as in the presence phase.  The Node members are busy
 * 88-96 % of a round with rooms of 1000: their queue, not the servers, would
 * make the last receipt.  R.pollMembers (ab.json) says which generator ran.
 */
async function phasePoll() {
  const pinned = PIN ? pinCores(true) : null;
  const rid = tab('a');
  const script = POLL_MEMBER_SCRIPTS[POLL_MEMBERS];
  log(`\n== poll (${POLL_MEMBERS} members, ${script}${POLL_MEMBERS === 'c' ? ' poll mode' : ''}): the presence fan-out on long-polling, rooms of ${POLL_SIZES.join(', ')} members per stack ` +
    `(${PROCS} member processes each), ${POLL_ROUNDS} rounds each, alternating` +
    (pinned ? `; servers on CPU ${pinned.servers}, load generator on CPU ${pinned.generator}` : ''));
  const ctx = {};
  const P = {};
  R.phases.poll = P;
  R.pollMembers = POLL_MEMBERS;
  try {
    for (const n of Object.keys(T)) {
      const members = Array.from({ length: PROCS }, (_, i) => child(script, {
        COLLAB_WS_URL: T[n].url, COLLAB_JWT_SECRET: SECRET, BENCH_CHILD_NO: String((n === 'collab' ? 0 : 50) + i), AB_MEMBERS_TRANSPORT: 'poll',
      }));
      await Promise.all(members.map((c) => c.next('ready', 20000)));
      const joiner = await sioConnect(T[n], 'poll-joiner', { transports: ['polling'] });
      ctx[n] = { name: n, members, joiner, rid };
      await roomEmpty(ctx[n]);
    }
    for (const N of POLL_SIZES) {
      await growRooms(ctx, N, rid, ' long-polling members');
      await sleep(500);
      const rows = { collab: [], baseline: [] };
      await measured(`poll N=${N}`, async () => {
        for (let r = 0; r < WARMUP + POLL_ROUNDS; r++) {
          for (const n of turn(r)) {
            const row = await presenceRound(ctx[n], r);
            if (r >= WARMUP) rows[n].push(row);
          }
        }
      });
      P[N] = {};
      for (const n of Object.keys(T)) {
        const col = (k) => summary(rows[n].map((x) => x[k]));
        P[N][n] = { last: col('last'), first: col('first'), ack: col('ack'), leaveLast: col('leaveLast'), genUsPerMsg: col('genUsPerMsg'), genCUsPerMsg: col('genCUsPerMsg'), genElu: col('genElu') };
        log(`  N=${N} ${n.padEnd(8)} polling: join -> LAST member ${fmtS(P[N][n].last)}; FIRST p50 ${f2(P[N][n].first.p50)}; ` +
          `join -> ack p50 ${f2(P[N][n].ack.p50)}; leave -> LAST p50 ${f2(P[N][n].leaveLast.p50)} p99 ${f2(P[N][n].leaveLast.p99)}; ` +
          `duplicates ${rows[n].reduce((a, x) => a + x.dupes, 0)}`);
        log(`  N=${N} ${n.padEnd(8)} ${POLL_MEMBERS} members: CPU per member message p50 ${f2(P[N][n].genUsPerMsg.p50)} us p99 ${f2(P[N][n].genUsPerMsg.p99)} us` +
          (POLL_MEMBERS === 'c' ? ` (the C processes alone p50 ${f2(P[N][n].genCUsPerMsg.p50)} p99 ${f2(P[N][n].genCUsPerMsg.p99)} us)` : '') +
          `; busiest member process busy p50 ${f1(100 * P[N][n].genElu.p50)} % p99 ${f1(100 * P[N][n].genElu.p99)} % of the round`);
      }
      log(`  N=${N} polling fan-out p99 collab / baseline: ${fr(ratio(P[N].collab.last.p99, P[N].baseline.last.p99))}`);
    }
  } finally {
    for (const n of Object.keys(ctx)) {
      ctx[n].joiner.close();
      for (const c of ctx[n].members) c.proc.send({ cmd: 'close' });
    }
    await sleep(1500);
    for (const n of Object.keys(ctx)) for (const c of ctx[n].members) c.kill();
    if (pinned) pinCores(false);
  }
}

/*
 * socket.io-client as a page creates it, on its default transports
 * (long-polling, then the upgrade): from io() to 'connect', to the ack of
 * the first event (a viewer's presence:join), and to the engine's
 * 'upgrade' (WebSocket in use); then, for reference, io() to the first
 * ack on transports ['websocket'].  Blocks of 10 connections alternate
 * between the stacks.
 */
async function upgradeOnce(t, websocketOnly) {
  userSeq++;
  const token = makeToken(SECRET, { sub: `ab-upgrade-${userSeq}`, name: `AB upgrade ${userSeq}` });
  const t0 = hr();
  const s = io(t.url, { auth: { token }, reconnection: false, forceNew: true, perMessageDeflate: false, ...(websocketOnly ? { transports: ['websocket'] } : {}) });
  try {
    const upgraded = websocketOnly ? null : new Promise((resolve) => s.io.once('open', () => s.io.engine.once('upgrade', () => resolve(hr()))));
    await new Promise((resolve, reject) => {
      s.once('connect', resolve);
      s.once('connect_error', (e) => reject(new Error(`${t.name} upgrade: connect_error ${e.message}`)));
    });
    const tc = hr();
    const ack = await s.timeout(10000).emitWithAck('presence:join', { resourceId: tab('lock'), mode: 'viewer' });
    const ta = hr();
    must(ack.ok, `${t.name} upgrade join: ${JSON.stringify(ack).slice(0, 200)}`);
    const tu = upgraded && await Promise.race([upgraded, sleep(10000).then(() => null)]);
    must(websocketOnly || tu !== null, `${t.name}: no upgrade within 10 s`);
    return { connect: msBetween(t0, tc), ack: msBetween(t0, ta), upgraded: tu ? msBetween(t0, tu) : NaN };
  } finally {
    s.close();
  }
}
async function phaseUpgrade() {
  log(`\n== upgrade: socket.io-client on its default transports, io() -> connected, -> first ack, -> upgraded; ${UPGRADE_ITERS} connections per stack, in blocks of 10, alternating`);
  const rows = { collab: [], baseline: [], collabWs: [], baselineWs: [] };
  await measured('upgrade', async () => {
    for (let b = 0; b * 10 < UPGRADE_ITERS; b++) {
      for (const n of turn(b)) {
        for (let i = 0; i < 10 && b * 10 + i < UPGRADE_ITERS; i++) rows[n].push(await upgradeOnce(T[n], false));
        for (let i = 0; i < 10 && b * 10 + i < UPGRADE_ITERS; i++) rows[`${n}Ws`].push(await upgradeOnce(T[n], true));
      }
    }
  });
  const P = {};
  for (const n of Object.keys(T)) {
    const col = (k, w = '') => summary(rows[n + w].map((x) => x[k]));
    P[n] = { connect: col('connect'), ack: col('ack'), upgraded: col('upgraded'), wsAck: col('ack', 'Ws') };
    log(`  ${n.padEnd(8)} default transports: io() -> connected ${fmtS(P[n].connect)}; -> first ack ${fmtS(P[n].ack)}; -> upgraded ${fmtS(P[n].upgraded)}`);
    log(`  ${n.padEnd(8)} WebSocket only:     io() -> first ack ${fmtS(P[n].wsAck)}`);
  }
  log(`  io() -> first ack on the default transports, collab / baseline: p50 ${fr(ratio(P.collab.ack.p50, P.baseline.ack.p50))}, p99 ${fr(ratio(P.collab.ack.p99, P.baseline.ack.p99))}`);
  R.phases.upgrade = P;
}

async function phaseIdle(pgc) {
  log(`\n== idle: ${IDLE_CONNS} idle connections per stack (${IDLE_PROCS} raw-socket processes, at most ${IDLE_SECS} s of opening), one stack after the other`);
  R.phases.idle = {};
  let base = 10;
  for (const n of Object.keys(T)) {
    const t = T[n];
    const u = new URL(t.url);
    const srcs = Array.from({ length: 8 }, (_, i) => `127.0.0.${base + i}`);
    base += 10;
    const procs = Array.from({ length: IDLE_PROCS }, (_, i) => child('idle-conns.mjs', { AB_CHILD_NO: String(i), AB_JWT_SECRET: SECRET }));
    await Promise.all(procs.map((c) => c.next('ready', 20000)));
    await sleep(1000);
    const rss0 = rssKiB(t.pids);
    // each process holds at most AB_NOFILE descriptors: a server of several processes more
    const asked = Math.min(IDLE_CONNS, t.pids.length * (NOFILE - 1000));
    const a = await snap();
    const tg = hr();
    const res = await Promise.all(procs.map((c, i) => c.call({
      cmd: 'open', host: u.hostname, port: Number(u.port), count: Math.floor(asked / IDLE_PROCS) + (i < asked % IDLE_PROCS ? 1 : 0),
      offset: i * 1000000, srcs, concurrency: 200, deadlineMs: IDLE_SECS * 1000,
    }, 'opened', IDLE_SECS * 1000 + 120000)));
    const openS = msBetween(tg, hr()) / 1000;
    const d = delta(a, await snap());
    d.name = `idle: open ${IDLE_CONNS} (${n})`;
    cpuRows.push(d);
    await sleep(3000);   // settle: late frees, the last connects' side effects
    const rss1 = rssKiB(t.pids);
    const st = await Promise.all(procs.map((c) => c.call({ cmd: 'cpu' }, 'cpu')));
    const ok = res.reduce((x, r) => x + r.ok, 0);
    const alive = st.reduce((x, s) => x + s.alive, 0);
    const failed = res.reduce((x, r) => x + r.failed, 0);
    const errors = {};
    for (const r of res) for (const [k, v] of Object.entries(r.errors)) errors[k] = (errors[k] || 0) + v;
    const genRssKiB = st.reduce((x, s) => x + s.rss, 0) / 1024;
    // a request while they are all connected
    let probe = null;
    try {
      const s = await joined(t, 'idle-probe', tab('lock'));
      const lat = [];
      for (let i = 0; i < 120; i++) {
        const q = await ackTimed(s, 'lock:acquire', { resourceId: tab('lock') });
        must(q.ack.ok, `${n} idle probe acquire: ${JSON.stringify(q.ack).slice(0, 200)}`);
        await ackTimed(s, 'lock:release', { resourceId: tab('lock') });
        if (i >= 20) lat.push(q.ms);
      }
      probe = summary(lat);
      s.close();
    } catch (e) { probe = { error: String(e.message) }; }
    const perConnKiB = alive > 0 ? (rss1 - rss0) / alive : NaN;
    R.phases.idle[n] = { asked, processes: t.pids.length, perProcessMax: await perProcessConns(pgc, t), ok, alive, failed, errors, openS, rss0KiB: rss0, rss1KiB: rss1, perConnKiB, genRssKiB, cpu: d, probe };
    log(`  ${n.padEnd(8)} ${ok} connected (${failed} failed ${JSON.stringify(errors)}), ${alive} still open after 3 s; ` +
      `opened in ${f1(openS)} s (${f1(ok / openS)}/s); RSS ${rss0} -> ${rss1} KiB = ${f2(perConnKiB)} KiB per connection; ` +
      `generator RSS ${f1(genRssKiB / 1024)} MiB; lock probe ${probe.error || fmtS(probe)}`);
    log(`    cpu while opening (% of one core): generator ${f1(d.genSum)} (busiest ${f1(d.genMax)}), collab worker ${f1(d.worker)}, cluster ${f1(d.cluster)}, ` +
      `baseline node ${f1(d.node)}, redis ${f1(d.redis)}`);
    await Promise.all(procs.map((c) => c.call({ cmd: 'close' }, 'closed', 120000)));
    for (const c of procs) c.kill();
    // the next stack's turn starts once this one has let go of them (collab: its connection rows)
    const tw = hr();
    while (msBetween(tw, hr()) < 60000) {
      await sleep(1000);
      if (n !== 'collab' || Number((await pgc.query('SELECT count(*) FROM collab.ws_connections')).rows[0].count) < 10) break;
    }
    await sleep(1000);
  }
}

async function loadBig(pgc, bpg, redis, rows) {
  const docs = rows / 10;
  const t0 = hr();
  // collab: documents 1..docs with 9 tabs each, 1% of the tabs held (as in test/bench/run.sh)
  const collabLoad = (async () => {
    await pgc.query(`INSERT INTO collab.resources (id, parent_id, kind, title)
      SELECT 'document:' || d, NULL, 'document', 'Operation report ' || d FROM generate_series(1, ${docs}) d`);
    await pgc.query(`INSERT INTO collab.resources (id, parent_id, kind, title)
      SELECT 'document:' || d || '/tab:' || t, 'document:' || d, 'tab', NULL FROM generate_series(1, ${docs}) d, generate_series(1, 9) t`);
    await pgc.query(`INSERT INTO collab.leases (resource_id, token, user_id, username, holder_id, acquired_at, renewed_at, expires_at)
      SELECT 'document:' || d || '/tab:9', nextval('collab.fencing_token_seq'), 'holder-' || d % 500, 'Dr. Holder ' || d % 500,
             'conn-h' || d, now(), now(), now() + interval '1 day' FROM generate_series(1, ${docs}) d WHERE d % 10 = 0`);
    await pgc.query('VACUUM ANALYZE collab.resources');
    await pgc.query('VACUUM ANALYZE collab.leases');
  })();
  const baseLoad = (async () => {
    await bpg.query(`INSERT INTO resources (id, parent_id, kind, title)
      SELECT 'document:' || d, NULL, 'document', 'Operation report ' || d FROM generate_series(1, ${docs}) d`);
    await bpg.query(`INSERT INTO resources (id, parent_id, kind, title)
      SELECT 'document:' || d || '/tab:' || t, 'document:' || d, 'tab', NULL FROM generate_series(1, ${docs}) d, generate_series(1, 9) t`);
    await bpg.query('VACUUM ANALYZE resources');
    // the same 1% of the tabs held in Redis, with their parents' descendant sets
    const until = Date.now() + 86400000;
    for (let d = 10; d <= docs; d += 10000) {
      const p = redis.pipeline();
      for (let k = d; k < d + 10000 && k <= docs; k += 10) {
        p.set(`lk:document:${k}/tab:9`, `${k}\tholder-${k % 500}\tDr. Holder ${k % 500}\tconn-h${k}\t${Date.now()}`, 'PX', 86400000);
        p.zadd(`dz:document:${k}`, until, `document:${k}/tab:9`);
      }
      await p.exec();
    }
  })();
  await Promise.all([collabLoad, baseLoad]);
  return msBetween(t0, hr()) / 1000;
}

/** Waits (at most maxMs) until the kernel holds < 32 MiB of dirty or writeback pages; returns the MiB left. */
async function settleWriteback(maxMs) {
  const t0 = hr();
  const mib = () => {
    const m = fs.readFileSync('/proc/meminfo', 'utf8');
    const kb = (k) => Number((new RegExp(`^${k}:\\s+(\\d+)`, 'm').exec(m) || [0, 0])[1]);
    return Math.round((kb('Dirty') + kb('Writeback')) / 1024);
  };
  while (mib() >= 32 && msBetween(t0, hr()) < maxMs) await sleep(500);
  await sleep(1000);
  return mib();
}

async function phaseGrowth(pgc) {
  const bigUrl = env('COLLAB_BIG_WS_URL', '');
  log(`\n== growth: lock round trip with ~10^3 resource rows, then with ${BIG_ROWS} more (${GROWTH_ITERS} per stack per size)` +
    (bigUrl ? '; collab\'s 10^6 rows in a second cluster, measured in blocks alternating with the first' : ''));
  const bpg = new pg.Client({ database: 'baseline' });
  await bpg.connect();
  // the cluster that gets the 10^6 rows: a second one, so that both sizes can be measured in the same blocks
  const bigPgc = bigUrl ? new pg.Client({ host: env('AB_BIG_PGHOST'), port: Number(env('AB_BIG_PGPORT')), database: 'postgres' }) : pgc;
  if (bigUrl) await bigPgc.connect();
  const TB = bigUrl ? { name: 'collab (second cluster)', url: bigUrl, pids: [] } : T.collab;
  const redis = new Redis({ host: '127.0.0.1', port: Number(env('REDIS_PORT')) });
  R.phases.growth = {};
  const count = async (c) => ({
    collab: Number((await c.query('SELECT count(*) FROM collab.resources')).rows[0].count),
    baseline: Number((await bpg.query('SELECT count(*) FROM resources')).rows[0].count),
    redisKeys: await redis.dbsize(),
  });
  for (const size of ['small', 'big']) {
    if (size === 'big') {
      const s = await measured('growth: loading', () => loadBig(bigPgc, bpg, redis, BIG_ROWS));
      log(`  loaded ${BIG_ROWS} rows into each stack in ${f1(s)} s`);
    }
    // the same start for both sizes: a checkpoint, and the kernel done writing it back
    await pgc.query('CHECKPOINT');
    if (bigUrl) await bigPgc.query('CHECKPOINT');
    const dirty = await settleWriteback(30000);
    log(`  ${size}: checkpoint done, ${dirty} MiB dirty or under writeback`);
    const c = size === 'big' ? bigPgc : pgc;
    const rows = await count(c);
    const probes = { collab: await CProbe.open(size === 'big' ? TB : T.collab, `growth-${size}`, tab('lock')), baseline: await CProbe.open(T.baseline, `growth-${size}`, tab('lock')) };
    // with the second cluster, the first (10^3 rows) runs in the same blocks
    if (size === 'big' && bigUrl) probes.collabSmall = await CProbe.open(T.collab, 'growth-small-again', tab('lock'));
    const o = await measured(`growth ${size}`, () => lockBlocks(probes, tab('lock'), GROWTH_ITERS, BLOCKS, 30, c, tab('c9')));
    R.phases.growth[size] = { rows, sql: summary(o.sql.acquire) };
    log(`  ${size} (${rows.collab} rows) libpq collab.acquire (control, no worker) ${fmtS(R.phases.growth[size].sql)}`);
    for (const n of Object.keys(probes)) {
      R.phases.growth[size][n] = summary(o[n].acquire);
      probes[n].close();
      const r = n === 'baseline' ? rows.baseline : n === 'collabSmall' ? R.phases.growth.small.rows.collab : rows.collab;
      log(`  ${size} (${r} rows) ${n.padEnd(8)} acquire -> ack ${fmtS(R.phases.growth[size][n])}`);
    }
  }
  if (bigUrl) await bigPgc.end();
  await bpg.end();
  redis.disconnect();
}

/* ------------------------------------------------------------ report */
const ratio = (a, b) => (Number.isFinite(a) && Number.isFinite(b) && b > 0 ? a / b : NaN);
const fr = (x) => (Number.isFinite(x) ? `${x.toFixed(2)}x` : '—');
const fms = (x) => (Number.isFinite(x) ? `${x.toFixed(2)} ms` : '—');
const verdictWord = (ok) => (ok === null ? 'n/a' : ok ? 'PASS' : 'FAIL');
const pf = (ok) => (ok === null ? 'n/a' : `**${verdictWord(ok)}**`);
function median(xs) {
  const s = xs.filter(Number.isFinite).sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}
/* the median of the per-run values, with their spread (lowest-highest) when there are several */
function medSpread(xs, fmt) {
  const s = xs.filter(Number.isFinite);
  if (s.length < 2) return fmt(median(s));
  return `${fmt(median(s))} (${fmt(Math.min(...s))}–${fmt(Math.max(...s))})`;
}

/* the A/B rows of the table: each gives, for one run's phases, [collab, baseline] as { p50, p99 } */
function scenarios(runs) {
  const F = [];
  const any = (k) => runs.some((r) => r.phases[k]);
  const sizes = [...new Set(runs.flatMap((r) => Object.keys(r.phases.presence || {}).map(Number)))].sort((x, y) => x - y);
  for (const N of sizes) {
    F.push([`presence fan-out, ${N} clients: join → LAST member's \`presence:joined\``, (P) => P.presence?.[N] && [P.presence[N].collab.last, P.presence[N].baseline.last]]);
  }
  for (const N of sizes) {
    F.push([`presence, ${N} clients: join → joiner's ack (lists ${N + 1} users)`, (P) => P.presence?.[N] && [P.presence[N].collab.ack, P.presence[N].baseline.ack]]);
  }
  const pollSizes = [...new Set(runs.flatMap((r) => Object.keys(r.phases.poll || {}).map(Number)))].sort((x, y) => x - y);
  for (const N of pollSizes) {
    F.push([`long-polling fan-out, ${N} clients: join → LAST member's \`presence:joined\``, (P) => P.poll?.[N] && [P.poll[N].collab.last, P.poll[N].baseline.last]]);
  }
  if (any('upgrade')) {
    F.push(['default transports: `io()` → connected (long-polling)', (P) => P.upgrade && [P.upgrade.collab.connect, P.upgrade.baseline.connect]]);
    F.push(['default transports: `io()` → first ack', (P) => P.upgrade && [P.upgrade.collab.ack, P.upgrade.baseline.ack]]);
    F.push(['default transports: `io()` → upgraded to WebSocket', (P) => P.upgrade && [P.upgrade.collab.upgraded, P.upgrade.baseline.upgraded]]);
    F.push(['WebSocket only, for reference: `io()` → first ack', (P) => P.upgrade && [P.upgrade.collab.wsAck, P.upgrade.baseline.wsAck]]);
  }
  if (any('lock')) {
    F.push(['lock uncontended: `lock:acquire` → ack (C client)', (P) => P.lock && [P.lock.collab.acquire, P.lock.baseline.acquire]]);
    F.push(['lock uncontended: `lock:release` → ack (C client)', (P) => P.lock && [P.lock.collab.release, P.lock.baseline.release]]);
    F.push(['lock uncontended: `lock:acquire` → ack (socket.io-client)', (P) => P.lock && [P.lock.sio.collab.acquire, P.lock.sio.baseline.acquire]]);
    F.push(['lock uncontended: `lock:release` → ack (socket.io-client)', (P) => P.lock && [P.lock.sio.collab.release, P.lock.sio.baseline.release]]);
    F.push(['floor, same blocks: `lock:acquire` of a malformed id, refused before any storage (C client)', (P) => P.lock && [P.lock.floor.collab, P.lock.floor.baseline]]);
  }
  if (any('contend')) {
    F.push([`lock contended (${CONTEND_CLIENTS} clients, ${CONTEND_TABS} tabs): \`lock:acquire\` → ack`, (P) => P.contend && [P.contend.collab.acquire, P.contend.baseline.acquire]]);
  }
  if (any('save')) F.push([`save: \`doc:save\` (${CONTENT_BYTES} B, lock held) → ack`, (P) => P.save && [P.save.collab, P.save.baseline]]);
  if (any('stall')) {
    F.push([`stall: ${STALL_CLIENTS} bystanders' lock and save round trips, idle server`, (P) => P.stall && [P.stall.collab.idle.all, P.stall.baseline.idle.all]]);
    F.push([`stall: the same while ${STALL_HOLDERS} database sessions hold other documents`, (P) => P.stall && [P.stall.collab.stall.all, P.stall.baseline.stall.all]]);
  }
  return F.map(([name, get]) => ({ name, get }));
}

/*
 * The targets.  Those of the latency phases are judged on the median of the
 * per-run figures (for a ratio: of the per-run ratios), the idle and growth
 * ones on their single measurement.  Returns rows { what, vals (per run, or
 * null), measured, ok }.
 */
function targetRows(runs, once) {
  const out = [];
  const any = (k) => runs.some((r) => r.phases[k]);
  const perRun = (what, get, fmt, okf) => {
    const vals = runs.map((r) => { const v = get(r.phases); return Number.isFinite(v) ? v : NaN; });
    const m = median(vals);
    out.push({ what, vals: vals.map(fmt), measured: medSpread(vals, fmt), ok: Number.isFinite(m) ? okf(m) : null });
  };
  const single = (what, ok, detail) => out.push({ what, vals: null, measured: detail, ok });
  if (runs.some((r) => r.phases.presence?.[1000])) {
    perRun('fan-out p99, 1000 clients ≤ 20 ms', (P) => P.presence?.[1000]?.collab.last.p99, fms, (m) => m <= 20);
    perRun('fan-out p99, 1000 clients ≤ 0.5x baseline', (P) => P.presence?.[1000] && ratio(P.presence[1000].collab.last.p99, P.presence[1000].baseline.last.p99), fr, (m) => m <= 0.5);
  }
  for (const N of [...new Set(runs.flatMap((r) => Object.keys(r.phases.poll || {}).map(Number)))].sort((x, y) => x - y)) {
    perRun(`long-polling fan-out p99, ${N} clients ≤ 1.0x baseline's long-polling`,
      (P) => P.poll?.[N] && ratio(P.poll[N].collab.last.p99, P.poll[N].baseline.last.p99), fr, (m) => m <= 1);
  }
  if (any('upgrade')) {
    // measured and compared; the contract sets no bound on it
    perRun('default transports, `io()` → first ack, p50 vs baseline (reported)',
      (P) => P.upgrade && ratio(P.upgrade.collab.ack.p50, P.upgrade.baseline.ack.p50), fr, () => null);
  }
  if (any('lock')) {
    perRun('lock round trip p99 ≤ 1.0x baseline (C client)', (P) => P.lock && ratio(P.lock.collab.acquire.p99, P.lock.baseline.acquire.p99), fr, (m) => m <= 1);
    perRun('lock round trip p50 ≤ 1.0x baseline (C client)', (P) => P.lock && ratio(P.lock.collab.acquire.p50, P.lock.baseline.acquire.p50), fr, (m) => m <= 1);
    perRun('lock round trip p99 ≤ 2 ms (C client)', (P) => P.lock?.collab.acquire.p99, fms, (m) => m <= 2);
  }
  if (any('save')) {
    // both stacks keep the saved version (collab: its revision; the baseline: a history row)
    perRun('save round trip p99 ≤ 1.0x baseline (both keep the version)', (P) => P.save && ratio(P.save.collab.p99, P.save.baseline.p99), fr, (m) => m <= 1);
  }
  if (any('contend')) {
    // 50 clients in a closed loop wait for each other: an absolute bound is out of reach for either stack, the ratio is not
    perRun(`contended lock round trip p99 (${CONTEND_CLIENTS} clients, ${CONTEND_TABS} tabs) ≤ 1.0x baseline`,
      (P) => P.contend && ratio(P.contend.collab.acquire.p99, P.contend.baseline.acquire.p99), fr, (m) => m <= 1);
  }
  if (any('stall')) {
    for (const n of Object.keys(T)) {
      const who = n === 'collab' ? 'collab' : 'baseline, the reference';
      perRun(`stall: bystanders' p99 ≤ 1.5x the idle server's (${who})`, (P) => P.stall && ratio(P.stall[n].stall.all.p99, P.stall[n].idle.all.p99), fr, (m) => m <= 1.5);
      perRun(`stall: bystanders' p99 ≤ 20 ms while documents are held (${who})`, (P) => P.stall?.[n].stall.all.p99, fms, (m) => m <= 20);
      // not a median: any failed request fails it
      const failed = runs.map((r) => (r.phases.stall ? r.phases.stall[n].idle.nFailed + r.phases.stall[n].stall.nFailed : NaN));
      const ran = failed.filter(Number.isFinite);
      out.push({
        what: `stall: every bystander request answered ok, in every run (${who})`, vals: failed.map((x) => (Number.isFinite(x) ? `${x} failed` : '—')),
        measured: `${ran.reduce((a, b) => a + b, 0)} failed`, ok: ran.length ? ran.every((x) => x === 0) : null,
      });
    }
  }
  if (any('recovery')) {
    perRun('recovery round trip p50 < fresh connect + rejoin p50 (collab)', (P) => P.recovery?.collab.ratio, fr, (m) => m < 1);
    perRun('every recovery recovered (collab)', (P) => P.recovery?.collab.refused, (x) => `${x} not recovered`, (m) => m === 0);
  }
  if (once.idle && once.idle.collab) {
    const c = once.idle.collab; const b = once.idle.baseline;
    const lim = Number(env('AB_NOFILE', 0));
    // one process holds at most the open-files limit (less a margin) of connections
    const capped = lim && lim < 51000;
    single(`≥ 50,000 idle connections (collab.workers = ${c.processes})`, c.alive >= 50000 ? true : (capped && c.alive === c.asked ? null : false),
      `${c.alive} of ${c.asked} held, at most ${c.perProcessMax} by one worker process` +
      (capped ? `; every process here may open at most ${lim} files (a hard limit that cannot be raised without CAP_SYS_RESOURCE), so one worker process cannot hold 50,000` : ''));
    single('≤ 16 KiB per idle connection', c.perConnKiB <= 16, `${f2(c.perConnKiB)} KiB`);
    if (b) single('≤ 0.5x baseline memory per connection', ratio(c.perConnKiB, b.perConnKiB) <= 0.5, `${f2(c.perConnKiB)} / ${f2(b.perConnKiB)} KiB = ${fr(ratio(c.perConnKiB, b.perConnKiB))}`);
  }
  if (once.growth && once.growth.big) {
    const g = once.growth;
    // against the 10^3-row cluster in the same blocks when there is one; one after the other otherwise
    const small = g.big.collabSmall ?? g.small.collab;
    const r50 = ratio(g.big.collab.p50, small.p50);
    const r99 = ratio(g.big.collab.p99, small.p99);
    single('lock round trip flat (±20%) from 10^3 to 10^6 rows (p50)', r50 >= 0.8 && r50 <= 1.2,
      `p50 ${fr(r50)}, p99 ${fr(r99)}` + (g.big.collabSmall ? ' (the two clusters in alternating blocks)' : '') +
      `; one size after the other: collab p50 ${fr(ratio(g.big.collab.p50, g.small.collab.p50))}, baseline p50 ${fr(ratio(g.big.baseline.p50, g.small.baseline.p50))}, ` +
      `libpq control p50 ${fr(ratio(g.big.sql.p50, g.small.sql.p50))}`);
  }
  return out;
}

function report(meta) {
  const runs = R.runs;
  const once = R.once;
  const nr = runs.length;
  const L = [];
  L.push('# collab vs. Node socket.io + Redis + PostgreSQL: A/B benchmark', '');
  L.push(`${meta.date}; ${meta.machine}; ${meta.versions}; ${meta.build}. Both stacks on the same machine, driven by the same load generator, ` +
    `interleaved in blocks; percentiles are nearest-rank; total ${f1(meta.totalS)} s.`, '');
  if (nr) {
    L.push(`The latency phases ran ${nr} time${nr > 1 ? 's' : ''}, one run of every phase after the other (${runs.map((r) => `run ${r.no}: ${f1(r.seconds)} s`).join(', ')}; ` +
      `asked: ${RUNS || 'as many as fit'}, budget ${BUDGET_S} s)` +
      (R.budgetStop ? `; ${R.budgetStop}` : '') + '. Every target is judged on the median of the per-run figures (of the per-run ratios for a ratio); ' +
      'the idle connections and the growth phase are measured once.', '');
  }
  // targets first: what a reader looks for
  const targets = targetRows(runs, once);
  if (targets.length) {
    L.push(`| target (collab) | ${runs.map((r) => `run ${r.no}`).join(' | ')}${nr ? ' | ' : ''}median (lowest–highest) | verdict |`,
      `|---|${runs.map(() => '---:|').join('')}---|---|`);
    for (const t of targets) L.push(`| ${t.what} | ${runs.map((_, i) => (t.vals ? t.vals[i] : '')).join(' | ')}${nr ? ' | ' : ''}${t.vals ? t.measured : `${t.measured} (measured once)`} | ${pf(t.ok)} |`);
    L.push('');
  }
  const F = scenarios(runs);
  if (F.length) {
    L.push(nr > 1 ? `Medians of the ${nr} runs; a ratio is collab / baseline, the median of the per-run ratios, with their spread (lowest–highest).` : 'A ratio is collab / baseline.', '');
    L.push('| scenario | collab p50 ms | collab p99 ms | baseline p50 ms | baseline p99 ms | p50 ratio | p99 ratio |', '|---|---:|---:|---:|---:|---:|---:|');
    for (const f of F) {
      const v = runs.map((r) => f.get(r.phases)).filter(Boolean);
      const m = (k, i) => median(v.map((x) => x[i][k]));
      L.push(`| ${f.name} | ${f2(m('p50', 0))} | ${f2(m('p99', 0))} | ${f2(m('p50', 1))} | ${f2(m('p99', 1))} | ` +
        `${medSpread(v.map((x) => ratio(x[0].p50, x[1].p50)), fr)} | ${medSpread(v.map((x) => ratio(x[0].p99, x[1].p99)), fr)} |`);
    }
    if (nr > 1) {
      L.push('', 'Every run:', '', '| scenario | run | collab p50 ms | collab p99 ms | baseline p50 ms | baseline p99 ms | p50 ratio | p99 ratio |', '|---|---:|---:|---:|---:|---:|---:|---:|');
      for (const f of F) {
        let first = true;
        for (const r of runs) {
          const x = f.get(r.phases);
          if (!x) continue;
          L.push(`| ${first ? f.name : ''} | ${r.no} | ${f2(x[0].p50)} | ${f2(x[0].p99)} | ${f2(x[1].p50)} | ${f2(x[1].p99)} | ${fr(ratio(x[0].p50, x[1].p50))} | ${fr(ratio(x[0].p99, x[1].p99))} |`);
          first = false;
        }
      }
    }
  }
  for (const r of runs) {
    const lk = r.phases.lock;
    if (lk && lk.attempts.length > 1) {
      L.push('', `Run ${r.no}, the lock rows: the attempt with the least steal of ${lk.attempts.length}; ` +
        lk.attempts.map((a, i) => `attempt ${i + 1}: steal ${f1(a.steal)} % of a core, \`lock:acquire\` p50 / p99 collab ${f2(a.collab.p50)} / ${f2(a.collab.p99)}, baseline ${f2(a.baseline.p50)} / ${f2(a.baseline.p99)}`).join('; ') + '.');
    }
  }
  const contends = runs.map((r) => r.phases.contend).filter(Boolean);
  if (contends.length) {
    L.push('', `Contended locks, throughput (requests/s, grants/s): ` + contends.map((c, i) =>
      `${nr > 1 ? `run ${runs.filter((r) => r.phases.contend)[i].no}: ` : ''}collab ${f1(c.collab.rps)} (${f1(c.collab.grantsPerSec)}), baseline ${f1(c.baseline.rps)} (${f1(c.baseline.grantsPerSec)})`).join('; ') +
      `; ratio of requests/s ${medSpread(contends.map((c) => ratio(c.collab.rps, c.baseline.rps)), fr)}.`);
  }
  const stalls = runs.filter((r) => r.phases.stall);
  if (stalls.length) {
    L.push('', `Stall: ${STALL_CLIENTS} bystanders (socket.io-client, ${STALL_PROCS} processes) each loop \`lock:acquire\`, \`doc:save\` (${CONTENT_BYTES} B), ` +
      `\`lock:release\` and a pause of ${STALL_PAUSE_MS} ms on a tab of their own; measured for ${STALL_HOLD_S} s on an otherwise idle server ` +
      `before and again after (pooled: the idle figure), and in between for as long as ${STALL_HOLDERS} database sessions each hold another document in an open transaction (collab: \`collab.acquire\` then ` +
      `\`pg_sleep(${STALL_HOLD_S})\`; the baseline: its Redis lock key and the document's rows \`FOR UPDATE\`), while a client per held document ` +
      'asks for the lock of one of its tabs. A round trip counts in the window in which it was sent. "held documents" gives the answers to those clients and how long they took.', '',
      '| stack | run | windows | idle p50 / p99 ms | stall p50 / p99 ms | stall / idle p99 | round trips idle / stall | failed idle / stall | held documents: answers; p50 / longest ms |',
      '|---|---:|---|---:|---:|---:|---:|---:|---|');
    for (const n of Object.keys(T)) {
      for (const r of stalls) {
        const x = r.phases.stall[n];
        const fail = (w) => (w.nFailed ? Object.entries(w.failed).map(([k, v]) => `${k} ${v}`).join(', ') : '0');
        L.push(`| ${n} | ${r.no} | ${x.order} | ${f2(x.idle.all.p50)} / ${f2(x.idle.all.p99)} | ${f2(x.stall.all.p50)} / ${f2(x.stall.all.p99)} | ` +
          `${fr(ratio(x.stall.all.p99, x.idle.all.p99))} | ${x.idle.all.n} / ${x.stall.all.n} | ${fail(x.idle)} / ${fail(x.stall)} | ` +
          `${Object.entries(x.victims.codes).map(([k, v]) => `${k} ${v}`).join(', ')}; ${f2(x.victims.p50)} / ${f2(x.victims.max)} |`);
      }
      if (stalls.length > 1) {
        const m = (f) => median(stalls.map((r) => f(r.phases.stall[n])));
        L.push(`| ${n} | median | | ${f2(m((x) => x.idle.all.p50))} / ${f2(m((x) => x.idle.all.p99))} | ${f2(m((x) => x.stall.all.p50))} / ${f2(m((x) => x.stall.all.p99))} | ` +
          `${medSpread(stalls.map((r) => ratio(r.phases.stall[n].stall.all.p99, r.phases.stall[n].idle.all.p99)), fr)} | | | |`);
      }
    }
  }
  const pinned = runs.find((r) => r.presencePinned)?.presencePinned;
  if (runs.some((r) => r.phases.presence)) {
    L.push('', `The presence rows: room members held by \`${MEMBER_SCRIPTS[MEMBERS[0]]}\`` +
      (MEMBERS[0] === 'c' ? ' (members.c: plain sockets and epoll, one process per share of the room).' : '.') +
      (pinned ? ` During the presence phase the servers (every PostgreSQL process, the baseline's node and redis) ran on CPU ${pinned.servers} ` +
        `and the load generator (the joiners, the member processes) on CPU ${pinned.generator} (AB_PIN=0: not).` : ` The servers and the load generator shared the machine's cores${PIN ? ' (only one)' : ' (AB_PIN=0)'}.`));
    L.push('', `Presence fan-out (join → LAST member) by room-member load generator${nr > 1 ? ', medians of the runs' : ''}; "CPU per message" is the generator's CPU from arming ` +
      'a round to its last receipt divided by the messages received (members-c: the C process plus its Node driver; in parentheses the C process alone); ' +
      '"busy" is the busiest member process\'s share of that time not waiting for events (p50).', '',
      '| N | members | collab p50 ms | collab p99 ms | baseline p50 ms | baseline p99 ms | join → FIRST member p50 ms, collab / baseline | CPU per message, collab rounds, p50 / p99 µs | CPU per message, baseline rounds, p50 / p99 µs | busy, collab / baseline |',
      '|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|');
    for (const N of SIZES) {
      for (const g of MEMBERS) {
        const qs = runs.map((r) => r.presenceByGen?.[g]?.[N]).filter(Boolean);
        if (!qs.length) continue;
        const m = (f) => median(qs.map(f));
        const cpu = (n) => `${f2(m((q) => q[n].genUsPerMsg.p50))} / ${f2(m((q) => q[n].genUsPerMsg.p99))}` +
          (g === 'c' ? ` (${f2(m((q) => q[n].genCUsPerMsg.p50))} / ${f2(m((q) => q[n].genCUsPerMsg.p99))})` : '');
        L.push(`| ${N} | ${g === 'c' ? 'C (members.c)' : 'Node (ws/members.mjs)'} | ${f2(m((q) => q.collab.last.p50))} | ${f2(m((q) => q.collab.last.p99))} | ` +
          `${f2(m((q) => q.baseline.last.p50))} | ${f2(m((q) => q.baseline.last.p99))} | ${f2(m((q) => q.collab.first.p50))} / ${f2(m((q) => q.baseline.first.p50))} | ` +
          `${cpu('collab')} | ${cpu('baseline')} | ${f1(100 * m((q) => q.collab.genElu.p50))} % / ${f1(100 * m((q) => q.baseline.genElu.p50))} % |`);
      }
    }
  }
  if (runs.some((r) => r.phases.poll)) {
    L.push('', `The long-polling rows: room members held by \`${POLL_MEMBER_SCRIPTS[POLL_MEMBERS]}\`` +
      (POLL_MEMBERS === 'c' ? ' driving members.c in its poll mode (a keep-alive connection for the GETs and one for the POSTs per member, plain sockets and epoll)' : '') +
      ', cores shared out as in the presence phase.');
  }
  if (once.growth) {
    const G = once.growth;
    L.push('', 'Growth (measured once): the uncontended lock round trip with about 10^3 and with 10^6 more resource rows.', '',
      '| scenario | collab p50 ms | collab p99 ms | baseline p50 ms | baseline p99 ms | p50 ratio | p99 ratio |', '|---|---:|---:|---:|---:|---:|---:|');
    for (const size of ['small', 'big']) {
      const g = G[size];
      if (g) {
        L.push(`| lock uncontended, ${g.rows.collab} / ${g.rows.baseline} resource rows: \`lock:acquire\` → ack (C client) | ${f2(g.collab.p50)} | ${f2(g.collab.p99)} | ` +
          `${f2(g.baseline.p50)} | ${f2(g.baseline.p99)} | ${fr(ratio(g.collab.p50, g.baseline.p50))} | ${fr(ratio(g.collab.p99, g.baseline.p99))} |`);
      }
    }
    if (G.big && G.big.collabSmall) {
      L.push(`| collab, ${G.small.rows.collab} rows (first cluster), in the same blocks as the ${G.big.rows.collab}-row cluster above | ` +
        `${f2(G.big.collabSmall.p50)} | ${f2(G.big.collabSmall.p99)} | | | | |`);
    }
    for (const size of ['small', 'big']) {
      const g = G[size];
      if (g) L.push(`| control: \`collab.acquire\` through libpq (no worker), ${g.rows.collab} rows, same blocks | ${f2(g.sql.p50)} | ${f2(g.sql.p99)} | | | | |`);
    }
  }
  if (once.idle) {
    L.push('', `Idle connections (measured once): opened for at most ${IDLE_SECS} s per stack; "held" = still open 3 s after the last one connected.`,
      '', '| idle connections | asked | attempted | held | failed | opened per s | server RSS before → after, MiB | KiB per connection | lock:acquire p50 / p99 ms with them open | load generator RSS, MiB |',
      '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
    for (const n of Object.keys(T)) {
      const i = once.idle[n];
      if (!i) continue;
      const who = n === 'collab'
        ? `(${i.processes} worker process${i.processes > 1 ? 'es' : ''}, at most ${i.perProcessMax} in one)` : '(node process)';
      L.push(`| ${n} ${who} | ${i.asked} | ${i.ok + i.failed} | ${i.alive} | ${i.failed}${i.failed ? ` (${Object.entries(i.errors).map(([k, v]) => `${k}: ${v}`).join(', ')})` : ''} | ` +
        `${f1(i.ok / i.openS)} | ${f1(i.rss0KiB / 1024)} → ${f1(i.rss1KiB / 1024)} | ${f2(i.perConnKiB)} | ${i.probe && i.probe.error ? i.probe.error : `${f2(i.probe.p50)} / ${f2(i.probe.p99)}`} | ${f1(i.genRssKiB / 1024)} |`);
    }
  }
  L.push('', '| phase (CPU, % of one core) | wall s | load generator, sum | busiest generator process | collab worker | whole PostgreSQL cluster | baseline node | redis | interrupts | steal (the host) | other |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
  for (const d of cpuRows) {
    L.push(`| ${d.name} | ${f1(d.wallS)} | ${f1(d.genSum)} | ${f1(d.genMax)} | ${f1(d.worker)} | ${f1(d.cluster)} | ${f1(d.node)} | ${f1(d.redis)} | ${f1(d.irq)} | ${f1(d.steal)} | ${f1(d.other)} |`);
  }
  const unsettled = Object.entries(R.settle).filter(([, v]) => !v.quiet);
  L.push('', `Before each phase after the idle one the load generator waited up to ${SETTLE_S} s for a quiet machine (under 15 % of all cores busy for 2 s)` +
    (unsettled.length ? `; it did not get one before ${unsettled.map(([k, v]) => `${k} (${f1(v.busyPct)} % busy)`).join(', ')}.` : ', and got one every time.'));
  L.push('', 'The PostgreSQL cluster column includes the collab worker and the baseline\'s pool backends (database `baseline`)' +
    (once.growth && once.growth.big && once.growth.big.collabSmall ? '; the second cluster of the growth phase (10^6 rows, its worker included) counts under other processes.' : '.'));
  return { md: L.join('\n') + '\n', targets };
}

/* ------------------------------------------------------------ main */
async function runPhase(ph, pgc) {
  if (ph === 'lock') await phaseLock();
  else if (ph === 'save') await phaseSave();
  else if (ph === 'contend') await phaseContend();
  else if (ph === 'presence') { for (const g of MEMBERS) await phasePresence(g); }
  else if (ph === 'stall') await phaseStall();
  else if (ph === 'recovery') await phaseRecovery();
  else if (ph === 'poll') await phasePoll();
  else if (ph === 'upgrade') await phaseUpgrade();
  else if (ph === 'idle') await phaseIdle(pgc);
  else if (ph === 'growth') await phaseGrowth(pgc);
  else throw new Error('unknown phase ' + ph);
}

async function main() {
  const tStart = hr();
  for (const ph of PHASES) must([...REPEATED, 'idle', 'growth', 'check'].includes(ph), `AB_PHASES: unknown phase ${ph}`);
  must(Number.isInteger(RUNS) && RUNS >= 0, 'AB_RUNS: a whole number (0: as many runs as fit in AB_BUDGET_S)');
  const pgc = new pg.Client({ database: 'postgres', application_name: 'ab loadgen' });
  await pgc.connect();
  const w = await pgc.query("SELECT pid FROM pg_stat_activity WHERE backend_type = 'collab worker' ORDER BY pid");
  const [{ workers }] = (await pgc.query("SELECT current_setting('collab.workers')::int AS workers")).rows;
  must(w.rows.length === workers, `expected ${workers} collab worker(s), found ${w.rows.length}`);
  T.collab.pids = w.rows.map((r) => r.pid);
  postmasterPid = Number(fs.readFileSync(`/proc/${T.collab.pids[0]}/stat`, 'utf8').split(') ')[1].split(' ')[1]);
  log(`collab worker pid(s) ${T.collab.pids.join(', ')} (collab.workers = ${workers}, ${T.collab.url}); ` +
    `baseline node pid ${T.baseline.pids[0]} (${T.baseline.url}); redis pid ${REDIS_PID}`);
  await checkEquivalence();
  // the phases measured once write into R.once, those of a run into that run's R.phases
  R.once = {};
  R.runs = [];
  if (PHASES.includes('idle')) {
    R.phases = R.once;
    await phaseIdle(pgc);
  }
  const repeated = PHASES.filter((p) => REPEATED.includes(p));
  if (repeated.length) {
    const t0 = hr();
    let longest = 0;
    for (let i = 1; RUNS === 0 || i <= RUNS; i++) {
      const spent = msBetween(t0, hr()) / 1000;
      if (i > 1 && spent + longest > BUDGET_S) {
        R.budgetStop = `run ${i} did not start: ${f1(spent)} s of the ${BUDGET_S} s budget (AB_BUDGET_S) were spent, and the longest run took ${f1(longest)} s`;
        log(`\n${R.budgetStop}`);
        break;
      }
      FLIP = (i - 1) % 2;
      RUN_TAG = RUNS === 1 ? '' : ` (run ${i})`;
      R.phases = {};
      R.presenceByGen = {};
      R.presenceRounds = {};
      R.presencePinned = null;
      log(`\n==== run ${i}${RUNS ? ` of ${RUNS}` : ''}: ${repeated.join(', ')}; ${turn(0)[0]} first`);
      const tr = hr();
      for (const ph of repeated) {
        await settle(ph);
        await runPhase(ph, pgc);
      }
      const s = msBetween(tr, hr()) / 1000;
      longest = Math.max(longest, s);
      R.runs.push({ no: i, seconds: s, phases: R.phases, presenceByGen: R.presenceByGen, presenceRounds: R.presenceRounds, presencePinned: R.presencePinned });
      log(`==== run ${i} took ${f1(s)} s`);
    }
    FLIP = 0;
    RUN_TAG = '';
  }
  if (PHASES.includes('growth')) {
    R.phases = R.once;
    await settle('growth');
    await phaseGrowth(pgc);
  }
  delete R.phases;
  delete R.presenceByGen;
  delete R.presenceRounds;
  delete R.presencePinned;
  await pgc.end();
  // the idle phase may run first against a server with more worker processes (run.sh)
  if (process.env.AB_IDLE_TO) {
    fs.writeFileSync(process.env.AB_IDLE_TO, JSON.stringify({ idle: R.once.idle, cpu: cpuRows }));
    log(`idle phase written to ${process.env.AB_IDLE_TO}`);
    return;
  }
  if (process.env.AB_IDLE_FROM) {
    const x = JSON.parse(fs.readFileSync(process.env.AB_IDLE_FROM, 'utf8'));
    R.once.idle = x.idle;
    cpuRows.unshift(...x.cpu);
  }
  const meta = {
    date: new Date().toISOString().replace(/\.\d+Z$/, 'Z'), machine: env('AB_MACHINE', `${os.cpus().length} cores`),
    versions: env('AB_VERSIONS', `Node ${process.version}`), build: env('AB_BUILD', ''), totalS: msBetween(tStart, hr()) / 1000,
  };
  R.meta = meta;
  R.cpu = cpuRows;
  const { md, targets } = report(meta);
  R.targets = targets.map((t) => ({ what: t.what, perRun: t.vals, measured: t.measured, verdict: verdictWord(t.ok) }));
  log('\n' + md);
  const dir = env('AB_OUT_DIR');
  if (dir) {
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, 'ab.md'), md);
    fs.writeFileSync(path.join(dir, 'ab.json'), JSON.stringify(R, null, 2));
    // one line per target for the summary of `make bench` (test/bench/bench.sh)
    fs.writeFileSync(path.join(dir, 'targets-ab.tsv'), R.targets.map((t) => `${t.what}\t${t.measured}\t${t.verdict}\n`).join(''));
    const sizes = [...new Set(R.runs.flatMap((r) => Object.keys(r.phases.presence || {}).map(Number)))].sort((x, y) => x - y);
    if (sizes.length) {
      const lines = [`# N collab_p50 collab_p99 baseline_p50 baseline_p99 (ms, join -> last member; medians of ${R.runs.length} run(s))`];
      for (const N of sizes) {
        const ps = R.runs.map((r) => r.phases.presence?.[N]).filter(Boolean);
        const m = (f) => median(ps.map(f));
        lines.push(`${N} ${m((p) => p.collab.last.p50)} ${m((p) => p.collab.last.p99)} ${m((p) => p.baseline.last.p50)} ${m((p) => p.baseline.last.p99)}`);
      }
      fs.writeFileSync(path.join(dir, 'fanout.dat'), lines.join('\n') + '\n');
    }
    log(`written to ${dir}/ab.md, ab.json, targets-ab.tsv${sizes.length ? ', fanout.dat' : ''}`);
  }
  for (const c of [...kids]) c.kill();
}

main().then(() => process.exit(0), (e) => {
  console.error('ab: failed:', (e && e.stack) || e);
  for (const c of [...kids]) c.kill();
  process.exit(1);
});
