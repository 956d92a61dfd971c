/*-------------------------------------------------------------------------
 *
 * collab.c
 *	  The collab.* settings: their variables, their definitions, and the
 *	  SQL functions that read them.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>

#include "fmgr.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/timestamp.h"

#include "collab.h"

int			collab_port = 8080;
char	   *collab_listen_addresses = NULL;
char	   *collab_database = NULL;
char	   *collab_jwt_secret = NULL;
char	   *collab_jwt_public_key_file = NULL;
char	   *collab_jwt_issuer = NULL;
char	   *collab_jwt_audience = NULL;
int			collab_jwt_leeway = 30;
int			collab_lock_ttl_ms = 5 * 60 * 1000;
int			collab_max_message_size = 1024 * 1024;
int			collab_max_connections = 10000;
int			collab_max_content_size = 4 * 1024 * 1024;
char	   *collab_allowed_origins = NULL;
char	   *collab_ssl_cert_file = NULL;
char	   *collab_ssl_key_file = NULL;
int			collab_workers = 1;
int			collab_ping_interval_ms = 25000;
int			collab_ping_timeout_ms = 20000;
int			collab_sweep_interval_ms = 1000;
int			collab_rate_limit = 50;
char	   *collab_lock_token = NULL;
char	   *collab_base_version = NULL;
char	   *collab_restored_from = NULL;
char	   *collab_ui_directory = NULL;
bool		collab_access_control = true;
char	   *collab_access_rule = NULL;
char	   *collab_jwt_groups_claim = NULL;
int			collab_access_log_retention_min = 0;
int			collab_disconnect_grace_ms = 30 * 1000;
int			collab_recovery_window_ms = 2 * 60 * 1000;
int			collab_request_timeout_ms = 5000;
int			collab_max_connections_per_user = 32;
int			collab_max_unauthenticated_per_address = 256;
int			collab_connect_timeout_ms = 10000;
int			collab_max_output_buffer_kb = 256 * 1024;
bool		collab_synchronous_grants = false;

bool		collab_worker_session = false;

/* default of collab.ui_directory: SHAREDIR/extension/collab_ui */
static char default_ui_directory[MAXPGPATH];

static bool check_listen_addresses(char **newval, void **extra, GucSource source);

/* The settings that need a server restart; only while preloading. */
void
collab_define_postmaster_settings(void)
{
	DefineCustomIntVariable("collab.port",
							"TCP port the collab WebSocket worker listens on.",
							NULL, &collab_port, 8080, 1, 65535,
							PGC_POSTMASTER, 0, NULL, NULL, NULL);
	DefineCustomStringVariable("collab.listen_addresses",
							   "Addresses the collab worker listens on ('*' for all).",
							   "A comma-separated list of IP addresses.",
							   &collab_listen_addresses, "127.0.0.1",
							   PGC_POSTMASTER, GUC_LIST_INPUT, check_listen_addresses, NULL, NULL);
	DefineCustomStringVariable("collab.database",
							   "Database the collab worker serves.",
							   NULL, &collab_database, "postgres",
							   PGC_POSTMASTER, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("collab.max_connections",
							"Most WebSocket connections one worker serves at once.",
							NULL, &collab_max_connections, 10000, 1, 1000000,
							PGC_POSTMASTER, 0, NULL, NULL, NULL);
	DefineCustomStringVariable("collab.ssl_cert_file",
							   "PEM certificate for wss:// (empty: plain ws://).",
							   NULL, &collab_ssl_cert_file, "",
							   PGC_POSTMASTER, 0, NULL, NULL, NULL);
	DefineCustomStringVariable("collab.ssl_key_file",
							   "PEM private key for wss://.",
							   NULL, &collab_ssl_key_file, "",
							   PGC_POSTMASTER, GUC_SUPERUSER_ONLY, NULL, NULL, NULL);
	DefineCustomIntVariable("collab.workers",
							"Number of WebSocket worker processes (0: none).",
							"Several workers share collab.port; the kernel spreads connections over them.",
							&collab_workers, 1, 0, COLLAB_MAX_WORKERS,
							PGC_POSTMASTER, 0, NULL, NULL, NULL);
}

/* The settings that can change in a running server. */
void
collab_define_reloadable_settings(void)
{
	DefineCustomStringVariable("collab.jwt_secret",
							   "Shared secret for HS256 JSON Web Tokens.",
							   "Readable by superusers only; empty disables HS256.",
							   &collab_jwt_secret, "",
							   PGC_SIGHUP, GUC_SUPERUSER_ONLY | GUC_NO_SHOW_ALL | GUC_NOT_IN_SAMPLE,
							   NULL, NULL, NULL);
	DefineCustomStringVariable("collab.jwt_public_key_file",
							   "PEM file with the RSA or EC P-256 public key for RS256/ES256 tokens.",
							   NULL, &collab_jwt_public_key_file, "",
							   PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomStringVariable("collab.jwt_issuer",
							   "Required iss claim of tokens (empty: not checked).",
							   NULL, &collab_jwt_issuer, "",
							   PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomStringVariable("collab.jwt_audience",
							   "Required aud claim of tokens (empty: not checked).",
							   NULL, &collab_jwt_audience, "",
							   PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("collab.jwt_leeway",
							"Clock skew allowed when checking exp and nbf.",
							NULL, &collab_jwt_leeway, 30, 0, 600,
							PGC_SIGHUP, GUC_UNIT_S, NULL, NULL, NULL);
	/*
	 * Superuser setting, as collab.lock_ttl: it decides what a crash may
	 * take from a holder.
	 */
	DefineCustomBoolVariable("collab.synchronous_grants",
							 "Whether the worker answers lock:acquire and lock:request only once their commit is flushed.",
							 "Off: the grant commits asynchronously after its fencing token's WAL record is flushed; "
							 "a crash may undo a grant made just before it, never reissue its token.",
							 &collab_synchronous_grants, false,
							 PGC_SUSET, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("collab.lock_ttl",
							"Time an editor lock lives without renewal.",
							NULL, &collab_lock_ttl_ms, 5 * 60 * 1000, 100, INT_MAX,
							PGC_SUSET, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("collab.max_message_size",
							"Largest WebSocket message the worker accepts.",
							NULL, &collab_max_message_size, 1024 * 1024, 1024, 64 * 1024 * 1024,
							PGC_SIGHUP, GUC_UNIT_BYTE, NULL, NULL, NULL);
	DefineCustomIntVariable("collab.max_content_size",
							"Largest resource content a save may store.",
							NULL, &collab_max_content_size, 4 * 1024 * 1024, 1024, 256 * 1024 * 1024,
							PGC_SUSET, GUC_UNIT_BYTE, NULL, NULL, NULL);
	DefineCustomStringVariable("collab.allowed_origins",
							   "Origins allowed to open WebSocket connections (empty: any).",
							   "A comma-separated list of exact origins such as https://ui.example.org.",
							   &collab_allowed_origins, "",
							   PGC_SIGHUP, GUC_LIST_INPUT, NULL, NULL, NULL);
	DefineCustomIntVariable("collab.ping_interval",
							"Engine.IO ping interval.",
							NULL, &collab_ping_interval_ms, 25000, 100, 3600 * 1000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("collab.ping_timeout",
							"Time to wait for a pong before a connection is considered dead.",
							NULL, &collab_ping_timeout_ms, 20000, 100, 3600 * 1000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("collab.sweep_interval",
							"How often the worker frees expired locks.",
							NULL, &collab_sweep_interval_ms, 1000, 50, 60 * 1000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	get_share_path(my_exec_path, default_ui_directory);
	strlcat(default_ui_directory, "/extension/collab_ui", sizeof(default_ui_directory));
	DefineCustomStringVariable("collab.ui_directory",
							   "Directory of the demo UI the worker serves at / (empty: none).",
							   NULL, &collab_ui_directory, default_ui_directory,
							   PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("collab.rate_limit",
							"Messages per second one connection may send (0: unlimited).",
							"Every frame counts: events, pings, pongs, acknowledgements, CONNECTs.",
							&collab_rate_limit, 50, 0, 100000,
							PGC_SIGHUP, 0, NULL, NULL, NULL);

	/* Budgets of the worker (docs/design.md, "Requests never wait") */
	DefineCustomIntVariable("collab.request_timeout",
							"Time a request of a browser may wait for a lock before it is answered BUSY.",
							"Also bounds each statement the worker runs (at most 1s).",
							&collab_request_timeout_ms, 5000, 100, 3600 * 1000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("collab.max_connections_per_user",
							"Most WebSocket connections one user may have open, over all workers (0: unlimited).",
							NULL, &collab_max_connections_per_user, 32, 0, 1000000,
							PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("collab.max_unauthenticated_per_address",
							"Most connections from one client address that a worker keeps before they authenticate (0: unlimited).",
							NULL, &collab_max_unauthenticated_per_address, 256, 0, 1000000,
							PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("collab.connect_timeout",
							"Time a new connection has to authenticate (Socket.IO CONNECT).",
							NULL, &collab_connect_timeout_ms, 10000, 100, 3600 * 1000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("collab.max_output_buffer",
							"Most outgoing data one worker keeps queued for slow readers, over all its connections.",
							"When it is reached, the slowest readers are disconnected first.",
							&collab_max_output_buffer_kb, 256 * 1024, 1024, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_KB, NULL, NULL, NULL);

	/*
	 * Per-transaction inputs to the save guard, set with SET LOCAL by an
	 * application that writes content with a plain UPDATE.
	 */
	DefineCustomStringVariable("collab.lock_token",
							   "Fencing token presented by this transaction's content updates.",
							   NULL, &collab_lock_token, "",
							   PGC_USERSET, GUC_NO_SHOW_ALL | GUC_NOT_IN_SAMPLE | GUC_DISALLOW_IN_FILE,
							   NULL, NULL, NULL);
	DefineCustomStringVariable("collab.base_version",
							   "Version this transaction's content updates expect to replace (empty: any).",
							   NULL, &collab_base_version, "",
							   PGC_USERSET, GUC_NO_SHOW_ALL | GUC_NOT_IN_SAMPLE | GUC_DISALLOW_IN_FILE,
							   NULL, NULL, NULL);
	DefineCustomStringVariable("collab.restored_from",
							   "Earlier version whose content this transaction's content updates restore (empty: none).",
							   NULL, &collab_restored_from, "",
							   PGC_USERSET, GUC_NO_SHOW_ALL | GUC_NOT_IN_SAMPLE | GUC_DISALLOW_IN_FILE,
							   NULL, NULL, NULL);

	/*
	 * Access control (access.c and the SQL functions of docs/access-control.md).
	 * Superuser settings: an application role cannot turn the checks off for
	 * itself, nor name a rule of its own.
	 */
	DefineCustomBoolVariable("collab.access_control",
							 "Whether per-resource grants decide who may view and edit (off: every authenticated user may edit everything).",
							 NULL, &collab_access_control, true,
							 PGC_SUSET, 0, NULL, NULL, NULL);
	DefineCustomStringVariable("collab.access_rule",
							   "Function (schema.name) consulted after the grants: (user_id text, groups text[], resource_id text, permission text) returns boolean.",
							   "Empty: grants alone decide.",
							   &collab_access_rule, "",
							   PGC_SUSET, 0, NULL, NULL, NULL);
	DefineCustomStringVariable("collab.jwt_groups_claim",
							   "JWT claim holding the user's groups, an array of strings (empty: groups are not read).",
							   NULL, &collab_jwt_groups_claim, "groups",
							   PGC_SIGHUP, 0, NULL, NULL, NULL);
	/*
	 * Sessions that outlive their transport (docs/design.md).  Superuser
	 * settings, as collab.lock_ttl: they decide how long a lock stays with a
	 * holder who cannot renew it.
	 */
	DefineCustomIntVariable("collab.disconnect_grace",
							"How long a lock stays with a holder whose connection was lost uncleanly (0: released at once).",
							NULL, &collab_disconnect_grace_ms, 30 * 1000, 0, 24 * 3600 * 1000,
							PGC_SUSET, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("collab.recovery_window",
							"How long a connection lost uncleanly may come back as the same session.",
							NULL, &collab_recovery_window_ms, 2 * 60 * 1000, 0, 24 * 3600 * 1000,
							PGC_SUSET, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("collab.access_log_retention",
							"How long entries of the access log are kept (0: for ever).",
							NULL, &collab_access_log_retention_min, 0, 0, INT_MAX,
							PGC_SUSET, GUC_UNIT_MIN, NULL, NULL, NULL);
}

/* An empty list would leave the worker nothing to listen on. */
static bool
check_listen_addresses(char **newval, void **extra, GucSource source)
{
	const char *p = *newval;

	while (p && (*p == ' ' || *p == ','))
		p++;
	if (p == NULL || *p == '\0')
	{
		GUC_check_errdetail("collab.listen_addresses needs at least one address, or '*' for all; set collab.workers = 0 to run without the worker.");
		return false;
	}
	return true;
}

/* collab.lock_ttl(): the effective lock TTL as an interval. */
PG_FUNCTION_INFO_V1(collab_lock_ttl);
Datum
collab_lock_ttl(PG_FUNCTION_ARGS)
{
	Interval   *ttl = palloc0(sizeof(Interval));

	ttl->time = (int64) collab_lock_ttl_ms * 1000;
	PG_RETURN_INTERVAL_P(ttl);
}

/* An interval of ms milliseconds. */
static Interval *
interval_ms(int ms)
{
	Interval   *iv = palloc0(sizeof(Interval));

	iv->time = (int64) ms * 1000;
	return iv;
}

/* collab.disconnect_grace(): the effective grace of a lost holder, as an interval. */
PG_FUNCTION_INFO_V1(collab_disconnect_grace_sql);
Datum
collab_disconnect_grace_sql(PG_FUNCTION_ARGS)
{
	PG_RETURN_INTERVAL_P(interval_ms(collab_disconnect_grace_ms));
}

/* collab.recovery_window(): the effective recovery window, as an interval. */
PG_FUNCTION_INFO_V1(collab_recovery_window_sql);
Datum
collab_recovery_window_sql(PG_FUNCTION_ARGS)
{
	PG_RETURN_INTERVAL_P(interval_ms(collab_recovery_window_ms));
}

/* collab.max_content_size(): the effective content limit in bytes. */
PG_FUNCTION_INFO_V1(collab_max_content_size_sql);
Datum
collab_max_content_size_sql(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT64((int64) collab_max_content_size);
}
