package tests

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// make dist for this machine's Linux: the archive holds the commands, man
// pages, completions, README and LICENSE; SHA256SUMS checks out; the .deb,
// unpacked into a throw-away root, runs `pcp --version` with the version
// of the archive's name, and installs the man pages and completions where
// the system looks for them.
func TestReleaseArtefacts(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("SKIPPED: the packages are built and checked on Linux")
	}
	for _, tool := range []string{"dpkg", "git", "sha256sum", "tar"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s is needed: %v", tool, err)
			}
			t.Skipf("SKIPPED: %s is needed", tool)
		}
	}
	dist := t.TempDir()
	cmd := exec.Command("bash", "packaging/dist.sh")
	cmd.Dir = ".."
	cmd.Env = append(os.Environ(), "DIST="+dist, "PLATFORMS=linux/"+runtime.GOARCH)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("dist.sh: %v\n%s", err, out)
	}
	run := func(dir, name string, args ...string) string {
		t.Helper()
		c := exec.Command(name, args...)
		c.Dir = dir
		out, err := c.CombinedOutput()
		if err != nil {
			t.Fatalf("%s %v: %v\n%s", name, args, err, out)
		}
		return string(out)
	}
	sums := run(dist, "sha256sum", "-c", "SHA256SUMS")
	archives, _ := filepath.Glob(filepath.Join(dist, "pcp-v*-linux-"+runtime.GOARCH+".tar.gz"))
	debs, _ := filepath.Glob(filepath.Join(dist, "*.deb"))
	rpms, _ := filepath.Glob(filepath.Join(dist, "*.rpm"))
	if len(archives) != 1 || len(debs) != 1 || len(rpms) != 1 || strings.Count(sums, ": OK") != 3 {
		t.Fatalf("dist holds %v, %v, %v; SHA256SUMS:\n%s", archives, debs, rpms, sums)
	}
	name := strings.TrimSuffix(filepath.Base(archives[0]), ".tar.gz")
	version := strings.TrimSuffix(strings.TrimPrefix(name, "pcp-"), "-linux-"+runtime.GOARCH)

	listing := run(dist, "tar", "-tzf", archives[0])
	for _, f := range []string{"bin/pcp", "bin/pcp-pipe", "bin/pcp-find", "bin/pcp-announce", "man/pcp.1", "man/pcp-protocol.7",
		"completions/bash/pcp", "completions/zsh/_pcp-pipe", "completions/fish/pcp-find.fish", "README.md", "LICENSE"} {
		if !strings.Contains(listing, name+"/"+f+"\n") {
			t.Errorf("the archive lacks %s:\n%s", f, listing)
		}
	}

	root := t.TempDir()
	run(dist, "dpkg", "-x", debs[0], root)
	got := run(root, filepath.Join(root, "usr/bin/pcp"), "--version")
	if !strings.HasPrefix(got, "pcp "+version+" (") {
		t.Errorf("the packaged pcp says %q, want version %s", got, version)
	}
	for _, f := range []string{"usr/bin/pcp-pipe", "usr/bin/pcp-find", "usr/bin/pcp-announce", "usr/share/man/man1/pcp.1.gz",
		"usr/share/man/man7/pcp-protocol.7.gz", "usr/share/bash-completion/completions/pcp", "usr/share/zsh/vendor-completions/_pcp",
		"usr/share/fish/vendor_completions.d/pcp.fish", "usr/share/doc/pcp/copyright"} {
		if _, err := os.Stat(filepath.Join(root, f)); err != nil {
			t.Errorf("the package lacks /%s: %v", f, err)
		}
	}
	if control := run(dist, "dpkg-deb", "-f", debs[0], "Package", "Architecture"); !strings.Contains(control, "Package: pcp") {
		t.Errorf("the package's control file:\n%s", control)
	}
}
