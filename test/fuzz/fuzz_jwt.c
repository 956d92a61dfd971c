/*
 * fuzz_jwt.c
 *	  libFuzzer harness for JWT parsing and verification with an HS256
 *	  secret.
 *
 *	  The input is verified twice.  First as a token, as received, against
 *	  a secret that signed none of the seeds: nothing may crash, and no
 *	  token may verify, since the fuzzer cannot sign.  Then as "header JSON <newline> payload JSON" (or just a payload
 *	  JSON, under a plain HS256 header), which the harness encodes and signs
 *	  with the secret itself so that the header checks after the signature
 *	  and the claim checks, which nobody without the key reaches, are
 *	  fuzzed too, with and without an issuer and audience configured.
 *	  Whatever verifies must hold the promises of jwt.h: a non-empty sub of
 *	  bounded length, a non-empty display name without '@', exp present.
 */
#include "postgres_fe.h"

#include <openssl/hmac.h>

#include "jwt.h"
#include "lib/stringinfo.h"

#define SECRET "fuzzing-secret-fuzzing-secret-0123456789"
#define UNUSED_SECRET "no-seed-is-signed-with-this-secret-0123456789"
#define NOW 1800000000

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
b64url(StringInfo out, const uint8_t *in, size_t len)
{
	static const char tab[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	size_t		i;

	for (i = 0; i + 2 < len; i += 3)
	{
		uint32		v = (in[i] << 16) | (in[i + 1] << 8) | in[i + 2];

		appendStringInfoChar(out, tab[(v >> 18) & 63]);
		appendStringInfoChar(out, tab[(v >> 12) & 63]);
		appendStringInfoChar(out, tab[(v >> 6) & 63]);
		appendStringInfoChar(out, tab[v & 63]);
	}
	if (len - i == 1)
	{
		appendStringInfoChar(out, tab[in[i] >> 2]);
		appendStringInfoChar(out, tab[(in[i] & 3) << 4]);
	}
	else if (len - i == 2)
	{
		uint32		v = (in[i] << 8) | in[i + 1];

		appendStringInfoChar(out, tab[(v >> 10) & 63]);
		appendStringInfoChar(out, tab[(v >> 4) & 63]);
		appendStringInfoChar(out, tab[(v << 2) & 63]);
	}
}

static void
check_claims(const JwtClaims *c)
{
	if (c->sub == NULL || c->sub[0] == '\0' || strlen(c->sub) > JWT_MAX_SUB_LEN)
		__builtin_trap();
	if (c->display_name == NULL || c->display_name[0] == '\0' ||
		strchr(c->display_name, '@') != NULL ||
		strlen(c->display_name) > JWT_MAX_DISPLAY_NAME_LEN)
		__builtin_trap();
	if (c->exp == 0 || c->alg != JWT_ALG_HS256)
		__builtin_trap();
}

static void
verify(const JwtConfig *cfg, const char *token, size_t len, bool may_verify)
{
	JwtClaims	claims;
	char	   *errmsg = NULL;
	JwtError	err = jwt_verify(cfg, token, len, NOW, &claims, &errmsg);

	if (err == JWT_OK)
	{
		if (!may_verify || errmsg != NULL)
			__builtin_trap();
		check_claims(&claims);
		jwt_claims_free(&claims);
	}
	else
	{
		/* every failure explains itself, and never quotes the secret */
		if (errmsg == NULL || strstr(errmsg, SECRET) != NULL ||
			strstr(errmsg, UNUSED_SECRET) != NULL)
			__builtin_trap();
		pfree(errmsg);
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	JwtConfig	cfg = {0};
	const uint8_t *nl = memchr(data, '\n', size);
	static const char plain_header[] = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";
	StringInfoData tok;
	unsigned char mac[32];
	unsigned int maclen = 0;

	cfg.leeway_s = 30;

	/* 1. the bytes as a token: the fuzzer cannot forge a signature */
	cfg.hs_secret = UNUSED_SECRET;
	cfg.hs_secret_len = strlen(UNUSED_SECRET);
	verify(&cfg, (const char *) data, size, false);
	cfg.hs_secret = SECRET;
	cfg.hs_secret_len = strlen(SECRET);

	/* 2. header and payload JSON, signed here */
	initStringInfo(&tok);
	if (nl)
	{
		b64url(&tok, data, nl - data);
		appendStringInfoChar(&tok, '.');
		b64url(&tok, nl + 1, size - (nl + 1 - data));
	}
	else
	{
		b64url(&tok, (const uint8_t *) plain_header, strlen(plain_header));
		appendStringInfoChar(&tok, '.');
		b64url(&tok, data, size);
	}
	if (HMAC(EVP_sha256(), SECRET, strlen(SECRET), (unsigned char *) tok.data,
			 tok.len, mac, &maclen) == NULL)
		__builtin_trap();
	appendStringInfoChar(&tok, '.');
	b64url(&tok, mac, maclen);

	verify(&cfg, tok.data, tok.len, true);
	cfg.issuer = "https://issuer.example";
	cfg.audience = "collab";
	verify(&cfg, tok.data, tok.len, true);

	pfree(tok.data);
	return 0;
}
