// HS256 JWTs for the benchmark clients.
import crypto from 'node:crypto';

const b64u = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');

export function makeToken(secret, claims, ttlSeconds = 3600) {
  const now = Math.floor(Date.now() / 1000);
  const input = `${b64u({ alg: 'HS256', typ: 'JWT' })}.${b64u({ iat: now, exp: now + ttlSeconds, ...claims })}`;
  const sig = crypto.createHmac('sha256', secret).update(input).digest('base64url');
  return `${input}.${sig}`;
}
