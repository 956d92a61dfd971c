// A minimal Socket.IO v5 / Engine.IO v4 client over the `ws` package, for the
// benchmark's passive room members.
//
// socket.io-client does a lot of per-packet work (engine.io decoding, a
// socket.io decoder state machine, JSON.parse of every payload, emitter
// dispatch); with 1000 clients in one Node process that work would be
// measured instead of the server.  This client speaks the same wire protocol
// (open packet, `40{auth}` CONNECT, `2`/`3` heartbeat, `42[...]` events,
// `42<id>[...]` / `43<id>[...]` acks) but leaves the payloads as strings: the
// caller parses only what it needs.  The measuring clients (the joiner, the
// lock and save clients) use the real socket.io-client.
import WebSocket from 'ws';

export class LiteClient {
  /**
   * @param {string} url     http(s)://host:port of the worker
   * @param {string} token   the JWT
   * @param {(raw: string, t: bigint) => void} [onEvent]  every `42[...]` event,
   *        raw text and the hrtime at which the message was handed to JS
   */
  constructor(url, token, onEvent) {
    this.url = url.replace(/^http/, 'ws').replace(/\/+$/, '') + '/socket.io/?EIO=4&transport=websocket';
    this.token = token;
    this.onEvent = onEvent || (() => {});
    this.id = null;
    this.nextAck = 1;
    this.acks = new Map();
    this.ws = null;
    this.closed = false;
  }

  connect(timeoutMs = 30000) {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => { reject(new Error('connect timeout')); this.close(); }, timeoutMs);
      const ws = new WebSocket(this.url, { perMessageDeflate: false });
      this.ws = ws;
      ws.on('message', (data, isBinary) => {
        const t = process.hrtime.bigint();
        if (isBinary) return;
        const s = data.toString();
        const c0 = s.charCodeAt(0);
        if (c0 === 0x32 /* '2' ping */ && s.length === 1) { ws.send('3'); return; }
        if (c0 === 0x30 /* '0' open */) { ws.send('40' + JSON.stringify({ token: this.token })); return; }
        if (c0 !== 0x34 /* '4' message */) return;
        const c1 = s.charCodeAt(1);
        if (c1 === 0x32 /* '2' EVENT */) { this.onEvent(s, t); return; }
        if (c1 === 0x33 /* '3' ACK */) {
          let i = 2;
          while (i < s.length && s.charCodeAt(i) >= 0x30 && s.charCodeAt(i) <= 0x39) i++;
          const id = Number(s.slice(2, i));
          const cb = this.acks.get(id);
          if (cb) { this.acks.delete(id); cb(s.slice(i), t); }
          return;
        }
        if (c1 === 0x30 /* '0' CONNECT */) {
          clearTimeout(timer);
          this.id = JSON.parse(s.slice(2)).sid;
          resolve(this);
          return;
        }
        if (c1 === 0x34 /* '4' CONNECT_ERROR */) {
          clearTimeout(timer);
          reject(new Error('connect_error ' + s.slice(2)));
        }
      });
      ws.on('error', (e) => { clearTimeout(timer); reject(e); });
      ws.on('close', () => {
        this.closed = true;
        for (const cb of this.acks.values()) cb(null);
        this.acks.clear();
      });
    });
  }

  /** Emits an event with an ack; resolves with the raw ack array text (`[{...}]`). */
  emit(event, payload, timeoutMs = 30000) {
    return new Promise((resolve, reject) => {
      const id = this.nextAck++;
      const timer = setTimeout(() => { this.acks.delete(id); reject(new Error(`${event}: no ack`)); }, timeoutMs);
      this.acks.set(id, (raw) => {
        clearTimeout(timer);
        if (raw === null) reject(new Error(`${event}: connection closed`));
        else resolve(raw);
      });
      this.ws.send(`42${id}` + JSON.stringify([event, payload]));
    });
  }

  close() {
    if (this.ws && !this.closed) this.ws.close();
  }
}
