/*
 * fuzz_sio.c
 *	  libFuzzer harness for the Engine.IO/Socket.IO packet parser and the
 *	  JSON string escaper: any frame must parse or be refused, never crash;
 *	  what parses must describe spans inside the frame; an event that
 *	  parses must parse again, identically, once re-encoded by the encoder
 *	  the worker uses; and any bytes escaped as a JSON string must come out
 *	  as valid UTF-8 and valid JSON.
 */
#include "postgres_fe.h"

#include "sio_codec.h"

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The encoder writes the main namespace as nothing, others as "/x," */
static const char *
nsp_arg(const SioFrame *f)
{
	return strcmp(f->nsp, "/") == 0 ? NULL : f->nsp;
}

static void
check_roundtrip(const SioFrame *f)
{
	StringInfoData out;
	SioFrame	g;

	/* Only events with at most one argument can be rebuilt exactly. */
	if (f->sio_type != SIO_EVENT || f->nargs > 1)
		return;
	initStringInfo(&out);
	sio_encode_event(&out, nsp_arg(f), f->event,
					 f->has_ack ? f->ack_id : SIO_NO_ACK, f->arg0, f->arg0_len);
	if (sio_parse_frame(out.data, out.len, &g) != SIO_OK)
		__builtin_trap();
	if (g.sio_type != SIO_EVENT || strcmp(g.nsp, f->nsp) != 0 ||
		strcmp(g.event, f->event) != 0 || g.has_ack != f->has_ack ||
		(g.has_ack && g.ack_id != f->ack_id) || g.nargs != f->nargs ||
		g.arg0_len != f->arg0_len ||
		(g.arg0_len > 0 && memcmp(g.arg0, f->arg0, g.arg0_len) != 0))
		__builtin_trap();
	pfree(out.data);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	SioFrame	f;
	const char *buf = (const char *) data;
	StringInfoData esc;

	if (sio_parse_frame(buf, size, &f) == SIO_OK && f.eio_type == SIO_EIO_MESSAGE)
	{
		if (f.data && (f.data < buf || f.data + f.data_len > buf + size))
			__builtin_trap();
		if (f.arg0 && (f.arg0 < buf || f.arg0 + f.arg0_len > buf + size))
			__builtin_trap();
		check_roundtrip(&f);
	}

	initStringInfo(&esc);
	sio_json_escape_len(&esc, buf, size);
	if (!sio_utf8_valid(esc.data, esc.len) ||
		sio_json_validate(esc.data, esc.len) != SIO_OK)
		__builtin_trap();
	pfree(esc.data);
	return 0;
}
