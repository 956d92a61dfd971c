/*
 * fuzz_sio.c
 *	  libFuzzer harness for the Engine.IO/Socket.IO packet parser: any
 *	  frame must parse or be refused, never crash, and what parses must
 *	  describe spans inside the frame.
 */
#include "postgres_fe.h"

#include "sio_codec.h"

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	SioFrame	f;
	const char *buf = (const char *) data;

	if (sio_parse_frame(buf, size, &f) == SIO_OK && f.eio_type == SIO_EIO_MESSAGE)
	{
		if (f.data && (f.data < buf || f.data + f.data_len > buf + size))
			__builtin_trap();
		if (f.arg0 && (f.arg0 < buf || f.arg0 + f.arg0_len > buf + size))
			__builtin_trap();
	}
	return 0;
}
