/*-------------------------------------------------------------------------
 *
 * payloads.h
 *	  The builders of every event payload and of the objects events and
 *	  acknowledgements share: UserRef, LockInfo, PresenceUser (payloads.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef COLLAB_PAYLOADS_H
#define COLLAB_PAYLOADS_H

#include "datatype/timestamp.h"
#include "lib/stringinfo.h"

/* A row of collab.leases, as far as decisions and payloads need it. */
typedef struct Lease
{
	char	   *resource_id;
	int64		token;
	char	   *user_id;
	char	   *username;
	char	   *holder_id;
	TimestampTz acquired_at;
	TimestampTz expires_at;
	TimestampTz suspended_until;	/* 0: not suspended (its holder is connected) */
} Lease;

/* Times: ISO 8601 in UTC with milliseconds, quoted, and unquoted for messages */
extern void collab_append_ts(StringInfo buf, TimestampTz t);
extern char *collab_ts_text(TimestampTz t);

/* Shared objects */
extern void payload_user_ref(StringInfo buf, const char *user_id, const char *username);
extern void payload_lock_info(StringInfo buf, const Lease *l, bool with_token);
extern void payload_presence_role(StringInfo buf, const char *role);
extern void payload_presence_user(StringInfo buf, const char *user_id, const char *username,
								  const char *connection_id, const char *role,
								  TimestampTz joined_at, const char *resource_id);

/* Events, each built and queued for publication at commit (events.c) */
extern void publish_lock_acquired(const Lease *l);
extern void publish_lock_denied(const char *resource_id, const char *user_id, const char *username,
								const char *holder_id, const Lease *held);
extern void publish_lock_released(const Lease *l, const char *reason, TimestampTz released_at);
extern void publish_lock_expired(const Lease *l);
extern void publish_lock_suspended(const Lease *l);
extern void publish_lock_resumed(const Lease *l, const char *previous_holder_id);
extern void publish_lock_requested(const char *resource_id, const char *user_id,
								   const char *username, TimestampTz requested_at,
								   const char *holder_id);
extern void publish_doc_saved(const char *resource_id, int64 version, const char *user_id,
							  const char *username, const char *holder_id, TimestampTz saved_at,
							  const int64 *restored_from);
extern void publish_presence_joined(const char *resource_id, const char *user_json);
extern void publish_presence_left(const char *resource_id, const char *user_json,
								  const char *reason);

#endif							/* COLLAB_PAYLOADS_H */
