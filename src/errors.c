/*-------------------------------------------------------------------------
 *
 * errors.c
 *	  The table of collab's machine-readable error codes and their SQLSTATEs.
 *
 * This table is the single source of truth: SQL code raises errors through
 * collab._raise(code, ...), C code by CollabErrorCode, the worker maps a
 * caught SQLSTATE back to its code and sends codes by CollabErrorCode, and
 * collab.error_codes() exposes the table for documentation and for tests
 * that check nothing is missing.  No code's name is written anywhere else
 * in src/ (test/unit/check-error-literals.sh).
 *
 * The table and the lookup by name also build as frontend code, for the
 * unit tests and fuzz harnesses of jwt.c.
 *
 *-------------------------------------------------------------------------
 */
#ifndef FRONTEND
#include "postgres.h"

#include "fmgr.h"
#include "funcapi.h"
#include "utils/builtins.h"
#else
#include "postgres_fe.h"
#endif

#include "collab.h"

const CollabErrorInfo collab_errors[CE_NUM_CODES] = {
	[CE_AUTH_TOKEN_MISSING] = {"AUTH_TOKEN_MISSING", "CLA01", "The connection presented no token in its auth payload."},
	[CE_AUTH_TOKEN_INVALID] = {"AUTH_TOKEN_INVALID", "CLA02", "The token is not a well-formed JWT."},
	[CE_AUTH_TOKEN_EXPIRED] = {"AUTH_TOKEN_EXPIRED", "CLA03", "The token's exp has passed (beyond the allowed leeway)."},
	[CE_AUTH_SIGNATURE_INVALID] = {"AUTH_SIGNATURE_INVALID", "CLA04", "The token's signature does not verify with the configured key."},
	[CE_AUTH_ALGORITHM_UNSUPPORTED] = {"AUTH_ALGORITHM_UNSUPPORTED", "CLA05", "The token's alg is not accepted (none, unknown, or not matching the configured key)."},
	[CE_AUTH_CLAIM_INVALID] = {"AUTH_CLAIM_INVALID", "CLA06", "A claim is missing, of the wrong type, not yet valid, or does not match iss/aud."},
	[CE_FORBIDDEN] = {"FORBIDDEN", "CLF01", "The caller is not allowed to do this (origin, role or privilege)."},
	[CE_BAD_REQUEST] = {"BAD_REQUEST", "CL001", "The request is malformed: a missing or ill-typed field or argument."},
	[CE_RESOURCE_ID_INVALID] = {"RESOURCE_ID_INVALID", "CL002", "The resource id does not follow the kind:key/kind:key grammar."},
	[CE_RESOURCE_NOT_FOUND] = {"RESOURCE_NOT_FOUND", "CL003", "No resource row has this id."},
	[CE_RESOURCE_EXISTS] = {"RESOURCE_EXISTS", "CL005", "A resource with this id already exists."},
	[CE_NOT_JOINED] = {"NOT_JOINED", "CL004", "The connection has not joined this resource's room."},
	[CE_LOCK_HELD] = {"LOCK_HELD", "CL010", "Someone else holds a conflicting editor lock."},
	[CE_LOCK_NOT_HELD] = {"LOCK_NOT_HELD", "CL011", "The caller presented no token, or a token that is not the live lock of this resource."},
	[CE_LOCK_EXPIRED] = {"LOCK_EXPIRED", "CL012", "The presented token's lock expired before it was renewed."},
	[CE_VERSION_CONFLICT] = {"VERSION_CONFLICT", "CL020", "The base version is not the resource's current version."},
	[CE_PAYLOAD_TOO_LARGE] = {"PAYLOAD_TOO_LARGE", "CL021", "The message or content exceeds the configured size limit."},
	[CE_RATE_LIMITED] = {"RATE_LIMITED", "CL030", "The connection sent more messages than its rate limit allows, or its user already has as many connections as allowed."},
	[CE_INTERNAL] = {"INTERNAL", "CL999", "An unexpected server error; the request had no effect."},
	[CE_AUTH_TOKEN_REVOKED] = {"AUTH_TOKEN_REVOKED", "CLA07", "The user's sessions were revoked after this token was issued (or it has no iat); sign in again."},
	[CE_BUSY] = {"BUSY", "CL031", "The server could not take the request in time; it had no effect and may be retried."},
};

const CollabErrorInfo *
collab_error_by_code(const char *code)
{
	for (int i = 0; i < CE_NUM_CODES; i++)
		if (strcmp(collab_errors[i].code, code) == 0)
			return &collab_errors[i];
	return NULL;
}

/* The code named name ("LOCK_HELD"); false for a name not in the table. */
bool
collab_error_of_name(const char *name, CollabErrorCode *code)
{
	const CollabErrorInfo *info = collab_error_by_code(name);

	if (info == NULL)
		return false;
	*code = (CollabErrorCode) (info - collab_errors);
	return true;
}

#ifndef FRONTEND

int
collab_errcode(CollabErrorCode code)
{
	const char *s = collab_errors[code].sqlstate;

	return MAKE_SQLSTATE(s[0], s[1], s[2], s[3], s[4]);
}

const CollabErrorInfo *
collab_error_by_sqlstate(int sqlerrcode)
{
	for (int i = 0; i < CE_NUM_CODES; i++)
		if (collab_errcode((CollabErrorCode) i) == sqlerrcode)
			return &collab_errors[i];
	return NULL;
}

/* The code of one of our SQLSTATEs; false for any other SQLSTATE. */
bool
collab_error_of_sqlstate(int sqlerrcode, CollabErrorCode *code)
{
	const CollabErrorInfo *info = collab_error_by_sqlstate(sqlerrcode);

	if (info == NULL)
		return false;
	*code = (CollabErrorCode) (info - collab_errors);
	return true;
}

/*
 * collab._raise(code, message, detail, hint): raise the error of a product
 * error code with its SQLSTATE.  Used by the extension's PL/pgSQL functions.
 */
PG_FUNCTION_INFO_V1(collab_raise);
Datum
collab_raise(PG_FUNCTION_ARGS)
{
	const char *code = PG_ARGISNULL(0) ? collab_errors[CE_INTERNAL].code : text_to_cstring(PG_GETARG_TEXT_PP(0));
	const char *message = PG_ARGISNULL(1) ? code : text_to_cstring(PG_GETARG_TEXT_PP(1));
	const char *detail = PG_ARGISNULL(2) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(2));
	const char *hint = PG_ARGISNULL(3) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(3));
	const CollabErrorInfo *info = collab_error_by_code(code);

	if (info == NULL)
		elog(ERROR, "unknown collab error code \"%s\"", code);

	ereport(ERROR,
			(errcode(MAKE_SQLSTATE(info->sqlstate[0], info->sqlstate[1],
								   info->sqlstate[2], info->sqlstate[3],
								   info->sqlstate[4])),
			 errmsg_internal("%s", message),
			 detail ? errdetail_internal("%s", detail) : 0,
			 hint ? errhint("%s", hint) : 0));
	PG_RETURN_VOID();
}

/* collab.error_codes(): the table above, as rows. */
PG_FUNCTION_INFO_V1(collab_error_codes);
Datum
collab_error_codes(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;

	InitMaterializedSRF(fcinfo, 0);
	for (int i = 0; i < CE_NUM_CODES; i++)
	{
		Datum		values[3];
		bool		nulls[3] = {false, false, false};

		values[0] = CStringGetTextDatum(collab_errors[i].code);
		values[1] = CStringGetTextDatum(collab_errors[i].sqlstate);
		values[2] = CStringGetTextDatum(collab_errors[i].meaning);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

/* collab.error_code(sqlstate): the product code for a SQLSTATE, or NULL. */
PG_FUNCTION_INFO_V1(collab_error_code_of);
Datum
collab_error_code_of(PG_FUNCTION_ARGS)
{
	char	   *s = text_to_cstring(PG_GETARG_TEXT_PP(0));
	const CollabErrorInfo *info;

	if (strlen(s) != 5)
		PG_RETURN_NULL();
	info = collab_error_by_sqlstate(MAKE_SQLSTATE(s[0], s[1], s[2], s[3], s[4]));
	if (info == NULL)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(info->code));
}

#endif							/* FRONTEND */
