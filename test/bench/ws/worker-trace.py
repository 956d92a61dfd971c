#!/usr/bin/env python3
"""Where a presence round's milliseconds go inside the collab worker.

Reads `perf script -F time,event,trace` output of the worker's syscalls during
the presence phase of loadgen.mjs, recorded with

  perf record -k mono -p <worker pid> -o trace.data -e 'syscalls:sys_enter_recvfrom,\
syscalls:sys_enter_read,syscalls:sys_enter_sendto,syscalls:sys_exit_sendto,\
syscalls:sys_enter_fdatasync,syscalls:sys_exit_fdatasync,syscalls:sys_enter_poll,\
syscalls:sys_exit_poll' -- sleep 8
  perf script -i trace.data -F time,event,trace > trace.txt
  python3 worker-trace.py trace.txt

A round starts when the worker reads the joiner's request (the one client
socket read over and over: the joiner joins and leaves in turn); then the
batch's commit (fdatasync of the WAL), the arrival of the committed event
(builds that LISTEN: libpq's 16 kB recvfrom() on the listener connection;
builds with the shared-memory event queue: the 8-byte read() of its eventfd),
and the fan-out: one sendto() per room member.  Prints per-stage p50/p90/max in ms, for joins and
leaves separately (the first request of the trace is taken to be a join if
its reply is the larger).
"""
import re
import sys
from collections import Counter, defaultdict

line_re = re.compile(r'^\s*(\d+\.\d+):\s+syscalls:(\w+):\s*(.*)$')
ev = []
for line in open(sys.argv[1]):
    m = line_re.match(line)
    if not m:
        continue
    t = float(m.group(1)) * 1000.0
    name = m.group(2)
    args = m.group(3)
    fd = None
    size = None
    fm = re.search(r'fd: 0x([0-9a-f]+)', args)
    if fm:
        fd = int(fm.group(1), 16)
    sm = re.search(r'(?:size|len|count): 0x([0-9a-f]+)', args)
    if sm:
        size = int(sm.group(1), 16)
    rm = re.search(r'^0x([0-9a-f]+)$', args.strip())
    ret = int(rm.group(1), 16) if rm else None
    ev.append((t, name, fd, size, ret))

reads = Counter((e[2], e[3]) for e in ev if e[1] == 'sys_enter_recvfrom')
libpq_fd = next((fd for (fd, size), _ in reads.most_common() if size == 16384), None)
efd = Counter(e[2] for e in ev if e[1] == 'sys_enter_read' and e[3] == 8).most_common(1)
event_fd = efd[0][0] if efd else None
joiner_fd = next((fd for (fd, size), _ in reads.most_common() if fd != libpq_fd), None)
print(f'libpq listener fd {libpq_fd}, event queue eventfd {event_fd}, joiner fd {joiner_fd}, {len(ev)} events')


def is_wake(e):
    return ((e[1] == 'sys_enter_recvfrom' and e[2] == libpq_fd and libpq_fd is not None) or
            (e[1] == 'sys_enter_read' and e[2] == event_fd and event_fd is not None))

starts = [i for i, e in enumerate(ev) if e[1] == 'sys_enter_recvfrom' and e[2] == joiner_fd]
rounds = []
for k, i in enumerate(starts[:-1]):
    seg = ev[i:starts[k + 1]]
    t0 = seg[0][0]
    r = {'t0': t0}
    fs = [e for e in seg if e[1] == 'sys_enter_fdatasync']
    fx = [e for e in seg if e[1] == 'sys_exit_fdatasync']
    nt = [e for e in seg if is_wake(e) and e[0] >= fx[0][0]] if fx else []
    if not fs or not fx or not nt:
        continue
    r['sql'] = fs[0][0] - t0                     # request read -> commit flush starts
    r['fsync'] = fx[0][0] - fs[0][0]
    r['to_notify'] = nt[0][0] - fx[0][0]         # flush done -> the worker reads the event
    tn = nt[0][0]
    sends = [e for e in seg if e[1] == 'sys_enter_sendto' and e[0] >= tn and e[2] != joiner_fd]
    if len(sends) < 10:
        continue
    # the exit of the last member send: the first sendto exit after its enter
    last_idx = seg.index(sends[-1])
    last_exit = next(e for e in seg[last_idx:] if e[1] == 'sys_exit_sendto')
    r['members'] = len(sends)
    r['notify_to_first_send'] = sends[0][0] - tn
    r['send_span'] = last_exit[0] - sends[0][0]  # first member send -> last member send returns
    # time inside sendto for member sends
    inside = 0.0
    last_enter = None
    for e in seg:
        if e[0] < tn:
            continue
        if e[1] == 'sys_enter_sendto' and e[2] != joiner_fd:
            last_enter = e[0]
        elif e[1] == 'sys_exit_sendto' and last_enter is not None:
            inside += e[0] - last_enter
            last_enter = None
    r['in_sendto'] = inside
    r['total'] = last_exit[0] - t0               # request read -> last member send returns
    polls_in = [e for e in seg if e[1] == 'sys_enter_poll']
    polls_out = [e for e in seg if e[1] == 'sys_exit_poll']
    r['polls'] = len(polls_in)
    # poll() calls that returned something ready: their duration is the scan, not waiting
    busy = 0.0
    pending = None
    for e in seg:
        if e[1] == 'sys_enter_poll':
            pending = e[0]
        elif e[1] == 'sys_exit_poll' and pending is not None:
            if e[4]:
                busy += e[0] - pending
            pending = None
    r['poll_scan'] = busy
    # a poll() that found work within 1 ms did not wait: its duration is the scan of every descriptor
    quick = []
    pending = None
    for e in seg:
        if e[1] == 'sys_enter_poll':
            pending = e[0]
        elif e[1] == 'sys_exit_poll' and pending is not None:
            if e[4] and e[0] - pending < 1.0:
                quick.append(e[0] - pending)
            pending = None
    r['poll_quick'] = sorted(quick)[len(quick) // 2] if quick else float('nan')
    r['joiner_bytes'] = sum(e[3] or 0 for e in seg if e[1] == 'sys_enter_sendto' and e[2] == joiner_fd)
    r['joiner_sends'] = sum(1 for e in seg if e[1] == 'sys_enter_sendto' and e[2] == joiner_fd)
    rounds.append(r)

if not rounds:
    sys.exit('no complete rounds found')
# joins carry the big users list to the joiner
big = max(r['joiner_bytes'] for r in rounds)
kinds = defaultdict(list)
for r in rounds:
    kinds['join' if r['joiner_bytes'] > big / 4 else 'leave'].append(r)


def pct(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, max(0, -(-int(p * len(v) * 1000) // 1000) - 1))]


keys = [('sql', 'request read -> commit flush starts (SQL of the batch)'),
        ('fsync', 'fdatasync of the commit'),
        ('to_notify', 'flush done -> event read (ack queued, poll)'),
        ('notify_to_first_send', 'event read -> first member send'),
        ('send_span', 'first -> last member send'),
        ('in_sendto', '  of which inside sendto()'),
        ('total', 'request read -> last member send'),
        ('poll_quick', 'one poll() that found work at once (median)'),
        ('polls', 'poll() calls in the round (count)'),
        ('members', 'member sends (count)'),
        ('joiner_sends', 'sends to the joiner (count)'),
        ('joiner_bytes', 'bytes to the joiner')]
for kind in ('join', 'leave'):
    rs = kinds[kind]
    if not rs:
        continue
    print(f'\n{kind}: {len(rs)} rounds')
    print(f'  {"stage":50s} {"p50":>10s} {"p90":>10s} {"max":>10s}')
    for k, label in keys:
        v = [r[k] for r in rs]
        fmt = (lambda x: f'{x:10.0f}') if k in ('polls', 'members', 'joiner_sends', 'joiner_bytes') else (lambda x: f'{x:10.3f}')
        print(f'  {label:50s} {fmt(pct(v, .5))} {fmt(pct(v, .9))} {fmt(max(v))}')
