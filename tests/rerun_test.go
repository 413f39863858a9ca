package tests

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pcp-dev/pcp/internal/netns"
	"github.com/pcp-dev/pcp/lib/archive"
	"github.com/pcp-dev/pcp/lib/files"
	"github.com/pcp-dev/pcp/lib/pipe"
)

// resumeTree makes the folder photos in src: a small note, a symlink, a
// subfolder, and big files of random bytes with several modes, in that
// order in the stream.
func resumeTree(t testing.TB, src string, big int) string {
	t.Helper()
	tree := filepath.Join(src, "photos")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(tree, "b-sub"), 0o750))
	must(os.WriteFile(filepath.Join(tree, "a-note.txt"), []byte("the first version\n"), 0o644))
	must(os.Symlink("a-note.txt", filepath.Join(tree, "a-link")))
	must(os.WriteFile(filepath.Join(tree, "b-sub", "inner.txt"), []byte("inside\n"), 0o600))
	for i, mode := range []os.FileMode{0o644, 0o600, 0o755, 0o640} {
		must(os.WriteFile(filepath.Join(tree, "c"+strconv.Itoa(i)+".bin"), randomBytes(t, big/4), mode))
	}
	return tree
}

// sendTree starts pcp send of src/photos with code c.
func sendTree(t testing.TB, src, c string, extra ...string) *proc {
	sc := command(t, "pcp", append([]string{"send", "-v", "--discovery", "mdns", "--code", c, "photos"}, extra...)...)
	sc.Dir = src
	return start(t, sc, nil)
}

// receiveTree starts pcp receive of code c into out.
func receiveTree(t testing.TB, out, c string, extra ...string) *proc {
	return start(t, command(t, "pcp", append([]string{"receive", "-v", "--discovery", "mdns", "--yes", "--output", out, "--timeout", "20s", c}, extra...)...), nil)
}

// cutAt waits until the receiver has written at least n bytes under out,
// then stops it with sig, and the sender with it.
func cutAt(t testing.TB, out string, n int64, recv, send *proc, sig syscall.Signal) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for stagedBytes(out) < n {
		if time.Now().After(deadline) {
			t.Fatalf("the receiver wrote %d bytes within 30s, not %d\nstderr:\n%s", stagedBytes(out), n, recv.stderr.String())
		}
		time.Sleep(time.Millisecond)
	}
	recv.cmd.Process.Signal(sig)
	recv.wait(20 * time.Second)
	send.cmd.Process.Signal(syscall.SIGINT)
	send.wait(20 * time.Second)
}

// onlyStaging fails unless out holds staging folders only: nothing under a
// final name.
func onlyStaging(t testing.TB, out string) {
	t.Helper()
	entries, _ := os.ReadDir(out)
	if len(entries) == 0 {
		t.Fatal("nothing was kept of the transfer cut short")
	}
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), ".pcp-partial-") {
			t.Fatalf("the transfer cut short left %s under its final name", e.Name())
		}
	}
}

var wireRE = regexp.MustCompile(`sent ([0-9.]+) (B|KiB|MiB|GiB) \(([0-9.]+) (B|KiB|MiB|GiB) on the wire\)`)

// wireBytes reads the bytes on the wire from pcp send -v's summary.
func wireBytes(t testing.TB, send *proc) float64 {
	t.Helper()
	m := wireRE.FindStringSubmatch(send.stderr.String())
	if m == nil {
		t.Fatalf("no summary with the bytes on the wire:\n%s", send.stderr.String())
	}
	n, _ := strconv.ParseFloat(m[3], 64)
	return n * map[string]float64{"B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}[m[4]]
}

// A receiver killed (kill -9) at about half of a 200 MiB folder keeps what
// it wrote; the same folder sent again with a new code into the same
// --output sends only the rest (and a file changed in between in its new
// form), and the tree that arrives is the sender's.
func TestKilledReceiverResumes(t *testing.T) {
	netns.Require(t)
	const size = 200 << 20
	src, out := t.TempDir(), t.TempDir()
	tree := resumeTree(t, src, size)
	c := newCode(t)
	send := sendTree(t, src, c)
	recv := receiveTree(t, out, c)
	cutAt(t, out, size/2, recv, send, syscall.SIGKILL)
	onlyStaging(t, out)

	// Changed on the sender's side between the runs, same size: must come again.
	if err := os.WriteFile(filepath.Join(tree, "a-note.txt"), []byte("the SECOND version\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c = newCode(t)
	send = sendTree(t, src, c)
	recv = receiveTree(t, out, c)
	recv.expectExit(60*time.Second, 0)
	send.expectExit(10*time.Second, 0)
	if !strings.Contains(recv.stderr.String(), "resuming: ") {
		t.Errorf("the receiver did not say what it resumes:\n%s", recv.stderr.String())
	}
	sameTree(t, tree, filepath.Join(out, "photos"))
	if entries, _ := os.ReadDir(out); len(entries) != 1 {
		t.Fatalf("the output folder holds %d entries, want only photos (no staging left)", len(entries))
	}
	wire := wireBytes(t, send)
	t.Logf("second run: %.1f MiB on the wire of %d MiB (%.0f %%)", wire/(1<<20), size>>20, 100*wire/size)
	if wire > 0.6*size {
		t.Errorf("the second run sent %.1f MiB, more than 60 %% of the %d MiB", wire/(1<<20), size>>20)
	}
}

// A receiver interrupted with Ctrl-C says where it kept the files; with
// --no-resume the next run sends everything again and leaves no staging.
func TestInterruptedReceiverAndNoResume(t *testing.T) {
	netns.Require(t)
	const size = 40 << 20
	src, out := t.TempDir(), t.TempDir()
	tree := resumeTree(t, src, size)
	c := newCode(t)
	send := sendTree(t, src, c, "--compress", "0")
	recv := receiveTree(t, out, c)
	cutAt(t, out, size/2, recv, send, syscall.SIGINT)
	if !strings.Contains(recv.stderr.String(), "kept the ") || !strings.Contains(recv.stderr.String(), "--no-resume") {
		t.Errorf("the interrupted receiver does not say where it kept the files:\n%s", recv.stderr.String())
	}
	onlyStaging(t, out)

	c = newCode(t)
	send = sendTree(t, src, c, "--compress", "0")
	recv = receiveTree(t, out, c, "--no-resume")
	recv.expectExit(60*time.Second, 0)
	send.expectExit(10*time.Second, 0)
	if strings.Contains(recv.stderr.String(), "resuming") {
		t.Errorf("--no-resume resumed:\n%s", recv.stderr.String())
	}
	sameTree(t, tree, filepath.Join(out, "photos"))
	if entries, _ := os.ReadDir(out); len(entries) != 1 {
		t.Fatalf("the output folder holds %d entries, want only photos (the old staging removed)", len(entries))
	}
	if wire := wireBytes(t, send); wire < size {
		t.Errorf("--no-resume: the sender sent %.1f MiB, less than the %d MiB of files", wire/(1<<20), size>>20)
	}
}

// A hostile sender of the same names learns only what the receiver holds
// under those names, and cannot make it keep anything else: a resume
// record for a file it does not hold (here a symlink to a file outside the
// output folder, planted in the staging folder) is refused.
func TestHostileSenderCannotResumeOutside(t *testing.T) {
	netns.Require(t)
	out := t.TempDir()
	outside := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(outside, []byte("not for the sender"), 0o600); err != nil {
		t.Fatal(err)
	}
	// What a receiver killed in the middle of photos/ left.
	var cut bytes.Buffer
	tw := tar.NewWriter(&cut)
	tw.WriteHeader(&tar.Header{Name: "photos/", Typeflag: tar.TypeDir, Mode: 0o755})
	tw.WriteHeader(&tar.Header{Name: "photos/held.jpg", Typeflag: tar.TypeReg, Mode: 0o644, Size: 5})
	tw.Write([]byte("jpeg!"))
	tw.Flush()
	x, err := archive.NewExtractor(out, archive.ExtractOptions{Names: []string{"photos"}})
	if err != nil {
		t.Fatal(err)
	}
	x.Stage(context.Background(), true)
	x.Extract(context.Background(), bytes.NewReader(cut.Bytes()))
	staging, _ := x.Suspend()
	if staging == "" {
		t.Fatal("nothing was kept of the cut extraction")
	}
	if err := os.Symlink(outside, filepath.Join(staging, "x", "photos", "secret")); err != nil {
		t.Fatal(err)
	}

	var evil bytes.Buffer
	tw = tar.NewWriter(&evil)
	tw.WriteHeader(&tar.Header{Name: "photos/secret", Typeflag: tar.TypeReg, Mode: 0o644, Size: 0,
		PAXRecords: map[string]string{"PCP.keep": "18", "PCP.keep.sha256": strings.Repeat("00", 32)}})
	tw.Close()
	var told []byte
	c, sent := craftedSender(t, pipe.Header{Kind: files.KindTar, Names: []string{"photos"}, Size: 18, Count: 2}, evil.Bytes(),
		pipe.Options{Holds: func(b []byte) { told = b }})
	recv := receiveTree(t, out, c)
	if status := recv.wait(30 * time.Second); status == 0 {
		t.Fatal("a resume of a file the receiver does not hold was accepted")
	}
	if !strings.Contains(recv.stderr.String(), "does not hold") {
		t.Fatalf("the refusal does not say why:\n%s", recv.stderr.String())
	}
	<-sent
	var holdings struct {
		Files []struct{ Path string } `json:"files"`
	}
	if err := json.Unmarshal(told, &holdings); err != nil || len(holdings.Files) != 1 || holdings.Files[0].Path != "photos/held.jpg" {
		t.Fatalf("the sender was told %s, want photos/held.jpg only", told)
	}
	if b, _ := os.ReadFile(outside); string(b) != "not for the sender" {
		t.Fatal("the file outside the output folder changed")
	}
	if _, err := os.Lstat(filepath.Join(out, "photos")); err == nil {
		t.Fatal("the refused transfer left photos under its final name")
	}
}
