/*-------------------------------------------------------------------------
 *
 * role.c
 *	  The server's role as the worker serves it: a hot standby, on which
 *	  the worker opens no session and writes nothing, or a primary.
 *
 * A worker that starts during recovery serves as a standby: /healthz
 * answers 503 with role "standby" and every request that would open an
 * Engine.IO session is refused with 503 and role_refusal_body(), so that a
 * load balancer and socket.io-client's reconnection go to the primary.
 * Once the server is promoted, the worker does the start-up work of a
 * primary and only then serves as one (worker.c): callbacks therefore read
 * the role the worker serves, never RecoveryInProgress() directly, which
 * turns false before that work is done.  The role only ever goes from
 * standby to primary: a primary does not become a standby without a
 * restart.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xlog.h"

#include "role.h"

static bool serving_standby = false;

/* At the worker's start: a standby while the server is in recovery. */
void
role_init(void)
{
	serving_standby = RecoveryInProgress();
}

bool
role_is_standby(void)
{
	return serving_standby;
}

/*
 * Serving as a standby on a server whose recovery has ended: time for the
 * start-up work of a primary.  A read of shared memory, cheap enough for
 * every pass of the main loop.
 */
bool
role_promoted(void)
{
	return serving_standby && !RecoveryInProgress();
}

/* The start-up work is done: sessions are opened from now on. */
void
role_set_primary(void)
{
	serving_standby = false;
}

/* The role as /healthz names it. */
const char *
role_name(void)
{
	return serving_standby ? "standby" : "primary";
}

/*
 * The JSON body of a refused session (a polling handshake or a WebSocket
 * upgrade) on a standby: Engine.IO's error object (code 3, "Bad request",
 * as for a worker without room) naming the role.
 */
void
role_refusal_body(StringInfo buf)
{
	appendStringInfoString(buf,
						   "{\"code\":3,\"message\":\"this server is a standby: "
						   "connect to the primary\",\"role\":\"standby\"}");
}
