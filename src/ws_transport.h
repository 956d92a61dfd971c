/*-------------------------------------------------------------------------
 *
 * ws_transport.h
 *	  The worker's port under libwebsockets: HTTP requests, and WebSocket
 *	  connections as the transport of sessions (ws_transport.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef COLLAB_WS_TRANSPORT_H
#define COLLAB_WS_TRANSPORT_H

#include <libwebsockets.h>

/*
 * lws gives every connection a receive buffer of WS_RX_BUFFER_SIZE: small,
 * so that idle connections stay cheap; longer messages arrive in pieces and
 * are assembled.  Without a tx_packet_size, lws would also write at most
 * that many bytes per pass of the event loop: a joiner's list of 1000 users
 * would take 300 passes.
 */
#define WS_RX_BUFFER_SIZE	512
#define WS_TX_PACKET_SIZE	(256 * 1024)

extern int	ws_transport_callback(struct lws *wsi, enum lws_callback_reasons reason,
								  void *user, void *in, size_t len);

/* The entry of the protocol list of the vhost that serves the port. */
#define WS_TRANSPORT_PROTOCOL \
	{"collab", ws_transport_callback, sizeof(void *), WS_RX_BUFFER_SIZE, 0, NULL, WS_TX_PACKET_SIZE}

#endif							/* COLLAB_WS_TRANSPORT_H */
