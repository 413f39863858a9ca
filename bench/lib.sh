# bench/lib.sh: what pcp's benchmark scripts share (bench.sh, tree.sh,
# soak.sh): the private network namespace each runs in, background
# processes under timeout, scratch files, figures. A script sources it
# first thing; it re-executes the script inside a new network namespace.
set -euo pipefail
export LC_ALL=C

here=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
script=$(cd -- "$(dirname -- "$0")" && pwd)/$(basename -- "$0")
repo=$(dirname -- "$here")
export PCP_BIN=${PCP_BIN:-$repo/bin}

# --- into a private network namespace --------------------------------------
# The marker alone is not trusted: the namespace must also differ from the
# one the script was started in.
own_ns=$(readlink /proc/self/ns/net)
if [[ ${PCP_BENCH_NETNS:-} != 1 || -z ${PCP_BENCH_OUTER_NS:-} || $own_ns == "$PCP_BENCH_OUTER_NS" ]]; then
	for tool in unshare ip timeout sha256sum go awk cmp base64 seq paste truncate; do
		command -v "$tool" >/dev/null || { echo "bench: FAILED: '$tool' is needed" >&2; exit 1; }
	done
	# --kill-child: if unshare dies, the script inside gets SIGTERM and
	# cleans up. If the namespace cannot be made, unshare fails and so does
	# the benchmark: nothing runs outside.
	exec env PCP_BENCH_NETNS=1 PCP_BENCH_OUTER_NS="$own_ns" \
		unshare --net --kill-child=SIGTERM -- bash "$script" "$@"
fi

fail() {
	echo "bench: FAILED: $*" >&2
	exit 1
}

# show FILE: the end of a log, indented, on stderr.
show() {
	echo "  --- $(basename -- "$1") (last lines) ---" >&2
	tail -n 25 -- "$1" 2>/dev/null | sed 's/^/  | /' >&2 || true
}

for step in "link set lo up" "link set lo multicast on" "route add 224.0.0.0/4 dev lo"; do
	# shellcheck disable=SC2086 # the steps are words on purpose
	timeout 10 ip $step || fail "ip $step"
done

# --- processes and scratch files -------------------------------------------
tmp=$(mktemp -d "${TMPDIR:-/tmp}/pcp-bench.XXXXXX")
declare -A live=() # background processes (each a `timeout`) not yet reaped

cleanup() {
	local p
	trap - EXIT INT TERM HUP
	for p in "${!live[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
	for p in "${!live[@]}"; do
		# Each is a `timeout -k 5`: it kills its command at most 5 s after TERM.
		timeout 10 tail --pid="$p" -f /dev/null 2>/dev/null || kill -KILL "$p" 2>/dev/null || true
	done
	rm -rf -- "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

# spawn SECONDS STDIN STDOUT STDERR CMD [ARG...]: start CMD in the background
# under `timeout`; its pid (the timeout's) is left in $spawned.
spawn() {
	local secs=$1 in=$2 out=$3 err=$4
	shift 4
	timeout -k 5 "$secs" "$@" <"$in" >"$out" 2>"$err" &
	spawned=$!
	live[$spawned]=1
}

# reap PID: wait for a spawned process (bounded by its timeout) and return
# its exit status (124: it timed out).
reap() {
	local rc=0
	wait "$1" || rc=$?
	unset "live[$1]"
	return "$rc"
}

# reap_pair TAG RECV SEND WHO: wait for the receiver RECV, then for its
# sender SEND (both spawned with stderr in $tmp/TAG.recv.err and
# $tmp/TAG.send.err); unless both exit 0, show their logs and fail, naming
# WHO ("pcp-pipe", "croc"...). Sets reaped_at to when the receiver exited.
reap_pair() {
	local tag=$1 r=$2 s=$3 who=$4 rc=0
	reap "$r" || rc=$?
	reaped_at=$EPOCHREALTIME
	((rc == 0)) || { show "$tmp/$tag.recv.err"; show "$tmp/$tag.send.err"; fail "$tag: $who receiver exited $rc"; }
	reap "$s" || rc=$?
	((rc == 0)) || { show "$tmp/$tag.send.err"; show "$tmp/$tag.recv.err"; fail "$tag: $who sender exited $rc"; }
}

# wait_for FILE REGEX SECONDS [PID]: wait until a line of FILE matches REGEX;
# fail after SECONDS, or as soon as PID has ended.
wait_for() {
	local deadline
	deadline=$(awk -v t="$EPOCHREALTIME" -v s="$3" 'BEGIN { printf "%.3f", t + s }')
	until grep -qE -- "$2" "$1" 2>/dev/null; do
		if [[ -n ${4:-} ]] && ! kill -0 "$4" 2>/dev/null; then
			return 1
		fi
		if awk -v t="$EPOCHREALTIME" -v d="$deadline" 'BEGIN { exit !(t > d) }'; then
			return 1
		fi
		sleep 0.02
	done
}

# calc EXPR [VAR=VALUE...]: evaluate an awk expression, e.g. calc 'b/s/1e6' b=1 s=2.
calc() {
	local expr=$1
	shift
	local args=()
	for a in "$@"; do args+=(-v "$a"); done
	awk "${args[@]}" "BEGIN { print $expr }"
}

# gbs MBPS: a rate in MB/s as GB/s.
gbs() {
	calc 'r / 1000' r="$1"
}

# median NUMBER...
median() {
	printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}

# seconds GODURATION...: Go durations ("1.234s", "259ms") in seconds.
seconds() {
	timeout 10 "$tcpcopy" dur "$@"
}

# runfield FILE NAME: a field of a `tcpcopy run` report.
runfield() {
	sed -n "s/.*\\b$2=\\([^ ]*\\).*/\\1/p" "$1"
}

# cpu FILE: user + system CPU seconds from a `tcpcopy run` report.
cpu() {
	calc 'u + s' u="$(runfield "$1" user_s)" s="$(runfield "$1" sys_s)"
}

# below TARGET-MET: " BELOW TARGET" unless the awk condition holds.
below() {
	if awk "BEGIN { exit !($1) }"; then echo ""; else echo "   BELOW TARGET"; fi
}

pipe_bin=$PCP_BIN/pcp-pipe
pcp_bin=$PCP_BIN/pcp
[[ -x $pipe_bin && -x $pcp_bin ]] || fail "no pcp-pipe and pcp in $PCP_BIN (run make build)"
unset PCP_BOOTSTRAP PCP_CODE PCP_DISCOVERY PCP_TIMEOUT

# Codes: BIP39 words; each transfer gets its own first word, hence its own
# channel, so that no run can meet a previous run's peer or record (after
# 30 transfers the words come round again).
words=(abandon ability able about above absent absorb abstract absurd abuse
	access accident account accuse achieve acid acoustic acquire across act
	action actor actress actual adapt add addict address adjust admit)
next_word=0
new_code() {
	code="${words[next_word]}-ability-able-about"
	next_word=$((next_word + 1))
	((next_word < ${#words[@]})) || next_word=0
}

bench_start=$EPOCHREALTIME
echo "pcp benchmark ($(basename -- "$script")): $(nproc) CPUs (load average $(cut -d ' ' -f 1-3 /proc/loadavg)), $(uname -sr), $(go version | awk '{ print $3 }'), commands from $PCP_BIN"
echo "private network namespace $(readlink /proc/self/ns/net) (outer $PCP_BENCH_OUTER_NS), loopback only"

# start_croc_relay SECONDS: croc's relay on 127.0.0.1:9009-9013 for the
# croc runs (password "bench", HOME in the scratch directory), for at most
# SECONDS.
start_croc_relay() {
	mkdir -p -- "$tmp/croc-home"
	spawn "$1" /dev/null "$tmp/croc-relay.out" "$tmp/croc-relay.err" env HOME="$tmp/croc-home" "$croc_bin" --pass bench relay --host 127.0.0.1
	wait_for "$tmp/croc-relay.err" 'starting TCP server on 9013|running relay' 15 "$spawned" || sleep 1
}

tcpcopy=$tmp/tcpcopy
(cd "$repo" && timeout 300 go build -o "$tcpcopy" ./bench/tcpcopy) || fail "go build ./bench/tcpcopy"

