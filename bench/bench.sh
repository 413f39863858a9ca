#!/usr/bin/env bash
# bench/bench.sh: pcp's benchmark, run by `make bench` (PCP_BIN=bin/).
#
# It measures, on loopback:
#   1. raw TCP throughput: 1 GiB through one plain TCP connection (bench/tcpcopy),
#      in turn with
#   2. pcp-pipe throughput: the same 1 GiB through pcp-pipe send/recv found by
#      mDNS, the data phase (the receiver's own figure) and the wall time
#      including discovery and authentication; the ratio to raw TCP; and a
#      64 MiB transfer whose output is checked with sha256sum;
#   3. the rendezvous time through a private DHT of 3 `pcp node` processes;
#   4. the receiver's peak RSS for the 64 MiB and the 1 GiB transfers;
#   5. pcp send / pcp receive of one 1 GiB file, random and text, with
#      --compress auto (the default) and each fixed level 0 to 4 in turn
#      (the order rotated by one each run, the disk synced after each,
#      after a first transfer of each content that is not counted),
#      extracted into a folder on disk: the wall time from launching both
#      commands to the receiver's exit, the data phase, the rate of the
#      uncompressed size, the size on the wire and the receiver's peak RSS;
#      the default against the best fixed level; and, when croc is on PATH,
#      croc through its own relay in this namespace, in turn with them; the
#      first run of each content is checked with cmp.
#
# bench/tree.sh measures a tree of many small files, bench/soak.sh a long
# stream; all three share bench/lib.sh.
#
# Everything runs inside a private network namespace made for this script
# (it re-executes itself under `unshare --net`), with only loopback up, so
# no pcp command and no socket ever touches the machine's own network. Every
# command runs under `timeout`, background processes are stopped on exit,
# and the scratch files live in a temporary directory removed on exit.
#
# Environment: PCP_BIN (the directory of pcp and pcp-pipe; default bin/),
# BENCH_RUNS (1 GiB runs of raw TCP and of pcp-pipe, in turn, default 5),
# BENCH_DHT_RUNS (rendezvous runs, default 5), BENCH_SEND_RUNS (pcp send
# runs of each content and level, default 3).
#
# Exit status: 0 when every step worked, whether or not the figures meet
# their targets (a missed target is marked BELOW TARGET); 1 when a step failed.
# shellcheck source=bench/lib.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"

big=$((1 << 30))
small=$((64 << 20))
runs=${BENCH_RUNS:-5}
dht_runs=${BENCH_DHT_RUNS:-5}
send_runs=${BENCH_SEND_RUNS:-3}
[[ $runs =~ ^[1-9][0-9]*$ && $dht_runs =~ ^[1-9][0-9]*$ && $send_runs =~ ^[1-9][0-9]*$ ]] ||
	fail "BENCH_RUNS, BENCH_DHT_RUNS and BENCH_SEND_RUNS must be positive integers"

# --- source data -----------------------------------------------------------
timeout 120 head -c "$big" /dev/urandom >"$tmp/in-1g" || fail "making 1 GiB of random data"
timeout 60 head -c "$small" "$tmp/in-1g" >"$tmp/in-64m" || fail "making the 64 MiB input"
[[ $(stat -c %s "$tmp/in-1g") == "$big" ]] || fail "the 1 GiB input has the wrong size"
printf '%s\n' x >"$tmp/tiny"
# 1 GiB of text for pcp send: numbered lines, each with 32 characters of
# base64 of random bytes, which zstd level 1 compresses to about a third.
# A chunk of 512 Ki lines (45.6 MB) is repeated: a repeat lies far beyond
# any zstd window at the fast levels, so it does not help the compression.
text_start=$EPOCHREALTIME
timeout 60 head -c $((12 << 20)) "$tmp/in-1g" | timeout 60 base64 -w 32 >"$tmp/text-b64" || fail "making the text's base64 lines"
text_lines=$(wc -l <"$tmp/text-b64")
timeout 60 seq -f 'line %07g of the pcp benchmark text, status=ok, id=' 1 "$text_lines" |
	timeout 60 paste -d '' - "$tmp/text-b64" >"$tmp/text-chunk" || fail "making the text chunk"
chunk_size=$(stat -c %s "$tmp/text-chunk")
((chunk_size > 0)) || fail "the text chunk is empty"
for ((i = 0; i * chunk_size < big; i++)); do
	timeout 30 cat -- "$tmp/text-chunk" || fail "making 1 GiB of text"
done >"$tmp/text-1g"
(($(stat -c %s "$tmp/text-1g") >= big)) || fail "the repeated text is shorter than 1 GiB"
timeout 60 truncate -s "$big" "$tmp/text-1g" || fail "cutting the text to 1 GiB"
[[ $(stat -c %s "$tmp/text-1g") == "$big" ]] || fail "the 1 GiB text has the wrong size"
rm -f -- "$tmp/text-b64" "$tmp/text-chunk"
# Written back now, not by the kernel's flusher 30 s later, in the middle
# of a measurement on this machine's few cores.
timeout 120 sync -- "$tmp/in-1g" "$tmp/in-64m" "$tmp/text-1g" || fail "syncing the inputs"
text_secs=$(calc 't1 - t0' t1="$EPOCHREALTIME" t0="$text_start")
echo "inputs: 1 GiB and 64 MiB of random bytes in $tmp (read with < redirection, page cache warm)"
printf 'inputs: 1 GiB of text (%d-line chunks of %.1f MB, repeated) made in %.1f s\n' "$text_lines" "$(calc 'c / 1e6' c="$chunk_size")" "$text_secs"
echo

# --- 1. raw TCP ------------------------------------------------------------
# tcp_run I: one raw TCP copy of the 1 GiB input. Sets t_rate (MB/s) and
# prints its line.
tcp_run() {
	local i=$1 port=$((40000 + $1)) r s rc bytes secs
	spawn 60 /dev/null /dev/null "$tmp/tcp$i.recv.err" "$tcpcopy" run -o "$tmp/tcp$i.recv.run" -- "$tcpcopy" recv "127.0.0.1:$port"
	r=$spawned
	spawn 60 "$tmp/in-1g" /dev/null "$tmp/tcp$i.send.err" "$tcpcopy" run -o "$tmp/tcp$i.send.run" -- "$tcpcopy" send "127.0.0.1:$port"
	s=$spawned
	rc=0
	reap "$s" || rc=$?
	((rc == 0)) || { show "$tmp/tcp$i.send.err"; fail "raw TCP run $i: tcpcopy send exited $rc"; }
	reap "$r" || rc=$?
	((rc == 0)) || { show "$tmp/tcp$i.recv.err"; fail "raw TCP run $i: tcpcopy recv exited $rc"; }
	read -r bytes secs < <(sed -n 's/^tcpcopy: received \([0-9]*\) bytes in \([0-9.]*\) s$/\1 \2/p' "$tmp/tcp$i.recv.err") ||
		{ show "$tmp/tcp$i.recv.err"; fail "raw TCP run $i: no result line"; }
	[[ $bytes == "$big" ]] || fail "raw TCP run $i: received $bytes bytes, want $big"
	t_rate=$(calc 'b / s / 1e6' b="$bytes" s="$secs")
	printf '  raw tcp run %d        %.3f s   %6.0f MB/s   %.2f GB/s | CPU send %.2f s, recv %.2f s\n' "$i" "$secs" "$t_rate" "$(calc 'r / 1000' r="$t_rate")" \
		"$(cpu "$tmp/tcp$i.send.run")" "$(cpu "$tmp/tcp$i.recv.run")"
}

# --- 2. pcp-pipe -----------------------------------------------------------
# pipe_run TAG INPUT OUTPUT BYTES: one pcp-pipe transfer found by mDNS. Both
# commands run under `tcpcopy run` for their peak RSS and CPU time. Sets:
# p_data (data phase, s), p_wall (both commands, from start to the last
# exit, s), p_found (receiver: host start + discovery and authentication,
# s), p_transport, p_rss_mb (receiver), p_cpu_send, p_cpu_recv (user + sys, s).
pipe_run() {
	local tag=$1 input=$2 output=$3 want=$4 s r rc t0 t1 line size dur host found
	new_code
	t0=$EPOCHREALTIME
	spawn 180 "$input" /dev/null "$tmp/$tag.send.err" "$tcpcopy" run -o "$tmp/$tag.send.run" -- \
		"$pipe_bin" send --discovery mdns --timeout 60s --code "$code" -v
	s=$spawned
	spawn 180 /dev/null "$output" "$tmp/$tag.recv.err" "$tcpcopy" run -o "$tmp/$tag.recv.run" -- \
		"$pipe_bin" recv --discovery mdns --timeout 60s -v "$code"
	r=$spawned
	rc=0
	reap "$r" || rc=$?
	((rc == 0)) || { show "$tmp/$tag.recv.err"; show "$tmp/$tag.send.err"; fail "$tag: pcp-pipe recv exited $rc"; }
	reap "$s" || rc=$?
	t1=$EPOCHREALTIME
	((rc == 0)) || { show "$tmp/$tag.send.err"; show "$tmp/$tag.recv.err"; fail "$tag: pcp-pipe send exited $rc"; }

	line=$(sed -n 's/^pcp-pipe: received \(.*\) in \([^;]*\); digest verified$/\1|\2/p' "$tmp/$tag.recv.err")
	[[ -n $line ]] || { show "$tmp/$tag.recv.err"; fail "$tag: no 'received … digest verified' line"; }
	size=${line%%|*} dur=${line#*|}
	[[ $size == "$(awk -v b="$want" 'BEGIN { if (b >= 2^30) printf "%.1f GiB", b / 2^30; else printf "%.1f MiB", b / 2^20 }')" ]] ||
		fail "$tag: the receiver got $size, want $want bytes"
	grep -q "^pcp-pipe: sent $size in .*; the receiver confirmed it$" "$tmp/$tag.send.err" ||
		{ show "$tmp/$tag.send.err"; fail "$tag: no 'sent … confirmed' line from the sender"; }
	# pcp-pipe: peer …abc found by mdns and authenticated; receiving over the LAN (tcp)
	p_transport=$(sed -n 's/^pcp-pipe: peer .* authenticated; receiving .*(\([a-z0-9-]*\)[,)].*$/\1/p' "$tmp/$tag.recv.err")
	host=$(sed -n 's/^pcp-pipe: host .* started in \([^ ]*\)$/\1/p' "$tmp/$tag.recv.err")
	found=$(sed -n 's/^pcp-pipe: [a-z]*: authenticated .* (\(.*\) after start)$/\1/p' "$tmp/$tag.recv.err")
	p_data=$(seconds "$dur") || fail "$tag: cannot read the duration '$dur'"
	p_found=$(calc 'h + f' h="$(seconds "${host:-0s}")" f="$(seconds "${found:-0s}")")
	p_wall=$(calc 't1 - t0' t1="$t1" t0="$t0")
	p_rss_mb=$(calc 'k * 1024 / 1e6' k="$(runfield "$tmp/$tag.recv.run" maxrss_kb)")
	p_cpu_send=$(cpu "$tmp/$tag.send.run")
	p_cpu_recv=$(cpu "$tmp/$tag.recv.run")
}

echo "== raw TCP and pcp-pipe in turn, $runs runs each: 1 GiB over one TCP connection on 127.0.0.1 with 256 KiB buffers (bench/tcpcopy); pcp-pipe send --discovery mdns --code CODE < input, recv CODE > /dev/null"
tcp_rates=() data_rates=() wall_rates=() rss_big=()
transport=
for ((i = 1; i <= runs; i++)); do
	tcp_run "$i"
	tcp_rates+=("$t_rate")
	pipe_run "pipe$i" "$tmp/in-1g" /dev/null "$big"
	data_rates+=("$(calc 'b / d / 1e6' b="$big" d="$p_data")")
	wall_rates+=("$(calc 'b / w / 1e6' b="$big" w="$p_wall")")
	rss_big+=("$p_rss_mb")
	case ",$transport," in
	*",$p_transport,"*) ;;
	,,) transport=$p_transport ;;
	*) transport="$transport,$p_transport" ;;
	esac
	printf '  pcp-pipe run %d       data %.3f s   %6.0f MB/s   %.2f GB/s | wall %.3f s   %6.0f MB/s | found in %.3f s | over %s | recv RSS %.0f MB | CPU send %.2f s, recv %.2f s\n' \
		"$i" "$p_data" "${data_rates[-1]}" "$(calc 'r / 1000' r="${data_rates[-1]}")" \
		"$p_wall" "${wall_rates[-1]}" "$p_found" "$p_transport" "$p_rss_mb" "$p_cpu_send" "$p_cpu_recv"
done
tcp_rate=$(median "${tcp_rates[@]}")
printf 'raw tcp:               %.0f MB/s   %.2f GB/s   (median of %d)\n' "$tcp_rate" "$(calc 'r / 1000' r="$tcp_rate")" "$runs"
data_rate=$(median "${data_rates[@]}")
wall_rate=$(median "${wall_rates[@]}")
ratio=$(calc 'p / t' p="$data_rate" t="$tcp_rate")
wall_ratio=$(calc 'p / t' p="$wall_rate" t="$tcp_rate")
rss_big_max=$(printf '%s\n' "${rss_big[@]}" | sort -g | tail -n 1)
printf 'pcp-pipe data phase:   %.0f MB/s   %.2f GB/s   (median of %d)\n' "$data_rate" "$(calc 'r / 1000' r="$data_rate")" "$runs"
printf 'pcp-pipe wall:         %.0f MB/s   %.2f GB/s   (median of %d; includes start, discovery, authentication)\n' \
	"$wall_rate" "$(calc 'r / 1000' r="$wall_rate")" "$runs"
echo "pcp-pipe transport:    $transport"
printf 'ratio pcp-pipe / raw:  %.2f data phase, %.2f wall   (target >= 0.50)%s\n' "$ratio" "$wall_ratio" "$(below "$ratio >= 0.50")"
echo

echo "== pcp-pipe: 64 MiB into a file, checked with sha256sum"
pipe_run pipe64 "$tmp/in-64m" "$tmp/out-64m" "$small"
rss_small=$p_rss_mb
sum_in=$(timeout 60 sha256sum <"$tmp/in-64m" | awk '{ print $1 }')
sum_out=$(timeout 60 sha256sum <"$tmp/out-64m" | awk '{ print $1 }')
[[ -n $sum_in && $sum_in == "$sum_out" ]] || fail "64 MiB: the output differs from the input (sha256 $sum_out, want $sum_in)"
rm -f -- "$tmp/out-64m"
printf '  pcp-pipe 64 MiB       data %.3f s   %6.0f MB/s | wall %.3f s | over %s | recv RSS %.0f MB\n' \
	"$p_data" "$(calc 'b / d / 1e6' b="$small" d="$p_data")" "$p_wall" "$p_transport" "$p_rss_mb"
echo "integrity:             sha256 of the 64 MiB output matches the input (${sum_in:0:16}…)"
echo

# --- 3. rendezvous through a private DHT -----------------------------------
echo "== rendezvous: 3 pcp nodes on 127.0.0.1, send and recv --discovery dht --bootstrap ALL3, $dht_runs runs"
nodes=()
for ((n = 1; n <= 3; n++)); do
	args=(node --listen /ip4/127.0.0.1/tcp/0)
	((n == 1)) || args+=(--bootstrap "${nodes[0]}")
	spawn 600 /dev/null "$tmp/node$n.out" "$tmp/node$n.err" "$pcp_bin" "${args[@]}"
	wait_for "$tmp/node$n.out" '^/ip4/127\.0\.0\.1/tcp/[0-9]+/p2p/' 15 "$spawned" ||
		{ show "$tmp/node$n.err"; fail "pcp node $n printed no multiaddr within 15 s"; }
	nodes+=("$(head -n 1 "$tmp/node$n.out")")
done
bootstrap=$(IFS=,; echo "${nodes[*]}")
echo "  nodes: ${nodes[*]}"

rendezvous=()
for ((i = 1; i <= dht_runs; i++)); do
	tag=dht$i
	new_code
	spawn 90 "$tmp/tiny" /dev/null "$tmp/$tag.send.err" "$pipe_bin" send --discovery dht --bootstrap "$bootstrap" --timeout 60s --code "$code" -v
	s=$spawned
	# The receiver starts once the sender's record is in the DHT, as when a
	# person types the code the sender shows.
	wait_for "$tmp/$tag.send.err" 'dht: announced channel' 30 "$s" ||
		{ show "$tmp/$tag.send.err"; fail "$tag: the sender did not announce within 30 s"; }
	spawn 60 /dev/null "$tmp/$tag.recv.out" "$tmp/$tag.recv.err" "$tcpcopy" run -o "$tmp/$tag.recv.run" -- \
		"$pipe_bin" recv --discovery dht --bootstrap "$bootstrap" --timeout 30s -v "$code"
	reap_pair "$tag" "$spawned" "$s" pcp-pipe
	cmp -s "$tmp/tiny" "$tmp/$tag.recv.out" || fail "$tag: the receiver wrote something else than the input"
	host=$(sed -n 's/^pcp-pipe: host .* started in \([^ ]*\)$/\1/p' "$tmp/$tag.recv.err")
	found=$(sed -n 's/^pcp-pipe: dht: authenticated .* (\(.*\) after start)$/\1/p' "$tmp/$tag.recv.err")
	[[ -n $host && -n $found ]] || { show "$tmp/$tag.recv.err"; fail "$tag: no 'host … started' or 'dht: authenticated' line"; }
	read -r host_s found_s < <(seconds "$host" "$found" | paste -sd ' ') || fail "$tag: cannot read '$host' '$found'"
	total=$(calc 'h + f' h="$host_s" f="$found_s")
	rendezvous+=("$total")
	printf '  rendezvous run %d     %.3f s  (host started in %.3f s + found and authenticated %.3f s later) | recv wall %.3f s\n' \
		"$i" "$total" "$host_s" "$found_s" "$(runfield "$tmp/$tag.recv.run" wall_s)"
done
rendezvous_median=$(median "${rendezvous[@]}")
printf 'rendezvous:            median %.3f s over %d (receiver start to authenticated peer; target < 1 s)%s\n' \
	"$rendezvous_median" "$dht_runs" "$(below "$rendezvous_median < 1")"
echo

# --- 4. peak RSS -----------------------------------------------------------
printf 'recv peak RSS:         64 MiB: %.0f MB%s   1 GiB: %.0f MB (max of %d)%s   (target < 100 MB)\n' \
	"$rss_small" "$(below "$rss_small < 100")" "$rss_big_max" "$runs" "$(below "$rss_big_max < 100")"
echo

# --- 5. pcp send / pcp receive ---------------------------------------------
# bytes_of SIZE: a size as pcp prints it ("310.2 MiB") in bytes, as precise
# as the printed figure.
bytes_of() {
	awk -v s="$1" 'BEGIN {
		if (split(s, f, " ") != 2 || f[1] !~ /^[0-9.]+$/) exit 1
		if (f[2] == "B") k = 0
		else if (f[2] ~ /^[KMGTPE]iB$/) k = index("KMGTPE", substr(f[2], 1, 1))
		else exit 1
		printf "%.0f\n", f[1] * 1024 ^ k
	}'
}

# send_run TAG INPUT LEVEL CHECK: one `pcp send --compress LEVEL INPUT` found
# by mDNS, received by `pcp receive --yes --output DIR` into an empty folder
# in the scratch directory, which is removed afterwards; with CHECK=1 the
# extracted file is compared with INPUT. Both commands run under `tcpcopy
# run`. Sets: s_wall (from launching both commands to the receiver's exit,
# s), s_data (the receiver's data phase, s), s_found (receiver: host start +
# discovery and authentication, s), s_wire (the receiver's count of bytes
# on the wire, to 0.1 MiB), s_transport, s_rss_mb (receiver), s_cpu_send,
# s_cpu_recv (user + sys, s).
send_run() {
	local tag=$1 input=$2 level=$3 check=$4 out=$tmp/send-out s r rc t0 t1 line amount size wire dur route host found got
	rm -rf -- "$out"
	mkdir -- "$out"
	new_code
	t0=$EPOCHREALTIME
	spawn 180 /dev/null /dev/null "$tmp/$tag.send.err" "$tcpcopy" run -o "$tmp/$tag.send.run" -- \
		"$pcp_bin" send --discovery mdns --timeout 60s --code "$code" --compress "$level" -v "$input"
	s=$spawned
	spawn 180 /dev/null /dev/null "$tmp/$tag.recv.err" "$tcpcopy" run -o "$tmp/$tag.recv.run" -- \
		"$pcp_bin" receive --discovery mdns --timeout 60s --yes --output "$out" -v "$code"
	reap_pair "$tag" "$spawned" "$s" pcp
	t1=$reaped_at

	# pcp: received 1.0 GiB (310.2 MiB on the wire) in 1.234s (829.8 MiB/s), over the LAN (tcp); digest verified
	# (without "(… on the wire)" when the wire carried as many bytes as the files hold)
	line=$(sed -n 's/^pcp: received \(.*\) in \([^ ]*\) ([^)]*\/s), \(.*\); digest verified$/\1|\2|\3/p' "$tmp/$tag.recv.err")
	[[ -n $line ]] || { show "$tmp/$tag.recv.err"; fail "$tag: no 'received … digest verified' line"; }
	IFS='|' read -r amount dur route <<<"$line"
	size=${amount%% (*}
	wire=$size
	if [[ $amount =~ \((.*)\ on\ the\ wire\)$ ]]; then wire=${BASH_REMATCH[1]}; fi
	[[ $size == "1.0 GiB" ]] || { show "$tmp/$tag.recv.err"; fail "$tag: the receiver got $size of files, want 1.0 GiB"; }
	grep -qF "pcp: sent $amount in " "$tmp/$tag.send.err" && grep -q '; the receiver confirmed it$' "$tmp/$tag.send.err" ||
		{ show "$tmp/$tag.send.err"; fail "$tag: no 'sent $amount … confirmed' line from the sender"; }
	s_transport=$(sed -n 's/.*(\([a-z0-9-]*\)[,)].*/\1/p' <<<"$route")
	s_wire=$(bytes_of "$wire") || fail "$tag: cannot read the size '$wire'"
	got=$out/$(basename -- "$input")
	[[ -f $got && $(stat -c %s "$got") == "$big" ]] || { ls -la "$out" >&2; fail "$tag: no 1 GiB file $got after the transfer"; }
	if ((check)); then
		timeout 60 cmp -- "$input" "$got" || fail "$tag: the extracted file differs from the input"
	fi
	rm -rf -- "$out"
	sync # the deleted gigabyte's journal commit belongs to this run, not the next

	host=$(sed -n 's/^pcp: host .* started in \([^ ]*\)$/\1/p' "$tmp/$tag.recv.err")
	found=$(sed -n 's/^pcp: [a-z]*: authenticated .* (\(.*\) after start)$/\1/p' "$tmp/$tag.recv.err")
	s_data=$(seconds "$dur") || fail "$tag: cannot read the duration '$dur'"
	s_found=$(calc 'h + f' h="$(seconds "${host:-0s}")" f="$(seconds "${found:-0s}")")
	s_wall=$(calc 't1 - t0' t1="$t1" t0="$t0")
	s_rss_mb=$(calc 'k * 1024 / 1e6' k="$(runfield "$tmp/$tag.recv.run" maxrss_kb)")
	s_cpu_send=$(cpu "$tmp/$tag.send.run")
	s_cpu_recv=$(cpu "$tmp/$tag.recv.run")
}

# croc_run TAG INPUT: one croc transfer of INPUT through the croc relay in
# this namespace, with --no-compress (croc's own compression moves random
# data at some 30 MB/s here: its fastest setting is the fair comparison),
# received with croc --yes --out DIR and compared with INPUT. croc hashes the file before it shows its code, so the time runs
# from the receiver's start to its exit (for pcp, from launching both).
# Sets c_wall (s) and c_rss_mb (receiver).
croc_run() {
	local tag=$1 input=$2 out=$tmp/croc-out s r rc t0 t1 secret got
	rm -rf -- "$out"
	mkdir -- "$out"
	new_code
	secret="pcp-bench-${code//-/}"
	spawn 180 /dev/null "$tmp/$tag.send.out" "$tmp/$tag.send.err" env HOME="$tmp/croc-home" CROC_SECRET="$secret" \
		"$croc_bin" --relay 127.0.0.1:9009 --pass bench --no-compress send --no-local "$input"
	s=$spawned
	wait_for "$tmp/$tag.send.err" 'Code is:' 60 "$s" || { show "$tmp/$tag.send.err"; fail "$tag: croc send printed no code within 60 s"; }
	t0=$EPOCHREALTIME
	spawn 180 /dev/null "$tmp/$tag.recv.out" "$tmp/$tag.recv.err" "$tcpcopy" run -o "$tmp/$tag.recv.run" -- \
		env HOME="$tmp/croc-home" CROC_SECRET="$secret" "$croc_bin" --yes --overwrite --relay 127.0.0.1:9009 --pass bench --out "$out"
	reap_pair "$tag" "$spawned" "$s" croc
	t1=$reaped_at
	got=$out/$(basename -- "$input")
	timeout 60 cmp -- "$input" "$got" || fail "$tag: croc's file differs from the input"
	rm -rf -- "$out"
	sync
	c_wall=$(calc 't1 - t0' t1="$t1" t0="$t0")
	c_rss_mb=$(calc 'k * 1024 / 1e6' k="$(runfield "$tmp/$tag.recv.run" maxrss_kb)")
}

levels=(auto 0 1 2 3 4)
croc_bin=$(command -v croc || true)
echo "== pcp send: a 1 GiB file, send --discovery mdns --compress LEVEL FILE, receive --yes --output DIR (extracted to disk), LEVEL in ${levels[*]} in turn (the order rotated by one each run), $send_runs runs each${croc_bin:+; croc through its own relay in turn with them}"
if [[ -n $croc_bin ]]; then
	start_croc_relay 900
else
	echo "  croc is not on PATH: its column is left out"
fi
declare -A send_wall=() send_data=() send_wire=()
send_rss_max=0
croc_walls=() croc_rss_max=0
for content in random text; do
	input=$tmp/in-1g
	[[ $content == random ]] || input=$tmp/text-1g
	declare -A walls=() datas=() wires=()
	# A first transfer of each content, not counted: on this machine the
	# first gigabyte written after the inputs took up to twice as long, with
	# twice the receiver's CPU time, whichever level it was.
	send_run "send-$content-warmup" "$input" 0 0
	printf '  %-6s warm-up (--compress 0, not counted)  data %.3f s | CPU send %.2f s, recv %.2f s\n' "$content" "$s_data" "$s_cpu_send" "$s_cpu_recv"
	for ((i = 1; i <= send_runs; i++)); do
		# The order rotates by one each run: no level always runs first,
		# right after the inputs were written or another run's gigabyte
		# was deleted.
		order=("${levels[@]:(i - 1) % ${#levels[@]}}" "${levels[@]:0:(i - 1) % ${#levels[@]}}")
		for level in "${order[@]}"; do
			check=0
			if ((i == 1)) && [[ $level == auto ]]; then check=1; fi
			send_run "send-$content-c$level-$i" "$input" "$level" "$check"
			walls[$level]+=" $(calc 'b / w / 1e6' b="$big" w="$s_wall")"
			datas[$level]+=" $(calc 'b / d / 1e6' b="$big" d="$s_data")"
			wires[$level]+=" $s_wire"
			send_rss_max=$(calc '(a > b ? a : b)' a="$send_rss_max" b="$s_rss_mb")
			verified=""
			((check == 0)) || verified=" | cmp: identical"
			printf '  %-6s --compress %-4s run %d   wall %.3f s %6.0f MB/s | data %.3f s %6.0f MB/s | found in %.3f s | wire %.0f MB (%.0f%%) over %s | recv RSS %.0f MB | CPU send %.2f s, recv %.2f s%s\n' \
				"$content" "$level" "$i" "$s_wall" "$(calc 'b / w / 1e6' b="$big" w="$s_wall")" "$s_data" "$(calc 'b / d / 1e6' b="$big" d="$s_data")" "$s_found" \
				"$(calc 'w / 1e6' w="$s_wire")" "$(calc '100 * w / b' w="$s_wire" b="$big")" "$s_transport" \
				"$s_rss_mb" "$s_cpu_send" "$s_cpu_recv" "$verified"
		done
		if [[ -n $croc_bin && $content == random ]]; then
			croc_run "croc-$i" "$input"
			croc_walls+=("$(calc 'b / w / 1e6' b="$big" w="$c_wall")")
			croc_rss_max=$(calc '(a > b ? a : b)' a="$croc_rss_max" b="$c_rss_mb")
			printf '  %-6s croc           run %d   wall %.3f s %6.0f MB/s (receiver start to exit) | recv RSS %.0f MB | cmp: identical\n' \
				"$content" "$i" "$c_wall" "${croc_walls[-1]}" "$c_rss_mb"
		fi
	done
	for level in "${levels[@]}"; do
		# shellcheck disable=SC2086 # the lists are words on purpose
		send_wall[$content,$level]=$(median ${walls[$level]})
		# shellcheck disable=SC2086
		send_data[$content,$level]=$(median ${datas[$level]})
		# shellcheck disable=SC2086
		send_wire[$content,$level]=$(median ${wires[$level]})
	done
	unset walls datas wires
done
# best CONTENT: the fixed level with the highest median rate in the data
# phase. The levels are compared on it: the wall time also holds discovery,
# whose jitter on loopback (mDNS answers in 0.02 s or in 1 s) is larger
# than the differences measured.
best() {
	local l b=""
	for l in 0 1 2 3 4; do
		if [[ -z $b ]] || awk -v x="${send_data[$1,$l]}" -v y="${send_data[$1,$b]}" 'BEGIN { exit !(x > y) }'; then b=$l; fi
	done
	echo "$b"
}
declare -A send_best=() send_vs_best=()
for content in random text; do
	printf 'pcp send %-6s 1 GiB, wall (data phase) GB/s and wire:' "$content"
	for level in "${levels[@]}"; do
		printf '  %s %.2f (%.2f) %.0f%%' "$level" "$(gbs "${send_wall[$content,$level]}")" "$(gbs "${send_data[$content,$level]}")" \
			"$(calc '100 * w / b' w="${send_wire[$content,$level]}" b="$big")"
	done
	echo
	send_best[$content]=$(best "$content")
	send_vs_best[$content]=$(calc 'a / b' a="${send_data[$content,auto]}" b="${send_data[$content,${send_best[$content]}]}")
	printf 'pcp send %-6s auto / best fixed (--compress %s): %.2f of its rate, data phase   (target >= 0.95)%s\n' \
		"$content" "${send_best[$content]}" "${send_vs_best[$content]}" "$(below "${send_vs_best[$content]} >= 0.95")"
done
croc_line="croc not on PATH"
if [[ -n $croc_bin ]]; then
	croc_rate=$(median "${croc_walls[@]}")
	croc_ratio=$(calc 'p / c' p="${send_wall[random,auto]}" c="$croc_rate")
	croc_line=$(printf 'croc %.2f GB/s, pcp send (auto) %.2fx croc (target >= 1.25)%s' "$(gbs "$croc_rate")" "$croc_ratio" "$(below "$croc_ratio >= 1.25")")
	printf 'croc random 1 GiB:      wall %.2f GB/s (median of %d, receiver start to exit) | recv RSS %.0f MB | %s\n' \
		"$(gbs "$croc_rate")" "$send_runs" "$croc_rss_max" "$croc_line"
fi
printf 'pcp-pipe 1 GiB:         wall %.2f GB/s | data phase %.2f GB/s (to /dev/null, section 2)\n' "$(gbs "$wall_rate")" "$(gbs "$data_rate")"
printf 'pcp receive peak RSS:   %.0f MB (max over the pcp send runs)%s\n' "$send_rss_max" "$(below "$send_rss_max < 100")"
echo

# --- summary ---------------------------------------------------------------
echo "== summary ($(calc 'int(t1 - t0 + 0.5)' t1="$EPOCHREALTIME" t0="$bench_start") s)"
printf '  raw tcp         %.2f GB/s\n' "$(calc 'r / 1000' r="$tcp_rate")"
printf '  pcp-pipe        %.2f GB/s (data phase), %.2f GB/s wall   ratio %.2f%s   transport %s\n' \
	"$(calc 'r / 1000' r="$data_rate")" "$(calc 'r / 1000' r="$wall_rate")" "$ratio" "$(below "$ratio >= 0.50")" "$transport"
printf '  rendezvous      median %.2f s over %d (dht, 3 nodes)%s\n' "$rendezvous_median" "$dht_runs" "$(below "$rendezvous_median < 1")"
printf '  recv peak RSS   64 MiB: %.0f MB%s   1 GiB: %.0f MB%s\n' \
	"$rss_small" "$(below "$rss_small < 100")" "$rss_big_max" "$(below "$rss_big_max < 100")"
for content in random text; do
	printf '  pcp send %-6s 1 GiB: %.2f GB/s (auto), best fixed %.2f GB/s (--compress %s): %.2f%s   wire %.0f%%   (data phase, to disk)\n' \
		"$content" "$(gbs "${send_data[$content,auto]}")" "$(gbs "${send_data[$content,${send_best[$content]}]}")" "${send_best[$content]}" \
		"${send_vs_best[$content]}" "$(below "${send_vs_best[$content]} >= 0.95")" "$(calc '100 * w / b' w="${send_wire[$content,auto]}" b="$big")"
done
echo "  $croc_line"
printf '  pcp receive RSS %.0f MB (peak over the pcp send runs)%s\n' "$send_rss_max" "$(below "$send_rss_max < 100")"

