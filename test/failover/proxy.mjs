// A small TCP proxy for the failover drill: it stands in for a load
// balancer (in front of the workers, routing by health check), for a
// database address that a failover manager moves (in front of PostgreSQL),
// and for a replication link that can lag (between primary and standby).
import net from 'node:net';
import http from 'node:http';

export class Proxy {
  /** name: for messages; target: the port new connections go to (null: refused). */
  constructor(name, target = null) {
    this.name = name;
    this.target = target;
    this.pairs = new Set();
    this.paused = false;
    this.accepted = 0;
    this.refused = 0;
    this.server = net.createServer((client) => this.#accept(client));
  }

  listen() {
    return new Promise((resolve) => {
      this.server.listen(0, '127.0.0.1', () => {
        this.port = this.server.address().port;
        resolve(this.port);
      });
    });
  }

  /** New connections go to port (null: refused); open ones stay where they are. */
  setTarget(port) {
    this.target = port;
  }

  #accept(client) {
    client.setNoDelay(true);
    if (this.target === null) {
      this.refused += 1;
      client.destroy();
      return;
    }
    const upstream = net.connect({ host: '127.0.0.1', port: this.target });
    upstream.setNoDelay(true);
    const pair = { client, upstream };
    this.pairs.add(pair);
    this.accepted += 1;
    const forward = (from, to) => {
      from.on('data', (d) => {
        if (!to.write(d)) from.pause();
      });
      to.on('drain', () => {
        if (!this.paused) from.resume();
      });
    };
    forward(client, upstream);
    forward(upstream, client);
    if (this.paused) {
      client.pause();
      upstream.pause();
    }
    const close = () => {
      if (!this.pairs.delete(pair)) return;
      client.destroy();
      upstream.destroy();
    };
    for (const s of [client, upstream]) {
      s.on('error', close);
      s.on('close', close);
    }
  }

  /**
   * Stops forwarding in both directions: what the peers send stays in
   * socket buffers, undelivered (a link that lags).
   */
  pause() {
    this.paused = true;
    for (const { client, upstream } of this.pairs) {
      client.pause();
      upstream.pause();
    }
  }

  resume() {
    this.paused = false;
    for (const { client, upstream } of this.pairs) {
      client.resume();
      upstream.resume();
    }
  }

  /** Closes every open connection; undelivered data is dropped. */
  cutAll() {
    for (const { client, upstream } of [...this.pairs]) {
      client.destroy();
      upstream.destroy();
    }
    this.pairs.clear();
  }

  close() {
    this.cutAll();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

/** GET http://127.0.0.1:port/healthz: { status, body } or { error }. */
export function healthz(port, timeoutMs = 500) {
  return new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port, path: '/healthz', timeout: timeoutMs }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => { body += d; });
      res.on('end', () => {
        let json = null;
        try { json = JSON.parse(body); } catch { /* not JSON */ }
        resolve({ status: res.statusCode, body: json ?? body });
      });
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', (e) => resolve({ error: e.code ?? e.message }));
  });
}

/**
 * A load balancer: a Proxy whose target is the first backend whose
 * /healthz answers 200, checked every intervalMs.  onSwitch(port, at) is
 * called when the target changes.
 */
export class HealthRoutedProxy extends Proxy {
  constructor(name, backends, intervalMs, onSwitch = () => {}) {
    super(name, null);
    this.backends = backends;
    this.intervalMs = intervalMs;
    this.onSwitch = onSwitch;
    this.checks = 0;
  }

  async check() {
    this.checks += 1;
    const results = await Promise.all(this.backends.map((p) => healthz(p, this.intervalMs)));
    const i = results.findIndex((r) => r.status === 200);
    const target = i < 0 ? null : this.backends[i];
    if (target !== this.target) {
      this.setTarget(target);
      this.onSwitch(target, results);
    }
    return results;
  }

  start() {
    const loop = async () => {
      if (this.stopped) return;
      await this.check();
      this.timer = setTimeout(loop, this.intervalMs);
    };
    return loop();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
  }
}
