// collab demo UI: one operation report, its tabs, who is where, who edits what.
//
//   /?token=<JWT>&doc=<document key>[&tab=<tab key>]
//
// Speaks the worker's Socket.IO protocol (docs/protocol.md) with the stock
// socket.io-client (window.io, from /ui/vendor/socket.io.min.js). The page
// joins the document as a viewer (presence of every tab, and every tab's lock
// and save events), plus the tab on screen; it stays in a tab's room while it
// holds that tab's lock or waits for it (lock:request), so switching tabs does
// not give a lock away.
//
// The text area shows the tab's text as stored when the page joined it (or
// as this page typed or saved it); below it, the tab's history (see "history
// panel").
//
// What the user may do comes with each join's acknowledgement (permissions):
// without "edit" the page is view only (a banner, no Edit or Request edit),
// and it follows access:changed and access:revoked as they arrive.
//
// A lost connection (not one the page or the server ended) leaves this
// page's locks with it for the server's grace (disconnectGraceMs of the join
// acknowledgement): the page says until when, and once connected again it
// takes them back (lock:acquire, a takeover with a new token). Others see
// lock:suspended ("lost connection; their lock is kept until ...") until
// lock:resumed, lock:released or lock:expired. When socket.io-client
// recovers the session (socket.recovered: the same connection, its rooms and
// locks with their tokens, the missed events replayed), the page keeps what
// it knew and only takes its locks back from the notice.

import { diffTexts } from '/ui/diff.js';

const DEMO_TABS = [
  ['patient-info', 'Patient information'],
  ['diagnosis', 'Diagnosis'],
  ['procedure-notes', 'Procedure notes'],
  ['anesthesia', 'Anesthesia'],
];
const RENEW_EVERY_MS = 60_000;
const ACK_TIMEOUT_MS = 10_000;
const NOTICE_LINGER_MS = 12_000;
const TOKEN_KEY = 'collab.token';

const RELEASE_REASONS = {
  released: 'finished editing',
  left: 'left the section',
  disconnected: 'lost the connection',
  forced: 'the lock was released by an administrator',
  revoked: 'their permission to edit was withdrawn',
};

/* ------------------------------------------------------------------ helpers */

const $ = (sel) => document.querySelector(sel);

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') node.className = v;
    else if (k === 'text') node.textContent = v;
    else if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c !== null && c !== undefined && c !== false) node.append(c);
  }
  return node;
}

const SVG_NS = 'http://www.w3.org/2000/svg';
const ICONS = {
  lock: ['M7 11V8a5 5 0 0 1 10 0v3', 'M5 11h14v10H5z'],
  unlock: ['M7 11V8a5 5 0 0 1 9.6-2', 'M5 11h14v10H5z'],
  pencil: ['M4 20h4L19 9l-4-4L4 16z', 'M13.5 6.5l4 4'],
};

/** A small line icon (decorative: hidden from assistive technology). */
function icon(name) {
  const svg = document.createElementNS(SVG_NS, 'svg');
  svg.setAttribute('viewBox', '0 0 24 24');
  svg.setAttribute('class', `icon icon-${name}`);
  svg.setAttribute('aria-hidden', 'true');
  svg.setAttribute('focusable', 'false');
  for (const d of ICONS[name]) {
    const path = document.createElementNS(SVG_NS, 'path');
    path.setAttribute('d', d);
    svg.append(path);
  }
  return svg;
}

/** The JWT's claims, for a first guess at who we are (the worker decides). */
function jwtClaims(token) {
  try {
    const part = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    const json = decodeURIComponent(Array.from(atob(part), (c) => '%' + c.charCodeAt(0).toString(16).padStart(2, '0')).join(''));
    return JSON.parse(json);
  } catch {
    return {};
  }
}

/** Display name as the worker derives it: name, preferred_username, sub; never an e-mail. */
function displayNameOf(claims) {
  for (const k of ['name', 'preferred_username']) {
    if (typeof claims[k] === 'string' && claims[k] && !claims[k].includes('@')) return claims[k];
  }
  return typeof claims.sub === 'string' ? claims.sub.split('@')[0] : '';
}

function initials(name) {
  const words = String(name).trim().split(/\s+/).filter(Boolean);
  const real = words.filter((w) => !/\.$/.test(w)); // drop titles such as "Dr."
  const use = real.length ? real : words;
  if (!use.length) return '?';
  const first = use[0][0];
  const last = use.length > 1 ? use[use.length - 1][0] : '';
  return (first + last).toUpperCase();
}

function colourClass(userId) {
  let h = 0;
  for (const ch of String(userId)) h = (h * 31 + ch.codePointAt(0)) >>> 0;
  return 'c' + (h % 8);
}

function humanTitle(key) {
  const s = key.replace(/[-_]+/g, ' ');
  return s.charAt(0).toUpperCase() + s.slice(1);
}

const timeFmt = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });
const secondsFmt = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit' });
/** A server time on this page's clock; with seconds, for times a few seconds away (a grace). */
function clock(iso, { seconds = false } = {}) {
  const t = Date.parse(iso);
  return Number.isFinite(t) ? (seconds ? secondsFmt : timeFmt).format(new Date(t - state.skewMs)) : '';
}

function formatLeft(ms) {
  if (ms <= 0) return 'expiring';
  const s = Math.ceil(ms / 1000);
  const m = Math.floor(s / 60);
  return `${m}:${String(s % 60).padStart(2, '0')} left`;
}

/* -------------------------------------------------------------------- state */

const params = new URLSearchParams(location.search);
const docKey = params.get('doc') || 'op-2026-0042';
const docId = `document:${docKey}`;
const tabId = (key) => `${docId}/tab:${key}`;

const state = {
  token: null,
  me: { userId: null, username: '' },
  tabs: new Map(),          // key -> Tab
  activeKey: null,
  previousKey: null,
  presence: new Map(),      // `${connectionId}|${resourceId}` -> PresenceUser
  locks: new Map(),         // resourceId -> { holder, acquiredAt, expiresAt, token? }
  requested: new Set(),     // resourceIds this connection asked for (lock:request)
  kept: new Map(),          // resourceId -> until (server time): our locks while the connection is lost
  keptLocks: new Map(),     // resourceId -> our lock as it was, for a recovered session
  lostRooms: new Map(),     // the rooms at the loss, for a recovered session
  graceMs: 0,               // how long the server keeps our locks after a lost connection
  ownEnds: new Set(),       // resourceIds whose lock this page gave up (release, dropped connection)
  rooms: new Map(),         // resourceId -> 'joining' | 'joined' | 'leaving'
  permissions: new Map(),   // resourceId -> ("view" | "edit" | "admin")[], from joins and access:changed
  withdrawn: false,         // access to the report was withdrawn
  connected: false,
  epoch: 0,                 // bumped on every connect and disconnect: stale acks are ignored
  skewMs: 0,                // client clock minus server clock, estimated
  skewSamples: [],
};

function tabOf(key) {
  let t = state.tabs.get(key);
  if (!t) {
    const demo = DEMO_TABS.find(([k]) => k === key);
    t = {
      key,
      id: tabId(key),
      title: demo ? demo[1] : humanTitle(key),
      text: '',             // what this page shows (typed or saved here)
      textVersion: null,    // the version `text` is, when this page saved it
      dirty: false,         // typed since the last save of this page
      version: null,        // newest version known (doc:saved, save acks)
      savedBy: null,
      savedAt: null,
      busy: false,
      missing: false,       // a demo tab this document does not have
    };
    state.tabs.set(key, t);
  }
  return t;
}

/** Tab key of a resource id in this document, or null. */
function tabKeyOf(resourceId) {
  const prefix = `${docId}/tab:`;
  if (typeof resourceId !== 'string' || !resourceId.startsWith(prefix)) return null;
  const rest = resourceId.slice(prefix.length);
  return rest && !rest.includes('/') ? rest : null;
}

function noteServerTime(iso) {
  const t = Date.parse(iso);
  if (!Number.isFinite(t)) return;
  state.skewSamples.push(Date.now() - t);
  if (state.skewSamples.length > 10) state.skewSamples.shift();
  // delivery only ever adds delay: the smallest sample is the best estimate
  state.skewMs = Math.min(...state.skewSamples);
}

const serverNow = () => Date.now() - state.skewMs;

/** The lock that governs a tab: its own, or the whole document's. */
function lockFor(key) {
  return state.locks.get(tabId(key)) || state.locks.get(docId) || null;
}

const isMine = (lock) => Boolean(lock && lock.token !== undefined && lock.token !== null);
const isMyUser = (ref) => Boolean(ref && state.me.userId && ref.userId === state.me.userId);

/* ------------------------------------------------------------------ socket */

let socket = null;

function emit(event, payload) {
  return new Promise((resolve) => {
    if (!socket || !state.connected) {
      resolve({ ok: false, error: { code: 'OFFLINE', message: 'Not connected to the server.' } });
      return;
    }
    socket.timeout(ACK_TIMEOUT_MS).emit(event, payload, (err, ack) => {
      if (err) resolve({ ok: false, error: { code: 'TIMEOUT', message: 'The server did not answer in time.' } });
      else resolve(ack && typeof ack === 'object' ? ack : { ok: false, error: { code: 'INTERNAL', message: 'Malformed answer.' } });
    });
  });
}

function errorText(ack) {
  const e = ack && ack.error ? ack.error : {};
  return `${e.message || 'The request failed.'}${e.code ? ` (${e.code})` : ''}`;
}

function start() {
  const fromUrl = params.get('token');
  if (fromUrl) {
    state.token = fromUrl;
    try { sessionStorage.setItem(TOKEN_KEY, fromUrl); } catch { /* private mode */ }
    // keep the token out of the address bar, history and bookmarks
    params.delete('token');
    const q = params.toString();
    history.replaceState(null, '', location.pathname + (q ? `?${q}` : '') + location.hash);
  } else {
    try { state.token = sessionStorage.getItem(TOKEN_KEY); } catch { state.token = null; }
  }

  $('#doc-title').textContent = docKey.toUpperCase();
  document.title = `${docKey.toUpperCase()} · Operation report`;
  for (const [key] of DEMO_TABS) tabOf(key);
  const wanted = params.get('tab');
  state.activeKey = wanted && /^[^/]+$/.test(wanted) ? tabOf(wanted).key : DEMO_TABS[0][0];

  wireControls();
  wireHistory();
  render();
  setInterval(tick, 1000);

  if (!state.token) {
    setConnection('failed', 'Not signed in');
    notify({ key: 'no-token', kind: 'error', sticky: true,
      text: 'This page needs a sign-in token: open it as /?token=<JWT>&doc=<document key>.' });
    return;
  }
  if (typeof window.io !== 'function') {
    setConnection('failed', 'Client library missing');
    notify({ key: 'no-io', kind: 'error', sticky: true, text: 'The Socket.IO client (/ui/vendor/socket.io.min.js) did not load.' });
    return;
  }

  const claims = jwtClaims(state.token);
  state.me = { userId: typeof claims.sub === 'string' ? claims.sub : null, username: displayNameOf(claims) };
  renderMe();

  // the client's default transports: long-polling first, then the upgrade
  // to WebSocket where the network lets it through
  socket = window.io(location.origin, {
    auth: { token: state.token },
  });
  socket.on('connect', onConnect);
  socket.on('disconnect', onDisconnect);
  socket.on('connect_error', onConnectError);
  socket.io.on('reconnect_attempt', (n) => setConnection('reconnecting', `Reconnecting (attempt ${n})…`));

  socket.on('presence:state', onPresenceState);
  socket.on('presence:joined', onPresenceJoined);
  socket.on('presence:left', onPresenceLeft);
  socket.on('lock:acquired', onLockAcquired);
  socket.on('lock:denied', onLockDenied);
  socket.on('lock:released', onLockReleased);
  socket.on('lock:expired', onLockExpired);
  socket.on('lock:suspended', onLockSuspended);
  socket.on('lock:resumed', onLockResumed);
  socket.on('lock:requested', onLockRequested);
  socket.on('doc:saved', onDocSaved);
  socket.on('access:changed', onAccessChanged);
  socket.on('access:revoked', onAccessRevoked);
  socket.on('error', onServerError);
}

function setConnection(stateName, text) {
  const node = $('[data-testid="connection-status"]');
  node.dataset.state = stateName;
  node.textContent = text;
}

/** The connection's transport ("polling" or "websocket"), on the status node for tests and curious users. */
function showTransport() {
  const engine = socket.io.engine;
  $('[data-testid="connection-status"]').dataset.transport = engine.transport.name;
  engine.once('upgrade', showTransport);
}

async function onConnect() {
  state.connected = true;
  const epoch = ++state.epoch;
  setConnection('connected', 'Connected');
  showTransport();
  dismiss('connection');
  // for tests and support: whether this connection took up the lost session
  $('[data-testid="connection-status"]').dataset.recovered = socket.recovered ? 'true' : 'false';
  if (socket.recovered) {
    onRecovered();
    return;
  }
  state.keptLocks.clear();
  state.lostRooms.clear();
  // a new connection starts from nothing: rooms, presence and locks are re-learned
  state.rooms.clear();
  state.presence.clear();
  state.locks.clear();
  state.requested.clear();
  state.permissions.clear();
  render();

  const ack = await emit('presence:join', { resourceId: docId, mode: 'viewer' });
  if (epoch !== state.epoch) return;
  if (!ack.ok) {
    notify({ key: 'doc-join', kind: 'error', sticky: true,
      text: ack.error && ack.error.code === 'RESOURCE_NOT_FOUND'
        ? `There is no report "${docKey}".`
        : `Could not open the report: ${errorText(ack)}` });
    return;
  }
  dismiss('doc-join');
  state.withdrawn = false;
  dismiss('withdrawn');
  state.graceMs = Number.isFinite(ack.disconnectGraceMs) ? ack.disconnectGraceMs : 0;
  state.rooms.set(docId, 'joined');
  state.permissions.set(docId, ack.permissions || []);
  applyUsers(docId, ack.users);
  setLock(docId, ack.lock);
  // the report's own tab list, with their versions and locks
  if (Array.isArray(ack.children) && ack.children.length) {
    const present = new Set();
    for (const child of ack.children) {
      const key = tabKeyOf(child.resourceId);
      if (!key) continue;
      present.add(key);
      const t = tabOf(key);
      if (child.title) t.title = child.title;
      t.missing = false;
      if (typeof child.version === 'number') t.version = child.version;
      if (child.lock) setLock(child.resourceId, child.lock);
    }
    for (const t of state.tabs.values()) if (!present.has(t.key)) t.missing = true;
    if (tabOf(state.activeKey).missing) {
      const first = [...state.tabs.values()].find((t) => !t.missing);
      if (first) state.activeKey = first.key;
    }
  }
  await syncRooms();
  if (epoch !== state.epoch) return;
  for (const rid of [...state.kept.keys()]) await reclaim(rid, epoch);
  render();
}

/*
 * The same session again (connection state recovery): the server kept its
 * rooms and locks, and replays what the page missed; the page takes back
 * what it had.
 */
function onRecovered() {
  for (const [rid, st] of state.lostRooms) if (st === 'joined') state.rooms.set(rid, 'joined');
  state.lostRooms.clear();
  for (const [rid, lock] of state.keptLocks) {
    const key = tabKeyOf(rid);
    const title = key ? tabOf(key).title : 'the report';
    state.kept.delete(rid);
    dismiss(`kept:${rid}`);
    setLock(rid, lock);
    notify({ key: `back:${rid}`, kind: 'success',
      text: `Connection restored: you are still editing ${title}.${key && tabOf(key).dirty ? ' Save when you are ready.' : ''}` });
    if (key === state.activeKey) focusEditorSoon();
  }
  state.keptLocks.clear();
  syncRooms();
  render();
}

/* A lock kept for us while the connection was lost: take it back. */
async function reclaim(rid, epoch) {
  const key = tabKeyOf(rid);
  const title = key ? tabOf(key).title : 'the report';
  const dirty = key ? tabOf(key).dirty : false;
  const ack = await emit('lock:acquire', { resourceId: rid });
  if (epoch !== state.epoch) return;
  state.kept.delete(rid);
  dismiss(`kept:${rid}`);
  if (ack.ok) {
    dismiss(`denied:${rid}`);
    setLock(rid, ack.lock);
    notify({ key: `back:${rid}`, kind: 'success',
      text: `Connection restored: you are still editing ${title}.${dirty ? ' Save when you are ready.' : ''}` });
    if (key === state.activeKey) focusEditorSoon();
  } else {
    if (ack.error && ack.error.code === 'LOCK_HELD' && ack.lock) setLock(ack.lock.resourceId || rid, ack.lock);
    const who = ack.lock && ack.lock.holder ? ack.lock.holder.username : null;
    notify({ key: `lost:${rid}`, kind: 'warning', sticky: true,
      text: `Your lock on ${title} was not kept: the connection was lost for too long`
        + (who ? `, and ${who} is editing it now.` : '.')
        + (dirty ? ' Your unsaved text is still here.' : '') });
  }
  await syncRooms();
  render();
}

// socket.io-client's reasons for a connection lost without a goodbye
const LOST_REASONS = new Set(['transport close', 'transport error', 'ping timeout']);

function onDisconnect(reason) {
  state.connected = false;
  state.epoch++;
  const lost = [];
  const lock0 = new Map();
  for (const [rid, lock] of state.locks) {
    if (isMine(lock)) { lost.push(rid); lock0.set(rid, lock); }
  }
  state.lostRooms = new Map(state.rooms);
  state.rooms.clear();
  // the server forgets this connection's requests with it
  for (const rid of state.requested) dismiss(`requested:${rid}`);
  state.requested.clear();
  const kept = LOST_REASONS.has(reason) && state.graceMs > 0;
  for (const rid of lost) {
    state.locks.delete(rid);
    const key = tabKeyOf(rid);
    const t = key ? tabOf(key) : null;
    if (kept) {
      // the server keeps it for us until then (lock:suspended to the others)
      const until = new Date(serverNow() + state.graceMs).toISOString();
      state.kept.set(rid, until);
      state.keptLocks.set(rid, lock0.get(rid));
      notify({ key: `kept:${rid}`, kind: 'warning', sticky: true,
        text: `Connection lost, your lock on ${t ? t.title : 'the report'} is kept until ${clock(until, { seconds: true })}. Reconnecting…`
          + (t && t.dirty ? ' Your unsaved text is still here.' : '') });
      continue;
    }
    state.ownEnds.add(rid); // its lock:released (reason disconnected) is no news
    notify({ key: `lost:${rid}`, kind: 'warning', sticky: true,
      text: `The connection dropped while you were editing ${t ? t.title : 'the report'}, so your lock on it is given up. `
        + (t && t.dirty ? 'Your unsaved text is still here: click Edit to take the lock again, then Save.' : 'Click Edit to continue.') });
  }
  stopRenewals();
  if (reason === 'io server disconnect' || reason === 'io client disconnect') {
    setConnection('failed', 'Disconnected');
    notify({ key: 'connection', kind: 'error', sticky: true,
      text: 'The server ended this session (for example because the sign-in token expired). Reload the page with a new token.' });
  } else {
    setConnection('reconnecting', 'Connection lost — reconnecting…');
    // a kept lock's notice says it already
    if (!kept || lost.length === 0) notify({ key: 'connection', kind: 'warning', sticky: true, text: 'Connection lost. Reconnecting…' });
  }
  render();
}

function onConnectError(err) {
  const code = err && err.data && err.data.code;
  if (code || (socket && !socket.active)) {
    // refused by the server (authentication, origin): socket.io does not retry
    setConnection('failed', 'Sign-in refused');
    notify({ key: 'connection', kind: 'error', sticky: true,
      text: `The server refused the sign-in: ${err.message}${code ? ` (${code})` : ''}. Reload the page with a valid token.` });
  } else {
    setConnection('reconnecting', 'Server not reachable — retrying…');
  }
}

/* ------------------------------------------------------------------- rooms */

/** Rooms this page wants besides the document: the tab on screen, and the tabs it holds or waits for. */
function wantedRooms() {
  const want = new Set();
  if (state.activeKey) want.add(tabId(state.activeKey));
  for (const [rid, lock] of state.locks) if (isMine(lock) && tabKeyOf(rid)) want.add(rid);
  for (const rid of state.requested) want.add(rid);
  for (const rid of state.kept.keys()) want.add(rid);
  return want;
}

let syncing = null;
async function syncRooms() {
  if (syncing) {
    // serialise; run once more after the current pass
    syncing.again = true;
    return syncing.done;
  }
  const run = { again: false };
  syncing = run;
  run.done = (async () => {
    do {
      run.again = false;
      if (!state.connected || state.rooms.get(docId) !== 'joined') break;
      const want = wantedRooms();
      for (const rid of want) {
        if (!state.rooms.has(rid)) await joinRoom(rid);
      }
      for (const [rid, st] of [...state.rooms]) {
        if (rid !== docId && st === 'joined' && !wantedRooms().has(rid)) await leaveRoom(rid);
      }
    } while (run.again);
    syncing = null;
  })();
  return run.done;
}

async function joinRoom(rid) {
  const epoch = state.epoch;
  state.rooms.set(rid, 'joining');
  const ack = await emit('presence:join', { resourceId: rid, mode: 'viewer' });
  if (epoch !== state.epoch) return;
  if (!ack.ok) {
    state.rooms.delete(rid);
    const key = tabKeyOf(rid);
    if (key && ack.error && ack.error.code === 'RESOURCE_NOT_FOUND') {
      // a demo tab this report does not have: drop it, show another
      tabOf(key).missing = true;
      if (state.activeKey === key) {
        const back = state.previousKey && !tabOf(state.previousKey).missing ? tabOf(state.previousKey) : null;
        const other = back || [...state.tabs.values()].find((t) => !t.missing);
        if (other) state.activeKey = other.key;
        syncRooms();
      }
    } else {
      notify({ key: `join:${rid}`, kind: 'error',
        text: `Could not open ${key ? tabOf(key).title : rid}: ${errorText(ack)}` });
    }
    render();
    return;
  }
  dismiss(`join:${rid}`);
  state.rooms.set(rid, 'joined');
  state.permissions.set(rid, ack.permissions || []);
  applyUsers(rid, ack.users);
  setLock(rid, ack.lock);
  // the content as stored now, unless this page has unsaved typing
  const key = tabKeyOf(rid);
  if (key && ack.resource) {
    const t = tabOf(key);
    t.version = ack.resource.version;
    t.savedBy = ack.resource.savedBy || null;
    t.savedAt = ack.resource.savedAt || null;
    if (!t.dirty) {
      t.text = ack.resource.content;
      t.textVersion = ack.resource.version;
    }
  }
  render();
}

async function leaveRoom(rid) {
  const epoch = state.epoch;
  state.rooms.set(rid, 'leaving');
  await emit('presence:leave', { resourceId: rid });
  if (epoch !== state.epoch) return;
  state.rooms.delete(rid);
  render();
}

/* ---------------------------------------------------------------- presence */

const presenceKey = (p) => `${p.connectionId}|${p.resourceId}`;

function within(rid, root) {
  return rid === root || rid.startsWith(`${root}/`);
}

/** Replaces what we know of a room (and, for the document, its tabs) with a users list. */
function applyUsers(rid, users) {
  if (!Array.isArray(users)) return;
  for (const [k, p] of [...state.presence]) {
    if (within(p.resourceId, rid)) state.presence.delete(k);
  }
  for (const p of users) addPresence(p, rid);
}

function addPresence(p, fallbackRid) {
  if (!p || typeof p !== 'object' || !p.connectionId) return;
  const user = { ...p, resourceId: p.resourceId || fallbackRid };
  state.presence.set(presenceKey(user), user);
  const key = tabKeyOf(user.resourceId);
  if (key) tabOf(key).missing = false;
  if (socket && user.connectionId === socket.id) {
    state.me = { userId: user.userId, username: user.username };
    renderMe();
  }
}

function onPresenceState({ resourceId, users } = {}) {
  applyUsers(resourceId, users);
  render();
}

function onPresenceJoined({ resourceId, user } = {}) {
  if (user) {
    addPresence(user, resourceId);
    if (user.joinedAt) noteServerTime(user.joinedAt);
  }
  render();
}

function onPresenceLeft({ resourceId, user } = {}) {
  if (user) state.presence.delete(presenceKey({ ...user, resourceId: user.resourceId || resourceId }));
  render();
}

/** People (one entry per user) in a room, or in the document and all its tabs. */
function peopleIn(rid, withDescendants) {
  const byUser = new Map();
  for (const p of state.presence.values()) {
    if (withDescendants ? within(p.resourceId, rid) : p.resourceId === rid) {
      if (!byUser.has(p.userId)) byUser.set(p.userId, p);
    }
  }
  return [...byUser.values()].sort((a, b) => String(a.joinedAt).localeCompare(String(b.joinedAt)));
}

/* ------------------------------------------------------------------- locks */

/** Records a lock (null: none on rid). A lock is filed under its own resourceId. */
function setLock(rid, lock) {
  if (lock && lock.holder) {
    const at = lock.resourceId || rid;
    const old = state.locks.get(at);
    const merged = { ...lock, resourceId: at };
    // a room's copy of our own grant has no token: keep ours
    if (!isMine(merged) && isMine(old) && old.holder.userId === lock.holder.userId) merged.token = old.token;
    state.locks.set(at, merged);
    if (isMine(merged)) {
      state.requested.delete(at);
      state.requested.delete(rid);
      scheduleRenewal(at);
    }
  } else {
    clearLock(rid);
  }
}

function clearLock(rid) {
  state.locks.delete(rid);
  cancelRenewal(rid);
}

function onLockAcquired(ev = {}) {
  const rid = ev.resourceId;
  if (!rid || !ev.holder) return;
  noteServerTime(ev.acquiredAt);
  const wasRequested = state.requested.has(rid);
  const hadIt = isMine(state.locks.get(rid));
  setLock(rid, ev);
  const key = tabKeyOf(rid);
  if (isMine(ev) && !hadIt && wasRequested) {
    // the hand-off: the holder released and the lock came to us
    dismiss(`requested:${rid}`);
    notify({ key: `granted:${rid}`, kind: 'success',
      text: `You can edit ${key ? tabOf(key).title : 'the report'} now.` });
    if (key === state.activeKey) focusEditorSoon();
  }
  syncRooms();
  render();
}

function onLockDenied(ev = {}) {
  const rid = ev.resourceId;
  if (!rid || !ev.holder) return;
  const holderRid = ev.holderResourceId || rid;
  setLock(holderRid, { resourceId: holderRid, holder: ev.holder, expiresAt: ev.expiresAt });
  const key = tabKeyOf(rid);
  const where = holderRid === docId ? ' (the whole report is locked)' : '';
  notify({ key: `denied:${rid}`, kind: 'warning',
    text: `${ev.holder.username} is editing ${key ? tabOf(key).title : 'this'}${where} until ${clock(ev.expiresAt)}. `
      + 'Use "Request edit" to ask for it.' });
  render();
}

function onLockReleased(ev = {}) {
  const rid = ev.resourceId;
  if (!rid) return;
  noteServerTime(ev.releasedAt);
  const lock = state.locks.get(rid);
  // ours, whether or not the ack of our lock:release came first
  const wasMine = isMine(lock) || (isMyUser(ev.previousHolder) && state.ownEnds.has(rid));
  state.ownEnds.delete(rid);
  clearLock(rid);
  dismiss(`request-from:${rid}`);
  dismiss(`suspended:${rid}`);
  const key = tabKeyOf(rid);
  const title = key ? tabOf(key).title : 'the report';
  const who = ev.previousHolder ? ev.previousHolder.username : 'Someone';
  if (wasMine) {
    if (ev.reason === 'forced') {
      notify({ key: `released:${rid}`, kind: 'warning', sticky: true,
        text: `An administrator released your lock on ${title}.`
          + (key && tabOf(key).dirty ? ' Your unsaved text is still here but can no longer be saved.' : '') });
    }
  } else if (key === state.activeKey || rid === docId || state.requested.has(rid)) {
    const why = RELEASE_REASONS[ev.reason] || ev.reason || 'released';
    notify({ key: `released:${rid}`, kind: 'info',
      text: isMyUser(ev.previousHolder)
        ? `Your lock on ${title} from another connection was released (${why}).`
        : `${who} released ${title} (${why}).` });
  }
  syncRooms();
  render();
}

function onLockExpired(ev = {}) {
  const rid = ev.resourceId;
  if (!rid) return;
  noteServerTime(ev.expiredAt);
  const wasMine = isMine(state.locks.get(rid));
  clearLock(rid);
  dismiss(`suspended:${rid}`);
  const key = tabKeyOf(rid);
  const title = key ? tabOf(key).title : 'the report';
  if (wasMine) {
    notify({ key: `expired:${rid}`, kind: 'warning', sticky: true,
      text: `Your editing lock on ${title} expired at ${clock(ev.expiredAt)}.`
        + (key && tabOf(key).dirty ? ' Your unsaved text is still here: click Edit to take the lock again, then Save.' : '') });
  } else if (key === state.activeKey || rid === docId || state.requested.has(rid)) {
    const who = ev.previousHolder ? ev.previousHolder.username : 'Someone';
    notify({ key: `expired:${rid}`, kind: 'info',
      text: `The editing lock of ${who} on ${title} expired.${state.requested.has(rid) ? ' It is free: use Edit to take it.' : ''}` });
  }
  // an expired lock is not handed on: a request for it is over
  if (state.requested.delete(rid)) dismiss(`requested:${rid}`);
  syncRooms();
  render();
}

/** Whose lock it is, as a notice names them. */
function holderName(ref) {
  return isMyUser(ref) ? `${ref.username} (you, on another connection)` : ref.username;
}

function onLockSuspended(ev = {}) {
  const rid = ev.resourceId;
  if (!rid || !ev.holder) return;
  const old = state.locks.get(rid);
  // our own lock, in the events a recovered session missed: we are back
  if (isMine(old) && state.connected) return;
  setLock(rid, { ...(old || {}), resourceId: rid, holder: ev.holder, expiresAt: ev.expiresAt, suspendedUntil: ev.until });
  const key = tabKeyOf(rid);
  if (key === state.activeKey || rid === docId || state.requested.has(rid)) {
    notify({ key: `suspended:${rid}`, kind: 'warning', sticky: true,
      text: `${holderName(ev.holder)} lost connection; their lock on ${key ? tabOf(key).title : 'the report'} is kept until ${clock(ev.until, { seconds: true })}.` });
  }
  render();
}

function onLockResumed(ev = {}) {
  const rid = ev.resourceId;
  if (!rid || !ev.holder) return;
  const old = state.locks.get(rid) || {};
  const lock = { ...old, resourceId: rid, holder: ev.holder, expiresAt: ev.expiresAt };
  delete lock.suspendedUntil;
  setLock(rid, lock);
  const hadNotice = notices.has(`suspended:${rid}`);
  dismiss(`suspended:${rid}`);
  if (hadNotice && !isMine(state.locks.get(rid))) {
    const key = tabKeyOf(rid);
    notify({ key: `resumed:${rid}`, kind: 'info',
      text: `${holderName(ev.holder)} is back and keeps editing ${key ? tabOf(key).title : 'the report'}.` });
  }
  render();
}

function onLockRequested(ev = {}) {
  const rid = ev.resourceId;
  if (!rid || !ev.requester) return;
  noteServerTime(ev.requestedAt);
  const key = tabKeyOf(rid);
  const title = key ? tabOf(key).title : 'the report';
  const dirty = key ? tabOf(key).dirty : false;
  // our lock may be the whole document's, covering the tab asked for
  const held = [rid, docId].find((r) => isMine(state.locks.get(r))) || rid;
  const actions = dirty
    ? [
      { label: 'Save and release', testid: 'notice-save-release', primary: true, run: () => saveAndRelease(rid, held) },
      { label: 'Release without saving', testid: 'notice-release', run: () => release(held) },
      { label: 'Keep editing', testid: 'notice-keep', run: () => {} },
    ]
    : [
      { label: 'Release', testid: 'notice-release', primary: true, run: () => release(held) },
      { label: 'Keep editing', testid: 'notice-keep', run: () => {} },
    ];
  notify({ key: `request-from:${rid}`, kind: 'request', sticky: true,
    text: `${ev.requester.username} asks to edit ${title}.`, actions });
}

/* ------------------------------------------------------------------- saves */

function onDocSaved(ev = {}) {
  const key = tabKeyOf(ev.resourceId);
  if (!key) return;
  noteServerTime(ev.savedAt);
  const t = tabOf(key);
  const mine = isMine(lockFor(key));
  if (!(typeof t.version === 'number' && ev.version < t.version)) {
    t.version = ev.version;
    t.savedBy = ev.savedBy || null;
    t.savedAt = ev.savedAt || null;
  }
  if (!mine && key === state.activeKey) {
    const who = ev.savedBy ? ev.savedBy.username : 'Someone';
    notify({ key: `saved:${ev.resourceId}`, kind: 'info',
      text: typeof ev.restoredFrom === 'number'
        ? `${who} restored version ${ev.restoredFrom} of ${t.title} at ${clock(ev.savedAt)}: it is version ${ev.version} now.`
        : `A new version (${ev.version}) of ${t.title} was saved by ${ev.savedBy ? ev.savedBy.username : 'someone'} at ${clock(ev.savedAt)}.` });
  }
  historyOnSaved(ev);
  render();
}

function saveFailureHint(code) {
  switch (code) {
    case 'TIMEOUT':
      return ' It may or may not have reached the server: check the version shown, then save again if needed.';
    case 'VERSION_CONFLICT':
      return ' A newer version was saved before you took the lock.';
    case 'LOCK_EXPIRED':
    case 'LOCK_NOT_HELD':
      return ' You no longer hold the lock; your text is still here.';
    default:
      return '';
  }
}

async function save(rid, { replace = false } = {}) {
  const key = tabKeyOf(rid);
  const t = tabOf(key);
  const lock = lockFor(key);
  if (!isMine(lock) || t.busy) return false;
  t.busy = true;
  render();
  const content = t.text;
  const payload = { resourceId: rid, content, token: lock.token };
  // the version this page last saw: a save by anyone else since then is a conflict
  if (typeof t.version === 'number' && !replace) payload.baseVersion = t.version;
  const ack = await emit('doc:save', payload);
  t.busy = false;
  if (ack.ok) {
    t.version = ack.version;
    t.textVersion = ack.version;
    t.savedBy = { ...state.me };
    t.savedAt = new Date(serverNow()).toISOString();
    if (t.text === content) t.dirty = false;
    dismiss(`save-failed:${rid}`);
    notify({ key: `saved:${rid}`, kind: 'success', text: `${t.title}: version ${ack.version} saved.` });
    renew(lock.resourceId || rid); // the save renewed the lock on the server: learn the new expiry
  } else {
    const code = ack.error && ack.error.code;
    const hint = saveFailureHint(code);
    const actions = code === 'VERSION_CONFLICT' && isMine(lockFor(key))
      ? [{ label: 'Replace it with my text', testid: 'notice-replace', run: () => save(rid, { replace: true }) }]
      : [];
    notify({ key: `save-failed:${rid}`, kind: 'error', sticky: true, actions,
      text: `${t.title}: ${code === 'TIMEOUT' ? 'the save was not confirmed' : 'not saved'}. ${errorText(ack)}.${hint}` });
    if (code === 'LOCK_EXPIRED' || code === 'LOCK_NOT_HELD') clearLock(lock.resourceId || rid);
  }
  render();
  return ack.ok;
}

/* -------------------------------------------------------- lock commands */

async function acquire(rid) {
  const ack = await emit('lock:acquire', { resourceId: rid });
  if (ack.ok) {
    dismiss(`denied:${rid}`);
    setLock(rid, ack.lock);
    focusEditorSoon();
  } else if (ack.error && ack.error.code === 'LOCK_HELD') {
    if (ack.lock) setLock(ack.lock.resourceId || rid, ack.lock);
    // the lock:denied event tells the user who holds it
  } else {
    notify({ key: `acquire:${rid}`, kind: 'error', text: `Could not start editing: ${errorText(ack)}` });
  }
  await syncRooms();
  render();
}

async function request(rid) {
  const key = tabKeyOf(rid);
  const title = key ? tabOf(key).title : 'the report';
  const ack = await emit('lock:request', { resourceId: rid });
  if (!ack.ok) {
    notify({ key: `request:${rid}`, kind: 'error', text: `Could not ask for ${title}: ${errorText(ack)}` });
  } else if (ack.requested) {
    state.requested.add(rid);
    if (ack.lock) setLock(ack.lock.resourceId || rid, ack.lock);
    const holder = ack.lock && ack.lock.holder ? ack.lock.holder.username : 'the editor';
    dismiss(`denied:${rid}`);
    notify({ key: `requested:${rid}`, kind: 'info', sticky: true,
      text: `You asked ${holder} for ${title}. You will get the lock as soon as it is released.` });
  } else if (ack.lock) {
    // the lock was free and is ours
    setLock(rid, ack.lock);
    notify({ key: `granted:${rid}`, kind: 'success', text: `You can edit ${title} now.` });
    focusEditorSoon();
  }
  await syncRooms();
  render();
}

async function release(rid) {
  state.ownEnds.add(rid);
  const ack = await emit('lock:release', { resourceId: rid });
  dismiss(`request-from:${rid}`);
  if (ack.ok) {
    // the events that followed the ack (on long-polling, in the same answer)
    // ran before this line: a hand-off's lock:acquired is not ours to clear
    if (isMine(state.locks.get(rid))) clearLock(rid);
  } else {
    state.ownEnds.delete(rid);
    notify({ key: `release:${rid}`, kind: 'error', text: `Could not release: ${errorText(ack)}` });
    if (ack.error && (ack.error.code === 'LOCK_NOT_HELD' || ack.error.code === 'LOCK_EXPIRED')) clearLock(rid);
  }
  await syncRooms();
  render();
}

async function saveAndRelease(rid, lockRid = rid) {
  if (await save(rid)) await release(lockRid);
}

/* ----------------------------------------------------------------- renewals */

const renewTimers = new Map();

function scheduleRenewal(rid) {
  cancelRenewal(rid);
  const lock = state.locks.get(rid);
  if (!isMine(lock)) return;
  const left = Date.parse(lock.expiresAt) - serverNow();
  // every minute, or sooner when the lock's TTL is short
  const wait = Number.isFinite(left) ? Math.max(1000, Math.min(RENEW_EVERY_MS, left / 2)) : RENEW_EVERY_MS;
  renewTimers.set(rid, setTimeout(() => renew(rid), wait));
}

function cancelRenewal(rid) {
  clearTimeout(renewTimers.get(rid));
  renewTimers.delete(rid);
}

function stopRenewals() {
  for (const rid of [...renewTimers.keys()]) cancelRenewal(rid);
}

async function renew(rid) {
  const lock = state.locks.get(rid);
  if (!isMine(lock)) return;
  const ack = await emit('lock:renew', { resourceId: rid });
  if (ack.ok && ack.lock && !isMine(state.locks.get(rid))) {
    // released or expired by an event that came with the ack: not ours any more
  } else if (ack.ok && ack.lock) {
    setLock(rid, { ...ack.lock, token: ack.lock.token ?? lock.token });
  } else if (ack.error && (ack.error.code === 'LOCK_EXPIRED' || ack.error.code === 'LOCK_NOT_HELD')) {
    clearLock(rid);
    const key = tabKeyOf(rid);
    notify({ key: `expired:${rid}`, kind: 'warning', sticky: true,
      text: `You no longer hold the lock on ${key ? tabOf(key).title : 'the report'} (${ack.error.code}).`
        + (key && tabOf(key).dirty ? ' Your unsaved text is still here.' : '') });
    syncRooms();
  } else {
    scheduleRenewal(rid); // offline or slow: try again later
  }
  render();
}

/* ----------------------------------------------------------------- notices */

const notices = new Map(); // key -> { node, timer }

function notify({ key, kind = 'info', text, actions = [], sticky = false }) {
  dismiss(key);
  const node = el('div', {
    class: `notice notice--${kind}`,
    'data-testid': 'notice',
    'data-kind': kind,
    'data-key': key,
    role: kind === 'error' ? 'alert' : undefined,
  });
  node.append(el('p', { class: 'text', 'data-testid': 'notice-text', text }));
  if (actions.length) {
    node.append(el('div', { class: 'notice-actions' }, actions.map((a) => el('button', {
      type: 'button',
      class: a.primary ? 'primary' : undefined,
      'data-testid': a.testid,
      text: a.label,
      onclick: () => { dismiss(key); a.run(); },
    }))));
  }
  node.append(el('button', {
    type: 'button', class: 'dismiss', 'aria-label': 'Dismiss notification', 'data-testid': 'notice-dismiss',
    text: '×', onclick: () => dismiss(key),
  }));
  const container = $('[data-testid="notices"]');
  container.prepend(node);
  const timer = sticky ? null : setTimeout(() => dismiss(key), NOTICE_LINGER_MS);
  notices.set(key, { node, timer });
  // keep the list short: drop the oldest non-sticky ones
  const all = [...notices.entries()];
  for (const [k, n] of all.slice(0, Math.max(0, all.length - 6))) if (n.timer) dismiss(k);
}

function dismiss(key) {
  const n = notices.get(key);
  if (!n) return;
  clearTimeout(n.timer);
  n.node.remove();
  notices.delete(key);
}

/* ------------------------------------------------------------------ access */

/** May this user edit the tab? Its own join says; until then, the report's (grants inherit). */
function mayEdit(key) {
  const p = state.permissions.get(tabId(key)) || state.permissions.get(docId);
  return Boolean(p) && p.includes('edit');
}

/** Are the permissions of the tab known (a join acknowledged them)? */
function permissionsKnown(key) {
  return state.permissions.has(tabId(key)) || state.permissions.has(docId);
}

function titleOf(rid) {
  const key = tabKeyOf(rid);
  return key ? tabOf(key).title : 'this report';
}

function onAccessChanged({ resourceId, permissions } = {}) {
  if (!resourceId || !Array.isArray(permissions)) return;
  const before = state.permissions.get(resourceId) || [];
  state.permissions.set(resourceId, permissions);
  const could = before.includes('edit');
  const can = permissions.includes('edit');
  if (can && !could) {
    notify({ key: `access:${resourceId}`, kind: 'success', text: `You may now edit ${titleOf(resourceId)}.` });
  } else if (could && !can && permissions.includes('view')) {
    notify({ key: `access:${resourceId}`, kind: 'warning', sticky: true,
      text: `You may no longer edit ${titleOf(resourceId)}: it is view only for you now.` });
  }
  render();
}

/** The page forgets what it showed of a resource it may no longer view. */
function onAccessRevoked({ resourceId } = {}) {
  if (!resourceId) return;
  const whole = resourceId === docId;
  state.rooms.delete(resourceId);
  state.permissions.delete(resourceId);
  for (const t of state.tabs.values()) {
    if (whole || t.id === resourceId) {
      t.text = '';
      t.textVersion = null;
      t.version = null;
      t.savedBy = null;
      t.savedAt = null;
      t.dirty = false;
    }
  }
  for (const key of [...state.presence.keys()]) {
    const rid = key.slice(key.indexOf('|') + 1);
    if (whole || rid === resourceId) state.presence.delete(key);
  }
  for (const rid of [...state.locks.keys()]) if (whole || rid === resourceId) state.locks.delete(rid);
  if (whole) {
    state.withdrawn = true;
    state.rooms.clear();
    state.permissions.clear();
    stopRenewals();
    // one notice says it all
    for (const key of [...notices.keys()]) if (key.startsWith('access:')) dismiss(key);
  }
  $('#editor').dataset.tabKey = '';
  if (whole || !state.withdrawn) {
    notify({ key: whole ? 'withdrawn' : `access:${resourceId}`, kind: 'error', sticky: true,
      text: whole ? 'Your access to this report was withdrawn.' : `Your access to ${titleOf(resourceId)} was withdrawn.` });
  }
  render();
}

function onServerError(ev = {}) {
  notify({ key: `error:${ev.code}:${ev.resourceId || ''}`, kind: 'error',
    text: `${ev.message || 'Error'}${ev.code ? ` (${ev.code})` : ''}` });
}

/* ------------------------------------------------------------------ render */

function avatarList(people, { max = 8, editingUserId = null, tag = 'li' } = {}) {
  const items = people.slice(0, max).map((p) => {
    const me = isMyUser(p);
    const editing = editingUserId && p.userId === editingUserId;
    const label = `${p.username}${me ? ' (you)' : ''}${editing ? ', editing' : ''}`;
    return el(tag, {
      class: `avatar ${colourClass(p.userId)}${me ? ' me' : ''}${editing ? ' editing' : ''}`,
      'data-testid': 'avatar',
      'data-user-id': p.userId,
      'data-name': label,
    }, el('span', { 'aria-hidden': 'true', text: initials(p.username) }),
    el('span', { class: 'visually-hidden', text: label }));
  });
  if (people.length > max) {
    const rest = people.slice(max).map((p) => p.username).join(', ');
    items.push(el(tag, { class: 'avatar more', 'data-name': rest },
      el('span', { 'aria-hidden': 'true', text: `+${people.length - max}` }),
      el('span', { class: 'visually-hidden', text: rest })));
  }
  return items;
}

function renderMe() {
  $('[data-testid="me"]').textContent = state.me.username ? `Signed in as ${state.me.username}` : '';
}

function lockSummary(key) {
  const lock = lockFor(key);
  if (!lock) return { state: 'free', short: '', long: 'Available — nobody is editing' };
  const whole = lock.resourceId === docId || (!state.locks.get(tabId(key)) && state.locks.get(docId));
  if (isMine(lock)) {
    return { state: 'mine', holder: lock.holder.username,
      short: 'You',
      long: whole ? `${lock.holder.username} (you) has the whole report` : `${lock.holder.username} (you) is editing` };
  }
  const who = holderName(lock.holder);
  if (lock.suspendedUntil) {
    return { state: 'held', holder: lock.holder.username,
      short: lock.holder.username,
      long: `${who} lost connection; ${whole ? 'the whole report' : 'the lock'} is kept until ${clock(lock.suspendedUntil, { seconds: true })}` };
  }
  return { state: 'held', holder: lock.holder.username,
    short: lock.holder.username,
    long: whole ? `Whole report locked by ${who}` : `${who} is editing` };
}

const tabNodes = new Map(); // key -> { button, lock, avatars }

/** The tab strip, updated in place (buttons keep focus and identity). */
function renderTabs() {
  const strip = $('[data-testid="tabs"]');
  for (const t of state.tabs.values()) {
    let n = tabNodes.get(t.key);
    if (!n) {
      // a button holds phrasing content only: spans, with one spoken summary
      n = {
        lock: el('span', { class: 'tab-lock', 'data-testid': `tab-lock-${t.key}` }),
        avatars: el('span', { class: 'avatars small', 'data-testid': `tab-presence-${t.key}` }),
        summary: el('span', { class: 'visually-hidden' }),
      };
      n.button = el('button', {
        type: 'button', role: 'tab', class: 'tab', id: `tab-${t.key}`,
        'data-testid': `tab-${t.key}`, 'data-tab-key': t.key, 'aria-controls': 'panel',
        onclick: () => selectTab(t.key), onkeydown: onTabKey,
      }, el('span', { class: 'tab-title', text: t.title }), n.summary,
      el('span', { class: 'tab-meta', 'aria-hidden': 'true' }, n.lock, n.avatars));
      strip.append(n.button);
      tabNodes.set(t.key, n);
    }
    n.button.hidden = t.missing;
    const selected = t.key === state.activeKey;
    n.button.setAttribute('aria-selected', selected ? 'true' : 'false');
    n.button.tabIndex = selected ? 0 : -1;
    const sum = lockSummary(t.key);
    n.lock.dataset.state = sum.state;
    n.lock.replaceChildren(...(sum.state === 'free' ? [] : [icon(sum.state === 'mine' ? 'pencil' : 'lock'), sum.short]));
    n.lock.title = sum.state === 'free' ? '' : sum.long;
    const people = peopleIn(t.id, false);
    n.avatars.replaceChildren(...avatarList(people, { max: 3, tag: 'span', editingUserId: lockFor(t.key)?.holder?.userId }));
    n.summary.textContent = `, ${sum.state === 'free' ? 'nobody is editing' : sum.long}, `
      + `${people.length} ${people.length === 1 ? 'person' : 'people'} here`;
  }
}

function onTabKey(e) {
  const keys = [...state.tabs.values()].filter((t) => !t.missing).map((t) => t.key);
  const i = keys.indexOf(e.currentTarget.dataset.tabKey);
  let next = null;
  if (e.key === 'ArrowRight') next = keys[(i + 1) % keys.length];
  else if (e.key === 'ArrowLeft') next = keys[(i - 1 + keys.length) % keys.length];
  else if (e.key === 'Home') next = keys[0];
  else if (e.key === 'End') next = keys[keys.length - 1];
  if (next) {
    e.preventDefault();
    selectTab(next);
    const b = document.getElementById(`tab-${next}`);
    if (b) b.focus();
  }
}

function renderPanel() {
  const t = tabOf(state.activeKey);
  const lock = lockFor(t.key);
  const mine = isMine(lock);
  const held = Boolean(lock) && !mine;
  const joined = state.rooms.get(t.id) === 'joined';
  const online = state.connected && joined;

  $('#panel').setAttribute('aria-labelledby', `tab-${t.key}`);
  $('[data-testid="panel-title"]').textContent = t.title;

  const badge = $('[data-testid="lock-badge"]');
  const sum = lockSummary(t.key);
  badge.dataset.state = online ? sum.state : 'unknown';
  badge.dataset.holder = sum.holder || '';
  badge.replaceChildren(
    icon(sum.state === 'free' ? 'unlock' : sum.state === 'mine' ? 'pencil' : 'lock'),
    el('span', { class: 'holder', 'data-testid': 'lock-holder',
      text: online ? sum.long : state.withdrawn ? 'No access' : 'Loading…' }),
    ' ', // for textContent and screen readers; a flex container does not render it
    el('span', { class: 'time', 'data-testid': 'lock-time' }),
  );
  renderCountdown();

  $('[data-testid="presence-tab"]').replaceChildren(
    ...avatarList(peopleIn(t.id, false), { editingUserId: lock?.holder?.userId }));

  const editor = $('#editor');
  // the text of another tab, or the stored text loaded (or restored) since
  if (editor.dataset.tabKey !== t.key || (!t.dirty && editor.value !== t.text)) {
    editor.dataset.tabKey = t.key;
    editor.value = t.text;
  }
  editor.readOnly = !(mine && online);
  editor.setAttribute('aria-readonly', editor.readOnly ? 'true' : 'false');
  $('#editor-label').textContent = `Text of ${t.title}`;

  $('[data-testid="content-note"]').textContent = contentNote(t, mine);

  const show = (id, visible, enabled = true) => {
    const b = $(`[data-testid="${id}"]`);
    b.hidden = !visible;
    b.disabled = !enabled;
  };
  const waiting = state.requested.has(t.id);
  const editable = mayEdit(t.key);
  // view only: said once permissions are known, and no way to ask for the lock
  $('[data-testid="view-only"]').hidden = editable || state.withdrawn || !permissionsKnown(t.key);
  show('btn-edit', !lock && editable, online);
  show('btn-request', held && editable, online && !waiting);
  $('[data-testid="btn-request"]').textContent = waiting ? 'Edit requested' : 'Request edit';
  show('btn-save', mine, online && !t.busy);
  $('[data-testid="btn-save"]').textContent = t.busy ? 'Saving…' : 'Save';
  show('btn-release', mine, online && !t.busy);

  $('[data-testid="version"]').textContent = versionLine(t);
}

function contentNote(t, mine) {
  const newer = typeof t.version === 'number' && t.version !== t.textVersion;
  if (state.withdrawn) return 'You may no longer view this report.';
  if (mine) {
    if (t.textVersion === null) {
      return 'You are editing. Saving replaces this section with the text below.';
    }
    return newer
      ? `Version ${t.version} was saved after your copy (version ${t.textVersion}); saving replaces it with the text below.`
      : 'You are editing. Save often; the lock renews itself while this page is open.';
  }
  if (t.textVersion === null) {
    return t.dirty
      ? 'Read only. The text below is your unsaved draft; it was not saved.'
      : 'Read only. Loading the saved text…';
  }
  if (newer) {
    return `Read only. A newer version (${t.version}) exists; the text below is version ${t.textVersion}. Open the tab again to load the new one.`;
  }
  return t.dirty
    ? 'Read only. The text below includes changes you did not save.'
    : `Read only. The text below is version ${t.textVersion}.`;
}

function versionLine(t) {
  if (typeof t.version !== 'number') return 'No saves seen since this page opened';
  const by = t.savedBy ? ` by ${isMyUser(t.savedBy) ? 'you' : t.savedBy.username}` : '';
  const at = t.savedAt ? ` at ${clock(t.savedAt)}` : '';
  return `Version ${t.version} · saved${by}${at}`;
}

function renderPresence() {
  $('[data-testid="presence-document"]').replaceChildren(...avatarList(peopleIn(docId, true), { max: 10 }));
}

let renderQueued = false;
function render() {
  if (renderQueued) return;
  renderQueued = true;
  queueMicrotask(() => {
    renderQueued = false;
    renderTabs();
    renderPanel();
    renderPresence();
    renderHistory();
  });
}

/** The time left on the lock of the tab on screen (every second). */
function renderCountdown() {
  const node = $('[data-testid="lock-time"]');
  if (!node) return;
  const lock = lockFor(state.activeKey);
  const online = state.connected && state.rooms.get(tabId(state.activeKey)) === 'joined';
  // a suspended lock ends with its grace, or its TTL if that comes first
  const end = lock ? Math.min(Date.parse(lock.expiresAt), Date.parse(lock.suspendedUntil ?? lock.expiresAt)) : NaN;
  const left = end - serverNow();
  node.textContent = online && Number.isFinite(left) ? `· ${formatLeft(left)}` : '';
  node.classList.toggle('soon', Number.isFinite(left) && left < 60_000);
}

function tick() {
  renderCountdown();
}

function focusEditorSoon() {
  setTimeout(() => {
    const editor = $('#editor');
    if (!editor.readOnly) editor.focus();
  }, 0);
}

/* ---------------------------------------------------------------- controls */

function selectTab(key) {
  if (key === state.activeKey) return;
  state.previousKey = state.activeKey;
  state.activeKey = key;
  const p = new URLSearchParams(location.search);
  p.set('tab', key);
  history.replaceState(null, '', `${location.pathname}?${p}${location.hash}`);
  render();
  syncRooms();
}

function wireControls() {
  const editor = $('#editor');
  editor.addEventListener('input', () => {
    const t = tabOf(editor.dataset.tabKey);
    if (!isMine(lockFor(t.key))) return;
    t.text = editor.value;
    t.dirty = true;
    render();
  });
  editor.addEventListener('keydown', (e) => {
    if ((e.ctrlKey || e.metaKey) && e.key === 's') {
      e.preventDefault();
      save(tabId(state.activeKey));
    }
  });
  $('[data-testid="btn-edit"]').addEventListener('click', () => acquire(tabId(state.activeKey)));
  $('[data-testid="btn-request"]').addEventListener('click', () => request(tabId(state.activeKey)));
  $('[data-testid="btn-save"]').addEventListener('click', () => save(tabId(state.activeKey)));
  $('[data-testid="btn-release"]').addEventListener('click', () => {
    const rid = tabId(state.activeKey);
    const lock = lockFor(state.activeKey);
    const target = lock && lock.resourceId ? lock.resourceId : rid;
    const t = tabOf(state.activeKey);
    if (t.dirty) {
      notify({ key: `confirm-release:${target}`, kind: 'warning', sticky: true,
        text: `${t.title} has unsaved changes.`,
        actions: [
          { label: 'Save and release', testid: 'notice-save-release', primary: true, run: () => saveAndRelease(rid, target) },
          { label: 'Release without saving', testid: 'notice-release', run: () => release(target) },
          { label: 'Keep editing', testid: 'notice-keep', run: () => {} },
        ] });
      return;
    }
    release(target);
  });
  window.addEventListener('beforeunload', (e) => {
    if ([...state.tabs.values()].some((t) => t.dirty && isMine(lockFor(t.key)))) {
      e.preventDefault();
      e.returnValue = '';
    }
  });
}

/* ----------------------------------------------------------- history panel */
//
// The revisions of the tab on screen (doc:history, newest first, a page at a
// time), two of them compared line by line and word by word (diff.js, their
// contents read with doc:revision), and, for the lock holder, a restore: a
// doc:save of an earlier version's content naming it in restoredFrom, which
// the room's doc:saved announces. Reading history needs the view permission
// only, so every reader sees it; only the holder is offered Restore.

const HISTORY_PAGE = 10;
const DIFF_CONTEXT = 2;     // unchanged lines shown around a change

const histories = new Map(); // tab key -> History

function historyOf(key) {
  let h = histories.get(key);
  if (!h) {
    h = {
      items: new Map(),     // version -> { version, savedBy, savedAt, size, restoredFrom? }
      nextBefore: null,     // the before of the next older page, null when there is none
      epoch: -1,            // the connection it was loaded on
      loading: false,
      error: null,
      again: false,         // load the newest page again when this load is done
      selected: [],         // up to two versions, in the order they were picked
      contents: new Map(),  // version -> content (revisions are immutable)
      diff: null,           // { from, to, rows } or { from, to, error }
    };
    histories.set(key, h);
  }
  return h;
}

/** Loads the newest page (merged with what is shown), or with older, the next older one. */
async function loadHistory(key, { older = false } = {}) {
  const h = historyOf(key);
  if (!state.connected) return;
  if (h.loading) {
    // a save while a page was on its way: the newest page once more after it
    if (!older) h.again = true;
    return;
  }
  const epoch = state.epoch;
  h.loading = true;
  renderHistory();
  const payload = { resourceId: tabId(key), limit: HISTORY_PAGE };
  if (older) payload.before = h.nextBefore;
  const ack = await emit('doc:history', payload);
  h.loading = false;
  if (epoch !== state.epoch) {
    h.again = false;
    render();
    return;
  }
  if (!ack.ok || !Array.isArray(ack.revisions)) {
    // not again on this connection unless asked (a save, Show older)
    h.error = errorText(ack);
    if (h.epoch !== epoch) h.items.clear();
    h.epoch = epoch;
    h.again = false;
    render();
    return;
  }
  h.error = null;
  const newest = Math.max(-1, ...h.items.keys());
  const oldestNew = Math.min(Infinity, ...ack.revisions.map((r) => r.version));
  if (!older && (h.epoch !== epoch || !h.items.size || (oldestNew > newest + 1 && ack.nextBefore !== null))) {
    // a first load, or more saves since than a page holds: start over
    h.items.clear();
    h.nextBefore = ack.nextBefore;
  } else if (older) {
    h.nextBefore = ack.nextBefore;
  }
  for (const r of ack.revisions) h.items.set(r.version, r);
  h.epoch = epoch;
  render();
  if (h.again) {
    h.again = false;
    loadHistory(key);
  }
}

/** A tab was saved: the newest page again if it is on screen, else when it is shown next. */
function historyOnSaved(ev) {
  const key = tabKeyOf(ev.resourceId);
  const h = key ? histories.get(key) : null;
  if (!h) return;
  if (key === state.activeKey && h.epoch === state.epoch) loadHistory(key);
  else h.epoch = -1;
}

async function revisionContent(key, version) {
  const h = historyOf(key);
  if (h.contents.has(version)) return { ok: true, content: h.contents.get(version) };
  const ack = await emit('doc:revision', { resourceId: tabId(key), version });
  if (!ack.ok || !ack.revision || typeof ack.revision.content !== 'string') return { ok: false, error: errorText(ack) };
  h.contents.set(version, ack.revision.content);
  return { ok: true, content: ack.revision.content };
}

function toggleCompare(key, version, on) {
  const h = historyOf(key);
  h.selected = h.selected.filter((v) => v !== version);
  if (on) h.selected.push(version);
  if (h.selected.length > 2) h.selected = h.selected.slice(-2);
  h.diff = null;
  if (h.selected.length === 2) showDiff(key);
  render();
}

async function showDiff(key) {
  const h = historyOf(key);
  const [from, to] = [...h.selected].sort((x, y) => x - y);
  h.diff = { from, to, loading: true };
  render();
  const [a, b] = await Promise.all([revisionContent(key, from), revisionContent(key, to)]);
  const still = h.selected.length === 2 && Math.min(...h.selected) === from && Math.max(...h.selected) === to;
  if (!still) return;
  h.diff = a.ok && b.ok
    ? { from, to, rows: diffTexts(a.content, b.content) }
    : { from, to, error: a.ok ? b.error : a.error };
  render();
}

/** The holder saves an earlier version's content again, naming it. */
async function restoreVersion(key, version, { confirmed = false } = {}) {
  const t = tabOf(key);
  const lock = lockFor(key);
  if (!isMine(lock) || t.busy) return;
  if (t.dirty && !confirmed) {
    notify({ key: `confirm-restore:${t.id}`, kind: 'warning', sticky: true,
      text: `${t.title} has unsaved changes. Restoring version ${version} replaces them.`,
      actions: [
        { label: `Restore version ${version}`, testid: 'notice-restore', primary: true, run: () => restoreVersion(key, version, { confirmed: true }) },
        { label: 'Keep my text', testid: 'notice-keep', run: () => {} },
      ] });
    return;
  }
  t.busy = true;
  render();
  const old = await revisionContent(key, version);
  if (!old.ok) {
    t.busy = false;
    notify({ key: `restore-failed:${t.id}`, kind: 'error', text: `Could not read version ${version}: ${old.error}` });
    render();
    return;
  }
  const payload = { resourceId: t.id, content: old.content, token: lock.token, restoredFrom: version };
  if (typeof t.version === 'number') payload.baseVersion = t.version;
  const ack = await emit('doc:save', payload);
  t.busy = false;
  if (ack.ok) {
    t.text = old.content;
    t.textVersion = ack.version;
    t.version = ack.version;
    t.dirty = false;
    t.savedBy = { ...state.me };
    t.savedAt = new Date(serverNow()).toISOString();
    dismiss(`restore-failed:${t.id}`);
    notify({ key: `saved:${t.id}`, kind: 'success', text: `${t.title}: version ${version} restored as version ${ack.version}.` });
    renew(lock.resourceId || t.id);
  } else {
    const code = ack.error && ack.error.code;
    notify({ key: `restore-failed:${t.id}`, kind: 'error', sticky: true,
      text: `${t.title}: version ${version} was not restored. ${errorText(ack)}.${saveFailureHint(code)}` });
    if (code === 'LOCK_EXPIRED' || code === 'LOCK_NOT_HELD') clearLock(lock.resourceId || t.id);
  }
  render();
}

const historyTimeFmt = new Intl.DateTimeFormat(undefined, {
  day: 'numeric', month: 'short', hour: '2-digit', minute: '2-digit', second: '2-digit',
});
function historyTime(iso) {
  const t = Date.parse(iso);
  return Number.isFinite(t) ? historyTimeFmt.format(new Date(t - state.skewMs)) : '';
}

const authorOf = (r) => (r && r.savedBy ? r.savedBy.username : 'unknown');

let historyDrawn = '';
let diffDrawn = null;

function renderHistory() {
  const node = $('[data-testid="history"]');
  if (!node) return;
  // nothing of a report whose access was withdrawn stays on screen
  node.hidden = state.withdrawn;
  if (state.withdrawn) return;
  const t = tabOf(state.activeKey);
  const h = historyOf(t.key);
  if (state.connected && state.rooms.get(docId) === 'joined' && h.epoch !== state.epoch && !h.loading && !t.missing) {
    queueMicrotask(() => loadHistory(t.key));
  }
  const mine = isMine(lockFor(t.key)) && state.connected;
  const items = [...h.items.values()].sort((x, y) => y.version - x.version);
  // redrawn only when something shown changed, so that focus stays put
  const drawn = JSON.stringify([t.key, items.map((r) => r.version), h.selected, mine, t.busy, t.version,
    h.nextBefore, h.loading, h.error, state.connected]);
  if (drawn !== historyDrawn) {
    historyDrawn = drawn;
    $('#history-title').textContent = `History of ${t.title}`;
    const focused = document.activeElement && document.activeElement.dataset ? document.activeElement.dataset.focusKey : null;
    const list = $('[data-testid="history-list"]');
    list.replaceChildren(...items.map((r) => historyItem(t, r, h, mine)));
    if (focused) {
      const again = list.querySelector(`[data-focus-key="${focused}"]`);
      if (again) again.focus();
    }
    const more = $('[data-testid="history-more"]');
    more.hidden = h.nextBefore === null || h.nextBefore === undefined || !items.length;
    more.disabled = h.loading || !state.connected;
    let status = '';
    if (h.error) status = `The history could not be read: ${h.error}`;
    else if (h.loading && !items.length) status = 'Loading the history…';
    else if (!items.length && h.epoch === state.epoch) status = 'No saved versions yet.';
    $('[data-testid="history-status"]').textContent = status;
    $('[data-testid="history-hint"]').textContent = !items.length ? ''
      : h.selected.length === 0 ? 'Select two versions to compare them.'
        : h.selected.length === 1 ? `Select one more version to compare with version ${h.selected[0]}.`
          : `Comparing version ${Math.min(...h.selected)} with version ${Math.max(...h.selected)}.`;
  }
  renderDiff(t, h);
}

function historyItem(t, r, h, mine) {
  const current = r.version === t.version;
  const picked = h.selected.includes(r.version);
  const label = `Version ${r.version}, ${authorOf(r)}, ${historyTime(r.savedAt)}`;
  const box = el('input', {
    type: 'checkbox', 'data-testid': 'history-select', 'data-focus-key': `select-${r.version}`,
    'aria-label': `Compare ${label}`, checked: picked,
    onchange: (e) => toggleCompare(t.key, r.version, e.currentTarget.checked),
  });
  const tags = [];
  if (typeof r.restoredFrom === 'number') {
    tags.push(el('span', { class: 'history-tag', 'data-testid': 'history-restored', text: `restored from ${r.restoredFrom}` }));
  }
  if (current) tags.push(el('span', { class: 'history-tag history-tag--current', text: 'current' }));
  const restore = mine && !current
    ? el('button', {
      type: 'button', class: 'history-restore', 'data-testid': 'history-restore', 'data-focus-key': `restore-${r.version}`,
      'aria-label': `Restore version ${r.version}`, text: 'Restore', disabled: t.busy,
      onclick: () => restoreVersion(t.key, r.version),
    })
    : null;
  return el('li', {
    class: `history-item${picked ? ' picked' : ''}`, 'data-testid': 'history-item', 'data-version': r.version,
  },
  el('label', { class: 'history-pick' }, box,
    el('span', { class: 'history-meta' },
      el('span', { class: 'history-line' },
        el('span', { class: 'history-version', 'data-testid': 'history-version', text: `Version ${r.version}` }), ...tags),
      el('span', { class: 'history-by' },
        el('span', { class: 'history-author', 'data-testid': 'history-author', text: authorOf(r) }),
        el('span', { 'aria-hidden': 'true', text: ' · ' }),
        el('time', { class: 'history-time', 'data-testid': 'history-time', datetime: r.savedAt, text: historyTime(r.savedAt) })))),
  restore);
}

function renderDiff(t, h) {
  const box = $('[data-testid="history-diff"]');
  if (!box || diffDrawn === h.diff) return;
  diffDrawn = h.diff;
  const d = h.diff;
  box.hidden = !d;
  const body = $('[data-testid="diff-body"]');
  if (!d) {
    body.replaceChildren();
    return;
  }
  const who = (v) => {
    const r = h.items.get(v);
    return r ? ` (${authorOf(r)}, ${historyTime(r.savedAt)})` : '';
  };
  $('[data-testid="diff-title"]').textContent = `Changes from version ${d.from} to version ${d.to}`;
  $('[data-testid="diff-versions"]').textContent = `Version ${d.from}${who(d.from)} → version ${d.to}${who(d.to)}`;
  if (d.loading) {
    body.replaceChildren(el('p', { class: 'diff-note', text: 'Loading both versions…' }));
  } else if (d.error) {
    body.replaceChildren(el('p', { class: 'diff-note', text: `The versions could not be read: ${d.error}` }));
  } else if (!d.rows.some((r) => r.kind !== 'same')) {
    body.replaceChildren(el('p', { class: 'diff-note', 'data-testid': 'diff-same', text: 'The two versions have the same text.' }));
  } else {
    body.replaceChildren(...diffRows(d.rows));
  }
}

/** The rows of a diff as lines, long unchanged stretches folded. */
function diffRows(rows) {
  const near = rows.map(() => false);
  rows.forEach((r, i) => {
    if (r.kind === 'same') return;
    for (let j = Math.max(0, i - DIFF_CONTEXT); j <= Math.min(rows.length - 1, i + DIFF_CONTEXT); j++) near[j] = true;
  });
  const out = [];
  for (let i = 0; i < rows.length; i++) {
    if (!near[i]) {
      let j = i;
      while (j < rows.length && !near[j]) j++;
      const n = j - i;
      out.push(el('div', { class: 'diff-line diff-line--fold', text: `⋯ ${n} unchanged ${n === 1 ? 'line' : 'lines'}` }));
      i = j - 1;
      continue;
    }
    out.push(diffLine(rows[i]));
  }
  return out;
}

function diffLine(r) {
  const sign = { same: ' ', del: '−', add: '+', mod: '±' }[r.kind];
  const said = { same: '', del: 'removed line: ', add: 'added line: ', mod: 'changed line: ' }[r.kind];
  const text = el('span', { class: 'diff-text' });
  if (r.kind === 'mod') {
    for (const p of r.parts) {
      if (p.op === '=') text.append(p.text);
      else text.append(el(p.op === '-' ? 'del' : 'ins', { 'data-testid': p.op === '-' ? 'diff-del' : 'diff-ins', text: p.text }));
    }
  } else if (r.kind === 'del') {
    text.append(el('del', { 'data-testid': 'diff-del', text: r.text || ' ' }));
  } else if (r.kind === 'add') {
    text.append(el('ins', { 'data-testid': 'diff-ins', text: r.text || ' ' }));
  } else {
    text.append(r.text || ' ');
  }
  return el('div', { class: `diff-line diff-line--${r.kind}`, 'data-testid': `diff-${r.kind}-line` },
    el('span', { class: 'diff-sign', 'aria-hidden': 'true', text: sign }),
    said ? el('span', { class: 'visually-hidden', text: said }) : null,
    text);
}

function wireHistory() {
  $('[data-testid="history-more"]').addEventListener('click', () => loadHistory(state.activeKey, { older: true }));
  $('[data-testid="diff-clear"]').addEventListener('click', () => {
    const h = historyOf(state.activeKey);
    h.selected = [];
    h.diff = null;
    render();
  });
}

start();
