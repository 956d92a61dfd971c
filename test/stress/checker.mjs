// History checker for the concurrent-writer stress run (stress.mjs).
//
// Input: what the clients recorded (every operation as invoke + ok / fail /
// unknown), what an observer connection received (every event of every
// room), the audit trail with its tokens (collab.audit), the final rows
// of collab.resources, and their revisions (collab.revisions) with what
// collab.verify_history() said of each.  Output: counts and violations for
// six checks:
//
//   1  no save with a stale or expired token was accepted, nor one while
//      its lease was suspended (its holder's connection lost); refusals
//      carry the code the audit trail implies; saves sent after the
//      client's own lease had certainly lapsed were refused
//   2  no lost update: the final content of each resource is the ordered
//      history of its accepted saves (one line per version), every
//      acknowledged save is in it at its acknowledged version, refused saves
//      are not, acknowledgements respect real-time order, reads see a prefix
//   3  no two valid holders at once on one resource or on an ancestor and a
//      descendant; client-observed grants match the audit trail; tokens
//      increase in grant order
//   4  every expiry produced exactly one lock:expired (and every grant,
//      release and save exactly one lock:acquired, lock:released, doc:saved;
//      every suspension one lock:suspended; every return and takeover one
//      lock:resumed)
//   5  no unexpected error codes
//   6  the revisions of each resource are exactly its accepted saves, in
//      order (content, token, saver, path, time), with an unbroken hash
//      chain recomputed here (scripts/verify-revisions.mjs) and in the
//      database (verify_history)
//
// Times: audit and event times are the server clock (epoch milliseconds,
// audit with microseconds, events truncated to milliseconds); client times
// are CLOCK_MONOTONIC milliseconds, comparable across local processes and
// only ever compared with each other.  Where a check compares a
// millisecond-truncated event time with an audit time it takes the bound
// that cannot produce a false alarm.
//
// A save's content is the content its writer last read plus one line
// "<op id>|t<token>\n", so the final content names every accepted save and
// the token its writer presented.

import { micros, verifyChain } from '../../scripts/verify-revisions.mjs';

export const CHECKS = {
  1: 'no accepted save with a stale or expired token',
  2: 'no lost update (final content = ordered accepted saves)',
  3: 'no overlapping holders on a path',
  4: 'one event per audited expiry (and per grant, release, save, suspension, return)',
  5: 'no unexpected error codes',
  6: 'revisions = accepted saves, in order, hash chain unbroken',
};

// Codes an operation may fail with in a correct run.
const ALLOWED_CODES = {
  join: [],
  acquire: ['LOCK_HELD'],
  renew: ['LOCK_EXPIRED', 'LOCK_NOT_HELD'],
  release: ['LOCK_EXPIRED', 'LOCK_NOT_HELD'],
  leave: [],
  save: ['LOCK_EXPIRED', 'LOCK_NOT_HELD'],
  read: [],
  force: [],
};
const TOKEN_CODES = new Set(['LOCK_EXPIRED', 'LOCK_NOT_HELD']);

/** Ancestors of a resource id, nearest last ('a/b/c' -> ['a', 'a/b']). */
export function ancestors(id) {
  const parts = id.split('/');
  const out = [];
  for (let i = 1; i < parts.length; i++) out.push(parts.slice(0, i).join('/'));
  return out;
}

/** True when locks on a and b conflict: same resource, ancestor or descendant. */
export function onOnePath(a, b) {
  return a === b || b.startsWith(a + '/') || a.startsWith(b + '/');
}

export function lineFor(opId, token) {
  return `${opId}|t${token}`;
}

export function parseLine(line) {
  const m = /^(.+)\|t(\d+|null|undefined)$/.exec(line);
  if (!m) return null;
  return { opId: m[1], token: /^\d+$/.test(m[2]) ? Number(m[2]) : null };
}

export function splitContent(content) {
  if (content === '') return [];
  const lines = content.split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  return lines;
}

/** Folds invoke/completion records into operations; no completion = unknown. */
export function foldHistory(records) {
  const ops = new Map();
  for (const r of records) {
    if (r.k === 'invoke') {
      ops.set(r.id, { ...r, k: undefined, invokeT: r.t, outcome: 'unknown', ackT: null });
    }
  }
  for (const r of records) {
    if (r.k === 'invoke') continue;
    const op = ops.get(r.id);
    if (!op) continue;
    if (op.outcome !== 'unknown') continue; // first completion wins
    op.outcome = r.k;
    op.ackT = r.t;
    for (const f of ['code', 'version', 'role', 'read', 'grant', 'granted', 'message']) {
      if (r[f] !== undefined) op[f] = r[f];
    }
  }
  return [...ops.values()];
}

function fmtT(ms) {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return String(ms);
  return new Date(Math.floor(ms)).toISOString().replace('Z', '') +
    String(Math.round((ms - Math.floor(ms)) * 1000)).padStart(3, '0') + 'Z';
}

/**
 * Runs every check.
 * input: { ttlMs, records, events: [{t, event, payload}], audit: [{id, at,
 *   action, resource_id, token, holder_id, user_id, reason, expiresAt?}],
 *   resources: [{id, content, version}], resourceIds: [...], skip?: [4],
 *   revisions: the rows of collab.revision() of those resources (without it
 *   check 6 is skipped), verified: [{id, ok, first_bad_version, problem}] }
 * An audit row with expiresAt (a renewal that set the expiry itself, such as
 * the extension of live leases after a promotion) bounds its lease by that
 * time instead of its own time + ttlMs.  A record may carry allow: [codes]
 * that its operation may also fail with.  skip: [4] leaves out the event
 * counts, for histories in which the observer could not hear every event.
 * Returns { counts, violations: [{check, kind, msg}], stats }.
 */
export function check(input) {
  const { ttlMs, records, events, audit } = input;
  const skip = new Set(input.skip ?? []);
  const violations = [];
  const counts = {};
  const v = (checkNo, kind, msg) => violations.push({ check: checkNo, kind, msg });
  const bump = (k, n = 1) => { counts[k] = (counts[k] ?? 0) + n; };

  const ops = foldHistory(records);
  const opById = new Map(ops.map((o) => [o.id, o]));
  const resources = new Map(input.resources.map((r) => [r.id, r]));

  /* ---------------- leases from the audit trail ---------------- */
  const leases = new Map(); // token -> lease
  const auditSorted = [...audit].sort((a, b) => a.id - b.id);
  for (const a of auditSorted) {
    if (a.action === 'grant') {
      if (leases.has(a.token)) v(3, 'token-reissued', `token ${a.token} granted twice (audit ${leases.get(a.token).grantId} and ${a.id})`);
      leases.set(a.token, {
        token: a.token, res: a.resource_id, holder: a.holder_id, user: a.user_id,
        grantAt: a.at, grantId: a.id, renewAt: [], extendedTo: [], end: null, saves: [], suspended: [],
      });
    }
  }
  for (const a of auditSorted) {
    if (a.action === 'grant' || a.action === 'deny') continue;
    const l = leases.get(a.token);
    if (!l) {
      v(3, 'audit-unknown-token', `audit ${a.id} ${a.action} on ${a.resource_id} names token ${a.token}, which has no grant`);
      continue;
    }
    if (a.resource_id !== l.res) v(3, 'audit-resource', `audit ${a.id} ${a.action} for token ${a.token} is on ${a.resource_id}, granted on ${l.res}`);
    if (l.end) {
      v(3, 'audit-after-end', `audit ${a.id} ${a.action} for token ${a.token} after its ${l.end.action} (audit ${l.end.id})`);
      continue;
    }
    // a suspension (the holder's connection lost) lasts until the holder
    // is back or the lease ends; it does not end the lease
    const open = l.suspended[l.suspended.length - 1];
    if (a.action === 'suspend') {
      if (open && open.to === null) v(3, 'suspend-twice', `audit ${a.id}: token ${a.token} suspended again while suspended (audit ${open.id})`);
      l.suspended.push({ from: a.at, to: null, id: a.id });
      continue;
    }
    if (a.action === 'resume') {
      if (!open || open.to !== null) v(3, 'resume-unsuspended', `audit ${a.id}: token ${a.token} resumed while not suspended`);
      else open.to = a.at;
      continue;
    }
    if (a.action === 'renew' && a.expiresAt != null) l.extendedTo.push({ at: a.at, until: a.expiresAt });
    else if (a.action === 'renew') l.renewAt.push(a.at);
    else {
      l.end = { action: a.action, at: a.at, id: a.id, reason: a.reason };
      if (open && open.to === null) open.to = a.at;
    }
  }
  bump('audit grants', [...leases.values()].length);
  for (const a of auditSorted) bump(`audit ${a.action}`);

  /* ---------------- saves accepted by the server ---------------- */
  const savedEvents = new Map(); // res -> Map(version -> [event])
  for (const e of events) {
    if (e.event !== 'doc:saved') continue;
    const p = e.payload;
    if (!savedEvents.has(p.resourceId)) savedEvents.set(p.resourceId, new Map());
    const m = savedEvents.get(p.resourceId);
    if (!m.has(p.version)) m.set(p.version, []);
    m.get(p.version).push(p);
  }

  const saveOps = ops.filter((o) => o.op === 'save');

  // accepted[res][version - 1] = { res, version, line, opId, token, savedAt, savedBy, op }
  const accepted = new Map();
  for (const [res, r] of resources) {
    const lines = splitContent(r.content);
    const list = [];
    // line i is version i + 1 only when the content is consistent (else
    // check 2 reports it); then the writer of a version is the save
    // acknowledged with it, if any
    const consistent = lines.length === r.version;
    const ackedAt = new Map();
    for (const o of ops) if (o.op === 'save' && o.outcome === 'ok' && o.res === res) ackedAt.set(o.version, o);
    for (let i = 0; i < (consistent ? lines.length : r.version); i++) {
      const version = i + 1;
      const parsed = consistent ? parseLine(lines[i])
        : (ackedAt.has(version) ? parseLine(ackedAt.get(version).line) : null);
      const evs = savedEvents.get(res)?.get(version) ?? [];
      const op = parsed ? opById.get(parsed.opId) : undefined;
      list.push({
        res,
        version,
        line: parsed ? (consistent ? lines[i] : ackedAt.get(version).line) : undefined,
        opId: parsed?.opId,
        token: parsed?.token ?? op?.token ?? null,
        savedAt: evs[0] ? Date.parse(evs[0].savedAt) : null,
        savedBy: evs[0]?.savedBy?.userId,
        op,
      });
    }
    accepted.set(res, list);
  }

  /* ---------------- check 2: lost updates ---------------- */
  const seenLines = new Map();
  for (const [res, r] of resources) {
    const lines = splitContent(r.content);
    bump('accepted saves (final versions)', r.version);
    if (lines.length !== r.version) {
      v(2, 'lines-vs-version', `${res}: final content has ${lines.length} lines at version ${r.version}: a save replaced content that was not the previous version's (lost update)`);
    }
    lines.forEach((line, i) => {
      const parsed = parseLine(line);
      if (!parsed) { v(2, 'bad-line', `${res} line ${i + 1} is not a save line: ${JSON.stringify(line)}`); return; }
      if (seenLines.has(line)) v(2, 'duplicate-line', `${res} line ${i + 1} ${line} also at ${seenLines.get(line)}`);
      seenLines.set(line, `${res} line ${i + 1}`);
      const op = opById.get(parsed.opId);
      if (!op) { v(2, 'phantom-line', `${res} line ${i + 1} (${line}) was written by no recorded save`); return; }
      if (op.res !== res) v(2, 'wrong-resource', `${res} line ${i + 1} was written by ${op.id}, a save of ${op.res}`);
      if (op.outcome === 'fail') {
        v(2, 'refused-save-applied', `${res} line ${i + 1}: save ${op.id} was refused (${op.code}) but its content is in the history`);
      } else if (op.outcome === 'ok' && op.version !== i + 1) {
        v(2, 'ack-version-mismatch', `${res}: save ${op.id} was acknowledged as version ${op.version} but its line is line ${i + 1}`);
      }
    });
    // doc:saved events: exactly one per version 1..V
    const evs = skip.has(4) ? new Map() : savedEvents.get(res) ?? new Map();
    for (let ver = 1; ver <= r.version && !skip.has(4); ver++) {
      const n = evs.get(ver)?.length ?? 0;
      if (n !== 1) v(4, 'doc-saved-count', `${res} version ${ver}: ${n} doc:saved events (expected 1)`);
    }
    for (const ver of evs.keys()) {
      if (ver < 1 || ver > r.version) v(4, 'doc-saved-extra', `${res}: doc:saved for version ${ver}, final version is ${r.version}`);
    }
    // the user the server credited must be the writer
    for (const a of accepted.get(res)) {
      if (a.op && a.savedBy !== undefined && a.op.user !== a.savedBy) {
        v(2, 'credited-user', `${res} version ${a.version}: doc:saved names ${a.savedBy}, the line was written by ${a.op.id} of ${a.op.user}`);
      }
    }
  }

  // every acknowledged save is in the final history at its version
  const ackedByRes = new Map();
  for (const o of saveOps) {
    bump(`save ${o.outcome}`);
    if (o.outcome !== 'ok') continue;
    const r = resources.get(o.res);
    if (!r) { v(2, 'unknown-resource', `save ${o.id} on unknown resource ${o.res}`); continue; }
    const lines = splitContent(r.content);
    if (lines[o.version - 1] !== o.line) {
      const at = lines.indexOf(o.line);
      v(2, 'lost-update', `${o.res}: acknowledged save ${o.id} (version ${o.version}, token ${o.token}) ${at < 0 ? 'is missing from the final content' : `is at line ${at + 1}, not ${o.version}`}`);
    }
    if (!ackedByRes.has(o.res)) ackedByRes.set(o.res, []);
    ackedByRes.get(o.res).push(o);
  }
  // versions unique and in real-time order of acknowledgements
  for (const [res, list] of ackedByRes) {
    const byVersion = new Map();
    for (const o of list) {
      if (byVersion.has(o.version)) v(2, 'version-twice', `${res}: version ${o.version} acknowledged to ${byVersion.get(o.version).id} and ${o.id}`);
      byVersion.set(o.version, o);
    }
    const sorted = [...list].sort((a, b) => b.version - a.version);
    let minAckAbove = null; // the earliest-acknowledged save with a higher version
    for (const o of sorted) {
      if (minAckAbove && minAckAbove.ackT < o.invokeT) {
        v(2, 'real-time-order', `${res}: save ${minAckAbove.id} was acknowledged (version ${minAckAbove.version}) before save ${o.id} was sent, yet ${o.id} got the lower version ${o.version}`);
      }
      if (!minAckAbove || o.ackT < minAckAbove.ackT) minAckAbove = o;
    }
  }
  // reads see a committed prefix of the final history
  for (const o of ops) {
    if (o.outcome !== 'ok' || !o.read) continue;
    bump('reads');
    const r = resources.get(o.read.res);
    if (!r) continue;
    const lines = splitContent(r.content);
    const got = splitContent(o.read.content);
    if (got.length !== o.read.version) {
      v(2, 'read-lines-vs-version', `${o.id} read ${o.read.res} at version ${o.read.version} with ${got.length} lines`);
    } else if (got.some((l, i) => l !== lines[i])) {
      const i = got.findIndex((l, j) => l !== lines[j]);
      v(2, 'read-not-prefix', `${o.id} read ${o.read.res} version ${o.read.version}: line ${i + 1} is ${got[i]}, the final history has ${lines[i]}`);
    }
  }

  /* ---------------- check 1: tokens of accepted saves ---------------- */
  for (const list of accepted.values()) {
    for (const a of list) {
      if (a.token === null) continue;
      const l = leases.get(a.token);
      if (l) l.saves.push(a);
    }
  }
  for (const l of leases.values()) l.saves.sort((x, y) => (x.savedAt ?? 0) - (y.savedAt ?? 0));
  for (const list of accepted.values()) {
    for (const a of list) {
      if (a.line === undefined) continue; // reported by check 2
      const what = `${a.res} version ${a.version} (${a.opId}, token ${a.token}, saved at ${fmtT(a.savedAt)})`;
      if (a.token === null) { v(1, 'no-token', `${what}: accepted without a token`); continue; }
      const l = leases.get(a.token);
      if (!l) { v(1, 'token-never-granted', `${what}: the token was never granted`); continue; }
      if (!(l.res === a.res || ancestors(a.res).includes(l.res))) {
        v(1, 'token-off-path', `${what}: the token is the lock of ${l.res}, not of the resource or an ancestor`);
        continue;
      }
      if (a.op && a.op.conn !== l.holder) {
        v(1, 'token-holder', `${what}: written on ${a.op.conn}, the token belongs to ${l.holder}`);
      }
      if (a.savedBy !== undefined && a.savedBy !== l.user) {
        v(1, 'token-user', `${what}: doc:saved names ${a.savedBy}, the token belongs to ${l.user}`);
      }
      if (a.savedAt === null) continue; // no event: reported by check 4
      const s = a.savedAt; // <= the true save time, > true time - 1 ms
      if (s < Math.floor(l.grantAt)) {
        v(1, 'save-before-grant', `${what}: before the grant at ${fmtT(l.grantAt)}`);
      }
      if (l.end && l.end.at < s) {
        v(1, 'save-after-end', `${what}: after the lease's ${l.end.action} at ${fmtT(l.end.at)} (audit ${l.end.id})`);
      }
      // nobody saves while the holder's connection is lost (the true save
      // time lies in [s, s + 1))
      for (const x of l.suspended) {
        if (s > x.from && s + 1 < (x.to ?? Infinity)) {
          v(1, 'save-while-suspended', `${what}: while the lease was suspended, from ${fmtT(x.from)} (audit ${x.id}) to ${x.to === null ? 'its end' : fmtT(x.to)}`);
        }
      }
      // the latest renewal that may precede this save: grant, renew, or an
      // earlier save with the same token (taken at its latest possible time)
      let p = l.grantAt;
      for (const r of l.renewAt) if (r < s + 1 && r > p) p = r;
      for (const o of l.saves) {
        if (o === a || o.savedAt === null) continue;
        if (o.savedAt <= s && o.savedAt + 1 > p) p = o.savedAt + 1;
      }
      // an extension that set the expiry itself, if no renewal followed it
      // (expiresAt is truncated to the millisecond: 1 ms of slack)
      let until = p + ttlMs;
      for (const x of l.extendedTo) if (x.at < s + 1 && x.at >= p - 1) until = Math.max(until, x.until + 1);
      if (s >= until) {
        v(1, 'save-after-ttl', until > p + ttlMs
          ? `${what}: after ${fmtT(until)}, the expiry the lease was extended to`
          : `${what}: ${(s - p).toFixed(3)} ms after the lease's last renewal at ${fmtT(p)}, longer than collab.lock_ttl (${ttlMs} ms)`);
      }
    }
  }
  // saves the client sent after its own lease had certainly lapsed
  for (const o of saveOps) {
    if (o.expect !== 'refused') continue;
    bump(`lapsed-lease saves ${o.outcome}`);
    if (o.outcome === 'ok') {
      v(1, 'lapsed-save-accepted', `save ${o.id} by ${o.client} on ${o.res} with token ${o.token} was accepted (version ${o.version}) although sent ${o.why}`);
    } else if (o.outcome === 'fail' && !TOKEN_CODES.has(o.code) && !o.code.startsWith('SQLSTATE ')) {
      // (a PostgreSQL error without a collab code is reported by check 5)
      v(1, 'lapsed-save-code', `save ${o.id} (${o.why}) was refused with ${o.code}, expected LOCK_EXPIRED or LOCK_NOT_HELD`);
    }
  }
  // a refusal's code agrees with how the token's lease ended
  for (const o of ops) {
    if (o.outcome !== 'fail' || !TOKEN_CODES.has(o.code) || o.token == null) continue;
    if (!['save', 'renew', 'release'].includes(o.op)) continue;
    bump(`refused ${o.op} ${o.code}`);
    const l = leases.get(o.token);
    if (!l) { v(1, 'refused-unknown-token', `${o.op} ${o.id} refused with ${o.code} for token ${o.token}, which was never granted`); continue; }
    const end = l.end?.action ?? 'none';
    if (o.code === 'LOCK_EXPIRED' && end !== 'expire') {
      v(1, 'refusal-code', `${o.op} ${o.id} on ${o.res} (token ${o.token}) was refused with LOCK_EXPIRED, but the lease ended by ${end}${l.end ? ` (audit ${l.end.id})` : ''}`);
    }
    if (o.code === 'LOCK_NOT_HELD' && end === 'expire') {
      v(1, 'refusal-code', `${o.op} ${o.id} on ${o.res} (token ${o.token}, lock on ${l.res}) was refused with LOCK_NOT_HELD, but the lease had expired (audit ${l.end.id}): LOCK_EXPIRED is the code for an expired token`);
    }
  }

  /* ---------------- check 3: overlapping holders ---------------- */
  const ids = [...new Set([...leases.values()].map((l) => l.res))].sort();
  const byRes = new Map(ids.map((id) => [id, []]));
  for (const l of leases.values()) byRes.get(l.res).push(l);
  for (let i = 0; i < ids.length; i++) {
    for (let j = i; j < ids.length; j++) {
      if (!onOnePath(ids[i], ids[j])) continue;
      const all = i === j ? byRes.get(ids[i]) : [...byRes.get(ids[i]), ...byRes.get(ids[j])];
      all.sort((a, b) => a.grantAt - b.grantAt);
      let open = null;
      for (const l of all) {
        if (open && l.grantAt < (open.end?.at ?? Infinity) && (i === j || l.res !== open.res)) {
          v(3, 'overlap', `token ${open.token} on ${open.res} (${open.holder}, granted ${fmtT(open.grantAt)}, ${open.end ? `${open.end.action} ${fmtT(open.end.at)}` : 'never ended'}) and token ${l.token} on ${l.res} (${l.holder}, granted ${fmtT(l.grantAt)}) were held at once`);
        }
        if (!open || (l.end?.at ?? Infinity) > (open.end?.at ?? Infinity)) open = l;
      }
    }
  }
  // tokens increase in grant order along a path (grants on unrelated
  // resources commit concurrently, so their audit rows may interleave)
  const grants = [...leases.values()].sort((a, b) => a.grantId - b.grantId);
  for (let i = 1; i < grants.length; i++) {
    for (let j = i - 1; j >= 0; j--) {
      if (!onOnePath(grants[i].res, grants[j].res)) continue;
      if (grants[i].token <= grants[j].token) {
        v(3, 'token-order', `grant of token ${grants[i].token} on ${grants[i].res} (audit ${grants[i].grantId}) follows token ${grants[j].token} on ${grants[j].res}`);
      }
      break;
    }
  }
  // client-observed grants are the audit's grants
  const tokenOwner = new Map();
  for (const o of ops) {
    if (o.outcome !== 'ok' || !o.grant) continue;
    bump('client-observed grants');
    const { res, token } = o.grant;
    const l = leases.get(token);
    if (!l) { v(3, 'observed-grant-unknown', `${o.id} (${o.client}) was granted token ${token} on ${res}; the audit has no such grant`); continue; }
    if (l.res !== res || l.holder !== o.conn) {
      v(3, 'observed-grant-mismatch', `${o.id} (${o.client} on ${o.conn}) saw token ${token} on ${res}; the audit granted it on ${l.res} to ${l.holder}`);
    }
    const owner = tokenOwner.get(token);
    if (owner && owner !== o.conn) v(3, 'token-shared', `token ${token} was observed by ${owner} and ${o.conn}`);
    tokenOwner.set(token, o.conn);
  }

  // From the clients' side alone: an acknowledged grant, renewal or save
  // proves its token valid at some moment between its invoke and its ack.
  // Leases on one path are granted one after the other, so their tokens
  // increase in grant order: a token proven valid after a larger
  // conflicting token was proven valid means two valid holders at once.
  const leaseRes = new Map();
  for (const o of ops) if (o.outcome === 'ok' && o.grant) leaseRes.set(o.grant.token, o.grant.res);
  for (const l of leases.values()) leaseRes.set(l.token, l.res);
  const proofs = [];
  for (const o of ops) {
    if (o.outcome !== 'ok') continue;
    const token = o.grant?.token ?? (['save', 'renew'].includes(o.op) ? o.token : null);
    if (token == null || !leaseRes.has(token)) continue;
    proofs.push({ token, res: leaseRes.get(token), op: o });
  }
  bump('client validity proofs', proofs.length);
  const proofRes = [...new Set(proofs.map((p) => p.res))].sort();
  const reported = new Set();
  for (let i = 0; i < proofRes.length; i++) {
    for (let j = i; j < proofRes.length; j++) {
      if (!onOnePath(proofRes[i], proofRes[j])) continue;
      const set = proofs.filter((p) => p.res === proofRes[i] || p.res === proofRes[j]).sort((a, b) => b.token - a.token);
      let minAck = null; // the earliest-acknowledged proof of a larger token
      for (let k = 0; k < set.length;) {
        let m = k;
        while (m < set.length && set[m].token === set[k].token) m++;
        const group = set.slice(k, m);
        for (const p of group) {
          const key = `${p.op.id} ${minAck?.op.id}`;
          if (minAck && p.op.invokeT > minAck.op.ackT && !reported.has(key)) {
            reported.add(key);
            v(3, 'stale-after-newer', `${p.op.op} ${p.op.id} (${p.op.client}) proved token ${p.token} on ${p.res} valid after ${minAck.op.op} ${minAck.op.id} (${minAck.op.client}) had proved the later token ${minAck.token} on ${minAck.res} valid`);
          }
        }
        for (const p of group) if (!minAck || p.op.ackT < minAck.op.ackT) minAck = p;
        k = m;
      }
    }
  }

  /* ---------------- check 4: events ---------------- */
  if (!skip.has(4)) checkEvents(v, bump, ttlMs, events, auditSorted, leases);

  /* ---------------- check 5: error codes ---------------- */
  for (const o of ops) {
    bump(`op ${o.op} ${o.outcome}`);
    if (o.outcome !== 'fail') continue;
    const allowed = [...(ALLOWED_CODES[o.op] ?? []), ...(o.allow ?? [])];
    if (!allowed.includes(o.code)) {
      v(5, 'unexpected-code', `${o.op} ${o.id} by ${o.client} on ${o.res ?? '-'} failed with ${o.code}: ${o.message ?? ''}`);
    }
  }

  /* ---------------- check 6: revisions ---------------- */
  if (input.revisions) {
    const revsOf = new Map();
    for (const x of input.revisions) {
      if (!resources.has(x.resource_id)) { v(6, 'revision-unknown-resource', `a revision of ${x.resource_id}, which is not a resource of the run`); continue; }
      if (!revsOf.has(x.resource_id)) revsOf.set(x.resource_id, []);
      revsOf.get(x.resource_id).push(x);
    }
    for (const [res, r] of resources) {
      const revs = (revsOf.get(res) ?? []).sort((a, b) => a.version - b.version);
      const lines = splitContent(r.content);
      // content without one line per version is a lost update (check 2):
      // its revisions cannot be matched to lines
      if (lines.length !== r.version) continue;
      bump('revisions checked', revs.length);
      const versions = revs.map((x) => x.version);
      if (revs.length !== r.version || versions.some((x, i) => x !== i + 1)) {
        v(6, 'revision-versions', `${res}: revisions of versions [${versions.join(', ')}], the resource is at version ${r.version}: every accepted save must have one, in order`);
      }
      for (const x of revs) {
        const what = `${res} revision ${x.version}`;
        const want = lines.slice(0, x.version);
        const got = splitContent(x.content);
        if (x.version > lines.length || got.length !== want.length || got.some((l, i) => l !== want[i])) {
          v(6, 'revision-content', `${what}: its content is not the content of accepted save ${x.version} (${got.length} lines, the history has ${want.length} up to it)`);
          continue;
        }
        const parsed = parseLine(lines[x.version - 1]);
        if (parsed && parsed.token !== null && x.token !== parsed.token) {
          v(6, 'revision-token', `${what}: token ${x.token}, the save presented token ${parsed.token}`);
        }
        const op = parsed ? opById.get(parsed.opId) : undefined;
        if (op && x.saved_by !== op.user) v(6, 'revision-saver', `${what}: saved by ${x.saved_by}, written by ${op.id} of ${op.user}`);
        if (op && x.path !== op.kind) v(6, 'revision-path', `${what}: path ${x.path}, written by ${op.id} over ${op.kind}`);
        if (x.restored_from != null) v(6, 'revision-restored', `${what}: restoredFrom ${x.restored_from}, no writer restores`);
        const ev = savedEvents.get(res)?.get(x.version)?.[0];
        if (ev && Number(micros(x.saved_at) / 1000n) !== Date.parse(ev.savedAt)) {
          v(6, 'revision-time', `${what}: saved at ${x.saved_at}, its doc:saved says ${ev.savedAt}`);
        }
      }
      if (revs.length) {
        const chain = verifyChain(revs);
        if (!chain.ok) v(6, 'revision-chain', `${res} revision ${chain.version}: ${chain.problem}`);
        else if (chain.anchor !== null) v(6, 'revision-chain', `${res}: the first revision names a predecessor (${chain.anchor}), nothing was purged`);
      }
    }
    for (const x of input.verified ?? []) {
      if (!x.ok) v(6, 'verify-history', `${x.id}: collab.verify_history() fails at version ${x.first_bad_version}: ${x.problem}`);
    }
  }

  const perCheck = {};
  for (const k of Object.keys(CHECKS)) perCheck[k] = 0;
  for (const x of violations) perCheck[x.check] += 1;
  return { counts, violations, perCheck, ops, leases };
}

/* Check 4: one event per audited grant, release, expiry and save. */
function checkEvents(v, bump, ttlMs, events, auditSorted, leases) {
  // a takeover (the same user back on a new connection) ends the old lease
  // and grants a new one, announced by lock:resumed alone
  const takeover = (a) => a.reason === 'takeover';
  const rows = {
    'lock:expired': (a) => a.action === 'expire',
    'lock:acquired': (a) => a.action === 'grant' && !takeover(a),
    'lock:released': (a) => (a.action === 'release' && !takeover(a)) || a.action === 'force_release',
    'lock:suspended': (a) => a.action === 'suspend',
    'lock:resumed': (a) => a.action === 'resume' || (a.action === 'grant' && takeover(a)),
  };
  const auditCount = (eventName, keyOf) => {
    const m = new Map();
    for (const a of auditSorted) {
      if (!rows[eventName](a)) continue;
      const key = keyOf(a);
      m.set(key, (m.get(key) ?? 0) + 1);
    }
    return m;
  };
  // the worker strips holderId from the copies it sends: key by user (one user per client)
  const eventKey = (e) => `${e.payload.resourceId} ${e.payload.previousHolder?.userId ?? e.payload.holder?.userId}`;
  const compare = (eventName, what) => {
    const evs = new Map();
    for (const e of events) {
      if (e.event !== eventName) continue;
      const k = eventKey(e);
      evs.set(k, (evs.get(k) ?? 0) + 1);
    }
    const aud = auditCount(eventName, (a) => `${a.resource_id} ${a.user_id}`);
    bump(`events ${eventName}`, [...evs.values()].reduce((x, y) => x + y, 0));
    for (const k of new Set([...evs.keys(), ...aud.keys()])) {
      const ne = evs.get(k) ?? 0;
      const na = aud.get(k) ?? 0;
      if (ne !== na) {
        v(4, `${eventName}-count`, `${eventName} for ${k}: ${ne} event(s) for ${na} audit row(s) (${what})`);
      }
    }
  };
  compare('lock:expired', 'expire');
  compare('lock:acquired', 'grant, but a takeover');
  compare('lock:released', 'release, but a takeover; force_release');
  compare('lock:suspended', 'suspend');
  compare('lock:resumed', 'resume; grant of a takeover');
  // an expiry's expiredAt is the lease's last renewal + ttl (to the ms) and precedes its audit row
  const expEvents = events.filter((e) => e.event === 'lock:expired');
  for (const l of leases.values()) {
    if (l.end?.action !== 'expire') continue;
    const cands = expEvents.filter((e) => e.payload.resourceId === l.res && e.payload.previousHolder?.userId === l.user);
    const ok = cands.some((e) => {
      const t = Date.parse(e.payload.expiredAt);
      return t <= l.end.at && t >= l.grantAt + ttlMs - 250; // (a descheduled backend writes its audit row late)
    });
    if (!ok) v(4, 'expired-at', `token ${l.token} on ${l.res} expired (audit ${l.end.id} at ${fmtT(l.end.at)}): no lock:expired with a plausible expiredAt (${cands.map((e) => e.payload.expiredAt).join(', ') || 'none'})`);
  }
}

/* ------------------------------------------------------------------------
 * Failover (test/failover): one history over two primaries
 * ------------------------------------------------------------------------ */

export const FAILOVER_CHECKS = {
  F1: 'no token value issued twice, by either primary',
  F2: 'every token of the new primary above every token of the old one',
  F3: 'every acknowledged save (grant, release, read) is in the new primary\'s data, or the old primary acknowledged it and did not replicate it (never with synchronous replication)',
  F4: 'a save with a pre-failover token accepted only if its lease was replicated and live',
  F5: 'the new primary holds only what the old one wrote before the failover',
};

const lineSet = (content) => new Set(splitContent(content));

/**
 * Checks a failover drill's history.  The old primary's own history (every
 * operation completed before it died, against its data after crash
 * recovery, which holds all it committed) and the surviving history (the new
 * primary's data: what it replicated, then what it did) each pass check();
 * the failover checks F1 to F5 join the two.
 *
 * input: { ttlMs, records, events, resourceIds, synchronous,
 *   tDown:      client time (monotonic ms) by which the old primary was dead:
 *               an acknowledgement received before it came from the old primary
 *   promotedAt: server time (epoch ms) of the promotion: rows of the new
 *               primary's audit older than that were replicated
 *   old: { audit, resources }   the old primary's data after crash recovery
 *   now: { audit, resources }   the new primary's data at the end }
 * Records of a save that presented a token from before the failover to the
 * new primary carry preFailover: true.
 * Returns { violations, perCheck, stats, surviving, oldHistory }.
 */
export function checkFailover(input) {
  const { tDown, promotedAt, old, now, synchronous } = input;
  const violations = [];
  const v = (c, kind, msg) => violations.push({ check: c, kind, msg });
  const stats = {
    'saves lost': 0, 'grants lost': 0, 'grants undone by the crash': 0, 'releases lost': 0,
    'reads of lost versions': 0, 'audit rows lost': 0, 'pre-failover saves': 0,
  };
  const bump = (k, n = 1) => { stats[k] = (stats[k] ?? 0) + n; };

  /* what the new primary replicated, what it lost, what it did itself */
  const key = (a) => `${a.id}|${a.action}|${a.token}|${a.resource_id}`;
  const oldKeys = new Set(old.audit.map(key));
  const replicated = now.audit.filter((a) => a.at < promotedAt);
  const fresh = now.audit.filter((a) => a.at >= promotedAt);
  for (const a of replicated) {
    if (!oldKeys.has(key(a))) v('F5', 'not-written-by-old', `audit ${a.id} ${a.action} on ${a.resource_id} (token ${a.token}) predates the promotion but the old primary never wrote it`);
  }
  const replKeys = new Set(replicated.map(key));
  const lostAudit = old.audit.filter((a) => !replKeys.has(key(a)));
  bump('audit rows lost', lostAudit.length);
  const oldRes = new Map(old.resources.map((r) => [r.id, r]));
  const kept = new Map(); // res -> { prefix: versions replicated, lost: Set(lines), now: Set(lines) }
  for (const r of now.resources) {
    const o = splitContent(oldRes.get(r.id)?.content ?? '');
    const n = splitContent(r.content);
    let p = 0;
    while (p < o.length && p < n.length && o[p] === n[p]) p++;
    if (p < o.length && p < n.length && o.length > 0) {
      // the new primary's own saves follow the replicated prefix, never an old line
      const stray = n.slice(p).filter((l) => o.includes(l));
      for (const l of stray) v('F5', 'reordered', `${r.id}: line ${l} of the old primary follows a line it never wrote`);
    }
    kept.set(r.id, { prefix: p, lost: new Set(o.slice(p)), now: new Set(n) });
  }

  /* F1, F2: tokens */
  const issued = new Map();
  const grantsOf = (rows, who) => {
    for (const a of rows) {
      if (a.action !== 'grant') continue;
      if (issued.has(a.token)) v('F1', 'token-issued-twice', `token ${a.token} granted by the ${who} (audit ${a.id}) was already issued by the ${issued.get(a.token)}`);
      else issued.set(a.token, `${who} (audit ${a.id})`);
    }
  };
  grantsOf(old.audit, 'old primary');
  grantsOf(fresh, 'new primary');
  const ops = foldHistory(input.records);
  const observedBefore = ops.filter((o) => o.outcome === 'ok' && o.grant && o.ackT < tDown).map((o) => o.grant.token);
  const oldTokens = [...old.audit.filter((a) => a.action === 'grant').map((a) => a.token), ...observedBefore];
  const newTokens = fresh.filter((a) => a.action === 'grant').map((a) => a.token);
  const maxOld = oldTokens.length ? Math.max(...oldTokens) : null;
  const minNew = newTokens.length ? Math.min(...newTokens) : null;
  if (maxOld !== null && minNew !== null && minNew <= maxOld) {
    v('F2', 'token-not-above', `the new primary granted token ${minNew}, not above the old primary's ${maxOld}`);
  }
  Object.assign(stats, {
    'tokens issued by the old primary': oldTokens.length ? new Set(old.audit.filter((a) => a.action === 'grant').map((a) => a.token)).size : 0,
    'tokens issued by the new primary': newTokens.length,
    'highest old token': maxOld, 'lowest new token': minNew,
  });

  /* F3: acknowledgements of the old primary that the new one lacks */
  const lostIds = new Set();
  const nowGrants = new Set(now.audit.filter((a) => a.action === 'grant').map((a) => a.token));
  const lostGrants = new Set(lostAudit.filter((a) => a.action === 'grant').map((a) => a.token));
  const lostReleases = new Set(lostAudit.filter((a) => a.action === 'release').map((a) => a.token));
  // A grant that the worker answered before its WAL flush (lock:acquire or
  // lock:request, collab.synchronous_grants off, no synchronous standby) may
  // be undone by the old primary's crash: then it is in neither primary's
  // data.  Only if nothing was acknowledged under its token, whose save or
  // renewal would have flushed the grant with its own commit.
  const oldGrants = new Set(old.audit.filter((a) => a.action === 'grant').map((a) => a.token));
  const usedTokens = new Set(ops.filter((o) => o.outcome === 'ok' && ['save', 'renew'].includes(o.op)).map((o) => o.token));
  const undoneIds = new Set();
  for (const o of ops) {
    if (!synchronous && o.outcome === 'ok' && o.grant && o.ackT < tDown && o.kind === 'ws' &&
        ['acquire', 'request'].includes(o.op) && !oldGrants.has(o.grant.token) &&
        !nowGrants.has(o.grant.token) && !usedTokens.has(o.grant.token)) {
      undoneIds.add(o.id);
      bump('grants undone by the crash');
    }
  }
  const lose = (o, what) => {
    lostIds.add(o.id);
    bump(what);
    if (synchronous) v('F3', 'acknowledged-and-lost', `${o.op} ${o.id} by ${o.client} on ${o.res} (token ${o.token ?? o.grant?.token}) was acknowledged by the old primary and is not in the new one's data, with synchronous replication`);
  };
  for (const o of ops) {
    if (o.outcome !== 'ok') continue;
    const k = kept.get(o.res);
    const fromOld = o.ackT < tDown;
    if (o.op === 'save' && k && !k.now.has(o.line)) {
      // (one the new primary acknowledged is check 2's)
      if (fromOld && k.lost.has(o.line)) lose(o, 'saves lost');
      else if (fromOld) v('F3', 'save-vanished', `save ${o.id} by ${o.client} on ${o.res} (token ${o.token}) was acknowledged by the old primary and is in neither primary's data`);
    }
    if (o.grant && !nowGrants.has(o.grant.token) && !undoneIds.has(o.id)) {
      if (fromOld && lostGrants.has(o.grant.token)) lose(o, 'grants lost');
      else if (fromOld) v('F3', 'grant-vanished', `${o.op} ${o.id} by ${o.client} was granted token ${o.grant.token} on ${o.grant.res} by the old primary, whose audit trail lacks it`);
    }
    if (o.op === 'release' && fromOld && lostReleases.has(o.token)) lose(o, 'releases lost');
    if (o.read && fromOld && !lostIds.has(o.id)) {
      const rk = kept.get(o.read.res);
      if (rk && splitContent(o.read.content).some((l) => rk.lost.has(l))) lose(o, 'reads of lost versions');
    }
  }

  /* F4: saves that presented a token from before the failover */
  const replicatedGrants = new Set(replicated.filter((a) => a.action === 'grant').map((a) => a.token));
  const ended = new Set(now.audit.filter((a) => ['release', 'force_release', 'expire'].includes(a.action)).map((a) => a.token));
  for (const o of ops) {
    if (!o.preFailover || o.outcome === 'unknown') continue;
    const repl = replicatedGrants.has(o.token);
    const label = `${o.outcome === 'ok' ? 'accepted' : `refused ${o.code}`}, ${repl ? 'replicated' : 'not replicated'}`;
    bump('pre-failover saves');
    bump(`pre-failover saves ${label}`);
    const what = `save ${o.id} by ${o.client} on ${o.res} with pre-failover token ${o.token}`;
    if (o.outcome === 'ok' && !repl) v('F4', 'unreplicated-token-accepted', `${what} was accepted, but the new primary never had its lease`);
    if (o.outcome === 'fail' && ['LOCK_EXPIRED', 'VERSION_CONFLICT'].includes(o.code) && !repl) {
      v('F4', 'unreplicated-token-known', `${what} was refused with ${o.code}, a code for a lease the new primary has, but it never had this one`);
    }
    if (o.outcome === 'fail' && o.code === 'LOCK_NOT_HELD' && repl && !ended.has(o.token)) {
      v('F4', 'replicated-live-refused', `${what} was refused with LOCK_NOT_HELD, but its lease was replicated and never ended`);
    }
    if (o.outcome === 'fail' && !['LOCK_NOT_HELD', 'LOCK_EXPIRED', 'VERSION_CONFLICT'].includes(o.code)) {
      v('F4', 'unexpected-code', `${what} failed with ${o.code}: ${o.message ?? ''}`);
    }
  }

  /* the old primary's own history: what completed before it died */
  const before = input.records.filter((r) => r.t < tDown)
    .map((r) => (undoneIds.has(r.id) && r.k === 'ok' ? { ...r, k: 'lost' } : r));
  const oldHistory = check({
    ttlMs: input.ttlMs, records: before, events: input.events.filter((e) => e.t < tDown),
    audit: old.audit, resources: old.resources.filter((r) => input.resourceIds.includes(r.id)),
    resourceIds: input.resourceIds, skip: [4],
  });
  for (const x of oldHistory.violations) violations.push({ ...x, msg: `old primary: ${x.msg}` });

  /* the surviving history: the new primary's data, with the acknowledgements
     it lost set aside, the old primary's refusals judged above and the
     refusals of pre-failover tokens judged by F4 (the new primary may never
     have had their leases) */
  const preFailover = new Set(ops.filter((o) => o.preFailover).map((o) => o.id));
  const records = input.records.map((r) => {
    if (r.k === 'invoke' || r.k === 'note') return r;
    if ((lostIds.has(r.id) || undoneIds.has(r.id)) && r.k === 'ok') return { ...r, k: 'lost' };
    if (r.t < tDown && r.k === 'fail') return { ...r, k: 'judged-old' };
    if (preFailover.has(r.id) && r.k === 'fail') return { ...r, k: 'judged-f4' };
    return r;
  });
  // doc:saved of versions the new primary does not have
  const events = input.events.filter((e) => !(e.event === 'doc:saved' && e.t < tDown &&
    e.payload.version > (kept.get(e.payload.resourceId)?.prefix ?? Infinity)));
  const surviving = check({
    ttlMs: input.ttlMs, records, events, audit: now.audit, resources: now.resources,
    resourceIds: input.resourceIds, skip: [4],
  });
  violations.push(...surviving.violations);

  const perCheck = {};
  for (const k of [...Object.keys(CHECKS), ...Object.keys(FAILOVER_CHECKS)]) perCheck[k] = 0;
  for (const x of violations) perCheck[x.check] += 1;
  return { violations, perCheck, stats, surviving, oldHistory };
}
