/*-------------------------------------------------------------------------
 *
 * listen.h
 *	  The worker's listening sockets (listen.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef COLLAB_LISTEN_H
#define COLLAB_LISTEN_H

#include <ev.h>
#include <libwebsockets.h>

extern void listen_start(struct ev_loop *loop, struct lws_vhost *vh);
extern void listen_stop(struct ev_loop *loop);

#endif							/* COLLAB_LISTEN_H */
