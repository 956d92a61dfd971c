/*-------------------------------------------------------------------------
 *
 * jwt.c
 *	  JWT verification: HS256, RS256 and ES256 with OpenSSL 3.
 *
 * The order of checks is deliberate:
 *	1. shape: three canonical base64url segments, bounded length;
 *	2. header: a JSON object whose "alg" is one we support AND that fits
 *	   the configured keys (this is where "alg":"none" and algorithm
 *	   confusion die), no "crit", "typ" JWT if present;
 *	3. signature over the first two segments as received;
 *	4. only then the payload: parsed as JSON and its claims checked, so
 *	   that nobody without a key can reach the claim logic.
 *
 * Keys and algorithms are bound by the configuration only.  Header fields
 * such as "jwk", "jku", "x5u", "x5c" and "kid" never select or supply a key
 * (kid is merely reported), so a token cannot bring its own key.
 *
 * The module returns errors instead of raising them; the caller decides
 * (CONNECT_ERROR for the Socket.IO worker, ereport for SQL).  On failure
 * we clear OpenSSL's error queue so that stale entries do not confuse
 * later TLS code in the same process.
 *
 *-------------------------------------------------------------------------
 */
#ifndef FRONTEND
#include "postgres.h"
#else
#include "postgres_fe.h"
#endif

#include <errno.h>
#include <limits.h>
#include <stdio.h>

#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/obj_mac.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include "collab.h"
#include "json_object.h"
#include "jwt.h"

#define HS256_MAC_LEN	32
#define ES256_SIG_LEN	64		/* R || S, 32 bytes each (RFC 7518 3.4) */
#define RSA_MIN_BITS	2048	/* RFC 7518 3.3 */

typedef enum KeyKind
{
	KEY_NONE,
	KEY_RSA,
	KEY_EC_P256,
	KEY_OTHER
} KeyKind;

/* Everything jwt_verify() allocates on the way, freed in one place. */
typedef struct Scratch
{
	unsigned char *header;
	unsigned char *payload;
	unsigned char *sig;
	JsonObject	hdr;
	JsonObject	claims;
	JsonArray	aud;
	JsonArray	groups;
} Scratch;

static JwtError verify_token(const JwtConfig *cfg, const char *token,
							 size_t len, int64 now, JwtClaims *out,
							 char **msg, Scratch *s);

CollabErrorCode
jwt_collab_error(JwtError err)
{
	switch (err)
	{
		case JWT_OK:
			break;
		case JWT_TOKEN_MISSING:
			return CE_AUTH_TOKEN_MISSING;
		case JWT_TOKEN_INVALID:
			return CE_AUTH_TOKEN_INVALID;
		case JWT_TOKEN_EXPIRED:
			return CE_AUTH_TOKEN_EXPIRED;
		case JWT_SIGNATURE_INVALID:
			return CE_AUTH_SIGNATURE_INVALID;
		case JWT_ALGORITHM_UNSUPPORTED:
			return CE_AUTH_ALGORITHM_UNSUPPORTED;
		case JWT_CLAIM_INVALID:
			return CE_AUTH_CLAIM_INVALID;
		case JWT_INTERNAL:
			break;
	}
	return CE_INTERNAL;
}

const char *
jwt_error_code(JwtError err)
{
	return err == JWT_OK ? "OK" : collab_errors[jwt_collab_error(err)].code;
}

const char *
jwt_algorithm_name(JwtAlgorithm alg)
{
	switch (alg)
	{
		case JWT_ALG_HS256:
			return "HS256";
		case JWT_ALG_RS256:
			return "RS256";
		case JWT_ALG_ES256:
			return "ES256";
	}
	return "?";
}

static KeyKind
key_kind(EVP_PKEY *pkey)
{
	char		group[80];

	if (pkey == NULL)
		return KEY_NONE;
	/* "RSA" only: an RSA-PSS-restricted key is not usable for RS256 */
	if (EVP_PKEY_is_a(pkey, "RSA"))
		return KEY_RSA;
	if (EVP_PKEY_is_a(pkey, "EC") &&
		EVP_PKEY_get_group_name(pkey, group, sizeof(group), NULL) == 1 &&
		(OBJ_sn2nid(group) == NID_X9_62_prime256v1 ||
		 EC_curve_nist2nid(group) == NID_X9_62_prime256v1))
		return KEY_EC_P256;
	return KEY_OTHER;
}

EVP_PKEY *
jwt_load_public_key_pem(const char *path, char **errmsg)
{
	FILE	   *fp;
	EVP_PKEY   *pkey;
	char	   *msg = NULL;

	fp = fopen(path, "r");
	if (fp == NULL)
	{
		msg = psprintf("could not open public key file \"%s\": %s",
					   path, strerror(errno));
		pkey = NULL;
	}
	else
	{
		pkey = PEM_read_PUBKEY(fp, NULL, NULL, NULL);
		fclose(fp);
		if (pkey == NULL)
			msg = psprintf("file \"%s\" does not contain a PEM public key "
						   "(\"BEGIN PUBLIC KEY\", as written by \"openssl pkey -pubout\")",
						   path);
		else if (key_kind(pkey) == KEY_RSA)
		{
			if (EVP_PKEY_get_bits(pkey) < RSA_MIN_BITS)
				msg = psprintf("RSA public key in \"%s\" has %d bits, at least %d are required",
							   path, EVP_PKEY_get_bits(pkey), RSA_MIN_BITS);
		}
		else if (key_kind(pkey) != KEY_EC_P256)
			msg = psprintf("public key in \"%s\" is neither RSA nor EC P-256",
						   path);
	}
	ERR_clear_error();

	if (msg && pkey)
	{
		EVP_PKEY_free(pkey);
		pkey = NULL;
	}
	if (errmsg)
		*errmsg = msg;
	else if (msg)
		pfree(msg);
	return pkey;
}

JwtError
jwt_verify(const JwtConfig *cfg, const char *token, size_t len,
		   int64 now_unix, JwtClaims *out, char **errmsg)
{
	Scratch		s;
	char	   *msg = NULL;
	JwtError	err;

	memset(out, 0, sizeof(JwtClaims));
	memset(&s, 0, sizeof(s));

	err = verify_token(cfg, token, len, now_unix, out, &msg, &s);

	if (s.header)
		pfree(s.header);
	if (s.payload)
		pfree(s.payload);
	if (s.sig)
		pfree(s.sig);
	json_object_free(&s.hdr);
	json_object_free(&s.claims);
	json_array_free(&s.aud);
	json_array_free(&s.groups);

	if (err != JWT_OK)
	{
		jwt_claims_free(out);
		ERR_clear_error();
	}
	if (errmsg)
		*errmsg = msg;
	else if (msg)
		pfree(msg);
	return err;
}

void
jwt_claims_free(JwtClaims *claims)
{
	if (claims->sub)
		pfree(claims->sub);
	if (claims->display_name)
		pfree(claims->display_name);
	if (claims->iss)
		pfree(claims->iss);
	if (claims->kid)
		pfree(claims->kid);
	for (int i = 0; i < claims->ngroups; i++)
		pfree(claims->groups[i]);
	if (claims->groups)
		pfree(claims->groups);
	memset(claims, 0, sizeof(JwtClaims));
}

static JwtError
fail(char **msg, JwtError err, const char *text)
{
	*msg = pstrdup(text);
	return err;
}

static int
b64url_value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '-')
		return 62;
	if (c == '_')
		return 63;
	return -1;
}

/*
 * Decode unpadded base64url (RFC 7515 section 2).  Only the canonical form
 * is accepted: no padding, no whitespace, no '+' or '/', and the unused low
 * bits of the last character must be zero.  Thus every byte string has
 * exactly one accepted encoding and signatures are not malleable.
 */
static bool
b64url_decode(const char *in, size_t len, unsigned char **out, size_t *outlen)
{
	unsigned char *buf;
	size_t		n = 0;
	uint32		acc = 0;
	int			bits = 0;

	if (len % 4 == 1)
		return false;
	buf = palloc(len / 4 * 3 + 3);
	for (size_t i = 0; i < len; i++)
	{
		int			v = b64url_value((unsigned char) in[i]);

		if (v < 0)
		{
			pfree(buf);
			return false;
		}
		acc = (acc << 6) | v;
		bits += 6;
		if (bits >= 8)
		{
			bits -= 8;
			buf[n++] = (unsigned char) (acc >> bits);
			acc &= (1U << bits) - 1;
		}
	}
	if (acc != 0)
	{
		pfree(buf);
		return false;
	}
	*out = buf;
	*outlen = n;
	return true;
}

/* short, harmless-looking values may be quoted back in messages */
static bool
quotable(const char *s, size_t len)
{
	if (len == 0 || len > 16)
		return false;
	for (size_t i = 0; i < len; i++)
	{
		if (!((s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= 'a' && s[i] <= 'z') ||
			  (s[i] >= '0' && s[i] <= '9') || s[i] == '-' || s[i] == '_'))
			return false;
	}
	return true;
}

static JwtError
verify_hs256(const JwtConfig *cfg, const char *input, size_t inlen,
			 const unsigned char *sig, size_t siglen)
{
	unsigned char mac[EVP_MAX_MD_SIZE];
	unsigned int maclen = 0;
	bool		ok;

	if (cfg->hs_secret_len > INT_MAX)
		return JWT_INTERNAL;
	if (HMAC(EVP_sha256(), cfg->hs_secret, (int) cfg->hs_secret_len,
			 (const unsigned char *) input, inlen, mac, &maclen) == NULL)
		return JWT_INTERNAL;
	/* length is public; the comparison of the bytes is constant-time */
	ok = (maclen == HS256_MAC_LEN && siglen == maclen &&
		  CRYPTO_memcmp(mac, sig, maclen) == 0);
	OPENSSL_cleanse(mac, sizeof(mac));
	return ok ? JWT_OK : JWT_SIGNATURE_INVALID;
}

/* SHA-256 signature check with a public key; sig is DER for ECDSA. */
static JwtError
verify_pkey(EVP_PKEY *pkey, bool rsa, const char *input, size_t inlen,
			const unsigned char *sig, size_t siglen)
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	EVP_PKEY_CTX *pctx = NULL;
	JwtError	err = JWT_INTERNAL;

	if (ctx != NULL &&
		EVP_DigestVerifyInit(ctx, &pctx, EVP_sha256(), NULL, pkey) == 1 &&
		(!rsa || EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PADDING) > 0))
	{
		/* anything but 1 (0 = mismatch, <0 = malformed) is a failure */
		err = (EVP_DigestVerify(ctx, sig, siglen,
								(const unsigned char *) input, inlen) == 1)
			? JWT_OK : JWT_SIGNATURE_INVALID;
	}
	EVP_MD_CTX_free(ctx);
	return err;
}

/* JWS carries ECDSA signatures as raw R || S; OpenSSL wants DER. */
static JwtError
verify_es256(EVP_PKEY *pkey, const char *input, size_t inlen,
			 const unsigned char *sig, size_t siglen)
{
	BIGNUM	   *r;
	BIGNUM	   *s;
	ECDSA_SIG  *ecsig;
	unsigned char *der = NULL;
	int			derlen;
	JwtError	err;

	if (siglen != ES256_SIG_LEN)
		return JWT_SIGNATURE_INVALID;

	r = BN_bin2bn(sig, ES256_SIG_LEN / 2, NULL);
	s = BN_bin2bn(sig + ES256_SIG_LEN / 2, ES256_SIG_LEN / 2, NULL);
	ecsig = ECDSA_SIG_new();
	if (r == NULL || s == NULL || ecsig == NULL ||
		ECDSA_SIG_set0(ecsig, r, s) != 1)
	{
		BN_free(r);
		BN_free(s);
		ECDSA_SIG_free(ecsig);
		return JWT_INTERNAL;
	}
	/* ecsig owns r and s now */
	derlen = i2d_ECDSA_SIG(ecsig, &der);
	if (derlen <= 0)
		err = JWT_INTERNAL;
	else
		err = verify_pkey(pkey, false, input, inlen, der, derlen);
	OPENSSL_free(der);
	ECDSA_SIG_free(ecsig);
	return err;
}

/*
 * Characters refused in user ids and display names, which end up in
 * other people's presence lists and in logs: C0 controls, DEL, C1
 * controls (U+0080..U+009F), the line/paragraph separators U+2028/U+2029
 * and the bidi embedding/override/isolate controls U+202A..U+202E and
 * U+2066..U+2069 (which can make one name display as another).  The input
 * is valid UTF-8 (json_object guarantees it).
 */
static bool
has_forbidden_chars(const char *str, size_t len)
{
	const unsigned char *s = (const unsigned char *) str;

	for (size_t i = 0; i < len; i++)
	{
		if (s[i] < 0x20 || s[i] == 0x7f)
			return true;
		if (s[i] == 0xc2 && i + 1 < len && s[i + 1] >= 0x80 && s[i + 1] <= 0x9f)
			return true;
		if (s[i] == 0xe2 && i + 2 < len)
		{
			if (s[i + 1] == 0x80 && s[i + 2] >= 0xa8 && s[i + 2] <= 0xae)
				return true;
			if (s[i + 1] == 0x81 && s[i + 2] >= 0xa6 && s[i + 2] <= 0xa9)
				return true;
		}
	}
	return false;
}

/* A display-name candidate is usable if it is not blank and no e-mail. */
static bool
usable_name(const char *s)
{
	bool		blank = true;

	if (s == NULL || strchr(s, '@') != NULL)
		return false;
	for (; *s; s++)
		if (*s != ' ')
			blank = false;
	return !blank;
}

/* Copy at most JWT_MAX_DISPLAY_NAME_LEN bytes, not splitting a character. */
static char *
truncate_name(const char *s, size_t len)
{
	if (len > JWT_MAX_DISPLAY_NAME_LEN)
	{
		len = JWT_MAX_DISPLAY_NAME_LEN;
		while (len > 0 && (((unsigned char) s[len]) & 0xc0) == 0x80)
			len--;
	}
	return pnstrdup(s, len);
}

/*
 * Optional string claim used for a display name: absent or null is fine,
 * another type or a forbidden character is not.
 */
static bool
optional_name_claim(const JsonObject *claims, const char *key,
					const char **val)
{
	const JsonMember *m = json_object_get(claims, key);
	size_t		len;

	*val = NULL;
	if (m == NULL || m->kind == JSON_KIND_NULL)
		return true;
	if (json_member_string(m, val, &len) != JSON_GET_OK ||
		has_forbidden_chars(*val, len))
		return false;
	return true;
}

static JwtError
check_audience(const JwtConfig *cfg, const JsonObject *claims, Scratch *s,
			   char **msg)
{
	const JsonMember *m = json_object_get(claims, "aud");
	const char *aud;

	if (m == NULL)
		return fail(msg, JWT_CLAIM_INVALID,
					"token has no audience (\"aud\") but one is required");
	if (json_member_string(m, &aud, NULL) == JSON_GET_OK)
	{
		if (strcmp(aud, cfg->audience) == 0)
			return JWT_OK;
	}
	else if (m->kind == JSON_KIND_ARRAY &&
			 json_array_parse(m->value, m->len, &s->aud, NULL))
	{
		bool		found = false;

		for (int i = 0; i < s->aud.nelems; i++)
		{
			if (json_member_string(&s->aud.elems[i], &aud, NULL) != JSON_GET_OK)
				return fail(msg, JWT_CLAIM_INVALID,
							"token audience (\"aud\") must be a string or an array of strings");
			if (strcmp(aud, cfg->audience) == 0)
				found = true;
		}
		if (found)
			return JWT_OK;
	}
	else
		return fail(msg, JWT_CLAIM_INVALID,
					"token audience (\"aud\") must be a string or an array of strings");

	return fail(msg, JWT_CLAIM_INVALID,
				"token audience (\"aud\") does not include this service");
}

/*
 * The groups claim: its strings become out->groups.  Access decisions take
 * each one as a subject group:<name>, so anything that is not plainly a
 * list of names fails the token rather than being partly read.
 */
static JwtError
read_groups(const JwtConfig *cfg, const JsonObject *claims, Scratch *s,
			JwtClaims *out, char **msg)
{
	const JsonMember *m = json_object_get(claims, cfg->groups_claim);
	const char *name = quotable(cfg->groups_claim, strlen(cfg->groups_claim))
		? cfg->groups_claim : "groups";

	if (m == NULL || m->kind == JSON_KIND_NULL)
		return JWT_OK;
	if (m->kind != JSON_KIND_ARRAY || !json_array_parse(m->value, m->len, &s->groups, NULL))
	{
		*msg = psprintf("token claim \"%s\" must be an array of group names", name);
		return JWT_CLAIM_INVALID;
	}
	if (s->groups.nelems > JWT_MAX_GROUPS)
	{
		*msg = psprintf("token claim \"%s\" has more than %d groups", name, JWT_MAX_GROUPS);
		return JWT_CLAIM_INVALID;
	}
	out->groups = palloc0(sizeof(char *) * Max(s->groups.nelems, 1));
	for (int i = 0; i < s->groups.nelems; i++)
	{
		const char *g;
		size_t		glen;

		if (json_member_string(&s->groups.elems[i], &g, &glen) != JSON_GET_OK ||
			glen == 0 || glen > JWT_MAX_GROUP_LEN || has_forbidden_chars(g, glen))
		{
			*msg = psprintf("token claim \"%s\" must be an array of group names: non-empty strings of at most %d bytes without control characters",
							name, JWT_MAX_GROUP_LEN);
			return JWT_CLAIM_INVALID;
		}
		out->groups[out->ngroups++] = pnstrdup(g, glen);
	}
	return JWT_OK;
}

static JwtError
verify_token(const JwtConfig *cfg, const char *token, size_t len, int64 now,
			 JwtClaims *out, char **msg, Scratch *s)
{
	const char *dot1;
	const char *dot2;
	size_t		header_len;
	size_t		payload_len;
	size_t		sig_len;
	const char *alg;
	size_t		alg_len;
	const JsonMember *m;
	const char *str;
	JwtAlgorithm algo;
	JwtError	err;
	int			leeway = Max(cfg->leeway_s, 0);
	int64		exp;
	int64		nbf = 0;
	int64		iat = 0;
	const char *iss = NULL;
	const char *sub;
	size_t		sub_len;
	const char *name;
	const char *preferred;

	if (token == NULL || len == 0)
		return fail(msg, JWT_TOKEN_MISSING, "no authentication token was provided");
	if (len > JWT_MAX_TOKEN_LEN)
		return fail(msg, JWT_TOKEN_INVALID, "authentication token is too long");

	/* 1. shape: header.payload.signature */
	dot1 = memchr(token, '.', len);
	dot2 = dot1 ? memchr(dot1 + 1, '.', token + len - (dot1 + 1)) : NULL;
	if (dot2 == NULL || memchr(dot2 + 1, '.', token + len - (dot2 + 1)) != NULL)
		return fail(msg, JWT_TOKEN_INVALID,
					"authentication token is malformed: expected three dot-separated parts");
	if (dot1 == token || dot2 == dot1 + 1)
		return fail(msg, JWT_TOKEN_INVALID,
					"authentication token is malformed: empty header or payload");
	if (!b64url_decode(token, dot1 - token, &s->header, &header_len) ||
		!b64url_decode(dot1 + 1, dot2 - (dot1 + 1), &s->payload, &payload_len) ||
		!b64url_decode(dot2 + 1, token + len - (dot2 + 1), &s->sig, &sig_len))
		return fail(msg, JWT_TOKEN_INVALID,
					"authentication token is malformed: a part is not valid unpadded base64url");

	/* 2. header */
	if (!json_object_parse((const char *) s->header, header_len, &s->hdr, NULL))
		return fail(msg, JWT_TOKEN_INVALID,
					"authentication token header is not a valid JSON object");

	if (json_object_get_string(&s->hdr, "alg", &alg, &alg_len) != JSON_GET_OK)
		return fail(msg, JWT_ALGORITHM_UNSUPPORTED,
					"authentication token does not name a signature algorithm");
	if (strcmp(alg, "HS256") == 0)
		algo = JWT_ALG_HS256;
	else if (strcmp(alg, "RS256") == 0)
		algo = JWT_ALG_RS256;
	else if (strcmp(alg, "ES256") == 0)
		algo = JWT_ALG_ES256;
	else if (pg_strcasecmp(alg, "none") == 0)
		return fail(msg, JWT_ALGORITHM_UNSUPPORTED,
					"unsigned authentication tokens (algorithm \"none\") are not accepted");
	else
	{
		if (quotable(alg, alg_len))
			*msg = psprintf("token signature algorithm \"%s\" is not supported (supported: HS256, RS256, ES256)",
							alg);
		else
			*msg = pstrdup("token signature algorithm is not supported (supported: HS256, RS256, ES256)");
		return JWT_ALGORITHM_UNSUPPORTED;
	}

	/*
	 * Algorithm confusion: the algorithm must fit a configured key.  The
	 * HMAC secret is only ever cfg->hs_secret, never public key bytes.
	 */
	if (algo == JWT_ALG_HS256 && (cfg->hs_secret == NULL || cfg->hs_secret_len == 0))
		return fail(msg, JWT_ALGORITHM_UNSUPPORTED,
					"HS256 tokens are not accepted: no shared secret is configured");
	if (algo == JWT_ALG_RS256 && key_kind(cfg->public_key) != KEY_RSA)
		return fail(msg, JWT_ALGORITHM_UNSUPPORTED,
					"RS256 tokens are not accepted: no RSA public key is configured");
	if (algo == JWT_ALG_ES256 && key_kind(cfg->public_key) != KEY_EC_P256)
		return fail(msg, JWT_ALGORITHM_UNSUPPORTED,
					"ES256 tokens are not accepted: no EC P-256 public key is configured");

	m = json_object_get(&s->hdr, "typ");
	if (m && (json_member_string(m, &str, NULL) != JSON_GET_OK ||
			  pg_strcasecmp(str, "JWT") != 0))
		return fail(msg, JWT_TOKEN_INVALID,
					"authentication token type (\"typ\") must be \"JWT\"");
	/* RFC 7515 4.1.11: we understand no extensions, so any "crit" fails */
	if (json_object_get(&s->hdr, "crit") != NULL)
		return fail(msg, JWT_TOKEN_INVALID,
					"authentication token uses critical header extensions (\"crit\"), which are not supported");
	m = json_object_get(&s->hdr, "kid");
	if (m && json_member_string(m, &str, NULL) != JSON_GET_OK)
		return fail(msg, JWT_TOKEN_INVALID,
					"authentication token key id (\"kid\") must be a string");

	/* 3. signature, over the first two segments exactly as received */
	if (algo == JWT_ALG_HS256)
		err = verify_hs256(cfg, token, dot2 - token, s->sig, sig_len);
	else if (algo == JWT_ALG_RS256)
		err = (sig_len == (size_t) EVP_PKEY_get_size(cfg->public_key))
			? verify_pkey(cfg->public_key, true, token, dot2 - token, s->sig, sig_len)
			: JWT_SIGNATURE_INVALID;
	else
		err = verify_es256(cfg->public_key, token, dot2 - token, s->sig, sig_len);
	if (err == JWT_INTERNAL)
		return fail(msg, err, "could not verify the token signature (internal error)");
	if (err != JWT_OK)
		return fail(msg, err, "authentication token signature is invalid");

	/* 4. payload and claims */
	if (!json_object_parse((const char *) s->payload, payload_len, &s->claims, NULL))
		return fail(msg, JWT_TOKEN_INVALID,
					"authentication token payload is not a valid JSON object");

	/*
	 * "exp" is REQUIRED although RFC 7519 makes it optional: a token
	 * without expiry would grant access forever once leaked, and it could
	 * not be revoked either.  NumericDates must be integer-valued (see
	 * json_member_int64); a fractional or non-numeric date is refused
	 * rather than rounded.
	 */
	switch (json_object_get_int64(&s->claims, "exp", &exp))
	{
		case JSON_GET_OK:
			break;
		case JSON_GET_MISSING:
			return fail(msg, JWT_CLAIM_INVALID,
						"authentication token has no expiry time (\"exp\")");
		default:
			return fail(msg, JWT_CLAIM_INVALID,
						"token expiry time (\"exp\") must be an integer number of seconds");
	}
	if (exp <= now - leeway)
		return fail(msg, JWT_TOKEN_EXPIRED, "authentication token has expired");

	if (json_object_get(&s->claims, "nbf") != NULL &&
		json_object_get_int64(&s->claims, "nbf", &nbf) != JSON_GET_OK)
		return fail(msg, JWT_CLAIM_INVALID,
					"token start time (\"nbf\") must be an integer number of seconds");
	if (nbf > now + leeway)
		return fail(msg, JWT_CLAIM_INVALID, "authentication token is not valid yet");

	if (json_object_get(&s->claims, "iat") != NULL &&
		(json_object_get_int64(&s->claims, "iat", &iat) != JSON_GET_OK ||
		 iat < 0 || iat > JWT_MAX_IAT))
		return fail(msg, JWT_CLAIM_INVALID,
					"token issue time (\"iat\") must be an integer number of seconds since 1970");

	if (json_object_get(&s->claims, "iss") != NULL &&
		json_object_get_string(&s->claims, "iss", &iss, NULL) != JSON_GET_OK)
		return fail(msg, JWT_CLAIM_INVALID, "token issuer (\"iss\") must be a string");
	if (cfg->issuer && cfg->issuer[0] &&
		(iss == NULL || strcmp(iss, cfg->issuer) != 0))
		return fail(msg, JWT_CLAIM_INVALID,
					"token issuer (\"iss\") is not the configured issuer");

	if (cfg->audience && cfg->audience[0])
	{
		err = check_audience(cfg, &s->claims, s, msg);
		if (err != JWT_OK)
			return err;
	}

	if (json_object_get_string(&s->claims, "sub", &sub, &sub_len) != JSON_GET_OK ||
		sub_len == 0)
		return fail(msg, JWT_CLAIM_INVALID,
					"token subject (\"sub\") must be a non-empty string");
	if (sub_len > JWT_MAX_SUB_LEN)
		return fail(msg, JWT_CLAIM_INVALID, "token subject (\"sub\") is too long");
	if (has_forbidden_chars(sub, sub_len))
		return fail(msg, JWT_CLAIM_INVALID,
					"token subject (\"sub\") contains control characters");
	/* "*" stands for every user in grants: nobody may be it */
	if (strcmp(sub, "*") == 0)
		return fail(msg, JWT_CLAIM_INVALID,
					"token subject (\"sub\") must not be \"*\"");

	if (cfg->groups_claim && cfg->groups_claim[0])
	{
		err = read_groups(cfg, &s->claims, s, out, msg);
		if (err != JWT_OK)
			return err;
	}

	if (!optional_name_claim(&s->claims, "name", &name) ||
		!optional_name_claim(&s->claims, "preferred_username", &preferred))
		return fail(msg, JWT_CLAIM_INVALID,
					"token claims \"name\" and \"preferred_username\" must be strings without control characters");

	/*
	 * Display name: "name", else "preferred_username", else "sub", never
	 * an e-mail address (other users see it).  A candidate containing '@'
	 * is skipped; if "sub" itself is one, its local part is shown.
	 */
	if (usable_name(name))
		out->display_name = truncate_name(name, strlen(name));
	else if (usable_name(preferred))
		out->display_name = truncate_name(preferred, strlen(preferred));
	else
	{
		const char *at = strchr(sub, '@');
		size_t		n = at ? (size_t) (at - sub) : sub_len;

		out->display_name = (n > 0) ? truncate_name(sub, n) : pstrdup("user");
	}

	out->alg = algo;
	out->sub = pstrdup(sub);
	out->iss = iss ? pstrdup(iss) : NULL;
	m = json_object_get(&s->hdr, "kid");
	out->kid = m ? pstrdup(m->value) : NULL;
	out->exp = exp;
	out->nbf = nbf;
	out->iat = iat;
	out->has_iat = json_object_get(&s->claims, "iat") != NULL;
	return JWT_OK;
}
