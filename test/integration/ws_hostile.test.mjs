// Hostile input at the wire level (raw WebSocket frames through npm ws):
// unknown packet types, bad namespaces and ack ids, garbage payloads,
// event names that are not strings, invalid UTF-8, fragmented, oversized
// and binary frames, binary attachments, a connection flood, slow upgrade
// headers, an event flood
// and resource ids at and over their limits.  Each case asserts the
// documented answer exactly (docs/protocol.md, "Malformed input" and
// "Limits"): the close code, or the acknowledgement and its error code.
// Throughout, a bystander connected with socket.io-client keeps getting
// its acknowledgements and events, and the worker stays the same process.
//
// The connection flood adapts to collab.max_connections: in the shared
// test cluster (10000) every connection is served; crash_load.sh runs it
// again on a cluster with collab.max_connections = 40, where the excess
// must be refused.  ws_protocol.test.mjs covers the basic malformed frames
// and the single-connection rate limit; these are the hostile variants.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  WS_URL, newUser, tokenFor, connect, save, join, ok, createDocument, q,
  rawOpen, rawConnect, teardown, eventually, startBystander, setWorkerConf, resetWorkerConf,
} from './helpers.mjs';

let bystander;
let maxMessageSize;



async function healthConnections() {
  const res = await fetch(`${WS_URL}/healthz`);
  return (await res.json()).connections;
}

before(async () => {
  const [{ setting }] = await q("SELECT setting FROM pg_settings WHERE name = 'collab.max_message_size'");
  maxMessageSize = Number(setting);
  bystander = await startBystander('hostile');
});
after(async () => {
  bystander?.socket.close();
  await teardown();
});

/** A connected raw client whose answer to `send` must be `want`. */
async function expectAnswer(send, want, what) {
  const { client, sid } = await rawConnect(tokenFor(newUser('Hostile')), { autoPong: true });
  const n = client.frames.length;
  await send(client);
  if (want.close !== undefined) {
    const closed = await client.waitClosed();
    assert.equal(closed.code, want.close, `${what}: close code`);
    const answers = client.frames.slice(n).filter((f) => f !== '2');
    if (want.frame) assert.ok(answers.some((f) => typeof f === 'string' && f.startsWith(want.frame)), `${what}: ${want.frame} before the close: ${JSON.stringify(answers)}`);
    else assert.deepEqual(answers, [], `${what}: no answer before the close`);
    await eventually(async () => (await q('SELECT 1 FROM collab.connections WHERE connection_id = $1', [sid])).length === 0,
      `${what}: the closed connection is gone from collab.connections`, 3000);
    return null;
  }
  if (want.ack !== undefined) {
    const f = await client.waitFrame(`43${want.ackId ?? 1}[`, 5000, n);
    const [ack] = JSON.parse(f.slice(2 + String(want.ackId ?? 1).length));
    if (want.ack === 'ok') assert.equal(ack.ok, true, `${what}: ${f}`);
    else {
      assert.equal(ack.ok, false, `${what}: ${f}`);
      assert.equal(ack.error.code, want.ack, `${what}: ${f}`);
      assert.equal(typeof ack.error.message, 'string');
    }
  }
  if (want.frame !== undefined) {
    assert.equal(await client.waitFrame(want.frame, 5000, n), want.frame, what);
  }
  // the connection is still open and served
  const leave = await client.emitAck(77, 'presence:leave', { resourceId: bystander.resourceId });
  assert.equal(leave.error?.code, 'NOT_JOINED', `${what}: the connection still serves: ${JSON.stringify(leave)}`);
  assert.equal(client.isClosed, false);
  client.ws.close();
  return client;
}

const CLOSE = { close: 1002 };
const leave = (rid) => JSON.stringify(['presence:leave', { resourceId: rid }]);

describe('unknown packet types', () => {
  const cases = [
    ['Engine.IO type 7', '7', CLOSE],
    ['Engine.IO type 9 with data', '9hello', CLOSE],
    ['Engine.IO OPEN from the client', '0{"sid":"x"}', CLOSE],
    ['Engine.IO MESSAGE without a Socket.IO packet', '4', CLOSE],
    ['Socket.IO type 7', '47', CLOSE],
    ['Socket.IO type 9 with data', '49["x",{}]', CLOSE],
    ['Socket.IO CONNECT_ERROR from the client', '44{"message":"x"}', CLOSE],
    ['a second CONNECT', '40{"token":"x"}', CLOSE],
    ['ACK without an ack id', '43[{}]', CLOSE],
    ['Engine.IO UPGRADE (ignored on a WebSocket)', '5', {}],
    ['Engine.IO NOOP (ignored)', '6', {}],
    ['an ACK for nothing (ignored)', '4312[{}]', {}],
    ['Engine.IO PING with data is answered with PONG and the data', '2probe', { frame: '3probe' }],
    ['Engine.IO CLOSE: closed normally', '1', { close: 1000 }],
  ];
  for (const [what, frame, want] of cases) {
    test(`${what}: ${want.close ? `close ${want.close}` : want.frame ? `answer ${want.frame}` : 'ignored, the connection stays'}`,
      async () => expectAnswer((c) => c.send(frame), want, what));
  }
  test('the bystander is still served', async () => bystander.served('unknown packet types'));
});

describe('namespaces and ack ids', () => {
  const rid = 'document:hostile-none';
  const cases = [
    ['EVENT to namespace /admin', `42/admin,${leave(rid)}`, CLOSE],
    ['EVENT to /admin with an ack id', `42/admin,7${leave(rid)}`, CLOSE],
    ['a namespace without the comma', `42/admin${leave(rid)}`, CLOSE],
    ['a namespace of 200 bytes', `42/${'n'.repeat(200)},${leave(rid)}`, CLOSE],
    ['CONNECT to /admin: CONNECT_ERROR for that namespace, the connection stays', '40/admin,{"token":"x"}', { frame: '44/admin,{"message":"Invalid namespace"}' }],
    ['ack id 2^53-1 (the largest)', `429007199254740991${leave(rid)}`, { ack: 'NOT_JOINED', ackId: '9007199254740991' }],
    ['ack id 2^53', `429007199254740992${leave(rid)}`, CLOSE],
    ['ack id of 28 digits', `42${'9'.repeat(28)}${leave(rid)}`, CLOSE],
    ['ack id negative', `42-1${leave(rid)}`, CLOSE],
    ['ack id with a leading zero (read as 1, as socket.io-parser does)', `4201${leave(rid)}`, { ack: 'NOT_JOINED', ackId: 1 }],
  ];
  for (const [what, frame, want] of cases) {
    test(`${what}`, async () => expectAnswer((c) => c.send(frame), want, what));
  }
  test('the bystander is still served', async () => bystander.served('namespaces and ack ids'));
});

describe('payloads', () => {
  const cases = [
    ['not JSON', '421["x",{]', CLOSE],
    ['trailing garbage after the array', '421["presence:leave",{}]junk', CLOSE],
    ['event name a number', '421[1,{}]', CLOSE],
    ['event name null', '421[null]', CLOSE],
    ['event name an object', '421[{},{}]', CLOSE],
    ['an empty array', '421[]', CLOSE],
    ['event name of 65 bytes', `421["${'e'.repeat(65)}",{}]`, CLOSE],
    ['event name of 64 bytes (unknown): BAD_REQUEST', `421["${'e'.repeat(64)}",{}]`, { ack: 'BAD_REQUEST' }],
    ['event name with an escaped NUL', '421["presence:leave\\u0000",{}]', CLOSE],
    ['nesting 65 deep', `421["presence:leave",${'['.repeat(64)}${']'.repeat(64)}]`, CLOSE],
    ['nesting 64 deep (allowed, but not an object): BAD_REQUEST', `421["presence:leave",${'['.repeat(63)}${']'.repeat(63)}]`, { ack: 'BAD_REQUEST' }],
    ['no payload object: BAD_REQUEST', '421["presence:leave"]', { ack: 'BAD_REQUEST' }],
    ['the name "error" (not reserved by socket.io): BAD_REQUEST', '421["error",{}]', { ack: 'BAD_REQUEST' }],
    ...['connect', 'connect_error', 'disconnect', 'disconnecting', 'newListener', 'removeListener'].map((name) => [
      `the reserved event name "${name}": close 1002`, `421["${name}",{}]`, CLOSE]),
    ['a payload object with 5000 members: BAD_REQUEST (no resourceId)', `421["presence:leave",{${Array.from({ length: 5000 }, (_, i) => `"k${i}":${i}`).join(',')}}]`, { ack: 'BAD_REQUEST' }],
    ['duplicate resourceId members: BAD_REQUEST', '421["presence:leave",{"resourceId":"document:a","resourceId":"document:b"}]', { ack: 'BAD_REQUEST' }],
  ];
  for (const [what, frame, want] of cases) {
    test(`${what}`, async () => expectAnswer((c) => c.send(frame), want, what));
  }
  test('escapes no text can hold (\\u0000, a lone surrogate) in a save: BAD_REQUEST, nothing saved; a surrogate pair is saved', async () => {
    const doc = await createDocument(['a'], 'hostile');
    const { client } = await rawConnect(tokenFor(newUser('Escapes')), { autoPong: true });
    const joined = await client.emitAck(1, 'presence:join', { resourceId: doc.tab('a'), mode: 'editor' });
    assert.equal(joined.role, 'editor', JSON.stringify(joined));
    const saveRaw = async (id, contentJson) => {
      const n = client.frames.length;
      client.send(`42${id}["doc:save",{"resourceId":"${doc.tab('a')}","content":${contentJson}}]`);
      const f = await client.waitFrame(`43${id}[`, 5000, n);
      return JSON.parse(f.slice(2 + String(id).length))[0];
    };
    for (const [id, json] of [[2, '"abc\\u0000def"'], [3, '"x\\ud800y"'], [4, '"x\\udc00"'], [5, '"\\ud83d"']]) {
      const ack = await saveRaw(id, json);
      assert.equal(ack.error?.code, 'BAD_REQUEST', `content ${json}: ${JSON.stringify(ack)}`);
    }
    assert.deepEqual(await q('SELECT content, version::int AS version FROM collab.resources WHERE id = $1', [doc.tab('a')]),
      [{ content: '', version: 0 }], 'nothing was saved, not even a truncated text');
    assert.deepEqual(await saveRaw(6, '"\\ud83d\\ude00 ok"'), { ok: true, version: 1 });
    assert.deepEqual(await q('SELECT content FROM collab.resources WHERE id = $1', [doc.tab('a')]), [{ content: '\u{1f600} ok' }]);
    client.ws.close();
  });
  test('the bystander is still served', async () => bystander.served('payloads'));
});

describe('text frames that are not UTF-8', () => {
  const ev = (bytes) => Buffer.concat([Buffer.from('421["presence:leave",{"resourceId":"'), Buffer.from(bytes), Buffer.from('"}]')]);
  const cases = [
    ['a lone continuation byte', [0x80]],
    ['an overlong "/" (C0 AF)', [0xc0, 0xaf]],
    ['a UTF-16 surrogate (ED A0 80)', [0xed, 0xa0, 0x80]],
    ['a code point above U+10FFFF (F4 90 80 80)', [0xf4, 0x90, 0x80, 0x80]],
    ['a truncated sequence (E2 82)', [0xe2, 0x82]],
    ['byte FF', [0xff]],
  ];
  for (const [what, bytes] of cases) {
    test(`${what}: close 1002`, async () => expectAnswer((c) => c.send(ev(bytes), { binary: false }), CLOSE, what));
  }
  test('a truncated sequence at the very end of the frame: close 1002', async () => expectAnswer(
    (c) => c.send(Buffer.concat([Buffer.from('421["presence:leave",{"resourceId":"x"}]'), Buffer.from([0xe2, 0x82])]), { binary: false }),
    CLOSE, 'truncated at the end'));
  test('the bystander is still served', async () => bystander.served('invalid UTF-8'));
});

describe('fragmented, oversized and binary frames', () => {
  const fragments = (c, text, sizes, between = () => {}) => {
    const buf = Buffer.from(text);
    let at = 0;
    sizes.forEach((n) => {
      c.send(buf.subarray(at, at + n), { fin: false, binary: false });
      at += n;
      between(c);
    });
    c.send(buf.subarray(at), { fin: true, binary: false });
  };
  const rid = 'document:hostile-none';
  const frame = `421${leave(rid)}`;

  test('an event in three fragments is reassembled and acknowledged', async () => {
    await expectAnswer((c) => fragments(c, frame, [3, 10]), { ack: 'NOT_JOINED' }, 'three fragments');
  });
  test('an event in one-byte fragments with pings in between is acknowledged', async () => {
    await expectAnswer((c) => fragments(c, frame, Array(frame.length - 1).fill(1), (x) => x.ws.ping()), { ack: 'NOT_JOINED' }, 'one-byte fragments');
  });
  test('a UTF-8 character split over two fragments is fine', async () => {
    const text = '421["presence:leave",{"resourceId":"document:äöü"}]';
    const cut = Buffer.from(text).indexOf(0xc3) + 1;
    await expectAnswer((c) => fragments(c, text, [cut]), { ack: 'NOT_JOINED' }, 'split character');
  });
  test('fragments that together exceed collab.max_message_size: error PAYLOAD_TOO_LARGE, close 1009', async () => {
    const big = `421["doc:save",{"resourceId":"${rid}","content":"${'x'.repeat(maxMessageSize)}"}]`;
    const n = Math.ceil(big.length / 8);
    await expectAnswer((c) => fragments(c, big, Array(7).fill(n)),
      { close: 1009, frame: '42["error",{"code":"PAYLOAD_TOO_LARGE"' }, 'fragments over the limit');
  });
  test('a message of exactly collab.max_message_size bytes is served; one byte more: PAYLOAD_TOO_LARGE, close 1009', async () => {
    const head = `421["presence:leave",{"resourceId":"${rid}","pad":"`;
    const tail = '"}]';
    const exact = head + 'p'.repeat(maxMessageSize - head.length - tail.length) + tail;
    assert.equal(Buffer.byteLength(exact), maxMessageSize);
    await expectAnswer((c) => c.send(exact), { ack: 'NOT_JOINED' }, 'exactly the limit');
    const over = head + 'p'.repeat(maxMessageSize - head.length - tail.length + 1) + tail;
    await expectAnswer((c) => c.send(over), { close: 1009, frame: '42["error",{"code":"PAYLOAD_TOO_LARGE"' }, 'one byte over');
  });
  test('an oversized message before CONNECT: PAYLOAD_TOO_LARGE, close 1009', async () => {
    const c = await rawOpen();
    await c.waitFrame('0{');
    c.send(`40${JSON.stringify({ token: 'x'.repeat(maxMessageSize) })}`);
    const f = await c.waitFrame('42["error"');
    assert.equal(JSON.parse(f.slice(2))[1].code, 'PAYLOAD_TOO_LARGE');
    assert.equal((await c.waitClosed()).code, 1009);
  });
  test('a binary frame: close 1003', async () => {
    await expectAnswer((c) => c.send(Buffer.from(frame), { binary: true }), { close: 1003 }, 'binary frame');
  });
  test('a binary data frame while a text message is unfinished (written raw): the connection is closed', async () => {
    const { client, sid } = await rawConnect(tokenFor(newUser('Mixed')), { autoPong: true });
    client.send(Buffer.from('421["presence:leave",'), { fin: false, binary: false });
    // FIN + opcode 2 (binary), masked, 3 bytes: a new data frame inside a fragmented message (RFC 6455 5.4)
    const mask = Buffer.from([1, 2, 3, 4]);
    const payload = Buffer.from('{}]').map((b, i) => b ^ mask[i % 4]);
    client.ws._socket.write(Buffer.concat([Buffer.from([0x82, 0x80 | payload.length]), mask, payload]));
    const closed = await client.waitClosed();
    assert.equal(closed.code, 1002);
    assert.equal(client.frames.filter((f) => typeof f === 'string' && f.startsWith('431')).length, 0, 'the message was not processed');
    // closed by libwebsockets itself, without a close packet of the session:
    // a lost connection, detached (its locks kept for the grace)
    await eventually(async () => (await q('SELECT 1 FROM collab.connections WHERE connection_id = $1 AND detached_at IS NULL', [sid])).length === 0,
      'the connection is no longer attached', 3000);
    assert.deepEqual(await q('SELECT * FROM collab.presence WHERE connection_id = $1', [sid]), [], 'and in no room');
  });
  test('BINARY_EVENT with an ack id: BAD_REQUEST, the connection stays', async () => {
    await expectAnswer((c) => c.send('451-1["doc:save",{"resourceId":"document:x","content":{"_placeholder":true,"num":0}}]'),
      { ack: 'BAD_REQUEST' }, 'BINARY_EVENT with ack');
  });
  test('BINARY_EVENT with an ack id followed by its attachment frame: BAD_REQUEST, then close 1003 for the binary frame', async () => {
    await expectAnswer((c) => {
      c.send('451-1["doc:save",{"resourceId":"document:x","content":{"_placeholder":true,"num":0}}]');
      c.send(Buffer.from('attachment'), { binary: true });
    }, { close: 1003, frame: '431[{"ok":false,"error":{"code":"BAD_REQUEST"' }, 'BINARY_EVENT and its attachment');
  });
  test('BINARY_EVENT without an ack id: close 1002', async () => {
    await expectAnswer((c) => c.send('451-["doc:save",{"_placeholder":true,"num":0}]'), CLOSE, 'BINARY_EVENT without ack');
  });
  test('BINARY_ACK: BAD_REQUEST, the connection stays', async () => {
    await expectAnswer((c) => c.send('461-1[{"_placeholder":true,"num":0}]'), { ack: 'BAD_REQUEST' }, 'BINARY_ACK');
  });
  test('BINARY_EVENT with a malformed attachment count: close 1002', async () => {
    await expectAnswer((c) => c.send('45x-1["doc:save",{}]'), CLOSE, 'bad attachment count');
  });
  test('the bystander is still served', async () => bystander.served('fragmented, oversized and binary frames'));
});

describe('resource ids at and over the limits', () => {
  const seg = (kind, n) => `${kind}:${'k'.repeat(n - kind.length - 1)}`;
  const cases = [
    ['8 segments of 128 bytes (valid, unknown)', Array.from({ length: 8 }, () => seg('tab', 128)).join('/'), 'RESOURCE_NOT_FOUND'],
    ['a segment of 129 bytes', seg('document', 129), 'RESOURCE_ID_INVALID'],
    ['9 segments', Array.from({ length: 9 }, (_, i) => `k${i}:v`).join('/'), 'RESOURCE_ID_INVALID'],
    ['a segment of 64 two-byte characters (128 bytes)', `d:${'é'.repeat(63)}`, 'RESOURCE_NOT_FOUND'],
    ['a segment of 128 bytes made of 2-byte characters plus one byte', `d:${'é'.repeat(63)}x`, 'RESOURCE_ID_INVALID'],
    ['a zero-width space', 'document:a\u200bb', 'RESOURCE_ID_INVALID'],
    ['a right-to-left override', 'document:a\u202eb', 'RESOURCE_ID_INVALID'],
    ['a BOM', '\ufeffdocument:1', 'RESOURCE_ID_INVALID'],
    ['a no-break space', 'document:a\u00a0b', 'RESOURCE_ID_INVALID'],
    ['a kind without key', 'document:', 'RESOURCE_ID_INVALID'],
    ['a key with a second colon (valid, unknown)', 'document:a:b', 'RESOURCE_NOT_FOUND'],
    ['an astral character (valid, unknown)', 'document:\u{1f600}', 'RESOURCE_NOT_FOUND'],
  ];
  test('each id gets its exact code from presence:join, the connection stays', async () => {
    const { client } = await rawConnect(tokenFor(newUser('Ids')), { autoPong: true });
    let id = 100;
    for (const [what, rid, code] of cases) {
      id += 1;
      const ack = await client.emitAck(id, 'presence:join', { resourceId: rid, mode: 'viewer' });
      assert.equal(ack.ok, false, `${what}: ${JSON.stringify(ack)}`);
      assert.equal(ack.error.code, code, `${what}: ${JSON.stringify(ack)}`);
      if (code === 'RESOURCE_ID_INVALID') assert.ok(!ack.error.message.includes(rid), `${what}: the id is not echoed`);
    }
    assert.equal(client.isClosed, false);
    client.ws.close();
  });
  test('a document whose key is 128 bytes can be joined and its tab locked', async () => {
    const key = 'k'.repeat(128 - 'document:'.length);
    await q("DELETE FROM collab.resources WHERE id LIKE 'document:' || $1 || '%'", [key]);
    const [{ id }] = await q('SELECT collab.create_document($1, NULL, ARRAY[$2]) AS id', [key, 'x'.repeat(124)]);
    await q("SELECT collab.grant($1, '*', 'edit')", [id]);
    try {
      const s = await connect(newUser('LongId'));
      const tab = `${id}/tab:${'x'.repeat(124)}`;
      assert.equal(Buffer.byteLength(tab), 257);
      assert.equal(ok(await join(s, tab, 'editor')).role, 'editor');
      assert.deepEqual(await save(s, tab, 'long ids'), { ok: true, version: 1 });
      s.close();
    } finally {
      await eventually(async () => (await q('SELECT 1 FROM collab.presence WHERE resource_id LIKE $1', [`${id}%`])).length === 0, 'presence gone', 3000).catch(() => {});
      await q('DELETE FROM collab.resources WHERE id = $1', [id]);
    }
  });
  test('the bystander is still served', async () => bystander.served('resource ids'));
});

describe('floods', () => {
  test('event flood from 10 connections at once: each is rate limited on its own, the bystander is not', async () => {
    const [{ setting }] = await q("SELECT setting FROM pg_settings WHERE name = 'collab.rate_limit'");
    const limit = Number(setting);
    assert.ok(limit > 0, 'collab.rate_limit is set');
    const N = 150;
    const floods = await Promise.all(Array.from({ length: 10 }, () => rawConnect(tokenFor(newUser('Flooder')), { autoPong: true })));
    const frame = `42${leave('document:hostile-none')}`;
    for (const { client } of floods) for (let i = 0; i < N; i++) client.send(frame);
    // meanwhile the bystander saves, within its own budget
    for (let i = 0; i < 5; i++) await bystander.served(`the event flood (${i})`);
    for (const { client } of floods) {
      const count = (code) => client.frames.filter((f) => typeof f === 'string' && f.startsWith('42["error"') && f.includes(`"code":"${code}"`)).length;
      await eventually(() => count('RATE_LIMITED') + count('NOT_JOINED') === N, 'every flood event is answered', 15000, 100)
        .catch((e) => { throw new Error(`${e.message}: RATE_LIMITED ${count('RATE_LIMITED')}, NOT_JOINED ${count('NOT_JOINED')}`); });
      assert.ok(count('RATE_LIMITED') >= N - 2 * limit, `at least ${N - 2 * limit} of ${N} rate limited, got ${count('RATE_LIMITED')}`);
      assert.ok(count('NOT_JOINED') >= limit - 1, `about the burst (${limit}) served, got ${count('NOT_JOINED')}`);
      assert.equal(client.isClosed, false, 'a flooder stays connected');
      client.ws.close();
    }
    assert.deepEqual(bystander.socket.__log.filter((e) => e.event === 'error'), [], 'the bystander got no error event');
  });

  test('slow headers: 200 sockets that never finish their upgrade request do not block new clients', { timeout: 30000 }, async () => {
    const net = await import('node:net');
    const { port, hostname } = new URL(WS_URL);
    const N = 200;
    const slow = await Promise.all(Array.from({ length: N }, () => new Promise((resolve, reject) => {
      const s = net.connect({ port: Number(port), host: hostname }, () => {
        s.write('GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: x\r\n');
        resolve(s);
      });
      s.on('error', reject);
    })));
    const closedBy = slow.map((s) => new Promise((resolve) => s.on('close', resolve)));
    // with every header buffer of a small pool taken, this connect would wait
    // until the slow sockets time out (10 s), past connect()'s 6 s limit
    const fresh = await connect(newUser('PastSlowHeaders'));
    assert.equal(fresh.connected, true, 'a new client is served while the slow sockets are open');
    fresh.close();
    await bystander.served('the slow headers');
    // the worker closes the sockets whose headers never complete
    await Promise.all(closedBy);
    assert.ok(slow.every((s) => s.destroyed), 'every slow socket was closed by the worker');
  });

  test('connection flood: 300 connections at once, served up to collab.max_connections, the excess refused', { timeout: 60000 }, async () => {
    // all from one address, and unauthenticated at once: that budget is
    // ws_budgets.test.mjs's, this test is about collab.max_connections
    await setWorkerConf('collab.max_unauthenticated_per_address', '0');
    try {
      await connectionFlood();
    } finally {
      await resetWorkerConf('collab.max_unauthenticated_per_address');
    }
  });
});

async function connectionFlood() {
  {
    const [{ setting }] = await q("SELECT setting FROM pg_settings WHERE name = 'collab.max_connections'");
    const max = Number(setting);
    const N = 300;
    // the connections of earlier tests are gone
    const base = await eventually(async () => {
      const n = await healthConnections();
      // (connections lost without a goodbye stay, detached, for their grace)
      const rows = await q('SELECT count(*)::int AS n FROM collab.connections WHERE detached_at IS NULL');
      return n === rows[0].n && n >= 1 && { n };
    }, 'the worker\'s connection count settles', 5000).then((r) => r.n);
    const room = Math.max(max - base, 0);
    const want = Math.min(N, room);
    const users = Array.from({ length: N }, () => newUser('Flood'));
    const results = await Promise.all(users.map(async (u) => {
      let c;
      try {
        c = await rawOpen({ autoPong: true });
      } catch (e) {
        return { refused: `upgrade: ${e.message}` };
      }
      const first = await Promise.race([c.waitFrame('0{', 10000).catch(() => null), c.closed.then(() => null)]);
      if (first === null) return { refused: `closed ${c.closeInfo?.code}`, frames: c.frames.length };
      c.send(`40${JSON.stringify({ token: tokenFor(u) })}`);
      const f = await c.waitFrame(/^4[04]/, 15000);
      return { client: c, sid: f.startsWith('40') ? JSON.parse(f.slice(2)).sid : null, f };
    }));
    const served = results.filter((r) => r.client);
    const refused = results.filter((r) => r.refused);
    const how = [...new Set(refused.map((r) => r.refused))];
    console.log(`# collab.max_connections ${max}, ${base} open before: ${served.length} of ${N} served, ${refused.length} refused (${how.join('; ')})`);
    assert.equal(served.length, want, `served: ${JSON.stringify(refused.slice(0, 3))}`);
    assert.equal(refused.length, N - want);
    assert.ok(served.every((r) => r.sid), `every served connection got CONNECT: ${JSON.stringify(served.find((r) => !r.sid)?.f)}`);
    // the excess is closed right after the upgrade, before the Engine.IO OPEN (no close frame)
    assert.deepEqual(how, refused.length ? ['closed 1006'] : [], 'how the excess is refused');
    assert.ok(refused.every((r) => r.frames === 0), 'a refused connection got no frame');
    const [{ n }] = await q('SELECT count(*)::int AS n FROM collab.connections WHERE connection_id = ANY ($1)', [served.map((r) => r.sid)]);
    assert.equal(n, want, 'every served connection is registered');
    await bystander.served('the connection flood');
    // socket.io-client's socket.disconnect(): a DISCONNECT, then the close
    for (const r of served) { r.client.send('41'); r.client.ws.close(); }
    await eventually(async () => (await healthConnections()) === base, 'the flood\'s connections are closed', 15000);
    await eventually(async () => (await q('SELECT count(*)::int AS n FROM collab.connections WHERE connection_id = ANY ($1)', [served.map((r) => r.sid)]))[0].n === 0,
      'and gone from collab.connections', 15000);
    // once they are gone, new connections are served again
    const again = await connect(newUser('AfterFlood'));
    again.close();
    await bystander.served('the connection flood, closed');
  }
}
