package files

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pcp-dev/pcp/lib/pipe"
)

func TestOfferString(t *testing.T) {
	tests := []struct {
		h    pipe.Header
		want string
	}{
		{pipe.Header{Kind: KindTarZstd, Names: []string{"a.txt"}, Size: 3, Count: 1}, `"a.txt": 3 B in 1 item`},
		{pipe.Header{Kind: KindTar, Names: []string{"a", "b", "c", "d", "e"}, Size: 2 << 20, Count: 9}, `"a", "b", "c" and 2 more: 2.0 MiB in 9 items`},
		{pipe.Header{Kind: KindTarZstd, Names: []string{"line\nbreak"}, Size: -1, Count: 1}, `"line\nbreak": an unknown size in 1 item`},
		{pipe.Header{Kind: pipe.KindRaw, Size: -1}, "no summary"},
	}
	for _, tt := range tests {
		if got := (Offer{tt.h}).String(); !strings.Contains(got, tt.want) {
			t.Errorf("Offer%+v = %q, want it to contain %q", tt.h, got, tt.want)
		}
	}
}

func TestPrepareHeader(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "one"), []byte("12345"), 0o644)
	os.Mkdir(filepath.Join(dir, "sub"), 0o755)
	os.WriteFile(filepath.Join(dir, "sub", "two"), []byte("678"), 0o644)
	ctx := t.Context()
	h, _, _, err := prepare(ctx, []string{filepath.Join(dir, "one"), filepath.Join(dir, "sub")}, nil, SendOptions{Level: 1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if h.Kind != KindTarZstd || h.Size != 8 || h.Count != 3 || strings.Join(h.Names, ",") != "one,sub" {
		t.Fatalf("header %+v, want tar+zstd of one,sub: 8 bytes in 3 entries", h)
	}
	// stdin is read to its end before the offer: its size is in it.
	h, _, release, err := prepare(ctx, []string{"-"}, strings.NewReader("xyz"), SendOptions{Level: 0, Name: "note"}, nil)
	if err != nil || h.Kind != KindTar || h.Size != 3 || h.Names[0] != "note" {
		t.Fatalf("stdin header %+v, %v; want plain tar of note, 3 bytes", h, err)
	}
	release()
	if _, _, _, err := prepare(ctx, []string{"-", dir}, nil, SendOptions{}, nil); err == nil {
		t.Fatal("stdin together with other paths was accepted")
	}
}

// The limits on what may come saturate instead of wrapping round to a
// negative number (no limit) for offers at the extremes.
func TestOfferLimitsSaturate(t *testing.T) {
	for _, tt := range []struct{ size, count, wantSize, wantCount int64 }{
		{0, 0, 1 << 20, 100},
		{1000, 10, 1000 + 100 + 1<<20, 10 + 1 + 100},
		{math.MaxInt64, math.MaxInt64, math.MaxInt64, math.MaxInt64},
		{math.MaxInt64 - 1<<20, math.MaxInt64 - 50, math.MaxInt64, math.MaxInt64},
	} {
		size, count := offerLimits(tt.size, tt.count)
		if size != tt.wantSize || count != tt.wantCount {
			t.Errorf("offerLimits(%d, %d) = %d, %d; want %d, %d", tt.size, tt.count, size, count, tt.wantSize, tt.wantCount)
		}
	}
}
