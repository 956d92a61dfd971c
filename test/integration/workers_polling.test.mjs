// Long-polling with collab.workers = 2: each HTTP request of a session may
// reach either worker (each request here opens a TCP connection of its own,
// which the kernel gives to either), and the worker that does not own the
// session relays it to the one that does (docs/design.md, "The relay").
// A relayed poll whose client goes away is withdrawn; an upgrade that lands
// on the other worker is refused and the session keeps polling.
//
// Needs a cluster with collab.workers = 2 (test/integration/workers.sh runs it).
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import {
  WS_URL, newUser, tokenFor, connect, join, ok, save, createDocument, q, waitFor, teardown, eventually,
  metric, rawOpen, sleep, packetsOf,
} from './helpers.mjs';

after(teardown);

before(async () => {
  await eventually(async () => (await metric('collab_workers')) === 2, 'two collab workers run', 15000);
});

const HANDSHAKE = 'EIO=4&transport=polling';
const query = (sid) => `${HANDSHAKE}&sid=${encodeURIComponent(sid)}`;

/**
 * One request on a TCP connection of its own (no keep-alive): the kernel
 * hands it to either worker.  Resolves with {status, text, json}; the
 * request object is in .req for a test that cuts it off.
 */
function fresh(qs, { method = 'GET', body } = {}) {
  const url = new URL(`${WS_URL}/socket.io/?${qs}`);
  let req;
  const p = new Promise((resolve, reject) => {
    req = http.request(url, {
      method,
      agent: false,
      headers: body === undefined ? {} : { 'content-type': 'text/plain;charset=UTF-8', 'content-length': Buffer.byteLength(body) },
    }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d) => { text += d; });
      res.on('end', () => {
        let json = null;
        try { json = JSON.parse(text); } catch { /* text */ }
        resolve({ status: res.statusCode, text, json });
      });
    });
    req.on('error', reject);
    req.end(body);
  });
  p.req = req;
  return p;
}

/** The worker (1 or 2) that owns a sid: its first character is the slot. */
const ownerOf = (sid) => 'AB'.indexOf(sid[0]) + 1;

/** A polling session through CONNECT, every request on a connection of its own. */
async function freshSession(user) {
  const h = await fresh(HANDSHAKE);
  assert.equal(h.status, 200, h.text);
  const sid = JSON.parse(h.text.slice(1)).sid;
  const s = { sid, packets: [] };
  s.post = (body) => fresh(query(sid), { method: 'POST', body });
  s.pinged = 0;
  s.recv = async (prefix, timeout = 5000) => {
    const end = Date.now() + timeout;
    for (;;) {
      const i = s.packets.findIndex((p) => p.startsWith(prefix));
      if (i >= 0) return s.packets.splice(i, 1)[0];
      if (Date.now() > end) throw new Error(`no packet ${prefix}: ${JSON.stringify(s.packets)}`);
      const r = await fresh(query(sid));
      assert.equal(r.status, 200, `poll: ${r.status} ${r.text}`);
      for (const p of packetsOf(r.text)) {
        if (p === '2') {
          assert.equal((await s.post('3')).text, 'ok');
          s.pinged++;
        } else s.packets.push(p);
      }
    }
  };
  /* Polls until a ping came and was answered: the next is a pingInterval away. */
  s.afterPing = async () => {
    const n = s.pinged;
    for (let i = 0; i < 10 && s.pinged === n; i++) {
      const r = await fresh(query(sid));
      assert.equal(r.status, 200, `poll: ${r.status} ${r.text}`);
      for (const p of packetsOf(r.text)) {
        if (p === '2') {
          assert.equal((await s.post('3')).text, 'ok');
          s.pinged++;
        } else s.packets.push(p);
      }
    }
    assert.ok(s.pinged > n, 'a ping came and was answered');
  };
  assert.equal((await s.post(`40${JSON.stringify({ token: tokenFor(user) })}`)).text, 'ok');
  s.connectionId = JSON.parse((await s.recv('40')).slice(2)).sid;
  return s;
}

test('a session\'s requests reach both workers: every one is answered, those for the other worker relayed', async () => {
  const relayed0 = await metric('collab_relayed_requests_total');
  const doc = await createDocument(['t']);
  const u = newUser('Roamer');
  const s = await freshSession(u);
  const [{ worker }] = await q('SELECT worker FROM collab.connections WHERE connection_id = $1', [s.connectionId]);
  assert.equal(worker, `collab worker ${ownerOf(s.sid)}`, 'the sid names the worker that registered the session');
  // 12 acknowledged requests, each a post and a poll on connections of their own
  for (let i = 1; i <= 12; i++) {
    assert.equal((await s.post(`42${i}${JSON.stringify(['presence:leave', { resourceId: doc.tab('t') }])}`)).text, 'ok');
    const ack = JSON.parse((await s.recv(`43${i}[`)).slice(2 + String(i).length))[0];
    assert.equal(ack.error.code, 'NOT_JOINED', `ack ${i}`);
  }
  const relayed = (await metric('collab_relayed_requests_total')) - relayed0;
  console.log(`# ${relayed} requests relayed to the session's worker`);
  assert.ok(relayed >= 1, 'some requests landed on the other worker and were relayed');
  // an event from a client of either worker reaches it
  assert.equal((JSON.parse((await (async () => {
    assert.equal((await s.post(`4299${JSON.stringify(['presence:join', { resourceId: doc.tab('t'), mode: 'viewer' }])}`)).text, 'ok');
    return s.recv('4399[');
  })()).slice(4)))[0].ok, true);
  const other = await connect(newUser('Other'));
  ok(await join(other, doc.tab('t'), 'editor'));
  assert.deepEqual(await save(other, doc.tab('t'), 'seen across workers'), { ok: true, version: 1 });
  const saved = JSON.parse((await s.recv('42["doc:saved"')).slice(2))[1];
  assert.equal(saved.version, 1);
  other.close();
  assert.equal((await s.post('1')).text, 'ok');
});

test('socket.io-client on long-polling, two clients spread over both workers: presence, lock and save reach each other', async () => {
  const relayed0 = await metric('collab_relayed_requests_total');
  const doc = await createDocument(['t']);
  const [anna, ben] = [newUser('Anna'), newUser('Ben')];
  const a = await connect(anna, { transports: ['polling'] });
  const b = await connect(ben, { transports: ['polling'] });
  assert.equal(ok(await join(a, doc.tab('t'), 'editor')).role, 'editor');
  ok(await join(b, doc.tab('t'), 'viewer'));
  await waitFor(a, 'presence:joined', (e) => e.user.userId === ben.sub);
  assert.deepEqual(await save(a, doc.tab('t'), 'hello'), { ok: true, version: 1 });
  await waitFor(b, 'doc:saved', (e) => e.version === 1);
  a.close();
  await waitFor(b, 'lock:released', (e) => e.resourceId === doc.tab('t') && e.reason === 'disconnected');
  b.close();
  assert.ok((await metric('collab_relayed_requests_total')) > relayed0, 'their requests were relayed');
});

test('a relayed poll whose client goes away is withdrawn: the session is lost, as when a local poll goes away', async () => {
  const doc = await createDocument(['t']);
  const watcher = await connect(newUser('Watcher'));
  ok(await join(watcher, doc.tab('t'), 'viewer'));
  // find a poll that is relayed: a session whose waiting poll raised the counter
  for (let tries = 0; tries < 20; tries++) {
    const u = newUser('Gone');
    const s = await freshSession(u);
    assert.equal((await s.post(`421${JSON.stringify(['presence:join', { resourceId: doc.tab('t'), mode: 'viewer' }])}`)).text, 'ok');
    await s.recv('431[');
    await s.recv('42["presence:state"');
    await s.afterPing();
    const relayed0 = await metric('collab_relayed_requests_total');
    const poll = fresh(query(s.sid));
    await sleep(150);
    const wasRelayed = (await metric('collab_relayed_requests_total')) > relayed0;
    poll.req.destroy();
    await poll.catch(() => {});
    const left = await waitFor(watcher, 'presence:left', (e) => e.user.userId === u.sub, 5000);
    assert.equal(left.reason, 'disconnected');
    await eventually(async () => (await fresh(query(s.sid))).status === 400, 'the session is gone');
    if (wasRelayed) return;
  }
  assert.fail('no waiting poll landed on the other worker in 20 tries');
});

test('an upgrade that lands on the other worker is refused 400; the session keeps polling, and one on its own worker upgrades', async () => {
  let refused = 0;
  let probed = 0;
  for (let tries = 0; tries < 40 && (refused === 0 || probed === 0); tries++) {
    const s = await freshSession(newUser('Upgrade'));
    try {
      const ws = await rawOpen({ query: `EIO=4&transport=websocket&sid=${s.sid}` });
      probed++;
      ws.send('2probe');
      await ws.waitFrame('3probe');
      ws.ws.close();
    } catch (e) {
      assert.equal(e.statusCode, 400, e.message);
      refused++;
    }
    // either way the session still polls
    assert.equal((await s.post(`427${JSON.stringify(['presence:leave', { resourceId: 'document:x' }])}`)).text, 'ok');
    assert.equal(JSON.parse((await s.recv('437[')).slice(3))[0].error.code, 'NOT_JOINED');
    await s.post('1');
  }
  console.log(`# upgrades: ${probed} probed on the session's worker, ${refused} refused on the other`);
  assert.ok(refused > 0 && probed > 0, `both cases seen: ${probed} probed, ${refused} refused`);
});

test('socket.io-client with its default transports on two workers: every client is served, on WebSocket or, when its upgrade landed elsewhere, on polling', async () => {
  const doc = await createDocument(['t']);
  const clients = await Promise.all(Array.from({ length: 10 }, (_, i) => connect(newUser(`Default${i}`), { transports: ['polling', 'websocket'] })));
  await sleep(500);
  for (const s of clients) ok(await join(s, doc.tab('t'), 'viewer'));
  const names = clients.map((s) => s.io.engine.transport.name);
  console.log(`# transports after the upgrade attempts: ${names.filter((n) => n === 'websocket').length} websocket, ${names.filter((n) => n === 'polling').length} polling`);
  for (const s of clients) s.close();
});
