#!/bin/sh
# Every error code that clients receive is named once, in the table of
# src/errors.c; C code refers to it by CollabErrorCode.  This fails if any
# other file of src/ writes a code's name as a string literal ("LOCK_HELD",
# or \"LOCK_HELD\" inside a JSON literal).  The codes are read from the
# table itself, so a new code is checked as soon as it is added.
#
# Usage: sh check-error-literals.sh [src directory]   (default: ../../src)
# Ends with "check-error-literals: N passed, M failed" (N codes checked).
src=${1:-$(dirname "$0")/../../src}
codes=$(sed -n 's/^[[:space:]]*\[CE_[A-Z0-9_]*\][[:space:]]*=[[:space:]]*{[[:space:]]*"\([A-Z0-9_]*\)".*/\1/p' "$src/errors.c")
if [ -z "$codes" ]; then
	echo "no error codes found in $src/errors.c"
	echo "check-error-literals: 0 passed, 1 failed"
	exit 1
fi
passed=0
failed=0
for code in $codes; do
	hits=$(grep -nE "\"$code\\\\?\"" "$src"/*.c "$src"/*.h | grep -v "^$src/errors.c:")
	if [ -n "$hits" ]; then
		echo "not ok - $code is written outside src/errors.c:"
		echo "$hits" | sed 's/^/    /'
		failed=$((failed + 1))
	else
		passed=$((passed + 1))
	fi
done
echo "check-error-literals: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
