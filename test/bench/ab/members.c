/*
 * members.c
 *		Passive room members for the A/B fan-out benchmark: one process
 *		holding many Socket.IO v5 / Engine.IO v4 WebSocket connections on
 *		plain sockets and epoll, timestamping the presence event each one
 *		receives.  Driven by members-c.mjs over stdin/stdout lines.  Also
 *		the lock phase's C client: one member timing lock round trips.
 *
 * A Node member process spends tens of microseconds of JavaScript per
 * received message; with hundreds of members per process the "last
 * receipt" would measure the load generator.  Here a received event costs
 * one read, a frame header, a prefix compare and a memmem.
 *
 * Usage: members HOST PORT [websocket|poll]
 *	websocket (default): one WebSocket connection per member.
 *	poll: Engine.IO HTTP long-polling, as a browser without WebSocket (and
 *	members-poll.mjs) does it: per member one keep-alive connection for its
 *	GETs, one GET waiting at all times, and another for its POSTs, one POST
 *	in flight at a time (packets sent meanwhile wait and leave together,
 *	joined by \x1e, as engine.io-client batches them).  An event's time is
 *	taken right after the read that completed the GET's answer carrying it.
 * Commands (stdin, one per line) and replies (stdout):
 *	token JWT						queue one member (no reply)
 *	grow RESOURCE|- CONCURRENCY		connect the queued members (and join them
 *									as viewers unless "-")
 *									-> grown COUNT MS
 *	arm KIND CONNID					-> armed; later, once every member got
 *									42["presence:KIND",...] with
 *									"connectionId": "CONNID" (a space or not):
 *									-> done COUNT DUPES FIRST LAST TARM TDONE CPUUS ELU
 *	disarm							-> disarmed COUNT MEMBERS
 *	lock RESOURCE N					the first member: N round trips of
 *									lock:acquire -> ack, lock:release -> ack
 *									-> locked A1 R1 A2 R2 ... (nanoseconds
 *									from the send to the read of each ack)
 *	refuse RESOURCE N				the same with N lock:acquire of a
 *									malformed RESOURCE, each refused without
 *									storage -> refused A1 A2 ...
 *	cpu								-> cpu CPUUS STRAY
 *	close							close every connection and exit (poll:
 *									first post every member's close packet
 *									and wait, at most 1 s, for the answers,
 *									so that the servers end the sessions now)
 * Times are CLOCK_MONOTONIC nanoseconds (Node's process.hrtime.bigint()),
 * taken right after the read that delivered the frame.  Any failure prints
 * "error MESSAGE" and exits 1 (in poll mode also every answer but 200);
 * MEMBERS_TRACE=1 copies every received packet to stderr.
 *
 * WebSocket (RFC 6455) client side: masked frames out; unmasked frames in,
 * 7/16/64-bit lengths, ping -> pong, close; fragmented messages are refused
 * (neither server under test sends them).
 *
 * HTTP/1.1 client side (poll): bodies by Content-Length (both servers' 200
 * answers), chunked (the baseline's errors: Node's writeHead() without a
 * length) or up to the close; a connection the server closes (both close
 * a keep-alive connection idle for 5 s) is opened again for the next
 * request, and a request whose reused connection closes before any byte
 * of its answer is sent again once on a new one, as browsers do.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum state
{
	S_TCP,						/* connect() in progress */
	S_HTTP,						/* upgrade sent, waiting for 101 */
	S_OPEN,						/* waiting for the Engine.IO open packet */
	S_CONNECT,					/* 40{auth} sent, waiting for 40{"sid"} */
	S_JOIN,						/* presence:join sent, waiting for its ack */
	S_READY						/* a member */
};

typedef struct conn
{
	int			fd;
	int			no;
	enum state	st;
	char	   *token;
	char	   *in;				/* received, not yet parsed */
	size_t		inlen,
				incap;
	char	   *out;			/* not yet written */
	size_t		outlen,
				outcap;
	int			want_out;		/* EPOLLOUT registered */
	long		seen;			/* arm sequence of the last counted event */

	/*
	 * poll mode: the member (in conns) is also its GET connection; its POST
	 * connection is a second conn, not in conns, whose member points back.
	 */
	int			http;			/* an HTTP connection of poll mode */
	struct conn *member;		/* the member this connection serves */
	struct conn *post;			/* the member's POST connection */
	char	   *sid;			/* the session id, URL-encoded */
	int			connecting;		/* connect() in progress */
	int			inreq;			/* a request sent, its answer not yet read */
	int			served;			/* answers read on this socket */
	char	   *req;			/* the request in flight, to send it again */
	size_t		reqlen,
				reqcap;
	size_t		hl;				/* header length of the answer being read, 0:
								 * its header is not complete */
	int			status;
	long long	clen;			/* Content-Length, -1: none */
	int			chunked;
	int			conn_close;		/* the server closes after this answer */
	char	   *pq;				/* packets waiting for the POST in flight,
								 * joined by \x1e */
	size_t		pqlen,
				pqcap;
	int			closewait;		/* close: its close packet not yet answered */
	int			pollreq;		/* req holds the GET of the session's polls */
} conn;

static const char *host, *port;
static struct addrinfo *addr;
static int	ep;

static conn **conns;
static int	nconns,
			capconns;
static int	nextpending;		/* first queued member not yet connecting */
static int	inflight;			/* members connecting */
static int	ready;				/* members in S_READY */
static int	growing;
static int	grow_conc;
static char *grow_rid;			/* NULL: idle connections */
static int64_t grow_t0;

/* the armed round */
static int	armed;
static long arm_seq;
static char arm_prefix[128];
static size_t arm_prefix_len;
static char arm_needle[256];
static size_t arm_needle_len;
static int	arm_count,
			arm_dupes;
static int64_t arm_first,
			arm_last,
			arm_t0;
static int64_t arm_cpu0,
			arm_idle0;
static long stray;

/* the lock probe: round trips of one member */
static conn *probe_c;
static char probe_rid[160];
static int	probe_refuse;		/* `refuse`: lock:acquire only, refused */
static int	probe_n,
			probe_i,
			probe_release;		/* 0: lock:acquire in flight, 1: lock:release */
static long probe_id = 1000;
static int64_t probe_t0;
static int64_t *probe_ms;		/* 2 per round trip: acquire, release (ns) */

static int64_t idle_ns;			/* time spent in epoll_wait */
static int	trace;				/* MEMBERS_TRACE=1: received packets to stderr */

/* poll mode */
static int	polling;
static char *chunkbuf;			/* a chunked body, decoded */
static size_t chunkcap;
static int	closing;			/* close: the close packets are on their way */
static int	close_pending;		/* members whose close packet is unanswered */
static int64_t close_deadline;

static uint64_t rng = 0x9e3779b97f4a7c15ULL;

static int64_t
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t) ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int64_t
cpu_us(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (int64_t) (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000 +
		ru.ru_utime.tv_usec + ru.ru_stime.tv_usec;
}

static void
reply(const char *fmt,...)
{
	va_list		ap;

	va_start(ap, fmt);
	vfprintf(stdout, fmt, ap);
	va_end(ap);
	fputc('\n', stdout);
	fflush(stdout);
}

static void
fail(const char *fmt,...)
{
	va_list		ap;

	fputs("error ", stdout);
	va_start(ap, fmt);
	vfprintf(stdout, fmt, ap);
	va_end(ap);
	fputc('\n', stdout);
	fflush(stdout);
	exit(1);
}

static void *
xrealloc(void *p, size_t n)
{
	p = realloc(p, n);
	if (p == NULL)
		fail("out of memory");
	return p;
}

static void
reserve(char **buf, size_t *cap, size_t need)
{
	if (need <= *cap)
		return;
	while (*cap < need)
		*cap = *cap ? *cap * 2 : 4096;
	*buf = xrealloc(*buf, *cap);
}

static void
set_events(conn *c, int out)
{
	struct epoll_event ev = {.events = EPOLLIN | (out ? EPOLLOUT : 0),.data.ptr = c};

	if (epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev) < 0)
		fail("epoll_ctl: %s", strerror(errno));
	c->want_out = out;
}

/* Writes what the socket takes of c->out; 0, or the errno of a failed send. */
static int
send_queued(conn *c)
{
	while (c->outlen > 0)
	{
		ssize_t		n = send(c->fd, c->out, c->outlen, MSG_NOSIGNAL);

		if (n < 0)
		{
			if (errno == EAGAIN || errno == EINTR)
				break;
			return errno;
		}
		memmove(c->out, c->out + n, c->outlen - n);
		c->outlen -= n;
	}
	if ((c->outlen > 0) != c->want_out)
		set_events(c, c->outlen > 0);
	return 0;
}

static void
flush_out(conn *c)
{
	int			err = send_queued(c);

	if (err != 0)
		fail("member %d: send: %s", c->no, strerror(err));
}

static void
queue_raw(conn *c, const char *p, size_t n)
{
	reserve(&c->out, &c->outcap, c->outlen + n);
	memcpy(c->out + c->outlen, p, n);
	c->outlen += n;
}

/* one masked frame (client to server frames must be masked) */
static void
send_frame(conn *c, int opcode, const char *p, size_t n)
{
	unsigned char h[14];
	size_t		hl = 0;
	unsigned char *mask;
	size_t		start;

	h[hl++] = 0x80 | opcode;
	if (n < 126)
		h[hl++] = 0x80 | n;
	else if (n < 65536)
	{
		h[hl++] = 0x80 | 126;
		h[hl++] = n >> 8;
		h[hl++] = n & 0xff;
	}
	else
	{
		h[hl++] = 0x80 | 127;
		for (int i = 7; i >= 0; i--)
			h[hl++] = ((uint64_t) n >> (8 * i)) & 0xff;
	}
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	mask = h + hl;
	memcpy(mask, &rng, 4);
	hl += 4;
	queue_raw(c, (char *) h, hl);
	start = c->outlen;
	queue_raw(c, p, n);
	for (size_t i = 0; i < n; i++)
		c->out[start + i] ^= mask[i & 3];
	if (!c->want_out)
		flush_out(c);
}

static void
send_text(conn *c, const char *s)
{
	send_frame(c, 1, s, strlen(s));
}

static void post_packet(conn *m, const char *s);
static void poll_start(conn *c);
static void poll_opened(conn *c, const char *p, size_t n);

/* one Engine.IO packet to the server, on the member's transport */
static void
send_packet(conn *c, const char *s)
{
	if (c->http)
		post_packet(c, s);
	else
		send_text(c, s);
}

static void start_next(void);

static void
member_ready(conn *c)
{
	c->st = S_READY;
	inflight--;
	ready++;
	if (growing && ready == nconns)
	{
		growing = 0;
		reply("grown %d %.1f", ready, (now_ns() - grow_t0) / 1e6);
	}
	else
		start_next();
}

static void
start_conn(conn *c)
{
	struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT,.data.ptr = c};
	int			one = 1;

	if (polling)
	{
		poll_start(c);
		inflight++;
		return;
	}
	c->fd = socket(addr->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd < 0)
		fail("socket: %s", strerror(errno));
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(c->fd, addr->ai_addr, addr->ai_addrlen) < 0 && errno != EINPROGRESS)
		fail("member %d: connect: %s", c->no, strerror(errno));
	c->st = S_TCP;
	c->want_out = 1;
	if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) < 0)
		fail("epoll_ctl: %s", strerror(errno));
	inflight++;
}

static void
start_next(void)
{
	while (growing && inflight < grow_conc && nextpending < nconns)
		start_conn(conns[nextpending++]);
}

/*
 * Does the payload carry "connectionId":"<armed id>"?  collab's payloads are
 * jsonb text ("key": "value"), the baseline's JSON.stringify ("key":"value").
 */
static int
has_conn_id(const char *p, size_t n)
{
	static const char key[] = "\"connectionId\"";
	const char *end = p + n;
	const char *q = p;

	while ((q = memmem(q, end - q, key, sizeof(key) - 1)) != NULL)
	{
		q += sizeof(key) - 1;
		while (q < end && *q == ' ')
			q++;
		if (q < end && *q == ':')
		{
			q++;
			while (q < end && *q == ' ')
				q++;
			if ((size_t) (end - q) >= arm_needle_len && memcmp(q, arm_needle, arm_needle_len) == 0)
				return 1;
		}
	}
	return 0;
}

/* an armed event: count it once per member and round */
static void
on_event(conn *c, const char *p, size_t n, int64_t t)
{
	if (!armed || n < arm_prefix_len || memcmp(p, arm_prefix, arm_prefix_len) != 0)
		return;
	if (!has_conn_id(p, n))
	{
		stray++;
		return;
	}
	if (c->seen == arm_seq)
	{
		arm_dupes++;
		return;
	}
	c->seen = arm_seq;
	arm_count++;
	if (arm_first == 0 || t < arm_first)
		arm_first = t;
	if (t > arm_last)
		arm_last = t;
	if (arm_count == ready)
	{
		int64_t		tdone = now_ns();
		int64_t		wall = tdone - arm_t0;
		double		elu = wall > 0 ? 1.0 - (double) (idle_ns - arm_idle0) / wall : 0;

		armed = 0;
		reply("done %d %d %lld %lld %lld %lld %lld %.4f", arm_count, arm_dupes,
			  (long long) arm_first, (long long) arm_last, (long long) arm_t0,
			  (long long) tdone, (long long) (cpu_us() - arm_cpu0), elu);
	}
}

static void
probe_send(conn *c)
{
	char		buf[256];

	snprintf(buf, sizeof(buf), "42%ld[\"lock:%s\",{\"resourceId\":\"%s\"}]",
			 ++probe_id, probe_release ? "release" : "acquire", probe_rid);
	probe_t0 = now_ns();
	send_packet(c, buf);
}

/* the ack of the probe's request in flight: time it, send the next one */
static void
on_probe_ack(conn *c, const char *p, size_t n, int64_t t)
{
	char	   *end;
	long		id = strtol(p + 2, &end, 10);
	const char *want = probe_refuse ? "false" : "true";
	char		ok1[32],
				ok2[32];
	size_t		rest = n - (end - p);

	snprintf(ok1, sizeof(ok1), "[{\"ok\":%s", want);
	snprintf(ok2, sizeof(ok2), "[{\"ok\": %s", want);
	if (id != probe_id)
		fail("member %d: ack %ld, expected %ld: %.200s", c->no, id, probe_id, p);
	if (!(rest >= strlen(ok1) && memcmp(end, ok1, strlen(ok1)) == 0) &&
		!(rest >= strlen(ok2) && memcmp(end, ok2, strlen(ok2)) == 0))
		fail("member %d: lock:%s, expected ok %s: %.300s", c->no, probe_release ? "release" : "acquire", want, end);
	if (probe_refuse)
		probe_ms[probe_i++] = t - probe_t0;
	else
	{
		probe_ms[probe_i * 2 + probe_release] = t - probe_t0;
		if (probe_release)
			probe_i++;
		probe_release = !probe_release;
	}
	if (probe_i < probe_n)
	{
		probe_send(c);
		return;
	}
	probe_c = NULL;
	fputs(probe_refuse ? "refused" : "locked", stdout);
	for (int i = 0; i < probe_n * (probe_refuse ? 1 : 2); i++)
		fprintf(stdout, " %lld", (long long) probe_ms[i]);
	reply("");
}

/* one Engine.IO packet in a text frame */
static void
on_packet(conn *c, char *p, size_t n, int64_t t)
{
	char		buf[256];

	if (trace)
		fprintf(stderr, "member %d state %d: %.300s\n", c->no, (int) c->st, p);
	if (n == 1 && p[0] == '2')
	{
		send_packet(c, "3");
		return;
	}
	switch (c->st)
	{
		case S_OPEN:
			if (n < 1 || p[0] != '0')
				fail("member %d: expected the open packet, got %.100s", c->no, p);
			if (c->http)
				poll_opened(c, p, n);
			{
				size_t		tl = strlen(c->token);
				char	   *m = xrealloc(NULL, tl + 32);

				snprintf(m, tl + 32, "40{\"token\":\"%s\"}", c->token);
				send_packet(c, m);
				free(m);
			}
			c->st = S_CONNECT;
			return;
		case S_CONNECT:
			if (n >= 2 && p[0] == '4' && p[1] == '0')
			{
				free(c->token);
				c->token = NULL;
				if (grow_rid == NULL)
				{
					member_ready(c);
					return;
				}
				snprintf(buf, sizeof(buf), "421[\"presence:join\",{\"resourceId\":\"%s\",\"mode\":\"viewer\"}]", grow_rid);
				send_packet(c, buf);
				c->st = S_JOIN;
				return;
			}
			if (n >= 2 && p[0] == '4' && p[1] == '4')
				fail("member %d: connect_error %.300s", c->no, p + 2);
			return;
		case S_JOIN:
			if (n >= 3 && p[0] == '4' && p[1] == '3' && p[2] == '1')
			{
				static const char ok1[] = "[{\"ok\":true";
				static const char ok2[] = "[{\"ok\": true";

				if (n >= 3 + sizeof(ok1) - 1 && memcmp(p + 3, ok1, sizeof(ok1) - 1) == 0)
					member_ready(c);
				else if (n >= 3 + sizeof(ok2) - 1 && memcmp(p + 3, ok2, sizeof(ok2) - 1) == 0)
					member_ready(c);
				else
					fail("member %d: join failed: %.300s", c->no, p + 3);
			}
			return;
		case S_READY:
			if (n >= 2 && p[0] == '4' && p[1] == '2')
				on_event(c, p, n, t);
			else if (n >= 2 && p[0] == '4' && p[1] == '3' && c == probe_c)
				on_probe_ack(c, p, n, t);
			else if (n >= 1 && p[0] == '1')
				fail("member %d: the server closed the Engine.IO session", c->no);
			return;
		default:
			return;
	}
}

/* parse every complete frame in c->in */
static void
parse_frames(conn *c, int64_t t)
{
	size_t		off = 0;

	while (c->inlen - off >= 2)
	{
		unsigned char *h = (unsigned char *) c->in + off;
		size_t		avail = c->inlen - off;
		int			fin = h[0] & 0x80;
		int			opcode = h[0] & 0x0f;
		uint64_t	len = h[1] & 0x7f;
		size_t		hl = 2;

		if (h[1] & 0x80)
			fail("member %d: masked frame from the server", c->no);
		if (h[0] & 0x70)
			fail("member %d: frame with RSV bits set (an extension was not negotiated)", c->no);
		if (len == 126)
		{
			if (avail < 4)
				break;
			len = ((uint64_t) h[2] << 8) | h[3];
			hl = 4;
		}
		else if (len == 127)
		{
			if (avail < 10)
				break;
			len = 0;
			for (int i = 0; i < 8; i++)
				len = (len << 8) | h[2 + i];
			hl = 10;
		}
		if (len > ((uint64_t) 1 << 30))
			fail("member %d: frame of %llu bytes", c->no, (unsigned long long) len);
		if (avail < hl + len)
			break;				/* on_readable grows the buffer */
		if (!fin || opcode == 0)
			fail("member %d: fragmented message (opcode %d, FIN %d): not supported", c->no, opcode, fin ? 1 : 0);
		{
			char	   *p = c->in + off + hl;

			switch (opcode)
			{
				case 1:			/* text */
					{
						char		save = p[len];

						p[len] = '\0';	/* there is room: inlen < incap or a following byte */
						on_packet(c, p, len, t);
						p[len] = save;
					}
					break;
				case 2:			/* binary: nothing we asked for */
					break;
				case 8:			/* close */
					fail("member %d: the server closed the connection (%.*s)", c->no, (int) (len > 2 ? len - 2 : 0), p + 2);
					break;
				case 9:			/* ping */
					send_frame(c, 10, p, len);
					break;
				case 10:		/* pong */
					break;
				default:
					fail("member %d: unknown opcode %d", c->no, opcode);
			}
		}
		off += hl + len;
	}
	if (off > 0)
	{
		memmove(c->in, c->in + off, c->inlen - off);
		c->inlen -= off;
	}
}

static void
on_http(conn *c, int64_t t)
{
	char	   *end = memmem(c->in, c->inlen, "\r\n\r\n", 4);
	size_t		hl;

	if (end == NULL)
	{
		if (c->inlen > 16384)
			fail("member %d: HTTP response header too long", c->no);
		return;
	}
	if (c->inlen < 12 || memcmp(c->in, "HTTP/1.1 101", 12) != 0)
		fail("member %d: upgrade refused: %.*s", c->no, (int) (end - c->in), c->in);
	hl = end + 4 - c->in;
	memmove(c->in, c->in + hl, c->inlen - hl);
	c->inlen -= hl;
	c->st = S_OPEN;
	parse_frames(c, t);
}

/*
 * Reads what the socket has into c->in, room bytes at most (set here); one
 * spare byte stays for the NUL put after a text payload or a body.
 */
static ssize_t
recv_more(conn *c, size_t *room)
{
	reserve(&c->in, &c->incap, c->inlen + 65536 + 1);
	*room = c->incap - c->inlen - 1;
	return recv(c->fd, c->in + c->inlen, *room, 0);
}

static void
on_readable(conn *c)
{
	for (;;)
	{
		size_t		room;
		ssize_t		n = recv_more(c, &room);
		int64_t		t;

		if (n < 0)
		{
			if (errno == EAGAIN || errno == EINTR)
				return;
			fail("member %d: recv: %s", c->no, strerror(errno));
		}
		if (n == 0)
			fail("member %d: the server closed the connection", c->no);
		t = now_ns();
		c->inlen += n;
		if (c->st == S_HTTP)
			on_http(c, t);
		else
			parse_frames(c, t);
		if ((size_t) n < room)
			return;				/* drained */
	}
}

static void
on_writable(conn *c)
{
	if (c->st == S_TCP)
	{
		int			err = 0;
		socklen_t	el = sizeof(err);
		char		req[1024];
		unsigned char key[16];
		char		k64[25];
		static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
		int			j = 0;

		getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el);
		if (err)
			fail("member %d: connect: %s", c->no, strerror(err));
		for (int i = 0; i < 16; i++)
			key[i] = (unsigned char) (rng >> (i % 8 * 8)) ^ (unsigned char) (i * 37 + c->no);
		for (int i = 0; i < 15; i += 3)
		{
			uint32_t	v = key[i] << 16 | key[i + 1] << 8 | key[i + 2];

			k64[j++] = b64[v >> 18];
			k64[j++] = b64[(v >> 12) & 63];
			k64[j++] = b64[(v >> 6) & 63];
			k64[j++] = b64[v & 63];
		}
		k64[j++] = b64[key[15] >> 2];
		k64[j++] = b64[(key[15] & 3) << 4];
		k64[j++] = '=';
		k64[j++] = '=';
		k64[j] = '\0';
		snprintf(req, sizeof(req),
				 "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\n"
				 "Host: %s:%s\r\n"
				 "Upgrade: websocket\r\n"
				 "Connection: Upgrade\r\n"
				 "Sec-WebSocket-Key: %s\r\n"
				 "Sec-WebSocket-Version: 13\r\n\r\n", host, port, k64);
		c->st = S_HTTP;
		c->want_out = 1;
		queue_raw(c, req, strlen(req));
	}
	flush_out(c);
}

/* ----------------------------------------------------------------
 * poll mode: Engine.IO long-polling over HTTP/1.1
 * ---------------------------------------------------------------- */

static void
http_open(conn *h)
{
	struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT,.data.ptr = h};
	int			one = 1;

	h->fd = socket(addr->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (h->fd < 0)
		fail("socket: %s", strerror(errno));
	setsockopt(h->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(h->fd, addr->ai_addr, addr->ai_addrlen) < 0 && errno != EINPROGRESS)
		fail("member %d: connect: %s", h->no, strerror(errno));
	if (epoll_ctl(ep, EPOLL_CTL_ADD, h->fd, &ev) < 0)
		fail("epoll_ctl: %s", strerror(errno));
	h->connecting = 1;
	h->want_out = 1;
	h->served = 0;
	h->inlen = h->outlen = h->hl = 0;
}

/* closes h's socket; its input buffer's bytes stay where they are */
static void
http_close(conn *h)
{
	if (h->fd >= 0)
		close(h->fd);			/* which takes it out of the epoll set */
	h->fd = -1;
	h->connecting = h->want_out = 0;
	h->inlen = h->outlen = h->hl = 0;
}

static void
close_exit(void)
{
	for (int i = 0; i < nconns; i++)
		if (conns[i]->http)
		{
			http_close(conns[i]);
			http_close(conns[i]->post);
		}
	exit(0);
}

/* close: m's close packet was answered, or will never be */
static void
close_done(conn *m)
{
	if (!m->closewait)
		return;
	m->closewait = 0;
	if (--close_pending == 0)
		close_exit();
}

static void http_send(conn *h);

/*
 * h's connection broke (or the server closed it while idle, which both do
 * after 5 s without a request: it is opened again for the next one).
 */
static void
http_lost(conn *h, const char *why)
{
	/* a reused connection the server closed as the request went out */
	int			again = h->inreq && h->served > 0 && h->inlen == 0 && h->hl == 0;

	http_close(h);
	if (!h->inreq)
		return;
	if (again)
	{
		http_send(h);
		return;
	}
	if (closing)
	{
		h->inreq = 0;
		if (h != h->member)
			close_done(h->member);
		return;
	}
	fail("member %d: %s connection: %s", h->no, h == h->member ? "GET" : "POST", why);
}

static void
http_flush(conn *h)
{
	int			err = send_queued(h);

	if (err != 0)
		http_lost(h, strerror(err));
}

/* sends h->req, on a new connection if the server closed the last one */
static void
http_send(conn *h)
{
	h->inreq = 1;
	if (h->fd < 0)
		http_open(h);
	queue_raw(h, h->req, h->reqlen);
	if (!h->connecting)
		http_flush(h);
}

/* a request of h's member on h: GET (body NULL) or POST */
static void
http_request(conn *h, const char *method, const char *body, size_t blen)
{
	conn	   *m = h->member;
	size_t		cap = 512 + strlen(host) + strlen(port) + (m->sid ? strlen(m->sid) : 0) + blen;
	int			n;

	reserve(&h->req, &h->reqcap, cap);
	n = snprintf(h->req, cap, "%s /socket.io/?EIO=4&transport=polling%s%s HTTP/1.1\r\n"
				 "Host: %s:%s\r\n"
				 "Connection: keep-alive\r\n"
				 "Accept: */*\r\n",
				 method, m->sid ? "&sid=" : "", m->sid ? m->sid : "", host, port);
	if (body != NULL)
		n += snprintf(h->req + n, cap - n, "Content-Type: text/plain;charset=UTF-8\r\n"
					  "Content-Length: %zu\r\n", blen);
	n += snprintf(h->req + n, cap - n, "\r\n");
	if (blen > 0)
		memcpy(h->req + n, body, blen);
	h->reqlen = n + blen;
	http_send(h);
}

/* the member's queued packets, in one POST */
static void
post_flush(conn *m)
{
	http_request(m->post, "POST", m->pq, m->pqlen);
	m->pqlen = 0;
}

/* one packet to post: now, or with the next POST if one is in flight */
static void
post_packet(conn *m, const char *s)
{
	size_t		n = strlen(s);

	reserve(&m->pq, &m->pqcap, m->pqlen + n + 1);
	if (m->pqlen > 0)
		m->pq[m->pqlen++] = '\x1e';
	memcpy(m->pq + m->pqlen, s, n);
	m->pqlen += n;
	if (!m->post->inreq)
		post_flush(m);
}

/* a member: its POST connection, and the handshake on its GET connection */
static void
poll_start(conn *c)
{
	conn	   *h = calloc(1, sizeof(conn));

	if (h == NULL)
		fail("out of memory");
	h->fd = -1;
	h->no = c->no;
	h->http = 1;
	h->member = c;
	c->post = h;
	c->http = 1;
	c->member = c;
	c->st = S_OPEN;
	http_request(c, "GET", NULL, 0);
}

/* the open packet 0{"sid":"...",...}: the session id of every next request */
static void
poll_opened(conn *c, const char *p, size_t n)
{
	static const char key[] = "\"sid\"";
	const char *end = p + n;
	const char *q = memmem(p, n, key, sizeof(key) - 1);
	const char *v;
	char	   *o;

	if (q == NULL)
		fail("member %d: no sid in the open packet: %.300s", c->no, p);
	q += sizeof(key) - 1;
	while (q < end && (*q == ' ' || *q == ':'))
		q++;
	if (q >= end || *q != '"')
		fail("member %d: no sid in the open packet: %.300s", c->no, p);
	v = ++q;
	while (q < end && *q != '"')
		q++;
	free(c->sid);
	o = c->sid = xrealloc(NULL, 3 * (q - v) + 1);
	for (; v < q; v++)
	{
		unsigned char ch = *v;

		if ((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
			ch == '-' || ch == '_' || ch == '.' || ch == '~')
			*o++ = ch;
		else
			o += sprintf(o, "%%%02X", ch);
	}
	*o = '\0';
}

/* the answer to a GET: its packets, then the next GET at once */
static void
get_done(conn *m, int status, char *body, size_t n, int64_t t)
{
	char	   *p = body;
	char	   *end = body + n;

	if (closing)
		return;					/* the session's last poll */
	if (status != 200)
		fail("member %d: GET answered %d: %.300s", m->no, status, body);
	for (;;)
	{
		char	   *q = memchr(p, '\x1e', end - p);
		char	   *e = q ? q : end;
		char		save = *e;

		*e = '\0';				/* body[n] is a NUL too */
		on_packet(m, p, e - p, t);
		*e = save;
		if (q == NULL)
			break;
		p = q + 1;
	}
	if (m->sid == NULL)
		fail("member %d: the handshake gave no session: %.300s", m->no, body);
	/* every poll of the session is the same request: built once */
	if (m->pollreq)
		http_send(m);
	else
	{
		http_request(m, "GET", NULL, 0);
		m->pollreq = 1;
	}
}

/* the answer to a POST ("ok"): the packets queued meanwhile go next */
static void
post_done(conn *m, int status, const char *body)
{
	if (status != 200 && !closing)
		fail("member %d: POST answered %d: %.300s", m->no, status, body);
	if (m->pqlen > 0 && (status == 200 || !closing))
		post_flush(m);
	else if (closing)
		close_done(m);
}

/*
 * The chunked body in p[0..n): its length, decoded into chunkbuf, and in
 * *used what it took of p (the trailer included); -1 while incomplete.
 */
static long long
dechunk(conn *h, const char *p, size_t n, size_t *used)
{
	size_t		off = 0,
				len = 0;

	for (;;)
	{
		const char *eol = memmem(p + off, n - off, "\r\n", 2);
		unsigned long long sz;
		char	   *e;

		if (eol == NULL)
			return -1;
		/* hex digits, then an extension or the CRLF found: strtoull stops there */
		sz = strtoull(p + off, &e, 16);
		if (e == p + off || sz > ((unsigned long long) 1 << 30))
			fail("member %d: bad chunk size: %.40s", h->no, p + off);
		off = eol - p + 2;
		if (sz == 0)
		{
			/* trailer fields, up to an empty line */
			for (;;)
			{
				eol = memmem(p + off, n - off, "\r\n", 2);
				if (eol == NULL)
					return -1;
				if (eol == p + off)
				{
					*used = off + 2;
					reserve(&chunkbuf, &chunkcap, len + 1);
					return len;
				}
				off = eol - p + 2;
			}
		}
		if (n - off < sz + 2)
			return -1;
		reserve(&chunkbuf, &chunkcap, len + sz + 1);
		memcpy(chunkbuf + len, p + off, sz);
		len += sz;
		off += sz + 2;
	}
}

/* the status line and the header fields that frame the body */
static void
http_head(conn *h, const char *end)
{
	const char *p = h->in;
	const char *stop = end + 2;	/* every line with its CRLF */
	const char *eol;

	if (end - p < 12 || memcmp(p, "HTTP/1.", 7) != 0)
		fail("member %d: not an HTTP answer: %.*s", h->no, (int) (end - p > 200 ? 200 : end - p), p);
	h->status = atoi(p + 9);
	h->clen = -1;
	h->chunked = 0;
	h->conn_close = p[7] == '0';	/* HTTP/1.0: unless keep-alive */
	/* the CRLF at end ends the search for every line's */
	for (p = (char *) memmem(p, stop - p, "\r\n", 2) + 2; p < stop; p = eol + 2)
	{
		const char *colon;
		char		v[64];
		size_t		nl,
					vl;

		eol = memmem(p, stop - p, "\r\n", 2);
		colon = memchr(p, ':', eol - p);
		if (colon == NULL)
			continue;
		nl = colon - p;
		for (colon++; colon < eol && (*colon == ' ' || *colon == '\t'); colon++)
			;
		vl = eol - colon < (long) sizeof(v) - 1 ? (size_t) (eol - colon) : sizeof(v) - 1;
		for (size_t i = 0; i < vl; i++)
			v[i] = colon[i] >= 'A' && colon[i] <= 'Z' ? colon[i] + 32 : colon[i];
		v[vl] = '\0';
		if (nl == 14 && strncasecmp(p, "content-length", nl) == 0)
			h->clen = strtoll(v, NULL, 10);
		else if (nl == 17 && strncasecmp(p, "transfer-encoding", nl) == 0)
			h->chunked = strstr(v, "chunked") != NULL;
		else if (nl == 10 && strncasecmp(p, "connection", nl) == 0)
		{
			if (strstr(v, "close"))
				h->conn_close = 1;
			else if (strstr(v, "keep-alive"))
				h->conn_close = 0;
		}
	}
	h->hl = end + 4 - h->in;
}

/*
 * A complete answer, body[0..n) (in h->in or chunkbuf, with a byte to
 * spare after it); consumed is how much of h->in it took.
 */
static void
http_answer(conn *h, char *body, size_t n, size_t consumed, int64_t t)
{
	int			closes = h->conn_close;
	int			status = h->status;
	char		save = body[n];

	body[n] = '\0';
	h->inreq = 0;
	h->served++;
	h->hl = 0;
	/*
	 * Closed before the next request, which then opens another connection.
	 * Neither that nor anything else below moves h->in: the body stays
	 * readable.
	 */
	if (closes)
		http_close(h);
	else
		h->inlen -= consumed;
	if (trace && (status != 200 || h != h->member))
		fprintf(stderr, "member %d %s answer %d: %.300s\n", h->no, h == h->member ? "GET" : "POST", status, body);
	if (h == h->member)
		get_done(h, status, body, n, t);
	else
		post_done(h->member, status, body);
	body[n] = save;
	if (h->inlen > 0)
		memmove(h->in, h->in + consumed, h->inlen);
}

/* the answers complete in h->in */
static void
http_parse(conn *h, int64_t t)
{
	int			fd = h->fd;

	while (h->fd == fd && h->inlen > 0)
	{
		if (h->hl == 0)
		{
			char	   *end = memmem(h->in, h->inlen, "\r\n\r\n", 4);

			if (end == NULL)
			{
				if (h->inlen > 16384)
					fail("member %d: HTTP answer header too long", h->no);
				return;
			}
			if (!h->inreq)
				fail("member %d: an answer to no request: %.*s", h->no, (int) (end - h->in > 200 ? 200 : end - h->in), h->in);
			http_head(h, end);
		}
		if (h->chunked)
		{
			size_t		used;
			long long	n = dechunk(h, h->in + h->hl, h->inlen - h->hl, &used);

			if (n < 0)
				return;
			http_answer(h, chunkbuf, n, h->hl + used, t);
		}
		else if (h->clen >= 0 || h->status == 204 || h->status == 304)
		{
			size_t		n = h->clen > 0 ? h->clen : 0;

			if (h->inlen - h->hl < n)
				return;
			http_answer(h, h->in + h->hl, n, h->hl + n, t);
		}
		else
			return;				/* the body ends with the connection */
	}
}

static void
http_readable(conn *h)
{
	int			fd = h->fd;

	for (;;)
	{
		size_t		room;
		ssize_t		n = recv_more(h, &room);
		int64_t		t;

		if (n < 0)
		{
			if (errno == EAGAIN || errno == EINTR)
				return;
			http_lost(h, strerror(errno));
			return;
		}
		if (n == 0)
		{
			if (h->inreq && h->hl > 0 && !h->chunked && h->clen < 0)
			{
				/* a body that ends with the connection */
				h->conn_close = 1;
				http_answer(h, h->in + h->hl, h->inlen - h->hl, h->inlen, now_ns());
				return;
			}
			http_lost(h, "closed by the server");
			return;
		}
		t = now_ns();
		h->inlen += n;
		http_parse(h, t);
		if (h->fd != fd)
			return;				/* closed, perhaps opened again */
		if ((size_t) n < room)
			return;				/* drained */
	}
}

static void
http_event(conn *h, uint32_t events)
{
	int			fd = h->fd;

	if (fd < 0)
		return;					/* closed earlier in this batch */
	if (h->connecting)
	{
		int			err = 0;
		socklen_t	el = sizeof(err);

		getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el);
		if (err)
		{
			http_lost(h, strerror(err));
			return;
		}
		h->connecting = 0;
		http_flush(h);
		return;
	}
	if (events & (EPOLLIN | EPOLLERR | EPOLLHUP))
		http_readable(h);
	if ((events & EPOLLOUT) && h->fd == fd)
		http_flush(h);
}

/* close: every member's close packet, so that the servers end the sessions now */
static void
poll_close(void)
{
	closing = 1;
	close_deadline = now_ns() + 1000000000;
	for (int i = 0; i < nconns; i++)
	{
		conn	   *m = conns[i];

		if (m->http && m->sid != NULL)
		{
			m->closewait = 1;
			close_pending++;
			post_packet(m, "1");
		}
	}
	if (close_pending == 0)
		close_exit();
}

static void
on_command(char *line)
{
	char	   *cmd = strtok(line, " ");
	char	   *a1 = strtok(NULL, " ");
	char	   *a2 = strtok(NULL, " ");

	if (cmd == NULL)
		return;
	if (strcmp(cmd, "token") == 0 && a1)
	{
		conn	   *c = calloc(1, sizeof(conn));

		if (c == NULL)
			fail("out of memory");
		if (nconns == capconns)
		{
			capconns = capconns ? capconns * 2 : 1024;
			conns = xrealloc(conns, capconns * sizeof(conn *));
		}
		c->fd = -1;
		c->no = nconns;
		c->seen = -1;
		c->token = strdup(a1);
		conns[nconns++] = c;
	}
	else if (strcmp(cmd, "grow") == 0 && a1 && a2)
	{
		free(grow_rid);
		grow_rid = strcmp(a1, "-") == 0 ? NULL : strdup(a1);
		if (grow_rid && strlen(grow_rid) > 150)
			fail("resource id too long");
		grow_conc = atoi(a2) > 0 ? atoi(a2) : 1;
		grow_t0 = now_ns();
		growing = 1;
		if (ready == nconns)
		{
			growing = 0;
			reply("grown %d 0.0", ready);
		}
		start_next();
	}
	else if (strcmp(cmd, "arm") == 0 && a1 && a2)
	{
		if (ready == 0)
			fail("armed with no members");
		arm_seq++;
		armed = 1;
		arm_prefix_len = snprintf(arm_prefix, sizeof(arm_prefix), "42[\"presence:%s\"", a1);
		arm_needle_len = snprintf(arm_needle, sizeof(arm_needle), "\"%s\"", a2);
		arm_count = arm_dupes = 0;
		arm_first = arm_last = 0;
		arm_cpu0 = cpu_us();
		arm_idle0 = idle_ns;
		arm_t0 = now_ns();
		reply("armed");
	}
	else if (strcmp(cmd, "disarm") == 0)
	{
		int			n = armed ? arm_count : -1;

		armed = 0;
		reply("disarmed %d %d", n, ready);
	}
	else if ((strcmp(cmd, "lock") == 0 || strcmp(cmd, "refuse") == 0) && a1 && a2)
	{
		probe_refuse = cmd[0] == 'r';
		if (ready == 0 || probe_c != NULL)
			fail("%s: no member, or a probe running", cmd);
		if (strlen(a1) >= sizeof(probe_rid))
			fail("resource id too long");
		strcpy(probe_rid, a1);
		probe_n = atoi(a2) > 0 ? atoi(a2) : 1;
		probe_ms = xrealloc(probe_ms, sizeof(int64_t) * 2 * probe_n);
		probe_i = probe_release = 0;
		for (int i = 0; i < nconns && probe_c == NULL; i++)
			if (conns[i]->st == S_READY)
				probe_c = conns[i];
		probe_send(probe_c);
	}
	else if (strcmp(cmd, "cpu") == 0)
		reply("cpu %lld %ld", (long long) cpu_us(), stray);
	else if (strcmp(cmd, "close") == 0 && polling)
		poll_close();
	else if (strcmp(cmd, "close") == 0)
	{
		for (int i = 0; i < nconns; i++)
			if (conns[i]->fd >= 0)
			{
				if (conns[i]->st >= S_OPEN)
				{
					conns[i]->want_out = 0;
					send_frame(conns[i], 8, "\x03\xe8", 2);
				}
				close(conns[i]->fd);
			}
		exit(0);
	}
	else
		fail("unknown command %s", cmd);
}

int
main(int argc, char **argv)
{
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM};
	struct epoll_event ev = {.events = EPOLLIN,.data.ptr = NULL};
	char	   *cbuf = NULL;
	size_t		clen = 0,
				ccap = 0;
	int			rc;

	if (argc < 3 || argc > 4 ||
		(argc == 4 && strcmp(argv[3], "poll") != 0 && strcmp(argv[3], "websocket") != 0))
	{
		fprintf(stderr, "usage: %s HOST PORT [websocket|poll]\n", argv[0]);
		return 2;
	}
	polling = argc == 4 && strcmp(argv[3], "poll") == 0;
	trace = getenv("MEMBERS_TRACE") != NULL && strcmp(getenv("MEMBERS_TRACE"), "1") == 0;
	host = argv[1];
	port = argv[2];
	if ((rc = getaddrinfo(host, port, &hints, &addr)) != 0)
		fail("%s:%s: %s", host, port, gai_strerror(rc));
	rng ^= (uint64_t) now_ns() * 0x2545F4914F6CDD1DULL ^ (uint64_t) getpid();
	ep = epoll_create1(EPOLL_CLOEXEC);
	if (ep < 0)
		fail("epoll_create1: %s", strerror(errno));
	fcntl(0, F_SETFL, fcntl(0, F_GETFL) | O_NONBLOCK);
	if (epoll_ctl(ep, EPOLL_CTL_ADD, 0, &ev) < 0)
		fail("epoll_ctl stdin: %s", strerror(errno));

	for (;;)
	{
		struct epoll_event evs[256];
		int64_t		t0 = now_ns();
		int			n;

		if (closing && t0 >= close_deadline)
			close_exit();
		n = epoll_wait(ep, evs, 256, closing ? (int) ((close_deadline - t0) / 1000000 + 1) : -1);
		idle_ns += now_ns() - t0;
		if (n < 0)
		{
			if (errno == EINTR)
				continue;
			fail("epoll_wait: %s", strerror(errno));
		}
		for (int i = 0; i < n; i++)
		{
			conn	   *c = evs[i].data.ptr;

			if (c == NULL)
			{
				for (;;)
				{
					ssize_t		r;
					char	   *nl;

					reserve(&cbuf, &ccap, clen + 4096);
					r = read(0, cbuf + clen, ccap - clen);
					if (r == 0)
						exit(0);	/* the parent went away */
					if (r < 0)
					{
						if (errno == EAGAIN || errno == EINTR)
							break;
						fail("stdin: %s", strerror(errno));
					}
					clen += r;
					while ((nl = memchr(cbuf, '\n', clen)) != NULL)
					{
						size_t		ll = nl - cbuf + 1;

						*nl = '\0';
						on_command(cbuf);
						memmove(cbuf, cbuf + ll, clen - ll);
						clen -= ll;
					}
				}
				continue;
			}
			if (c->http)
			{
				http_event(c, evs[i].events);
				continue;
			}
			if (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP))
			{
				if (c->st == S_TCP)
					on_writable(c);		/* reports the connect error */
				else
					on_readable(c);
			}
			if (evs[i].events & EPOLLOUT)
				on_writable(c);
		}
	}
}
