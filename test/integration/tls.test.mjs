// wss:// and long-polling over https:// through the worker's TLS listener
// (collab.ssl_cert_file and collab.ssl_key_file). Run by test/integration/tls.sh, which makes a
// self-signed certificate (CN=localhost, SAN IP:127.0.0.1 and DNS:localhost)
// and a cluster of its own whose worker serves it.
//
// Environment:
//   COLLAB_WSS_URL      https://127.0.0.1:<collab.port>
//   COLLAB_TLS_CA       the certificate (PEM) the worker presents; trusted as a CA
//   COLLAB_JWT_SECRET   the cluster's collab.jwt_secret
//   PGHOST, PGPORT      that cluster (resources are created through it)
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import https from 'node:https';
import tls from 'node:tls';
import { io } from 'socket.io-client';
import WebSocket from 'ws';

for (const v of ['COLLAB_WSS_URL', 'COLLAB_TLS_CA', 'COLLAB_JWT_SECRET', 'PGHOST']) {
  if (!process.env[v]) throw new Error(`${v} is not set: run this file with test/integration/tls.sh`);
}
if (process.env.NODE_TLS_REJECT_UNAUTHORIZED === '0') {
  throw new Error('NODE_TLS_REJECT_UNAUTHORIZED=0 would make the untrusted-client test meaningless');
}
const WSS_URL = process.env.COLLAB_WSS_URL.replace(/\/+$/, '');
assert.match(WSS_URL, /^https:\/\/127\.0\.0\.1:\d+$/, 'COLLAB_WSS_URL is https://127.0.0.1:PORT');
const PORT = Number(new URL(WSS_URL).port);
const CA = fs.readFileSync(process.env.COLLAB_TLS_CA);
const CERT = new crypto.X509Certificate(CA);

// helpers.mjs (tokens, pg pool, Socket.IO helpers) reads COLLAB_WS_URL and
// COLLAB_TEST_WORK when it is loaded.
process.env.COLLAB_WS_URL ??= WSS_URL;
process.env.COLLAB_TEST_WORK ??= '/tmp';
const {
  newUser, connect, join, ok, waitFor, createDocument, teardown, tokenFor, eventually, q,
} = await import('./helpers.mjs');

const sockets = new Set();
after(async () => {
  for (const s of sockets) s.close();
  await teardown();
});

/** A socket.io-client connection attempt; resolves with {socket} or {error}. */
function attempt(url, options) {
  const socket = io(url, {
    transports: ['websocket'], reconnection: false, forceNew: true, timeout: 4000, ...options,
  });
  sockets.add(socket);
  return new Promise((resolve) => {
    const timer = setTimeout(() => { socket.close(); resolve({ error: new Error('no connect or connect_error within 5000 ms') }); }, 5000);
    socket.on('connect', () => { clearTimeout(timer); resolve({ socket }); });
    socket.on('connect_error', (error) => { clearTimeout(timer); socket.close(); resolve({ error }); });
  });
}

/** The underlying Node error of a socket.io-client websocket connect_error. */
function cause(err) {
  return err?.description?.error ?? err?.description ?? err;
}

const describeErr = (err) => {
  const c = cause(err);
  return `${err?.message} / ${c?.code ?? ''} ${c?.message ?? ''}`;
};

/** Number of presence rows (live WebSocket joins) in the TLS cluster. */
async function presenceCount() {
  const [{ n }] = await q('SELECT count(*)::int AS n FROM collab.ws_presence');
  return n;
}

test('wss:// with the certificate trusted as CA: connect, join as editor, lock:acquired with a token', async () => {
  const doc = await createDocument(['notes']);
  const rid = doc.tab('notes');
  const anna = newUser('Anna');
  const s = await connect(anna, { ca: CA, label: 'anna-wss' });
  sockets.add(s);
  assert.ok(s.connected, 'connected over wss');
  assert.equal(s.io.engine.transport.name, 'websocket');
  const ws = s.io.engine.transport.ws;
  assert.equal(ws.url.startsWith(`wss://127.0.0.1:${PORT}/`), true, `the transport URL is wss:// (${ws.url})`);
  assert.equal(ws._socket.encrypted, true, 'the TCP socket under the WebSocket is a TLSSocket');
  assert.equal(ws._socket.authorized, true, `the peer certificate was verified (${ws._socket.authorizationError})`);

  const ack = ok(await join(s, rid, 'editor'), 'editor join over wss');
  assert.equal(ack.role, 'editor');
  assert.equal(typeof ack.lock?.token, 'number', `join ack carries a token: ${JSON.stringify(ack)}`);
  const acquired = await waitFor(s, 'lock:acquired', (e) => e.resourceId === rid);
  assert.equal(typeof acquired.token, 'number', `lock:acquired carries a token: ${JSON.stringify(acquired)}`);
  assert.equal(acquired.token, ack.lock.token);
  assert.deepEqual(acquired.holder, { userId: anna.sub, username: anna.name });
  assert.deepEqual(
    await q('SELECT user_id, holder_id FROM collab.locks WHERE resource_id = $1', [rid]),
    [{ user_id: anna.sub, holder_id: s.id }],
    'the lease is in the database');
  s.close();
  await eventually(async () => (await presenceCount()) === 0, 'the closed connection leaves presence');
});

test('long-polling over https:// (transports: [\'polling\']): connect, join as editor, save; the requests are TLS', async () => {
  const doc = await createDocument(['notes']);
  const rid = doc.tab('notes');
  const ben = newUser('Ben');
  const s = await connect(ben, { ca: CA, transports: ['polling'], label: 'ben-https' });
  sockets.add(s);
  assert.equal(s.io.engine.transport.name, 'polling');
  assert.equal(s.io.engine.transport.uri().startsWith(`https://127.0.0.1:${PORT}/`), true, 'the polls go to https://');
  const ack = ok(await join(s, rid, 'editor'), 'editor join over https polling');
  assert.equal(ack.role, 'editor');
  const saved = await s.timeout(5000).emitWithAck('doc:save', { resourceId: rid, content: 'over https' });
  assert.deepEqual(saved, { ok: true, version: 1 });
  assert.deepEqual(await q('SELECT content FROM collab.resources WHERE id = $1', [rid]), [{ content: 'over https' }]);

  // a handshake by hand: Node's https with the CA, the certificate verified
  const raw = await new Promise((resolve, reject) => {
    https.get(`${WSS_URL}/socket.io/?EIO=4&transport=polling`, { ca: CA, agent: false }, (res) => {
      let body = '';
      const authorized = res.socket.authorized;
      res.on('data', (d) => { body += d; });
      res.on('end', () => resolve({ status: res.statusCode, body, authorized }));
    }).on('error', reject);
  });
  assert.equal(raw.status, 200);
  assert.equal(raw.authorized, true);
  assert.deepEqual(JSON.parse(raw.body.slice(1)).upgrades, ['websocket']);
  s.close();
  await eventually(async () => (await presenceCount()) === 0, 'the closed connection leaves presence');
});

test('socket.io-client\'s default transports over https://: long-polling first, then the upgrade to wss://', async () => {
  const s = await connect(newUser('Cleo'), { ca: CA, transports: ['polling', 'websocket'], label: 'cleo-default' });
  sockets.add(s);
  await eventually(() => s.io.engine.transport.name === 'websocket', 'upgraded to wss://');
  assert.equal(s.io.engine.transport.ws._socket.encrypted, true);
  const doc = await createDocument(['t']);
  ok(await join(s, doc.tab('t'), 'viewer'), 'join after the upgrade');
  s.close();
  await eventually(async () => (await presenceCount()) === 0, 'the closed connection leaves presence');
});

test('a client that does not trust the certificate fails with a TLS error and never connects', async () => {
  const before = await presenceCount();
  const token = tokenFor(newUser('Mallory'));
  const { socket, error } = await attempt(WSS_URL, { auth: { token } });
  if (socket) socket.close();
  assert.equal(socket, undefined, 'no connection without trusting the certificate');
  const c = cause(error);
  assert.ok(['DEPTH_ZERO_SELF_SIGNED_CERT', 'SELF_SIGNED_CERT_IN_CHAIN', 'UNABLE_TO_VERIFY_LEAF_SIGNATURE'].includes(c?.code),
    `a certificate verification error, got: ${describeErr(error)}`);

  // The same with Node's TLS directly: the handshake is refused by the client.
  const err = await new Promise((resolve) => {
    const sock = tls.connect({ host: '127.0.0.1', port: PORT, servername: 'localhost' });
    sock.once('secureConnect', () => { sock.destroy(); resolve(null); });
    sock.once('error', resolve);
  });
  assert.ok(err, 'tls.connect without the CA fails');
  assert.equal(err.code, 'DEPTH_ZERO_SELF_SIGNED_CERT', `${err.code} ${err.message}`);
  assert.equal(await presenceCount(), before, 'nothing joined');
});

test('plain ws:// to the TLS port fails (no upgrade, no Socket.IO connection)', async () => {
  const wsUrl = `ws://127.0.0.1:${PORT}/socket.io/?EIO=4&transport=websocket`;
  const started = Date.now();
  const outcome = await new Promise((resolve) => {
    const ws = new WebSocket(wsUrl, { handshakeTimeout: 4000 });
    ws.on('open', () => { ws.terminate(); resolve({ open: true }); });
    ws.on('unexpected-response', (req, res) => { res.resume(); ws.terminate(); resolve({ status: res.statusCode }); });
    ws.on('error', (e) => resolve({ error: e }));
    ws.on('close', (code) => resolve({ close: code }));
  });
  assert.equal(outcome.open, undefined, 'a plain WebSocket must not open on the TLS port');
  assert.ok(outcome.error || outcome.close || outcome.status, `the plain request fails: ${JSON.stringify(outcome)}`);
  assert.ok(Date.now() - started < 4000, `the plain request fails promptly, not by timeout (${Date.now() - started} ms; ${outcome.error?.message})`);

  // socket.io-client with http:// (=> ws://) against the TLS port: connect_error.
  const { socket, error } = await attempt(`http://127.0.0.1:${PORT}`, { auth: { token: tokenFor(newUser('Plain')) } });
  if (socket) socket.close();
  assert.equal(socket, undefined, 'socket.io-client over ws:// does not connect to the TLS port');
  assert.ok(error, 'connect_error');
  assert.notEqual(error.message, 'no connect or connect_error within 5000 ms', describeErr(error));

  // and the worker still serves wss:// afterwards
  const s = await connect(newUser('After'), { ca: CA, label: 'after-plain' });
  sockets.add(s);
  assert.ok(s.connected);
  s.close();
});

test('the presented certificate is the configured one: CN=localhost, SAN IP:127.0.0.1 and DNS:localhost', async () => {
  const peer = await new Promise((resolve, reject) => {
    const sock = tls.connect({ host: '127.0.0.1', port: PORT, ca: CA, servername: 'localhost' }, () => {
      const info = {
        authorized: sock.authorized,
        authorizationError: sock.authorizationError,
        protocol: sock.getProtocol(),
        cert: sock.getPeerCertificate(),
      };
      sock.end();
      resolve(info);
    });
    sock.once('error', reject);
  });
  assert.equal(peer.authorized, true, `verified against the CA (${peer.authorizationError})`);
  assert.match(peer.protocol, /^TLSv1\.[23]$/);
  assert.equal(peer.cert.subject.CN, 'localhost');
  assert.equal(peer.cert.issuer.CN, 'localhost', 'self-signed');
  const san = peer.cert.subjectaltname.split(', ').sort();
  assert.deepEqual(san, ['DNS:localhost', 'IP Address:127.0.0.1']);
  assert.equal(peer.cert.fingerprint256, CERT.fingerprint256, 'the certificate of collab.ssl_cert_file');
  // and the host name checks agree with the SAN entries
  assert.equal(tls.checkServerIdentity('127.0.0.1', peer.cert), undefined);
  assert.equal(tls.checkServerIdentity('localhost', peer.cert), undefined);
  assert.ok(tls.checkServerIdentity('example.com', peer.cert) instanceof Error);
});
