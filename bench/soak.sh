#!/usr/bin/env bash
# bench/soak.sh: one long stream through pcp-pipe, run by `make soak` and
# `make bench` (PCP_BIN=bin/).
#
# `tcpcopy gen` generates SOAK_BYTES (default 20 GiB) of pseudo-random
# bytes, nothing stored, into `pcp-pipe send`; `pcp-pipe recv` writes them
# to /dev/null. Both run with PCP_STATS=1s, so each prints its goroutines,
# Go heap, resident set and open files every second. The script prints the
# series, then for each side the value one twentieth of the way in (after
# the first GiB of 20, at the average rate) against the maximum after it:
# the resident set must stay within 10 % of it, goroutines and open files
# must not grow.
#
# Environment: PCP_BIN (default bin/), SOAK_BYTES (default 21474836480).
#
# Exit status: 0 when the transfer worked, whether or not the figures meet
# their targets (a missed target is marked BELOW TARGET); 1 when it failed.

# shellcheck source=bench/lib.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"

soak_bytes=${SOAK_BYTES:-$((20 << 30))}
[[ $soak_bytes =~ ^[1-9][0-9]*$ ]] || fail "SOAK_BYTES must be a positive number"
gib=$(calc 'b / 2^30' b="$soak_bytes")
echo "== soak: $gib GiB generated into pcp-pipe send, pcp-pipe recv to /dev/null, found by mDNS; PCP_STATS=1s on both sides"

new_code
t0=$EPOCHREALTIME
spawn 1800 /dev/null /dev/null "$tmp/soak.send.err" env PCP_STATS=1s \
	bash -c 'set -o pipefail; "$1" gen "$2" | "$3" send --discovery mdns --timeout 60s -v --code "$4"' _ "$tcpcopy" "$soak_bytes" "$pipe_bin" "$code"
s=$spawned
spawn 1800 /dev/null /dev/null "$tmp/soak.recv.err" env PCP_STATS=1s "$pipe_bin" recv --discovery mdns --timeout 60s -v "$code"
reap_pair soak "$spawned" "$s" pcp-pipe
t1=$reaped_at
# The digest covers every byte and the length: the stream arrived whole.
grep -q "digest verified" "$tmp/soak.recv.err" || { show "$tmp/soak.recv.err"; fail "no 'digest verified' from the receiver"; }
wall=$(calc 't1 - t0' t1="$t1" t0="$t0")
printf 'soak: %s GiB in %.1f s (%.2f GB/s, receiver start to exit)\n' "$gib" "$wall" "$(calc 'b / w / 1e9' b="$soak_bytes" w="$wall")"

# series FILE: the stats lines of FILE as "goroutines rss_mib fds heap_mib"
# rows.
series() {
	sed -n 's/.*stats: goroutines=\([0-9]*\) heap_mib=\([0-9.]*\) rss_mib=\([0-9.]*\) fds=\([0-9]*\).*/\1 \3 \4 \2/p' "$1"
}

# judge SIDE FILE: the side's series and verdict.
judge() {
	local side=$1 file=$2 n first
	n=$(series "$file" | wc -l)
	((n >= 3)) || { show "$file"; fail "$side: fewer than 3 stats lines (a run of 3 s or more is needed: is SOAK_BYTES too small?)"; }
	echo "  $side, one row a second (goroutines/rss_mib/fds/go_heap_mib):"
	series "$file" | awk '{ printf "%s%s/%s/%s/%s", (NR % 8 == 1 ? "    " : " "), $1, $2, $3, $4; if (NR % 8 == 0) print "" } END { if (NR % 8) print "" }'
	# The row at one twentieth of the run (at least the first).
	first=$(calc 'int(n / 20) + 1' n="$n")
	series "$file" | awk -v first="$first" -v side="$side" '
		NR == first { g0 = $1; r0 = $2; f0 = $3 }
		NR >= first { if ($1 > g) g = $1; if ($2 > r) r = $2; if ($3 > f) f = $3 }
		END {
			ok = (r <= r0 * 1.10 && g <= g0 && f <= f0)
			printf "soak %s: after the first GiB %d goroutines, RSS %.1f MiB, %d fds; maximum after it %d goroutines, RSS %.1f MiB (%+.1f%%), %d fds (target: RSS within 10%%, no growth)%s\n",
				side, g0, r0, f0, g, r, 100 * (r - r0) / r0, f, ok ? "" : "   BELOW TARGET"
		}'
}
judge send "$tmp/soak.send.err"
judge recv "$tmp/soak.recv.err"
