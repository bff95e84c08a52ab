#!/usr/bin/env bash
# A throwaway local PostgreSQL cluster for running the embedded FerretDB on
# PostgreSQL (PUSHREG_FERRETDB_POSTGRES_URL, the bench's
# --ferretdb-postgres-url).
#
#   scripts/postgres.sh start     # prints postgres://pushreg@127.0.0.1:PORT/pushreg?sslmode=disable
#   scripts/postgres.sh url       # prints the URL of the running cluster
#   scripts/postgres.sh pid       # prints the postmaster's PID (bench --store-pid)
#   scripts/postgres.sh stop      # stops it and removes its files
#   scripts/postgres.sh run CMD…  # start, run CMD with PUSHREG_FERRETDB_POSTGRES_URL set, stop
#
# For example:
#   go run ./scripts/bench --ferretdb-postgres-url "$(scripts/postgres.sh start)" --store-pid "$(scripts/postgres.sh pid)"
#   scripts/postgres.sh stop
#
# The cluster lives in $PUSHREG_PG_DIR (default: pushreg-bench-pg in the
# temporary directory): data, log, and its Unix socket, listening on a free
# port on 127.0.0.1 only, trust authentication (loopback and the socket
# only). PostgreSQL refuses to run as root, so as root it runs as the
# postgres user (or $PUSHREG_PG_USER). Binaries: $PG_BIN, else PostgreSQL
# 15's, else the newest installed under /usr/lib/postgresql, else PATH.
# Settings are PostgreSQL's defaults (fsync on); add any with
# PUSHREG_PG_OPTIONS (passed to postgres as -c options, such as
# "-c synchronous_commit=off").
set -euo pipefail

dir=${PUSHREG_PG_DIR:-${TMPDIR:-/tmp}/pushreg-bench-pg}

die() { echo "postgres.sh: $*" >&2; exit 1; }

find_bin() {
	if [[ -n ${PG_BIN:-} ]]; then echo "$PG_BIN"; return; fi
	if [[ -x /usr/lib/postgresql/15/bin/initdb ]]; then echo /usr/lib/postgresql/15/bin; return; fi
	local newest
	newest=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
	if [[ -n $newest ]]; then echo "$newest"; return; fi
	if command -v initdb >/dev/null; then dirname "$(command -v initdb)"; return; fi
	die "no PostgreSQL found (set PG_BIN to the directory holding initdb and pg_ctl)"
}

# as runs a command as the cluster's owner.
as() {
	if [[ $(id -u) -eq 0 ]]; then
		runuser -u "$owner" -- "$@"
	else
		"$@"
	fi
}

owner=$(id -un)
if [[ $(id -u) -eq 0 ]]; then
	owner=${PUSHREG_PG_USER:-postgres}
	id "$owner" >/dev/null 2>&1 || die "running as root and there is no user $owner to run PostgreSQL as (set PUSHREG_PG_USER)"
fi

running() { [[ -f $dir/port ]] && as "$(find_bin)/pg_ctl" status -D "$dir/data" >/dev/null 2>&1; }

url() { echo "postgres://pushreg@127.0.0.1:$(cat "$dir/port")/pushreg?sslmode=disable"; }

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

start() {
	if running; then url; return; fi
	local bin port
	bin=$(find_bin)
	rm -rf "$dir"
	mkdir -p "$dir/sock"
	chmod 700 "$dir"
	[[ $owner == "$(id -un)" ]] || chown -R "$owner" "$dir"
	as "$bin/initdb" -D "$dir/data" -U pushreg --auth=trust -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 ||
		die "initdb failed; see $dir/initdb.log"
	for _ in $(seq 50); do
		port=$((20000 + RANDOM % 40000))
		port_free "$port" && break
		port=
	done
	[[ -n $port ]] || die "no free port found"
	# shellcheck disable=SC2086 # PUSHREG_PG_OPTIONS is a list of options
	as "$bin/pg_ctl" start -D "$dir/data" -l "$dir/postgres.log" -w -t 60 \
		-o "-c listen_addresses=127.0.0.1 -p $port -k $dir/sock ${PUSHREG_PG_OPTIONS:-}" >/dev/null ||
		die "PostgreSQL did not start; see $dir/postgres.log"
	echo "$port" >"$dir/port"
	as "$bin/createdb" -h "$dir/sock" -p "$port" -U pushreg pushreg || die "createdb failed"
	echo "postgres.sh: PostgreSQL $("$bin/postgres" --version | awk '{print $3}') in $dir, port $port (stop: $0 stop)" >&2
	url
}

stop() {
	if [[ -d $dir/data ]]; then
		as "$(find_bin)/pg_ctl" stop -D "$dir/data" -m fast -w >/dev/null 2>&1 || true
	fi
	rm -rf "$dir"
}

case ${1:-} in
start) start ;;
stop) stop ;;
url) running || die "not running (start it with: $0 start)"; url ;;
pid) running || die "not running (start it with: $0 start)"; head -n 1 "$dir/data/postmaster.pid" ;;
run)
	shift
	[[ $# -gt 0 ]] || die "run needs a command"
	PUSHREG_FERRETDB_POSTGRES_URL=$(start)
	export PUSHREG_FERRETDB_POSTGRES_URL
	trap stop EXIT
	"$@"
	;;
*) die "usage: $0 start|stop|url|pid|run CMD…" ;;
esac
