// The soak test's lightweight Socket.IO v5 / Engine.IO v4 client over the
// `ws` package, so that one Node process can hold thousands of connections
// (the same approach as test/bench/ws/lite-client.mjs), plus what a soak
// needs to tell a healthy run from a broken one: a chosen local (source)
// address, so that 10,000 connections and their churn do not run out of
// ephemeral ports; a report of every close the client did not ask for, of
// every `error` event and of every server DISCONNECT; acks as parsed objects.
import WebSocket from 'ws';

export class SoakClient {
  /**
   * @param {string} url        http://host:port of the worker
   * @param {string} token      the JWT
   * @param {object} opts
   * @param {string} [opts.localAddress]  source address (127.0.0.x)
   * @param {(kind: string, detail: string) => void} opts.onProblem  an
   *        unexpected close, `error` event or server DISCONNECT
   * @param {(name: string, payload: any) => void} [opts.onEvent]  events
   *        the caller wants parsed (names in opts.parse)
   * @param {Set<string>} [opts.parse]
   */
  constructor(url, token, opts) {
    this.url = url.replace(/^http/, 'ws').replace(/\/+$/, '') + '/socket.io/?EIO=4&transport=websocket';
    this.token = token;
    this.localAddress = opts.localAddress;
    this.onProblem = opts.onProblem;
    this.onEvent = opts.onEvent || (() => {});
    this.parse = opts.parse || new Set();
    this.nextAck = 1;
    this.acks = new Map();
    this.ws = null;
    this.connected = false;
    this.closing = false;   // we asked for the close
    this.closedPromise = null;
  }

  connect(timeoutMs) {
    return new Promise((resolve, reject) => {
      let settled = false;
      const settle = (err) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        if (err) reject(err); else resolve();
      };
      const timer = setTimeout(() => { settle(new Error('connect timeout')); this.close(); }, timeoutMs);
      const ws = new WebSocket(this.url, { perMessageDeflate: false, localAddress: this.localAddress });
      this.ws = ws;
      this.closedPromise = new Promise((res) => ws.once('close', res));
      ws.on('message', (data, isBinary) => {
        if (isBinary) { this.onProblem('binary', 'binary frame from the server'); return; }
        const s = data.toString();
        const c0 = s.charCodeAt(0);
        if (c0 === 0x32 /* '2' ping */) { ws.send('3'); return; }
        if (c0 === 0x30 /* '0' open */) { ws.send('40' + JSON.stringify({ token: this.token })); return; }
        if (c0 === 0x31 /* '1' close */) { this.onProblem('eio_close', 'Engine.IO close from the server'); return; }
        if (c0 !== 0x34 /* '4' message */) return;
        const c1 = s.charCodeAt(1);
        if (c1 === 0x32 /* '2' EVENT */) {
          // 42["name",...]: parse the name cheaply, the payload only if wanted
          const end = s.indexOf('"', 4);
          const name = s.slice(4, end);
          if (name === 'error') { this.onProblem('error_event', s.slice(0, 300)); return; }
          if (this.parse.has(name)) this.onEvent(name, JSON.parse(s.slice(2))[1]);
          return;
        }
        if (c1 === 0x33 /* '3' ACK */) {
          let i = 2;
          while (i < s.length && s.charCodeAt(i) >= 0x30 && s.charCodeAt(i) <= 0x39) i++;
          const id = Number(s.slice(2, i));
          const cb = this.acks.get(id);
          if (cb) { this.acks.delete(id); cb(JSON.parse(s.slice(i))[0]); }
          else this.onProblem('stray_ack', s.slice(0, 100));
          return;
        }
        if (c1 === 0x30 /* '0' CONNECT */) { this.connected = true; settle(); return; }
        if (c1 === 0x34 /* '4' CONNECT_ERROR */) { settle(new Error('connect_error ' + s.slice(2, 300))); return; }
        if (c1 === 0x31 /* '1' DISCONNECT */) { this.onProblem('sio_disconnect', 'server DISCONNECT'); return; }
      });
      ws.on('error', (e) => {
        if (!settled) settle(e);
        else if (!this.closing) this.onProblem('ws_error', String(e && e.message || e));
      });
      ws.on('close', (code) => {
        const wasConnected = this.connected;
        this.connected = false;
        if (!settled) settle(new Error('closed during the handshake (' + code + ')'));
        else if (!this.closing && wasConnected) this.onProblem('unexpected_close', 'closed by the server, code ' + code);
        for (const cb of this.acks.values()) cb(null);
        this.acks.clear();
      });
    });
  }

  /** Emits with an ack; resolves with the ack object, or null if the connection closed. */
  emit(event, payload, timeoutMs) {
    if (!this.connected) return Promise.resolve(null);
    return new Promise((resolve, reject) => {
      const id = this.nextAck++;
      const timer = setTimeout(() => {
        this.acks.delete(id);
        reject(new Error(`${event}: no ack within ${timeoutMs} ms`));
      }, timeoutMs);
      this.acks.set(id, (ack) => { clearTimeout(timer); resolve(ack); });
      this.ws.send(`42${id}` + JSON.stringify([event, payload]));
    });
  }

  /**
   * Closes the connection (expected) as socket.io-client's disconnect() does,
   * with a DISCONNECT first (a close without it is a lost connection, whose
   * locks the server keeps for a grace), and resolves once it is closed.
   */
  close() {
    this.closing = true;
    if (this.ws && this.ws.readyState === WebSocket.OPEN && this.connected) this.ws.send('41');
    if (this.ws && this.ws.readyState !== WebSocket.CLOSED) this.ws.close();
    return this.closedPromise || Promise.resolve();
  }
}
