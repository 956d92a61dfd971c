// Idle connections held by one worker: opens N Socket.IO connections (split
// over child processes, spread over several loopback source addresses since
// one address has ~28k ephemeral ports), then prints the worker's memory
// per connection and the lock round trip with all of them open.
//
//   node idle-conns.mjs            (environment: COLLAB_WS_URL, COLLAB_JWT_SECRET,
//                                   WORKER_PID, IDLE_N=50000, IDLE_PROCS=4)
// Run by idle-conns.sh, which sets up the cluster and the descriptor limits.
import { fork } from 'node:child_process';
import fs from 'node:fs';
import WebSocket from 'ws';
import { makeToken } from './token.mjs';

const URL_ = process.env.COLLAB_WS_URL;
const SECRET = process.env.COLLAB_JWT_SECRET;
const wsUrl = URL_.replace(/^http/, 'ws') + '/socket.io/?EIO=4&transport=websocket';

/* One connection that answers pings and does nothing else. */
function openIdle(token, localAddress) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(wsUrl, { perMessageDeflate: false, localAddress });
    const timer = setTimeout(() => { ws.terminate(); reject(new Error('connect timeout')); }, 120000);
    ws.on('message', (data) => {
      const s = data.toString();
      if (s === '2') { ws.send('3'); return; }
      if (s[0] === '0') { ws.send('40' + JSON.stringify({ token })); return; }
      if (s.startsWith('40')) { clearTimeout(timer); resolve(ws); return; }
      if (s.startsWith('44')) { clearTimeout(timer); reject(new Error('connect_error ' + s)); }
    });
    ws.on('error', (e) => { clearTimeout(timer); reject(e); });
  });
}

if (process.argv[2] === 'child') {
  // child: open `count` connections from `addr`, report, then hold them
  const count = Number(process.argv[3]);
  const addr = process.argv[4];
  const tag = process.argv[5];
  const token = makeToken(SECRET, { sub: `idle-${tag}`, name: `Idle ${tag}` }, 7200);
  const socks = [];
  let failed = 0;
  let next = 0;
  const worker = async () => {
    while (next < count) {
      next++;
      try { socks.push(await openIdle(token, addr)); } catch (e) { failed++; if (failed < 3) console.error(`${tag}: ${e.message}`); }
    }
  };
  await Promise.all(Array.from({ length: 200 }, worker));
  process.send({ open: socks.length, failed });
  process.on('message', (m) => { if (m === 'close') { for (const s of socks) s.terminate(); setTimeout(() => process.exit(0), 200); } });
} else {
  const N = Number(process.env.IDLE_N || 50000);
  const PROCS = Number(process.env.IDLE_PROCS || 4);
  const wpid = process.env.WORKER_PID;
  const mem = () => {
    const st = fs.readFileSync(`/proc/${wpid}/status`, 'utf8');
    const kb = (k) => Number((st.match(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm')) || [0, 0])[1]);
    return { rss: kb('VmRSS'), anon: kb('RssAnon'), fds: fs.readdirSync(`/proc/${wpid}/fd`).length };
  };
  const lockLoop = async (iters) => {
    const token = makeToken(SECRET, { sub: 'idle-locker', name: 'Locker' }, 7200);
    const ws = await openIdle(token, '127.0.0.1');
    let id = 1;
    const waiters = new Map();
    ws.on('message', (d) => {
      const s = d.toString();
      const m = /^43(\d+)/.exec(s);
      if (m && waiters.has(Number(m[1]))) { const w = waiters.get(Number(m[1])); waiters.delete(Number(m[1])); w(s); }
    });
    const call = (ev, p) => new Promise((res) => { const i = id++; waiters.set(i, res); ws.send(`42${i}${JSON.stringify([ev, p])}`); });
    const rid = 'document:bench/tab:lock';
    await call('presence:join', { resourceId: rid, mode: 'viewer' });
    const acq = [];
    for (let i = 0; i < iters; i++) {
      const t0 = process.hrtime.bigint();
      const r = await call('lock:acquire', { resourceId: rid });
      acq.push(Number(process.hrtime.bigint() - t0) / 1e6);
      if (!/"ok": ?true/.test(r)) throw new Error('acquire failed: ' + r.slice(0, 200));
      await call('lock:release', { resourceId: rid });
    }
    ws.terminate();
    acq.sort((a, b) => a - b);
    const pct = (p) => acq[Math.min(acq.length - 1, Math.ceil((p / 100) * acq.length) - 1)].toFixed(2);
    return `p50 ${pct(50)} p99 ${pct(99)} max ${acq[acq.length - 1].toFixed(2)} ms (n=${iters})`;
  };

  const before = mem();
  console.log(`worker ${wpid} before: RSS ${before.rss} kB (anon ${before.anon} kB), ${before.fds} descriptors`);
  console.log(`lock:acquire -> ack, no idle connections: ${await lockLoop(300)}`);
  const t0 = Date.now();
  const kids = [];
  const per = Math.ceil(N / PROCS);
  for (let i = 0; i < PROCS; i++) {
    const n = Math.min(per, N - i * per);
    // a source address per child: 127.0.0.2, .3, ... (each ~28k ports)
    const child = fork(new URL(import.meta.url).pathname, ['child', String(n), `127.0.0.${2 + i}`, String(i)]);
    kids.push(new Promise((res) => child.once('message', (m) => res({ child, ...m }))));
  }
  const done = await Promise.all(kids);
  const open = done.reduce((a, k) => a + k.open, 0);
  const failed = done.reduce((a, k) => a + k.failed, 0);
  console.log(`${open} connections open (${failed} failed) in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  // wait until the worker has registered them all (its CPU goes quiet)
  const cpuNs = () => Number(fs.readFileSync(`/proc/${wpid}/schedstat`, 'utf8').split(' ')[0]);
  for (let quiet = 0, i = 0; quiet < 2 && i < 300; i++) {
    const c0 = cpuNs();
    await new Promise((r) => setTimeout(r, 1000));
    quiet = cpuNs() - c0 < 0.05e9 ? quiet + 1 : 0;
  }
  console.log(`worker quiet ${((Date.now() - t0) / 1000).toFixed(1)} s after the first connection`);
  const after = mem();
  const per_conn = ((after.rss - before.rss) * 1024) / Math.max(open, 1);
  console.log(`worker after: RSS ${after.rss} kB (anon ${after.anon} kB), ${after.fds} descriptors`);
  console.log(`worker memory per idle connection: ${(per_conn / 1024).toFixed(2)} KiB RSS (anon ${(((after.anon - before.anon) * 1024) / Math.max(open, 1) / 1024).toFixed(2)} KiB)`);
  console.log(`lock:acquire -> ack with ${open} idle connections open: ${await lockLoop(300)}`);
  const cpu0 = fs.readFileSync(`/proc/${wpid}/schedstat`, 'utf8').split(' ').map(Number)[0];
  await new Promise((r) => setTimeout(r, 5000));
  const cpu1 = fs.readFileSync(`/proc/${wpid}/schedstat`, 'utf8').split(' ').map(Number)[0];
  console.log(`worker CPU while ${open} connections idle: ${((cpu1 - cpu0) / 5e9 * 100).toFixed(1)}% of a core`);
  for (const k of done) k.child.send('close');
  console.log(`RESULT idle_open=${open} idle_failed=${failed} kib_per_conn=${(per_conn / 1024).toFixed(2)}`);
}
