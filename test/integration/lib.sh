# Shared helpers for the shell integration tests: assertions that print what
# they compared, and a psql that fails on the first error.
PSQL=(psql -X -q -t -A -v ON_ERROR_STOP=1)
checks=0
fails=0

q() { "${PSQL[@]}" -d "${TESTDB:-postgres}" -c "$1"; }

expect_eq() {
	local what=$1 got=$2 want=$3
	checks=$((checks + 1))
	if [ "$got" = "$want" ]; then
		echo "ok - $what"
	else
		fails=$((fails + 1))
		echo "not ok - $what: got '$got', want '$want'"
	fi
}

finish() {
	echo "$checks checks, $fails failed"
	[ "$fails" -eq 0 ]
}
