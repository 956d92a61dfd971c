// The soak driver (started by run.sh): SOAK_CLIENTS clients join, leave,
// lock and save for SOAK_SECONDS against one collab worker, while the
// worker's memory and descriptors are sampled from /proc; then every client
// disconnects and the worker must be back where it started.  Most clients
// are lightweight (clients.mjs, in SOAK_PROCS child processes); a few are the
// real socket.io-client, run here.  Prints a table of samples and a verdict;
// exits 1 on failure.
//
// Verdict (see README.md): after warm-up (WARMUP_S below) the
// worker's private memory (VmRSS - RssShmem) and RssAnon stay within +-5 %
// (mean of the last window against the first window after warm-up, and the
// maximum against that baseline); while clients are connected its sockets
// are the clients + a constant, and after they leave they are back to the
// idle count; every ack is ok or an expected code (behavior.mjs); no
// unexpected close, error event or server disconnect; no ERROR/FATAL/PANIC
// in the server log; the worker is the same process at the end;
// collab.connections, collab.presence and collab.locks are empty at the end.
import { fork } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { io } from 'socket.io-client';
import {
  clientLoop, newStats, addStats, makeToken, recordProblem, ACK_TIMEOUT_MS, CONNECT_TIMEOUT_MS,
} from './behavior.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const env = (k, d) => (process.env[k] !== undefined && process.env[k] !== '' ? Number(process.env[k]) : d);

const URL_ = process.env.COLLAB_WS_URL;
const SECRET = process.env.COLLAB_JWT_SECRET;
const WPID = Number(process.env.SOAK_WORKER_PID);
const SERVER_LOG = process.env.SOAK_SERVER_LOG;
const CLIENTS = env('SOAK_CLIENTS', 10000);
const SECONDS = env('SOAK_SECONDS', 600);
const PROCS = Math.max(1, env('SOAK_PROCS', 2));
const SIO = Math.min(env('SOAK_SIO_CLIENTS', Math.min(50, Math.ceil(CLIENTS / 100))), CLIENTS);
const RATE = env('SOAK_RATE', 150);                    // client events per second, all clients
const THINK_MS = env('SOAK_THINK_MS', Math.round((CLIENTS * 1000) / RATE));
// Content of a save: up to this many bytes.
const CONTENT_BYTES = env('SOAK_CONTENT_BYTES', 800);
const LOCK_TTL_MS = env('SOAK_LOCK_TTL_MS', 60000);    // collab.lock_ttl, set by run.sh
const RAMP_RATE = env('SOAK_RAMP_RATE', 400);          // connections per second, all clients
const SAMPLE_S = env('SOAK_SAMPLE_SECONDS', SECONDS >= 120 ? 10 : 2);
const DOCS = env('SOAK_DOCS', Math.max(10, Math.round(CLIENTS / 20)));
const TABS = env('SOAK_TABS', 4);
const SOURCES = Array.from({ length: env('SOAK_SOURCES', 4) }, (_, i) => `127.0.3.${i + 1}`);
// Warm-up: until the memory of every connection has been through its cycle
// (join, lock, save, leave, with a mean think time between commands, four of
// them) and the first leases have expired, at least 20 % and at most half of
// the steady phase.
const WARMUP_S = Math.min(0.5 * SECONDS, Math.max(0.2 * SECONDS, (4 * THINK_MS + LOCK_TTL_MS) / 1000));
const WINDOW = 0.1;   // of the steady phase, for the first and last means
const RSS_TOLERANCE = 0.05;
// A short run's memory is a few MB, mostly caches still warming: there a
// 5 % limit would judge noise, so drifts up to this many bytes pass too.
const RSS_SLACK = 1024;   // kB, the unit of the samples
const DRAIN_S = 90;
const TOKEN_TTL = SECONDS + 3600;

for (const [k, v] of Object.entries({ COLLAB_WS_URL: URL_, COLLAB_JWT_SECRET: SECRET, SOAK_WORKER_PID: WPID, SOAK_SERVER_LOG: SERVER_LOG })) {
  if (!v) { console.error(`soak: ${k} is not set (run test/soak/run.sh)`); process.exit(2); }
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const t0 = Date.now();
const elapsed = () => (Date.now() - t0) / 1000;

// ---- the worker, from /proc
const HZ = 100;
function workerSample() {
  const status = fs.readFileSync(`/proc/${WPID}/status`, 'utf8');
  const kb = (k) => Number((status.match(new RegExp(`^${k}:\\s+(\\d+)`, 'm')) || [])[1]);
  const stat = fs.readFileSync(`/proc/${WPID}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // sockets apart from files: the worker also keeps relation files open
  // (PostgreSQL's file descriptor cache), more of them as it touches more
  // tables and indexes, independently of the clients
  let sockets = 0;
  let files = 0;
  for (const fd of fs.readdirSync(`/proc/${WPID}/fd`)) {
    let target = '';
    try { target = fs.readlinkSync(`/proc/${WPID}/fd/${fd}`); } catch { continue; }   // closed meanwhile
    if (target.startsWith('socket:')) sockets++; else files++;
  }
  return {
    rss: kb('VmRSS'), anon: kb('RssAnon'), shmem: kb('RssShmem'),
    priv: kb('VmRSS') - kb('RssShmem'),
    fds: sockets + files, sockets, files,
    cpuTicks: Number(f[11]) + Number(f[12]),   // utime + stime
  };
}

// ---- child processes
const children = [];
let sampleId = 0;
function startChildren() {
  const per = Math.floor((CLIENTS - SIO) / PROCS);
  let offset = 0;
  for (let i = 0; i < PROCS; i++) {
    const count = i === PROCS - 1 ? CLIENTS - SIO - offset : per;
    const child = fork(path.join(HERE, 'clients.mjs'), [], {
      env: { ...process.env, SOAK_CHILD_NO: String(i) },
      serialization: 'advanced',
    });
    const c = { child, count, offset, waiters: new Map(), ready: null, ramped: null, stopped: null };
    c.ready = new Promise((res) => { c.onReady = res; });
    c.ramped = new Promise((res) => { c.onRamped = res; });
    c.stopped = new Promise((res) => { c.onStopped = res; });
    child.on('message', (m) => {
      if (m.cmd === 'ready') c.onReady();
      else if (m.cmd === 'ramped') c.onRamped(m);
      else if (m.cmd === 'stopped') c.onStopped(m);
      else if (m.cmd === 'sample') { const w = c.waiters.get(m.id); c.waiters.delete(m.id); if (w) w(m); }
      else if (m.cmd === 'fatal') { console.error(`soak: client process ${i} failed: ${m.message}`); process.exit(2); }
    });
    child.on('exit', (code) => {
      if (!c.exited && code !== 0) { console.error(`soak: client process ${i} exited with ${code}`); process.exit(2); }
    });
    children.push(c);
    offset += count;
  }
}
function childSamples() {
  const id = ++sampleId;
  return Promise.all(children.map((c) => new Promise((res) => {
    c.waiters.set(id, res);
    c.child.send({ cmd: 'sample', id });
  })));
}

// ---- real socket.io-client clients, here
const sioStats = newStats();
const sioConns = [];
let sioRampConnects = 0;
let sioStopping = false;
const sioSleepers = new Set();
function sioSleep(ms) {
  if (sioStopping) return Promise.resolve();
  return new Promise((resolve) => {
    const s = { resolve, timer: setTimeout(() => { sioSleepers.delete(s); resolve(); }, ms) };
    sioSleepers.add(s);
  });
}
function sioConn(n) {
  const token = makeToken(SECRET, { sub: `soak-sio-${n}`, name: `Soak sio ${n}` }, TOKEN_TTL);
  let s = null;
  let closing = false;
  return {
    connect() {
      closing = false;
      s = io(URL_, {
        transports: ['websocket'], auth: { token }, reconnection: false, forceNew: true,
        timeout: CONNECT_TIMEOUT_MS, localAddress: SOURCES[n % SOURCES.length],
      });
      s.on('error', (p) => recordProblem(sioStats, 'error_event', `sio ${n}: ${JSON.stringify(p)}`));
      return new Promise((res, rej) => {
        const timer = setTimeout(() => { rej(new Error('connect timeout')); s.disconnect(); }, CONNECT_TIMEOUT_MS);
        s.once('connect', () => {
          clearTimeout(timer);
          s.on('disconnect', (reason) => {
            if (!closing) recordProblem(sioStats, 'unexpected_close', `sio ${n}: ${reason}`);
          });
          res();
        });
        s.once('connect_error', (e) => { clearTimeout(timer); rej(e); });
        // closed before the CONNECT answer: no connect_error follows
        s.once('disconnect', (reason) => { clearTimeout(timer); rej(new Error('closed during the handshake: ' + reason)); });
      });
    },
    emit(event, payload) {
      if (!s || !s.connected) return Promise.resolve(null);
      return s.timeout(ACK_TIMEOUT_MS).emitWithAck(event, payload).then((ack) => ack, (e) => {
        if (!s.connected) return null;   // closed meanwhile: counted as a problem already
        throw e;
      });
    },
    close() {
      closing = true;
      if (!s) return Promise.resolve();
      const engine = s.io.engine;
      const done = new Promise((res) => {
        if (!engine || engine.readyState === 'closed') res(); else engine.once('close', () => res());
        setTimeout(res, 30000);   // engine.io closes within its own timeouts; never hang here
      });
      s.disconnect();
      return done;
    },
    isOpen() { return s !== null && s.connected; },
  };
}
async function startSio() {
  const ctx = {
    stats: sioStats, stopping: () => sioStopping, thinkMs: THINK_MS, contentBytes: CONTENT_BYTES, lockTtlMs: LOCK_TTL_MS, sleep: sioSleep,
    pick() {
      const d = Math.floor(Math.random() * DOCS);
      const t = Math.floor(Math.random() * TABS);
      return { doc: `document:soak${d}`, tab: `document:soak${d}/tab:t${t}` };
    },
  };
  const loops = [];
  for (let n = 0; n < SIO; n++) {
    const c = sioConn(n);
    sioConns.push(c);
    try {
      await c.connect();
      sioStats.connects++;
      sioRampConnects++;
      loops.push(clientLoop(ctx, c));
    } catch (e) {
      recordProblem(sioStats, 'ramp_connect', `sio ${n}: ${e && e.message || e}`);
    }
  }
  return loops;
}

// ---- the run
const db = new pg.Client();
await db.connect();
const count = async (sql) => Number((await db.query(sql)).rows[0].n);

const tabs = Array.from({ length: TABS }, (_, i) => `t${i}`);
await db.query(`SELECT collab.create_document('soak' || d, 'Soak ' || d, $1::text[]) FROM generate_series(0, $2 - 1) d`,
  [tabs, DOCS]);
// every client may edit every document
await db.query(`SELECT collab.grant('document:soak' || d, '*', 'edit') FROM generate_series(0, $1 - 1) d`, [DOCS]);

console.log(`soak: ${CLIENTS} clients (${SIO} socket.io-client, the rest lightweight in ${PROCS} processes) ` +
  `on ${DOCS} documents x ${TABS} tabs, ${SECONDS} s after the ramp; think time ${THINK_MS} ms ` +
  `(about ${Math.round((CLIENTS * 1000) / THINK_MS)} client events/s), saves of up to ${CONTENT_BYTES} bytes; worker pid ${WPID}; sources ${SOURCES.join(' ')}`);

const idle = workerSample();
const samples = [];
const reported = {};
let prev = { t: elapsed(), cpu: idle.cpuTicks, events: 0 };
async function sample(phase) {
  const w = workerSample();
  const cs = await childSamples();
  const total = newStats();
  let connected = sioConns.filter((c) => c.isOpen()).length;
  for (const c of cs) { addStats(total, c.stats); connected += c.connected; }
  addStats(total, sioStats);
  const t = elapsed();
  const errs = Object.values(total.errors).reduce((a, b) => a + b, 0) + Object.values(total.problems).reduce((a, b) => a + b, 0);
  const s = {
    t, phase, connected, ...w, errors: errs, events: total.events,
    evRate: (total.events - prev.events) / (t - prev.t),
    cpuPct: (100 * (w.cpuTicks - prev.cpu)) / HZ / (t - prev.t),
  };
  prev = { t, cpu: w.cpuTicks, events: total.events };
  samples.push(s);
  // say what went wrong as soon as it happens, not only at the end
  for (const kind of ['errors', 'problems']) {
    for (const [k, v] of Object.entries(total[kind])) {
      if (v !== (reported[k] || 0)) console.log(`        ${kind}: ${k} x ${v}`);
      reported[k] = v;
    }
  }
  return s;
}

const mb = (kb) => (kb / 1024).toFixed(1);
function printRow(s) {
  console.log([
    s.t.toFixed(0).padStart(6), s.phase.padEnd(6), String(s.connected).padStart(9),
    mb(s.rss).padStart(8), mb(s.shmem).padStart(8), mb(s.priv).padStart(8), mb(s.anon).padStart(8),
    String(s.sockets).padStart(7), String(s.sockets - s.connected).padStart(9), String(s.files).padStart(6),
    s.evRate.toFixed(0).padStart(7), s.cpuPct.toFixed(0).padStart(7), String(s.errors).padStart(7),
  ].join(' '));
}
console.log(`idle worker: VmRSS ${mb(idle.rss)} MB (private ${mb(idle.priv)} MB, RssAnon ${mb(idle.anon)} MB), ` +
  `${idle.sockets} sockets, ${idle.files} other descriptors`);
console.log('     t phase  connected    VmRSS    Shmem  private  RssAnon sockets sock-conn files    ev/s    cpu%  errors');
console.log('                                MB       MB       MB       MB');

startChildren();
await Promise.all(children.map((c) => c.ready));
const sioLoopsP = startSio();
for (const c of children) {
  c.child.send({ cmd: 'start', cfg: {
    count: c.count, offset: c.offset, rampRate: RAMP_RATE / PROCS, thinkMs: THINK_MS, contentBytes: CONTENT_BYTES, lockTtlMs: LOCK_TTL_MS,
    docs: DOCS, tabs: TABS, sources: SOURCES, tokenTtl: TOKEN_TTL,
  } });
}

// ramp
let rampDone = false;
const rampP = Promise.all(children.map((c) => c.ramped)).then((r) => { rampDone = true; return r; });
while (!rampDone) {
  await Promise.race([rampP, sleep(SAMPLE_S * 1000)]);
  printRow(await sample('ramp'));
}
const ramped = await rampP;
const sioLoops = await sioLoopsP;
const rampConnected = ramped.reduce((a, r) => a + r.rampConnects, 0) + sioRampConnects;
const rampSeconds = elapsed();
console.log(`ramp: ${rampConnected} of ${CLIENTS} connected in ${rampSeconds.toFixed(1)} s`);
const rampFiles = workerSample().files;

// steady
const steadyStart = elapsed();
while (elapsed() - steadyStart < SECONDS) {
  await sleep(Math.min(SAMPLE_S, SECONDS - (elapsed() - steadyStart)) * 1000);
  printRow(await sample('run'));
}

// stop: loops finish their current step, then every client closes
sioStopping = true;
for (const s of sioSleepers) { clearTimeout(s.timer); s.resolve(); }
for (const c of children) c.child.send({ cmd: 'stop' });
const STOP_S = 180;   // longer than any ack or connect timeout
const stopTimer = (what) => sleep(STOP_S * 1000).then(() => { throw new Error(`${what} did not stop within ${STOP_S} s`); });
let stopProblem = null;
try {
  await Promise.race([Promise.all(sioLoops), stopTimer('the socket.io-client loops')]);
} catch (e) { stopProblem = e.message; }
await Promise.all(sioConns.map((c) => c.close()));
let stopped;
try {
  stopped = await Promise.race([Promise.all(children.map((c) => c.stopped)), stopTimer('the client processes')]);
} catch (e) {
  console.error(`soak: ${e.message}`);
  process.exit(2);
}
const stats = newStats();
let stillOpen = sioConns.filter((c) => c.isOpen()).length;
for (const s of stopped) { addStats(stats, s.stats); stillOpen += s.open; }
addStats(stats, sioStats);

// drain: the worker must notice every close and come back to idle
const drainStart = Date.now();
let last;
for (;;) {
  last = workerSample();
  const conns = await count('SELECT count(*) AS n FROM collab.connections');
  if ((last.sockets <= idle.sockets && conns === 0) || Date.now() - drainStart > DRAIN_S * 1000) break;
  await sleep(500);
}
const drainSeconds = (Date.now() - drainStart) / 1000;
const afterSample = { t: elapsed(), phase: 'after', connected: stillOpen, ...last, errors: 0, events: stats.events, evRate: 0, cpuPct: 0 };
afterSample.errors = samples.length ? samples[samples.length - 1].errors : 0;
printRow(afterSample);
const leftConnections = await count('SELECT count(*) AS n FROM collab.connections');
const leftPresence = await count('SELECT count(*) AS n FROM collab.presence');
const leftLocks = await count('SELECT count(*) AS n FROM collab.locks');
const workerNow = await count("SELECT coalesce(max(pid), 0) AS n FROM pg_stat_activity WHERE backend_type = 'collab worker'");
const versions = (await db.query(`SELECT count(*) FILTER (WHERE version > 0) AS saved, coalesce(sum(version), 0) AS versions
  FROM collab.resources WHERE id LIKE 'document:soak%'`).catch(() => ({ rows: [{ saved: '?', versions: '?' }] }))).rows[0];
await db.end();
for (const c of children) { c.exited = true; c.child.disconnect(); }

// ---- verdict
const failures = [];
const run = samples.filter((s) => s.phase === 'run');
const post = run.filter((s) => s.t - steadyStart >= WARMUP_S);
const winS = Math.max(WINDOW * SECONDS, SAMPLE_S);
const first = post.filter((s) => s.t - steadyStart < WARMUP_S + winS);
const lastW = post.filter((s) => s.t - steadyStart > SECONDS - winS);
const mean = (a, k) => a.reduce((x, s) => x + s[k], 0) / a.length;

if (rampConnected !== CLIENTS) failures.push(`only ${rampConnected} of ${CLIENTS} clients connected during the ramp`);
const memLines = [];
if (first.length === 0 || lastW.length === 0) {
  failures.push('too few samples after warm-up to judge memory (raise SOAK_SECONDS or lower SOAK_SAMPLE_SECONDS)');
} else {
  for (const [k, label, judged] of [['rss', 'VmRSS', false], ['shmem', 'RssShmem', false], ['priv', 'private RSS (VmRSS - RssShmem)', true], ['anon', 'RssAnon', true]]) {
    const base = mean(first, k);
    const end = mean(lastW, k);
    const max = Math.max(...post.map((s) => s[k]));
    const drift = (end - base) / base;
    const peak = (max - base) / base;
    memLines.push(`${label}: first window after warm-up (${WARMUP_S.toFixed(0)} s) ${mb(base)} MB, last window ${mb(end)} MB (${(100 * drift).toFixed(2)} %), ` +
      `max ${mb(max)} MB (${(100 * peak).toFixed(2)} %)` + (judged ? '' : ' [reported, not judged]'));
    if (!judged) continue;
    const limit = Math.max(RSS_TOLERANCE, RSS_SLACK / base);
    if (Math.abs(drift) > limit) failures.push(`${label} drifted ${(100 * drift).toFixed(2)} % (limit +-${(100 * limit).toFixed(2)} %)`);
    if (peak > limit) failures.push(`${label} peaked ${(100 * peak).toFixed(2)} % above its post-warm-up baseline`);
  }
}
// sockets while connected: about clients + the idle count; afterwards the
// idle count.  Other descriptors (relation files) may grow with the tables
// the worker touched, but not with the clients.
const fdSlack = 50 + Math.ceil(0.02 * CLIENTS);
const fdDev = run.map((s) => s.sockets - s.connected - idle.sockets);
const fdDevMax = fdDev.length ? Math.max(...fdDev.map(Math.abs)) : 0;
const filesMax = Math.max(last.files, ...run.map((s) => s.files));
const filesSlack = 64;
if (fdDevMax > fdSlack) failures.push(`sockets strayed up to ${fdDevMax} from connected clients + idle (allowed ${fdSlack})`);
if (last.sockets > idle.sockets) failures.push(`socket leak: ${last.sockets} open after every client left, ${idle.sockets} when idle`);
if (filesMax > rampFiles + filesSlack) failures.push(`other descriptors grew from ${rampFiles} after the ramp to ${filesMax} (allowed +${filesSlack})`);
if (stillOpen !== 0) failures.push(`${stillOpen} clients still open after the stop`);
const nErrors = Object.values(stats.errors).reduce((a, b) => a + b, 0);
const nProblems = Object.values(stats.problems).reduce((a, b) => a + b, 0);
if (stopProblem) failures.push(stopProblem);
if (nErrors) failures.push(`${nErrors} unexpected command outcomes: ${JSON.stringify(stats.errors)}`);
if (nProblems) failures.push(`${nProblems} unexpected closes/errors/disconnects: ${JSON.stringify(stats.problems)}`);
if (stats.samples.length) console.log('first problems:\n  ' + stats.samples.join('\n  '));
if (workerNow !== WPID) failures.push(`the worker is not the same process any more (pid ${WPID} -> ${workerNow || 'none'})`);
if (leftConnections) failures.push(`collab.connections still has ${leftConnections} rows`);
if (leftPresence) failures.push(`collab.presence still has ${leftPresence} rows`);
if (leftLocks) failures.push(`collab.locks still has ${leftLocks} rows`);
const logErrors = fs.readFileSync(SERVER_LOG, 'utf8').split('\n').filter((l) => /\b(ERROR|FATAL|PANIC):/.test(l));
if (logErrors.length) failures.push(`${logErrors.length} ERROR/FATAL/PANIC lines in the server log, first: ${logErrors[0]}`);

console.log('');
console.log(`clients: ${CLIENTS} (${SIO} socket.io-client); ramp ${rampSeconds.toFixed(1)} s; run ${SECONDS} s; drain ${drainSeconds.toFixed(1)} s`);
console.log(`commands: ${stats.events} (${(stats.events / (SECONDS + rampSeconds)).toFixed(0)}/s): joins ${stats.joins} ` +
  `(editor ${stats.joinedEditor}, viewer ${stats.joinedViewer}), acquires ${stats.acquires} (granted ${stats.acquired}, ` +
  `LOCK_HELD ${stats.lockHeld}), locks expired under a client that idled past the TTL ${stats.lockExpired}, saves ${stats.saves}, renews ${stats.renews}, releases ${stats.releases}, leaves ${stats.leaves}; ` +
  `connects ${stats.connects}, disconnects ${stats.closes} (${stats.closesHoldingLock} holding a lock)`);
console.log(`saved resources: ${versions.saved}, versions written: ${versions.versions}`);
console.log(`worker: idle ${mb(idle.rss)} MB VmRSS, ${idle.sockets} sockets, ${idle.files} other descriptors; ` +
  `at the end ${mb(last.rss)} MB, ${last.sockets} sockets, ${last.files} other descriptors (${rampFiles} after the ramp, ` +
  `at most ${filesMax}); sockets beyond connected clients + idle: at most ${fdDevMax} (allowed ${fdSlack})`);
for (const l of memLines) console.log(l);
console.log(`left at the end: connections ${leftConnections}, presence ${leftPresence}, locks ${leftLocks}; ` +
  `server log ERROR/FATAL/PANIC lines: ${logErrors.length}`);
if (failures.length) {
  console.log('\nsoak: FAILED');
  for (const f of failures) console.log('  - ' + f);
  process.exit(1);
}
console.log('\nsoak: PASSED');
process.exit(0);
