// Child process of ab.mjs, a drop-in replacement for ../ws/members.mjs (the
// same IPC messages): the passive room members live in one members.c process
// (plain sockets and epoll), which this process drives over stdin/stdout
// lines.  It mints the tokens and relays the per-round receipt times.
//
// The receive times are CLOCK_MONOTONIC nanoseconds taken by the C process
// right after the read that delivered the frame, the clock of Node's
// process.hrtime.bigint().  cpuUs includes the C process's CPU (its
// getrusage, reported with every `done` and `cpu` line) and this process's.
//
// Environment: COLLAB_WS_URL, COLLAB_JWT_SECRET, BENCH_CHILD_NO as for
// members.mjs; AB_MEMBERS_BIN the compiled members.c (run.sh builds it; when
// unset it is compiled here with gcc into a temporary directory);
// AB_MEMBERS_TRANSPORT the members' transport, websocket (default) or poll
// (Engine.IO long-polling, the C counterpart of members-poll.mjs).
import { spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import { makeToken } from '../ws/token.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const SECRET = process.env.COLLAB_JWT_SECRET;
const childNo = Number(process.env.BENCH_CHILD_NO || 0);
const url = new URL(process.env.COLLAB_WS_URL);
const transport = process.env.AB_MEMBERS_TRANSPORT || 'websocket';
if (transport !== 'websocket' && transport !== 'poll') throw new Error(`AB_MEMBERS_TRANSPORT: ${transport} (websocket or poll)`);

let bin = process.env.AB_MEMBERS_BIN;
let tmpDir = null;
if (!bin) {
  tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'ab-members-'));
  bin = path.join(tmpDir, 'members');
  execFileSync('gcc', ['-O2', '-Wall', '-o', bin, path.join(HERE, 'members.c')], { stdio: 'inherit' });
}

const c = spawn(bin, [url.hostname, url.port || '80', transport], { stdio: ['pipe', 'pipe', 'inherit'] });
let members = 0;
let armed = null;     // { round, kind, cpu0 }
let closing = false;
let disarmRound = null;
const send = (line) => c.stdin.write(line + '\n');
const ownCpu = () => { const u = process.cpuUsage(); return u.user + u.system; };

c.on('exit', (code, sig) => {
  if (tmpDir) fs.rmSync(tmpDir, { recursive: true, force: true });
  if (!closing) process.send({ cmd: 'error', message: `members.c exited (${code ?? sig})` });
  process.exit(closing ? 0 : 1);
});

readline.createInterface({ input: c.stdout }).on('line', (line) => {
  const w = line.split(' ');
  switch (w[0]) {
    case 'grown':
      members = Number(w[1]);
      process.send({ cmd: 'grown', count: members, ms: Number(w[2]) });
      break;
    case 'armed':
      process.send({ cmd: 'armed', round: armed.round, kind: armed.kind });
      break;
    case 'done': {
      // done COUNT DUPES FIRST LAST TARM TDONE CPUUS ELU
      const a = armed;
      armed = null;
      const cUs = Number(w[7]);
      process.send({
        cmd: 'done', round: a.round, kind: a.kind, count: Number(w[1]), dupes: Number(w[2]),
        first: BigInt(w[3]), last: BigInt(w[4]), tArm: BigInt(w[5]), tDone: BigInt(w[6]),
        cpuUs: cUs + (ownCpu() - a.cpu0), cpuUsC: cUs, elu: Number(w[8]),
      });
      break;
    }
    case 'disarmed':
      armed = null;
      process.send({ cmd: 'disarmed', round: disarmRound, count: Number(w[1]), members: Number(w[2]) });
      break;
    case 'cpu':
      process.send({ cmd: 'cpu', us: Number(w[1]) + ownCpu(), usC: Number(w[1]), elu: null, stray: Number(w[2]) });
      break;
    case 'error':
      process.send({ cmd: 'error', message: 'members.c: ' + line.slice(6) });
      break;
    default:
      process.send({ cmd: 'error', message: 'members.c said: ' + line.slice(0, 300) });
  }
});

process.on('message', (msg) => {
  switch (msg.cmd) {
    case 'grow': {
      const lines = [];
      for (let i = members; i < msg.total; i++) {
        const n = msg.offset + i;
        lines.push('token ' + makeToken(SECRET, { sub: `member-${childNo}-${n}`, name: `Member ${childNo}.${n}` }));
      }
      lines.push(`grow ${msg.resourceId || '-'} ${msg.concurrency}`);
      send(lines.join('\n'));
      break;
    }
    case 'arm':
      armed = { round: msg.round, kind: msg.kind, cpu0: ownCpu() };
      send(`arm ${msg.kind} ${msg.connId}`);
      break;
    case 'disarm':
      disarmRound = msg.round;
      send('disarm');
      break;
    case 'cpu':
      send('cpu');
      break;
    case 'close':
      closing = true;
      send('close');
      break;
    default:
      process.send({ cmd: 'error', message: 'unknown command ' + msg.cmd });
  }
});
process.on('disconnect', () => { closing = true; c.kill(); });
process.send({ cmd: 'ready' });
