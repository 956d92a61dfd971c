// Child process of ab.mjs, the polling counterpart of ../ws/members.mjs,
// measured by the same ../ws/member-room.mjs: passive room members on
// Engine.IO v4 HTTP long-polling.  Each member keeps one GET waiting (a
// keep-alive connection of its own) and posts on another connection of its
// own, as a browser does; it answers pings, and timestamps each presence
// event when the poll answer that carried it has been read to its end.
//
// Like ../ws/lite-client.mjs, it leaves payloads as strings and parses only
// what it needs: socket.io-client by the thousand in one process would
// measure its own decoding, not the server.
//
// Environment: COLLAB_WS_URL (the stack under test, http://host:port),
// COLLAB_JWT_SECRET, BENCH_CHILD_NO.  process.hrtime.bigint() is
// CLOCK_MONOTONIC, the parent's clock.
import http from 'node:http';
import { serveMembers } from '../ws/member-room.mjs';

const URL_ = new URL(process.env.COLLAB_WS_URL);
const SECRET = process.env.COLLAB_JWT_SECRET;
const childNo = Number(process.env.BENCH_CHILD_NO || 0);

/** One HTTP request on agent: resolves { status, text, t } with t the hrtime after its last byte. */
function request(agent, method, query, body) {
  return new Promise((resolve, reject) => {
    const req = http.request({
      host: URL_.hostname, port: URL_.port, method, agent, path: `/socket.io/?EIO=4&transport=polling${query}`,
      headers: body === undefined ? {} : { 'content-type': 'text/plain;charset=UTF-8', 'content-length': Buffer.byteLength(body) },
    }, (res) => {
      const chunks = [];
      res.on('data', (d) => chunks.push(d));
      res.on('end', () => resolve({ status: res.statusCode, text: Buffer.concat(chunks).toString('utf8'), t: process.hrtime.bigint() }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** A minimal Socket.IO client on long-polling; onEvent(raw, t) for every 42[...] packet. */
class PollClient {
  constructor(token, onEvent) {
    this.token = token;
    this.onEvent = onEvent;
    this.getAgent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    this.postAgent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    this.acks = new Map();
    this.nextAck = 1;
    this.closed = false;
    this.connected = null;
  }

  async connect() {
    const h = await request(this.getAgent, 'GET', '');
    if (h.status !== 200 || !h.text.startsWith('0{')) throw new Error(`handshake: ${h.status} ${h.text.slice(0, 200)}`);
    this.sid = JSON.parse(h.text.slice(1)).sid;
    this.query = `&sid=${encodeURIComponent(this.sid)}`;
    const connected = new Promise((resolve, reject) => { this.connected = { resolve, reject }; });
    await this.post(`40${JSON.stringify({ token: this.token })}`);
    this.loop().catch((e) => { if (!this.closed) process.send({ cmd: 'error', message: `poll: ${e.message}` }); });
    return connected;
  }

  async post(body) {
    const r = await request(this.postAgent, 'POST', this.query, body);
    if (r.status !== 200) throw new Error(`POST ${body.slice(0, 40)}: ${r.status} ${r.text.slice(0, 200)}`);
  }

  async loop() {
    while (!this.closed) {
      const r = await request(this.getAgent, 'GET', this.query);
      if (this.closed) return;
      if (r.status !== 200) throw new Error(`poll: ${r.status} ${r.text.slice(0, 200)}`);
      for (const p of r.text.split('\x1e')) {
        if (p === '2') this.post('3').catch(() => {});
        else if (p.startsWith('42[')) this.onEvent(p, r.t);
        else if (p.startsWith('43')) {
          const m = /^43(\d+)/.exec(p);
          const w = m && this.acks.get(Number(m[1]));
          if (w) { this.acks.delete(Number(m[1])); w(p.slice(m[0].length)); }
        } else if (p.startsWith('40')) this.connected?.resolve();
        else if (p.startsWith('44')) this.connected?.reject(new Error(`CONNECT refused: ${p}`));
        else if (p === '1') { this.closed = true; return; }
      }
    }
  }

  emit(event, payload) {
    const id = this.nextAck++;
    const p = new Promise((resolve) => this.acks.set(id, resolve));
    this.post(`42${id}${JSON.stringify([event, payload])}`).catch((e) => process.send({ cmd: 'error', message: e.message }));
    return p;
  }

  close() {
    if (this.closed) return;
    this.closed = true;
    this.post('1').catch(() => {}).finally(() => { this.getAgent.destroy(); this.postAgent.destroy(); });
  }
}

serveMembers({
  secret: SECRET,
  childNo,
  sub: 'poll-member',
  name: 'Poll member',
  connect: (token, onEvent) => new PollClient(token, onEvent),
  closeDelayMs: 500,
});
