// Line and word differences between two versions of a text, for the history
// panel of the demo UI (app.js). No dependencies: Myers' O(ND) algorithm
// ("An O(ND) Difference Algorithm and Its Variations", 1986) on lines, then on
// the words of the lines that changed.
//
//   diffTexts(older, newer) -> [{ kind, ... }]   (see below)
//
// The result is a list of rows, in the order of the texts:
//   { kind: 'same', text }                   a line in both
//   { kind: 'del', text }                    a line only in the older text
//   { kind: 'add', text }                    a line only in the newer text
//   { kind: 'mod', parts: [{ op, text }] }   a line changed in place: op '=' in
//                                            both, '-' removed, '+' added
// Joining the 'same', 'del' and the '=' and '-' parts of 'mod' rows gives the
// older text back; 'same', 'add' and '=' and '+' parts give the newer one.

/** Beyond this many differences (memory grows with their square), the middle of two texts is shown as replaced whole. */
const MAX_EDITS = 2000;

/**
 * The edit script from a to b (arrays of strings): [op, item] with op '='
 * (in both), '-' (only in a) or '+' (only in b), in order.
 */
export function diffSequences(a, b) {
  let start = 0;
  while (start < a.length && start < b.length && a[start] === b[start]) start++;
  let endA = a.length;
  let endB = b.length;
  while (endA > start && endB > start && a[endA - 1] === b[endB - 1]) { endA--; endB--; }
  const mid = myers(a.slice(start, endA), b.slice(start, endB));
  return [
    ...a.slice(0, start).map((x) => ['=', x]),
    ...mid,
    ...a.slice(endA).map((x) => ['=', x]),
  ];
}

function myers(a, b) {
  const n = a.length;
  const m = b.length;
  if (n === 0 || m === 0) return [...a.map((x) => ['-', x]), ...b.map((x) => ['+', x])];
  const max = Math.min(n + m, MAX_EDITS);
  const offset = max + 1;
  const v = new Int32Array(2 * max + 3);
  // trace[d]: the furthest x of each diagonal k in [-d, d] before round d
  const trace = [];
  for (let d = 0; d <= max; d++) {
    trace.push(v.slice(offset - d, offset + d + 1));
    for (let k = -d; k <= d; k += 2) {
      let x = (k === -d || (k !== d && v[offset + k - 1] < v[offset + k + 1])) ? v[offset + k + 1] : v[offset + k - 1] + 1;
      let y = x - k;
      while (x < n && y < m && a[x] === b[y]) { x++; y++; }
      v[offset + k] = x;
      if (x >= n && y >= m) return backtrack(trace, a, b);
    }
  }
  // too different to be worth aligning: all of a replaced by all of b
  return [...a.map((x) => ['-', x]), ...b.map((x) => ['+', x])];
}

function backtrack(trace, a, b) {
  const ops = [];
  let x = a.length;
  let y = b.length;
  for (let d = trace.length - 1; d >= 0; d--) {
    const v = trace[d];
    const at = (k) => v[k + d];
    const k = x - y;
    const prevK = (k === -d || (k !== d && at(k - 1) < at(k + 1))) ? k + 1 : k - 1;
    const prevX = d === 0 ? 0 : at(prevK);
    const prevY = d === 0 ? 0 : prevX - prevK;
    while (x > prevX && y > prevY) { ops.push(['=', a[x - 1]]); x--; y--; }
    if (d > 0) {
      if (x === prevX) ops.push(['+', b[y - 1]]);
      else ops.push(['-', a[x - 1]]);
    }
    x = prevX;
    y = prevY;
  }
  return ops.reverse();
}

/** Words, runs of white space and single other characters (punctuation). */
export function tokens(line) {
  return line.match(/[\p{L}\p{M}\p{N}_]+|\s+|[^\p{L}\p{M}\p{N}_\s]/gu) || [];
}

/**
 * The word differences of one changed line: parts [{ op, text }], adjacent
 * parts of one kind merged. White space between two changes counts as
 * changed, so that "a b" -> "c d" reads as one replacement, not two.
 */
export function diffWords(older, newer) {
  const ops = diffSequences(tokens(older), tokens(newer));
  for (let i = 1; i < ops.length - 1; i++) {
    if (ops[i][0] === '=' && /^\s+$/.test(ops[i][1]) && ops[i - 1][0] !== '=' && ops[i + 1][0] !== '=') {
      ops.splice(i, 1, ['-', ops[i][1]], ['+', ops[i][1]]);
    }
  }
  // within each run of changes, what was removed, then what was added
  const parts = [];
  let del = '';
  let add = '';
  const flush = () => {
    if (del) parts.push({ op: '-', text: del });
    if (add) parts.push({ op: '+', text: add });
    del = '';
    add = '';
  };
  for (const [op, text] of ops) {
    if (op === '-') del += text;
    else if (op === '+') add += text;
    else {
      flush();
      const last = parts[parts.length - 1];
      if (last && last.op === '=') last.text += text;
      else parts.push({ op: '=', text });
    }
  }
  flush();
  return parts;
}

/** How much of two lines is the same, 0 to 1, by the characters of their unchanged words. */
function likeness(parts) {
  let same = 0;
  let all = 0;
  for (const p of parts) {
    const n = p.text.trim().length;
    all += n;
    if (p.op === '=') same += 2 * n;
  }
  return all === 0 ? 1 : same / (all + same / 2);
}

/** The rows of the differences from older to newer (see the top of this file). */
export function diffTexts(older, newer) {
  const ops = diffSequences(older.split('\n'), newer.split('\n'));
  const rows = [];
  for (let i = 0; i < ops.length;) {
    if (ops[i][0] === '=') {
      rows.push({ kind: 'same', text: ops[i][1] });
      i++;
      continue;
    }
    // a run of removed and added lines: lines that mostly stay the same are
    // shown changed in place, word by word; the others removed or added whole
    const dels = [];
    const adds = [];
    for (; i < ops.length && ops[i][0] !== '='; i++) (ops[i][0] === '-' ? dels : adds).push(ops[i][1]);
    const pairs = Math.min(dels.length, adds.length);
    let pendingDel = [];
    let pendingAdd = [];
    const flush = () => {
      for (const text of pendingDel) rows.push({ kind: 'del', text });
      for (const text of pendingAdd) rows.push({ kind: 'add', text });
      pendingDel = [];
      pendingAdd = [];
    };
    for (let j = 0; j < Math.max(dels.length, adds.length); j++) {
      if (j < pairs) {
        const parts = diffWords(dels[j], adds[j]);
        if (likeness(parts) >= 0.4) {
          flush();
          rows.push({ kind: 'mod', parts });
          continue;
        }
      }
      if (j < dels.length) pendingDel.push(dels[j]);
      if (j < adds.length) pendingAdd.push(adds[j]);
    }
    flush();
  }
  return rows;
}

/** The older (side '-') or newer (side '+') text that rows describe. */
export function sideOf(rows, side) {
  const lines = [];
  for (const r of rows) {
    if (r.kind === 'same') lines.push(r.text);
    else if (r.kind === 'del' && side === '-') lines.push(r.text);
    else if (r.kind === 'add' && side === '+') lines.push(r.text);
    else if (r.kind === 'mod') lines.push(r.parts.filter((p) => p.op === '=' || p.op === side).map((p) => p.text).join(''));
  }
  return lines.join('\n');
}
