package archive

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// cutShort extracts the first n bytes of data with a staged extractor for
// names, as a receiver killed after n bytes would have, and leaves the
// staging directory for a resume.
func cutShort(t *testing.T, out string, names []string, data []byte, n int) (staging string) {
	t.Helper()
	x, err := NewExtractor(out, ExtractOptions{Names: names})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := x.Stage(context.Background(), true); err != nil {
		t.Fatalf("Stage: %v", err)
	}
	if _, err := x.Extract(context.Background(), bytes.NewReader(data[:n])); err == nil {
		t.Fatal("Extract of a cut stream succeeded")
	}
	staging, size := x.Suspend()
	if staging == "" || size == 0 {
		t.Fatalf("Suspend kept %q, %d bytes", staging, size)
	}
	return staging
}

// resumed writes paths as Write does for a receiver that holds held, and
// returns the stream.
func resumed(t *testing.T, paths []string, held []Held) []byte {
	t.Helper()
	m := make(map[string]Held)
	for _, h := range held {
		m[h.Path] = h
	}
	var buf bytes.Buffer
	if err := Write(context.Background(), &buf, paths, WriteOptions{Holdings: m}); err != nil {
		t.Fatalf("Write: %v", err)
	}
	return buf.Bytes()
}

// An extraction cut short and resumed by a stream that sends only what the
// receiver lacks ends with exactly the sender's tree: kept prefixes,
// changed files sent again whole, nothing of the earlier run left over.
func TestResumeExtraction(t *testing.T) {
	src, out := t.TempDir(), t.TempDir()
	tree, _ := makeTree(t, src)
	mustWrite(t, filepath.Join(tree, "second.bin"), randomBytes(2<<20), 0o640)
	mustWrite(t, filepath.Join(tree, "changes.bin"), randomBytes(1<<20), 0o644)
	names := []string{"tree"}
	full := writeArchive(t, []string{tree}, 0)
	staging := cutShort(t, out, names, full, len(full)*3/4)

	// The sender's copy changes between the runs: same size, new bytes.
	mustWrite(t, filepath.Join(tree, "changes.bin"), randomBytes(1<<20), 0o644)
	os.Chmod(filepath.Join(tree, "second.bin"), 0o600)

	x, err := NewExtractor(out, ExtractOptions{Names: names, MaxSize: 10 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer x.Abort()
	held, err := x.Stage(context.Background(), true)
	if err != nil {
		t.Fatalf("Stage: %v", err)
	}
	var heldSize int64
	for _, h := range held {
		heldSize += h.Size
	}
	if x.staging != staging || heldSize < 4<<20 {
		t.Fatalf("Stage took up %q holding %d bytes in %d files, want %q with at least 4 MiB", x.staging, heldSize, len(held), staging)
	}
	again := resumed(t, []string{tree}, held)
	if len(again) > len(full)/2 {
		t.Errorf("the resumed stream is %d bytes of %d: it sent what the receiver holds", len(again), len(full))
	}
	var progress int64
	x.opt.Progress = func(n int64) { progress += n }
	sum, err := x.Extract(context.Background(), bytes.NewReader(again))
	if err != nil {
		t.Fatalf("Extract: %v", err)
	}
	if err := x.Commit(); err != nil {
		t.Fatalf("Commit: %v", err)
	}
	compareTrees(t, tree, filepath.Join(out, "tree"))
	if progress != sum.Size {
		t.Errorf("progress told %d bytes, the files hold %d", progress, sum.Size)
	}
	if got := listDir(t, out); len(got) != 1 {
		t.Errorf("the output folder holds %v, want only the tree", got)
	}
}

// Stage takes up only a staging directory of the same names that no
// extraction holds, starts afresh when asked (removing the earlier one),
// and removes staging directories unused for StaleAfter.
func TestStageChoosesItsStaging(t *testing.T) {
	src, out := t.TempDir(), t.TempDir()
	mustWrite(t, filepath.Join(src, "f.bin"), randomBytes(1<<20), 0o644)
	data := writeArchive(t, []string{filepath.Join(src, "f.bin")}, 0)
	stage := func(names []string, resume bool) (*Extractor, []Held) {
		t.Helper()
		x, err := NewExtractor(out, ExtractOptions{Names: names})
		if err != nil {
			t.Fatal(err)
		}
		held, err := x.Stage(context.Background(), resume)
		if err != nil {
			t.Fatalf("Stage: %v", err)
		}
		return x, held
	}

	first := cutShort(t, out, []string{"f.bin"}, data, len(data)/2)
	x, held := stage([]string{"other"}, true)
	if len(held) != 0 || x.staging == first {
		t.Fatalf("an offer of other names took up %s (%d files)", x.staging, len(held))
	}
	x.Abort()

	busy, held := stage([]string{"f.bin"}, true)
	if busy.staging != first || len(held) != 1 {
		t.Fatalf("Stage took up %s with %d files, want %s with 1", busy.staging, len(held), first)
	}
	y, held := stage([]string{"f.bin"}, true)
	if y.staging == first || len(held) != 0 {
		t.Fatalf("a staging directory in use was taken up again")
	}
	y.Abort()
	busy.Suspend()

	fresh, held := stage([]string{"f.bin"}, false)
	if _, err := os.Stat(first); !errors.Is(err, os.ErrNotExist) || len(held) != 0 {
		t.Fatalf("starting afresh left the earlier staging directory (%v) or held %d files", err, len(held))
	}
	fresh.Abort()

	stale := cutShort(t, out, []string{"f.bin"}, data, len(data)/2)
	old := time.Now().Add(-StaleAfter - time.Hour)
	os.Chtimes(filepath.Join(stale, manifestName), old, old)
	z, held := stage([]string{"other"}, true)
	z.Abort()
	if _, err := os.Stat(stale); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a staging directory unused for longer than %v is still there: %v", StaleAfter, err)
	}
}

// A stream may keep only what the receiver holds: resume records for a file
// it does not hold, with another digest or size, on other entries, or
// malformed are refused, and a symlink in the staging directory is never
// held (so never followed).
func TestHostileResumeRecords(t *testing.T) {
	outside := filepath.Join(t.TempDir(), "outside")
	mustWrite(t, outside, []byte("private bytes outside the output folder"), 0o600)
	prefix := []byte("0123456789")
	digest := sha256.Sum256(prefix)
	keep := func(name string, n int, sum []byte) tent {
		e := reg(name, "rest")
		e.hdr.PAXRecords = map[string]string{paxKeep: strconv.Itoa(n), paxKeepSHA256: hex.EncodeToString(sum)}
		return e
	}
	cases := []struct {
		name string
		ent  tent
	}{
		{"not held", keep("d/other", 10, digest[:])},
		{"another digest", keep("d/held", 10, make([]byte, 32))},
		{"another size", keep("d/held", 5, digest[:])},
		{"a symlink in the staging directory", keep("d/link", 10, digest[:])},
		{"on a directory", func() tent { e := keep("d/sub/", 10, digest[:]); e.hdr.Typeflag = tar.TypeDir; e.body = ""; return e }()},
		{"malformed count", func() tent { e := keep("d/held", 10, digest[:]); e.hdr.PAXRecords[paxKeep] = "-3"; return e }()},
		{"malformed digest", func() tent { e := keep("d/held", 10, digest[:]); e.hdr.PAXRecords[paxKeepSHA256] = "zz"; return e }()},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out := t.TempDir()
			cut := buildTar(t, []tent{dir("d/"), reg("d/held", string(prefix))})
			staging := cutShort(t, out, []string{"d"}, cut, len(cut)-1024) // no end marker
			if err := os.Symlink(outside, filepath.Join(staging, "x", "d", "link")); err != nil {
				t.Fatal(err)
			}
			x, err := NewExtractor(out, ExtractOptions{Names: []string{"d"}})
			if err != nil {
				t.Fatal(err)
			}
			defer x.Abort()
			held, err := x.Stage(context.Background(), true)
			if err != nil || len(held) != 1 || held[0].Path != "d/held" {
				t.Fatalf("Stage = %v, %v; want d/held only", held, err)
			}
			_, err = x.Extract(context.Background(), bytes.NewReader(buildTar(t, []tent{dir("d/"), tc.ent})))
			var unsafe *UnsafeEntryError
			if !errors.As(err, &unsafe) {
				t.Fatalf("Extract = %v, want a refused entry", err)
			}
			if b, _ := os.ReadFile(outside); !bytes.HasPrefix(b, []byte("private")) {
				t.Fatal("the file outside was changed")
			}
		})
	}

	// Without a staging directory taken up, nothing may be kept.
	out := t.TempDir()
	_, err := func() (Summary, error) {
		x, err := NewExtractor(out, ExtractOptions{})
		if err != nil {
			t.Fatal(err)
		}
		defer x.Abort()
		return x.Extract(context.Background(), bytes.NewReader(buildTar(t, []tent{keep("held", 10, digest[:])})))
	}()
	if !errors.As(err, new(*UnsafeEntryError)) {
		t.Fatalf("a resume record with nothing to resume: Extract = %v, want a refused entry", err)
	}
}
