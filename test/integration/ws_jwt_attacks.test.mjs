// JWT attacks at the Socket.IO CONNECT: every vector is refused with its
// exact AUTH_* code (docs/protocol.md, "Connecting and authentication"),
// while a bystander connected before the attacks keeps getting its
// acknowledgements and events, and the worker process stays the same.
// ws_auth.test.mjs covers the ordinary cases (missing token, a wrong
// secret, RS256/ES256 keys, iss/aud mismatch); this file is the hostile set.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import {
  SECRET, newUser, makeToken, tokenFor, nowSec, tryConnect, refusalCode,
  q, setConf, resetConf, eventually, rawOpen, teardown, startBystander,
} from './helpers.mjs';

const b64u = (x) => Buffer.from(typeof x === 'string' ? x : JSON.stringify(x)).toString('base64url');
const hmac = (input, secret = SECRET, hash = 'sha256') => crypto.createHmac(hash, secret).update(input).digest('base64url');
/** header and payload given as raw JSON text (for duplicate keys, odd types), HS256-signed with the secret. */
const signedRaw = (headerJson, payloadJson) => {
  const input = `${b64u(headerJson)}.${b64u(payloadJson)}`;
  return `${input}.${hmac(input)}`;
};
const HDR = '{"alg":"HS256","typ":"JWT"}';
const claimsJson = (extra = {}) => JSON.stringify({ sub: 'u-attack', name: 'Attacker', iat: nowSec(), exp: nowSec() + 3600, ...extra });
/** The longest valid token of at most 8192 bytes and the shortest one above. */
function tokenAround8k() {
  let under = null;
  for (let n = 5900; ; n++) {
    const t = makeToken({ sub: 'u-8k', pad: 'q'.repeat(n) });
    if (t.length <= 8192) under = t;
    else return { under, over: t };
  }
}
const nested = (depth) => '['.repeat(depth) + ']'.repeat(depth);

// Keys are made before the tests, asynchronously: a synchronous key
// generation would stall this process long enough for the bystander to miss
// its heartbeats.
const keys = {};
let bystander;



before(async () => {
  const { stdout: priv } = await promisify(execFile)('openssl', ['genpkey', '-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:2048']);
  keys.pem = await new Promise((resolve, reject) => {
    const child = execFile('openssl', ['pkey', '-pubout'], (err, stdout) => (err ? reject(err) : resolve(stdout)));
    child.stdin.end(priv);
  });
  keys.rsa = await promisify(crypto.generateKeyPair)('rsa', { modulusLength: 2048 });
  bystander = await startBystander('jwtatk');
});
after(async () => {
  bystander?.socket.close();
  await teardown();
});

async function expectCode(auth, code, what) {
  const err = await tryConnect(auth);
  assert.ok(err, `${what}: expected connect_error ${code}, but the connection was accepted`);
  assert.equal(err.data?.code, code, `${what}: connect_error code (message "${err.message}", data ${JSON.stringify(err.data)})`);
  assert.ok(typeof err.message === 'string' && err.message.length > 3, `${what}: a message for a person`);
  assert.ok(!err.message.includes(SECRET), `${what}: the message does not carry the secret`);
}

/** [what, () => auth payload, expected code] */
function group(name, cases) {
  describe(name, () => {
    for (const [what, auth, code] of cases) {
      test(`${what}: ${code}`, async () => expectCode(auth(), code, what));
    }
    test(`the bystander is still served after: ${name}`, async () => bystander.served(name));
  });
}

group('algorithm', [
  ...['none', 'None', 'NONE', 'nOnE'].map((alg) => [
    `alg "${alg}" with a valid HS256 signature over the input`,
    () => ({ token: makeToken({ sub: 'u1' }, { alg, sign: (input) => crypto.createHmac('sha256', SECRET).update(input).digest() }) }),
    'AUTH_ALGORITHM_UNSUPPORTED']),
  ['alg "none" without a signature part', () => ({ token: makeToken({ sub: 'u1' }, { alg: 'none' }).replace(/\.$/, '') }), 'AUTH_TOKEN_INVALID'],
  ['HS512 signed with the shared secret', () => ({ token: makeToken({ sub: 'u1' }, { alg: 'HS512' }) }), 'AUTH_ALGORITHM_UNSUPPORTED'],
  ['HS384 signed with the shared secret', () => ({ token: makeToken({ sub: 'u1' }, { alg: 'HS384', sign: (i) => crypto.createHmac('sha384', SECRET).update(i).digest() }) }), 'AUTH_ALGORITHM_UNSUPPORTED'],
  ['PS256 (no key configured)', () => ({ token: makeToken({ sub: 'u1' }, { alg: 'PS256', sign: () => crypto.randomBytes(256) }) }), 'AUTH_ALGORITHM_UNSUPPORTED'],
  ['alg "hs256" (lower case)', () => ({ token: makeToken({ sub: 'u1' }, { alg: 'hs256', sign: (i) => crypto.createHmac('sha256', SECRET).update(i).digest() }) }), 'AUTH_ALGORITHM_UNSUPPORTED'],
  ['alg "HS256 " (trailing space)', () => ({ token: makeToken({ sub: 'u1' }, { alg: 'HS256 ', sign: (i) => crypto.createHmac('sha256', SECRET).update(i).digest() }) }), 'AUTH_ALGORITHM_UNSUPPORTED'],
  ['alg missing', () => ({ token: signedRaw('{"typ":"JWT"}', claimsJson()) }), 'AUTH_ALGORITHM_UNSUPPORTED'],
  ['alg a number', () => ({ token: signedRaw('{"alg":256}', claimsJson()) }), 'AUTH_ALGORITHM_UNSUPPORTED'],
  ['alg an array ["HS256"]', () => ({ token: signedRaw('{"alg":["HS256"]}', claimsJson()) }), 'AUTH_ALGORITHM_UNSUPPORTED'],
  ['RS256 with the attacker\'s key in a "jwk" header (no public key configured)', () => {
    const { privateKey, publicKey } = keys.rsa;
    return { token: makeToken({ sub: 'u1' }, { alg: 'RS256', key: privateKey, header: { jwk: publicKey.export({ format: 'jwk' }) } }) };
  }, 'AUTH_ALGORITHM_UNSUPPORTED'],
]);

group('signature', [
  ['HS256 signed with an RSA public key PEM (from openssl) as the secret', () => {
    assert.match(keys.pem, /^-----BEGIN PUBLIC KEY-----\n/);
    return { token: makeToken({ sub: 'u1' }, { secret: keys.pem }) };
  }, 'AUTH_SIGNATURE_INVALID'],
  ['empty signature ("header.payload.")', () => ({ token: tokenFor(newUser('X')).replace(/[^.]+$/, '') }), 'AUTH_SIGNATURE_INVALID'],
  ['signature cut by one byte', () => {
    const t = tokenFor(newUser('X'));
    const [h, p, s] = t.split('.');
    return { token: `${h}.${p}.${Buffer.from(s, 'base64url').subarray(0, 31).toString('base64url')}` };
  }, 'AUTH_SIGNATURE_INVALID'],
  ['signature with one more byte', () => {
    const [h, p, s] = tokenFor(newUser('X')).split('.');
    return { token: `${h}.${p}.${Buffer.concat([Buffer.from(s, 'base64url'), Buffer.from([0])]).toString('base64url')}` };
  }, 'AUTH_SIGNATURE_INVALID'],
  ['signature of another token', () => {
    const [h, p] = tokenFor(newUser('X')).split('.');
    return { token: `${h}.${p}.${tokenFor(newUser('Y')).split('.')[2]}` };
  }, 'AUTH_SIGNATURE_INVALID'],
  ['a valid token with its header re-encoded (whitespace added)', () => {
    const [, p, s] = tokenFor(newUser('X')).split('.');
    return { token: `${b64u('{"alg":"HS256", "typ":"JWT"}')}.${p}.${s}` };
  }, 'AUTH_SIGNATURE_INVALID'],
]);

group('shape and encoding', [
  ['header only', () => ({ token: tokenFor(newUser('X')).split('.')[0] }), 'AUTH_TOKEN_INVALID'],
  ['signature part missing ("header.payload")', () => ({ token: tokenFor(newUser('X')).split('.').slice(0, 2).join('.') }), 'AUTH_TOKEN_INVALID'],
  ['empty header (".payload.sig")', () => ({ token: '.' + tokenFor(newUser('X')).split('.').slice(1).join('.') }), 'AUTH_TOKEN_INVALID'],
  ['empty payload ("header..sig")', () => { const [h, , s] = tokenFor(newUser('X')).split('.'); return { token: `${h}..${s}` }; }, 'AUTH_TOKEN_INVALID'],
  ['only dots', () => ({ token: '..' }), 'AUTH_TOKEN_INVALID'],
  ['four parts (a valid token plus ".x")', () => ({ token: tokenFor(newUser('X')) + '.x' }), 'AUTH_TOKEN_INVALID'],
  ['five parts (JWE shape)', () => ({ token: ['a', 'b', 'c', 'd', 'e'].map((x) => b64u(x)).join('.') }), 'AUTH_TOKEN_INVALID'],
  ['trailing space', () => ({ token: tokenFor(newUser('X')) + ' ' }), 'AUTH_TOKEN_INVALID'],
  ['trailing newline', () => ({ token: tokenFor(newUser('X')) + '\n' }), 'AUTH_TOKEN_INVALID'],
  ['leading "Bearer "', () => ({ token: 'Bearer ' + tokenFor(newUser('X')) }), 'AUTH_TOKEN_INVALID'],
  ...[0, 1, 2].map((part) => [`base64 "+" and "/" (not base64url) in part ${part + 1}`, () => {
    const parts = tokenFor(newUser('X')).split('.');
    parts[part] = parts[part].slice(0, -2) + '+/';
    return { token: parts.join('.') };
  }, 'AUTH_TOKEN_INVALID']),
  ...[0, 1, 2].map((part) => [`padding "=" on part ${part + 1}`, () => {
    const parts = tokenFor(newUser('X')).split('.');
    parts[part] += '=';
    return { token: parts.join('.') };
  }, 'AUTH_TOKEN_INVALID']),
  ['a part of length 1 mod 4 (no base64 at all)', () => { const [h, p] = tokenFor(newUser('X')).split('.'); return { token: `${h}.${p}.AAAAA` }; }, 'AUTH_TOKEN_INVALID'],
  ['non-canonical base64url (unused low bits set)', () => {
    // 32 bytes of signature are 43 characters whose last carries 2 unused bits
    const [h, p, s] = tokenFor(newUser('X')).split('.');
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
    const last = alphabet.indexOf(s.at(-1));
    return { token: `${h}.${p}.${s.slice(0, -1)}${alphabet[last | 1]}` };
  }, 'AUTH_TOKEN_INVALID'],
  ['a NUL byte inside the token', () => { const t = tokenFor(newUser('X')); return { token: t.slice(0, 10) + '\u0000' + t.slice(10) }; }, 'AUTH_TOKEN_INVALID'],
  ['non-ASCII characters in the token', () => ({ token: tokenFor(newUser('X')).replace(/^./, 'é') }), 'AUTH_TOKEN_INVALID'],
  ['token longer than 8 KiB (a 9 kB header field)', () => ({ token: makeToken({ sub: 'u1' }, { header: { pad: 'p'.repeat(9000) } }) }), 'AUTH_TOKEN_INVALID'],
  ['the shortest token over 8 KiB (8192 bytes)', () => ({ token: tokenAround8k().over }), 'AUTH_TOKEN_INVALID'],
  ['auth.token a number', () => ({ token: 12345 }), 'AUTH_TOKEN_INVALID'],
  ['auth.token an array', () => ({ token: [tokenFor(newUser('X'))] }), 'AUTH_TOKEN_INVALID'],
  ['auth.token an object', () => ({ token: { jwt: tokenFor(newUser('X')) } }), 'AUTH_TOKEN_INVALID'],
  ['auth.token null', () => ({ token: null }), 'AUTH_TOKEN_MISSING'],
]);

group('header and payload JSON', [
  ['header an array', () => ({ token: signedRaw('["HS256"]', claimsJson()) }), 'AUTH_TOKEN_INVALID'],
  ['header a string', () => ({ token: signedRaw('"HS256"', claimsJson()) }), 'AUTH_TOKEN_INVALID'],
  ['header with a duplicate "alg" (none, then HS256)', () => ({ token: signedRaw('{"alg":"none","alg":"HS256"}', claimsJson()) }), 'AUTH_TOKEN_INVALID'],
  ['header with a duplicate "alg" (HS256, then none)', () => ({ token: signedRaw('{"alg":"HS256","alg":"none"}', claimsJson()) }), 'AUTH_TOKEN_INVALID'],
  ['header nested 300 deep', () => ({ token: signedRaw(`{"alg":"HS256","x":${nested(300)}}`, claimsJson()) }), 'AUTH_TOKEN_INVALID'],
  ['header with trailing garbage after the object', () => ({ token: signedRaw(`${HDR}x`, claimsJson()) }), 'AUTH_TOKEN_INVALID'],
  ['header with a BOM', () => ({ token: signedRaw(`\ufeff${HDR}`, claimsJson()) }), 'AUTH_TOKEN_INVALID'],
  ['header not UTF-8', () => {
    const h = Buffer.concat([Buffer.from('{"alg":"HS256","x":"'), Buffer.from([0xc3, 0x28]), Buffer.from('"}')]).toString('base64url');
    const input = `${h}.${b64u(claimsJson())}`;
    return { token: `${input}.${hmac(input)}` };
  }, 'AUTH_TOKEN_INVALID'],
  ['typ "JWS"', () => ({ token: signedRaw('{"alg":"HS256","typ":"JWS"}', claimsJson()) }), 'AUTH_TOKEN_INVALID'],
  ['typ a number', () => ({ token: signedRaw('{"alg":"HS256","typ":1}', claimsJson()) }), 'AUTH_TOKEN_INVALID'],
  ['crit present', () => ({ token: signedRaw('{"alg":"HS256","crit":["exp"]}', claimsJson()) }), 'AUTH_TOKEN_INVALID'],
  ['kid a number', () => ({ token: signedRaw('{"alg":"HS256","kid":7}', claimsJson()) }), 'AUTH_TOKEN_INVALID'],
  ['kid naming an unknown key, signed with another secret', () => ({ token: makeToken({ sub: 'u1' }, { header: { kid: 'attacker-key' }, secret: 'attacker-secret-attacker-secret-0000' }) }), 'AUTH_SIGNATURE_INVALID'],
  ['payload (signed) an array', () => ({ token: signedRaw(HDR, '[{"sub":"u1"}]') }), 'AUTH_TOKEN_INVALID'],
  ['payload (signed) a string', () => ({ token: signedRaw(HDR, '"u1"') }), 'AUTH_TOKEN_INVALID'],
  ['payload (signed) a number', () => ({ token: signedRaw(HDR, '42') }), 'AUTH_TOKEN_INVALID'],
  ['payload (signed) null', () => ({ token: signedRaw(HDR, 'null') }), 'AUTH_TOKEN_INVALID'],
  ['payload (signed) not JSON', () => ({ token: signedRaw(HDR, 'sub=u1') }), 'AUTH_TOKEN_INVALID'],
  ['payload (signed) nested 300 deep', () => ({ token: signedRaw(HDR, `{"sub":"u1","exp":${nowSec() + 60},"x":${nested(300)}}`) }), 'AUTH_TOKEN_INVALID'],
  ['payload (signed) with a duplicate "sub"', () => ({ token: signedRaw(HDR, `{"sub":"u-user","sub":"u-admin","exp":${nowSec() + 600}}`) }), 'AUTH_TOKEN_INVALID'],
  ['payload (signed) with a duplicate "exp"', () => ({ token: signedRaw(HDR, `{"sub":"u1","exp":${nowSec() - 600},"exp":${nowSec() + 600}}`) }), 'AUTH_TOKEN_INVALID'],
]);

group('claims', [
  ['exp a numeric string', () => ({ token: signedRaw(HDR, claimsJson({ exp: String(nowSec() + 3600) })) }), 'AUTH_CLAIM_INVALID'],
  ['exp fractional', () => ({ token: signedRaw(HDR, claimsJson({ exp: nowSec() + 3600.5 })) }), 'AUTH_CLAIM_INVALID'],
  ['exp null', () => ({ token: signedRaw(HDR, claimsJson({ exp: null })) }), 'AUTH_CLAIM_INVALID'],
  ['exp true', () => ({ token: signedRaw(HDR, claimsJson({ exp: true })) }), 'AUTH_CLAIM_INVALID'],
  ['exp beyond 64 bits', () => ({ token: signedRaw(HDR, claimsJson().replace(/"exp":\d+/, '"exp":99999999999999999999999')) }), 'AUTH_CLAIM_INVALID'],
  ['exp now (leeway 0)', () => ({ token: tokenFor(newUser('X'), { exp: nowSec() }) }), 'AUTH_TOKEN_EXPIRED'],
  ['exp negative', () => ({ token: tokenFor(newUser('X'), { exp: -1 }) }), 'AUTH_TOKEN_EXPIRED'],
  ['nbf a string', () => ({ token: signedRaw(HDR, claimsJson({ nbf: String(nowSec()) })) }), 'AUTH_CLAIM_INVALID'],
  ['nbf 5 s ahead (leeway 0)', () => ({ token: tokenFor(newUser('X'), { nbf: nowSec() + 5 }) }), 'AUTH_CLAIM_INVALID'],
  ['iat a string', () => ({ token: signedRaw(HDR, claimsJson({ iat: 'yesterday' })) }), 'AUTH_CLAIM_INVALID'],
  ['iat an object', () => ({ token: signedRaw(HDR, claimsJson({ iat: {} })) }), 'AUTH_CLAIM_INVALID'],
  ['iss a number (no issuer configured)', () => ({ token: signedRaw(HDR, claimsJson({ iss: 1 })) }), 'AUTH_CLAIM_INVALID'],
  ['sub an object', () => ({ token: signedRaw(HDR, claimsJson({ sub: { id: 'u1' } })) }), 'AUTH_CLAIM_INVALID'],
  ['sub an array', () => ({ token: signedRaw(HDR, claimsJson({ sub: ['u1'] })) }), 'AUTH_CLAIM_INVALID'],
  ['sub null', () => ({ token: signedRaw(HDR, claimsJson({ sub: null })) }), 'AUTH_CLAIM_INVALID'],
  ['sub true', () => ({ token: signedRaw(HDR, claimsJson({ sub: true })) }), 'AUTH_CLAIM_INVALID'],
  ['sub of 257 bytes', () => ({ token: tokenFor({ sub: 's'.repeat(257), name: 'Long' }) }), 'AUTH_CLAIM_INVALID'],
  ['sub of 129 two-byte characters (258 bytes)', () => ({ token: tokenFor({ sub: 'é'.repeat(129), name: 'Long' }) }), 'AUTH_CLAIM_INVALID'],
  ['sub with a newline', () => ({ token: tokenFor({ sub: 'u1\nadmin', name: 'N' }) }), 'AUTH_CLAIM_INVALID'],
  // the JSON parser refuses \u0000 outright (no text value can hold it)
  ['sub with a \\u0000 escape', () => ({ token: tokenFor({ sub: 'u1\u0000admin', name: 'N' }) }), 'AUTH_TOKEN_INVALID'],
  ['sub with U+2028', () => ({ token: tokenFor({ sub: 'u1\u2028', name: 'N' }) }), 'AUTH_CLAIM_INVALID'],
  ['name a number', () => ({ token: signedRaw(HDR, claimsJson({ name: 5 })) }), 'AUTH_CLAIM_INVALID'],
  ['name with a control character', () => ({ token: tokenFor({ sub: 'u1', name: 'Eve\u001b[31m' }) }), 'AUTH_CLAIM_INVALID'],
  ['preferred_username an array', () => ({ token: signedRaw(HDR, claimsJson({ name: undefined, preferred_username: ['x'] })) }), 'AUTH_CLAIM_INVALID'],
]);

describe('accepted at the boundaries (the refusals above are not blanket refusals)', () => {
  test('sub of exactly 256 bytes, typ "jwt" in lower case, an unknown kid with the right signature: connected', async () => {
    // kid never selects a key (jwt.c): the configured secret decides
    for (const [what, token] of [
      ['sub of 256 bytes', tokenFor({ sub: 's'.repeat(256), name: 'Long' })],
      ['typ "jwt"', makeToken({ sub: 'u-typ' }, { header: { typ: 'jwt' } })],
      ['unknown kid, right signature', makeToken({ sub: 'u-kid' }, { header: { kid: 'no-such-key' } })],
      ['the longest token of at most 8 KiB', tokenAround8k().under],
      ['a past nbf and a future exp of one second', tokenFor({ sub: 'u-nbf' }, { nbf: nowSec() - 1, exp: nowSec() + 2 })],
    ]) {
      assert.equal(await refusalCode({ token }), 'connected', what);
    }
  });
  test('the bystander is still served after the boundaries', async () => bystander.served('the boundaries'));
});

describe('a 100 kB token (a CONNECT larger than collab.max_message_size)', () => {
  test('error PAYLOAD_TOO_LARGE, then close 1009, no CONNECT answer', async () => {
    const token = makeToken({ sub: 'u1' }, { header: { pad: 'h'.repeat(100 * 1024) } });
    const c = await rawOpen();
    await c.waitFrame('0{');
    c.send(`40${JSON.stringify({ token })}`);
    const f = await c.waitFrame('42["error"');
    const [, err] = JSON.parse(f.slice(2));
    assert.equal(err.code, 'PAYLOAD_TOO_LARGE');
    const closed = await c.waitClosed();
    assert.equal(closed.code, 1009);
    assert.equal(c.frames.some((x) => typeof x === 'string' && /^4[04]/.test(x)), false, 'neither CONNECT nor CONNECT_ERROR');
  });
  test('the bystander is still served after the 100 kB token', async () => bystander.served('the 100 kB token'));
});

describe('issuer and audience, when configured', () => {
  const iss = 'https://idp.attack.example';
  const aud = 'collab-attack';
  before(async () => {
    await setConf('collab.jwt_issuer', iss);
    await setConf('collab.jwt_audience', aud);
    await eventually(async () => (await refusalCode({ token: tokenFor(newUser('X'), { aud }) })) === 'AUTH_CLAIM_INVALID'
      && (await refusalCode({ token: tokenFor(newUser('X'), { iss }) })) === 'AUTH_CLAIM_INVALID',
    'the worker applies collab.jwt_issuer and collab.jwt_audience');
  });
  after(async () => {
    await resetConf('collab.jwt_issuer', 'collab.jwt_audience');
    await eventually(async () => (await refusalCode({ token: tokenFor(newUser('X')) })) === 'connected',
      'after the reset a token without iss/aud connects again');
  });
  const cases = [
    ['iss in other case', { iss: iss.toUpperCase(), aud }],
    ['iss with a trailing slash', { iss: `${iss}/`, aud }],
    ['iss an array holding the issuer', { iss: [iss], aud }],
    ['iss null', { iss: null, aud }],
    ['aud a number', { iss, aud: 1 }],
    ['aud an object', { iss, aud: { aud } }],
    ['aud an array with a non-string next to ours', { iss, aud: [aud, 1] }],
    ['aud an empty array', { iss, aud: [] }],
    ['aud with a trailing space', { iss, aud: `${aud} ` }],
    ['aud a prefix of ours', { iss, aud: aud.slice(0, -1) }],
  ];
  for (const [what, claims] of cases) {
    test(`${what}: AUTH_CLAIM_INVALID`, async () => expectCode({ token: tokenFor(newUser('X'), claims) }, 'AUTH_CLAIM_INVALID', what));
  }
  test('the right iss and aud connect', async () => {
    assert.equal(await refusalCode({ token: tokenFor(newUser('X'), { iss, aud }) }), 'connected');
  });
  test('the bystander is still served after the iss/aud vectors', async () => bystander.served('iss/aud'));
});

describe('the attacks left nothing behind', () => {
  test('no connection of an attacker is registered; the bystander is the only one of this file', async () => {
    const rows = await q("SELECT user_id FROM collab.connections WHERE user_id IN ('u-attack', 'u1', 'u-user', 'u-admin')");
    assert.deepEqual(rows, []);
    await bystander.served('everything');
  });
});
