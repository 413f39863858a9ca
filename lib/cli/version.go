package cli

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
)

// Version describes the build of the running command in one line: the
// module version, the commit and its time (with "+changes" when the work
// tree differed from it), and the Go version, from the build info.
func Version(prog string) string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return prog + " (no build information)"
	}
	var rev, at string
	modified := false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.time":
			at = s.Value
		case "vcs.modified":
			modified = s.Value == "true"
		}
	}
	var details []string
	if rev != "" {
		commit := "commit " + rev[:min(12, len(rev))]
		if at != "" {
			commit += " of " + at
		}
		if modified {
			commit += " with local changes"
		}
		details = append(details, commit)
	}
	details = append(details, bi.GoVersion)
	return fmt.Sprintf("%s %s (%s)", prog, bi.Main.Version, strings.Join(details, "; "))
}

// printVersion prints Version for prog on the flag set's output.
func printVersion(out io.Writer, prog string) {
	fmt.Fprintln(out, Version(prog))
}

// versionName is the command's name for Version: the program, and the
// subcommand of pcp when there is one ("pcp send").
func versionName(fs interface{ Name() string }) string {
	prog := filepath.Base(os.Args[0])
	if name := fs.Name(); name != prog && name != "" {
		return prog + " " + name
	}
	return prog
}
