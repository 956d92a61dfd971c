// Authentication at the Socket.IO CONNECT: every AUTH_* code, HS256, RS256,
// ES256, issuer/audience, origins, namespaces, display names, auth:refresh
// and a token that expires on a live connection.
import { test, describe, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import {
  SECRET, ISO_RE, newUser, makeToken, tokenFor, nowSec, connect, tryConnect, refusalCode,
  emitAck, ok, fails, join, createDocument, q, setConf, resetConf, eventually, writeWorkFile,
  waitFor, waitDisconnect, ref, teardown, uniq,
} from './helpers.mjs';

after(teardown);

async function expectRefused(auth, code, what, opts) {
  const err = await tryConnect(auth, opts);
  assert.ok(err, `${what}: expected connect_error ${code}, but the connection was accepted`);
  assert.equal(err.data?.code, code, `${what}: connect_error code (message "${err.message}", data ${JSON.stringify(err.data)})`);
  assert.equal(typeof err.message, 'string');
  assert.ok(err.message.length > 3 && err.message !== code, `${what}: message is a sentence for a person: "${err.message}"`);
  return err;
}

describe('HS256 tokens', () => {
  test('a valid token connects; socket.id is the connection id in collab.connections', async () => {
    const u = newUser('Anna');
    const s = await connect(u);
    assert.equal(typeof s.id, 'string');
    const rows = await q('SELECT user_id, username FROM collab.connections WHERE connection_id = $1', [s.id]);
    assert.deepEqual(rows, [{ user_id: u.sub, username: 'Anna' }]);
    s.close();
  });

  test('missing or empty token: AUTH_TOKEN_MISSING', async () => {
    await expectRefused(undefined, 'AUTH_TOKEN_MISSING', 'no auth payload');
    await expectRefused({}, 'AUTH_TOKEN_MISSING', 'auth without token');
    await expectRefused({ token: '' }, 'AUTH_TOKEN_MISSING', 'empty token');
  });

  test('malformed tokens: AUTH_TOKEN_INVALID', async () => {
    await expectRefused({ token: 'abc' }, 'AUTH_TOKEN_INVALID', 'one part');
    await expectRefused({ token: 'a.b' }, 'AUTH_TOKEN_INVALID', 'two parts');
    await expectRefused({ token: '!!!.@@@.###' }, 'AUTH_TOKEN_INVALID', 'not base64url');
    const hdr = Buffer.from('not json').toString('base64url');
    await expectRefused({ token: `${hdr}.${hdr}.${hdr}` }, 'AUTH_TOKEN_INVALID', 'header not JSON');
  });

  test('expired token: AUTH_TOKEN_EXPIRED', async () => {
    const u = newUser('Old');
    await expectRefused({ token: tokenFor(u, { exp: nowSec() - 60, iat: nowSec() - 120 }) },
      'AUTH_TOKEN_EXPIRED', 'exp a minute ago');
  });

  test('wrong secret or tampered payload: AUTH_SIGNATURE_INVALID', async () => {
    const u = newUser('Mallory');
    await expectRefused({ token: tokenFor(u, {}, { secret: SECRET + 'x' }) }, 'AUTH_SIGNATURE_INVALID', 'other secret');
    const [h, , sig] = tokenFor(u).split('.');
    const forged = Buffer.from(JSON.stringify({ ...u, sub: 'admin', exp: nowSec() + 3600 })).toString('base64url');
    await expectRefused({ token: `${h}.${forged}.${sig}` }, 'AUTH_SIGNATURE_INVALID', 'payload swapped');
  });

  test('alg none in any casing, HS512 and RS256 without a key: AUTH_ALGORITHM_UNSUPPORTED', async () => {
    const u = newUser('Eve');
    for (const alg of ['none', 'None', 'NONE', 'nOnE']) {
      await expectRefused({ token: makeToken(u, { alg }) }, 'AUTH_ALGORITHM_UNSUPPORTED', `alg ${alg}`);
      // with a (bogus) signature too
      await expectRefused({ token: makeToken(u, { alg, sign: () => Buffer.from('sig') }) },
        'AUTH_ALGORITHM_UNSUPPORTED', `alg ${alg} with a signature`);
    }
    await expectRefused({ token: makeToken(u, { alg: 'HS512' }) }, 'AUTH_ALGORITHM_UNSUPPORTED', 'HS512');
    const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
    await expectRefused({ token: makeToken(u, { alg: 'RS256', key: privateKey }) },
      'AUTH_ALGORITHM_UNSUPPORTED', 'RS256 with no public key configured');
  });

  test('claims: missing exp, nbf in the future, missing or non-string sub: AUTH_CLAIM_INVALID', async () => {
    const u = newUser('Claims');
    await expectRefused({ token: makeToken({ ...u, exp: undefined }) }, 'AUTH_CLAIM_INVALID', 'no exp');
    await expectRefused({ token: tokenFor(u, { nbf: nowSec() + 600 }) }, 'AUTH_CLAIM_INVALID', 'nbf in 10 minutes');
    await expectRefused({ token: makeToken({ name: 'Nobody' }) }, 'AUTH_CLAIM_INVALID', 'no sub');
    await expectRefused({ token: makeToken({ sub: 42, name: 'Number' }) }, 'AUTH_CLAIM_INVALID', 'numeric sub');
    await expectRefused({ token: makeToken({ sub: '', name: 'Empty' }) }, 'AUTH_CLAIM_INVALID', 'empty sub');
    // a past nbf is fine
    const s = await connect(tokenFor(u, { nbf: nowSec() - 10 }));
    s.close();
  });
});

describe('display names', () => {
  const cases = [
    ['name wins', { name: 'Dr. Anna Berg', preferred_username: 'aberg' }, 'Dr. Anna Berg'],
    ['preferred_username when name is missing', { preferred_username: 'aberg' }, 'aberg'],
    ['an e-mail name is skipped', { name: 'anna@example.org', preferred_username: 'aberg' }, 'aberg'],
    ['both e-mails: local part of sub', { name: 'anna@example.org', preferred_username: 'a@example.org' }, null],
  ];
  for (const [what, claims, want] of cases) {
    test(what, async () => {
      const doc = await createDocument(['t']);
      const sub = uniq('user');
      const s = await connect(makeToken({ sub, ...claims }));
      const ack = ok(await join(s, doc.tab('t')));
      assert.equal(ack.users[0].username, want ?? sub);
      assert.equal(ack.users[0].userId, sub);
      const [row] = await q('SELECT username FROM collab.connections WHERE connection_id = $1', [s.id]);
      assert.equal(row.username, want ?? sub);
      s.close();
    });
  }

  test('sub only: sub; sub an e-mail: its local part, never the address', async () => {
    const doc = await createDocument(['t']);
    const plain = uniq('plainsub');
    const s1 = await connect(makeToken({ sub: plain }));
    assert.equal(ok(await join(s1, doc.tab('t'))).users.find((p) => p.connectionId === s1.id).username, plain);
    const local = uniq('anna.berg');
    const mail = `${local}@hospital.example`;
    const s2 = await connect(makeToken({ sub: mail }));
    const ack = ok(await join(s2, doc.tab('t')));
    const me = ack.users.find((p) => p.connectionId === s2.id);
    assert.equal(me.userId, mail);
    assert.equal(me.username, local);
    // the presence:joined seen by the other client shows no address either
    const joined = await waitFor(s1, 'presence:joined', (p) => p.user?.connectionId === s2.id);
    assert.equal(joined.user.username, local);
    s1.close();
    s2.close();
  });
});

describe('issuer and audience', () => {
  test('with collab.jwt_issuer and collab.jwt_audience set, wrong or missing iss/aud: AUTH_CLAIM_INVALID', async () => {
    const u = newUser('Iss');
    const iss = 'https://idp.test.example';
    const aud = 'collab-test';
    try {
      await setConf('collab.jwt_issuer', iss);
      await setConf('collab.jwt_audience', aud);
      await eventually(async () => (await refusalCode({ token: tokenFor(u, { aud }) })) === 'AUTH_CLAIM_INVALID',
        'worker applies collab.jwt_issuer (a token without iss is refused)');
      await eventually(async () => (await refusalCode({ token: tokenFor(u, { iss }) })) === 'AUTH_CLAIM_INVALID',
        'worker applies collab.jwt_audience (a token without aud is refused)');
      await expectRefused({ token: tokenFor(u, { iss: 'https://evil.example', aud }) }, 'AUTH_CLAIM_INVALID', 'wrong iss');
      await expectRefused({ token: tokenFor(u, { iss, aud: 'other-service' }) }, 'AUTH_CLAIM_INVALID', 'wrong aud');
      await expectRefused({ token: tokenFor(u, { iss, aud: ['a', 'b'] }) }, 'AUTH_CLAIM_INVALID', 'aud array without ours');
      (await connect(tokenFor(u, { iss, aud }))).close();
      (await connect(tokenFor(u, { iss, aud: ['other', aud] }))).close();
    } finally {
      await resetConf('collab.jwt_issuer', 'collab.jwt_audience');
    }
    await eventually(async () => (await refusalCode({ token: tokenFor(u) })) === 'connected',
      'after the reset a token without iss/aud connects again');
  });
});

describe('RS256 and ES256', () => {
  test('RS256 with the configured RSA key connects; other key: AUTH_SIGNATURE_INVALID; ES256 then: AUTH_ALGORITHM_UNSUPPORTED', async () => {
    const rsa = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
    const otherRsa = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
    const ec = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const file = writeWorkFile(`${uniq('rsa')}.pem`, rsa.publicKey.export({ type: 'spki', format: 'pem' }));
    const u = newUser('Rsa');
    try {
      await setConf('collab.jwt_public_key_file', file);
      const good = () => makeToken(u, { alg: 'RS256', key: rsa.privateKey });
      await eventually(async () => (await refusalCode({ token: good() })) === 'connected',
        'worker loads collab.jwt_public_key_file (an RS256 token connects)');
      const s = await connect(good());
      const [row] = await q('SELECT user_id, username FROM collab.connections WHERE connection_id = $1', [s.id]);
      assert.deepEqual(row, { user_id: u.sub, username: u.name });
      s.close();
      await expectRefused({ token: makeToken(u, { alg: 'RS256', key: otherRsa.privateKey }) },
        'AUTH_SIGNATURE_INVALID', 'RS256 signed by another key');
      await expectRefused({ token: makeToken(u, { alg: 'ES256', key: ec.privateKey }) },
        'AUTH_ALGORITHM_UNSUPPORTED', 'ES256 while an RSA key is configured');
      // HS256 with the shared secret still works next to the public key
      (await connect(tokenFor(u))).close();
      // expiry is enforced for RS256 too
      await expectRefused({ token: makeToken({ ...u, exp: nowSec() - 5 }, { alg: 'RS256', key: rsa.privateKey }) },
        'AUTH_TOKEN_EXPIRED', 'expired RS256');
    } finally {
      await resetConf('collab.jwt_public_key_file');
    }
  });

  test('ES256 with the configured P-256 key connects; other key: AUTH_SIGNATURE_INVALID', async () => {
    const ec = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const otherEc = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const file = writeWorkFile(`${uniq('ec')}.pem`, ec.publicKey.export({ type: 'spki', format: 'pem' }));
    const u = newUser('Ecdsa');
    try {
      await setConf('collab.jwt_public_key_file', file);
      const good = () => makeToken(u, { alg: 'ES256', key: ec.privateKey });
      await eventually(async () => (await refusalCode({ token: good() })) === 'connected',
        'worker loads the EC key (an ES256 token connects)');
      await expectRefused({ token: makeToken(u, { alg: 'ES256', key: otherEc.privateKey }) },
        'AUTH_SIGNATURE_INVALID', 'ES256 signed by another key');
      // a DER (not IEEE P1363) signature is not a valid ES256 JWS signature
      await expectRefused({ token: makeToken(u, { alg: 'ES256', sign: (input) => crypto.sign('sha256', Buffer.from(input), ec.privateKey) }) },
        'AUTH_SIGNATURE_INVALID', 'ES256 with a DER signature');
    } finally {
      await resetConf('collab.jwt_public_key_file');
    }
  });

  test('algorithm confusion: HS256 signed with the public key is refused', async () => {
    const rsa = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
    const pem = rsa.publicKey.export({ type: 'spki', format: 'pem' });
    const file = writeWorkFile(`${uniq('confusion')}.pem`, pem);
    const u = newUser('Confused');
    const confused = () => makeToken(u, { alg: 'HS256', secret: pem });
    try {
      // only the public key configured: HS256 is not an accepted algorithm at all
      await setConf('collab.jwt_public_key_file', file);
      await setConf('collab.jwt_secret', '');
      await eventually(async () => (await refusalCode({ token: makeToken(u, { alg: 'RS256', key: rsa.privateKey }) })) === 'connected'
        && (await refusalCode({ token: tokenFor(u) })) !== 'connected',
        'worker runs with the public key only');
      await expectRefused({ token: confused() }, 'AUTH_ALGORITHM_UNSUPPORTED', 'HS256 signed with the PEM, no secret configured');
      await expectRefused({ token: makeToken(u, { alg: 'HS256', secret: pem.trim() }) },
        'AUTH_ALGORITHM_UNSUPPORTED', 'HS256 signed with the trimmed PEM');
    } finally {
      await resetConf('collab.jwt_secret');
    }
    try {
      // secret and key both configured: the PEM is still no HMAC key
      await eventually(async () => (await refusalCode({ token: tokenFor(u) })) === 'connected',
        'worker has the shared secret back');
      const code = await refusalCode({ token: confused() });
      assert.ok(['AUTH_SIGNATURE_INVALID', 'AUTH_ALGORITHM_UNSUPPORTED'].includes(code),
        `HS256 signed with the public key while both are configured is refused, got ${code}`);
    } finally {
      await resetConf('collab.jwt_public_key_file');
    }
  });
});

describe('origins and namespaces', () => {
  test('an Origin outside collab.allowed_origins: FORBIDDEN; an allowed one connects and is recorded', async () => {
    const u = newUser('Origin');
    const allowed = 'https://ui.hospital.example';
    try {
      await setConf('collab.allowed_origins', `${allowed}, https://other.hospital.example`);
      await eventually(async () => (await refusalCode({ token: tokenFor(u) }, { extraHeaders: { origin: 'https://evil.example' } })) === 'FORBIDDEN',
        'worker applies collab.allowed_origins');
      const err = await expectRefused({ token: tokenFor(u) }, 'FORBIDDEN', 'foreign origin',
        { extraHeaders: { origin: 'https://evil.example' } });
      assert.ok(err.message.length > 0);
      const s = await connect(u, { extraHeaders: { origin: allowed } });
      const [row] = await q('SELECT origin FROM collab.connections WHERE connection_id = $1', [s.id]);
      assert.equal(row.origin, allowed);
      s.close();
      (await connect(u, { extraHeaders: { origin: 'https://other.hospital.example' } })).close();
    } finally {
      await resetConf('collab.allowed_origins');
    }
    await eventually(async () => (await refusalCode({ token: tokenFor(u) }, { extraHeaders: { origin: 'https://evil.example' } })) === 'connected',
      'after the reset any origin connects');
  });

  test('a namespace other than /: connect_error "Invalid namespace"', async () => {
    const u = newUser('Nsp');
    const err = await tryConnect({ token: tokenFor(u) }, { nsp: '/admin' });
    assert.ok(err, 'connection to /admin is refused');
    assert.equal(err.message, 'Invalid namespace');
  });
});

describe('auth:refresh and token expiry', () => {
  test('auth:refresh with a new token of the same sub: {ok:true, expiresAt}', async () => {
    const u = newUser('Refresh');
    const s = await connect(u);
    const exp = nowSec() + 7200;
    const ack = ok(await emitAck(s, 'auth:refresh', { token: tokenFor(u, { exp }) }));
    assert.match(ack.expiresAt, ISO_RE);
    assert.equal(Date.parse(ack.expiresAt), exp * 1000);
    s.close();
  });

  test('auth:refresh failures: other sub AUTH_CLAIM_INVALID, garbage AUTH_TOKEN_INVALID, expired AUTH_TOKEN_EXPIRED, bad signature AUTH_SIGNATURE_INVALID, missing BAD_REQUEST or AUTH_TOKEN_MISSING', async () => {
    const u = newUser('Refresh2');
    const s = await connect(u);
    fails(await emitAck(s, 'auth:refresh', { token: tokenFor(newUser('Other')) }), 'AUTH_CLAIM_INVALID', 'other sub');
    fails(await emitAck(s, 'auth:refresh', { token: 'garbage' }), 'AUTH_TOKEN_INVALID', 'garbage');
    fails(await emitAck(s, 'auth:refresh', { token: tokenFor(u, { exp: nowSec() - 60 }) }), 'AUTH_TOKEN_EXPIRED', 'expired');
    fails(await emitAck(s, 'auth:refresh', { token: tokenFor(u, {}, { secret: 'wrong' }) }), 'AUTH_SIGNATURE_INVALID', 'bad signature');
    fails(await emitAck(s, 'auth:refresh', { token: makeToken(u, { alg: 'none' }) }), 'AUTH_ALGORITHM_UNSUPPORTED', 'alg none');
    const missing = await emitAck(s, 'auth:refresh', {});
    assert.equal(missing.ok, false);
    assert.ok(['BAD_REQUEST', 'AUTH_TOKEN_MISSING'].includes(missing.error?.code), JSON.stringify(missing));
    // the connection is still usable after failed refreshes
    const doc = await createDocument(['t']);
    ok(await join(s, doc.tab('t')));
    assert.ok(s.connected);
    s.close();
  });

  test('a token that expires without refresh: error AUTH_TOKEN_EXPIRED, server disconnect, locks released', async () => {
    const doc = await createDocument(['t']);
    const u = newUser('Expiring');
    const watcherUser = newUser('Watcher');
    const watcher = await connect(watcherUser);
    ok(await join(watcher, doc.tab('t')));
    const s = await connect(tokenFor(u, { exp: nowSec() + 2 }));
    const ack = ok(await join(s, doc.tab('t'), 'editor'));
    assert.equal(ack.role, 'editor');
    const err = await waitFor(s, 'error', (e) => e.code === 'AUTH_TOKEN_EXPIRED', 8000);
    assert.equal(typeof err.message, 'string');
    assert.equal(await waitDisconnect(s, 5000), 'io server disconnect');
    const released = await waitFor(watcher, 'lock:released', (e) => e.resourceId === doc.tab('t'));
    assert.deepEqual(released.previousHolder, ref(u));
    assert.equal(released.reason, 'disconnected');
    const left = await waitFor(watcher, 'presence:left', (e) => e.resourceId === doc.tab('t') && e.user?.userId === u.sub);
    assert.equal(left.reason, 'disconnected');
    assert.deepEqual(await q('SELECT * FROM collab.locks WHERE resource_id = $1', [doc.tab('t')]), []);
    watcher.close();
  });

  test('a refreshed token keeps the connection past the first expiry', async () => {
    const doc = await createDocument(['t']);
    const u = newUser('Refreshed');
    const firstExp = nowSec() + 2;
    const s = await connect(tokenFor(u, { exp: firstExp }));
    ok(await emitAck(s, 'auth:refresh', { token: tokenFor(u, { exp: nowSec() + 3600 }) }));
    // the only way to see that nothing happens is to let the old expiry pass
    while (Date.now() < firstExp * 1000 + 1500) await new Promise((r) => setTimeout(r, 200));
    const ack = ok(await join(s, doc.tab('t')), 'join after the first token expired');
    assert.ok(ack.users.some((p) => p.connectionId === s.id));
    assert.ok(s.connected, 'still connected');
    assert.deepEqual(s.__log.filter((e) => e.event === 'error' || e.event === '$disconnect'), []);
    s.close();
  });
});
