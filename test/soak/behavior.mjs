// What one soak client does, over and over until told to stop: think, then
// join a tab as editor or viewer; as editor save a few times, maybe renew,
// then release or just leave; as viewer maybe ask for the lock (granted, or
// LOCK_HELD) and save under it; leave.  Now and then it disconnects, also in
// the middle of a cycle while holding a lock, and connects again.  Shared by
// the lightweight clients (clients.mjs) and the real socket.io-client ones
// (soak.mjs); `conn` is an adapter with connect(), emit(event, payload) ->
// ack object (null if the connection closed), close() and isOpen().
//
// Every ack must be { ok: true, ... } or a failure with an expected code;
// anything else is counted in stats.errors.  Expected are LOCK_HELD for
// lock:acquire, and LOCK_EXPIRED / LOCK_NOT_HELD for a holder's save, renew
// or release only when the lock may really have expired: when the answer
// came at least collab.lock_ttl after the client sent the command that last
// granted or renewed the lock (the server renewed it after that moment, so
// before then the lock is certainly live).
import crypto from 'node:crypto';

export const ACK_TIMEOUT_MS = 120000;
export const CONNECT_TIMEOUT_MS = 120000;

const b64u = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');

export function makeToken(secret, claims, ttlSeconds) {
  const now = Math.floor(Date.now() / 1000);
  const input = `${b64u({ alg: 'HS256', typ: 'JWT' })}.${b64u({ iat: now, exp: now + ttlSeconds, ...claims })}`;
  const sig = crypto.createHmac('sha256', secret).update(input).digest('base64url');
  return `${input}.${sig}`;
}

export function newStats() {
  return {
    connects: 0, closes: 0, closesHoldingLock: 0, events: 0,
    joins: 0, joinedEditor: 0, joinedViewer: 0, acquires: 0, acquired: 0, lockHeld: 0, lockExpired: 0,
    saves: 0, renews: 0, releases: 0, leaves: 0,
    errors: {},      // unexpected failure codes and exceptions: "event CODE" -> count
    problems: {},    // unexpected closes, error events, server disconnects
    samples: [],     // the first few error texts
  };
}

export function addStats(into, s) {
  for (const [k, v] of Object.entries(s)) {
    if (typeof v === 'number') into[k] = (into[k] || 0) + v;
    else if (k === 'samples') into.samples.push(...v.slice(0, Math.max(0, 10 - into.samples.length)));
    else for (const [kk, vv] of Object.entries(v)) into[k][kk] = (into[k][kk] || 0) + vv;
  }
  return into;
}

function note(stats, kind, key, text) {
  stats[kind][key] = (stats[kind][key] || 0) + 1;
  if (stats.samples.length < 10) stats.samples.push(`${key}: ${text}`);
}

export function recordProblem(stats, kind, detail) {
  note(stats, 'problems', kind, detail);
}

/**
 * One client's loop.
 * @param {object} ctx  { stats, stopping(): bool, thinkMs, contentBytes,
 *                        lockTtlMs, pick(): {tab, doc}, sleep(ms) }
 * @param {object} conn adapter (connect/emit/close)
 */
export async function clientLoop(ctx, conn) {
  const { stats } = ctx;
  const think = () => ctx.sleep(-Math.log(1 - Math.random()) * ctx.thinkMs);
  let connected = true;   // the caller connected it during the ramp

  let renewSentAt = 0;   // when the command that last granted/renewed our lock was sent
  const EXPIRED = ['LOCK_EXPIRED', 'LOCK_NOT_HELD'];
  const mayHaveExpired = (code, ackAt) => EXPIRED.includes(code) && ackAt - renewSentAt >= ctx.lockTtlMs;
  const lockHeld = (code) => code === 'LOCK_HELD';

  // Sends one command and checks its ack; returns the ack, or null when
  // it failed (counted) or the connection is gone.  expected(code, ackAt)
  // says whether a failure code is an expected answer.  lastSentAt is the
  // time this command was sent.
  let lastSentAt = 0;
  async function cmd(event, payload, expected = () => false) {
    stats.events++;
    let ack;
    lastSentAt = Date.now();
    try {
      ack = await conn.emit(event, payload);
    } catch (e) {
      note(stats, 'errors', `${event} exception`, String(e && e.message || e));
      return null;
    }
    if (ack === null) {
      note(stats, 'errors', `${event} no ack (connection closed)`, '');
      return null;
    }
    if (ack.ok === true) return ack;
    const code = ack.error && ack.error.code;
    if (expected(code, Date.now())) return ack;
    note(stats, 'errors', `${event} ${code}`, JSON.stringify(ack).slice(0, 300));
    return null;
  }

  async function disconnect(holding) {
    stats.closes++;
    if (holding) stats.closesHoldingLock++;
    connected = false;
    await conn.close();
  }

  while (!ctx.stopping()) {
    await think();
    if (ctx.stopping()) break;
    // closed under us (already counted as a problem): connect again rather
    // than count every later command as failed too
    if (connected && !conn.isOpen()) connected = false;
    if (!connected) {
      try {
        await conn.connect();
        stats.connects++;
        connected = true;
      } catch (e) {
        note(stats, 'errors', 'connect', String(e && e.message || e));
      }
      continue;
    }
    if (Math.random() < 0.08) { await disconnect(false); continue; }

    const { tab, doc } = ctx.pick();
    if (Math.random() < 0.1) {
      // presence on the whole document, as a viewer
      stats.joins++;
      const j = await cmd('presence:join', { resourceId: doc, mode: 'viewer' });
      if (j === null) continue;
      stats.joinedViewer++;
      await think();
      stats.leaves++;
      await cmd('presence:leave', { resourceId: doc });
      continue;
    }

    stats.joins++;
    const j = await cmd('presence:join', { resourceId: tab, mode: Math.random() < 0.6 ? 'editor' : 'viewer' });
    if (j === null) continue;
    if (!conn.isOpen()) continue;
    let holding = j.role === 'editor';
    if (holding) { stats.joinedEditor++; renewSentAt = lastSentAt; } else stats.joinedViewer++;
    await think();
    if (ctx.stopping()) break;

    if (!holding && Math.random() < 0.5) {
      stats.acquires++;
      const a = await cmd('lock:acquire', { resourceId: tab }, lockHeld);
      if (a && a.ok) { stats.acquired++; holding = true; renewSentAt = lastSentAt; }
      else if (a) stats.lockHeld++;
      await think();
    }
    if (holding) {
      const n = 1 + Math.floor(Math.random() * 3);
      // a holder's command: ok renews the lock (save, renew), an expected
      // expiry ends the holding
      const held = async (event, payload, renews) => {
        const r = await cmd(event, payload, mayHaveExpired);
        if (r && r.ok && renews) renewSentAt = lastSentAt;
        if (r && !r.ok) { stats.lockExpired++; holding = false; }
      };
      for (let k = 0; k < n && holding && !ctx.stopping(); k++) {
        stats.saves++;
        const content = `soak ${tab} ${Date.now()} ` + 'x'.repeat(Math.floor(Math.random() * ctx.contentBytes));
        await held('doc:save', { resourceId: tab, content }, true);
        await think();
      }
      if (holding && Math.random() < 0.3) {
        stats.renews++;
        await held('lock:renew', { resourceId: tab }, true);
      }
      if (Math.random() < 0.1) { await disconnect(holding); continue; }
      if (holding && Math.random() < 0.5) {
        stats.releases++;
        await held('lock:release', { resourceId: tab }, false);
        await think();
      }
    } else if (Math.random() < 0.05) {
      await disconnect(false);
      continue;
    }
    stats.leaves++;
    await cmd('presence:leave', { resourceId: tab });
  }
}
