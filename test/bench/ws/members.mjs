// Child process of loadgen.mjs and ../ab/ab.mjs: passive room members on
// WebSocket (LiteClient connections), measured by member-room.mjs.
import { LiteClient } from './lite-client.mjs';
import { serveMembers } from './member-room.mjs';

const URL_ = process.env.COLLAB_WS_URL;

serveMembers({
  secret: process.env.COLLAB_JWT_SECRET,
  childNo: Number(process.env.BENCH_CHILD_NO || 0),
  sub: 'member',
  name: 'Member',
  connect: (token, onEvent) => new LiteClient(URL_, token, onEvent),
  closeDelayMs: 200,
});
