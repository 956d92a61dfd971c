#!/bin/bash
# Throwaway PostgreSQL clusters for tests, demos and benchmarks.
#
#   cluster.sh start DIR [CONF_LINE...]   initdb + start; prints PORT=... on stdout
#                                         (CLUSTER_CONF: more lines, one per line,
#                                         after them: a benchmark's AB_CONF, ...)
#   cluster.sh stop DIR [MODE]            stop (MODE: fast|immediate), keep the data
#   cluster.sh restart DIR [SERVER_OPTIONS]  start an existing, stopped cluster again
#                                         (SERVER_OPTIONS: for postgres, as pg_ctl -o)
#   cluster.sh standby DIR CONNINFO [CONF_LINE...]
#                                         pg_basebackup -R of the primary at CONNINFO,
#                                         started as a streaming standby; prints PORT=...
#   cluster.sh promote DIR                pg_ctl promote, waiting until it is done
#   cluster.sh destroy DIR                stop and remove
#   cluster.sh free-port                  prints a free TCP port on 127.0.0.1
#   cluster.sh wait-port PORT             waits up to 10 s for a listener on
#                                         127.0.0.1:PORT (the collab worker); 1 if none
#
# PostgreSQL refuses to run as root, so the cluster runs as the 'postgres' system
# user; the data directory is owned by it. Connections use the Unix socket in DIR
# and trust authentication: the cluster is local to this machine and short-lived.
set -euo pipefail

PGBIN=${PGBIN:-$(pg_config --bindir)}
RUN_AS=${RUN_AS:-postgres}

# setpriv rather than runuser where there is one: runuser's PAM session
# resets the descriptor limit to 1024, and a worker holding thousands of
# connections needs the caller's.
as_pg() {
	if [ "$(id -un)" = "$RUN_AS" ]; then
		"$@"
	elif command -v setpriv >/dev/null; then
		setpriv --reuid="$RUN_AS" --regid="$RUN_AS" --init-groups "$@"
	else
		runuser -u "$RUN_AS" -- "$@"
	fi
}

free_port() {
	perl -MIO::Socket::INET -e '
		my $s = IO::Socket::INET->new(Listen => 1, LocalAddr => "127.0.0.1", LocalPort => 0, ReuseAddr => 1) or die "$!";
		print $s->sockport, "\n";'
}

cmd=${1:?usage: cluster.sh start|stop|restart|standby|promote|destroy DIR | free-port | wait-port PORT}
if [ "$cmd" = free-port ]; then
	free_port
	exit 0
fi
if [ "$cmd" = wait-port ]; then
	port=${2:?port}
	for _ in $(seq 1 100); do
		if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then exit 0; fi
		sleep 0.1
	done
	exit 1
fi
dir=${2:?data directory}

case "$cmd" in
start)
	shift 2
	mkdir -p "$dir"
	chown "$RUN_AS": "$dir"
	chmod 700 "$dir"
	as_pg "$PGBIN/initdb" -D "$dir/data" -U postgres --auth=trust --no-sync \
		--encoding=UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 ||
		{ cat "$dir/initdb.log" >&2; exit 1; }
	port=${PGPORT_WANTED:-$(free_port)}
	{
		echo "port = $port"
		echo "listen_addresses = '127.0.0.1'"
		echo "unix_socket_directories = '$dir'"
		echo "shared_preload_libraries = 'collab'"
		echo "max_connections = 200"
		echo "log_line_prefix = '%m [%p] %q%a '"
		for line in "$@"; do echo "$line"; done
		[ -z "${CLUSTER_CONF:-}" ] || printf '%s\n' "$CLUSTER_CONF"
	} >>"$dir/data/postgresql.conf"
	echo "$port" >"$dir/port"
	as_pg "$PGBIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start >/dev/null ||
		{ tail -50 "$dir/server.log" >&2; exit 1; }
	echo "PORT=$port"
	;;
restart)
	as_pg "$PGBIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 ${3:+-o "$3"} start >/dev/null ||
		{ tail -50 "$dir/server.log" >&2; exit 1; }
	;;
standby)
	conninfo=${3:?conninfo of the primary}
	shift 3
	mkdir -p "$dir"
	chown "$RUN_AS": "$dir"
	chmod 700 "$dir"
	# -R writes standby.signal and primary_conninfo (CONNINFO's host and port)
	as_pg "$PGBIN/pg_basebackup" -D "$dir/data" -d "$conninfo" -R -c fast --no-sync \
		>"$dir/basebackup.log" 2>&1 || { cat "$dir/basebackup.log" >&2; exit 1; }
	port=${PGPORT_WANTED:-$(free_port)}
	{
		# later lines win over the primary's, copied with its data
		echo "port = $port"
		echo "unix_socket_directories = '$dir'"
		for line in "$@"; do echo "$line"; done
	} >>"$dir/data/postgresql.conf"
	echo "$port" >"$dir/port"
	as_pg "$PGBIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start >/dev/null ||
		{ tail -50 "$dir/server.log" >&2; exit 1; }
	echo "PORT=$port"
	;;
promote)
	as_pg "$PGBIN/pg_ctl" -D "$dir/data" -w -t 60 promote >/dev/null
	;;
stop)
	mode=${3:-fast}
	if [ -f "$dir/data/postmaster.pid" ]; then
		as_pg "$PGBIN/pg_ctl" -D "$dir/data" -m "$mode" -w -t 60 stop >/dev/null
	fi
	;;
destroy)
	if [ -f "$dir/data/postmaster.pid" ]; then
		as_pg "$PGBIN/pg_ctl" -D "$dir/data" -m immediate -w -t 60 stop >/dev/null || true
	fi
	rm -rf "$dir"
	;;
*)
	echo "usage: cluster.sh start|stop|restart|standby|promote|destroy DIR" >&2
	exit 2
	;;
esac
