/*-------------------------------------------------------------------------
 *
 * poll_http.h
 *	  Long-polling requests over HTTP (poll_http.c), for the callbacks of
 *	  the worker's port (ws_transport.c).
 *
 * slot is the connection's user data: it keeps a request while it waits
 * or reads its body.
 *
 *-------------------------------------------------------------------------
 */
#ifndef COLLAB_POLL_HTTP_H
#define COLLAB_POLL_HTTP_H

#include <ev.h>
#include <libwebsockets.h>

extern void poll_http_init(struct ev_loop *loop);
extern int	poll_http_request(struct lws *wsi, void **slot);
extern int	poll_http_body(struct lws *wsi, void **slot, const char *in, size_t len);
extern int	poll_http_body_done(struct lws *wsi, void **slot);
extern int	poll_http_writeable(struct lws *wsi, void **slot);
extern void poll_http_closed(struct lws *wsi, void **slot);
extern void poll_http_busy(struct lws *wsi);
extern void poll_http_flush(void);

#endif							/* COLLAB_POLL_HTTP_H */
