package archive

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Commit syncs the staged files before it moves them, and the destination
// after: a crash between the ACK and the disk can then lose nothing.
func TestCommitSyncsBeforeAndAfterTheMove(t *testing.T) {
	dst := t.TempDir()
	big := strings.Repeat("x", 3*writebackEvery+5) // written back in pieces while extracted
	data := buildTar(t, []tent{
		{hdr: tar.Header{Name: "docs/", Typeflag: tar.TypeDir, Mode: 0o755}},
		{hdr: tar.Header{Name: "docs/a.txt", Typeflag: tar.TypeReg, Mode: 0o644}, body: "alpha"},
		{hdr: tar.Header{Name: "big.bin", Typeflag: tar.TypeReg, Mode: 0o644}, body: big},
	})
	var calls []string
	sync := func(path string, tree bool) error {
		_, placed := os.Stat(filepath.Join(dst, "docs", "a.txt"))
		staged, _ := os.ReadFile(filepath.Join(path, "docs", "a.txt"))
		switch {
		case tree && placed == nil:
			t.Error("the tree was synced after its files were moved into place")
		case tree && string(staged) != "alpha":
			t.Errorf("the tree synced (%s) does not hold the extracted files", path)
		case !tree && (placed != nil || path != dst):
			t.Errorf("the destination was synced as %s, before the files were in place (%v)", path, placed)
		}
		calls = append(calls, map[bool]string{true: "tree", false: "dir"}[tree])
		return Durable(path, tree) // and the real thing must work here
	}
	extractAll(t, dst, data, ExtractOptions{Sync: sync})
	if strings.Join(calls, ",") != "tree,dir" {
		t.Fatalf("syncs %v, want the tree, then the directory", calls)
	}
	if got, err := os.ReadFile(filepath.Join(dst, "big.bin")); err != nil || string(got) != big {
		t.Fatalf("big.bin: %d bytes, %v", len(got), err)
	}
}

// A failed sync fails Commit, and nothing is left under a final name.
func TestCommitFailsWhenTheSyncFails(t *testing.T) {
	dst := t.TempDir()
	data := buildTar(t, []tent{{hdr: tar.Header{Name: "a.txt", Typeflag: tar.TypeReg, Mode: 0o644}, body: "alpha"}})
	x, err := NewExtractor(dst, ExtractOptions{Sync: func(string, bool) error { return errors.New("disk gone") }})
	if err != nil {
		t.Fatal(err)
	}
	defer x.Abort()
	if _, err := x.Extract(context.Background(), bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	if err := x.Commit(); err == nil || !strings.Contains(err.Error(), "disk gone") {
		t.Fatalf("Commit = %v, want the sync's error", err)
	}
	if entries, _ := os.ReadDir(dst); len(entries) != 0 {
		t.Fatalf("a failed commit left %v", entries)
	}
}

// Durable works on a tree of a few entries (synced one by one) and on a
// larger one (on Linux, one syncfs), and reports a missing one.
func TestDurableOnSmallAndLargeTrees(t *testing.T) {
	for _, n := range []int{3, 200} {
		dir := t.TempDir()
		for i := range n {
			if err := os.WriteFile(filepath.Join(dir, strings.Repeat("f", 1+i%50)+string(rune('a'+i/50))), []byte("x"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if err := Durable(dir, true); err != nil {
			t.Fatalf("%d files: %v", n, err)
		}
		if err := Durable(dir, false); err != nil {
			t.Fatalf("%d files, the folder: %v", n, err)
		}
	}
	if err := Durable(filepath.Join(t.TempDir(), "gone"), true); err == nil {
		t.Fatal("a missing folder synced without an error")
	}
}
