/*
 * fuzz_resource_id.c
 *	  libFuzzer harness for resource id validation: any bytes are either
 *	  refused with an offset inside the input or accepted as valid UTF-8
 *	  visible text.
 */
#include <stddef.h>
#include <stdint.h>

#include "resource_id.h"

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t		offset = 0;
	ResourceIdError err = resource_id_check((const char *) data, size, &offset);

	if (err != RID_OK && size > 0 && offset > size)
		__builtin_trap();
	if (err == RID_OK)
	{
		for (size_t i = 0; i < size; i++)
			if (data[i] < 0x21 || data[i] == 0x7F)
				__builtin_trap();	/* no space, control or NUL accepted */
		if (resource_id_depth((const char *) data, size) > RESOURCE_ID_MAX_SEGMENTS)
			__builtin_trap();
	}
	return 0;
}
