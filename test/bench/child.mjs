// A child process of a benchmark's load generator (test/bench/ab/ab.mjs,
// test/bench/ws/loadgen.mjs), spoken to by IPC messages { cmd, ... }: next(cmd)
// resolves with the next message of that cmd, call() sends one and waits for
// the reply. A child that reports { cmd: 'error' } or exits fails every wait.
import { fork } from 'node:child_process';

export class Child {
  /**
   * script: the path to fork; name: how errors name it; env: added to the
   * environment; registry: a Set that holds the child while it lives.
   */
  constructor(script, { name = script, env = {}, registry = null } = {}) {
    this.name = name;
    this.registry = registry;
    this.queue = [];     // messages nobody waited for yet
    this.waiters = [];   // { cmd, resolve, reject, timer }
    this.proc = fork(script, [], { serialization: 'advanced', env: { ...process.env, ...env } });
    this.proc.on('message', (m) => {
      if (m.cmd === 'error') {
        this.failed = new Error(`${name}: ${m.message}`);
        for (const w of this.waiters.splice(0)) { clearTimeout(w.timer); w.reject(this.failed); }
        return;
      }
      const k = this.waiters.findIndex((w) => w.cmd === m.cmd);
      if (k >= 0) { const [w] = this.waiters.splice(k, 1); clearTimeout(w.timer); w.resolve(m); } else this.queue.push(m);
    });
    this.proc.on('exit', (code) => {
      registry?.delete(this);
      const err = new Error(`${name} exited (${code})`);
      for (const w of this.waiters.splice(0)) { clearTimeout(w.timer); w.reject(err); }
    });
    registry?.add(this);
  }

  next(cmd, timeoutMs = 60000) {
    if (this.failed) return Promise.reject(this.failed);
    const k = this.queue.findIndex((m) => m.cmd === cmd);
    if (k >= 0) return Promise.resolve(this.queue.splice(k, 1)[0]);
    return new Promise((resolve, reject) => {
      const w = { cmd, resolve, reject };
      w.timer = setTimeout(() => {
        this.waiters.splice(this.waiters.indexOf(w), 1);
        reject(Object.assign(new Error(`${this.name}: no '${cmd}' within ${timeoutMs} ms`), { timeout: true }));
      }, timeoutMs);
      this.waiters.push(w);
    });
  }

  call(msg, reply, timeoutMs) {
    const p = this.next(reply, timeoutMs);
    this.proc.send(msg);
    return p;
  }

  kill() {
    this.registry?.delete(this);
    this.proc.kill();
  }
}
