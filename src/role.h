/*-------------------------------------------------------------------------
 *
 * role.h
 *	  The server's role as the worker serves it (role.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef COLLAB_ROLE_H
#define COLLAB_ROLE_H

#include "lib/stringinfo.h"

extern void role_init(void);
extern bool role_is_standby(void);
extern bool role_promoted(void);
extern void role_set_primary(void);
extern const char *role_name(void);
extern void role_refusal_body(StringInfo buf);

/* The HTTP status of a session refused on a standby, and of its /healthz. */
#define ROLE_STANDBY_STATUS		503

#endif							/* COLLAB_ROLE_H */
