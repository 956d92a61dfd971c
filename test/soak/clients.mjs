// Child process of soak.mjs: holds a share of the soak's lightweight
// clients (SoakClient), connects them at the rate it is told, runs each
// one's loop (behavior.mjs) until told to stop, then closes them all and
// reports its counters.  Commands and answers travel over the IPC channel.
import { SoakClient } from './client.mjs';
import { clientLoop, newStats, makeToken, recordProblem, CONNECT_TIMEOUT_MS, ACK_TIMEOUT_MS } from './behavior.mjs';

const URL_ = process.env.COLLAB_WS_URL;
const SECRET = process.env.COLLAB_JWT_SECRET;
const childNo = Number(process.env.SOAK_CHILD_NO);

const stats = newStats();
const clients = [];
let stopping = false;
const sleepers = new Set();

function sleep(ms) {
  if (stopping) return Promise.resolve();
  return new Promise((resolve) => {
    const s = { resolve, timer: null };
    s.timer = setTimeout(() => { sleepers.delete(s); resolve(); }, ms);
    sleepers.add(s);
  });
}

function send(msg) { process.send(msg); }

function makeConn(n, cfg) {
  const token = makeToken(SECRET, { sub: `soak-${childNo}-${n}`, name: `Soak ${childNo}.${n}` }, cfg.tokenTtl);
  const localAddress = cfg.sources[n % cfg.sources.length];
  let c = null;
  const conn = {
    connected: false,
    async connect() {
      c = new SoakClient(URL_, token, {
        localAddress,
        onProblem: (kind, detail) => recordProblem(stats, kind, `client ${childNo}.${n}: ${detail}`),
      });
      await c.connect(CONNECT_TIMEOUT_MS);
      conn.connected = true;
    },
    emit(event, payload) { return c.emit(event, payload, ACK_TIMEOUT_MS); },
    async close() { conn.connected = false; if (c) await c.close(); },
    isOpen() { return c !== null && c.connected; },
  };
  return conn;
}

async function start(cfg) {
  const ctx = {
    stats,
    stopping: () => stopping,
    thinkMs: cfg.thinkMs,
    contentBytes: cfg.contentBytes,
    lockTtlMs: cfg.lockTtlMs,
    sleep,
    pick() {
      const d = Math.floor(Math.random() * cfg.docs);
      const t = Math.floor(Math.random() * cfg.tabs);
      return { doc: `document:soak${d}`, tab: `document:soak${d}/tab:t${t}` };
    },
  };
  // Ramp: connect everyone at about cfg.rampRate per second (this
  // process's share), then start the loops.
  const t0 = Date.now();
  const loops = [];
  let next = 0;
  let rampConnects = 0;
  async function connector() {
    while (next < cfg.count && !stopping) {
      const n = cfg.offset + next;
      const due = t0 + (next * 1000) / cfg.rampRate;
      next++;
      if (due > Date.now()) await sleep(due - Date.now());
      const conn = makeConn(n, cfg);
      clients.push(conn);
      try {
        await conn.connect();
        stats.connects++;
        rampConnects++;
        loops.push(clientLoop(ctx, conn));
      } catch (e) {
        recordProblem(stats, 'ramp_connect', `client ${childNo}.${n}: ${e && e.message || e}`);
      }
    }
  }
  await Promise.all(Array.from({ length: 64 }, connector));
  send({ cmd: 'ramped', rampConnects, ms: Date.now() - t0 });
  await Promise.all(loops);
}

let running = null;
process.on('message', async (msg) => {
  try {
    if (msg.cmd === 'start') {
      running = start(msg.cfg);
    } else if (msg.cmd === 'sample') {
      send({ cmd: 'sample', id: msg.id, connected: clients.filter((c) => c.isOpen()).length, stats: snapshot() });
    } else if (msg.cmd === 'stop') {
      stopping = true;
      for (const s of sleepers) { clearTimeout(s.timer); s.resolve(); }
      sleepers.clear();
      // a loop can wait for an ack or a connect at most 120 s
      await Promise.race([running, new Promise((r) => setTimeout(r, 150000))]);
      await Promise.all(clients.map((c) => Promise.race([c.close(), new Promise((r) => setTimeout(r, 30000))])));
      send({ cmd: 'stopped', stats: snapshot(), open: clients.filter((c) => c.isOpen()).length });
    }
  } catch (e) {
    send({ cmd: 'fatal', message: String(e && e.stack || e) });
  }
});

function snapshot() {
  return JSON.parse(JSON.stringify(stats));
}

process.on('disconnect', () => process.exit(0));
send({ cmd: 'ready' });
