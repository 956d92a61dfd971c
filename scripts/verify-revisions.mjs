#!/usr/bin/env node
// Recomputes the hash chain of one resource's collab revisions outside PostgreSQL, as
// docs/revisions.md defines it.  Input on stdin: the rows of collab.revision() as JSON,
// one per line (docs/revisions.md, "Auditing"); prints the head hash, or the first
// version that does not verify and exits 1.
import { createHash } from 'node:crypto';
import { readFileSync, realpathSync } from 'node:fs';
import { pathToFileURL } from 'node:url';

const field = (b) => { const n = Buffer.alloc(4); n.writeInt32BE(b ? b.length : -1); return b ? Buffer.concat([n, b]) : n; };
const text = (s) => (s == null ? null : Buffer.from(s, 'utf8'));
const int8 = (x) => { if (x == null) return null; const b = Buffer.alloc(8); b.writeBigInt64BE(BigInt(x)); return b; };
// "2026-03-01T10:00:00.123456+00:00" -> microseconds since 1970-01-01 UTC
export const micros = (t) => { const m = /^(.*:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$/.exec(t); return BigInt(Date.parse(m[1] + m[3])) * 1000n + BigInt((m[2] ?? '').padEnd(6, '0')); };

export const revisionHash = (r) => createHash('sha256').update(Buffer.concat([text('collab.revision.v1'),
  r.prev_hash == null ? null : Buffer.from(r.prev_hash, 'hex'), text(r.resource_id), int8(r.version), text(r.content),
  text(r.saved_by), text(r.saved_by_name), int8(micros(r.saved_at)), int8(r.token), text(r.path), int8(r.restored_from)].map(field))).digest('hex');

/** { ok, first, last, head, anchor } or { ok: false, version, problem }, for revisions in any order. */
export function verifyChain(rows) {
  const rs = [...rows].sort((a, b) => a.version - b.version);
  for (const [i, r] of rs.entries()) {
    const p = rs[i - 1];
    if (p && (r.version !== p.version + 1 || r.prev_hash !== p.hash)) return { ok: false, version: r.version, problem: `not chained to version ${p.version}` };
    if (r.token == null && r.path !== 'genesis') return { ok: false, version: r.version, problem: 'its token is withheld while its lock is live' };
    if (revisionHash(r) !== r.hash) return { ok: false, version: r.version, problem: 'its fields do not match its hash' };
  }
  if (rs.length === 0) return { ok: false, problem: 'no revisions given' };
  return { ok: true, head: rs.at(-1).hash, anchor: rs[0].prev_hash, first: rs[0].version, last: rs.at(-1).version };
}

if (process.argv[1] && import.meta.url === pathToFileURL(realpathSync(process.argv[1])).href) {
  const v = verifyChain(readFileSync(0, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l)));
  console.log(v.ok ? `ok: versions ${v.first} to ${v.last}, head ${v.head}, anchored at ${v.anchor ?? 'nothing (first revision)'}`
    : `${v.version === undefined ? '' : `version ${v.version} `}does not verify: ${v.problem}`);
  process.exit(v.ok ? 0 : 1);
}
