// Socket.IO / Engine.IO at the wire level (raw WebSocket frames): the
// handshake, pings, acknowledgements, oversized and malformed frames,
// refused upgrades; request validation and the rate limit.
import { test, describe, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  newUser, tokenFor, connect, emitAck, ok, fails, join, createDocument, q, waitFor,
  rawOpen, rawConnect, assertWorkerServes, teardown, eventually, received,
} from './helpers.mjs';

after(teardown);

let probeDoc;
async function probe() {
  probeDoc ??= await createDocument(['probe']);
  await assertWorkerServes(probeDoc.tab('probe'));
}

describe('handshake', () => {
  test('the first frame is the Engine.IO OPEN packet with the configured ping settings', async () => {
    const c = await rawOpen();
    const f = await c.waitFrame('0');
    assert.equal(c.frames[0], f, 'OPEN is the first frame');
    const open = JSON.parse(f.slice(1));
    assert.equal(typeof open.sid, 'string');
    assert.ok(open.sid.length > 0);
    assert.deepEqual(open.upgrades, []);
    assert.equal(open.pingInterval, 1000);
    assert.equal(open.pingTimeout, 1000);
    assert.equal(typeof open.maxPayload, 'number');
    assert.ok(open.maxPayload > 0);
    c.ws.close();
  });

  test('CONNECT with a token: 40{"sid"} whose sid is the connection id', async () => {
    const u = newUser('Raw');
    const { client, sid } = await rawConnect(tokenFor(u));
    assert.equal(typeof sid, 'string');
    const rows = await q('SELECT user_id FROM collab.connections WHERE connection_id = $1', [sid]);
    assert.deepEqual(rows, [{ user_id: u.sub }]);
    client.ws.close();
  });

  test('CONNECT with a bad token: 44{"message","data":{"code"}}', async () => {
    const c = await rawOpen();
    await c.waitFrame('0');
    c.send('40{"token":"abc"}');
    const f = await c.waitFrame('44');
    const body = JSON.parse(f.slice(2));
    assert.equal(body.data.code, 'AUTH_TOKEN_INVALID');
    assert.equal(typeof body.message, 'string');
    c.ws.terminate();
  });

  test('pings every pingInterval; answered pings keep the connection', async () => {
    const { client } = await rawConnect(tokenFor(newUser('Pinged')));
    await client.waitFrame('2', 3000);
    client.send('3');
    const n = client.frames.length;
    await client.waitFrame('2', 3000, n);
    client.send('3');
    assert.equal(client.isClosed, false);
    client.ws.close();
  });

  test('DISCONNECT (41) ends the Socket.IO session like a clean leave; the Engine.IO connection stays open and pinging, and a new CONNECT starts a new session', async () => {
    const doc = await createDocument(['a']);
    const u = newUser('Rejoiner');
    const { client, sid } = await rawConnect(tokenFor(u), { autoPong: true });
    const joined = await client.emitAck(1, 'presence:join', { resourceId: doc.tab('a'), mode: 'editor' });
    assert.equal(joined.role, 'editor', JSON.stringify(joined));
    client.send('41');
    await eventually(async () => (await q('SELECT 1 FROM collab.connections WHERE connection_id = $1', [sid])).length === 0,
      'the session is gone from collab.connections');
    assert.deepEqual(await q('SELECT resource_id FROM collab.locks WHERE resource_id = $1', [doc.tab('a')]), [], 'its lock is released');
    const n = client.frames.length;
    await client.waitFrame('2', 3000, n);
    assert.equal(client.isClosed, false, 'the connection stays open');
    client.send(`40${JSON.stringify({ token: tokenFor(u) })}`);
    const f = await client.waitFrame('40', 5000, n);
    const sid2 = JSON.parse(f.slice(2)).sid;
    assert.notEqual(sid2, sid, 'a new session has a new id');
    assert.deepEqual(await q('SELECT user_id FROM collab.connections WHERE connection_id = $1', [sid2]), [{ user_id: u.sub }]);
    const again = await client.emitAck(2, 'presence:join', { resourceId: doc.tab('a'), mode: 'editor' });
    assert.equal(again.role, 'editor', JSON.stringify(again));
    client.ws.close();
  });

  test('DISCONNECT of a namespace never connected changes nothing', async () => {
    const { client, sid } = await rawConnect(tokenFor(newUser('Other')), { autoPong: true });
    client.send('41/admin,');
    const ack = await client.emitAck(3, 'presence:leave', { resourceId: 'document:none' });
    assert.equal(ack.error.code, 'NOT_JOINED');
    assert.deepEqual(await q('SELECT 1 AS one FROM collab.connections WHERE connection_id = $1', [sid]), [{ one: 1 }]);
    client.ws.close();
  });

  test('a client that never answers pings is closed', async () => {
    const { client } = await rawConnect(tokenFor(newUser('Silent')));
    await client.waitFrame('2', 3000);
    await client.waitClosed(6000);
    await probe();
  });

  test('ack ids: 42<id>[...] is answered by 43<id>[...]; without an id a failure is an error event', async () => {
    const doc = await createDocument(['a']);
    const { client } = await rawConnect(tokenFor(newUser('Acks')), { autoPong: true });
    const ack = await client.emitAck(17, 'presence:leave', { resourceId: doc.tab('a') });
    assert.equal(ack.ok, false);
    assert.equal(ack.error.code, 'NOT_JOINED');
    const joined = await client.emitAck(9007199254740991, 'presence:join', { resourceId: doc.tab('a'), mode: 'viewer' });
    assert.equal(joined.ok, true, JSON.stringify(joined));
    const n = client.frames.length;
    client.send(`42${JSON.stringify(['lock:renew', { resourceId: doc.tab('a') }])}`);
    const f = await client.waitFrame('42["error"', 5000, n);
    const [, err] = JSON.parse(f.slice(2));
    assert.equal(err.code, 'LOCK_NOT_HELD');
    assert.equal(err.resourceId, doc.tab('a'));
    assert.equal(typeof err.message, 'string');
    client.ws.close();
  });

  test('a client that stops reading gets every frame intact and in order when it reads again', async () => {
    // acknowledgements of several MB each: more than the socket buffers hold,
    // so the worker's writes are cut short and the rest waits for the client
    const doc = await createDocument(['big']);
    const rid = doc.tab('big');
    const content = 'äb"\\c\n'.repeat(500000);
    const [{ token }] = await q("SELECT (collab.acquire($1, 'u-big', 'Big Writer', 'h-big')).token AS token", [rid]);
    await q('SELECT collab.save($1, $2, $3)', [rid, token, content]);
    await q('SELECT collab.release($1)', [token]);
    const observer = await connect(newUser('Observer'));
    ok(await join(observer, rid, 'viewer'));
    const { client, sid } = await rawConnect(tokenFor(newUser('Slow')), { autoPong: true });
    const since = client.frames.length;
    client.ws._socket.pause();
    const ids = [21, 22, 23, 24, 25];
    ids.forEach((id, i) => client.send(i % 2 === 0
      ? `42${id}${JSON.stringify(['presence:join', { resourceId: rid, mode: 'viewer' }])}`
      : `42${id}${JSON.stringify(['presence:leave', { resourceId: rid }])}`));
    // the worker answers before it fans out: once the observer heard the
    // third join, every answer to the slow client is written or queued
    await eventually(async () => received(observer, 'presence:joined', (e) => e.user.connectionId === sid).length === 3,
      'the observer heard the three joins of the slow client');
    client.ws._socket.resume();
    const acks = [];
    for (const id of ids) {
      const f = await client.waitFrame(`43${id}[`, 10000, since);
      acks.push({ at: client.frames.indexOf(f), ack: JSON.parse(f.slice(2 + String(id).length))[0] });
    }
    assert.deepEqual(acks.map((a) => a.at), [...acks.map((a) => a.at)].sort((x, y) => x - y), 'answers in request order');
    for (const [i, { ack }] of acks.entries()) {
      assert.equal(ack.ok, true, `answer ${ids[i]}: ${JSON.stringify(ack).slice(0, 200)}`);
      if (i % 2 === 0) {
        assert.equal(ack.resource.content.length, content.length, `join ${ids[i]}: content length`);
        assert.equal(ack.resource.content, content, `join ${ids[i]}: content intact`);
      }
    }
    assert.equal(client.isClosed, false, 'the connection stays open');
    const again = await client.emitAck(26, 'presence:leave', { resourceId: rid });
    assert.deepEqual(again, { ok: true });
    client.ws.close();
    observer.close();
  });
});

describe('oversized and malformed frames', () => {
  test('a frame larger than collab.max_message_size: error PAYLOAD_TOO_LARGE, then close 1009', async () => {
    const doc = await createDocument(['a']);
    const { client } = await rawConnect(tokenFor(newUser('Big')), { autoPong: true });
    client.send(`42${JSON.stringify(['doc:save', { resourceId: doc.tab('a'), content: 'x'.repeat(70 * 1024) }])}`);
    const f = await client.waitFrame('42["error"', 5000);
    const [name, err] = JSON.parse(f.slice(2));
    assert.equal(name, 'error');
    assert.equal(err.code, 'PAYLOAD_TOO_LARGE');
    assert.equal(typeof err.message, 'string');
    const closed = await client.waitClosed(5000);
    assert.equal(closed.code, 1009);
    assert.equal((await q('SELECT content FROM collab.resources WHERE id = $1', [doc.tab('a')]))[0].content, '');
    await probe();
  });

  test('a frame just under the limit is accepted', async () => {
    const doc = await createDocument(['a']);
    const { client } = await rawConnect(tokenFor(newUser('Edge')), { autoPong: true });
    const joined = await client.emitAck(1, 'presence:join', { resourceId: doc.tab('a'), mode: 'editor' });
    assert.equal(joined.role, 'editor', JSON.stringify(joined));
    const content = 'y'.repeat(60 * 1024);
    const saved = await client.emitAck(2, 'doc:save', { resourceId: doc.tab('a'), content });
    assert.deepEqual(saved, { ok: true, version: 1 });
    assert.equal((await q('SELECT length(content) AS n FROM collab.resources WHERE id = $1', [doc.tab('a')]))[0].n, content.length);
    client.ws.close();
  });

  const bad = [
    ['abc', 'not an Engine.IO packet', (c) => c.send('abc')],
    ['4abc', 'not a Socket.IO packet', (c) => c.send('4abc')],
    ['42{}', 'EVENT whose payload is not an array', (c) => c.send('42{}')],
    ['42abc["x"]', 'garbage before the payload', (c) => c.send('42abc["x"]')],
    ['invalid UTF-8', 'a text frame that is not UTF-8', (c) => c.send(Buffer.from([0x34, 0x32, 0x5b, 0x22, 0xff, 0xfe, 0x22, 0x5d]), { binary: false })],
    ['binary frame', 'a binary frame', (c) => c.send(Buffer.from([0x04, 0x01, 0x02]), { binary: true })],
  ];
  for (const [name, what, send] of bad) {
    test(`${name} (${what}): the connection is closed, the worker serves others`, async () => {
      const { client, sid } = await rawConnect(tokenFor(newUser('Bad')), { autoPong: true });
      send(client);
      await client.waitClosed(5000);
      await eventually(async () => (await q('SELECT 1 FROM collab.connections WHERE connection_id = $1', [sid])).length === 0,
        'the closed connection is gone from collab.connections', 3000);
      await probe();
    });
  }

  test('an EVENT before CONNECT: the connection is closed, the worker serves others', async () => {
    const doc = await createDocument(['a']);
    const c = await rawOpen();
    await c.waitFrame('0');
    c.send(`420${JSON.stringify(['presence:join', { resourceId: doc.tab('a'), mode: 'editor' }])}`);
    await c.waitClosed(5000);
    assert.equal(c.frames.some((f) => typeof f === 'string' && f.startsWith('430')), false, 'no ack for an unauthenticated event');
    assert.deepEqual(await q('SELECT * FROM collab.presence WHERE resource_id = $1', [doc.tab('a')]), []);
    await probe();
  });

  for (const [query, what] of [['EIO=3&transport=websocket', 'EIO=3'], ['EIO=4&transport=polling', 'transport=polling']]) {
    test(`${what}: the upgrade is refused with a non-101 HTTP response`, async () => {
      await assert.rejects(rawOpen({ query }), (e) => {
        assert.ok(e.statusCode !== undefined,
          `${query}: expected an HTTP error response to the upgrade request, got "${e.message}" (no HTTP response)`);
        assert.notEqual(e.statusCode, 101);
        assert.ok(e.statusCode >= 400, `${query}: HTTP ${e.statusCode}`);
        return true;
      }, `${query} must not be upgraded`);
      await probe();
    });
  }
});

describe('request validation', () => {
  test('unknown event: BAD_REQUEST; malformed payloads: BAD_REQUEST; bad ids: RESOURCE_ID_INVALID; unknown: RESOURCE_NOT_FOUND', async () => {
    const doc = await createDocument(['a']);
    const s = await connect(newUser('Validator'));
    fails(await emitAck(s, 'doc:delete', { resourceId: doc.tab('a') }), 'BAD_REQUEST', 'unknown event');
    fails(await emitAck(s, 'presence:join'), 'BAD_REQUEST', 'no payload');
    fails(await emitAck(s, 'presence:join', 'document:1'), 'BAD_REQUEST', 'payload a string');
    fails(await emitAck(s, 'presence:join', 42), 'BAD_REQUEST', 'payload a number');
    fails(await emitAck(s, 'presence:join', null), 'BAD_REQUEST', 'payload null');
    fails(await emitAck(s, 'presence:join', [doc.tab('a')]), 'BAD_REQUEST', 'payload an array');
    fails(await emitAck(s, 'presence:join', { mode: 'viewer' }), 'BAD_REQUEST', 'no resourceId');
    fails(await emitAck(s, 'presence:join', { resourceId: doc.tab('a') }), 'BAD_REQUEST', 'no mode');
    fails(await emitAck(s, 'presence:join', { resourceId: doc.tab('a'), mode: 3 }), 'BAD_REQUEST', 'mode a number');
    fails(await emitAck(s, 'presence:join', { resourceId: ['x'], mode: 'viewer' }), 'BAD_REQUEST', 'resourceId an array');
    fails(await emitAck(s, 'presence:leave', {}), 'BAD_REQUEST', 'leave without resourceId');
    for (const id of ['', 'document', 'document:', ':1', 'document:1/', '/document:1', 'document:1//tab:a', 'document:1/tab', `document:${'k'.repeat(130)}`, 'document:a\u0001b', 'document:a b\n']) {
      fails(await emitAck(s, 'presence:join', { resourceId: id, mode: 'viewer' }), 'RESOURCE_ID_INVALID', `resourceId ${JSON.stringify(id)}`);
    }
    fails(await emitAck(s, 'presence:join', { resourceId: `document:missing-${Date.now()}`, mode: 'viewer' }), 'RESOURCE_NOT_FOUND', 'unknown document');
    fails(await emitAck(s, 'presence:join', { resourceId: `${doc.id}/tab:nope`, mode: 'editor' }), 'RESOURCE_NOT_FOUND', 'unknown tab');
    // none of it hurt the connection
    ok(await join(s, doc.tab('a')));
    assert.ok(s.connected);
    s.close();
  });

  test('a failure without an ack arrives as an error event', async () => {
    const s = await connect(newUser('NoAck'));
    s.emit('doc:delete', { resourceId: 'document:1' });
    const e1 = await waitFor(s, 'error', (e) => e.code === 'BAD_REQUEST');
    assert.equal(typeof e1.message, 'string');
    s.emit('presence:join', { resourceId: 'bad id', mode: 'viewer' });
    const e2 = await waitFor(s, 'error', (e) => e.code === 'RESOURCE_ID_INVALID');
    assert.equal(typeof e2.message, 'string');
    assert.ok(s.connected);
    s.close();
  });

  test(`more than collab.rate_limit messages in a second: RATE_LIMITED for the excess, the connection stays open`, async () => {
    const doc = await createDocument(['a']);
    const s = await connect(newUser('Flood'));
    const N = 120;
    const acks = await Promise.all(Array.from({ length: N }, () => emitAck(s, 'presence:leave', { resourceId: doc.tab('a') }, 10000)));
    const codes = acks.map((a) => a?.error?.code);
    const limited = codes.filter((c) => c === 'RATE_LIMITED').length;
    const served = codes.filter((c) => c === 'NOT_JOINED').length;
    assert.equal(limited + served, N, `every message is answered with NOT_JOINED or RATE_LIMITED: ${JSON.stringify(codes)}`);
    // 50 per second: whatever the window, at most two windows' worth pass in a burst
    assert.ok(limited >= N - 100, `at least ${N - 100} of ${N} rate limited, got ${limited}`);
    assert.ok(served >= 40, `about collab.rate_limit (50) served, got ${served}`);
    const rl = acks.find((a) => a?.error?.code === 'RATE_LIMITED');
    assert.equal(typeof rl.error.message, 'string');
    assert.ok(s.connected, 'still connected');
    // after the window the connection is served again
    const again = await eventually(async () => {
      const r = await join(s, doc.tab('a'));
      return r.ok === true && r;
    }, 'served again after the rate window', 5000, 300);
    assert.ok(again.users.some((p) => p.connectionId === s.id));
    assert.ok(s.connected);
    s.close();
  });
});
