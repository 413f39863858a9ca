#!/usr/bin/env bash
# bench/tree.sh: pcp against a local tar pipeline and croc on a tree of many
# small files, run by `make bench` and `make bench-tree` (PCP_BIN=bin/).
#
# It makes a tree of 100,000 files of 1-4 KiB of text in 1,000 folders,
# then measures in turn, BENCH_TREE_RUNS times: a local `tar c | tar x`
# followed by a sync of the file system, and `pcp send tree` received by
# `pcp receive --yes` (durable: it syncs before it acknowledges), the whole
# job from launching the sender; both sides' peak RSS; and croc once, when
# it is on PATH, through its own relay in the namespace. The first pcp run
# and the croc run are compared with the source by diff -r.
#
# Environment: PCP_BIN (default bin/), BENCH_TREE_FILES (default 100000),
# BENCH_TREE_RUNS (default 3).
#
# Exit status: 0 when every step worked, whether or not the figures meet
# their targets (a missed target is marked BELOW TARGET); 1 when a step failed.

# shellcheck source=bench/lib.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"

croc_bin=$(command -v croc || true)
if [[ -n $croc_bin ]]; then
	start_croc_relay 7200
fi

# tree_files files of 1-4 KiB of text, 100 to a folder, made once by
# `tcpcopy tree`. Each run reads the tree once first, so that every command
# finds it in the page cache, and writes into a folder of its own: the
# outputs stay until the section ends, because ext4 skips recently freed
# inodes when it allocates (recently_deleted), which made a run after an
# `rm -rf` of 100,000 files up to 5x slower here.
tree_files=${BENCH_TREE_FILES:-100000}
tree_runs=${BENCH_TREE_RUNS:-3}
[[ $tree_files =~ ^[1-9][0-9]*$ && $tree_runs =~ ^[1-9][0-9]*$ ]] || fail "BENCH_TREE_FILES and BENCH_TREE_RUNS must be positive integers"
tree_items=$((tree_files + 1 + (tree_files + 99) / 100))
timeout 600 "$tcpcopy" tree "$tmp/src/tree" "$tree_files" || fail "making the tree of $tree_files files"
timeout 300 sync -f "$tmp/src" || fail "sync"
warm_tree() { timeout 300 tar c -C "$tmp/src" tree >/dev/null || fail "reading the tree"; }

# tar_tree_run N: a local `tar c | tar x` of the tree, then a sync of the
# file system (pcp's receiver syncs before it reports success). Sets t_wall.
tar_tree_run() {
	local out=$tmp/tree-out/tar-$1 t0
	mkdir -p -- "$out"
	warm_tree
	t0=$EPOCHREALTIME
	timeout 600 bash -c 'tar c -C "$1" tree | tar x -C "$2" && sync -f "$2"' _ "$tmp/src" "$out" || fail "tar c | tar x of the tree"
	t_wall=$(calc 't1 - t0' t1="$EPOCHREALTIME" t0="$t0")
}

# pcp_tree_run N CHECK: `pcp send tree` (durable receiver, the default),
# the receiver launched once the sender announces (as a user types the
# code the sender shows): the whole job, from launching the sender, which
# first walks the tree for its offer, to the receiver's exit. With CHECK=1
# the received tree is compared with the source. Sets p_wall, p_data,
# p_rss_send and p_rss_recv (MB).
pcp_tree_run() {
	local tag=tree-pcp-$1 out=$tmp/tree-out/pcp-$1 s r rc t0 t1 dur
	mkdir -p -- "$out"
	warm_tree
	new_code
	t0=$EPOCHREALTIME
	spawn 600 /dev/null /dev/null "$tmp/$tag.send.err" "$tcpcopy" run -o "$tmp/$tag.send.run" -- \
		bash -c 'cd "$1" && exec "$2" send --discovery mdns --timeout 120s --code "$3" -v tree' _ "$tmp/src" "$pcp_bin" "$code"
	s=$spawned
	wait_for "$tmp/$tag.send.err" 'mdns: announcing' 120 "$s" || { show "$tmp/$tag.send.err"; fail "$tag: pcp send did not announce"; }
	spawn 600 /dev/null /dev/null "$tmp/$tag.recv.err" "$tcpcopy" run -o "$tmp/$tag.recv.run" -- \
		"$pcp_bin" receive --discovery mdns --timeout 120s --yes --output "$out" -v "$code"
	reap_pair "$tag" "$spawned" "$s" pcp
	t1=$reaped_at
	grep -q "^pcp: receiving \"tree\": .* in $tree_items items\$" "$tmp/$tag.recv.err" ||
		{ show "$tmp/$tag.recv.err"; fail "$tag: the offer did not hold $tree_items items"; }
	if (($2)); then
		timeout 600 diff -r -- "$tmp/src/tree" "$out/tree" >/dev/null || fail "$tag: the received tree differs from the source"
	fi
	dur=$(sed -n 's/^pcp: received .* in \([^ ]*\) (.*digest verified$/\1/p' "$tmp/$tag.recv.err")
	p_data=$(seconds "$dur") || fail "$tag: cannot read the duration '$dur'"
	p_wall=$(calc 't1 - t0' t1="$t1" t0="$t0")
	p_rss_send=$(calc 'k * 1024 / 1e6' k="$(runfield "$tmp/$tag.send.run" maxrss_kb)")
	p_rss_recv=$(calc 'k * 1024 / 1e6' k="$(runfield "$tmp/$tag.recv.run" maxrss_kb)")
}

echo "== a tree of $tree_files files of 1-4 KiB in $(((tree_files + 99) / 100)) folders: pcp send (whole job, durable receiver) against a local tar c | tar x + sync, in turn, $tree_runs runs${croc_bin:+; croc once}"
tar_walls=() pcp_walls=() tree_rss_send=0 tree_rss_recv=0
for ((i = 1; i <= tree_runs; i++)); do
	tar_tree_run "$i"
	tar_walls+=("$t_wall")
	pcp_tree_run "$i" "$((i == 1))"
	pcp_walls+=("$p_wall")
	tree_rss_send=$(calc '(a > b ? a : b)' a="$tree_rss_send" b="$p_rss_send")
	tree_rss_recv=$(calc '(a > b ? a : b)' a="$tree_rss_recv" b="$p_rss_recv")
	verified=""
	((i > 1)) || verified=" | diff -r: identical"
	printf '  run %d   tar c | tar x + sync %.2f s | pcp send %.2f s (data phase %.2f s, %.2fx tar) | RSS send %.0f MB, recv %.0f MB%s\n' \
		"$i" "$t_wall" "$p_wall" "$p_data" "$(calc 'p / t' p="$p_wall" t="$t_wall")" "$p_rss_send" "$p_rss_recv" "$verified"
done
tree_tar=$(median "${tar_walls[@]}")
tree_pcp=$(median "${pcp_walls[@]}")
tree_ratio=$(calc 'p / t' p="$tree_pcp" t="$tree_tar")
tree_croc_line="croc not on PATH"
if [[ -n $croc_bin ]]; then
	# croc once (it is slow on many files): from the receiver's start to
	# its exit, the sender having hashed the tree and shown its code.
	out=$tmp/tree-out/croc
	mkdir -p -- "$out"
	new_code
	secret="pcp-bench-${code//-/}"
	spawn 3600 /dev/null "$tmp/tree-croc.send.out" "$tmp/tree-croc.send.err" env HOME="$tmp/croc-home" CROC_SECRET="$secret" \
		bash -c 'cd "$1" && exec "$2" --relay 127.0.0.1:9009 --pass bench --no-compress send --no-local tree' _ "$tmp/src" "$croc_bin"
	s=$spawned
	wait_for "$tmp/tree-croc.send.err" 'Code is:' 600 "$s" || { show "$tmp/tree-croc.send.err"; fail "tree: croc send printed no code"; }
	t0=$EPOCHREALTIME
	spawn 3600 /dev/null "$tmp/tree-croc.recv.out" "$tmp/tree-croc.recv.err" "$tcpcopy" run -o "$tmp/tree-croc.recv.run" -- \
		env HOME="$tmp/croc-home" CROC_SECRET="$secret" "$croc_bin" --yes --overwrite --relay 127.0.0.1:9009 --pass bench --out "$out"
	r=$spawned
	rc=0
	reap "$r" || rc=$?
	tree_croc=$(calc 't1 - t0' t1="$EPOCHREALTIME" t0="$t0")
	((rc == 0)) || { show "$tmp/tree-croc.recv.err"; fail "tree: croc receive exited $rc"; }
	reap "$s" || true
	timeout 600 diff -r -- "$tmp/src/tree" "$out/tree" >/dev/null || fail "tree: croc's tree differs from the source"
	tree_croc_vs=$(calc 'c / p' c="$tree_croc" p="$tree_pcp")
	printf '  croc    %.2f s (receiver start to exit; recv RSS %.0f MB) | diff -r: identical\n' \
		"$tree_croc" "$(calc 'k * 1024 / 1e6' k="$(runfield "$tmp/tree-croc.recv.run" maxrss_kb)")"
	tree_croc_line=$(printf 'croc %.2f s: pcp %.1fx faster (target >= 10)%s' "$tree_croc" "$tree_croc_vs" "$(below "$tree_croc_vs >= 10")")
fi
printf 'tree of %d files: pcp send %.2f s, tar c | tar x + sync %.2f s (medians of %d): %.2fx tar (target <= 1.3)%s | %s | RSS send %.0f MB, recv %.0f MB (max; target < 100)%s\n' \
	"$tree_files" "$tree_pcp" "$tree_tar" "$tree_runs" "$tree_ratio" "$(below "$tree_ratio <= 1.3")" "$tree_croc_line" \
	"$tree_rss_send" "$tree_rss_recv" "$(below "$tree_rss_send < 100 && $tree_rss_recv < 100")"
timeout 600 rm -rf -- "$tmp/tree-out" "$tmp/src"
