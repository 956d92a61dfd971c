// HS256 JWTs for the benchmark clients.
import crypto from 'node:crypto';

const b64u = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');

// BENCH_TOKEN_GROUPS (a JSON array): the groups claim of every token, as an
// identity provider would issue it to users of a hospital (the grants of
// test/bench/acl.sql name them).
const GROUPS = process.env.BENCH_TOKEN_GROUPS ? JSON.parse(process.env.BENCH_TOKEN_GROUPS) : undefined;

export function makeToken(secret, claims, ttlSeconds = 3600) {
  const now = Math.floor(Date.now() / 1000);
  const input = `${b64u({ alg: 'HS256', typ: 'JWT' })}.${b64u({ iat: now, exp: now + ttlSeconds, groups: GROUPS, ...claims })}`;
  const sig = crypto.createHmac('sha256', secret).update(input).digest('base64url');
  return `${input}.${sig}`;
}
