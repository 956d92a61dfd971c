/*-------------------------------------------------------------------------
 *
 * collab.h
 *	  Declarations shared by the collab extension's modules: the settings
 *	  (GUC variables), the error-code table, and the small services of the
 *	  SQL backend files (prepared plans, running as the owner, path locks,
 *	  events, lease expiry, fencing tokens).
 *
 *-------------------------------------------------------------------------
 */
#ifndef COLLAB_H
#define COLLAB_H

#include "datatype/timestamp.h"
#include "lib/stringinfo.h"

/* Settings, defined in collab.c */
extern int	collab_port;
extern char *collab_listen_addresses;
extern char *collab_database;
extern char *collab_jwt_secret;
extern char *collab_jwt_public_key_file;
extern char *collab_jwt_issuer;
extern char *collab_jwt_audience;
extern int	collab_jwt_leeway;
extern int	collab_lock_ttl_ms;
extern int	collab_max_message_size;
extern int	collab_max_connections;
extern int	collab_max_content_size;
extern char *collab_allowed_origins;
extern char *collab_ssl_cert_file;
extern char *collab_ssl_key_file;
extern int	collab_workers;
extern int	collab_ping_interval_ms;
extern int	collab_ping_timeout_ms;
extern int	collab_sweep_interval_ms;
extern int	collab_rate_limit;
extern char *collab_lock_token;
extern char *collab_base_version;
extern char *collab_restored_from;
extern bool collab_access_control;
extern char *collab_access_rule;
extern char *collab_jwt_groups_claim;
extern int	collab_access_log_retention_min;
extern int	collab_disconnect_grace_ms;
extern int	collab_recovery_window_ms;
extern int	collab_request_timeout_ms;
extern int	collab_max_connections_per_user;
extern int	collab_max_unauthenticated_per_address;
extern int	collab_connect_timeout_ms;
extern int	collab_max_output_buffer_kb;
extern bool collab_synchronous_grants;

/*
 * This process is a collab worker: its lock decisions never wait for a
 * lock (lock_path.c) and its refusals are sampled (sampling.c).
 */
extern bool collab_worker_session;

extern void collab_define_postmaster_settings(void);
extern void collab_define_reloadable_settings(void);

/* Most WebSocket worker processes (collab.workers). */
#define COLLAB_MAX_WORKERS 32

/* The NOTIFY channel on which LISTENers hear every committed event. */
#define COLLAB_EVENT_CHANNEL "collab_events"

/*
 * Events whose name starts with this are for the workers' own bookkeeping
 * (access changes, session revocations): never sent to browsers, and left
 * out of what NOTIFY listeners may see (collab.public_payload()).
 */
#define COLLAB_INTERNAL_EVENT_PREFIX "internal:"

/*
 * The services of the SQL backend files.  Frontend builds of the
 * standalone modules (unit tests, fuzzers) see the settings and the error
 * table only.
 */
#ifndef FRONTEND

/* plans.c */
struct _SPI_plan;
extern struct _SPI_plan *collab_plan(const char *sql, int nargs, const Oid *argtypes,
									 int cursor_options);

/* owner.c */
typedef struct CollabOwner
{
	Oid			saved_uid;
	int			saved_ctx;
} CollabOwner;

extern void collab_become_owner(Oid fn, CollabOwner *oc);
extern void collab_restore_user(CollabOwner *oc);

/* lock_path.c: the kinds of lock of a path (objsubid in pg_locks) */
typedef enum CollabLockKind
{
	COLLAB_LOCK_NONE = 0,
	COLLAB_LOCK_PATH = 1,		/* lock decisions and saves */
	COLLAB_LOCK_ACCESS = 2,		/* joins against grants and revokes */
	COLLAB_LOCK_USER = 3		/* a user's connections (their number) */
} CollabLockKind;

/* A lock that a worker's request found busy (lock_path.c). */
typedef struct CollabBlocker
{
	uint64		key;
	CollabLockKind kind;
	int			mode;			/* a LOCKMODE */
} CollabBlocker;

extern void collab_lock_path_of(Datum resource_id);
extern void collab_lock_access_of(const char *s, int len, bool exclusive);
extern void collab_take_blocker(CollabBlocker *b);
extern bool collab_blocker_gone(const CollabBlocker *b);

/* sampling.c: a refusal for collab.audit or the access trail */
typedef struct CollabRefusal
{
	const char *trail;			/* "audit" or "access" */
	const char *action;
	const char *user_id;
	const char *resource_id;	/* NULL for none */
	const char *reason;			/* why, NULL for none */
	const char *fields[3];		/* the writer's other columns */
	const char *detail;			/* a JSON object, or NULL */
	TimestampTz at;
} CollabRefusal;

/* Writes one row of a refusal, with detail in place of r->detail. */
typedef void (*CollabRefusalWriter) (const CollabRefusal *r, const char *detail);

extern bool collab_refusal_sample(const CollabRefusal *r, CollabRefusalWriter writer);
extern bool collab_refusals_due(TimestampTz now);

/* resource_id_sql.c */
struct varlena;
extern void collab_require_resource_id(struct varlena *t);

/* events.c */
struct JsonArray;

extern void collab_publish_event(const char *json, int len);
extern bool collab_event_routing_member(const char *key);
extern bool collab_public_payload(const char *payload, size_t len, char **out);
extern void collab_forward_add(const struct JsonArray *events, void (*emit) (char *envelope));
extern void collab_forward_flush(void (*emit) (char *envelope));

/* leases.c */
extern TimestampTz collab_lease_expiry(TimestampTz from);
extern void collab_token_error(int64 token, const char *resource_id) pg_attribute_noreturn();

/* revisions.c */
struct TupleDescData;
struct HeapTupleData;
extern Datum collab_record_revision(Oid fn, struct TupleDescData *desc, struct HeapTupleData *oldt,
									struct HeapTupleData *newt, int64 version,
									const char *user_id, const char *username,
									TimestampTz saved_at, int64 token, bool ws,
									bool has_restored, int64 restored_from);

/* tokens.c */
extern bool collab_parse_int64(const char *s, int64 *out);
extern int64 collab_issue_token(void);

#endif							/* !FRONTEND */

/*
 * Error codes (errors.c).  Each product error code of the contract has one
 * stable SQLSTATE in the user-defined class "CL".
 */
typedef enum CollabErrorCode
{
	CE_AUTH_TOKEN_MISSING,
	CE_AUTH_TOKEN_INVALID,
	CE_AUTH_TOKEN_EXPIRED,
	CE_AUTH_SIGNATURE_INVALID,
	CE_AUTH_ALGORITHM_UNSUPPORTED,
	CE_AUTH_CLAIM_INVALID,
	CE_FORBIDDEN,
	CE_BAD_REQUEST,
	CE_RESOURCE_ID_INVALID,
	CE_RESOURCE_NOT_FOUND,
	CE_RESOURCE_EXISTS,
	CE_NOT_JOINED,
	CE_LOCK_HELD,
	CE_LOCK_NOT_HELD,
	CE_LOCK_EXPIRED,
	CE_VERSION_CONFLICT,
	CE_PAYLOAD_TOO_LARGE,
	CE_RATE_LIMITED,
	CE_INTERNAL,
	CE_AUTH_TOKEN_REVOKED,
	CE_BUSY,
	CE_NUM_CODES
} CollabErrorCode;

typedef struct CollabErrorInfo
{
	const char *code;			/* its name, e.g. LOCK_NOT_HELD */
	const char *sqlstate;		/* e.g. "CL011" */
	const char *meaning;		/* one sentence, for docs and tooling */
} CollabErrorInfo;

extern const CollabErrorInfo collab_errors[CE_NUM_CODES];

extern int	collab_errcode(CollabErrorCode code);
extern const CollabErrorInfo *collab_error_by_sqlstate(int sqlerrcode);
extern const CollabErrorInfo *collab_error_by_code(const char *code);
extern bool collab_error_of_sqlstate(int sqlerrcode, CollabErrorCode *code);
extern bool collab_error_of_name(const char *name, CollabErrorCode *code);

#endif							/* COLLAB_H */
