// Engine.IO v4 HTTP long-polling at the wire level (raw HTTP requests), as
// docs/protocol.md ("Transports") describes it: the handshake, the reference
// server's 400 answers, packets joined by \x1e, pings and pongs, DISCONNECT
// and close packets, binary and malformed bodies, the upgrade to WebSocket,
// CORS; then the hostile cases: polls and posts with unknown or other
// sessions' sids, concurrent polls and posts, oversized, slow and huge
// bodies, and unauthenticated sessions piling up.  Each case has an exact
// outcome, and a bystander (socket.io-client) keeps being served.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import {
  WS_URL, newUser, tokenFor, connect, ok, join, save, createDocument, q, teardown, eventually, waitFor,
  rawOpen, rawConnect, startBystander, setWorkerConf, resetWorkerConf, metric, sleep,
  pollFetch, pollOpen, pollConnect, packetsOf, nowSec,
} from './helpers.mjs';

let bystander;

before(async () => {
  bystander = await startBystander('polling');
});
after(async () => {
  bystander?.socket.close();
  await teardown();
});

const HANDSHAKE = 'EIO=4&transport=polling';
const query = (sid) => `${HANDSHAKE}&sid=${encodeURIComponent(sid)}`;
const leave = (id, rid) => `42${id}${JSON.stringify(['presence:leave', { resourceId: rid }])}`;

/** An error answer exactly as the reference server's: 400 (or status), JSON {code, message}. */
function assertError(r, status, code, message, what) {
  assert.equal(r.status, status, `${what}: status (${r.text})`);
  assert.match(r.headers.get('content-type'), /^application\/json/, `${what}: content type`);
  assert.equal(r.json?.code, code, `${what}: code (${r.text})`);
  if (message instanceof RegExp) assert.match(r.json.message, message, `${what}: message`);
  else assert.equal(r.json.message, message, `${what}: message`);
}

/** The session of sid is gone: a poll is answered 400 "Session ID unknown". */
async function assertGone(sid, what) {
  await eventually(async () => (await pollFetch(query(sid))).status === 400, `${what}: the session is gone`, 4000, 50);
  assertError(await pollFetch(query(sid)), 400, 1, 'Session ID unknown', what);
}

/**
 * An HTTP request written by hand on a socket of its own: resolves with the
 * socket and a promise of everything the server sends until it closes.
 */
function rawHttp(head, bodyPart = '') {
  const url = new URL(WS_URL);
  return new Promise((resolve, reject) => {
    const s = net.connect(Number(url.port), url.hostname, () => {
      s.write(head + bodyPart);
      let data = '';
      s.on('data', (d) => { data += d.toString('latin1'); });
      const ended = new Promise((r) => s.on('close', () => r(data)));
      resolve({ socket: s, ended, data: () => data });
    });
    s.on('error', () => {});
    s.once('error', reject);
  });
}

function postHead(sid, length, extra = '') {
  const url = new URL(WS_URL);
  return `POST /socket.io/?${query(sid)} HTTP/1.1\r\nHost: ${url.host}\r\nContent-Type: text/plain;charset=UTF-8\r\n` +
    `Content-Length: ${length}\r\n${extra}\r\n`;
}

describe('handshake and errors', () => {
  test('the handshake GET answers the open packet: sid, upgrades ["websocket"], the ping settings, maxPayload', async () => {
    const r = await pollFetch(HANDSHAKE);
    assert.equal(r.status, 200);
    assert.equal(r.headers.get('content-type'), 'text/plain; charset=UTF-8');
    assert.equal(r.headers.get('cache-control'), 'no-store');
    assert.ok(r.text.startsWith('0{'), r.text);
    const open = JSON.parse(r.text.slice(1));
    assert.deepEqual(Object.keys(open).sort(), ['maxPayload', 'pingInterval', 'pingTimeout', 'sid', 'upgrades']);
    assert.deepEqual(open.upgrades, ['websocket']);
    assert.equal(open.pingInterval, 1000);
    assert.equal(open.pingTimeout, 1000);
    assert.equal(open.maxPayload, 64 * 1024);
    // URL-safe, 20 characters, the first naming the worker (slot 0: "A")
    assert.match(open.sid, /^A[A-Za-z0-9_-]{19}$/);
    await pollFetch(query(open.sid), { method: 'POST', body: '1' });
  });

  const cases = [
    ['no EIO', 'transport=polling', 400, 5, /^Unsupported protocol version/],
    ['EIO=3', 'EIO=3&transport=polling', 400, 5, /^Unsupported protocol version/],
    ['EIO=abc', 'EIO=abc&transport=polling', 400, 5, /^Unsupported protocol version/],
    ['no transport', 'EIO=4', 400, 0, 'Transport unknown'],
    ['transport=flashsocket', 'EIO=4&transport=flashsocket', 400, 0, 'Transport unknown'],
    ['transport=websocket without an upgrade', 'EIO=4&transport=websocket', 400, 3, /^Bad request/],
    ['an unknown sid', query('AAAAAAAAAAAAAAAAAAAA'), 400, 1, 'Session ID unknown'],
    ['a sid of another form', query('x'), 400, 1, 'Session ID unknown'],
    ['a sid of a worker that does not run', query('BAAAAAAAAAAAAAAAAAAA'), 400, 1, 'Session ID unknown'],
  ];
  for (const [what, qs, status, code, message] of cases) {
    test(`GET with ${what}: ${status} {"code":${code}}`, async () => {
      assertError(await pollFetch(qs), status, code, message, what);
    });
  }
  test('POST without a sid, PUT and DELETE: 400, the handshake is a GET', async () => {
    assertError(await pollFetch(HANDSHAKE, { method: 'POST', body: '40' }), 400, 2, 'Bad handshake method', 'POST handshake');
    assertError(await pollFetch(HANDSHAKE, { method: 'PUT', body: 'x' }), 400, 2, 'Bad handshake method', 'PUT');
    assertError(await pollFetch(query('AAAAAAAAAAAAAAAAAAAA'), { method: 'DELETE' }), 400, 3, /^Bad request/, 'DELETE with a sid');
  });
  test('POST with an unknown sid: 400 {"code":1}, and the connection serves its next request', async () => {
    const r = await pollFetch(query('AAAAAAAAAAAAAAAAAAAA'), { method: 'POST', body: leave(1, 'document:x') });
    assertError(r, 400, 1, 'Session ID unknown', 'POST unknown sid');
    // the same keep-alive connection: its body was read to the end
    const c = await rawHttp(postHead('AAAAAAAAAAAAAAAAAAAA', 3) + 'abc' +
      `GET /socket.io/?${HANDSHAKE} HTTP/1.1\r\nHost: x\r\n\r\n`);
    await eventually(() => /\r\n\r\n0\{"sid"/.test(c.data()), 'the second request on the connection is answered', 3000, 20);
    assert.match(c.data(), /^HTTP\/1\.1 400 /);
    c.socket.destroy();
    await pollFetch(query(c.data().match(/0\{"sid":"([^"]+)"/)[1]), { method: 'POST', body: '1' });
  });
  test('an invalid EIO or transport in any HTTP request of a live session (GET, POST, preflight, WebSocket upgrade): 400 with its code; the session is untouched', async () => {
    const c = await pollConnect(tokenFor(newUser('Untouched')));
    const sid = encodeURIComponent(c.sid);
    const bad = [
      [`EIO=3&transport=polling&sid=${sid}`, 5, /^Unsupported protocol version/],
      [`transport=polling&sid=${sid}`, 5, /^Unsupported protocol version/],
      [`EIO=4&transport=flashsocket&sid=${sid}`, 0, 'Transport unknown'],
      [`EIO=4&sid=${sid}`, 0, 'Transport unknown'],
      [`EIO=4&transport=websocket&sid=${sid}`, 3, 'Bad request: transport=websocket needs a WebSocket upgrade'],
    ];
    for (const [qs, code, message] of bad) {
      assertError(await pollFetch(qs), 400, code, message, `GET ${qs}`);
      assertError(await pollFetch(qs, { method: 'POST', body: '3' }), 400, code, message, `POST ${qs}`);
      assertError(await pollFetch(qs, { method: 'OPTIONS', headers: { origin: 'http://x.example', 'access-control-request-method': 'POST' } }),
        400, code, message, `OPTIONS ${qs}`);
    }
    for (const qs of [`EIO=3&transport=websocket&sid=${sid}`, `EIO=4&transport=polling&sid=${sid}`, `EIO=4&transport=flashsocket&sid=${sid}`]) {
      await assert.rejects(rawOpen({ query: qs }), (e) => e.statusCode === 400, `a WebSocket upgrade with ${qs}`);
    }
    // the session was not touched by any of them
    assert.equal((await c.emitAck(1, 'presence:leave', { resourceId: 'document:x' })).error.code, 'NOT_JOINED');
    await c.close();
  });
  test('the bystander is still served', async () => bystander.served('polling errors'));
});

describe('messages', () => {
  test('CONNECT, then events posted together (joined by \\x1e) are acknowledged, the acks polled together', async () => {
    const u = newUser('Poller');
    const c = await pollConnect(tokenFor(u));
    assert.deepEqual(await q('SELECT user_id FROM collab.connections WHERE connection_id = $1', [c.connectionId]), [{ user_id: u.sub }]);
    const r = await c.post(`${leave(1, 'document:none')}\x1e${leave(2, 'document:none')}`);
    assert.equal(r.status, 200);
    assert.equal(r.text, 'ok');
    assert.equal(r.headers.get('content-type'), 'text/plain; charset=UTF-8');
    const a1 = JSON.parse((await c.recv('431[')).slice(3))[0];
    const a2 = JSON.parse((await c.recv('432[')).slice(3))[0];
    assert.equal(a1.error.code, 'NOT_JOINED');
    assert.equal(a2.error.code, 'NOT_JOINED');
    await c.close();
  });

  test('a poll waits until a packet is queued for it, and returns with it', async () => {
    const doc = await createDocument(['t']);
    const c = await pollConnect(tokenFor(newUser('Waiter')));
    assert.equal((await c.emitAck(1, 'presence:join', { resourceId: doc.tab('t'), mode: 'viewer' })).ok, true);
    await c.recv('42["presence:state"');
    const other = await connect(newUser('Joiner'));
    const t0 = Date.now();
    const poll = c.get();
    await sleep(100);
    ok(await join(other, doc.tab('t'), 'viewer'));
    const r = await poll;
    const packets = packetsOf(r.text);
    assert.ok(packets.some((p) => p.startsWith('42["presence:joined"')), `the waiting poll returned the event: ${r.text}`);
    assert.ok(Date.now() - t0 < 900, 'before the next ping would have ended it');
    other.close();
    await c.close();
  });

  test('pings on long-polling: a poll gets "2" every pingInterval; answered "3", the session stays; unanswered, it ends', async () => {
    const c = await pollConnect(tokenFor(newUser('Pinged')), { autoPong: false });
    await c.recv('2', 3000);
    assert.equal((await c.post('3')).text, 'ok');
    await c.recv('2', 3000);
    assert.equal((await c.post('3')).text, 'ok');
    await c.recv('2', 3000);
    // no pong this time: after pingTimeout the session is over
    await assertGone(c.sid, 'no pong');
    // an unclean loss: the connection is kept, detached, for collab.disconnect_grace
    await eventually(async () => (await q('SELECT detached_at IS NOT NULL AS d FROM collab.connections WHERE connection_id = $1', [c.connectionId]))[0]?.d === true,
      'the connection is detached in collab.connections');
  });

  test('DISCONNECT (41) ends the Socket.IO session; the session stays open and pinging; a new CONNECT starts another', async () => {
    const u = newUser('Again');
    const c = await pollConnect(tokenFor(u));
    const first = c.connectionId;
    assert.equal((await c.post('41')).text, 'ok');
    await eventually(async () => (await q('SELECT 1 FROM collab.connections WHERE connection_id = $1', [first])).length === 0,
      'the first Socket.IO session is gone');
    await c.recv('2', 3000);
    const second = await c.connect(tokenFor(u));
    assert.notEqual(second, first);
    assert.deepEqual(await q('SELECT user_id FROM collab.connections WHERE connection_id = $1', [second]), [{ user_id: u.sub }]);
    await c.close();
  });

  test('a waiting poll whose client goes away: the session is lost at once (presence:left "disconnected", lock:suspended), as with the reference server', async () => {
    const doc = await createDocument(['t']);
    const watcher = await connect(newUser('Watcher'));
    ok(await join(watcher, doc.tab('t'), 'viewer'));
    const u = newUser('Vanishing');
    const c = await pollConnect(tokenFor(u));
    assert.equal((await c.emitAck(1, 'presence:join', { resourceId: doc.tab('t'), mode: 'editor' })).role, 'editor');
    await c.recv('2', 3000);			// the next ping is a pingInterval away
    const url = new URL(WS_URL);
    const t0 = Date.now();
    const raw = await rawHttp(`GET /socket.io/?${query(c.sid)} HTTP/1.1\r\nHost: ${url.host}\r\n\r\n`);
    await sleep(100);
    raw.socket.end();
    const left = await waitFor(watcher, 'presence:left', (e) => e.user.userId === u.sub, 3000);
    assert.equal(left.reason, 'disconnected');
    assert.ok(Date.now() - t0 < 900, `before a ping would have found it gone: ${Date.now() - t0} ms`);
    // an unclean loss: the lock is kept for collab.disconnect_grace
    const suspended = await waitFor(watcher, 'lock:suspended', (e) => e.resourceId === doc.tab('t'));
    assert.equal(suspended.holder.userId, u.sub);
    c.closed = true;
    await assertGone(c.sid, 'client gone');
    watcher.close();
  });

  test('a close packet: "ok", the waiting poll gets a noop, the session is gone', async () => {
    const c = await pollConnect(tokenFor(newUser('Leaver')));
    const poll = c.get();
    await sleep(50);
    assert.equal((await c.post('1')).text, 'ok');
    assert.equal((await poll).text, '6');
    c.closed = true;
    await assertGone(c.sid, 'close packet');
  });

  test('binary: an application/octet-stream body is refused 400 and closes the session; so does a "b" packet', async () => {
    const c1 = await pollConnect(tokenFor(newUser('Octets')));
    const r1 = await c1.post('4hello', { headers: { 'content-type': 'application/octet-stream' } });
    assertError(r1, 400, 3, 'Bad request: binary content', 'octet-stream');
    c1.closed = true;
    await assertGone(c1.sid, 'octet-stream');

    const c2 = await pollConnect(tokenFor(newUser('Base64')));
    assertError(await c2.post('bAQIDBA=='), 400, 3, 'Bad request', 'a base64 binary packet');
    const r = await c2.get();
    assert.equal(r.text, '1', 'the close packet');
    c2.closed = true;
    await assertGone(c2.sid, 'base64 packet');
  });

  test('a BINARY_EVENT with an ack id: BAD_REQUEST, the session stays', async () => {
    const c = await pollConnect(tokenFor(newUser('BinEvent')));
    assert.equal((await c.post('451-7["doc:save",{"_placeholder":true,"num":0}]')).text, 'ok');
    const ack = JSON.parse((await c.recv('437[')).slice(3))[0];
    assert.equal(ack.error.code, 'BAD_REQUEST');
    assert.equal((await c.emitAck(8, 'presence:leave', { resourceId: 'document:x' })).error.code, 'NOT_JOINED');
    await c.close();
  });

  for (const [what, body] of [['not a packet', 'abc'], ['an empty packet', `${leave(1, 'document:x')}\x1e\x1e`],
    ['an EVENT before CONNECT', leave(1, 'document:x')], ['an open packet from the client', '0{}']]) {
    test(`a body with ${what}: 400, the next poll gets the close packet, the session is gone`, async () => {
      const c = await pollOpen();
      assertError(await c.post(body), 400, 3, 'Bad request', what);
      const r = await c.get();
      assert.equal(packetsOf(r.text).at(-1), '1', `${what}: ${r.text}`);
      c.closed = true;
      await assertGone(c.sid, what);
    });
  }
  test('the bystander is still served', async () => bystander.served('polling messages'));
});

describe('a session the server closes', () => {
  // a ping's deadline longer than the wait for the token's expiry
  before(() => setWorkerConf('collab.ping_timeout', '5s'));
  after(() => resetWorkerConf('collab.ping_timeout'));

  test('a token that expires while a ping is unanswered, the client polling no more: the room hears "disconnected" (the server ended it), not "timeout"', async () => {
    const doc = await createDocument(['t']);
    const u = newUser('Unpolled');
    const watcher = await connect(newUser('Watcher'));
    ok(await join(watcher, doc.tab('t')));
    const c = await pollConnect(tokenFor(u, { exp: nowSec() + 3 }), { autoPong: false });
    const ack = await c.emitAck(1, 'presence:join', { resourceId: doc.tab('t'), mode: 'editor' });
    assert.equal(ack.ok, true, JSON.stringify(ack));
    assert.equal(ack.role, 'editor');
    // the first ping, never answered; no poll takes the expiry's DISCONNECT,
    // so the ping's deadline passes before the close could be flushed
    await c.recv('2', 3000);
    const released = await waitFor(watcher, 'lock:released', (e) => e.resourceId === doc.tab('t'), 15000);
    assert.equal(released.reason, 'disconnected');
    assert.equal(released.previousHolder.userId, u.sub);
    const left = await waitFor(watcher, 'presence:left', (e) => e.resourceId === doc.tab('t') && e.user?.userId === u.sub, 15000);
    assert.equal(left.reason, 'disconnected');
    // ended, not kept for a recovery
    await assertGone(c.sid, 'expired');
    assert.deepEqual(await q('SELECT connection_id FROM collab.connections WHERE connection_id = $1', [c.connectionId]), []);
    watcher.close();
  });
});

describe('the upgrade to WebSocket', () => {
  test('2probe, 3probe, a noop to the waiting poll, 5: the session moves over; polling it afterwards is 400', async () => {
    const u = newUser('Upgrader');
    const c = await pollConnect(tokenFor(u));
    const poll = c.get();
    await sleep(50);
    const ws = await rawOpen({ query: `EIO=4&transport=websocket&sid=${c.sid}`, autoPong: true });
    ws.send('2probe');
    await ws.waitFrame('3probe');
    assert.equal((await poll).text, '6', 'the waiting poll returns with a noop');
    ws.send('5');
    const ack = await ws.emitAck(4, 'presence:leave', { resourceId: 'document:none' });
    assert.equal(ack.error.code, 'NOT_JOINED');
    assert.deepEqual(await q('SELECT user_id FROM collab.connections WHERE connection_id = $1', [c.connectionId]), [{ user_id: u.sub }],
      'the same Socket.IO session');
    assertError(await c.get(), 400, 3, 'Bad request', 'a poll after the upgrade');
    assertError(await c.post('3'), 400, 3, 'Bad request', 'a post after the upgrade');
    // and pings now come over the WebSocket
    const n = ws.frames.length;
    await ws.waitFrame('2', 3000, n);
    c.closed = true;
    ws.ws.close();
  });

  test('packets queued while the client pauses polling go out on the WebSocket after the upgrade', async () => {
    const doc = await createDocument(['t']);
    const c = await pollConnect(tokenFor(newUser('Paused')));
    assert.equal((await c.emitAck(1, 'presence:join', { resourceId: doc.tab('t'), mode: 'viewer' })).ok, true);
    const ws = await rawOpen({ query: `EIO=4&transport=websocket&sid=${c.sid}`, autoPong: true });
    ws.send('2probe');
    await ws.waitFrame('3probe');
    // no poll now: an event for the session waits in its queue
    const other = await connect(newUser('Meanwhile'));
    ok(await join(other, doc.tab('t'), 'viewer'));
    await sleep(100);
    ws.send('5');
    await ws.waitFrame('42["presence:joined"');
    other.close();
    c.closed = true;
    ws.ws.close();
  });

  test('refused upgrades: an unknown sid, a WebSocket session\'s sid, a second probe: HTTP 400; the session stays on polling', async () => {
    await assert.rejects(rawOpen({ query: 'EIO=4&transport=websocket&sid=AAAAAAAAAAAAAAAAAAAA' }), (e) => e.statusCode === 400);
    const wsSession = await rawOpen();
    const open = JSON.parse((await wsSession.waitFrame('0{')).slice(1));
    await assert.rejects(rawOpen({ query: `EIO=4&transport=websocket&sid=${open.sid}` }), (e) => e.statusCode === 400);
    wsSession.ws.close();
    const c = await pollConnect(tokenFor(newUser('Twice')));
    const probe = await rawOpen({ query: `EIO=4&transport=websocket&sid=${c.sid}` });
    await assert.rejects(rawOpen({ query: `EIO=4&transport=websocket&sid=${c.sid}` }), (e) => e.statusCode === 400);
    probe.ws.close();
    assert.equal((await c.emitAck(2, 'presence:leave', { resourceId: 'document:x' })).error.code, 'NOT_JOINED');
    await c.close();
  });

  test('a probe that sends anything but 2probe and 5 is closed; the session stays on polling', async () => {
    const c = await pollConnect(tokenFor(newUser('BadProbe')));
    const probe = await rawOpen({ query: `EIO=4&transport=websocket&sid=${c.sid}` });
    probe.send('42["presence:leave",{"resourceId":"x"}]');
    await probe.waitClosed(3000);
    assert.equal((await c.emitAck(3, 'presence:leave', { resourceId: 'document:x' })).error.code, 'NOT_JOINED');
    await c.close();
  });
  test('the bystander is still served', async () => bystander.served('upgrades'));
});

describe('CORS (collab.allowed_origins)', () => {
  const allowed = 'https://ward.hospital.example';
  before(async () => setWorkerConf('collab.allowed_origins', allowed));
  after(async () => resetWorkerConf('collab.allowed_origins'));

  test('an allowed origin: its polls and posts echo it with credentials; its preflight is 204 with the methods and header', async () => {
    const headers = { origin: allowed };
    const r = await pollFetch(HANDSHAKE, { headers });
    assert.equal(r.status, 200);
    assert.equal(r.headers.get('access-control-allow-origin'), allowed);
    assert.equal(r.headers.get('access-control-allow-credentials'), 'true');
    const sid = JSON.parse(r.text.slice(1)).sid;
    const p = await pollFetch(query(sid), { method: 'POST', body: `40${JSON.stringify({ token: tokenFor(newUser('Ward')) })}`, headers });
    assert.equal(p.headers.get('access-control-allow-origin'), allowed);
    const g = await pollFetch(query(sid), { headers });
    assert.equal(g.headers.get('access-control-allow-origin'), allowed);
    assert.match(g.text, /^40\{"sid"/, 'the CONNECT is accepted');
    await pollFetch(query(sid), { method: 'POST', body: '1', headers });
    const pre = await pollFetch(HANDSHAKE, {
      method: 'OPTIONS',
      headers: { origin: allowed, 'access-control-request-method': 'POST', 'access-control-request-headers': 'content-type' },
    });
    assert.equal(pre.status, 204);
    assert.equal(pre.headers.get('access-control-allow-origin'), allowed);
    assert.equal(pre.headers.get('access-control-allow-credentials'), 'true');
    assert.equal(pre.headers.get('access-control-allow-methods'), 'GET, POST');
    assert.equal(pre.headers.get('access-control-allow-headers'), 'content-type');
  });

  test('a refused origin: no CORS headers (a browser hides the answer), its CONNECT is FORBIDDEN as on a WebSocket, its preflight 403', async () => {
    const headers = { origin: 'https://evil.example' };
    const c = await pollOpen({ headers });
    const h = await pollFetch(HANDSHAKE, { headers });
    assert.equal(h.status, 200);
    assert.equal(h.headers.get('access-control-allow-origin'), null);
    await pollFetch(query(JSON.parse(h.text.slice(1)).sid), { method: 'POST', body: '1' });
    assert.equal((await c.post(`40${JSON.stringify({ token: tokenFor(newUser('Evil')) })}`)).text, 'ok');
    const f = await c.recv('44');
    assert.equal(JSON.parse(f.slice(2)).data.code, 'FORBIDDEN');
    const pre = await pollFetch(HANDSHAKE, { method: 'OPTIONS', headers: { ...headers, 'access-control-request-method': 'POST' } });
    assert.equal(pre.status, 403);
    assert.equal(pre.headers.get('access-control-allow-origin'), null);
    assert.equal(pre.json.code, 4);
    await c.close();
  });
});

describe('hostile polling', () => {
  test('a second poll while one waits: 400, the first gets the close packet, the session is gone', async () => {
    const c = await pollConnect(tokenFor(newUser('Doubled')));
    const first = c.get();
    await sleep(50);
    assertError(await c.get(), 400, 3, 'Bad request', 'the second poll');
    assert.equal((await first).text, '1');
    c.closed = true;
    await assertGone(c.sid, 'two polls');
    // not the owner's doing, perhaps: lost, not ended, so its locks are kept for the grace
    await eventually(async () => (await q('SELECT detached_at IS NOT NULL AS d FROM collab.connections WHERE connection_id = $1', [c.connectionId]))[0]?.d === true,
      'the connection is detached in collab.connections');
  });

  test('another session\'s sid is that session\'s credential: a poll with it while the owner waits closes the session (as two polls do)', async () => {
    const victim = await pollConnect(tokenFor(newUser('Victim')));
    const waiting = victim.get();
    await sleep(50);
    assertError(await pollFetch(query(victim.sid)), 400, 3, 'Bad request', 'the intruder\'s poll');
    assert.equal((await waiting).text, '1');
    victim.closed = true;
    await assertGone(victim.sid, 'intruder');
  });

  test('polls and posts with a WebSocket session\'s sid: 400 {"code":3} (its transport is not polling); the WebSocket session goes on', async () => {
    const { client: ws, sid } = await rawConnect(tokenFor(newUser('OnWebSocket')));
    const open = JSON.parse(ws.frames[0].slice(1));
    assertError(await pollFetch(query(open.sid)), 400, 3, /^Bad request/, 'a poll with a WebSocket sid');
    assertError(await pollFetch(query(open.sid), { method: 'POST', body: leave(1, 'document:x') }), 400, 3, /^Bad request/,
      'a post with a WebSocket sid');
    assert.equal(ws.frames.some((f) => typeof f === 'string' && f.startsWith('431')), false, 'the posted packet was not handled');
    assert.equal((await ws.emitAck(2, 'presence:leave', { resourceId: 'document:x' })).error.code, 'NOT_JOINED');
    assert.deepEqual(await q('SELECT count(*)::int AS n FROM collab.connections WHERE connection_id = $1', [sid]), [{ n: 1 }]);
    ws.ws.close();
  });

  test('a post while another post\'s body is still arriving: 400, and the session is closed', async () => {
    const c = await pollConnect(tokenFor(newUser('TwoPosts')));
    const slow = await rawHttp(postHead(c.sid, 100), 'x'.repeat(10));
    await sleep(100);
    assertError(await c.post('3'), 400, 3, 'Bad request', 'the second post');
    c.closed = true;
    await assertGone(c.sid, 'two posts');
    slow.socket.destroy();
  });

  test('a body larger than maxPayload: 413, and the session is closed', async () => {
    const c = await pollConnect(tokenFor(newUser('Large')));
    const r = await c.post(`42["doc:save",{"resourceId":"x","content":"${'a'.repeat(70000)}"}]`);
    assertError(r, 413, 3, /^Payload too large: a POST body is limited to maxPayload \(65536 bytes\)/, 'oversized');
    c.closed = true;
    await assertGone(c.sid, 'oversized');
  });

  test('a slow body: the connection is closed after collab.ping_timeout, and the session with it', async () => {
    const c = await pollConnect(tokenFor(newUser('Slow')));
    const t0 = Date.now();
    const slow = await rawHttp(postHead(c.sid, 1000), '42["presence:leave",');
    const data = await slow.ended;
    const took = Date.now() - t0;
    assert.equal(data, '', 'no answer to a body that never ends');
    assert.ok(took >= 900 && took < 4000, `closed after about collab.ping_timeout (1 s): ${took} ms`);
    c.closed = true;
    await assertGone(c.sid, 'slow body');
  });

  test('a million tiny packets in one body (2 MB): 413 at once, nothing handled', async () => {
    const c = await pollConnect(tokenFor(newUser('Million')));
    const t0 = Date.now();
    const r = await c.post(Array(1000000).fill('6').join('\x1e'), { timeout: 20000 });
    assertError(r, 413, 3, /^Payload too large/, 'a million packets');
    assert.ok(Date.now() - t0 < 5000, `answered in ${Date.now() - t0} ms`);
    c.closed = true;
    await assertGone(c.sid, 'a million packets');
  });

  test('a full body of pings (32767 of them): "ok" at once; pongs within collab.rate_limit, the rest dropped and counted', async () => {
    const c = await pollConnect(tokenFor(newUser('Pings')), { autoPong: false });
    const n = 32767;
    const dropped0 = await metric('collab_frames_dropped_total');
    const t0 = Date.now();
    const r = await c.post(Array(n).fill('2').join('\x1e'));
    assert.equal(r.text, 'ok');
    const took = Date.now() - t0;
    const polled = await c.get();
    const pongs = packetsOf(polled.text).filter((p) => p === '3').length;
    const dropped = (await metric('collab_frames_dropped_total')) - dropped0;
    console.log(`# ${n} pings in one body: answered in ${took} ms, ${pongs} pongs, ${dropped} dropped`);
    assert.ok(pongs >= 1 && pongs <= 51, `pongs within the rate limit (50): ${pongs}`);
    assert.equal(pongs + dropped, n, 'every ping is answered or counted as dropped');
    assert.ok(took < 3000, `bounded work: ${took} ms`);
    await c.close();
  });

  test('unauthenticated polling sessions count with unauthenticated WebSockets against collab.max_unauthenticated_per_address; collab.connect_timeout ends them', { timeout: 30000 }, async () => {
    await setWorkerConf('collab.max_unauthenticated_per_address', '40');
    await setWorkerConf('collab.connect_timeout', '1500ms');
    try {
      const sockets = await Promise.all(Array.from({ length: 20 }, () => rawOpen()));
      const answers = [];
      for (let i = 0; i < 30; i++) answers.push(await pollFetch(HANDSHAKE));
      const served = answers.filter((r) => r.status === 200);
      const refused = answers.filter((r) => r.status !== 200);
      assert.equal(served.length, 20, 'up to the budget, with the 20 WebSockets');
      assert.equal(refused.length, 10);
      for (const r of refused) {
        assertError(r, 503, 3, 'too many connections from this address have not authenticated yet ' +
          '(collab.max_unauthenticated_per_address); try again later', 'over the budget');
      }
      // silent: collab.connect_timeout ends them all
      for (const s of sockets) await s.waitClosed(5000);
      for (const r of served) await assertGone(JSON.parse(r.text.slice(1)).sid, 'connect timeout');
      // and new sessions are served again
      const again = await pollConnect(tokenFor(newUser('AfterPile')));
      await again.close();
    } finally {
      await resetWorkerConf('collab.max_unauthenticated_per_address', 'collab.connect_timeout');
    }
  });
  test('an idle keep-alive connection is closed after 5 s without a request; one that keeps polling is not', { timeout: 20000 }, async () => {
    const url = new URL(WS_URL);
    const t0 = Date.now();
    const idle = await rawHttp(`GET /socket.io/?${HANDSHAKE} HTTP/1.1\r\nHost: ${url.host}\r\n\r\n`);
    const answer = await idle.ended;
    const took = Date.now() - t0;
    assert.match(answer, /^HTTP\/1\.1 200 [^]*\r\n\r\n0\{"sid"/, 'the handshake was answered on it');
    assert.ok(took >= 4500 && took < 9000, `closed after about 5 s idle: ${took} ms`);
    // a session polling all along on one keep-alive connection keeps it past that
    const c = await pollConnect(tokenFor(newUser('KeptAlive')));
    const live = await rawHttp('');
    let closed = false;
    live.ended.then(() => { closed = true; });
    const end = Date.now() + 6500;
    let polls = 0;
    while (Date.now() < end) {
      const before = live.data().length;
      live.socket.write(`GET /socket.io/?${query(c.sid)} HTTP/1.1\r\nHost: ${url.host}\r\n\r\n`);
      await eventually(() => live.data().length > before && /\r\n\r\n[^]*$/.test(live.data().slice(before)), 'the poll is answered', 3000, 5);
      await eventually(() => { const m = /content-length: (\d+)\r\n[^]*?\r\n\r\n/i.exec(live.data().slice(before)); return m && live.data().length - before >= m.index + m[0].length + Number(m[1]); }, 'the whole answer', 3000, 5);
      if (live.data().slice(before).endsWith('2')) await c.post('3');
      polls += 1;
    }
    assert.equal(closed, false, `the connection that kept polling is open (${polls} polls)`);
    live.socket.destroy();
    await c.close();
  });
  test('the bystander is still served', async () => bystander.served('hostile polling'));
});

describe('under load', () => {
  test('an upgrade under load: 20 clients on the default transports join while the holder saves 60 times; each sees every save once, in order, and ends on WebSocket', { timeout: 30000 }, async () => {
    const { io } = await import('socket.io-client');
    const doc = await createDocument(['t']);
    const rid = doc.tab('t');
    const holder = await connect(newUser('Holder'));
    assert.equal(ok(await join(holder, rid, 'editor')).role, 'editor');
    const N = 20;
    const SAVES = 60;
    const clients = Array.from({ length: N }, (_, i) => {
      const s = io(WS_URL, { auth: { token: tokenFor(newUser(`Load${i}`)) }, reconnection: false, forceNew: true });
      s.versions = [];
      s.on('doc:saved', (e) => { if (e.resourceId === rid) s.versions.push(e.version); });
      return s;
    });
    try {
      await Promise.all(clients.map((s) => new Promise((resolve, reject) => {
        s.once('connect', resolve);
        s.once('connect_error', reject);
      })));
      const joins = clients.map((s) => s.timeout(10000).emitWithAck('presence:join', { resourceId: rid, mode: 'viewer' }));
      let version = 0;
      const saving = (async () => {
        for (let i = 0; i < SAVES; i++) {
          const a = await save(holder, rid, `content ${i}`);
          assert.equal(a.ok, true, JSON.stringify(a));
          version = a.version;
          await sleep(25);		// within collab.rate_limit (50 a second)
        }
      })();
      const acks = await Promise.all(joins);
      await saving;
      for (const a of acks) assert.equal(a.ok, true);
      // each client sees every save after its join, once and in order
      await eventually(() => clients.every((s) => s.versions.at(-1) === version), 'every client saw the last save', 10000);
      for (const [i, s] of clients.entries()) {
        const v = s.versions;
        assert.deepEqual(v, Array.from({ length: v.length }, (_, k) => v[0] + k), `client ${i}: consecutive versions, no duplicate`);
      }
      await eventually(() => clients.every((s) => s.io.engine.transport.name === 'websocket'), 'every client upgraded', 10000);
    } finally {
      for (const s of clients) s.close();
      holder.close();
    }
  });
  test('the bystander is still served', async () => bystander.served('load'));
});
