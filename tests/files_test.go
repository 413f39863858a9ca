package tests

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pcp-dev/pcp/internal/netns"
	"github.com/pcp-dev/pcp/lib/code"
	"github.com/pcp-dev/pcp/lib/files"
	"github.com/pcp-dev/pcp/lib/pipe"
	"github.com/pcp-dev/pcp/lib/session"
)

// makeTree builds a tree with every entry type pcp carries.
func makeTree(t *testing.T, root string) {
	t.Helper()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(root, "sub", "deeper"), 0o755))
	must(os.Mkdir(filepath.Join(root, "empty"), 0o755))
	must(os.Mkdir(filepath.Join(root, "private"), 0o700))
	must(os.WriteFile(filepath.Join(root, "a.txt"), []byte("alpha\n"), 0o644))
	must(os.WriteFile(filepath.Join(root, "empty.txt"), nil, 0o644))
	must(os.WriteFile(filepath.Join(root, "sub", "deeper", "random.bin"), randomBytes(t, 3<<20), 0o600))
	must(os.WriteFile(filepath.Join(root, "private", "secret"), []byte("s3cret"), 0o600))
	must(os.WriteFile(filepath.Join(root, "sub", "script.sh"), []byte("#!/bin/sh\necho hi\n"), 0o755))
	must(os.Symlink("../a.txt", filepath.Join(root, "sub", "link-to-a")))
	old := time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)
	must(os.Chtimes(filepath.Join(root, "a.txt"), old, old))
}

// sameTree fails unless want and got hold the same entries: types, contents,
// permission bits, link targets, and file modification times to the second.
func sameTree(t *testing.T, want, got string) {
	t.Helper()
	if out, err := exec.Command("diff", "-r", "--no-dereference", want, got).CombinedOutput(); err != nil {
		t.Fatalf("trees differ: %v\n%s", err, out)
	}
	filepath.Walk(want, func(path string, wi os.FileInfo, err error) error {
		if err != nil {
			t.Fatal(err)
		}
		rel, _ := filepath.Rel(want, path)
		gi, err := os.Lstat(filepath.Join(got, rel))
		if err != nil {
			t.Fatalf("%s: %v", rel, err)
		}
		if wi.Mode() != gi.Mode() {
			t.Errorf("%s: mode %v, want %v", rel, gi.Mode(), wi.Mode())
		}
		if wi.Mode().IsRegular() && !wi.ModTime().Truncate(time.Second).Equal(gi.ModTime().Truncate(time.Second)) {
			t.Errorf("%s: mtime %v, want %v", rel, gi.ModTime(), wi.ModTime())
		}
		return nil
	})
}

// A tree with every entry type, from pcp send to pcp receive.
func TestSendReceiveTree(t *testing.T) {
	netns.Require(t)
	src := t.TempDir()
	makeTree(t, filepath.Join(src, "tree"))
	out := t.TempDir()
	c := newCode(t)
	sc := command(t, "pcp", "send", "--discovery", "mdns", "--code", c, "tree")
	sc.Dir = src
	send := start(t, sc, nil)
	recv := start(t, command(t, "pcp", "receive", "--discovery", "mdns", "--yes", "--output", out, "--timeout", "20s", c), nil)
	recv.expectExit(30*time.Second, 0)
	send.expectExit(10*time.Second, 0)
	sameTree(t, filepath.Join(src, "tree"), filepath.Join(out, "tree"))
	if entries, _ := os.ReadDir(out); len(entries) != 1 {
		t.Fatalf("the output folder holds %d entries, want only the tree (no staging left)", len(entries))
	}
	if recv.stdout.String() != "" || send.stdout.String() != "" {
		t.Fatalf("pcp wrote to stdout: send %q, receive %q", send.stdout.String(), recv.stdout.String())
	}
}

// The wire format is plain tar inside plain zstd: pcp send is received by
// pcp-pipe recv | zstd -d | tar x, and tar c | zstd | pcp-pipe send by pcp
// receive.
func TestInteropWithTarAndZstd(t *testing.T) {
	netns.Require(t)
	for _, tool := range []string{"tar", "zstd"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is needed (apt-get install %s): %v", tool, tool, err)
		}
	}
	src := t.TempDir()
	makeTree(t, filepath.Join(src, "tree"))

	t.Run("pcp send to tar", func(t *testing.T) {
		out := t.TempDir()
		c := newCode(t)
		sc := command(t, "pcp", "send", "--discovery", "mdns", "--code", c, "tree")
		sc.Dir = src
		send := start(t, sc, nil)
		recv := start(t, exec.Command("bash", "-c", `set -o pipefail; "$1" recv --discovery mdns --timeout 20s "$2" | zstd -d | tar -x -C "$3"`, "-", binary(t, "pcp-pipe"), c, out), nil)
		recv.expectExit(30*time.Second, 0)
		send.expectExit(10*time.Second, 0)
		sameTree(t, filepath.Join(src, "tree"), filepath.Join(out, "tree"))
	})
	t.Run("tar to pcp receive", func(t *testing.T) {
		out := t.TempDir()
		c := newCode(t)
		send := start(t, exec.Command("bash", "-c", `set -o pipefail; tar -C "$1" -c tree | zstd -q | "$2" send --discovery mdns --code "$3"`, "-", src, binary(t, "pcp-pipe"), c), nil)
		recv := start(t, command(t, "pcp", "receive", "--discovery", "mdns", "--yes", "--output", out, "--timeout", "20s", c), nil)
		recv.expectExit(30*time.Second, 0)
		send.expectExit(10*time.Second, 0)
		sameTree(t, filepath.Join(src, "tree"), filepath.Join(out, "tree"))
	})
}

// A hostile sender (a proven peer) sends archives that try to write outside
// the output folder: each is refused, and nothing appears outside.
func TestHostileArchivesAreRefused(t *testing.T) {
	netns.Require(t)
	cases := map[string][]*tar.Header{
		"dot-dot":         {{Name: "../escaped", Typeflag: tar.TypeReg, Mode: 0o644, Size: 4}},
		"absolute":        {{Name: "/tmp/pcp-escaped-abs", Typeflag: tar.TypeReg, Mode: 0o644, Size: 4}},
		"through symlink": {{Name: "link", Typeflag: tar.TypeSymlink, Linkname: "..", Mode: 0o777}, {Name: "link/escaped", Typeflag: tar.TypeReg, Mode: 0o644, Size: 4}},
		"device":          {{Name: "null", Typeflag: tar.TypeChar, Mode: 0o666, Devmajor: 1, Devminor: 3}},
	}
	for name, headers := range cases {
		t.Run(name, func(t *testing.T) {
			parent := t.TempDir()
			out := filepath.Join(parent, "out")
			os.Mkdir(out, 0o755)
			var archive bytes.Buffer
			tw := tar.NewWriter(&archive)
			for _, h := range headers {
				if err := tw.WriteHeader(h); err != nil {
					t.Fatal(err)
				}
				if h.Size > 0 {
					tw.Write([]byte("evil"))
				}
			}
			tw.Close()
			c := newCode(t)
			send := start(t, command(t, "pcp-pipe", "send", "--discovery", "mdns", "--code", c), bytes.NewReader(archive.Bytes()))
			recv := start(t, command(t, "pcp", "receive", "--discovery", "mdns", "--yes", "--output", out, "--timeout", "20s", c), nil)
			if status := recv.wait(30 * time.Second); status == 0 {
				t.Fatalf("a hostile archive was accepted\nstderr:\n%s", recv.stderr.String())
			}
			if status := send.wait(10 * time.Second); status == 0 {
				t.Fatalf("the sender of a refused archive exited 0")
			}
			if entries, _ := os.ReadDir(parent); len(entries) != 1 {
				t.Fatalf("something was written beside the output folder: %v", entries)
			}
			if entries, _ := os.ReadDir(out); len(entries) != 0 {
				t.Fatalf("the refused transfer left %v in the output folder", entries)
			}
			if _, err := os.Lstat("/tmp/pcp-escaped-abs"); err == nil {
				os.Remove("/tmp/pcp-escaped-abs")
				t.Fatal("an absolute path was written")
			}
		})
	}
}

// Without a terminal and without --yes, pcp receive refuses at once, naming
// --yes (exit 2); on a terminal it asks, and "n" refuses the transfer.
func TestConfirmation(t *testing.T) {
	netns.Require(t)
	out := t.TempDir()
	p := start(t, command(t, "pcp", "receive", "--discovery", "mdns", "--output", out, newCode(t)), nil)
	p.expectExit(10*time.Second, 2)
	if !strings.Contains(p.stderr.String(), "--yes") {
		t.Fatalf("the refusal does not name --yes:\n%s", p.stderr.String())
	}

	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "offered.txt"), []byte("offered\n"), 0o644)
	for _, answer := range []string{"n", "y"} {
		c := newCode(t)
		sc := command(t, "pcp", "send", "--discovery", "mdns", "--code", c, "offered.txt")
		sc.Dir = src
		send := start(t, sc, nil)
		// script(1) gives the receiver a terminal; the answer is typed ahead.
		recvCmd := strings.Join([]string{binary(t, "pcp"), "receive", "--discovery", "mdns", "--output", out, "--timeout", "20s", c}, " ")
		recv := start(t, exec.Command("script", "-qefc", recvCmd, "/dev/null"), strings.NewReader(answer+"\n"))
		status := recv.wait(30 * time.Second)
		sendStatus := send.wait(10 * time.Second)
		screen := recv.stdout.String()
		t.Logf("answer %s: receiver %d, sender %d\n%s\n%s", answer, status, sendStatus, screen, send.stderr.String())
		if !strings.Contains(screen, `"offered.txt"`) || !strings.Contains(screen, "[y/N]") {
			t.Fatalf("the prompt does not show the offer:\n%s", screen)
		}
		_, err := os.Stat(filepath.Join(out, "offered.txt"))
		switch answer {
		case "n":
			if status == 0 || err == nil {
				t.Fatalf("answering n: exit %d, file written: %v\n%s", status, err == nil, screen)
			}
			if !strings.Contains(send.stderr.String(), "refused") {
				t.Fatalf("the sender was not told of the refusal:\n%s", send.stderr.String())
			}
		case "y":
			if status != 0 || err != nil {
				t.Fatalf("answering y: exit %d, file: %v\n%s", status, err, screen)
			}
		}
	}
}

// An existing name is never overwritten without --overwrite.
func TestOverwrite(t *testing.T) {
	netns.Require(t)
	src, out := t.TempDir(), t.TempDir()
	os.WriteFile(filepath.Join(src, "notes.txt"), []byte("new\n"), 0o644)
	os.WriteFile(filepath.Join(out, "notes.txt"), []byte("old\n"), 0o644)
	for _, overwrite := range []bool{false, true} {
		c := newCode(t)
		sc := command(t, "pcp", "send", "--discovery", "mdns", "--code", c, "notes.txt")
		sc.Dir = src
		send := start(t, sc, nil)
		args := []string{"receive", "--discovery", "mdns", "--yes", "--output", out, "--timeout", "20s", c}
		if overwrite {
			args = append(args, "--overwrite")
		}
		recv := start(t, command(t, "pcp", args...), nil)
		status := recv.wait(30 * time.Second)
		send.wait(10 * time.Second)
		got, _ := os.ReadFile(filepath.Join(out, "notes.txt"))
		if !overwrite && (status == 0 || string(got) != "old\n" || !strings.Contains(recv.stderr.String(), "--overwrite")) {
			t.Fatalf("without --overwrite: exit %d, file %q, stderr:\n%s", status, got, recv.stderr.String())
		}
		if overwrite && (status != 0 || string(got) != "new\n") {
			t.Fatalf("with --overwrite: exit %d, file %q, stderr:\n%s", status, got, recv.stderr.String())
		}
	}
}

// A sender killed mid-transfer leaves no file under its final name: what
// arrived stays hidden in the staging folder, for a later run to resume.
func TestKilledSenderLeavesNoFile(t *testing.T) {
	netns.Require(t)
	src, out := t.TempDir(), t.TempDir()
	// A sparse file: large enough to be killed in the middle of, instant to make.
	f, err := os.Create(filepath.Join(src, "big.bin"))
	if err != nil {
		t.Fatal(err)
	}
	f.Truncate(4 << 30)
	f.Close()
	c := newCode(t)
	sc := command(t, "pcp", "send", "--discovery", "mdns", "--compress", "0", "--code", c, "big.bin")
	sc.Dir = src
	send := start(t, sc, nil)
	recv := start(t, command(t, "pcp", "receive", "--discovery", "mdns", "--yes", "--output", out, "--reconnect", "3s", "--timeout", "20s", c), nil)
	// Kill the sender once the receiver has written part of the file.
	deadline := time.Now().Add(20 * time.Second)
	for stagedBytes(out) < 1<<20 {
		if time.Now().After(deadline) {
			t.Fatalf("the receiver wrote nothing within 20s\nstderr:\n%s", recv.stderr.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	send.cmd.Process.Kill()
	if status := recv.wait(20 * time.Second); status == 0 {
		t.Fatal("the receiver exited 0 after the sender was killed")
	}
	onlyStaging(t, out) // kept for a resume, hidden
}

// stagedBytes is how much the receiver has written so far under dir.
func stagedBytes(dir string) int64 {
	var n int64
	filepath.Walk(dir, func(_ string, info os.FileInfo, err error) error {
		if err == nil && info.Mode().IsRegular() {
			n += info.Size()
		}
		return nil
	})
	return n
}

// A sender that offers one name and sends another (here a lying sender built
// from the library) is refused: the receiver accepted "photos", not ".bashrc".
func TestArchiveMustMatchTheOffer(t *testing.T) {
	netns.Require(t)
	out := t.TempDir()
	var archive bytes.Buffer
	tw := tar.NewWriter(&archive)
	tw.WriteHeader(&tar.Header{Name: ".bashrc", Typeflag: tar.TypeReg, Mode: 0o644, Size: 4})
	tw.Write([]byte("evil"))
	tw.Close()
	c, sent := craftedSender(t, pipe.Header{Kind: files.KindTar, Names: []string{"photos"}, Size: 4, Count: 1}, archive.Bytes(), pipe.Options{})
	recv := start(t, command(t, "pcp", "receive", "--discovery", "mdns", "--yes", "--output", out, "--timeout", "20s", c), nil)
	if status := recv.wait(30 * time.Second); status == 0 {
		t.Fatal("an archive that differs from the offer was accepted")
	}
	if !strings.Contains(recv.stderr.String(), "not among the names offered") {
		t.Fatalf("the refusal does not say why:\n%s", recv.stderr.String())
	}
	if err := <-sent; err == nil {
		t.Fatal("the lying sender was told all was well")
	}
	if entries, _ := os.ReadDir(out); len(entries) != 0 {
		t.Fatalf("the refused transfer left %v", entries)
	}
}

// craftedSender sends archive under offer from the library, as no pcp
// send would (a lying or hostile sender), announcing over mDNS with opt; it
// returns the code and what Send returns.
func craftedSender(t *testing.T, offer pipe.Header, archive []byte, opt pipe.Options) (string, <-chan error) {
	t.Helper()
	c, err := code.Parse(newCode(t))
	if err != nil {
		t.Fatal(err)
	}
	s, err := session.Start(t.Context(), session.Config{MDNS: true, Listen: []string{"/ip4/127.0.0.1/tcp/0"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	sent := make(chan error, 1)
	go func() {
		_, err := s.Send(t.Context(), c, offer, bytes.NewReader(archive), 20*time.Second, session.SendOptions{Options: opt})
		sent <- err
	}()
	return c.String(), sent
}

func TestCompressLevelIsChecked(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "f"), []byte("x"), 0o644)
	for _, level := range []string{"7", "-1", "fast", ""} {
		cmd := command(t, "pcp", "send", "--discovery", "mdns", "--compress", level, filepath.Join(dir, "f"))
		p := start(t, cmd, nil)
		p.expectExit(10*time.Second, 2)
		if !strings.Contains(p.stderr.String(), "--compress") || strings.Contains(p.stderr.String(), "code:") {
			t.Errorf("--compress %q: stderr %q should name --compress, and no code be handed out", level, p.stderr.String())
		}
	}
}

// The automatic level compresses for a receiver on another machine, and
// sends plain tar to pcp receive on this machine (which shares the cores
// and takes plain tar; pcp-pipe recv gets zstd: TestInteropWithTarAndZstd).
func TestAutoCompressesOnlyAcrossMachines(t *testing.T) {
	netns.Require(t)
	src := t.TempDir()
	var text bytes.Buffer
	for i := 0; text.Len() < 4<<20; i++ {
		fmt.Fprintf(&text, "line %d of a text that compresses well, status=ok\n", i)
	}
	if err := os.WriteFile(filepath.Join(src, "notes.txt"), text.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	a, b := lan(t, "auto", "10.78.0")
	for _, c := range []struct {
		name       string
		recv       *netns.Namespace
		compressed bool
	}{{"same host", a, false}, {"another host", b, true}} {
		out := t.TempDir()
		code := newCode(t)
		sc := a.Command(binary(t, "pcp"), "send", "--discovery", "mdns", "-v", "--code", code, "notes.txt")
		sc.Dir = src
		send := start(t, sc, nil)
		recv := start(t, c.recv.Command(binary(t, "pcp"), "receive", "--discovery", "mdns", "--yes", "--output", out, "--timeout", "20s", code), nil)
		recv.expectExit(30*time.Second, 0)
		send.expectExit(10*time.Second, 0)
		if got, err := os.ReadFile(filepath.Join(out, "notes.txt")); err != nil || !bytes.Equal(got, text.Bytes()) {
			t.Fatalf("%s: the received file differs (%v)", c.name, err)
		}
		plain := strings.Contains(send.stderr.String(), "the receiver runs on this machine and takes plain tar: sending plain tar")
		m := regexp.MustCompile(`sent 4\.0 MiB \(([0-9.]+) (KiB|MiB) on the wire\)`).FindStringSubmatch(send.stderr.String())
		small := false
		if m != nil {
			f, _ := strconv.ParseFloat(m[1], 64)
			small = m[2] == "KiB" || f < 2
		}
		if plain == c.compressed || small != c.compressed {
			t.Fatalf("%s: compressed %v (stored said: %v), want %v\nsender:\n%s", c.name, small, plain, c.compressed, send.stderr.String())
		}
	}
}

// The receivers write what they received to the disk before they
// acknowledge it, unless told --no-fsync; a pipe cannot be synced.
func TestReceiversSyncBeforeTheyAcknowledge(t *testing.T) {
	netns.Require(t)
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "a.txt"), []byte("alpha\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, noSync := range []bool{false, true} {
		out := t.TempDir()
		c := newCode(t)
		sc := command(t, "pcp", "send", "--discovery", "mdns", "--code", c, "a.txt")
		sc.Dir = src
		send := start(t, sc, nil)
		args := []string{"receive", "--discovery", "mdns", "--yes", "-v", "--output", out, "--timeout", "20s"}
		if noSync {
			args = append(args, "--no-fsync")
		}
		recv := start(t, command(t, "pcp", append(args, c)...), nil)
		recv.expectExit(30*time.Second, 0)
		send.expectExit(10*time.Second, 0)
		stderr := recv.stderr.String()
		synced := strings.Contains(stderr, "files written to the disk") && strings.Contains(stderr, "new names written to the disk")
		if synced == noSync {
			t.Fatalf("pcp receive (--no-fsync %v): synced %v\n%s", noSync, synced, stderr)
		}
	}
	for _, toFile := range []bool{true, false} {
		c := newCode(t)
		send := start(t, command(t, "pcp-pipe", "send", "--discovery", "mdns", "--code", c), strings.NewReader("the data\n"))
		file := filepath.Join(t.TempDir(), "out")
		sh := `"$1" recv --discovery mdns --timeout 20s -v "$2" > "$3"`
		if !toFile {
			sh = `"$1" recv --discovery mdns --timeout 20s -v "$2" | cat > "$3"`
		}
		recv := start(t, exec.Command("bash", "-c", "set -o pipefail; "+sh, "-", binary(t, "pcp-pipe"), c, file), nil)
		recv.expectExit(30*time.Second, 0)
		send.expectExit(10*time.Second, 0)
		if got, _ := os.ReadFile(file); string(got) != "the data\n" {
			t.Fatalf("pcp-pipe recv wrote %q", got)
		}
		if synced := strings.Contains(recv.stderr.String(), "output written to the disk"); synced != toFile {
			t.Fatalf("pcp-pipe recv into a file %v: synced %v\n%s", toFile, synced, recv.stderr.String())
		}
	}
}

// A folder holding what receivers refuse (a symlink out of it, as in a
// Python venv; a FIFO) and what --exclude names is sent without them: the
// sender says what it skips before it waits, the receiver's summary says
// what was left out. The same FIFO given as a path fails at once.
func TestFolderWithUnsendableEntries(t *testing.T) {
	netns.Require(t)
	src := t.TempDir()
	proj := filepath.Join(src, "proj")
	for _, d := range []string{".venv/bin", "build"} {
		if err := os.MkdirAll(filepath.Join(proj, filepath.FromSlash(d)), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for name, body := range map[string]string{"main.py": "print('hi')\n", "build/main.o": "obj"} {
		if err := os.WriteFile(filepath.Join(proj, filepath.FromSlash(name)), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("/usr/bin/python3", filepath.Join(proj, ".venv", "bin", "python3")); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(proj, "control.fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}

	out := t.TempDir()
	c := newCode(t)
	sc := command(t, "pcp", "send", "--discovery", "mdns", "--code", c, "--exclude", "*.o", "proj")
	sc.Dir = src
	send := start(t, sc, nil)
	send.waitStderr("pcp: skipping 1 symlink that points outside the folder, 1 FIFO, socket or device and 1 entry excluded by a pattern; -L sends what links point to", 10*time.Second)
	recv := start(t, command(t, "pcp", "receive", "--discovery", "mdns", "--yes", "-v", "--output", out, "--timeout", "20s", c), nil)
	recv.expectExit(30*time.Second, 0)
	send.expectExit(10*time.Second, 0)
	if !strings.Contains(recv.stderr.String(), `receiving "proj": `) || !strings.Contains(recv.stderr.String(), "in 5 items (left out: 1 symlink that points outside the folder, 1 FIFO, socket or device and 1 entry excluded by a pattern)") {
		t.Errorf("the receiver's summary does not say what was left out:\n%s", recv.stderr.String())
	}
	var got []string
	filepath.WalkDir(filepath.Join(out, "proj"), func(p string, d fs.DirEntry, err error) error {
		if err == nil {
			rel, _ := filepath.Rel(out, p)
			got = append(got, filepath.ToSlash(rel))
		}
		return nil
	})
	want := []string{"proj", "proj/.venv", "proj/.venv/bin", "proj/build", "proj/main.py"}
	if !slices.Equal(got, want) {
		t.Errorf("received %v, want %v", got, want)
	}

	given := command(t, "pcp", "send", "--discovery", "mdns", "--code", newCode(t), fifo)
	p := start(t, given, nil)
	p.expectExit(10*time.Second, 1)
	if !strings.Contains(p.stderr.String(), "control.fifo") || strings.Contains(p.stderr.String(), "announc") {
		t.Errorf("pcp send of a FIFO given as a path: %q, want an error naming it before any announcement", p.stderr.String())
	}
}

// Refusals before any data say which side must act: a name that exists
// at the destination (the sender is not told to pass a flag it does not
// have), and an offer larger than the free space where it would go.
func TestRefusalsSayWhoMustAct(t *testing.T) {
	netns.Require(t)
	src, out := t.TempDir(), t.TempDir()
	os.WriteFile(filepath.Join(src, "notes.txt"), randomBytes(t, 2<<20), 0o644)
	os.WriteFile(filepath.Join(out, "notes.txt"), []byte("old\n"), 0o644)

	c := newCode(t)
	sc := command(t, "pcp", "send", "--discovery", "mdns", "--code", c, "notes.txt")
	sc.Dir = src
	send := start(t, sc, nil)
	recv := start(t, command(t, "pcp", "receive", "--discovery", "mdns", "--yes", "--output", out, "--timeout", "20s", c), nil)
	recv.expectExit(30*time.Second, 1)
	send.expectExit(10*time.Second, 1)
	if !strings.Contains(recv.stderr.String(), `notes.txt exists (use --overwrite)`) {
		t.Errorf("receiver: %q, want it to say the name exists and how to replace it", recv.stderr.String())
	}
	if !strings.Contains(send.stderr.String(), "the receiver already has notes.txt (it can receive again with --overwrite)") {
		t.Errorf("sender: %q, want it told that the receiver has the name", send.stderr.String())
	}

	// 2 MiB offered to a file system of 1 MiB (a tmpfs in a mount
	// namespace of the receiver's own): refused before any data flows.
	dir := t.TempDir()
	c = newCode(t)
	sc = command(t, "pcp", "send", "--discovery", "mdns", "--code", c, "notes.txt")
	sc.Dir = src
	send = start(t, sc, nil)
	sh := `mount -t tmpfs -o size=1m pcp-test "$3" && "$1" receive --discovery mdns --yes --timeout 20s --output "$3" "$2"`
	recv = start(t, exec.Command("unshare", "--mount", "--propagation", "private", "bash", "-c", sh, "-", binary(t, "pcp"), c, dir), nil)
	recv.expectExit(30*time.Second, 1)
	send.expectExit(10*time.Second, 1)
	if !strings.Contains(recv.stderr.String(), "not enough space in "+dir+": the offer holds 2.0 MiB, 1.0 MiB is free") {
		t.Errorf("receiver: %q, want it to say the space is short", recv.stderr.String())
	}
	if !strings.Contains(send.stderr.String(), "the receiver has not enough disk space (2.0 MiB offered, 1.0 MiB free where it receives)") {
		t.Errorf("sender: %q, want it told that the receiver lacks space", send.stderr.String())
	}
}

// A file the sender may not read fails pcp send before any code is shown,
// naming it, instead of after the receiver said yes. (As root every file
// is readable: the sender runs as nobody.)
func TestUnreadableFileFailsBeforeTheCode(t *testing.T) {
	netns.Require(t)
	src := t.TempDir()
	if err := os.Chmod(src, 0o755); err != nil {
		t.Fatal(err)
	}
	proj := filepath.Join(src, "proj")
	if err := os.Mkdir(proj, 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(proj, "ok.txt"), []byte("ok\n"), 0o644)
	os.WriteFile(filepath.Join(proj, "secret"), []byte("root only\n"), 0o600)
	sc := exec.Command("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--",
		binary(t, "pcp"), "send", "-v", "--discovery", "mdns", "--code", newCode(t), "proj")
	sc.Dir = src
	send := start(t, sc, nil)
	send.expectExit(10*time.Second, 1)
	s := send.stderr.String()
	if !strings.Contains(s, "cannot send proj/secret: permission denied (you may not read it)") || strings.Contains(s, "announcing") {
		t.Errorf("pcp send as nobody of a tree with a root-only file: %q; want it refused, naming the file, before announcing", s)
	}
}

// On a terminal, names that exist in the output folder are asked about
// before the offer is answered: yes replaces them all, no refuses the
// offer and the sender is told that the receiver has them.
func TestReplaceQuestionOnATerminal(t *testing.T) {
	netns.Require(t)
	src := t.TempDir()
	for _, n := range []string{"a.txt", "b.txt"} {
		os.WriteFile(filepath.Join(src, n), []byte("new "+n+"\n"), 0o644)
	}
	for _, answer := range []string{"n", "y"} {
		out := t.TempDir()
		for _, n := range []string{"a.txt", "b.txt"} {
			os.WriteFile(filepath.Join(out, n), []byte("old\n"), 0o644)
		}
		c := newCode(t)
		sc := command(t, "pcp", "send", "--discovery", "mdns", "--code", c, "a.txt", "b.txt")
		sc.Dir = src
		send := start(t, sc, nil)
		recvCmd := strings.Join([]string{binary(t, "pcp"), "receive", "--discovery", "mdns", "--output", out, "--timeout", "20s", c}, " ")
		// The answer to the replace question, then to the offer's.
		recv := start(t, exec.Command("script", "-qefc", recvCmd, "/dev/null"), strings.NewReader(answer+"\ny\n"))
		status := recv.wait(30 * time.Second)
		send.wait(10 * time.Second)
		screen := recv.stdout.String()
		if !strings.Contains(screen, `"a.txt", "b.txt" exist in `+out+"; replace them? [y/N]") {
			t.Fatalf("answer %s: no replace question on the screen:\n%s", answer, screen)
		}
		got, _ := os.ReadFile(filepath.Join(out, "b.txt"))
		switch answer {
		case "n":
			if status == 0 || string(got) != "old\n" || !strings.Contains(send.stderr.String(), "the receiver already has a.txt") {
				t.Fatalf("answering n: exit %d, b.txt %q, sender:\n%s", status, got, send.stderr.String())
			}
		case "y":
			if status != 0 || string(got) != "new b.txt\n" {
				t.Fatalf("answering y: exit %d, b.txt %q\n%s", status, got, screen)
			}
		}
	}
}

// pcp send - reads stdin to its end before it hands out a code: a stream
// that does not fit in TMPDIR fails there, with no code printed, and one
// that fits is offered with its size.
func TestStdinIsHeldBeforeTheCode(t *testing.T) {
	netns.Require(t)
	dir := t.TempDir()
	// A mount namespace of its own: the tmpfs goes away with the command.
	sh := `mount -t tmpfs -o size=1m pcp-test "$2" && TMPDIR="$2" "$1" send --discovery mdns -`
	full := start(t, exec.Command("unshare", "--mount", "--propagation", "private", "bash", "-c", sh, "-", binary(t, "pcp"), dir), bytes.NewReader(randomBytes(t, 4<<20)))
	full.expectExit(10*time.Second, 1)
	if stderr := full.stderr.String(); !strings.Contains(stderr, "hold stdin in") || strings.Contains(stderr, "code:") {
		t.Fatalf("pcp send - with a full TMPDIR should fail before the code, saying where stdin did not fit:\n%s", stderr)
	}

	data := randomBytes(t, 300<<10)
	c := newCode(t)
	send := start(t, command(t, "pcp", "send", "--discovery", "mdns", "--code", c, "--name", "data.bin", "-"), bytes.NewReader(data))
	out := t.TempDir()
	recv := start(t, command(t, "pcp", "receive", "--discovery", "mdns", "--yes", "-v", "--output", out, "--timeout", "20s", c), nil)
	recv.expectExit(30*time.Second, 0)
	send.expectExit(10*time.Second, 0)
	if got, err := os.ReadFile(filepath.Join(out, "data.bin")); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("the received data.bin differs from stdin (%v)", err)
	}
	if !strings.Contains(recv.stderr.String(), "300.0 KiB") {
		t.Fatalf("the receiver was not offered the size of stdin:\n%s", recv.stderr.String())
	}
}

// A config file gives pcp receive its output folder and pcp send its level,
// below the flags and the environment.
func TestConfigFileSettings(t *testing.T) {
	netns.Require(t)
	cfgDir, out, src := t.TempDir(), t.TempDir(), t.TempDir()
	os.Mkdir(filepath.Join(cfgDir, "pcp"), 0o755)
	conf := "# pcp's defaults here\ndiscovery = mdns\noutput = " + out + "\ncompress = 0\ntimeout = 20s\n"
	if err := os.WriteFile(filepath.Join(cfgDir, "pcp", "config"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(src, "a.txt"), []byte("alpha\n"), 0o644)
	c := newCode(t)
	sc := command(t, "pcp", "send", "-v", "--code", c, "a.txt")
	sc.Dir = src
	sc.Env = []string{"XDG_CONFIG_HOME=" + cfgDir}
	send := start(t, sc, nil)
	rc := command(t, "pcp", "receive", "--yes", c)
	rc.Dir = t.TempDir() // not the output folder: the file must come from the config
	rc.Env = []string{"XDG_CONFIG_HOME=" + cfgDir}
	recv := start(t, rc, nil)
	recv.expectExit(30*time.Second, 0)
	send.expectExit(10*time.Second, 0)
	if got, err := os.ReadFile(filepath.Join(out, "a.txt")); err != nil || string(got) != "alpha\n" {
		t.Fatalf("a.txt in the configured output folder: %q, %v", got, err)
	}

	bad := command(t, "pcp", "send", "a.txt")
	bad.Dir = src
	os.WriteFile(filepath.Join(cfgDir, "pcp", "config"), []byte("compress = 9\n"), 0o644)
	bad.Env = []string{"XDG_CONFIG_HOME=" + cfgDir}
	p := start(t, bad, nil)
	p.expectExit(10*time.Second, 2)
	if !strings.Contains(p.stderr.String(), "compress (config file "+filepath.Join(cfgDir, "pcp", "config")+":1)") {
		t.Fatalf("a bad level in the config file is not named with its line:\n%s", p.stderr.String())
	}
}
