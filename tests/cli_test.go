package tests

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pcp-dev/pcp/internal/netns"
)

// Every command tells its version (module version, commit, Go) and exits 0.
func TestVersionOnEveryCommand(t *testing.T) {
	for _, args := range [][]string{
		{"pcp", "--version"}, {"pcp", "send", "--version"}, {"pcp", "receive", "--version"}, {"pcp", "node", "--version"},
		{"pcp-pipe", "--version"}, {"pcp-pipe", "send", "--version"}, {"pcp-pipe", "recv", "--version"},
		{"pcp-announce", "--version"}, {"pcp-find", "--version"},
	} {
		out, err := command(t, args[0], args[1:]...).Output()
		if err != nil {
			t.Fatalf("%s: %v", strings.Join(args, " "), err)
		}
		if s := string(out); !strings.HasPrefix(s, args[0]) || !strings.Contains(s, "go1.") || strings.Count(s, "\n") != 1 {
			t.Fatalf("%s printed %q, want one line: the command, its version and the Go version", strings.Join(args, " "), s)
		}
	}
}

// Help texts fit their command: --code is "instead of the CODE argument"
// only where there is one, and -q speaks of a generated code only where
// one is generated.
func TestHelpFitsTheCommand(t *testing.T) {
	for _, tc := range []struct {
		args                []string
		codeArgument, makes bool
	}{
		{[]string{"pcp", "send"}, false, true},
		{[]string{"pcp", "receive"}, true, false},
		{[]string{"pcp-pipe", "send"}, false, true},
		{[]string{"pcp-pipe", "recv"}, true, false},
		{[]string{"pcp-find"}, true, false},
		{[]string{"pcp-announce"}, true, true},
	} {
		out, err := command(t, tc.args[0], append(tc.args[1:], "--help")...).Output()
		if err != nil {
			t.Fatalf("%v --help: %v", tc.args, err)
		}
		help := string(out)
		if got := strings.Contains(help, "CODE argument"); got != tc.codeArgument {
			t.Errorf("%v --help mentions a CODE argument: %v, want %v", tc.args, got, tc.codeArgument)
		}
		if got := strings.Contains(help, "generated code is still printed"); got != tc.makes {
			t.Errorf("%v --help: -q mentions a generated code: %v, want %v", tc.args, got, tc.makes)
		}
	}
}

// On a terminal, pcp receive without a code asks for it; declining the
// offer is said plainly, not as an error, and the sender is told.
func TestReceiveOnATerminal(t *testing.T) {
	netns.Require(t)
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "a.txt"), []byte("alpha\n"), 0o644)
	for _, answer := range []string{"n", "y"} {
		out := t.TempDir()
		c := newCode(t)
		sc := command(t, "pcp", "send", "--discovery", "mdns", "--code", c, "a.txt")
		sc.Dir = src
		send := start(t, sc, nil)
		recvCmd := strings.Join([]string{binary(t, "pcp"), "receive", "--discovery", "mdns", "--output", out, "--timeout", "20s"}, " ")
		// The code, then the answer to the offer.
		recv := start(t, exec.Command("script", "-qefc", recvCmd, "/dev/null"), strings.NewReader(c+"\n"+answer+"\n"))
		status := recv.wait(30 * time.Second)
		send.wait(10 * time.Second)
		screen := recv.stdout.String()
		if !strings.Contains(screen, "pcp: code (the words the sender printed):") {
			t.Fatalf("answer %s: pcp receive without a code did not ask for it:\n%s", answer, screen)
		}
		_, err := os.Stat(filepath.Join(out, "a.txt"))
		switch answer {
		case "n":
			if status != 1 || err == nil || !strings.Contains(screen, "pcp: declined; nothing was received") || strings.Contains(screen, "error") {
				t.Fatalf("declining: exit %d, a.txt there: %v, screen:\n%s", status, err == nil, screen)
			}
			if !strings.Contains(send.stderr.String(), "refused the transfer: declined") {
				t.Fatalf("the sender was not told of the decline:\n%s", send.stderr.String())
			}
		case "y":
			if status != 0 || err != nil {
				t.Fatalf("accepting: exit %d, a.txt: %v\n%s", status, err, screen)
			}
		}
	}
}

// On a terminal, pcp-pipe send of a regular file shows a bar with the
// bytes sent of the file's size, in the summary's units (MiB), and a rate
// averaged over time, not over the first buffers.
func TestProgressBarOnATerminal(t *testing.T) {
	netns.Require(t)
	in := filepath.Join(t.TempDir(), "in")
	if err := os.WriteFile(in, randomBytes(t, 64<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	c := newCode(t)
	sendCmd := binary(t, "pcp-pipe") + " send --discovery mdns --code " + c + " < " + in
	send := start(t, exec.Command("script", "-qefc", sendCmd, "/dev/null"), nil)
	// A receiver that takes nothing for two seconds holds the sender's bar
	// where it can be read.
	recv := start(t, exec.Command("bash", "-c", `"$1" recv --discovery mdns --timeout 20s "$2" | (sleep 2; cat > /dev/null)`, "-", binary(t, "pcp-pipe"), c), nil)
	recv.expectExit(30*time.Second, 0)
	send.expectExit(10*time.Second, 0)
	screen := send.stdout.String()
	if !strings.Contains(screen, "/64 MiB, ") || !strings.Contains(screen, " MiB/s)") {
		t.Fatalf("no bar with bytes of 64 MiB and a rate in MiB/s on the screen:\n%q", screen)
	}
	if strings.Contains(screen, "GiB/s") || strings.Contains(screen, "TiB/s") {
		t.Fatalf("the bar shows a rate the receiver's two-second pause makes impossible:\n%q", screen)
	}
}

// On a terminal, a receiver that looks for its sender says so on a live
// line, with the time it has looked, until the sender is found; the status
// lines then start on a line of their own.
func TestLiveStatusWhileLooking(t *testing.T) {
	netns.Require(t)
	c := newCode(t)
	recvCmd := binary(t, "pcp-pipe") + " recv --discovery mdns --timeout 20s " + c + " > /dev/null"
	recv := start(t, exec.Command("script", "-qefc", recvCmd, "/dev/null"), nil)
	time.Sleep(2500 * time.Millisecond)
	send := start(t, command(t, "pcp-pipe", "send", "--discovery", "mdns", "--code", c), strings.NewReader("hello\n"))
	recv.expectExit(30*time.Second, 0)
	send.expectExit(10*time.Second, 0)
	screen := recv.stdout.String()
	if !strings.Contains(screen, "\r\x1b[Kpcp-pipe: looking for the sender (mdns)… 1s") {
		t.Fatalf("no live status while looking:\n%q", screen)
	}
	if !strings.Contains(screen, "\r\x1b[Kpcp-pipe: peer ") {
		t.Fatalf("the status line after the live one does not start on a clean line:\n%q", screen)
	}
}

// pcp config shows the value of each setting and where it came from: the
// config file's line, the environment, or the default.
func TestConfigCommand(t *testing.T) {
	dir := t.TempDir()
	os.Mkdir(filepath.Join(dir, "pcp"), 0o755)
	os.WriteFile(filepath.Join(dir, "pcp", "config"), []byte("# here\ntimeout = 30s\noutput = /srv/in\n"), 0o644)
	cmd := command(t, "pcp", "config")
	cmd.Env = append(os.Environ(), "XDG_CONFIG_HOME="+dir, "PCP_DISCOVERY=mdns", "PCP_BOOTSTRAP=", "PCP_TIMEOUT=", "PCP_RELAY=")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("pcp config: %v", err)
	}
	conf := filepath.Join(dir, "pcp", "config")
	for _, want := range []string{
		"config file: " + conf + " (found)",
		"timeout      30s (config file " + conf + ":2)",
		"output       /srv/in (config file " + conf + ":3)",
		"discovery    mdns (environment PCP_DISCOVERY)",
		"compress     auto (default)",
		"bootstrap    the public IPFS bootstrap peers (default)",
	} {
		if !strings.Contains(string(out), want+"\n") {
			t.Errorf("pcp config does not say %q:\n%s", want, out)
		}
	}
}

// flagRE finds a flag's name at the start of a line of --help.
var flagRE = regexp.MustCompile(`(?m)^\s+(?:-\w, )?--([a-z][a-z0-9-]*)`)

// manFlagRE finds a flag's name in the first line of a .TP item of a man
// page's OPTIONS.
var manFlagRE = regexp.MustCompile(`\\-\\-([a-z](?:[a-z0-9]|\\-)*)`)

// The man pages build from their markdown with the commands under test,
// without a warning; every flag of every command (as --help lists it) is
// documented in its page's OPTIONS, and every option documented there is a
// flag of the command.
func TestEveryFlagIsDocumented(t *testing.T) {
	dir, err := binDir()
	if err != nil {
		t.Fatal(err)
	}
	pages := t.TempDir()
	sources, _ := filepath.Glob(filepath.Join("..", "man", "*.md"))
	if len(sources) != 5 {
		t.Fatalf("man/*.md: %d sources, want 5", len(sources))
	}
	build := exec.Command("go", append([]string{"run", "../internal/mangen", "--bin", dir, "--out", pages}, sources...)...)
	var stderr bytes.Buffer
	build.Stderr = &stderr
	if err := build.Run(); err != nil || stderr.Len() > 0 {
		t.Fatalf("mangen: %v\n%s", err, stderr.String())
	}
	for page, commands := range map[string][][]string{
		"pcp.1":          {{"pcp", "send"}, {"pcp", "receive"}, {"pcp", "node"}, {"pcp", "config"}, {"pcp", "doctor"}},
		"pcp-pipe.1":     {{"pcp-pipe", "send"}, {"pcp-pipe", "recv"}},
		"pcp-find.1":     {{"pcp-find"}},
		"pcp-announce.1": {{"pcp-announce"}},
	} {
		flags := map[string]bool{"help": true} // pflag's own
		for _, c := range commands {
			out, err := exec.Command(binary(t, c[0]), append(c[1:], "--help")...).Output()
			if err != nil {
				t.Fatalf("%v --help: %v", c, err)
			}
			for _, m := range flagRE.FindAllStringSubmatch(string(out), -1) {
				flags[m[1]] = true
			}
		}
		src, err := os.ReadFile(filepath.Join(pages, page))
		if err != nil {
			t.Fatal(err)
		}
		_, options, _ := strings.Cut(string(src), "\n.SH OPTIONS\n")
		options, _, _ = strings.Cut(options, "\n.SH ")
		documented := map[string]bool{}
		lines := strings.Split(options, "\n")
		for i := 1; i < len(lines); i++ {
			if lines[i-1] != ".TP" {
				continue
			}
			for _, m := range manFlagRE.FindAllStringSubmatch(lines[i], -1) {
				documented[strings.ReplaceAll(m[1], `\-`, "-")] = true
			}
		}
		for f := range flags {
			if !documented[f] {
				t.Errorf("%s: --%s is a flag but not in OPTIONS", page, f)
			}
		}
		for f := range documented {
			if !flags[f] {
				t.Errorf("%s: OPTIONS documents --%s, which no command of it has", page, f)
			}
		}
	}
}
