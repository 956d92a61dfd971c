// One socket.io-client writer in its own process, so that the stress run can
// SIGSTOP it past its lease, SIGCONT it, or SIGKILL it.  Every record is
// appended to a file with a synchronous write before the step it describes
// goes on, so a SIGKILL loses no record of an operation already sent.
//
//   node child.mjs '<json config>'     (forked by stress.mjs, with IPC)
//
// IPC: the child sends {type: 'stall', ms} and waits; the parent SIGSTOPs
// it, SIGCONTs it ms later and sends {type: 'resumed'}.  {type: 'stop'} ends
// the run.
import fs from 'node:fs';
import { runWsClient, now } from './clients.mjs';

const cfg = JSON.parse(process.argv[2]);
const fd = fs.openSync(cfg.historyFile, 'a');
let stopping = false;
let resume = null;

process.on('message', (m) => {
  if (m.type === 'stop') stopping = true;
  if (m.type === 'resumed' && resume) { const r = resume; resume = null; r(); }
});
process.on('disconnect', () => { stopping = true; });

await runWsClient({
  ...cfg,
  stopping: () => stopping,
  rec: (x) => fs.writeSync(fd, JSON.stringify(x) + '\n'),
  stall: (ms) => new Promise((resolve) => {
    if (stopping || !process.connected) { resolve(); return; }
    resume = resolve;
    fs.writeSync(fd, JSON.stringify({ k: 'note', client: cfg.clientId, msg: `asks to be stopped for ${ms} ms`, t: now() }) + '\n');
    process.send({ type: 'stall', ms });
  }),
});
fs.closeSync(fd);
process.disconnect?.();
process.exit(0);
