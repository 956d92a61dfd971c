// Budgets of the worker (docs/settings.md, "Budgets"): connections per user,
// unauthenticated connections per address and the time they have to
// authenticate, every frame counted by the rate limit, the worker-wide cap
// on queued outgoing data (collab.max_output_buffer), re-joins that publish
// nothing, and denials and refusals sampled into the trails.  Each case has
// an exact outcome, and a bystander on a document of its own keeps getting
// answers within 500 ms meanwhile (its figures are printed).
import { test, describe, before, after } from 'node:test';
import fs from 'node:fs';
import assert from 'node:assert/strict';
import {
  newUser, tokenFor, connect, tryConnect, emitAck, ok, fails, join, leave, acquire, save, createDocument,
  q, teardown, eventually, waitFor, received, mark, rawOpen, rawConnect, setWorkerConf, resetWorkerConf,
  startTimedBystander, metric, currentWorkerPid, ref, sleep, ISO_RE, killRaw,
} from './helpers.mjs';

let bystander;

before(async () => {
  bystander = await startTimedBystander('budgets');
});
after(async () => {
  await teardown();
});

const setting = async (name) => (await q('SELECT setting, boot_val FROM pg_settings WHERE name = $1', [name]))[0];

describe('connections', () => {
  test('collab.max_connections_per_user: the 33rd connection of one user is refused with RATE_LIMITED; one closes, one more may come', async () => {
    assert.deepEqual(await setting('collab.max_connections_per_user'), { setting: '32', boot_val: '32' });
    const user = newUser('Busy');
    await bystander.measure('32 connections of one user and a refused 33rd', async () => {
      const sockets = await Promise.all(Array.from({ length: 32 }, () => connect(user)));
      const refused = await tryConnect({ token: tokenFor(user) });
      assert.ok(refused, 'the 33rd connection is refused');
      assert.equal(refused.data?.code, 'RATE_LIMITED');
      assert.match(refused.message, /32 connections open/);
      assert.deepEqual(await q('SELECT count(*)::int AS n FROM collab.connections WHERE user_id = $1', [user.sub]), [{ n: 32 }]);
      // another user is not concerned
      (await connect(newUser('Other'))).close();
      sockets.pop().close();
      await eventually(async () => (await q('SELECT count(*)::int AS n FROM collab.connections WHERE user_id = $1', [user.sub]))[0].n === 31,
        'one connection fewer');
      const again = await connect(user);
      assert.ok(again.connected, 'a connection again once one has closed');
      for (const s of [...sockets, again]) s.close();
    });
    const refusals = await q(`SELECT detail->>'reason' AS reason, (detail->>'limit')::int AS "limit" FROM collab.access_log
                               WHERE user_id = $1 AND action = 'connect' AND outcome = 'refused'`, [user.sub]);
    assert.deepEqual(refusals, [{ reason: 'too_many_connections', limit: 32 }], 'the refusal is in the access log');
  });

  test('500 unauthenticated sockets from one address: collab.max_unauthenticated_per_address (256) are served, the rest closed with 1013 and a reason; collab.connect_timeout closes the silent ones', { timeout: 60000 }, async () => {
    assert.deepEqual(await setting('collab.max_unauthenticated_per_address'), { setting: '256', boot_val: '256' });
    assert.deepEqual(await setting('collab.connect_timeout'), { setting: '10000', boot_val: '10000' });
    await setWorkerConf('collab.connect_timeout', '1500ms');
    try {
      await bystander.measure('500 unauthenticated sockets from one address', async () => {
        const opened = await Promise.all(Array.from({ length: 500 }, async () => {
          const c = await rawOpen();
          const first = await Promise.race([c.waitFrame('0{', 10000).catch(() => null), c.closed.then(() => null)]);
          return { c, served: first !== null, t: performance.now() };
        }));
        const served = opened.filter((o) => o.served);
        const refused = opened.filter((o) => !o.served);
        console.log(`# 500 unauthenticated sockets: ${served.length} served, ${refused.length} refused`);
        assert.equal(served.length, 256);
        assert.equal(refused.length, 244);
        for (const { c } of refused) {
          assert.deepEqual(c.frames, [], 'a refused socket gets no frame');
          assert.deepEqual(c.closeInfo, {
            code: 1013,
            reason: 'too many connections from this address have not authenticated yet (collab.max_unauthenticated_per_address); try again later',
          });
        }
        // the served ones never authenticate: closed after collab.connect_timeout
        const closedAt = await Promise.all(served.map(({ c }) => c.waitClosed(10000).then(() => performance.now())));
        const waited = served.map((o, i) => closedAt[i] - o.t);
        const slowest = Math.max(...waited);
        console.log(`# closed for not authenticating after ${Math.min(...waited).toFixed(0)}-${slowest.toFixed(0)} ms`);
        assert.ok(Math.min(...waited) >= 1400, 'not before collab.connect_timeout');
        assert.ok(slowest < 4000, `soon after it: ${slowest} ms`);
        // then the address may open connections again
        const fresh = await rawOpen();
        assert.match(await fresh.waitFrame('0{'), /^0\{"sid"/);
        fresh.ws.close();
      });
    } finally {
      await resetWorkerConf('collab.connect_timeout');
    }
  });

  test('collab.rate_limit counts every frame: pings, acks and CONNECTs to other namespaces; a pong to our ping always counts as an answer', async () => {
    const [{ setting: limit }] = await q("SELECT setting FROM pg_settings WHERE name = 'collab.rate_limit'");
    assert.equal(limit, '50');
    await bystander.measure('frame floods of every kind', async () => {
      // 100 pings at once: about a second's budget (50) is answered, the rest dropped
      const { client: pinger } = await rawConnect(tokenFor(newUser('Pinger')), { autoPong: true });
      const n0 = pinger.frames.length;
      for (let i = 0; i < 100; i++) pinger.send(`2p${i}`);
      const leave1 = await pinger.emitAck(1, 'presence:leave', { resourceId: bystander.resourceId });
      const pongs = pinger.frames.slice(n0).filter((f) => typeof f === 'string' && f.startsWith('3p')).length;
      console.log(`# 100 pings: ${pongs} answered; the event after them: ${leave1.error?.code}`);
      assert.ok(pongs >= 45 && pongs <= 52, `about the budget of pings answered: ${pongs}`);
      assert.equal(leave1.error?.code, 'RATE_LIMITED', 'the event after the pings is over the limit');

      // acks and CONNECTs to another namespace count too
      const { client: other } = await rawConnect(tokenFor(newUser('Namespaces')), { autoPong: true });
      const n1 = other.frames.length;
      for (let i = 0; i < 30; i++) other.send('40/admin,{}');
      for (let i = 0; i < 30; i++) other.send(`43${i}[{}]`);
      const leave2 = await other.emitAck(2, 'presence:leave', { resourceId: bystander.resourceId });
      const answered = other.frames.slice(n1).filter((f) => typeof f === 'string' && f.startsWith('44/admin,')).length;
      assert.equal(answered, 30, 'the CONNECTs within the budget are answered');
      assert.equal(leave2.error?.code, 'RATE_LIMITED', 'after 30 CONNECTs and 30 acks the budget is spent');

      // a client that floods pings for longer than the heartbeat still answers ours: it stays
      const { client: flooder } = await rawConnect(tokenFor(newUser('Flooder')), { autoPong: true });
      const [{ setting: pingMs }] = await q("SELECT setting FROM pg_settings WHERE name = 'collab.ping_interval'");
      const until = Date.now() + 2.5 * Number(pingMs) + 1000;
      while (Date.now() < until) {
        for (let i = 0; i < 10; i++) flooder.send('2');
        await sleep(50);
      }
      assert.equal(flooder.isClosed, false, 'the flooding client answered the server\'s pings and was kept');
      for (const c of [pinger, other, flooder]) c.ws.close();
    });
    assert.ok(await metric('collab_frames_dropped_total') > 0);
  });
});

describe('rooms and trails', () => {
  test('a re-join that changes nothing publishes nothing: 60 re-joins as viewer, 20 as editor, one presence:joined each time the role changes', async () => {
    const doc = await createDocument(['a']);
    const rid = doc.tab('a');
    const watcher = await connect(newUser('Watcher'));
    ok(await join(watcher, rid, 'viewer'));
    const joiner = newUser('Joiner');
    const j = await connect(joiner);
    const m = mark(watcher);
    await bystander.measure('a re-join loop', async () => {
      for (let i = 0; i < 60; i++) {
        const ack = ok(await join(j, rid, 'viewer'));
        assert.equal(ack.role, 'viewer');
        await sleep(25);
      }
      let token;
      for (let i = 0; i < 20; i++) {
        const ack = ok(await join(j, rid, 'editor'));
        assert.equal(ack.role, 'editor');
        token ??= ack.lock.token;
        assert.equal(ack.lock.token, token, 'a re-join keeps the lock and its token');
        await sleep(25);
      }
    });
    // events reach the watcher in commit order: once the marker save's is there, any re-join's would be
    assert.deepEqual(await save(j, rid, 'marker'), { ok: true, version: 1 });
    await waitFor(watcher, 'doc:saved', (e) => e.resourceId === rid, { since: m });
    const joined = received(watcher, 'presence:joined', (e) => e.user.userId === joiner.sub, m);
    assert.deepEqual(joined.map((e) => e.user.role), ['viewer', 'editor'], 'one presence:joined per role');
    assert.deepEqual(received(watcher, 'lock:acquired', (e) => e.resourceId === rid, m).map((e) => e.holder), [ref(joiner)],
      'one lock:acquired');
    j.close();
    watcher.close();
  });

  test('a denial loop: every denial is answered, the audit trail gets at most two rows a second whose counts add up', async () => {
    const doc = await createDocument(['a']);
    const rid = doc.tab('a');
    const holder = await connect(newUser('Holder'));
    assert.equal(ok(await join(holder, rid, 'editor')).role, 'editor');
    const asker = newUser('Asker');
    const a = await connect(asker);
    ok(await join(a, rid, 'viewer'));
    const N = 80;
    const m = mark(a);
    const t0 = performance.now();
    await bystander.measure('a denial loop', async () => {
      for (let i = 0; i < N; i++) {
        fails(await acquire(a, rid), 'LOCK_HELD');
        await sleep(25);
      }
    });
    const seconds = (performance.now() - t0) / 1000;
    await eventually(() => received(a, 'lock:denied', (e) => e.resourceId === rid, m).length === N,
      'a lock:denied for every denial', 5000);
    const rows = () => q(`SELECT count(*)::int AS rows, sum(coalesce((detail->>'repeats')::int, 1))::int AS denials
                            FROM collab.audit WHERE action = 'deny' AND user_id = $1 AND resource_id = $2`, [asker.sub, rid]);
    await eventually(async () => (await rows())[0].denials === N, 'every denial is counted in the audit trail', 5000);
    const [{ rows: nrows, denials }] = await rows();
    console.log(`# ${N} denials in ${seconds.toFixed(1)} s: ${nrows} audit rows`);
    assert.equal(denials, N);
    assert.ok(nrows <= 2 * Math.ceil(seconds + 1), `at most two rows a second: ${nrows} rows in ${seconds.toFixed(1)} s`);
    const [most] = await q(`SELECT detail FROM collab.audit WHERE action = 'deny' AND user_id = $1 AND resource_id = $2
                              AND detail ? 'repeats' ORDER BY (detail->>'repeats')::int DESC LIMIT 1`, [asker.sub, rid]);
    assert.ok(most.detail.repeats > 1, `a row counts several denials: ${JSON.stringify(most.detail)}`);
    assert.equal(most.detail.heldBy, (await q('SELECT user_id FROM collab.locks WHERE resource_id = $1', [rid]))[0].user_id);
    assert.match(most.detail.firstAt, ISO_RE);
    assert.match(most.detail.lastAt, ISO_RE);
    assert.ok(most.detail.firstAt < most.detail.lastAt, 'the first and the last of them');
    holder.close();
    a.close();
  });

  test('refusal loops: joins of a resource one may not view, reconnects with a revoked token: the access log gets at most two rows a second per kind, whose counts add up', async () => {
    const eve = newUser('Eve');
    const secret = await createDocument(['a']);
    await q("SELECT collab.revoke($1, '*')", [secret.id]);
    const e = await connect(eve);
    const N = 60;
    const t0 = performance.now();
    await bystander.measure('a refused-join loop', async () => {
      for (let i = 0; i < N; i++) {
        fails(await join(e, secret.tab('a'), 'viewer'), 'RESOURCE_NOT_FOUND');
        await sleep(25);
      }
    });
    e.close();
    const revoked = newUser('Revoked');
    await q('SELECT collab.revoke_sessions($1, $2)', [revoked.sub, 'test']);
    const R = 20;
    await bystander.measure('a revoked reconnect loop', async () => {
      for (let i = 0; i < R; i++) assert.equal((await tryConnect({ token: tokenFor(revoked) }))?.data?.code, 'AUTH_TOKEN_REVOKED');
    });
    const seconds = (performance.now() - t0) / 1000;
    const counts = () => q(`SELECT user_id = $1 AS eve, count(*)::int AS rows, sum(coalesce((detail->>'repeats')::int, 1))::int AS refusals
                              FROM collab.access_log
                             WHERE outcome = 'refused' AND user_id = ANY ($2) GROUP BY 1 ORDER BY 1`, [eve.sub, [eve.sub, revoked.sub]]);
    await eventually(async () => JSON.stringify((await counts()).map((r) => r.refusals)) === JSON.stringify([R, N]),
      'every refusal is counted in the access log', 5000);
    const [rev, ev] = await counts();
    console.log(`# ${N} refused joins: ${ev.rows} rows; ${R} refused reconnects: ${rev.rows} rows; in ${seconds.toFixed(1)} s`);
    assert.ok(ev.rows <= 2 * Math.ceil(seconds + 1), `refused joins: ${ev.rows} rows`);
    assert.ok(rev.rows <= 2 * Math.ceil(seconds + 1), `refused reconnects: ${rev.rows} rows`);
  });
});

/* ------------------------------------------------------------------------
 * The output budget
 * ------------------------------------------------------------------------ */

/** The worker's resident memory in kB. */
function rssKb(pid) {
  const m = fs.readFileSync(`/proc/${pid}/status`, 'utf8').match(/^VmRSS:\s+(\d+) kB/m);
  return Number(m[1]);
}

/** A tab whose content is `bytes` long, saved through the SQL API. */
async function bigTab(bytes) {
  const doc = await createDocument(['big']);
  const rid = doc.tab('big');
  const [{ token }] = await q("SELECT token FROM collab.acquire($1, 'u-writer', 'Writer', 'h-writer')", [rid]);
  await q('SELECT collab.save($1, $2, $3)', [rid, token, 'x'.repeat(bytes)]);
  return { rid, token };
}

const SHED_CLOSE = {
  code: 1013,
  reason: 'collab.max_output_buffer reached: this connection read too slowly',
};

describe('collab.max_output_buffer', () => {
  // sockets that do not read do not answer pings either: a longer heartbeat,
  // so that only the output budget closes them here
  let timed;
  before(async () => {
    await setWorkerConf('collab.ping_interval', '60s');
    await setWorkerConf('collab.ping_timeout', '60s');
    timed = await startTimedBystander('outbuf');
  });
  after(async () => {
    timed?.socket.close();
    await resetWorkerConf('collab.ping_interval', 'collab.ping_timeout', 'collab.max_output_buffer');
  });

  test('a slow consumer past the worker-wide cap is closed with 1013 and a reason it can log; readers are not', async () => {
    await setWorkerConf('collab.max_output_buffer', '4MB');
    const { rid } = await bigTab(1024 * 1024);
    const reader = await connect(newUser('Reader'));
    ok(await join(reader, rid, 'viewer'));
    const shed0 = await metric('collab_connections_shed_total');
    await timed.measure('a slow consumer', async () => {
      const { client: slow } = await rawConnect(tokenFor(newUser('Slow')));
      slow.ws._socket.pause();
      // 40 joins of a 1 MB document: more than the kernel's socket buffers
      // take, the rest queued in the worker
      for (let i = 0; i < 40; i++) slow.send(`42${i}${JSON.stringify(['presence:join', { resourceId: rid, mode: 'viewer' }])}`);
      await eventually(async () => (await metric('collab_connections_shed_total')) === shed0 + 1, 'the slow consumer is shed', 5000, 20);
      assert.ok(await metric('collab_output_buffer_bytes') <= 4 * 1024 * 1024, 'the queued bytes are under the cap');
      slow.ws._socket.resume();
      assert.deepEqual(await slow.waitClosed(5000), SHED_CLOSE);
    });
    // the reader was served throughout, and is still
    ok(await leave(reader, rid));
    assert.ok(reader.connected);
    assert.equal(await metric('collab_connections_shed_total'), shed0 + 1, 'only the slow consumer was shed');
    reader.close();
  });

  test('1000 sockets that never read, joined to a 1 MB document saved again and again: the queued bytes and the worker\'s memory stay bounded by collab.max_output_buffer', { timeout: 120000 }, async () => {
    const CAP_MB = 32;
    await setWorkerConf('collab.max_output_buffer', `${CAP_MB}MB`);
    const { rid, token } = await bigTab(1024 * 1024);
    const pid = await currentWorkerPid();
    const rss0 = rssKb(pid);
    let rssMax = rss0;
    let queuedMax = 0;
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        rssMax = Math.max(rssMax, rssKb(pid));
        queuedMax = Math.max(queuedMax, await metric('collab_output_buffer_bytes'));
        await sleep(100);
      }
    })();
    const shed0 = await metric('collab_connections_shed_total');
    const N = 1000;
    const sockets = [];
    try {
    await timed.measure('1000 sockets that never read a 1 MB document', async () => {
      // 20 at a time, about 60 a second: each join sends the document and
      // a room of up to 1000 users, and tells the room; what a worker can do
      // in a second is the same whether they read or not
      const tj = performance.now();
      for (let i = 0; i < N; i += 20) {
        const batch = await Promise.all(Array.from({ length: Math.min(20, N - i) }, () => rawConnect(tokenFor(newUser('Stuck')))));
        for (const { client } of batch) {
          client.send(`421${JSON.stringify(['presence:join', { resourceId: rid, mode: 'viewer' }])}`);
          client.ws._socket.pause();
          sockets.push(client);
        }
        await sleep(300);
      }
      console.log(`# 1000 joins sent in ${((performance.now() - tj) / 1000).toFixed(1)} s`);
      for (let v = 0; v < 5; v++) await q('SELECT collab.save($1, $2, $3)', [rid, token, String(v).repeat(1024 * 1024)]);
      // the kernel keeps a few MB for a socket, which is not the worker's
      // memory: 25 of them ask for the document eight times more, one
      // after the other, more than the kernel takes
      for (const client of sockets.slice(0, 25)) {
        for (let i = 2; i < 10; i++) client.send(`42${i}${JSON.stringify(['presence:join', { resourceId: rid, mode: 'viewer' }])}`);
        await sleep(250);
      }
      // a join queued after all theirs is answered once theirs are
      const late = await connect(newUser('Late'));
      const ack = ok(await join(late, rid, 'viewer'), 'a join after the 1000');
      assert.equal(ack.resource.content.length, 1024 * 1024);
      late.close();
    });
    } catch (e) {
      // a failed measure must not leave the sampler and the sockets behind
      sampling = false;
      await sampler;
      for (const c of sockets) killRaw(c);
      throw e;
    }
    sampling = false;
    await sampler;
    const shed = (await metric('collab_connections_shed_total')) - shed0;
    // every socket, reading again, gets all its answers, or what the kernel
    // had of them and then the close of the shed
    const outcomes = await Promise.all(sockets.map(async (c, i) => {
      const acks = i < 25 ? 9 : 1;
      c.ws._socket.resume();
      const got = await new Promise((resolve) => {
        const timer = setTimeout(() => resolve('no answer'), 20000);
        const done = (v) => { clearTimeout(timer); resolve(v); };
        const answered = () => c.frames.filter((f) => typeof f === 'string' && /^43\d+\[\{"ok":true/.test(f)).length === acks;
        c.waitFrame(() => answered(), 20000).then(() => done('answered'), () => {});
        c.closed.then((info) => done(info.code === 1013 && info.reason === SHED_CLOSE.reason ? 'closed 1013' : `closed ${info.code}`));
      });
      c.ws.terminate();
      return got;
    }));
    const tally = {};
    for (const o of outcomes) tally[o] = (tally[o] ?? 0) + 1;
    console.log(`# ${N} sockets that never read: shed ${shed}; outcomes ${JSON.stringify(tally)}; ` +
      `queued bytes at most ${(queuedMax / 1048576).toFixed(1)} MB (cap ${CAP_MB} MB); ` +
      `worker RSS ${(rss0 / 1024).toFixed(0)} MB before, at most ${(rssMax / 1024).toFixed(0)} MB`);
    assert.ok(shed > 0, 'the cap was reached and connections were shed');
    assert.deepEqual(Object.keys(tally).filter((k) => !['answered', 'closed 1013', 'closed 1006'].includes(k)), [],
      'each socket was answered, or closed for the budget (1013, or 1006 when what its socket held had to go at once)');
    assert.equal((tally['closed 1013'] ?? 0) + (tally['closed 1006'] ?? 0), shed, 'the shed sockets, and only they, were closed');
    assert.ok(queuedMax <= CAP_MB * 1048576, `queued bytes within the cap: ${queuedMax}`);
    // the budget, the batch's answers in flight (8 MB) and the allocator's slack
    assert.ok(rssMax - rss0 <= (CAP_MB + 160) * 1024, `the worker's memory grew by ${((rssMax - rss0) / 1024).toFixed(0)} MB`);
  });
});
