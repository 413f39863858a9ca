package tests

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// needShell skips (or, in CI, fails) a test that needs shell.
func needShell(t *testing.T, shell string) string {
	t.Helper()
	path, err := exec.LookPath(shell)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is needed to test its completion: %v", shell, err)
		}
		t.Skipf("SKIPPED: %s is needed to test its completion", shell)
	}
	return path
}

// completionCase is a command line typed so far, and what must and must
// not be offered for its last word.
type completionCase struct {
	line       string
	want, not  []string
	filesTried bool // the shell is told to complete file names (bash, zsh: the script's request)
}

var completionCases = []completionCase{
	{line: "pcp ", want: []string{"send", "receive", "node", "config"}},
	{line: "pcp send --disc", want: []string{"--discovery"}},
	{line: "pcp send --discovery ", want: []string{"mdns", "dht", "mdns,dht"}, not: []string{"notes.txt"}},
	{line: "pcp send --compress ", want: []string{"auto", "0", "4"}},
	{line: "pcp receive --output ", want: []string{"photos"}, not: []string{"notes.txt"}},
	{line: "pcp send ", want: []string{"notes.txt", "photos"}, filesTried: true},
	{line: "pcp receive --timeout ", not: []string{"notes.txt", "photos"}},
	{line: "pcp-pipe recv --no-", want: []string{"--no-fsync"}},
	{line: "pcp-find --js", want: []string{"--json"}},
	{line: "pcp-announce --ke", want: []string{"--keep"}},
}

// completions runs script (in the shell, in a folder that holds the
// folder photos and the file notes.txt, with the commands on the PATH) and
// returns its output.
func completions(t *testing.T, shell string, args ...string) string {
	t.Helper()
	dir := t.TempDir()
	os.Mkdir(filepath.Join(dir, "photos"), 0o755)
	os.WriteFile(filepath.Join(dir, "notes.txt"), nil, 0o644)
	cmd := exec.Command(shell, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "PATH="+filepath.Dir(binary(t, "pcp"))+":"+os.Getenv("PATH"), "XDG_CONFIG_HOME="+t.TempDir(), "HOME="+t.TempDir())
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", shell, err, out)
	}
	return string(out)
}

// checkOffered checks the words offered for each case, in the output of
// one shell run that prints "== LINE" before each case's words.
func checkOffered(t *testing.T, shell, out string) {
	t.Helper()
	for _, tc := range completionCases {
		_, after, ok := strings.Cut(out, "== "+tc.line+"\n")
		if !ok {
			t.Fatalf("%s: no output for %q:\n%s", shell, tc.line, out)
		}
		words, _, _ := strings.Cut(after, "== ")
		offered := map[string]bool{}
		for _, w := range strings.Fields(words) {
			offered[strings.TrimSuffix(strings.SplitN(w, ":", 2)[0], "/")] = true
		}
		files := strings.Contains(words, "_files") || strings.Contains(words, "FILES")
		for _, w := range tc.want {
			if !offered[w] && !(tc.filesTried && files) {
				t.Errorf("%s: %q does not offer %q; offered:\n%s", shell, tc.line, w, words)
			}
		}
		for _, w := range tc.not {
			if offered[w] {
				t.Errorf("%s: %q offers %q; offered:\n%s", shell, tc.line, w, words)
			}
		}
	}
}

// Each command completes its subcommands, flags, the values of flags that
// have a fixed set, folders for --output, and files for pcp send's paths,
// in bash, zsh and fish, through the scripts the commands print.
func TestCompletionInEachShell(t *testing.T) {
	t.Run("bash", func(t *testing.T) {
		bash := needShell(t, "bash")
		if _, err := os.Stat("/usr/share/bash-completion/bash_completion"); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatal("bash-completion is needed to test bash's completion")
			}
			t.Skip("SKIPPED: bash-completion is needed to test bash's completion")
		}
		var script strings.Builder
		script.WriteString("source /usr/share/bash-completion/bash_completion\n")
		for _, c := range []string{"pcp", "pcp-pipe", "pcp-find", "pcp-announce"} {
			script.WriteString("source <(" + c + " completion bash)\n")
		}
		for _, tc := range completionCases {
			// An empty reply for file names leaves them to readline (complete -o default).
			script.WriteString(`COMP_LINE='` + tc.line + `'; COMP_POINT=${#COMP_LINE}; read -ra COMP_WORDS <<< "$COMP_LINE"` + "\n")
			if strings.HasSuffix(tc.line, " ") {
				script.WriteString("COMP_WORDS+=('')\n")
			}
			script.WriteString(`COMP_CWORD=$((${#COMP_WORDS[@]} - 1)); COMPREPLY=(); echo "== ` + tc.line + `"` + "\n")
			script.WriteString("__start_" + strings.Fields(tc.line)[0] + " 2>/dev/null\n")
			script.WriteString(`if ((${#COMPREPLY[@]})); then printf '%s\n' "${COMPREPLY[@]}"; else complete -p ` + strings.Fields(tc.line)[0] + ` | grep -q -- '-o default' && echo FILES; fi` + "\n")
		}
		checkOffered(t, "bash", completions(t, bash, "-c", script.String()))
	})
	t.Run("zsh", func(t *testing.T) {
		zsh := needShell(t, "zsh")
		// _pcp and the others call zsh's completion functions: these stand-ins
		// print what they are given.
		script := `compdef() { : }
_describe() { (( ${#completions} )) && print -l -- "${completions[@]}" }
_arguments() { print -- "_arguments $*" }
compadd() { print -- "compadd $*" }
`
		for _, c := range []string{"pcp", "pcp-pipe", "pcp-find", "pcp-announce"} {
			script += "eval \"$(" + c + " completion zsh)\"\n"
		}
		for _, tc := range completionCases {
			fields := strings.Fields(tc.line)
			if strings.HasSuffix(tc.line, " ") {
				fields = append(fields, "")
			}
			quoted := make([]string, len(fields))
			for i, f := range fields {
				quoted[i] = "'" + f + "'"
			}
			script += "print -- '== " + tc.line + "'\nwords=(" + strings.Join(quoted, " ") + "); CURRENT=${#words}; _" + fields[0] + "\n"
		}
		checkOffered(t, "zsh", completions(t, zsh, "-f", "-c", script))
	})
	t.Run("fish", func(t *testing.T) {
		fish := needShell(t, "fish")
		script := ""
		for _, c := range []string{"pcp", "pcp-pipe", "pcp-find", "pcp-announce"} {
			script += c + " completion fish | source\n"
		}
		for _, tc := range completionCases {
			script += "echo '== " + tc.line + "'\ncomplete -C '" + tc.line + "'\n"
		}
		checkOffered(t, "fish", completions(t, fish, "--no-config", "-c", script))
	})
}
