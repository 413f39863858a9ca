package archive

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	mrand "math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
)

// ---------------------------------------------------------------- helpers

// needTools skips the test when a program is missing, loudly, or fails it
// when CI=true.
func needTools(t testing.TB, names ...string) {
	t.Helper()
	for _, name := range names {
		if _, err := exec.LookPath(name); err != nil {
			msg := fmt.Sprintf("%q is not installed: interoperability is NOT tested (apt-get install -y %s)", name, name)
			if os.Getenv("CI") == "true" {
				t.Fatal(msg)
			}
			t.Skip("SKIPPING: " + msg)
		}
	}
}

// allowCleanup makes a tree removable by t.TempDir's cleanup even when it
// holds read-only directories (which matters for users other than root).
func allowCleanup(t testing.TB, dir string) {
	t.Cleanup(func() { makeWritable(dir, 0) })
}

// umasked returns the mode the system gives to a new file created with perm.
func umasked(t testing.TB, perm fs.FileMode) fs.FileMode {
	t.Helper()
	p := filepath.Join(t.TempDir(), "probe")
	f, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_WRONLY, perm)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	info, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return info.Mode().Perm()
}

func mustWrite(t testing.TB, path string, data []byte, perm fs.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, data, perm); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, perm); err != nil {
		t.Fatal(err)
	}
}

func mustMkdir(t testing.TB, path string) {
	t.Helper()
	if err := os.MkdirAll(path, 0o755); err != nil {
		t.Fatal(err)
	}
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// longName is a file name of more than 100 bytes (the ustar name field).
var longName = strings.Repeat("a-rather-long-name-", 8) + "end.txt"

// makeTree builds parent/tree with every supported entry type, and
// parent/rodir, a read-only top-level directory. It returns both paths.
func makeTree(t testing.TB, parent string) (tree, rodir string) {
	t.Helper()
	tree = filepath.Join(parent, "tree")
	mustMkdir(t, filepath.Join(tree, "a", "b", "c"))
	mustWrite(t, filepath.Join(tree, "a", "b", "c", "deep.txt"), []byte("deep\n"), 0o644)
	mustMkdir(t, filepath.Join(tree, "empty"))
	mustWrite(t, filepath.Join(tree, "empty.txt"), nil, 0o644)
	mustWrite(t, filepath.Join(tree, "random.bin"), randomBytes(3<<20), 0o644)
	if err := os.Symlink("random.bin", filepath.Join(tree, "link")); err != nil {
		t.Fatal(err)
	}
	mustMkdir(t, filepath.Join(tree, "sub"))
	if err := os.Symlink("../empty.txt", filepath.Join(tree, "sub", "uplink")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("does-not-exist", filepath.Join(tree, "sub", "dangling")); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, filepath.Join(tree, "secret.txt"), []byte("secret\n"), 0o600)
	mustWrite(t, filepath.Join(tree, "exec.sh"), []byte("#!/bin/sh\necho hi\n"), 0o755)
	mustMkdir(t, filepath.Join(tree, "private"))
	mustWrite(t, filepath.Join(tree, "private", "inner.txt"), []byte("inner\n"), 0o644)
	mustMkdir(t, filepath.Join(tree, "ro"))
	mustWrite(t, filepath.Join(tree, "ro", "file.txt"), []byte("in a read-only dir\n"), 0o444)
	old := time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)
	mustWrite(t, filepath.Join(tree, "old.txt"), []byte("old\n"), 0o644)
	if err := os.Chtimes(filepath.Join(tree, "old.txt"), old, old); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, filepath.Join(tree, longName), []byte("long\n"), 0o644)
	mustMkdir(t, filepath.Join(tree, strings.Repeat("d", 90), strings.Repeat("e", 90)))
	mustWrite(t, filepath.Join(tree, strings.Repeat("d", 90), strings.Repeat("e", 90), "f.txt"), []byte("long path\n"), 0o644)
	mustWrite(t, filepath.Join(tree, "héllo wörld.txt"), []byte("unicode\n"), 0o644)

	rodir = filepath.Join(parent, "rodir")
	mustMkdir(t, rodir)
	mustWrite(t, filepath.Join(rodir, "x.txt"), []byte("x\n"), 0o644)

	// Directory modes and times last, deepest first.
	dirTimes := []struct {
		rel  string
		perm fs.FileMode
	}{
		{"tree/a/b/c", 0o755}, {"tree/a/b", 0o755}, {"tree/a", 0o755},
		{"tree/" + strings.Repeat("d", 90) + "/" + strings.Repeat("e", 90), 0o755},
		{"tree/" + strings.Repeat("d", 90), 0o755},
		{"tree/empty", 0o755}, {"tree/sub", 0o755}, {"tree/private", 0o700},
		{"tree/ro", 0o555}, {"tree", 0o755}, {"rodir", 0o555},
	}
	for i, d := range dirTimes {
		p := filepath.Join(parent, filepath.FromSlash(d.rel))
		if err := os.Chmod(p, d.perm); err != nil {
			t.Fatal(err)
		}
		mt := time.Date(2010, 1, 1+i, 12, 0, 0, 0, time.UTC)
		if err := os.Chtimes(p, mt, mt); err != nil {
			t.Fatal(err)
		}
	}
	allowCleanup(t, parent)
	return tree, rodir
}

// compareTrees checks that got is a copy of want: same entries, types,
// contents, permission bits, modification times (to the second) and symlink
// targets.
func compareTrees(t testing.TB, want, got string) {
	t.Helper()
	seen := map[string]bool{}
	err := filepath.WalkDir(want, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(want, p)
		seen[rel] = true
		wi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		gi, err := os.Lstat(filepath.Join(got, rel))
		if err != nil {
			t.Errorf("%s: missing in copy: %v", rel, err)
			return nil
		}
		if wi.Mode().Type() != gi.Mode().Type() {
			t.Errorf("%s: type %v, want %v", rel, gi.Mode().Type(), wi.Mode().Type())
			return nil
		}
		switch {
		case wi.Mode()&fs.ModeSymlink != 0:
			wt, _ := os.Readlink(p)
			gt, _ := os.Readlink(filepath.Join(got, rel))
			if wt != gt {
				t.Errorf("%s: link target %q, want %q", rel, gt, wt)
			}
			if runtime.GOOS == "linux" && wi.ModTime().Unix() != gi.ModTime().Unix() {
				t.Errorf("%s: symlink mtime %v, want %v", rel, gi.ModTime(), wi.ModTime())
			}
			return nil
		case wi.Mode().IsRegular():
			wb, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			gb, err := os.ReadFile(filepath.Join(got, rel))
			if err != nil {
				return err
			}
			if !bytes.Equal(wb, gb) {
				t.Errorf("%s: contents differ (%d vs %d bytes)", rel, len(gb), len(wb))
			}
		}
		if wi.Mode().Perm() != gi.Mode().Perm() {
			t.Errorf("%s: mode %v, want %v", rel, gi.Mode().Perm(), wi.Mode().Perm())
		}
		if wi.ModTime().Unix() != gi.ModTime().Unix() {
			t.Errorf("%s: mtime %v, want %v", rel, gi.ModTime(), wi.ModTime())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	filepath.WalkDir(got, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(got, p)
		if !seen[rel] {
			t.Errorf("%s: unexpected extra entry in copy", rel)
		}
		return nil
	})
}

// listDir returns the names in dir.
func listDir(t testing.TB, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

func writeArchive(t testing.TB, paths []string, level int) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := Write(context.Background(), &buf, paths, WriteOptions{Level: level}); err != nil {
		t.Fatalf("Write: %v", err)
	}
	return buf.Bytes()
}

// extractAll extracts data into dir and commits.
func extractAll(t testing.TB, dir string, data []byte, opt ExtractOptions) Summary {
	t.Helper()
	x, err := NewExtractor(dir, opt)
	if err != nil {
		t.Fatal(err)
	}
	defer x.Abort()
	sum, err := x.Extract(context.Background(), bytes.NewReader(data))
	if err != nil {
		t.Fatalf("Extract: %v", err)
	}
	if err := x.Commit(); err != nil {
		t.Fatalf("Commit: %v", err)
	}
	return sum
}

func zstdOf(t testing.TB, data []byte) []byte {
	t.Helper()
	enc, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Close()
	return enc.EncodeAll(data, nil)
}

func shell(t testing.TB, script string, args ...string) []byte {
	t.Helper()
	cmd := exec.Command("sh", append([]string{"-c", "set -e; " + script, "sh"}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s: %v\n%s", script, err, stderr.String())
	}
	return out
}

// ---------------------------------------------------------------- tests

func TestScan(t *testing.T) {
	src := t.TempDir()
	tree, rodir := makeTree(t, src)
	sum, err := Scan([]string{tree, rodir}, Selection{})
	if err != nil {
		t.Fatal(err)
	}
	var count, size int64
	for _, p := range []string{tree, rodir} {
		filepath.WalkDir(p, func(_ string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			count++
			if info, _ := d.Info(); info.Mode().IsRegular() {
				size += info.Size()
			}
			return nil
		})
	}
	if !slices.Equal(sum.Names, []string{"tree", "rodir"}) || sum.Count != count || sum.Size != size {
		t.Errorf("Scan = %+v, want names [tree rodir], count %d, size %d", sum, count, size)
	}

	// A symlink given as a path is one entry, not followed.
	sum, err = Scan([]string{filepath.Join(tree, "link")}, Selection{})
	if err != nil || sum.Count != 1 || sum.Size != 0 || sum.Names[0] != "link" {
		t.Errorf("Scan(link) = %+v, %v", sum, err)
	}
	// "." is named after the directory.
	t.Chdir(tree)
	if sum, err := Scan([]string{"."}, Selection{}); err != nil || sum.Names[0] != "tree" {
		t.Errorf("Scan(.) = %+v, %v", sum, err)
	}

	if _, err := Scan(nil, Selection{}); err == nil {
		t.Error("Scan(nil, Selection{}) succeeded")
	}
	if _, err := Scan([]string{filepath.Join(src, "missing")}, Selection{}); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("Scan(missing) = %v, want an error naming the path", err)
	}
	other := filepath.Join(t.TempDir(), "tree")
	mustMkdir(t, other)
	if _, err := Scan([]string{tree, other}, Selection{}); err == nil {
		t.Error("Scan of two paths with the same base name succeeded")
	}
}

// A FIFO or socket inside a folder is left out and counted; given as a
// path, it fails before anything is written.
func TestSpecialFilesSkippedBySender(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "d")
	mustMkdir(t, dir)
	mustWrite(t, filepath.Join(dir, "kept"), []byte("kept\n"), 0o644)
	fifo := filepath.Join(dir, "fifo")
	if err := mkfifo(fifo); err != nil {
		t.Skipf("cannot create a FIFO here: %v", err)
	}
	sock, err := net.Listen("unix", filepath.Join(dir, "sock"))
	if err != nil {
		t.Fatalf("unix socket: %v", err)
	}
	defer sock.Close()

	sum, err := Scan([]string{dir}, Selection{})
	if err != nil || sum.Skipped != (Skipped{Special: 2}) || sum.Count != 2 {
		t.Fatalf("Scan = %+v, %v; want the folder and one file, 2 special files skipped", sum, err)
	}
	out := t.TempDir()
	extractAll(t, out, writeArchive(t, []string{dir}, 1), ExtractOptions{})
	if got := listDir(t, filepath.Join(out, "d")); !slices.Equal(got, []string{"kept"}) {
		t.Errorf("extracted %v, want [kept]", got)
	}

	if _, err := Scan([]string{fifo}, Selection{}); err == nil || !strings.Contains(err.Error(), fifo) {
		t.Errorf("Scan of the FIFO given = %v, want an error naming %s", err, fifo)
	}
	err = Write(context.Background(), io.Discard, []string{fifo}, WriteOptions{Level: 1})
	if err == nil || !strings.Contains(err.Error(), fifo) {
		t.Errorf("Write of the FIFO given = %v, want an error naming %s", err, fifo)
	}
}

func TestRoundTrip(t *testing.T) {
	src := t.TempDir()
	tree, rodir := makeTree(t, src)
	want, err := Scan([]string{tree, rodir}, Selection{})
	if err != nil {
		t.Fatal(err)
	}
	for _, level := range []int{0, 1, 2, 4, AutoLevel} {
		t.Run(fmt.Sprintf("level%d", level), func(t *testing.T) {
			data := writeArchive(t, []string{tree, rodir}, level)
			if isZstd(data) != (level != 0) {
				t.Fatalf("level %d: zstd magic present = %v", level, isZstd(data))
			}
			dst := t.TempDir()
			allowCleanup(t, dst)
			var progress int64
			sum := extractAll(t, dst, data, ExtractOptions{Progress: func(n int64) { progress += n }})
			if !slices.Equal(sum.Names, want.Names) || sum.Size != want.Size || sum.Count != want.Count {
				t.Errorf("Extract summary %+v, want %+v", sum, want)
			}
			if progress != want.Size {
				t.Errorf("progress reported %d bytes, want %d", progress, want.Size)
			}
			compareTrees(t, tree, filepath.Join(dst, "tree"))
			compareTrees(t, rodir, filepath.Join(dst, "rodir"))
			if got := listDir(t, dst); !slices.Equal(got, []string{"rodir", "tree"}) {
				t.Errorf("destination holds %q", got)
			}
		})
	}
}

func TestWriteProgressAndLevels(t *testing.T) {
	src := t.TempDir()
	tree, _ := makeTree(t, src)
	want, _ := Scan([]string{tree}, Selection{})
	var n int64
	err := Write(context.Background(), io.Discard, []string{tree}, WriteOptions{Level: 1, Progress: func(k int64) { n += k }})
	if err != nil || n != want.Size {
		t.Errorf("Write: %v, progress %d, want %d", err, n, want.Size)
	}
	for _, level := range []int{-2, 5} {
		if err := Write(context.Background(), io.Discard, []string{tree}, WriteOptions{Level: level}); err == nil {
			t.Errorf("level %d accepted", level)
		}
	}
}

func TestInteropOurWriteTheirExtract(t *testing.T) {
	needTools(t, "tar", "zstd")
	src := t.TempDir()
	tree, rodir := makeTree(t, src)
	for _, level := range []int{AutoLevel, 1, 0} {
		t.Run(fmt.Sprintf("level%d", level), func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "a.tar.zst")
			if err := os.WriteFile(file, writeArchive(t, []string{tree, rodir}, level), 0o644); err != nil {
				t.Fatal(err)
			}
			dst := t.TempDir()
			allowCleanup(t, dst)
			if level == 0 {
				shell(t, `tar -x -p -f "$1" -C "$2"`, file, dst)
			} else {
				shell(t, `zstd -q -d -c "$1" | tar -x -p -f - -C "$2"`, file, dst)
			}
			compareTrees(t, tree, filepath.Join(dst, "tree"))
			compareTrees(t, rodir, filepath.Join(dst, "rodir"))
		})
	}
}

func TestInteropTheirWriteOurExtract(t *testing.T) {
	needTools(t, "tar", "zstd")
	src := t.TempDir()
	tree, rodir := makeTree(t, src)
	want, _ := Scan([]string{tree, rodir}, Selection{})
	for _, format := range []string{"gnu", "posix"} {
		for _, compressed := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s-zstd=%v", format, compressed), func(t *testing.T) {
				script := `tar --format="$2" -C "$1" -c -f - tree rodir`
				if compressed {
					script += ` | zstd -q -c`
				}
				data := shell(t, script, src, format)
				if isZstd(data) != compressed {
					t.Fatalf("unexpected stream kind")
				}
				dst := t.TempDir()
				allowCleanup(t, dst)
				sum := extractAll(t, dst, data, ExtractOptions{})
				if !slices.Equal(sum.Names, want.Names) || sum.Size != want.Size || sum.Count != want.Count {
					t.Errorf("Extract summary %+v, want %+v", sum, want)
				}
				compareTrees(t, tree, filepath.Join(dst, "tree"))
				compareTrees(t, rodir, filepath.Join(dst, "rodir"))
			})
		}
	}
}

func TestInteropHardLinkAndDotNames(t *testing.T) {
	needTools(t, "tar", "zstd")
	src := t.TempDir()
	mustMkdir(t, filepath.Join(src, "h"))
	mustWrite(t, filepath.Join(src, "h", "one"), []byte("shared\n"), 0o644)
	if err := os.Link(filepath.Join(src, "h", "one"), filepath.Join(src, "h", "two")); err != nil {
		t.Skipf("no hard links here: %v", err)
	}
	// "tar -C src/h -c ." writes "./", "./one", "./two" (a hard link).
	data := shell(t, `tar -C "$1" -c -f - . | zstd -q -c`, filepath.Join(src, "h"))
	dst := t.TempDir()
	sum := extractAll(t, dst, data, ExtractOptions{})
	if !slices.Equal(sum.Names, []string{"one", "two"}) || sum.Count != 2 {
		t.Errorf("summary %+v", sum)
	}
	a, err1 := os.Stat(filepath.Join(dst, "one"))
	b, err2 := os.Stat(filepath.Join(dst, "two"))
	if err1 != nil || err2 != nil || !os.SameFile(a, b) {
		t.Errorf("hard link not restored: %v %v", err1, err2)
	}
}

func TestWriteStream(t *testing.T) {
	payload := randomBytes(5<<20 + 123)
	for _, level := range []int{AutoLevel, 1, 0} {
		var buf bytes.Buffer
		before := time.Now().Add(-time.Second)
		if err := WriteStream(context.Background(), &buf, "stdin.bin", bytes.NewReader(payload), WriteOptions{Level: level}); err != nil {
			t.Fatal(err)
		}
		dst := t.TempDir()
		sum := extractAll(t, dst, buf.Bytes(), ExtractOptions{})
		if sum.Count != 1 || sum.Size != int64(len(payload)) || sum.Names[0] != "stdin.bin" {
			t.Errorf("summary %+v", sum)
		}
		got, err := os.ReadFile(filepath.Join(dst, "stdin.bin"))
		if err != nil || !bytes.Equal(got, payload) {
			t.Fatalf("contents differ: %v", err)
		}
		info, _ := os.Stat(filepath.Join(dst, "stdin.bin"))
		if info.Mode().Perm() != umasked(t, 0o644) || info.ModTime().Before(before) {
			t.Errorf("mode %v mtime %v", info.Mode(), info.ModTime())
		}
		if _, err := exec.LookPath("zstd"); err == nil && level == 1 {
			out := t.TempDir()
			f := filepath.Join(out, "s.tar.zst")
			os.WriteFile(f, buf.Bytes(), 0o644)
			shell(t, `zstd -q -d -c "$1" | tar -x -f - -C "$2"`, f, out)
			if got, _ := os.ReadFile(filepath.Join(out, "stdin.bin")); !bytes.Equal(got, payload) {
				t.Error("zstd -d | tar -x: contents differ")
			}
		}
	}
	for _, bad := range []string{"", "a/b", "..", ".", "x\ny", "/abs"} {
		if err := WriteStream(context.Background(), io.Discard, bad, strings.NewReader("x"), WriteOptions{}); err == nil {
			t.Errorf("WriteStream accepted name %q", bad)
		}
	}
}

func TestCancel(t *testing.T) {
	src := t.TempDir()
	tree, _ := makeTree(t, src)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := Write(ctx, io.Discard, []string{tree}, WriteOptions{Level: 1}); !errors.Is(err, context.Canceled) {
		t.Errorf("Write with a cancelled context: %v", err)
	}
	if err := WriteStream(ctx, io.Discard, "x", strings.NewReader("data"), WriteOptions{}); !errors.Is(err, context.Canceled) {
		t.Errorf("WriteStream with a cancelled context: %v", err)
	}
	data := writeArchive(t, []string{tree}, 1)
	dst := t.TempDir()
	x, err := NewExtractor(dst, ExtractOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := x.Extract(ctx, bytes.NewReader(data)); !errors.Is(err, context.Canceled) {
		t.Errorf("Extract with a cancelled context: %v", err)
	}
	x.Abort()
	if names := listDir(t, dst); len(names) != 0 {
		t.Errorf("left behind: %q", names)
	}

	// Cancelled in the middle of a file.
	ctx, cancel = context.WithCancel(context.Background())
	defer cancel()
	n := 0
	err = Write(ctx, io.Discard, []string{tree}, WriteOptions{Progress: func(int64) {
		if n++; n == 2 {
			cancel()
		}
	}})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Write cancelled during a copy: %v", err)
	}
}

// A failed Write leaves an unterminated stream that Extract refuses.
func TestFailedWriteIsNotAnArchive(t *testing.T) {
	src := t.TempDir()
	tree, _ := makeTree(t, src)
	for _, level := range []int{0, 1} {
		ctx, cancel := context.WithCancel(context.Background())
		var buf bytes.Buffer
		seen := int64(0)
		err := Write(ctx, &buf, []string{tree}, WriteOptions{Level: level, Progress: func(n int64) {
			if seen += n; seen > 1<<20 {
				cancel()
			}
		}})
		cancel()
		if err == nil {
			t.Fatal("Write did not fail")
		}
		dst := t.TempDir()
		x, _ := NewExtractor(dst, ExtractOptions{})
		if _, err := x.Extract(context.Background(), &buf); err == nil {
			t.Errorf("level %d: the stream of a failed Write was extracted", level)
		}
		x.Abort()
		if names := listDir(t, dst); len(names) != 0 {
			t.Errorf("left behind: %q", names)
		}
	}
}

func TestAbortAfterExtract(t *testing.T) {
	src := t.TempDir()
	tree, rodir := makeTree(t, src)
	data := writeArchive(t, []string{tree, rodir}, 1)
	dst := t.TempDir()
	x, _ := NewExtractor(dst, ExtractOptions{})
	if _, err := x.Extract(context.Background(), bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	if names := listDir(t, dst); len(names) != 1 || !strings.HasPrefix(names[0], stagingPrefix) {
		t.Errorf("during extraction the destination holds %q, want one staging directory", names)
	}
	if err := x.Abort(); err != nil {
		t.Fatal(err)
	}
	if err := x.Abort(); err != nil {
		t.Errorf("second Abort: %v", err)
	}
	if err := x.Commit(); err == nil {
		t.Error("Commit after Abort succeeded")
	}
	if names := listDir(t, dst); len(names) != 0 {
		t.Errorf("after Abort the destination holds %q", names)
	}
	if _, err := x.Extract(context.Background(), bytes.NewReader(data)); err == nil {
		t.Error("second Extract succeeded")
	}
}

func TestExistingNames(t *testing.T) {
	data := buildTar(t, []tent{
		{hdr: tar.Header{Name: "fresh", Typeflag: tar.TypeReg, Mode: 0o644}, body: "fresh\n"},
		{hdr: tar.Header{Name: "victim/", Typeflag: tar.TypeDir, Mode: 0o755}},
		{hdr: tar.Header{Name: "victim/new.txt", Typeflag: tar.TypeReg, Mode: 0o644}, body: "new\n"},
	})
	setup := func(t *testing.T) string {
		dst := t.TempDir()
		mustMkdir(t, filepath.Join(dst, "victim"))
		mustWrite(t, filepath.Join(dst, "victim", "old.txt"), []byte("old\n"), 0o644)
		return dst
	}

	t.Run("refused", func(t *testing.T) {
		dst := setup(t)
		x, _ := NewExtractor(dst, ExtractOptions{})
		err := x.CheckNames([]string{"fresh", "victim"})
		if !errors.Is(err, fs.ErrExist) || err.Error() != "victim exists (use --overwrite)" {
			t.Errorf("CheckNames = %v", err)
		}
		if _, err := x.Extract(context.Background(), bytes.NewReader(data)); err != nil {
			t.Fatal(err)
		}
		err = x.Commit()
		if !errors.Is(err, fs.ErrExist) || !strings.Contains(err.Error(), "victim exists (use --overwrite)") {
			t.Errorf("Commit = %v", err)
		}
		x.Abort()
		if names := listDir(t, dst); !slices.Equal(names, []string{"victim"}) {
			t.Errorf("destination holds %q; nothing should have moved", names)
		}
		if names := listDir(t, filepath.Join(dst, "victim")); !slices.Equal(names, []string{"old.txt"}) {
			t.Errorf("victim holds %q", names)
		}
	})

	t.Run("overwrite", func(t *testing.T) {
		dst := setup(t)
		x, _ := NewExtractor(dst, ExtractOptions{Overwrite: true})
		if err := x.CheckNames([]string{"fresh", "victim"}); err != nil {
			t.Errorf("CheckNames = %v", err)
		}
		if _, err := x.Extract(context.Background(), bytes.NewReader(data)); err != nil {
			t.Fatal(err)
		}
		if err := x.Commit(); err != nil {
			t.Fatal(err)
		}
		if names := listDir(t, dst); !slices.Equal(names, []string{"fresh", "victim"}) {
			t.Errorf("destination holds %q", names)
		}
		if names := listDir(t, filepath.Join(dst, "victim")); !slices.Equal(names, []string{"new.txt"}) {
			t.Errorf("victim holds %q", names)
		}
	})

	t.Run("file replaced by file", func(t *testing.T) {
		dst := t.TempDir()
		mustWrite(t, filepath.Join(dst, "fresh"), []byte("old"), 0o644)
		extractAll(t, dst, data, ExtractOptions{Overwrite: true})
		if b, _ := os.ReadFile(filepath.Join(dst, "fresh")); string(b) != "fresh\n" {
			t.Errorf("fresh = %q", b)
		}
	})

	t.Run("checknames", func(t *testing.T) {
		x, _ := NewExtractor(t.TempDir(), ExtractOptions{})
		for _, bad := range [][]string{{"a/b"}, {".."}, {"/etc"}, {"x\x1b[2J"}, {"a", "a"}, {""}, {".pcp-partial-1"}} {
			var ue *UnsafeEntryError
			if err := x.CheckNames(bad); !errors.As(err, &ue) {
				t.Errorf("CheckNames(%q) = %v, want *UnsafeEntryError", bad, err)
			}
		}
	})
}

func TestNewExtractorNeedsDirectory(t *testing.T) {
	f := filepath.Join(t.TempDir(), "file")
	mustWrite(t, f, nil, 0o644)
	if _, err := NewExtractor(f, ExtractOptions{}); err == nil {
		t.Error("NewExtractor on a file succeeded")
	}
	if _, err := NewExtractor(filepath.Join(f, "missing"), ExtractOptions{}); err == nil {
		t.Error("NewExtractor on a missing path succeeded")
	}
}

// ---------------------------------------------------------------- hostile archives

// tent is one entry of a test archive.
type tent struct {
	hdr  tar.Header
	body string
}

// buildTar writes entries as a complete tar stream. A header's Size is set
// from the body unless it is set already.
func buildTar(t testing.TB, ents []tent) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	writeEntries(t, tw, ents)
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func writeEntries(t testing.TB, tw *tar.Writer, ents []tent) {
	t.Helper()
	for _, e := range ents {
		h := e.hdr
		if h.Typeflag == tar.TypeReg && h.Size == 0 {
			h.Size = int64(len(e.body))
		}
		if h.ModTime.IsZero() {
			h.ModTime = time.Unix(1e9, 0)
		}
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatalf("writing header %q: %v", h.Name, err)
		}
		if e.body != "" {
			if _, err := io.WriteString(tw, e.body); err != nil {
				t.Fatalf("writing %q: %v", h.Name, err)
			}
		}
	}
}

func reg(name, body string) tent {
	return tent{hdr: tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644}, body: body}
}

func dir(name string) tent {
	return tent{hdr: tar.Header{Name: name, Typeflag: tar.TypeDir, Mode: 0o755}}
}

func symlink(name, target string) tent {
	return tent{hdr: tar.Header{Name: name, Typeflag: tar.TypeSymlink, Linkname: target, Mode: 0o777}}
}

func hardlink(name, target string) tent {
	return tent{hdr: tar.Header{Name: name, Typeflag: tar.TypeLink, Linkname: target, Mode: 0o644}}
}

// hostileCase is an archive that Extract must refuse.
type hostileCase struct {
	name   string
	data   func(t testing.TB) []byte
	unsafe bool // a refusal: *UnsafeEntryError
	opt    ExtractOptions
	// outside lists absolute paths that must not exist afterwards.
	outside []string
}

func hostileCases(t testing.TB) []hostileCase {
	evil := fmt.Sprintf("pcp-evil-%d-%d", os.Getpid(), time.Now().UnixNano())
	tmpEvil := filepath.Join(os.TempDir(), evil)
	tarOf := func(ents ...tent) func(testing.TB) []byte {
		return func(t testing.TB) []byte { return buildTar(t, ents) }
	}
	deep := strings.Repeat("a/", 300) + "x"
	return []hostileCase{
		{name: "absolute path", data: tarOf(reg(tmpEvil, "evil")), unsafe: true, outside: []string{tmpEvil}},
		{name: "absolute path /tmp", data: tarOf(reg("/tmp/"+evil, "evil")), unsafe: true, outside: []string{"/tmp/" + evil}},
		{name: "dotdot", data: tarOf(reg("../"+evil, "evil")), unsafe: true},
		{name: "dotdot deep", data: tarOf(dir("a/"), reg("a/../../"+evil, "evil")), unsafe: true},
		{name: "dot then dotdot", data: tarOf(dir("./"), reg("./../"+evil, "evil")), unsafe: true},
		{name: "symlink to /etc then through it", data: tarOf(symlink("etc", "/etc"), reg("etc/"+evil, "evil")), unsafe: true, outside: []string{"/etc/" + evil}},
		{name: "symlink to tmp then through it", data: tarOf(symlink("t", os.TempDir()), reg("t/"+evil, "evil")), unsafe: true, outside: []string{tmpEvil}},
		{name: "symlink to parent", data: tarOf(symlink("a", ".."), reg("a/"+evil, "evil")), unsafe: true},
		{name: "symlink to parent deep", data: tarOf(dir("d/"), symlink("d/l", "../../"+evil)), unsafe: true},
		{name: "symlink climbing after a name", data: tarOf(symlink("s", "."), symlink("x", "s/..")), unsafe: true},
		{name: "symlink dot then through it", data: tarOf(symlink("a", "."), reg("a/x", "evil")), unsafe: true},
		{name: "symlink dot then twice through it", data: tarOf(symlink("a", "."), reg("a/a/x", "evil")), unsafe: true},
		{name: "symlink to sibling dir then through it", data: tarOf(dir("sub/"), symlink("a", "sub"), reg("a/x", "evil")), unsafe: true},
		{name: "symlink replaced by a dir", data: tarOf(symlink("a", "."), dir("a/")), unsafe: true},
		{name: "empty symlink target", data: tarOf(symlink("a", "")), unsafe: true},
		{name: "hard link to /etc/passwd", data: tarOf(hardlink("p", "/etc/passwd")), unsafe: true},
		{name: "hard link outside", data: tarOf(hardlink("p", "../../etc/passwd")), unsafe: true},
		{name: "hard link to missing", data: tarOf(hardlink("p", "nothing")), unsafe: true},
		{name: "hard link to symlink", data: tarOf(symlink("s", "."), hardlink("p", "s")), unsafe: true},
		{name: "hard link to dir", data: tarOf(dir("d/"), hardlink("p", "d")), unsafe: true},
		{name: "char device", data: tarOf(tent{hdr: tar.Header{Name: "null", Typeflag: tar.TypeChar, Devmajor: 1, Devminor: 3, Mode: 0o666}}), unsafe: true},
		{name: "block device", data: tarOf(tent{hdr: tar.Header{Name: "sda", Typeflag: tar.TypeBlock, Devmajor: 8, Mode: 0o660}}), unsafe: true},
		{name: "fifo", data: tarOf(tent{hdr: tar.Header{Name: "fifo", Typeflag: tar.TypeFifo, Mode: 0o644}}), unsafe: true},
		{name: "unknown type", data: tarOf(tent{hdr: tar.Header{Name: "x", Typeflag: 'Z', Mode: 0o644}}), unsafe: true},
		{name: "newline in name", data: tarOf(reg("a\nb", "x")), unsafe: true},
		{name: "escape in name", data: tarOf(reg("a\x1b[2Jb", "x")), unsafe: true},
		{name: "C1 control in name", data: tarOf(reg("a\u009bb", "x")), unsafe: true},
		{name: "DEL in name", data: tarOf(reg("a\x7fb", "x")), unsafe: true},
		{name: "control in symlink target", data: tarOf(symlink("s", "a\nb")), unsafe: true},
		{name: "NUL in name", data: nulName},
		{name: "empty name", data: tarOf(reg("", "x")), unsafe: true},
		{name: "only dots", data: tarOf(reg(".", "x")), unsafe: true},
		{name: "name too long", data: tarOf(reg(strings.Repeat("n/", 2100)+"x", "x")), unsafe: true},
		{name: "too deep", data: tarOf(reg(deep, "x")), unsafe: true},
		{name: "reserved top-level name", data: tarOf(reg(stagingPrefix+"x", "x")), unsafe: true},
		{name: "reserved name as parent", data: tarOf(reg(stagingPrefix+"x/y", "x")), unsafe: true},
		{name: "duplicate file", data: tarOf(reg("f", "one"), reg("f", "two")), unsafe: true},
		{name: "bidirectional override in name", data: tarOf(reg("invoice\u202etxt.exe", "x")), unsafe: true},
		{name: "bidirectional isolate in symlink target", data: tarOf(symlink("s", "a\u2066b")), unsafe: true},
		{name: "duplicate via dot", data: tarOf(reg("f", "one"), reg("./f", "two")), unsafe: true},
		{name: "file then dir", data: tarOf(reg("f", "one"), dir("f/")), unsafe: true},
		{name: "dir twice", data: tarOf(dir("d/"), dir("d/")), unsafe: true},
		{name: "file as parent", data: tarOf(reg("f", "one"), reg("f/x", "two")), unsafe: true},
		{name: "regular file with trailing slash", data: func(testing.TB) []byte {
			b := rawHeader("f/", tar.TypeReg, 1)
			b = append(b, 'x')
			return append(b, make([]byte, 511+1024)...)
		}, unsafe: true},
		{name: "more data than announced", data: tarOf(reg("a", "12345"), reg("b", "67890")), unsafe: true, opt: ExtractOptions{MaxSize: 8}},
		{name: "more entries than announced", data: tarOf(reg("a", "1"), reg("b", "2"), reg("c", "3")), unsafe: true, opt: ExtractOptions{MaxCount: 2}},
		{name: "size header larger than data", data: truncatedData},
		{name: "size header larger than data then end marker", data: truncatedThenZeros},
		{name: "missing end marker", data: missingEndMarker},
		{name: "one zero block only", data: func(t testing.TB) []byte {
			b := buildTar(t, []tent{reg("f", "x")})
			return b[:len(b)-512]
		}},
		{name: "trailing garbage", data: func(t testing.TB) []byte {
			return append(buildTar(t, []tent{reg("f", "x")}), []byte("garbage")...)
		}},
		{name: "trailing garbage after zero padding", data: func(t testing.TB) []byte {
			b := append(buildTar(t, []tent{reg("f", "x")}), make([]byte, 9000)...)
			return append(b, 1)
		}},
		{name: "garbage after the zstd frame", data: func(t testing.TB) []byte {
			return append(zstdOf(t, buildTar(t, []tent{reg("f", "x")})), []byte("garbage")...)
		}},
		{name: "second zstd frame with data", data: func(t testing.TB) []byte {
			b := zstdOf(t, buildTar(t, []tent{reg("f", "x")}))
			return append(b, zstdOf(t, []byte("more"))...)
		}},
		{name: "zstd window too large", data: hugeWindow},
		{name: "not an archive", data: func(testing.TB) []byte { return []byte("hello, this is not a tar stream at all\n") }},
		{name: "random bytes", data: func(testing.TB) []byte { return randomBytes(4096) }},
		{name: "empty stream", data: func(testing.TB) []byte { return nil }},
		{name: "corrupt zstd", data: func(t testing.TB) []byte {
			b := zstdOf(t, buildTar(t, []tent{reg("f", strings.Repeat("x", 5000))}))
			b[len(b)/2] ^= 0xff
			return b
		}},
	}
}

// nulName has a PAX path record with a NUL in it: archive/tar refuses to
// write one, so a valid record is written and one byte is patched.
func nulName(t testing.TB) []byte {
	name := strings.Repeat("p", 120) + "QNULQ"
	b := buildTar(t, []tent{{hdr: tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Format: tar.FormatPAX}, body: "x"}})
	i := bytes.Index(b, []byte("QNULQ"))
	if i < 0 {
		t.Fatal("marker not found")
	}
	b[i+1] = 0
	return b
}

// rawHeader builds a ustar header block by hand, for names archive/tar
// refuses to write.
func rawHeader(name string, typeflag byte, size int64) []byte {
	b := make([]byte, 512)
	copy(b[0:100], name)
	copy(b[100:108], "0000644\x00")
	copy(b[108:116], "0000000\x00")
	copy(b[116:124], "0000000\x00")
	copy(b[124:136], fmt.Sprintf("%011o\x00", size))
	copy(b[136:148], "00000000000\x00")
	b[156] = typeflag
	copy(b[257:265], "ustar\x0000")
	copy(b[148:156], "        ")
	sum := 0
	for _, c := range b {
		sum += int(c)
	}
	copy(b[148:156], fmt.Sprintf("%06o\x00 ", sum))
	return b
}

// truncatedData declares 1000 bytes and carries 10.
func truncatedData(t testing.TB) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tw.WriteHeader(&tar.Header{Name: "f", Typeflag: tar.TypeReg, Mode: 0o644, Size: 1000})
	tw.Write([]byte("0123456789"))
	return buf.Bytes() // no Close: the data is short
}

// truncatedThenZeros is truncatedData followed by what looks like an end
// marker: the zeros are taken as data and the stream still ends early.
func truncatedThenZeros(t testing.TB) []byte {
	return append(truncatedData(t), make([]byte, 1024)...)
}

// missingEndMarker is a complete entry without the two zero blocks.
func missingEndMarker(t testing.TB) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	writeEntries(t, tw, []tent{reg("f", "complete")})
	tw.Flush()
	return buf.Bytes()
}

// hugeWindow is a zstd frame header that asks for a 2 GiB window.
func hugeWindow(testing.TB) []byte {
	b := []byte(zstdMagic)
	b = append(b, 0x00)    // frame header descriptor: window descriptor present
	b = append(b, 21<<3)   // window log 10+21 = 31
	b = append(b, 1, 0, 0) // last raw block of 0 bytes
	return b
}

func TestHostileArchives(t *testing.T) {
	for _, c := range hostileCases(t) {
		for _, compressed := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/zstd=%v", c.name, compressed), func(t *testing.T) {
				data := c.data(t)
				if compressed {
					if isZstd(data) {
						t.Skip("already zstd")
					}
					data = zstdOf(t, data)
				}
				base := t.TempDir()
				dst := filepath.Join(base, "out")
				sentinel := filepath.Join(base, "sentinel")
				mustMkdir(t, dst)
				mustMkdir(t, sentinel)
				x, err := NewExtractor(dst, c.opt)
				if err != nil {
					t.Fatal(err)
				}
				_, err = x.Extract(context.Background(), bytes.NewReader(data))
				if err == nil {
					err = x.Commit()
					t.Errorf("Extract accepted the archive (Commit: %v); destination holds %q", err, listDir(t, dst))
				} else {
					var ue *UnsafeEntryError
					if isUnsafe := errors.As(err, &ue); isUnsafe != c.unsafe {
						t.Errorf("Extract = %v; *UnsafeEntryError: %v, want %v", err, isUnsafe, c.unsafe)
					}
					if ue != nil && hasControl(ue.Name) {
						t.Errorf("UnsafeEntryError.Name %q is not sanitized", ue.Name)
					}
					if hasControl(err.Error()) {
						t.Errorf("error message %q holds control characters", err.Error())
					}
					t.Logf("refused: %v", err)
				}
				if err := x.Abort(); err != nil {
					t.Errorf("Abort: %v", err)
				}
				if names := listDir(t, dst); len(names) != 0 {
					t.Errorf("destination holds %q after Abort", names)
				}
				if names := listDir(t, sentinel); len(names) != 0 {
					t.Errorf("sentinel beside the destination holds %q", names)
				}
				if names := listDir(t, base); !slices.Equal(names, []string{"out", "sentinel"}) {
					t.Errorf("the parent of the destination holds %q", names)
				}
				for _, p := range c.outside {
					if _, err := os.Lstat(p); err == nil {
						os.Remove(p)
						t.Errorf("%s was created", p)
					}
				}
			})
		}
	}
}

// Hostile symlinks that are allowed: inside the destination.
func TestSafeSymlinksAccepted(t *testing.T) {
	data := buildTar(t, []tent{
		dir("d/"), dir("d/e/"),
		symlink("top-self", "."),
		symlink("d/e/up", "../../d"),
		symlink("d/sib", "e/up"),
		symlink("dangling", "nowhere"),
		reg("d/e/f", "x"),
		hardlink("d/hard", "d/e/f"),
	})
	dst := t.TempDir()
	sum := extractAll(t, dst, data, ExtractOptions{})
	if sum.Count != 8 || !slices.Equal(sum.Names, []string{"d", "top-self", "dangling"}) {
		t.Errorf("summary %+v", sum)
	}
	if target, err := os.Readlink(filepath.Join(dst, "d", "e", "up")); err != nil || target != "../../d" {
		t.Errorf("d/e/up -> %q, %v", target, err)
	}
}

// Implicit parents: "tar c dir/file" has no entry for dir.
func TestImplicitParents(t *testing.T) {
	data := buildTar(t, []tent{reg("p/q/r.txt", "r"), dir("p/"), reg("p/s.txt", "s")})
	dst := t.TempDir()
	sum := extractAll(t, dst, data, ExtractOptions{})
	if sum.Count != 3 || !slices.Equal(sum.Names, []string{"p"}) {
		t.Errorf("summary %+v", sum)
	}
	if b, err := os.ReadFile(filepath.Join(dst, "p", "q", "r.txt")); err != nil || string(b) != "r" {
		t.Errorf("p/q/r.txt = %q, %v", b, err)
	}
}

// Setuid, setgid and sticky bits are never applied.
func TestModesMasked(t *testing.T) {
	data := buildTar(t, []tent{
		{hdr: tar.Header{Name: "suid", Typeflag: tar.TypeReg, Mode: 0o4755}, body: "x"},
		{hdr: tar.Header{Name: "sticky/", Typeflag: tar.TypeDir, Mode: 0o1777}},
		{hdr: tar.Header{Name: "ro/", Typeflag: tar.TypeDir, Mode: 0o500}},
		{hdr: tar.Header{Name: "ro/inner/", Typeflag: tar.TypeDir, Mode: 0o500}},
		{hdr: tar.Header{Name: "ro/inner/f", Typeflag: tar.TypeReg, Mode: 0o400}, body: "x"},
	})
	dst := t.TempDir()
	allowCleanup(t, dst)
	extractAll(t, dst, data, ExtractOptions{})
	for name, want := range map[string]fs.FileMode{
		"suid": umasked(t, 0o755), "sticky": fs.ModeDir | umasked(t, 0o777),
		"ro": fs.ModeDir | 0o500, "ro/inner": fs.ModeDir | 0o500, "ro/inner/f": 0o400,
	} {
		info, err := os.Lstat(filepath.Join(dst, filepath.FromSlash(name)))
		if err != nil {
			t.Fatal(err)
		}
		if info.Mode() != want {
			t.Errorf("%s: mode %v, want %v", name, info.Mode(), want)
		}
	}
	// A read-only tree is also removed by Abort.
	x, _ := NewExtractor(t.TempDir(), ExtractOptions{})
	if _, err := x.Extract(context.Background(), bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	if err := x.Abort(); err != nil {
		t.Errorf("Abort of a read-only tree: %v", err)
	}
}

func TestTruncatedZstd(t *testing.T) {
	src := t.TempDir()
	tree, _ := makeTree(t, src)
	data := writeArchive(t, []string{tree}, 1)
	for _, cut := range []int{len(data) / 2, len(data) - 4, len(data) - 1, 10} {
		t.Run(fmt.Sprint(cut), func(t *testing.T) {
			base := t.TempDir()
			dst := filepath.Join(base, "out")
			mustMkdir(t, dst)
			x, _ := NewExtractor(dst, ExtractOptions{})
			_, err := x.Extract(context.Background(), bytes.NewReader(data[:cut]))
			if err == nil {
				t.Fatalf("a stream cut at %d of %d bytes was accepted", cut, len(data))
			}
			t.Logf("cut at %d: %v", cut, err)
			x.Abort()
			if names := listDir(t, dst); len(names) != 0 {
				t.Errorf("left behind: %q", names)
			}
		})
	}
}

func TestUnsafeEntryErrorSanitized(t *testing.T) {
	err := unsafeEntry("bad\x1b[31m\nname", "reason")
	if hasControl(err.Error()) || !strings.Contains(err.Error(), `bad\x1b[31m\nname`) {
		t.Errorf("%q", err.Error())
	}
	long := unsafeEntry(strings.Repeat("x", 5000), "r").(*UnsafeEntryError)
	if len(long.Name) > 300 {
		t.Errorf("name not shortened: %d bytes", len(long.Name))
	}
}

// ---------------------------------------------------------------- fuzzing

func FuzzExtract(f *testing.F) {
	f.Add(buildTar(f, []tent{dir("d/"), reg("d/f", "hello"), symlink("d/l", "f"), hardlink("h", "d/f")}))
	f.Add(zstdOf(f, buildTar(f, []tent{reg("a", "x"), dir("b/"), symlink("b/c", "../a")})))
	f.Add(buildTar(f, []tent{symlink("a", "."), reg("a/x", "evil")}))
	f.Add(buildTar(f, []tent{reg("../x", "evil")}))
	f.Add(buildTar(f, []tent{{hdr: tar.Header{Name: strings.Repeat("n", 150), Typeflag: tar.TypeReg, Mode: 0o644, Format: tar.FormatPAX}, body: "x"}}))
	f.Add([]byte{})
	f.Add([]byte(zstdMagic))
	top := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		// One directory per input, under a shared one: cheaper than t.TempDir.
		base, err := os.MkdirTemp(top, "")
		if err != nil {
			t.Fatal(err)
		}
		defer removeAll(base)
		dst := filepath.Join(base, "out")
		sentinel := filepath.Join(base, "sentinel")
		if err := os.Mkdir(dst, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Mkdir(sentinel, 0o755); err != nil {
			t.Fatal(err)
		}
		x, err := NewExtractor(dst, ExtractOptions{})
		if err != nil {
			t.Fatal(err)
		}
		_, err = x.Extract(context.Background(), bytes.NewReader(data))
		if err == nil {
			err = x.Commit()
		}
		if err != nil {
			if aerr := x.Abort(); aerr != nil {
				t.Fatalf("Abort: %v", aerr)
			}
			if names := listDir(t, dst); len(names) != 0 {
				t.Fatalf("destination holds %q after a failed extraction and Abort", names)
			}
		} else {
			checkInside(t, dst)
		}
		if names := listDir(t, sentinel); len(names) != 0 {
			t.Fatalf("sentinel holds %q", names)
		}
		if names := listDir(t, base); !slices.Equal(names, []string{"out", "sentinel"}) {
			t.Fatalf("parent of the destination holds %q", names)
		}
	})
}

// checkInside checks a committed extraction: only regular files,
// directories and symlinks whose targets stay inside dir, no staging
// directory left.
func checkInside(t *testing.T, dir string) {
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			t.Fatal(err)
		}
		rel, _ := filepath.Rel(dir, p)
		if strings.HasPrefix(d.Name(), stagingPrefix) {
			t.Fatalf("staging directory left: %s", rel)
		}
		info, err := os.Lstat(p)
		if err != nil {
			t.Fatal(err)
		}
		switch m := info.Mode(); {
		case m.IsRegular(), m.IsDir():
		case m&fs.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			if filepath.IsAbs(target) {
				t.Fatalf("%s -> %s: absolute", rel, target)
			}
			if !filepath.IsLocal(filepath.Join(filepath.Dir(rel), target)) && filepath.Join(filepath.Dir(rel), target) != "." {
				t.Fatalf("%s -> %s: outside", rel, target)
			}
		default:
			t.Fatalf("%s: type %v", rel, m.Type())
		}
		return nil
	})
}

// ---------------------------------------------------------------- benchmarks

const benchSize = 64 << 20

// textData returns n bytes of compressible text: random words.
func textData(n int) []byte {
	words := strings.Fields(`the quick brown fox jumps over lazy dog peer to peer transfer
		archive stream zstd tar file folder network relay hole punch code word channel
		announce find pipe send receive extract commit abort summary size count name
		lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor`)
	r := mrand.New(mrand.NewPCG(1, 2))
	var b bytes.Buffer
	b.Grow(n + 64)
	for b.Len() < n {
		b.WriteString(words[r.IntN(len(words))])
		if r.IntN(12) == 0 {
			b.WriteByte('\n')
		} else {
			b.WriteByte(' ')
		}
	}
	return b.Bytes()[:n]
}

func benchFile(b *testing.B, data []byte) string {
	p := filepath.Join(b.TempDir(), "input")
	if err := os.WriteFile(p, data, 0o644); err != nil {
		b.Fatal(err)
	}
	return p
}

// countingWriter counts what Write produces.
type countingWriter struct{ n int64 }

func (c *countingWriter) Write(p []byte) (int, error) { c.n += int64(len(p)); return len(p), nil }

func benchWrite(b *testing.B, data []byte) {
	path := benchFile(b, data)
	for _, level := range []int{0, AutoLevel, 1} {
		b.Run(fmt.Sprintf("level%d", level), func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			var out countingWriter
			for b.Loop() {
				if err := Write(context.Background(), &out, []string{path}, WriteOptions{Level: level}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(out.n)/float64(int64(b.N)*int64(len(data))), "ratio")
		})
	}
}

// BenchmarkWriteRandom measures Write on 64 MiB of incompressible data.
func BenchmarkWriteRandom(b *testing.B) { benchWrite(b, randomBytes(benchSize)) }

// BenchmarkWriteText measures Write on 64 MiB of compressible text.
func BenchmarkWriteText(b *testing.B) { benchWrite(b, textData(benchSize)) }

func benchExtract(b *testing.B, data []byte) {
	path := benchFile(b, data)
	for _, level := range []int{0, AutoLevel, 1} {
		b.Run(fmt.Sprintf("level%d", level), func(b *testing.B) {
			var buf bytes.Buffer
			if err := Write(context.Background(), &buf, []string{path}, WriteOptions{Level: level}); err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			dir := b.TempDir()
			for b.Loop() {
				x, err := NewExtractor(dir, ExtractOptions{})
				if err != nil {
					b.Fatal(err)
				}
				if _, err := x.Extract(context.Background(), bytes.NewReader(buf.Bytes())); err != nil {
					b.Fatal(err)
				}
				if err := x.Commit(); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				os.RemoveAll(filepath.Join(dir, "input"))
				b.StartTimer()
			}
		})
	}
}

// BenchmarkExtractRandom measures Extract of 64 MiB of incompressible data.
func BenchmarkExtractRandom(b *testing.B) { benchExtract(b, randomBytes(benchSize)) }

// BenchmarkExtractText measures Extract of 64 MiB of compressible text.
func BenchmarkExtractText(b *testing.B) { benchExtract(b, textData(benchSize)) }

// With Names set (the names the receiver was offered), any other top-level
// name is refused: a sender cannot offer "photos" and write ".bashrc".
func TestOnlyOfferedNames(t *testing.T) {
	dst := t.TempDir()
	offered := ExtractOptions{Names: []string{"photos"}}
	sum := extractAll(t, dst, buildTar(t, []tent{dir("photos/"), reg("photos/a.jpg", "jpeg")}), offered)
	if !slices.Equal(sum.Names, []string{"photos"}) {
		t.Fatalf("summary %+v", sum)
	}
	x, err := NewExtractor(dst, offered)
	if err != nil {
		t.Fatal(err)
	}
	defer x.Abort()
	_, err = x.Extract(context.Background(), bytes.NewReader(buildTar(t, []tent{reg(".bashrc", "evil")})))
	var unsafe *UnsafeEntryError
	if !errors.As(err, &unsafe) || !strings.Contains(unsafe.Reason, "not among the names offered") {
		t.Fatalf("an unoffered name gave %v", err)
	}
	if _, err := os.Lstat(filepath.Join(dst, ".bashrc")); err == nil {
		t.Fatal(".bashrc was written")
	}
}

// A symlink that every receiver would refuse is left out by the sender
// (counted), before any data flows; given as a path, it fails.
func TestSenderSkipsUnsafeSymlinks(t *testing.T) {
	for target, ok := range map[string]bool{"/etc/passwd": false, "../../outside": false, "../sibling": true, "inside": true} {
		dir := t.TempDir()
		tree := filepath.Join(dir, "tree")
		os.Mkdir(tree, 0o755)
		link := filepath.Join(tree, "link")
		if err := os.Symlink(target, link); err != nil {
			t.Fatal(err)
		}
		sum, err := Scan([]string{tree}, Selection{})
		want := Skipped{}
		if !ok {
			want.Outside = 1
		}
		if err != nil || sum.Skipped != want {
			t.Errorf("Scan of a symlink to %q: %+v, %v; want %+v skipped", target, sum, err, want)
		}
		out := t.TempDir()
		extractAll(t, out, writeArchive(t, []string{tree}, 1), ExtractOptions{})
		if _, err := os.Lstat(filepath.Join(out, "tree", "link")); ok != (err == nil) {
			t.Errorf("symlink to %q: extracted: %v, want %v", target, err == nil, ok)
		}
		_, err = Scan([]string{link}, Selection{})
		if (target == "inside") != (err == nil) { // given, the link is at the top
			t.Errorf("Scan of the symlink to %q given as a path: %v", target, err)
		}
	}
}

// With Dereference, links are sent as what they point to: a file outside
// the folder arrives as a file, a link to a folder as a folder; a link to
// nothing or to a folder it is in is left out and counted.
func TestDereference(t *testing.T) {
	dir := t.TempDir()
	tree := filepath.Join(dir, "tree")
	mustMkdir(t, filepath.Join(tree, "sub"))
	mustWrite(t, filepath.Join(dir, "outside.txt"), []byte("from outside\n"), 0o644)
	mustWrite(t, filepath.Join(tree, "sub", "f"), []byte("in sub\n"), 0o644)
	for link, target := range map[string]string{
		"abs":      filepath.Join(dir, "outside.txt"),
		"subcopy":  "sub",
		"dangling": "nothing",
		"loop":     ".",
	} {
		if err := os.Symlink(target, filepath.Join(tree, link)); err != nil {
			t.Fatal(err)
		}
	}
	sel := Selection{Dereference: true}
	sum, err := Scan([]string{tree}, sel)
	if err != nil || sum.Skipped != (Skipped{Broken: 2}) {
		t.Fatalf("Scan = %+v, %v; want the dangling link and the loop skipped", sum, err)
	}
	var buf bytes.Buffer
	if err := Write(context.Background(), &buf, []string{tree}, WriteOptions{Level: 1, Selection: sel}); err != nil {
		t.Fatalf("Write: %v", err)
	}
	out := t.TempDir()
	got := extractAll(t, out, buf.Bytes(), ExtractOptions{})
	if got.Count != sum.Count || got.Size != sum.Size {
		t.Errorf("extracted %d entries of %d bytes, Scan said %d of %d", got.Count, got.Size, sum.Count, sum.Size)
	}
	for name, want := range map[string]string{"abs": "from outside\n", "subcopy/f": "in sub\n", "sub/f": "in sub\n"} {
		p := filepath.Join(out, "tree", filepath.FromSlash(name))
		info, err := os.Lstat(p)
		b, _ := os.ReadFile(p)
		if err != nil || !info.Mode().IsRegular() || string(b) != want {
			t.Errorf("%s: %v %v %q, want a regular file holding %q", name, info, err, b, want)
		}
	}
}

// Exclude leaves out what matches by name or by path in the archive, a
// folder with all it holds; a bad pattern fails Scan and Write.
func TestExclude(t *testing.T) {
	dir := t.TempDir()
	tree := filepath.Join(dir, "proj")
	mustMkdir(t, filepath.Join(tree, ".venv", "bin"))
	mustMkdir(t, filepath.Join(tree, "src"))
	for _, f := range []string{".venv/bin/python", "src/a.go", "src/a.o", "b.o", "README"} {
		mustWrite(t, filepath.Join(tree, filepath.FromSlash(f)), []byte(f), 0o644)
	}
	sel := Selection{Exclude: []string{"*.o", "proj/.venv/"}}
	sum, err := Scan([]string{tree}, sel)
	if err != nil || sum.Skipped != (Skipped{Excluded: 3}) || sum.Count != 4 {
		t.Fatalf("Scan = %+v, %v; want proj, src, src/a.go and README, 3 excluded", sum, err)
	}
	var buf bytes.Buffer
	if err := Write(context.Background(), &buf, []string{tree}, WriteOptions{Level: 1, Selection: sel}); err != nil {
		t.Fatalf("Write: %v", err)
	}
	out := t.TempDir()
	extractAll(t, out, buf.Bytes(), ExtractOptions{})
	if got := listDir(t, filepath.Join(out, "proj")); !slices.Equal(got, []string{"README", "src"}) {
		t.Errorf("proj holds %v, want [README src]", got)
	}
	if got := listDir(t, filepath.Join(out, "proj", "src")); !slices.Equal(got, []string{"a.go"}) {
		t.Errorf("proj/src holds %v, want [a.go]", got)
	}
	if _, err := Scan([]string{tree}, Selection{Exclude: []string{"[z-"}}); err == nil {
		t.Error("Scan with a bad pattern succeeded")
	}
	if err := Write(context.Background(), io.Discard, []string{tree}, WriteOptions{Level: 1, Selection: Selection{Exclude: []string{"[z-"}}}); err == nil {
		t.Error("Write with a bad pattern succeeded")
	}
}

// Format characters other than the bidirectional controls pass: the zero-
// width joiner of an emoji sequence is part of a name people give.
func TestEmojiSequenceNameAccepted(t *testing.T) {
	name := "family \U0001F468\u200d\U0001F469\u200d\U0001F467.txt"
	out := t.TempDir()
	extractAll(t, out, buildTar(t, []tent{reg(name, "x")}), ExtractOptions{})
	if b, err := os.ReadFile(filepath.Join(out, name)); err != nil || string(b) != "x" {
		t.Fatalf("%q: %q, %v", name, b, err)
	}
}

// A stream that is not tar at all (text piped into pcp-pipe send, say) is
// called that, not a truncated archive; nothing is kept.
func TestNotATarStream(t *testing.T) {
	for name, data := range map[string][]byte{
		"empty":     nil,
		"text":      []byte("hello\n"),
		"zstd text": zstdOf(t, []byte("hello\n")),
	} {
		out := t.TempDir()
		x, err := NewExtractor(out, ExtractOptions{})
		if err != nil {
			t.Fatal(err)
		}
		_, err = x.Extract(context.Background(), bytes.NewReader(data))
		if err == nil || !strings.Contains(err.Error(), "not a tar archive: the stream ends after ") {
			t.Errorf("%s: %v, want it called not a tar archive", name, err)
		}
		if got := listDir(t, out); len(got) != 0 {
			t.Errorf("%s: left %v", name, got)
		}
	}
}
