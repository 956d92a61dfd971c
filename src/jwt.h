/*-------------------------------------------------------------------------
 *
 * jwt.h
 *	  JWT (JWS compact serialization) verification for collab.
 *
 * Supports exactly HS256 (shared secret), RS256 (RSA PKCS#1 v1.5) and
 * ES256 (ECDSA P-256), with OpenSSL 3.  Compiles in the backend and in
 * frontend programs; never raises an error, all results are returned as a
 * JwtError plus a message for the person.  Memory is palloc'd in the
 * current context.
 *
 *-------------------------------------------------------------------------
 */
#ifndef COLLAB_JWT_H
#define COLLAB_JWT_H

#include <openssl/evp.h>

#include "collab.h"

/* Tokens longer than this are rejected without being decoded. */
#define JWT_MAX_TOKEN_LEN 8192
/* Longest accepted "sub", in bytes. */
#define JWT_MAX_SUB_LEN 256
/* Display names are truncated to this many bytes (on a UTF-8 boundary). */
#define JWT_MAX_DISPLAY_NAME_LEN 128
/* Latest accepted "iat" (9999-12-31T23:59:59Z), as PostgreSQL can store it. */
#define JWT_MAX_IAT 253402300799LL
/* Most groups a token may carry, and the longest group name in bytes. */
#define JWT_MAX_GROUPS 256
#define JWT_MAX_GROUP_LEN 256
/*
 * RFC 7518 3.2: an HS256 key must be at least as long as the hash output.
 * Not enforced by jwt_verify(); meant for the setting's check hook.
 */
#define JWT_HS256_MIN_SECRET_LEN 32

/* Each failure maps 1:1 to an error code of the product contract. */
typedef enum JwtError
{
	JWT_OK = 0,
	JWT_TOKEN_MISSING,			/* AUTH_TOKEN_MISSING */
	JWT_TOKEN_INVALID,			/* AUTH_TOKEN_INVALID */
	JWT_TOKEN_EXPIRED,			/* AUTH_TOKEN_EXPIRED */
	JWT_SIGNATURE_INVALID,		/* AUTH_SIGNATURE_INVALID */
	JWT_ALGORITHM_UNSUPPORTED,	/* AUTH_ALGORITHM_UNSUPPORTED */
	JWT_CLAIM_INVALID,			/* AUTH_CLAIM_INVALID */
	JWT_INTERNAL				/* INTERNAL (OpenSSL failed, e.g. no memory) */
} JwtError;

typedef enum JwtAlgorithm
{
	JWT_ALG_HS256,
	JWT_ALG_RS256,
	JWT_ALG_ES256
} JwtAlgorithm;

/*
 * What tokens are accepted.  Each algorithm is enabled only by its key:
 * HS256 by a non-empty hs_secret, RS256 by an RSA public_key, ES256 by an
 * EC P-256 public_key.  Both kinds may be configured at once.  issuer and
 * audience are checked when non-NULL and non-empty.  The struct only
 * borrows its pointers.
 */
typedef struct JwtConfig
{
	const char *hs_secret;
	size_t		hs_secret_len;
	EVP_PKEY   *public_key;		/* from jwt_load_public_key_pem(), or NULL */
	const char *issuer;
	const char *audience;
	int			leeway_s;		/* clock skew allowed for exp/nbf; < 0 = 0 */
	const char *groups_claim;	/* claim holding the groups; NULL or "": not read */
} JwtConfig;

/*
 * The verified identity.  Strings are palloc'd, NUL-terminated UTF-8.
 * Groups (cfg->groups_claim) are validated like sub: an absent or null
 * claim is no groups; anything but an array of non-empty strings of at
 * most JWT_MAX_GROUP_LEN bytes without control characters, or more than
 * JWT_MAX_GROUPS of them, fails the token (JWT_CLAIM_INVALID), so that a
 * malformed claim never reaches an access decision.
 */
typedef struct JwtClaims
{
	JwtAlgorithm alg;
	char	   *sub;			/* user id: non-empty, <= JWT_MAX_SUB_LEN */
	char	   *display_name;	/* never empty, never an e-mail address */
	char	   *iss;			/* NULL if absent */
	char	   *kid;			/* from the header, NULL if absent */
	int64		exp;			/* always present (required) */
	int64		nbf;			/* 0 if absent */
	int64		iat;			/* 0 if absent */
	bool		has_iat;		/* whether "iat" was present */
	char	  **groups;			/* the groups claim's strings, NULL if not read */
	int			ngroups;		/* absent or null claim: 0 */
} JwtClaims;

/*
 * Load a PEM "PUBLIC KEY" (SubjectPublicKeyInfo, as written by
 * "openssl pkey -pubout") that is RSA of at least 2048 bits or EC P-256.
 * Returns NULL and sets *errmsg (palloc'd) on failure.  Free the key with
 * EVP_PKEY_free().
 */
extern EVP_PKEY *jwt_load_public_key_pem(const char *path, char **errmsg);

/*
 * Verify token[0..len) at time now_unix (seconds since the epoch, from the
 * database clock).  On JWT_OK fills *out; otherwise *out is zeroed.  If
 * errmsg is not NULL it gets a palloc'd message readable by a person on
 * failure (NULL on success); messages never contain the token, the secret
 * or key material.
 */
extern JwtError jwt_verify(const JwtConfig *cfg, const char *token, size_t len,
						   int64 now_unix, JwtClaims *out, char **errmsg);

extern void jwt_claims_free(JwtClaims *claims);

/* The product error code of a failure (src/errors.c), and its name; "OK" for JWT_OK. */
extern CollabErrorCode jwt_collab_error(JwtError err);
extern const char *jwt_error_code(JwtError err);

/* "HS256", "RS256" or "ES256". */
extern const char *jwt_algorithm_name(JwtAlgorithm alg);

#endif							/* COLLAB_JWT_H */
