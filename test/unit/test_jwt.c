/*-------------------------------------------------------------------------
 *
 * test_jwt.c
 *	  Unit tests for src/jwt.c, built as a frontend program (-DFRONTEND,
 *	  libpgcommon/libpgport, OpenSSL); no server needed.
 *
 * Keys are generated at run time with the OpenSSL API; public keys are
 * written to a private temporary directory to exercise the PEM loader and
 * removed at the end.  Tokens are built and signed here with OpenSSL
 * directly, independently of the code under test.
 *
 * Prints failures (every check with VERBOSE=1) and ends with the line
 * "<program>: N passed, M failed" that the Makefile adds up.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres_fe.h"

#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>

#include "lib/stringinfo.h"
#include "jwt.h"

#define NOW		INT64CONST(1700000000)
#define SECRET	"unit-test-shared-secret-0123456789abcdef"

static int	n_pass;
static int	n_fail;
static bool verbose;

static EVP_PKEY *rsa_key;		/* private keys, for signing */
static EVP_PKEY *rsa_other;
static EVP_PKEY *ec_key;
static EVP_PKEY *ec_other;
static EVP_PKEY *ec384_key;
static EVP_PKEY *rsa_pub;		/* public keys, loaded through the loader */
static EVP_PKEY *ec_pub;
static char *rsa_pub_pem;		/* PEM text of the RSA public key */

static JwtConfig cfg_hs;
static JwtConfig cfg_rsa;
static JwtConfig cfg_ec;
static JwtConfig cfg_both;
static JwtConfig cfg_strict;	/* HS256 with issuer and audience */

static char tmpdir[] = "/tmp/collab_jwt_test_XXXXXX";

#define CHECK(cond, name) check((cond), (name), __LINE__)

static void
check(bool ok, const char *name, int line)
{
	if (ok)
		n_pass++;
	else
		n_fail++;
	if (!ok || verbose)
		printf("%s jwt: %s (line %d)\n", ok ? "ok  " : "FAIL", name, line);
}

static void
die(const char *what)
{
	fprintf(stderr, "test_jwt: setup failed: %s\n", what);
	exit(2);
}

/* ---- token construction (independent of the code under test) ---- */

static char *
b64url(const void *data, size_t len)
{
	static const char tab[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	const unsigned char *d = data;
	StringInfoData buf;
	size_t		i;

	initStringInfo(&buf);
	for (i = 0; i + 2 < len; i += 3)
	{
		appendStringInfoChar(&buf, tab[d[i] >> 2]);
		appendStringInfoChar(&buf, tab[((d[i] & 3) << 4) | (d[i + 1] >> 4)]);
		appendStringInfoChar(&buf, tab[((d[i + 1] & 15) << 2) | (d[i + 2] >> 6)]);
		appendStringInfoChar(&buf, tab[d[i + 2] & 63]);
	}
	if (len - i == 1)
	{
		appendStringInfoChar(&buf, tab[d[i] >> 2]);
		appendStringInfoChar(&buf, tab[(d[i] & 3) << 4]);
	}
	else if (len - i == 2)
	{
		appendStringInfoChar(&buf, tab[d[i] >> 2]);
		appendStringInfoChar(&buf, tab[((d[i] & 3) << 4) | (d[i + 1] >> 4)]);
		appendStringInfoChar(&buf, tab[(d[i + 1] & 15) << 2]);
	}
	return buf.data;
}

typedef enum SignKind
{
	SIGN_EMPTY,					/* no signature at all ("h.p.") */
	SIGN_HMAC,					/* HMAC with 'secret' and 'md' */
	SIGN_RSA,					/* RSASSA-PKCS1-v1_5 with 'key', SHA-256 */
	SIGN_EC_RAW,				/* ECDSA with 'key', JWS raw R||S */
	SIGN_EC_DER					/* ECDSA with 'key', DER (wrong for JWS) */
} SignKind;

typedef struct Signer
{
	SignKind	kind;
	EVP_PKEY   *key;
	const char *secret;
	size_t		secret_len;
	const EVP_MD *md;
} Signer;

static Signer
hs(void)
{
	Signer		s = {SIGN_HMAC, NULL, SECRET, strlen(SECRET), EVP_sha256()};

	return s;
}

static Signer
rs(EVP_PKEY *key)
{
	Signer		s = {SIGN_RSA, key, NULL, 0, EVP_sha256()};

	return s;
}

static Signer
es(EVP_PKEY *key)
{
	Signer		s = {SIGN_EC_RAW, key, NULL, 0, EVP_sha256()};

	return s;
}

/* raw signature bytes over 'input'; *len set; palloc'd */
static unsigned char *
sign_bytes(Signer s, const char *input, size_t *len)
{
	unsigned char *out = palloc(1024);

	if (s.kind == SIGN_EMPTY)
		*len = 0;
	else if (s.kind == SIGN_HMAC)
	{
		unsigned int n;

		if (!HMAC(s.md, s.secret, (int) s.secret_len,
				  (const unsigned char *) input, strlen(input), out, &n))
			die("HMAC");
		*len = n;
	}
	else
	{
		EVP_MD_CTX *ctx = EVP_MD_CTX_new();
		size_t		n = 1024;

		if (!ctx || EVP_DigestSignInit(ctx, NULL, s.md, NULL, s.key) != 1 ||
			EVP_DigestSign(ctx, out, &n, (const unsigned char *) input,
						   strlen(input)) != 1)
			die("EVP_DigestSign");
		EVP_MD_CTX_free(ctx);
		*len = n;
		if (s.kind == SIGN_EC_RAW)
		{
			const unsigned char *p = out;
			ECDSA_SIG  *sig = d2i_ECDSA_SIG(NULL, &p, (long) n);
			const BIGNUM *r,
					   *ss;

			if (!sig)
				die("d2i_ECDSA_SIG");
			ECDSA_SIG_get0(sig, &r, &ss);
			if (BN_bn2binpad(r, out, 32) != 32 || BN_bn2binpad(ss, out + 32, 32) != 32)
				die("BN_bn2binpad");
			ECDSA_SIG_free(sig);
			*len = 64;
		}
	}
	return out;
}

/* header and payload are JSON texts (any bytes); returns "h.p.sig" */
static char *
token_raw(const char *header, size_t hlen, const char *payload, size_t plen,
		  Signer s)
{
	char	   *h = b64url(header, hlen);
	char	   *p = b64url(payload, plen);
	char	   *input = psprintf("%s.%s", h, p);
	size_t		siglen;
	unsigned char *sig = sign_bytes(s, input, &siglen);
	char	   *sigb = b64url(sig, siglen);
	char	   *tok = psprintf("%s.%s", input, sigb);

	pfree(h);
	pfree(p);
	pfree(input);
	pfree(sig);
	pfree(sigb);
	return tok;
}

static char *
token(const char *header, const char *payload, Signer s)
{
	return token_raw(header, strlen(header), payload, strlen(payload), s);
}

/* a standard valid payload with the given extra members spliced in */
static char *
claims(const char *extra)
{
	return psprintf("{\"sub\":\"u-123\",\"exp\":1700003600,\"iat\":1700000000%s%s}",
					extra[0] ? "," : "", extra);
}

#define HS_HDR	"{\"alg\":\"HS256\",\"typ\":\"JWT\"}"
#define RS_HDR	"{\"alg\":\"RS256\",\"typ\":\"JWT\"}"
#define ES_HDR	"{\"alg\":\"ES256\",\"typ\":\"JWT\"}"

/* ---- verification helpers ---- */

static const char *last_display_name;
static JwtClaims last_claims;

/*
 * Verify and compare with the expected result.  Also checks that a
 * failure comes with a message that contains neither the secret nor the
 * token's signature.
 */
static bool
verify_len(const JwtConfig *cfg, const char *tok, size_t len, int64 now,
		   JwtError expect)
{
	char	   *msg = NULL;
	JwtError	got;
	bool		ok;

	jwt_claims_free(&last_claims);
	got = jwt_verify(cfg, tok, len, now, &last_claims, &msg);
	ok = (got == expect);
	if (got == JWT_OK)
		ok = ok && msg == NULL && last_claims.sub != NULL &&
			last_claims.display_name != NULL;
	else
	{
		const char *sig = tok ? strrchr(tok, '.') : NULL;

		ok = ok && msg != NULL && msg[0] != '\0' && last_claims.sub == NULL &&
			strstr(msg, SECRET) == NULL &&
			(sig == NULL || strlen(sig) < 8 || strstr(msg, sig + 1) == NULL);
	}
	if (!ok || verbose)
		printf("     expected %s, got %s: %s\n", jwt_error_code(expect),
			   jwt_error_code(got), msg ? msg : "(no message)");
	last_display_name = last_claims.display_name;
	if (msg)
		pfree(msg);
	return ok;
}

static bool
verify(const JwtConfig *cfg, const char *tok, JwtError expect)
{
	return verify_len(cfg, tok, tok ? strlen(tok) : 0, NOW, expect);
}

static bool
verify_at(const JwtConfig *cfg, const char *tok, int64 now, JwtError expect)
{
	return verify_len(cfg, tok, strlen(tok), now, expect);
}

/* sign payload with HS256 and verify with cfg_hs */
static bool
hs_payload(const char *payload, JwtError expect)
{
	char	   *tok = token(HS_HDR, payload, hs());
	bool		ok = verify(&cfg_hs, tok, expect);

	pfree(tok);
	return ok;
}

static bool
hs_claims(const char *extra, JwtError expect)
{
	char	   *payload = claims(extra);
	bool		ok = hs_payload(payload, expect);

	pfree(payload);
	return ok;
}

static bool
hs_header(const char *header, JwtError expect)
{
	char	   *payload = claims("");
	char	   *tok = token(header, payload, hs());
	bool		ok = verify(&cfg_hs, tok, expect);

	pfree(payload);
	pfree(tok);
	return ok;
}

static bool
display_is(const char *extra_json, const char *expect)
{
	char	   *payload = psprintf("{\"exp\":1700003600,%s}", extra_json);
	bool		ok = hs_payload(payload, JWT_OK) &&
		last_display_name && strcmp(last_display_name, expect) == 0;

	if (!ok)
		printf("     display name: got \"%s\", expected \"%s\"\n",
			   last_display_name ? last_display_name : "(null)", expect);
	pfree(payload);
	return ok;
}

/* ---- setup ---- */

static char *
write_pub(const char *name, EVP_PKEY *key, bool private)
{
	char	   *path = psprintf("%s/%s", tmpdir, name);
	FILE	   *fp = fopen(path, "w");

	if (!fp ||
		(private ? PEM_write_PrivateKey(fp, key, NULL, NULL, 0, NULL, NULL)
		 : PEM_write_PUBKEY(fp, key)) != 1)
		die("writing a PEM file");
	fclose(fp);
	return path;
}

static void
setup(void)
{
	BIO		   *bio;
	char	   *data;
	long		n;

	if (mkdtemp(tmpdir) == NULL)
		die("mkdtemp");
	rsa_key = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t) 2048);
	rsa_other = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t) 2048);
	ec_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	ec_other = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	ec384_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384");
	if (!rsa_key || !rsa_other || !ec_key || !ec_other || !ec384_key)
		die("key generation");

	bio = BIO_new(BIO_s_mem());
	if (!bio || PEM_write_bio_PUBKEY(bio, rsa_key) != 1)
		die("PEM_write_bio_PUBKEY");
	n = BIO_get_mem_data(bio, &data);
	rsa_pub_pem = pnstrdup(data, n);
	BIO_free(bio);

	cfg_hs.hs_secret = SECRET;
	cfg_hs.hs_secret_len = strlen(SECRET);
	cfg_hs.leeway_s = 30;
	cfg_strict = cfg_hs;
	cfg_strict.issuer = "https://idp.example";
	cfg_strict.audience = "collab";
}

static void
test_loader(void)
{
	char	   *err = NULL;
	char	   *path;
	EVP_PKEY   *k;
	EVP_PKEY   *rsa1024 = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t) 1024);
	FILE	   *fp;

	path = write_pub("rsa.pem", rsa_key, false);
	rsa_pub = jwt_load_public_key_pem(path, &err);
	CHECK(rsa_pub != NULL && err == NULL, "loader: RSA 2048 public key");
	path = write_pub("ec.pem", ec_key, false);
	ec_pub = jwt_load_public_key_pem(path, &err);
	CHECK(ec_pub != NULL && err == NULL, "loader: EC P-256 public key");

	path = write_pub("ec384.pem", ec384_key, false);
	k = jwt_load_public_key_pem(path, &err);
	CHECK(k == NULL && err != NULL, "loader: EC P-384 rejected");
	if (verbose && err)
		printf("     (%s)\n", err);

	path = write_pub("rsa1024.pem", rsa1024, false);
	k = jwt_load_public_key_pem(path, &err);
	CHECK(k == NULL && err != NULL && strstr(err, "2048") != NULL,
		  "loader: RSA 1024 rejected");

	path = write_pub("private.pem", rsa_key, true);
	k = jwt_load_public_key_pem(path, &err);
	CHECK(k == NULL && err != NULL && strstr(err, "PRIVATE") == NULL,
		  "loader: private key file is not a public key");

	path = psprintf("%s/garbage.pem", tmpdir);
	fp = fopen(path, "w");
	fputs("hello\n", fp);
	fclose(fp);
	k = jwt_load_public_key_pem(path, &err);
	CHECK(k == NULL && err != NULL, "loader: garbage file");

	k = jwt_load_public_key_pem("/nonexistent/collab/key.pem", &err);
	CHECK(k == NULL && err != NULL && strstr(err, "could not open") != NULL,
		  "loader: missing file");
	EVP_PKEY_free(rsa1024);

	if (!rsa_pub || !ec_pub)
		die("public keys did not load");
	cfg_rsa.public_key = rsa_pub;
	cfg_ec.public_key = ec_pub;
	cfg_both = cfg_hs;
	cfg_both.public_key = rsa_pub;
}

static void
cleanup(void)
{
	static const char *files[] = {"rsa.pem", "ec.pem", "ec384.pem", "rsa1024.pem",
	"private.pem", "garbage.pem"};

	for (int i = 0; i < lengthof(files); i++)
		unlink(psprintf("%s/%s", tmpdir, files[i]));
	rmdir(tmpdir);
}

/* ---- tests ---- */

static void
test_valid(void)
{
	char	   *p = claims("\"name\":\"Dr. Alice Smith\",\"nbf\":1699999000,\"iss\":\"idp\"");
	char	   *tok;

	tok = token(HS_HDR, p, hs());
	CHECK(verify(&cfg_hs, tok, JWT_OK), "valid HS256");
	CHECK(strcmp(last_claims.sub, "u-123") == 0 &&
		  strcmp(last_claims.display_name, "Dr. Alice Smith") == 0 &&
		  last_claims.exp == 1700003600 && last_claims.iat == 1700000000 &&
		  last_claims.nbf == 1699999000 && strcmp(last_claims.iss, "idp") == 0 &&
		  last_claims.kid == NULL && last_claims.alg == JWT_ALG_HS256,
		  "HS256 claims reported");
	CHECK(verify(&cfg_both, tok, JWT_OK), "valid HS256 with secret and RSA key configured");
	CHECK(verify(&cfg_rsa, tok, JWT_ALGORITHM_UNSUPPORTED), "HS256 without a secret configured");

	tok = token(RS_HDR, p, rs(rsa_key));
	CHECK(verify(&cfg_rsa, tok, JWT_OK), "valid RS256");
	CHECK(last_claims.alg == JWT_ALG_RS256 && strcmp(jwt_algorithm_name(last_claims.alg), "RS256") == 0,
		  "RS256 reported");
	CHECK(verify(&cfg_both, tok, JWT_OK), "valid RS256 with secret and RSA key configured");
	CHECK(verify(&cfg_hs, tok, JWT_ALGORITHM_UNSUPPORTED), "RS256 with only a secret configured");
	CHECK(verify(&cfg_ec, tok, JWT_ALGORITHM_UNSUPPORTED), "RS256 with an EC key configured");

	tok = token(ES_HDR, p, es(ec_key));
	CHECK(verify(&cfg_ec, tok, JWT_OK), "valid ES256");
	CHECK(last_claims.alg == JWT_ALG_ES256, "ES256 reported");
	CHECK(verify(&cfg_rsa, tok, JWT_ALGORITHM_UNSUPPORTED), "ES256 with an RSA key configured");
	CHECK(verify(&cfg_hs, tok, JWT_ALGORITHM_UNSUPPORTED), "ES256 with only a secret configured");
	{
		JwtConfig	c384 = {0};

		c384.public_key = ec384_key;
		CHECK(verify(&c384, tok, JWT_ALGORITHM_UNSUPPORTED), "ES256 with a P-384 key configured");
	}

	tok = token("{\"alg\":\"HS256\",\"typ\":\"jwt\",\"kid\":\"key-1\"}", p, hs());
	CHECK(verify(&cfg_hs, tok, JWT_OK), "typ is case-insensitive, kid accepted");
	CHECK(last_claims.kid && strcmp(last_claims.kid, "key-1") == 0, "kid reported");
	tok = token("{\"alg\":\"HS256\"}", p, hs());
	CHECK(verify(&cfg_hs, tok, JWT_OK), "typ is optional");
	tok = token("{\"alg\":\"HS256\",\"jwk\":{\"kty\":\"oct\",\"k\":\"AAAA\"},\"jku\":\"https://evil\"}", p, hs());
	CHECK(verify(&cfg_hs, tok, JWT_OK), "embedded jwk/jku are ignored (key comes from config)");
	pfree(p);
}

static void
test_alg_none_and_confusion(void)
{
	static const char *nones[] = {"none", "None", "NONE", "nOnE"};
	char	   *p = claims("");

	for (int i = 0; i < lengthof(nones); i++)
	{
		char	   *h = psprintf("{\"alg\":\"%s\",\"typ\":\"JWT\"}", nones[i]);
		Signer		empty = {SIGN_EMPTY};
		char	   *name;

		name = psprintf("alg %s without signature", nones[i]);
		CHECK(verify(&cfg_both, token(h, p, empty), JWT_ALGORITHM_UNSUPPORTED), name);
		name = psprintf("alg %s with an HMAC signature", nones[i]);
		CHECK(verify(&cfg_both, token(h, p, hs()), JWT_ALGORITHM_UNSUPPORTED), name);
		name = psprintf("alg %s, no keys at all", nones[i]);
		CHECK(verify(&(JwtConfig) {0}, token(h, p, empty), JWT_ALGORITHM_UNSUPPORTED), name);
	}

	/* the classic RS256 -> HS256 confusion: HMAC keyed with the public key */
	{
		Signer		s = {SIGN_HMAC, NULL, rsa_pub_pem, strlen(rsa_pub_pem), EVP_sha256()};
		char	   *tok = token(HS_HDR, p, s);

		CHECK(verify(&cfg_rsa, tok, JWT_ALGORITHM_UNSUPPORTED),
			  "HS256 keyed with the RSA public key PEM, RSA key configured");
		CHECK(verify(&cfg_both, tok, JWT_SIGNATURE_INVALID),
			  "HS256 keyed with the RSA public key PEM, secret and RSA key configured");
	}
	{
		unsigned char *der = NULL;
		int			n = i2d_PUBKEY(rsa_key, &der);
		Signer		s = {SIGN_HMAC, NULL, (const char *) der, n, EVP_sha256()};

		CHECK(verify(&cfg_rsa, token(HS_HDR, p, s), JWT_ALGORITHM_UNSUPPORTED),
			  "HS256 keyed with the RSA public key DER, RSA key configured");
		OPENSSL_free(der);
	}
	CHECK(verify(&(JwtConfig) {0}, token(HS_HDR, p, hs()), JWT_ALGORITHM_UNSUPPORTED),
		  "HS256 with nothing configured");
	{
		JwtConfig	empty_secret = {0};

		empty_secret.hs_secret = "";
		CHECK(verify(&empty_secret, token(HS_HDR, p, (Signer) {SIGN_HMAC, NULL, "", 0, EVP_sha256()}),
					 JWT_ALGORITHM_UNSUPPORTED), "HS256 with an empty secret configured");
	}
	pfree(p);
}

static void
test_unknown_alg(void)
{
	char	   *p = claims("");
	Signer		hs512 = {SIGN_HMAC, NULL, SECRET, strlen(SECRET), EVP_sha512()};
	Signer		rs512 = {SIGN_RSA, rsa_key, NULL, 0, EVP_sha512()};

	CHECK(verify(&cfg_both, token("{\"alg\":\"HS512\"}", p, hs512), JWT_ALGORITHM_UNSUPPORTED), "HS512");
	CHECK(verify(&cfg_both, token("{\"alg\":\"HS384\"}", p, hs()), JWT_ALGORITHM_UNSUPPORTED), "HS384");
	CHECK(verify(&cfg_both, token("{\"alg\":\"RS512\"}", p, rs512), JWT_ALGORITHM_UNSUPPORTED), "RS512");
	CHECK(verify(&cfg_both, token("{\"alg\":\"PS256\"}", p, rs(rsa_key)), JWT_ALGORITHM_UNSUPPORTED), "PS256");
	CHECK(verify(&cfg_ec, token("{\"alg\":\"ES384\"}", p, es(ec_key)), JWT_ALGORITHM_UNSUPPORTED), "ES384");
	CHECK(verify(&cfg_ec, token("{\"alg\":\"EdDSA\"}", p, es(ec_key)), JWT_ALGORITHM_UNSUPPORTED), "EdDSA");
	CHECK(verify(&cfg_hs, token("{\"alg\":\"hs256\"}", p, hs()), JWT_ALGORITHM_UNSUPPORTED), "alg is case-sensitive");
	CHECK(verify(&cfg_hs, token("{\"alg\":\"HS256 \"}", p, hs()), JWT_ALGORITHM_UNSUPPORTED), "alg with trailing space");
	CHECK(verify(&cfg_hs, token("{\"typ\":\"JWT\"}", p, hs()), JWT_ALGORITHM_UNSUPPORTED), "missing alg");
	CHECK(verify(&cfg_hs, token("{\"alg\":256}", p, hs()), JWT_ALGORITHM_UNSUPPORTED), "alg is a number");
	CHECK(verify(&cfg_hs, token("{\"alg\":null}", p, hs()), JWT_ALGORITHM_UNSUPPORTED), "alg is null");
	CHECK(verify(&cfg_hs, token("{\"alg\":[\"HS256\"]}", p, hs()), JWT_ALGORITHM_UNSUPPORTED), "alg is an array");
	pfree(p);
}

static void
test_signature(void)
{
	char	   *p = claims("");
	char	   *tok;
	char	   *cut;

	tok = token(HS_HDR, p, hs());
	cut = pnstrdup(tok, strrchr(tok, '.') - tok + 1);
	CHECK(verify(&cfg_hs, cut, JWT_SIGNATURE_INVALID), "HS256 stripped signature (h.p.)");
	cut[strlen(cut) - 1] = '\0';
	CHECK(verify(&cfg_hs, cut, JWT_TOKEN_INVALID), "signature segment missing (h.p)");

	tok = token(RS_HDR, p, rs(rsa_key));
	cut = pnstrdup(tok, strrchr(tok, '.') - tok + 1);
	CHECK(verify(&cfg_rsa, cut, JWT_SIGNATURE_INVALID), "RS256 stripped signature");
	tok = token(ES_HDR, p, es(ec_key));
	cut = pnstrdup(tok, strrchr(tok, '.') - tok + 1);
	CHECK(verify(&cfg_ec, cut, JWT_SIGNATURE_INVALID), "ES256 stripped signature");

	{
		Signer		wrong = {SIGN_HMAC, NULL, "another-secret-of-sufficient-length!!", 37, EVP_sha256()};

		CHECK(verify(&cfg_hs, token(HS_HDR, p, wrong), JWT_SIGNATURE_INVALID), "HS256 wrong secret");
	}
	CHECK(verify(&cfg_rsa, token(RS_HDR, p, rs(rsa_other)), JWT_SIGNATURE_INVALID), "RS256 signed by another key");
	CHECK(verify(&cfg_ec, token(ES_HDR, p, es(ec_other)), JWT_SIGNATURE_INVALID), "ES256 signed by another key");

	/* tampered payload: signature of the original, payload of another */
	{
		char	   *good = token(RS_HDR, p, rs(rsa_key));
		char	   *evil_p = claims("\"name\":\"admin\"");
		char	   *evil = token(RS_HDR, evil_p, rs(rsa_key));
		char	   *mixed = psprintf("%.*s%s", (int) (strrchr(evil, '.') - evil), evil,
									 strrchr(good, '.'));

		CHECK(verify(&cfg_rsa, mixed, JWT_SIGNATURE_INVALID), "RS256 payload swapped");
		good = token(HS_HDR, p, hs());
		evil = token(HS_HDR, evil_p, hs());
		mixed = psprintf("%.*s%s", (int) (strrchr(evil, '.') - evil), evil, strrchr(good, '.'));
		CHECK(verify(&cfg_hs, mixed, JWT_SIGNATURE_INVALID), "HS256 payload swapped");
		good = token(ES_HDR, p, es(ec_key));
		evil = token(ES_HDR, evil_p, es(ec_key));
		mixed = psprintf("%.*s%s", (int) (strrchr(evil, '.') - evil), evil, strrchr(good, '.'));
		CHECK(verify(&cfg_ec, mixed, JWT_SIGNATURE_INVALID), "ES256 payload swapped");
	}

	/* ES256 signatures must be exactly 64 raw bytes */
	{
		char	   *h = b64url(ES_HDR, strlen(ES_HDR));
		char	   *pp = b64url(p, strlen(p));
		char	   *input = psprintf("%s.%s", h, pp);
		size_t		n;
		unsigned char *raw = sign_bytes(es(ec_key), input, &n);
		unsigned char *der;
		unsigned char longer[65];
		unsigned char zero[64] = {0};

		CHECK(verify(&cfg_ec, psprintf("%s.%s", input, b64url(raw, 64)), JWT_OK), "ES256 raw 64 bytes");
		CHECK(verify(&cfg_ec, psprintf("%s.%s", input, b64url(raw, 63)), JWT_SIGNATURE_INVALID),
			  "ES256 signature of 63 bytes");
		memcpy(longer, raw, 64);
		longer[64] = 0;
		CHECK(verify(&cfg_ec, psprintf("%s.%s", input, b64url(longer, 65)), JWT_SIGNATURE_INVALID),
			  "ES256 signature of 65 bytes");
		memmove(longer + 1, raw, 64);
		longer[0] = 0;
		CHECK(verify(&cfg_ec, psprintf("%s.%s", input, b64url(longer, 65)), JWT_SIGNATURE_INVALID),
			  "ES256 signature with a leading zero byte");
		der = sign_bytes((Signer) {SIGN_EC_DER, ec_key, NULL, 0, EVP_sha256()}, input, &n);
		CHECK(n != 64 && verify(&cfg_ec, psprintf("%s.%s", input, b64url(der, n)), JWT_SIGNATURE_INVALID),
			  "ES256 signature in DER form");
		CHECK(verify(&cfg_ec, psprintf("%s.%s", input, b64url(zero, 64)), JWT_SIGNATURE_INVALID),
			  "ES256 all-zero signature");
		/* swapping R and S must not verify */
		memcpy(longer, raw + 32, 32);
		memcpy(longer + 32, raw, 32);
		CHECK(verify(&cfg_ec, psprintf("%s.%s", input, b64url(longer, 64)), JWT_SIGNATURE_INVALID),
			  "ES256 R and S swapped");

		raw = sign_bytes(rs(rsa_key), psprintf("%s.%s", b64url(RS_HDR, strlen(RS_HDR)), pp), &n);
		CHECK(verify(&cfg_rsa, psprintf("%s.%s.%s", b64url(RS_HDR, strlen(RS_HDR)), pp, b64url(raw, n - 1)),
					 JWT_SIGNATURE_INVALID), "RS256 signature one byte short");
		raw = sign_bytes(hs(), psprintf("%s.%s", b64url(HS_HDR, strlen(HS_HDR)), pp), &n);
		CHECK(verify(&cfg_hs, psprintf("%s.%s.%s", b64url(HS_HDR, strlen(HS_HDR)), pp, b64url(raw, 16)),
					 JWT_SIGNATURE_INVALID), "HS256 truncated MAC");
	}
	pfree(p);
}

static void
test_shape(void)
{
	char	   *p = claims("");
	char	   *tok = token(HS_HDR, p, hs());
	char	   *t;
	size_t		len = strlen(tok);
	char	   *last;

	CHECK(verify(&cfg_hs, NULL, JWT_TOKEN_MISSING), "NULL token");
	CHECK(verify(&cfg_hs, "", JWT_TOKEN_MISSING), "empty token");
	CHECK(verify_len(&cfg_hs, tok, 0, NOW, JWT_TOKEN_MISSING), "zero length");

	CHECK(verify(&cfg_hs, "abc", JWT_TOKEN_INVALID), "one segment");
	CHECK(verify(&cfg_hs, "..", JWT_TOKEN_INVALID), "three empty segments");
	CHECK(verify(&cfg_hs, psprintf(".%s", strchr(tok, '.') + 1), JWT_TOKEN_INVALID), "empty header");
	CHECK(verify(&cfg_hs, psprintf("%s.x", tok), JWT_TOKEN_INVALID), "fourth segment");
	CHECK(verify(&cfg_hs, psprintf("%s.", tok), JWT_TOKEN_INVALID), "trailing dot");
	CHECK(verify(&cfg_hs, psprintf("%s ", tok), JWT_TOKEN_INVALID), "trailing space");
	CHECK(verify(&cfg_hs, psprintf("%s\n", tok), JWT_TOKEN_INVALID), "trailing newline");
	CHECK(verify(&cfg_hs, psprintf(" %s", tok), JWT_TOKEN_INVALID), "leading space");
	CHECK(verify(&cfg_hs, psprintf("Bearer %s", tok), JWT_TOKEN_INVALID), "Bearer prefix");
	CHECK(verify(&cfg_hs, psprintf("%s!", tok), JWT_TOKEN_INVALID), "trailing garbage character");
	CHECK(verify_len(&cfg_hs, psprintf("%s%c", tok, '\0'), len + 1, NOW, JWT_TOKEN_INVALID),
		  "trailing NUL byte inside the length");
	/* appended base64url characters just make another (wrong) signature */
	CHECK(verify(&cfg_hs, psprintf("%sAAAA", tok), JWT_SIGNATURE_INVALID), "trailing base64url characters");

	t = pstrdup(tok);
	t[3] = '+';
	CHECK(verify(&cfg_hs, t, JWT_TOKEN_INVALID), "'+' is not base64url");
	t[3] = '/';
	CHECK(verify(&cfg_hs, t, JWT_TOKEN_INVALID), "'/' is not base64url");
	t[3] = '*';
	CHECK(verify(&cfg_hs, t, JWT_TOKEN_INVALID), "'*' is not base64url");
	t = pstrdup(tok);
	strchr(t, '.')[3] = ' ';
	CHECK(verify(&cfg_hs, t, JWT_TOKEN_INVALID), "space inside the payload");
	CHECK(verify(&cfg_hs, psprintf("%s=", tok), JWT_TOKEN_INVALID), "padding '=' on signature");
	{
		/* a 28-byte header would need "==" in padded base64 */
		char	   *h = b64url("{\"alg\":\"HS256\",\"typ\":\"JWT\"} ", 28);

		CHECK(verify(&cfg_hs, psprintf("%s==%s", h, strchr(tok, '.')), JWT_TOKEN_INVALID),
			  "padding '==' on header");
	}
	/* 43 + 2 = 45 characters (len % 4 == 1) can never be base64 */
	CHECK(verify(&cfg_hs, psprintf("%sAA", tok), JWT_TOKEN_INVALID), "impossible base64 length");

	/* non-canonical encoding: unused low bits set in the last character */
	t = pstrdup(tok);
	last = t + strlen(t) - 1;	/* 43 chars for 32 bytes: 2 unused bits */
	*last = (*last == 'A') ? 'B' : (*last == 'E' ? 'F' : *last + 1);
	CHECK(verify(&cfg_hs, t, JWT_TOKEN_INVALID), "non-canonical base64url (unused bits set)");

	/* length limit, at the exact boundary */
	{
		char	   *exact = NULL;
		char	   *over = NULL;

		for (int kid = 0; kid < 4 && (!exact || !over); kid++)
		{
			char	   *h = psprintf("{\"alg\":\"HS256\",\"kid\":\"%.*s\"}", kid, "kkkk");

			for (int pad = 5900; pad < 6200; pad++)
			{
				char	   *pl = psprintf("{\"sub\":\"u\",\"exp\":1700003600,\"pad\":\"%0*d\"}", pad, 0);
				char	   *tk = token(h, pl, hs());

				if (strlen(tk) == JWT_MAX_TOKEN_LEN && !exact)
					exact = tk;
				else if (strlen(tk) == JWT_MAX_TOKEN_LEN + 1 && !over)
					over = tk;
			}
		}
		CHECK(exact && verify(&cfg_hs, exact, JWT_OK), "token of exactly 8192 bytes accepted");
		CHECK(over && verify(&cfg_hs, over, JWT_TOKEN_INVALID), "token of 8193 bytes rejected");
	}
	{
		StringInfoData big;

		initStringInfo(&big);
		appendStringInfoString(&big, "{\"alg\":\"HS256\",\"x\":\"");
		for (int i = 0; i < 10000; i++)
			appendStringInfoChar(&big, 'x');
		appendStringInfoString(&big, "\"}");
		CHECK(verify(&cfg_hs, token(big.data, p, hs()), JWT_TOKEN_INVALID), "huge header");
	}
	pfree(p);
}

static void
test_header(void)
{
	char	   *p = claims("");

	CHECK(hs_header("[\"HS256\"]", JWT_TOKEN_INVALID), "header is an array");
	CHECK(hs_header("\"HS256\"", JWT_TOKEN_INVALID), "header is a string");
	CHECK(hs_header("not json", JWT_TOKEN_INVALID), "header is not JSON");
	CHECK(hs_header("{\"alg\":\"HS256\"} x", JWT_TOKEN_INVALID), "header with trailing garbage");
	CHECK(hs_header("{\"alg\":\"HS256\"", JWT_TOKEN_INVALID), "truncated header");
	CHECK(hs_header("{\"alg\":\"none\",\"alg\":\"HS256\"}", JWT_TOKEN_INVALID), "duplicate alg");
	CHECK(hs_header("{\"alg\":\"HS256\",\"alg\":\"HS256\"}", JWT_TOKEN_INVALID), "duplicate alg, same value");
	CHECK(hs_header("{\"alg\":\"HS256\",\"typ\":\"JOSE\"}", JWT_TOKEN_INVALID), "typ JOSE");
	CHECK(hs_header("{\"alg\":\"HS256\",\"typ\":\"at+jwt\"}", JWT_TOKEN_INVALID), "typ at+jwt");
	CHECK(hs_header("{\"alg\":\"HS256\",\"typ\":1}", JWT_TOKEN_INVALID), "typ is a number");
	CHECK(hs_header("{\"alg\":\"HS256\",\"crit\":[\"exp\"],\"exp\":1}", JWT_TOKEN_INVALID), "crit present");
	CHECK(hs_header("{\"alg\":\"HS256\",\"crit\":[]}", JWT_TOKEN_INVALID), "empty crit present");
	CHECK(hs_header("{\"alg\":\"HS256\",\"b64\":false,\"crit\":[\"b64\"]}", JWT_TOKEN_INVALID), "unencoded payload (b64)");
	CHECK(hs_header("{\"alg\":\"HS256\",\"kid\":5}", JWT_TOKEN_INVALID), "kid is a number");
	CHECK(hs_header("{\"alg\":\"HS256\",\"x\":\"\xff\"}", JWT_TOKEN_INVALID), "header with invalid UTF-8");
	pfree(p);
}

static void
test_payload(void)
{
	CHECK(hs_payload("[1,2]", JWT_TOKEN_INVALID), "payload is an array");
	CHECK(hs_payload("\"u-123\"", JWT_TOKEN_INVALID), "payload is a string");
	CHECK(hs_payload("", JWT_TOKEN_INVALID), "empty payload");
	CHECK(hs_payload("{\"sub\":\"u\",\"exp\":1700003600", JWT_TOKEN_INVALID), "truncated payload");
	CHECK(hs_payload("{\"sub\":\"u\",\"exp\":1700003600}garbage", JWT_TOKEN_INVALID), "payload trailing garbage");
	CHECK(hs_payload("{\"sub\":\"u\",\"sub\":\"admin\",\"exp\":1700003600}", JWT_TOKEN_INVALID), "duplicate sub");
	CHECK(hs_payload("{\"sub\":\"u\",\"s\\u0075b\":\"admin\",\"exp\":1700003600}", JWT_TOKEN_INVALID),
		  "duplicate sub via escape");
	CHECK(hs_payload("{\"sub\":\"u\",\"exp\":1700003600,\"exp\":9999999999}", JWT_TOKEN_INVALID), "duplicate exp");
	CHECK(hs_payload("{\"sub\":\"\xc3\x28\",\"exp\":1700003600}", JWT_TOKEN_INVALID), "invalid UTF-8 in sub");
	CHECK(hs_payload("{\"sub\":\"u\\ud800\",\"exp\":1700003600}", JWT_TOKEN_INVALID), "lone surrogate in sub");
	CHECK(hs_claims("\"ctx\":{\"roles\":[\"a\",\"b\"],\"deep\":{\"x\":[1,{\"y\":null}]}}", JWT_OK),
		  "nested JSON in other claims is fine");
	CHECK(hs_claims("\"ctx\":{\"sub\":\"admin\",\"sub\":\"x\"}", JWT_OK),
		  "nested objects are not interpreted");
	/* an invalid signature wins over an unparseable payload */
	{
		Signer		wrong = {SIGN_HMAC, NULL, "xx", 2, EVP_sha256()};

		CHECK(verify(&cfg_hs, token(HS_HDR, "{nope", wrong), JWT_SIGNATURE_INVALID),
			  "payload is only parsed after the signature verified");
	}
}

static void
test_claim_types(void)
{
	CHECK(hs_payload("{\"sub\":\"u\"}", JWT_CLAIM_INVALID), "exp missing (required)");
	CHECK(hs_payload("{\"sub\":\"u\",\"exp\":\"1700003600\"}", JWT_CLAIM_INVALID), "exp is a string");
	CHECK(hs_payload("{\"sub\":\"u\",\"exp\":1700003600.5}", JWT_CLAIM_INVALID), "exp has a fraction");
	CHECK(hs_payload("{\"sub\":\"u\",\"exp\":null}", JWT_CLAIM_INVALID), "exp is null");
	CHECK(hs_payload("{\"sub\":\"u\",\"exp\":true}", JWT_CLAIM_INVALID), "exp is a boolean");
	CHECK(hs_payload("{\"sub\":\"u\",\"exp\":{\"v\":1}}", JWT_CLAIM_INVALID), "exp is an object");
	CHECK(hs_payload("{\"sub\":\"u\",\"exp\":1e400}", JWT_CLAIM_INVALID), "exp out of range");
	CHECK(hs_payload("{\"sub\":\"u\",\"exp\":1700003600.0}", JWT_OK), "exp integer-valued with .0");
	CHECK(hs_payload("{\"sub\":\"u\",\"exp\":1.7000036e9}", JWT_OK), "exp integer-valued in exponent form");
	CHECK(hs_claims("\"nbf\":\"1699999999\"", JWT_CLAIM_INVALID), "nbf is a string");
	CHECK(hs_claims("\"nbf\":1699999999.5", JWT_CLAIM_INVALID), "nbf has a fraction");
	CHECK(hs_claims("\"nbf\":null", JWT_CLAIM_INVALID), "nbf is null");
	CHECK(hs_payload("{\"sub\":\"u\",\"exp\":1700003600,\"iat\":\"now\"}", JWT_CLAIM_INVALID), "iat is a string");
	CHECK(hs_payload("{\"sub\":42,\"exp\":1700003600}", JWT_CLAIM_INVALID), "sub is a number");
	CHECK(hs_payload("{\"sub\":{\"id\":\"u\"},\"exp\":1700003600}", JWT_CLAIM_INVALID), "sub is an object");
	CHECK(hs_payload("{\"sub\":[\"u\"],\"exp\":1700003600}", JWT_CLAIM_INVALID), "sub is an array");
	CHECK(hs_payload("{\"sub\":null,\"exp\":1700003600}", JWT_CLAIM_INVALID), "sub is null");
	CHECK(hs_payload("{\"sub\":\"\",\"exp\":1700003600}", JWT_CLAIM_INVALID), "sub is empty");
	CHECK(hs_payload("{\"exp\":1700003600}", JWT_CLAIM_INVALID), "sub missing");
	CHECK(hs_payload("{\"sub\":\"u\\n1\",\"exp\":1700003600}", JWT_CLAIM_INVALID), "sub with a newline");
	{
		char	   *p256 = psprintf("{\"sub\":\"%0256d\",\"exp\":1700003600}", 7);
		char	   *p257 = psprintf("{\"sub\":\"%0257d\",\"exp\":1700003600}", 7);

		CHECK(hs_payload(p256, JWT_OK), "sub of 256 bytes");
		CHECK(hs_payload(p257, JWT_CLAIM_INVALID), "sub of 257 bytes");
	}
	CHECK(hs_claims("\"iss\":5", JWT_CLAIM_INVALID), "iss is a number (even when not configured)");
	CHECK(hs_claims("\"aud\":5", JWT_OK), "aud is ignored when no audience is configured");
}

static void
test_time(void)
{
	char	   *p;

	/* cfg_hs has a leeway of 30 s */
	CHECK(hs_payload("{\"sub\":\"u\",\"exp\":1699996400}", JWT_TOKEN_EXPIRED), "expired an hour ago");
	p = psprintf("{\"sub\":\"u\",\"exp\":" INT64_FORMAT "}", NOW - 30);
	CHECK(hs_payload(p, JWT_TOKEN_EXPIRED), "exp = now - leeway is expired");
	p = psprintf("{\"sub\":\"u\",\"exp\":" INT64_FORMAT "}", NOW - 29);
	CHECK(hs_payload(p, JWT_OK), "exp = now - leeway + 1 is valid");
	p = psprintf("{\"sub\":\"u\",\"exp\":" INT64_FORMAT "}", NOW);
	CHECK(verify(&cfg_hs, token(HS_HDR, p, hs()), JWT_OK), "exp = now within leeway");
	{
		JwtConfig	noleeway = cfg_hs;
		char	   *tok = token(HS_HDR, p, hs());

		noleeway.leeway_s = 0;
		CHECK(verify(&noleeway, tok, JWT_TOKEN_EXPIRED), "exp = now without leeway is expired");
		CHECK(verify_at(&noleeway, tok, NOW - 1, JWT_OK), "exp = now + 1 without leeway is valid");
		noleeway.leeway_s = -100;
		CHECK(verify(&noleeway, tok, JWT_TOKEN_EXPIRED), "negative leeway counts as 0");
	}
	CHECK(hs_payload("{\"sub\":\"u\",\"exp\":-1}", JWT_TOKEN_EXPIRED), "negative exp");
	CHECK(hs_payload("{\"sub\":\"u\",\"exp\":0}", JWT_TOKEN_EXPIRED), "exp 0");

	p = psprintf("\"nbf\":" INT64_FORMAT, NOW + 30);
	CHECK(hs_claims(p, JWT_OK), "nbf = now + leeway is valid");
	p = psprintf("\"nbf\":" INT64_FORMAT, NOW + 31);
	CHECK(hs_claims(p, JWT_CLAIM_INVALID), "nbf = now + leeway + 1 is not valid yet");
	CHECK(hs_claims("\"nbf\":1700003000", JWT_CLAIM_INVALID), "nbf ten minutes ahead");
	CHECK(hs_claims("\"nbf\":1600000000", JWT_OK), "nbf in the past");
	CHECK(hs_claims("\"iat\":1800000000", JWT_TOKEN_INVALID), "duplicate iat");
	CHECK(hs_payload("{\"sub\":\"u\",\"exp\":1700003600,\"iat\":1800000000}", JWT_OK),
		  "iat in the future is only reported");
}

static void
test_iss_aud(void)
{
	const char *ok_claims = "{\"sub\":\"u\",\"exp\":1700003600,\"iss\":\"https://idp.example\",\"aud\":%s}";
	char	   *tok;

#define STRICT(aud, expect, name) \
	CHECK(verify(&cfg_strict, token(HS_HDR, psprintf(ok_claims, aud), hs()), expect), name)

	STRICT("\"collab\"", JWT_OK, "iss and aud match");
	STRICT("[\"other\",\"collab\"]", JWT_OK, "aud array containing the audience");
	STRICT("\"other\"", JWT_CLAIM_INVALID, "wrong aud string");
	STRICT("\"Collab\"", JWT_CLAIM_INVALID, "aud is case-sensitive");
	STRICT("[\"a\",\"b\"]", JWT_CLAIM_INVALID, "aud array without the audience");
	STRICT("[]", JWT_CLAIM_INVALID, "empty aud array");
	STRICT("[\"collab\",1]", JWT_CLAIM_INVALID, "aud array with a non-string element");
	STRICT("[[\"collab\"]]", JWT_CLAIM_INVALID, "aud array nested");
	STRICT("7", JWT_CLAIM_INVALID, "aud is a number");
	STRICT("null", JWT_CLAIM_INVALID, "aud is null");
	STRICT("{\"collab\":true}", JWT_CLAIM_INVALID, "aud is an object");
#undef STRICT

	tok = token(HS_HDR, "{\"sub\":\"u\",\"exp\":1700003600,\"iss\":\"https://idp.example\"}", hs());
	CHECK(verify(&cfg_strict, tok, JWT_CLAIM_INVALID), "aud missing when configured");
	tok = token(HS_HDR, "{\"sub\":\"u\",\"exp\":1700003600,\"aud\":\"collab\"}", hs());
	CHECK(verify(&cfg_strict, tok, JWT_CLAIM_INVALID), "iss missing when configured");
	tok = token(HS_HDR, "{\"sub\":\"u\",\"exp\":1700003600,\"iss\":\"https://evil.example\",\"aud\":\"collab\"}", hs());
	CHECK(verify(&cfg_strict, tok, JWT_CLAIM_INVALID), "wrong iss");
	tok = token(HS_HDR, "{\"sub\":\"u\",\"exp\":1700003600,\"iss\":\"https://IDP.example\",\"aud\":\"collab\"}", hs());
	CHECK(verify(&cfg_strict, tok, JWT_CLAIM_INVALID), "iss is case-sensitive");
	tok = token(HS_HDR, "{\"sub\":\"u\",\"exp\":1700003600,\"iss\":[\"https://idp.example\"],\"aud\":\"collab\"}", hs());
	CHECK(verify(&cfg_strict, tok, JWT_CLAIM_INVALID), "iss is an array");
	{
		JwtConfig	empty = cfg_hs;

		empty.issuer = "";
		empty.audience = "";
		tok = token(HS_HDR, "{\"sub\":\"u\",\"exp\":1700003600}", hs());
		CHECK(verify(&empty, tok, JWT_OK), "empty issuer/audience settings mean unchecked");
	}
}

static void
test_display_name(void)
{
	char	   *name;

	CHECK(display_is("\"sub\":\"u-1\",\"name\":\"Dr. Alice Smith\",\"preferred_username\":\"alice\"",
					 "Dr. Alice Smith"), "name wins");
	CHECK(display_is("\"sub\":\"u-1\",\"preferred_username\":\"alice\"", "alice"),
		  "preferred_username when name is missing");
	CHECK(display_is("\"sub\":\"u-1\",\"name\":\"alice@example.com\",\"preferred_username\":\"alice.s\"",
					 "alice.s"), "e-mail name skipped");
	CHECK(display_is("\"sub\":\"u-1\",\"name\":\"a@b.c\",\"preferred_username\":\"c@d.e\"", "u-1"),
		  "e-mail name and preferred_username: sub");
	CHECK(display_is("\"sub\":\"bob@example.com\"", "bob"), "e-mail sub: local part");
	CHECK(display_is("\"sub\":\"bob@example.com\",\"preferred_username\":\"bob@example.com\"", "bob"),
		  "all e-mail: local part of sub");
	CHECK(display_is("\"sub\":\"@example.com\"", "user"), "sub with empty local part");
	CHECK(display_is("\"sub\":\"u-1\",\"name\":null,\"preferred_username\":\"carol\"", "carol"),
		  "null name is absent");
	CHECK(display_is("\"sub\":\"u-1\",\"name\":\"\",\"preferred_username\":\"carol\"", "carol"),
		  "empty name skipped");
	CHECK(display_is("\"sub\":\"u-1\",\"name\":\"   \"", "u-1"), "blank name skipped");
	CHECK(display_is("\"sub\":\"u-1\",\"name\":\"Jos\\u00e9 M\\u00fcller\"", "Jos\xc3\xa9 M\xc3\xbcller"),
		  "escaped non-ASCII name");
	CHECK(hs_claims("\"name\":42", JWT_CLAIM_INVALID), "name is a number");
	CHECK(hs_claims("\"preferred_username\":[\"x\"]", JWT_CLAIM_INVALID), "preferred_username is an array");
	CHECK(hs_claims("\"name\":\"a\\u0007b\"", JWT_CLAIM_INVALID), "name with a control character");
	CHECK(hs_claims("\"name\":\"a\\u0085b\"", JWT_CLAIM_INVALID), "name with a C1 control");
	CHECK(hs_claims("\"name\":\"adm\\u202Enim\"", JWT_CLAIM_INVALID), "name with a bidi override");
	CHECK(hs_claims("\"name\":\"a\\u2028b\"", JWT_CLAIM_INVALID), "name with a line separator");
	CHECK(hs_claims("\"name\":\"x@y\\n\"", JWT_CLAIM_INVALID), "control characters rejected even in skipped e-mails");

	/* 128-byte limit, cut on a character boundary */
	{
		StringInfoData b;

		initStringInfo(&b);
		appendStringInfoString(&b, "\"sub\":\"u\",\"name\":\"a");
		for (int i = 0; i < 100; i++)
			appendStringInfoString(&b, "\xc3\xa9");
		appendStringInfoChar(&b, '"');
		CHECK(hs_payload(psprintf("{\"exp\":1700003600,%s}", b.data), JWT_OK) &&
			  strlen(last_display_name) == 127 &&
			  (unsigned char) last_display_name[126] == 0xa9,
			  "long name truncated to 127 bytes, not splitting a character");
		name = psprintf("\"sub\":\"u\",\"name\":\"%0200d\"", 1);
		CHECK(hs_payload(psprintf("{\"exp\":1700003600,%s}", name), JWT_OK) &&
			  strlen(last_display_name) == JWT_MAX_DISPLAY_NAME_LEN,
			  "long ASCII name truncated to 128 bytes");
	}
}

static bool
groups_are(const JwtConfig *cfg, const char *payload, JwtError expect,
		   int n, const char *const *want)
{
	char	   *tok = token(HS_HDR, payload, hs());
	bool		ok = verify(cfg, tok, expect);

	if (ok && expect == JWT_OK)
	{
		ok = last_claims.ngroups == n && (n == 0 || last_claims.groups != NULL);
		for (int i = 0; ok && want && i < n; i++)
			ok = strcmp(last_claims.groups[i], want[i]) == 0;
		if (!ok)
			printf("     got %d groups\n", last_claims.ngroups);
	}
	pfree(tok);
	return ok;
}

static void
test_groups(void)
{
	JwtConfig	cfg = cfg_hs;
	JwtConfig	roles = cfg_hs;
	const char *two[] = {"surgery", "icu"};
	const char *escaped[] = {"a\"b", "\xc3\xa9quipe", "/clinic/surgery"};
	StringInfoData p;

	cfg.groups_claim = "groups";
	roles.groups_claim = "roles";

#define GROUPS(json, expect, n, want, name) \
	CHECK(groups_are(&cfg, psprintf("{\"sub\":\"u\",\"exp\":1700003600,\"groups\":%s}", json), \
					 expect, n, want), name)

	CHECK(groups_are(&cfg, claims(""), JWT_OK, 0, NULL) && last_claims.groups == NULL,
		  "no groups claim: no groups");
	GROUPS("null", JWT_OK, 0, NULL, "groups null: no groups");
	GROUPS("[]", JWT_OK, 0, NULL, "groups empty");
	GROUPS("[\"surgery\",\"icu\"]", JWT_OK, 2, two, "two groups, in order");
	GROUPS("[\"a\\\"b\",\"\\u00e9quipe\",\"/clinic/surgery\"]", JWT_OK, 3, escaped,
		   "groups de-escaped; a Keycloak path is a name");
	GROUPS("\"surgery\"", JWT_CLAIM_INVALID, 0, NULL, "groups a string, not an array");
	GROUPS("{\"0\":\"surgery\"}", JWT_CLAIM_INVALID, 0, NULL, "groups an object");
	GROUPS("5", JWT_CLAIM_INVALID, 0, NULL, "groups a number");
	GROUPS("true", JWT_CLAIM_INVALID, 0, NULL, "groups a boolean");
	GROUPS("[\"a\",5]", JWT_CLAIM_INVALID, 0, NULL, "a number among the groups");
	GROUPS("[\"a\",null]", JWT_CLAIM_INVALID, 0, NULL, "null among the groups");
	GROUPS("[\"a\",[\"b\"]]", JWT_CLAIM_INVALID, 0, NULL, "an array among the groups");
	GROUPS("[\"a\",{\"b\":1}]", JWT_CLAIM_INVALID, 0, NULL, "an object among the groups");
	GROUPS("[\"\"]", JWT_CLAIM_INVALID, 0, NULL, "an empty group name");
	GROUPS("[\"a\\nb\"]", JWT_CLAIM_INVALID, 0, NULL, "a group name with a newline");
	GROUPS("[\"a\\u202eb\"]", JWT_CLAIM_INVALID, 0, NULL, "a group name with a bidi override");
	{
		char	   *g256 = psprintf("[\"%0256d\"]", 7);
		char	   *g257 = psprintf("[\"%0257d\"]", 7);

		CHECK(groups_are(&cfg, psprintf("{\"sub\":\"u\",\"exp\":1700003600,\"groups\":%s}", g256),
						 JWT_OK, 1, NULL) && strlen(last_claims.groups[0]) == 256,
			  "a group name of 256 bytes");
		GROUPS(g257, JWT_CLAIM_INVALID, 0, NULL, "a group name of 257 bytes");
	}
	initStringInfo(&p);
	appendStringInfoChar(&p, '[');
	for (int i = 0; i < JWT_MAX_GROUPS; i++)
		appendStringInfo(&p, "%s\"g%d\"", i ? "," : "", i);
	appendStringInfoChar(&p, ']');
	CHECK(groups_are(&cfg, psprintf("{\"sub\":\"u\",\"exp\":1700003600,\"groups\":%s}", p.data),
					 JWT_OK, JWT_MAX_GROUPS, NULL) &&
		  strcmp(last_claims.groups[JWT_MAX_GROUPS - 1], psprintf("g%d", JWT_MAX_GROUPS - 1)) == 0,
		  "256 groups");
	p.data[p.len - 1] = ',';
	appendStringInfoString(&p, "\"one-more\"]");
	GROUPS(p.data, JWT_CLAIM_INVALID, 0, NULL, "257 groups");
	{
		char	   *msg = NULL;
		JwtClaims	c = {0};
		char	   *tok = token(HS_HDR, "{\"sub\":\"u\",\"exp\":1700003600,\"groups\":\"admins\"}", hs());

		(void) jwt_verify(&cfg, tok, strlen(tok), NOW, &c, &msg);
		CHECK(msg != NULL && strstr(msg, "\"groups\"") != NULL && c.groups == NULL && c.ngroups == 0,
			  "the failure names the claim and leaves no groups");
	}

	/* the configured claim only */
	CHECK(groups_are(&roles, "{\"sub\":\"u\",\"exp\":1700003600,\"groups\":5,\"roles\":[\"surgery\",\"icu\"]}",
					 JWT_OK, 2, two), "another claim name: that claim is read, groups ignored");
	CHECK(groups_are(&roles, "{\"sub\":\"u\",\"exp\":1700003600,\"roles\":\"surgery\"}",
					 JWT_CLAIM_INVALID, 0, NULL), "another claim name: it is validated");
	CHECK(groups_are(&cfg_hs, "{\"sub\":\"u\",\"exp\":1700003600,\"groups\":5}", JWT_OK, 0, NULL) &&
		  last_claims.groups == NULL, "no claim configured: groups not read");

	/* "*" means every user in grants */
	CHECK(hs_payload("{\"sub\":\"*\",\"exp\":1700003600}", JWT_CLAIM_INVALID), "sub \"*\"");
	CHECK(hs_payload("{\"sub\":\"**\",\"exp\":1700003600}", JWT_OK), "sub \"**\" is a user id");
	CHECK(hs_payload("{\"sub\":\"u\",\"exp\":1700003600}", JWT_OK) && last_claims.iat == 0,
		  "iat absent: 0");
#undef GROUPS
}

static void
test_codes(void)
{
	CHECK(strcmp(jwt_error_code(JWT_TOKEN_MISSING), "AUTH_TOKEN_MISSING") == 0 &&
		  strcmp(jwt_error_code(JWT_TOKEN_INVALID), "AUTH_TOKEN_INVALID") == 0 &&
		  strcmp(jwt_error_code(JWT_TOKEN_EXPIRED), "AUTH_TOKEN_EXPIRED") == 0 &&
		  strcmp(jwt_error_code(JWT_SIGNATURE_INVALID), "AUTH_SIGNATURE_INVALID") == 0 &&
		  strcmp(jwt_error_code(JWT_ALGORITHM_UNSUPPORTED), "AUTH_ALGORITHM_UNSUPPORTED") == 0 &&
		  strcmp(jwt_error_code(JWT_CLAIM_INVALID), "AUTH_CLAIM_INVALID") == 0 &&
		  strcmp(jwt_error_code(JWT_INTERNAL), "INTERNAL") == 0,
		  "error codes match the contract");
	{
		JwtClaims	c;
		JwtError	e = jwt_verify(&cfg_hs, "x.y.z", 5, NOW, &c, NULL);

		CHECK(e == JWT_TOKEN_INVALID && c.sub == NULL, "errmsg may be NULL");
	}
}

int
main(void)
{
	verbose = getenv("VERBOSE") != NULL;
	setup();
	test_loader();
	test_valid();
	test_alg_none_and_confusion();
	test_unknown_alg();
	test_signature();
	test_shape();
	test_header();
	test_payload();
	test_claim_types();
	test_time();
	test_iss_aud();
	test_display_name();
	test_groups();
	test_codes();
	cleanup();
	jwt_claims_free(&last_claims);
	printf("test_jwt: %d passed, %d failed\n", n_pass, n_fail);
	return n_fail ? 1 : 0;
}
