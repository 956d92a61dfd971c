/*-------------------------------------------------------------------------
 *
 * listen.c
 *	  The worker's listening sockets and its accept loop.
 *
 * The worker opens its own listening sockets, one per address of
 * collab.listen_addresses, and hands each accepted connection to
 * libwebsockets (lws_adopt_descriptor_vhost), rather than letting
 * libwebsockets listen: libwebsockets 4.1 cannot set SO_REUSEPORT, which
 * lets collab.workers processes listen on one port while the kernel spreads
 * new connections over them.  With one worker the port stays exclusive, so
 * that another process on it is reported rather than silently shared.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include "collab.h"
#include "listen.h"

#define MAX_LISTENERS	16
/* After EMFILE or ENFILE, accepting pauses this long instead of spinning. */
#define ACCEPT_PAUSE_S	0.1

typedef struct Listener
{
	ev_io		io;
	int			fd;
} Listener;

static Listener listeners[MAX_LISTENERS];
static int	nlisteners = 0;
static struct lws_vhost *adopt_vhost = NULL;
static ev_timer pause_timer;

static void
resume_accepting(struct ev_loop *loop, ev_timer *w, int revents)
{
	for (int i = 0; i < nlisteners; i++)
		ev_io_start(loop, &listeners[i].io);
}

static void
accept_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	Listener   *l = (Listener *) w;

	/* a bounded batch, so that a connection storm cannot starve the rest */
	for (int n = 0; n < 256; n++)
	{
		int			fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		int			one = 1;
		lws_sock_file_fd_type u;

		if (fd < 0)
		{
			if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
			{
				for (int i = 0; i < nlisteners; i++)
					ev_io_stop(loop, &listeners[i].io);
				ev_timer_set(&pause_timer, ACCEPT_PAUSE_S, 0.);
				ev_timer_start(loop, &pause_timer);
			}
			/* EAGAIN: done; ECONNABORTED and the like: the peer left */
			return;
		}
		/* small frames must leave at once: latency is what clients see */
		(void) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		u.sockfd = fd;
		if (lws_adopt_descriptor_vhost(adopt_vhost, LWS_ADOPT_SOCKET | LWS_ADOPT_HTTP |
									   LWS_ADOPT_ALLOW_SSL, u, NULL, NULL) == NULL)
		{
			/* lws closes the descriptor when adoption fails */
		}
	}
}

/* One listening socket; returns -1 with errno set on failure. */
static int
open_listener(int family, const struct sockaddr *sa, socklen_t salen, bool v6only)
{
	int			fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int			one = 1;
	int			save;

	if (fd < 0)
		return -1;
	/* restart at once even with connections of the last run in TIME_WAIT */
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0)
		goto fail;
	if (collab_workers > 1 &&
		setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0)
		goto fail;
	if (family == AF_INET6)
	{
		int			v = v6only ? 1 : 0;

		(void) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v, sizeof(v));
	}
	if (bind(fd, sa, salen) != 0 || listen(fd, SOMAXCONN) != 0)
		goto fail;
	return fd;

fail:
	save = errno;
	close(fd);
	errno = save;
	return -1;
}

static void
add_listener(struct ev_loop *loop, int fd)
{
	Listener   *l = &listeners[nlisteners++];

	l->fd = fd;
	ev_io_init(&l->io, accept_cb, fd, EV_READ);
	ev_io_start(loop, &l->io);
}

/*
 * Listens on collab.port at every address of collab.listen_addresses ('*':
 * all interfaces, IPv6 and IPv4) and adopts accepted connections into vh.
 */
void
listen_start(struct ev_loop *loop, struct lws_vhost *vh)
{
	char	   *addrs = pstrdup(collab_listen_addresses ? collab_listen_addresses : "*");
	char	   *save = NULL;
	char	   *addr;

	adopt_vhost = vh;
	ev_init(&pause_timer, resume_accepting);
	for (addr = strtok_r(addrs, ", ", &save); addr; addr = strtok_r(NULL, ", ", &save))
	{
		struct sockaddr_in sin;
		struct sockaddr_in6 sin6;
		int			fd;

		if (nlisteners >= MAX_LISTENERS)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("collab.listen_addresses names more than %d addresses", MAX_LISTENERS)));
		memset(&sin, 0, sizeof(sin));
		memset(&sin6, 0, sizeof(sin6));
		sin.sin_family = AF_INET;
		sin.sin_port = htons(collab_port);
		sin6.sin6_family = AF_INET6;
		sin6.sin6_port = htons(collab_port);
		if (strcmp(addr, "*") == 0)
		{
			sin6.sin6_addr = in6addr_any;
			/* one dual-stack socket; IPv4 alone where IPv6 is off */
			fd = open_listener(AF_INET6, (struct sockaddr *) &sin6, sizeof(sin6), false);
			if (fd < 0 && errno != EADDRINUSE)
			{
				sin.sin_addr.s_addr = htonl(INADDR_ANY);
				fd = open_listener(AF_INET, (struct sockaddr *) &sin, sizeof(sin), false);
			}
		}
		else if (inet_pton(AF_INET, addr, &sin.sin_addr) == 1)
			fd = open_listener(AF_INET, (struct sockaddr *) &sin, sizeof(sin), false);
		else if (inet_pton(AF_INET6, addr, &sin6.sin6_addr) == 1)
			fd = open_listener(AF_INET6, (struct sockaddr *) &sin6, sizeof(sin6), true);
		else
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("collab.listen_addresses entry \"%s\" is not an IP address", addr)));
		if (fd < 0)
			ereport(ERROR,
					(errcode_for_socket_access(),
					 errmsg("collab worker could not listen on %s port %d: %m", addr, collab_port),
					 errhint("Check collab.listen_addresses and collab.port; another process may use the port.")));
		add_listener(loop, fd);
	}
	pfree(addrs);
	if (nlisteners == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("collab.listen_addresses is empty")));
}

/* Stops accepting; on shutdown, before the connections are closed. */
void
listen_stop(struct ev_loop *loop)
{
	ev_timer_stop(loop, &pause_timer);
	for (int i = 0; i < nlisteners; i++)
	{
		ev_io_stop(loop, &listeners[i].io);
		close(listeners[i].fd);
	}
	nlisteners = 0;
}
