#!/usr/bin/env bash
# packaging/dist.sh: release artefacts, run by `make dist`.
#
# For each of PLATFORMS (GOOS/GOARCH, space-separated) it builds the four
# commands and packs them with the man pages, the shell completions,
# README.md and LICENSE into DIST/pcp-VERSION-GOOS-GOARCH.tar.gz; for Linux
# also .deb and .rpm packages (nfpm, a tool dependency in go.mod);
# then DIST/SHA256SUMS. VERSION is the one Go stamps into the build info
# from git (a tag, or a pseudo-version of the commit), as --version says.
#
# Environment: GO (default go), DIST (default dist), PLATFORMS (default
# linux/amd64 linux/arm64 darwin/arm64 darwin/amd64 windows/amd64).
set -euo pipefail
cd "$(dirname "$0")/.."

GO=${GO:-go}
DIST=${DIST:-dist}
PLATFORMS=${PLATFORMS:-linux/amd64 linux/arm64 darwin/arm64 darwin/amd64 windows/amd64}
commands=(pcp pcp-pipe pcp-find pcp-announce)

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The host's commands (the version, the completion scripts and the flags
# of the man pages) and nfpm,
# at the version go.mod names.
"$GO" build -buildvcs=auto -o "$work/host/" ./cmd/...
"$GO" build -o "$work/host/nfpm" github.com/goreleaser/nfpm/v2/cmd/nfpm
config=$PWD/packaging/nfpm.yaml
mkdir "$work/man"
"$GO" run ./internal/mangen --bin "$work/host" --out "$work/man" man/*.md
version=$("$work/host/pcp" --version | awk '{print $2}')
[[ $version == v* ]] || { echo "dist: no version in the build info ($version): build from a git checkout" >&2; exit 1; }
echo "dist: pcp $version"

mkdir -p "$DIST"
DIST=$(cd "$DIST" && pwd)
for platform in $PLATFORMS; do
	goos=${platform%/*} goarch=${platform#*/}
	name=pcp-$version-$goos-$goarch
	stage=$work/$name
	mkdir -p "$stage/bin" "$stage/man" "$stage/completions"/{bash,zsh,fish}
	GOOS=$goos GOARCH=$goarch "$GO" build -buildvcs=auto -trimpath -ldflags='-s -w' -o "$stage/bin/" ./cmd/...
	cp "$work"/man/* "$stage/man/"
	for c in "${commands[@]}"; do
		"$work/host/$c" completion bash >"$stage/completions/bash/$c"
		"$work/host/$c" completion zsh >"$stage/completions/zsh/_$c"
		"$work/host/$c" completion fish >"$stage/completions/fish/$c.fish"
	done
	cp README.md LICENSE "$stage/"
	tar -C "$work" -czf "$DIST/$name.tar.gz" "$name"
	echo "dist: $name.tar.gz"
	if [[ $goos == linux ]]; then
		gzip -9n "$stage"/man/*
		for packager in deb rpm; do
			(cd "$stage" && PCP_VERSION=$version PCP_ARCH=$goarch \
				"$work/host/nfpm" package --config "$config" --packager "$packager" --target "$DIST/" >/dev/null)
		done
		echo "dist: pcp $goarch .deb and .rpm"
	fi
done
(
	cd "$DIST"
	shopt -s nullglob
	rm -f SHA256SUMS
	sha256sum -- *.tar.gz *.deb *.rpm >SHA256SUMS
)
echo "dist: $DIST/SHA256SUMS"
