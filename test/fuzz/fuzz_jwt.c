/*
 * fuzz_jwt.c
 *	  libFuzzer harness for JWT parsing and verification with an HS256
 *	  secret: nothing may crash, and no mutated token may verify unless it
 *	  is signed with the secret (which the fuzzer cannot do).
 */
#include "postgres_fe.h"

#include "jwt.h"

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	JwtConfig	cfg = {0};
	JwtClaims	claims;
	char	   *errmsg = NULL;

	cfg.hs_secret = "fuzzing-secret-fuzzing-secret-0123456789";
	cfg.hs_secret_len = strlen(cfg.hs_secret);
	cfg.leeway_s = 30;
	if (jwt_verify(&cfg, (const char *) data, size, 1800000000, &claims, &errmsg) == JWT_OK)
		jwt_claims_free(&claims);
	if (errmsg)
		pfree(errmsg);
	return 0;
}
