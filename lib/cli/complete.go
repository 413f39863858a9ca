package cli

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// Shell completion: each command describes its command line (Command, from
// the same flag sets it parses) and answers `NAME completion SHELL` with a
// script for bash, zsh or fish. The scripts are cobra's: they ask the
// command itself what completes a word (`NAME __complete ARGS...`), so
// what they offer always matches the flags of the binary on the PATH.

// Args says what the arguments of a command are.
type Args int

const (
	// NoArgs: none, or ones that are typed (a code); no file is offered.
	NoArgs Args = iota
	// PathArgs: paths of files and folders.
	PathArgs
)

// Command describes a command line for completion.
type Command struct {
	// Name is the command's or subcommand's name.
	Name string
	// Short says in a few words what it does.
	Short string
	// Flags are the flags it parses (nil: none).
	Flags *pflag.FlagSet
	// Args says what its arguments are.
	Args Args
	// Sub are its subcommands.
	Sub []Command
}

// Annotations that say what a flag's value is, for completion.
const (
	valuesAnnotation = "pcp_values" // the values it takes
	pathAnnotation   = "pcp_path"   // "file" or "dir"
)

// Values says that the flag name of fs takes one of values.
func Values(fs *pflag.FlagSet, name string, values ...string) {
	fs.SetAnnotation(name, valuesAnnotation, values)
}

// FileValue says that the flag name of fs takes the path of a file.
func FileValue(fs *pflag.FlagSet, name string) {
	fs.SetAnnotation(name, pathAnnotation, []string{"file"})
}

// DirValue says that the flag name of fs takes the path of a folder.
func DirValue(fs *pflag.FlagSet, name string) {
	fs.SetAnnotation(name, pathAnnotation, []string{"dir"})
}

// Shells are the shells Complete writes scripts for.
var Shells = []string{"bash", "zsh", "fish"}

// IsCompletion reports whether args ask for completion: a script
// ("completion SHELL") or an answer to one ("__complete ..."); or for the
// description of the flags that the man pages are built from
// (DescribeRequest).
func IsCompletion(args []string) bool {
	return len(args) > 0 && (args[0] == "completion" || args[0] == cobra.ShellCompRequestCmd || args[0] == cobra.ShellCompNoDescRequestCmd || args[0] == DescribeRequest)
}

// Complete answers args, for which IsCompletion is true, about cmd on
// stdout: the script for a shell, the words that complete a command
// line, or the flags as JSON.
func Complete(cmd Command, args []string, stdout io.Writer) error {
	if args[0] == DescribeRequest {
		return describe(cmd, stdout)
	}
	root, err := cobraOf(cmd)
	if err != nil {
		return err
	}
	root.SetOut(stdout)
	root.SetErr(io.Discard)
	if args[0] != "completion" {
		root.SetArgs(args)
		return root.Execute()
	}
	if len(args) != 2 {
		return Usagef("completion takes one of: %s", strings.Join(Shells, ", "))
	}
	switch args[1] {
	case "bash":
		return root.GenBashCompletionV2(stdout, true)
	case "zsh":
		return root.GenZshCompletion(stdout)
	case "fish":
		return root.GenFishCompletion(stdout, true)
	}
	return Usagef("completion: unknown shell %q (want %s)", args[1], strings.Join(Shells, ", "))
}

// cobraOf is cmd as a cobra command, for cobra's completion machinery only:
// it never runs.
func cobraOf(cmd Command) (*cobra.Command, error) {
	c := &cobra.Command{
		Use:               cmd.Name,
		Short:             cmd.Short,
		RunE:              func(*cobra.Command, []string) error { return nil },
		SilenceErrors:     true,
		SilenceUsage:      true,
		CompletionOptions: cobra.CompletionOptions{DisableDefaultCmd: true},
	}
	switch cmd.Args {
	case PathArgs:
		c.ValidArgsFunction = func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
			return nil, cobra.ShellCompDirectiveDefault
		}
	default:
		c.ValidArgsFunction = cobra.NoFileCompletions
	}
	var err error
	if cmd.Flags != nil {
		cmd.Flags.VisitAll(func(fl *pflag.Flag) {
			// A copy: cobra registers completions by the flag's address,
			// once per process, and cmd may be described again.
			cp := *fl
			c.Flags().AddFlag(&cp)
			if err == nil {
				err = completeValue(c, &cp)
			}
		})
	}
	if len(cmd.Sub) > 0 {
		// "help" prints the usage.
		c.SetHelpCommand(&cobra.Command{Use: "help", Short: "show the usage", Run: func(*cobra.Command, []string) {}})
	}
	for _, sub := range cmd.Sub {
		sc, serr := cobraOf(sub)
		if serr != nil {
			return nil, serr
		}
		c.AddCommand(sc)
	}
	return c, err
}

// completeValue registers what completes fl's value: its values, a path,
// or nothing (a duration, a code, an address is typed).
func completeValue(c *cobra.Command, fl *pflag.Flag) error {
	if fl.NoOptDefVal != "" {
		return nil // a switch: no value
	}
	values, path := fl.Annotations[valuesAnnotation], fl.Annotations[pathAnnotation]
	err := c.RegisterFlagCompletionFunc(fl.Name, func(_ *cobra.Command, _ []string, toComplete string) ([]string, cobra.ShellCompDirective) {
		switch {
		case len(values) > 0:
			return values, cobra.ShellCompDirectiveNoFileComp
		case len(path) > 0 && path[0] == "dir":
			// Listed here: fish's script cannot filter folders itself.
			return folders(toComplete), cobra.ShellCompDirectiveNoFileComp | cobra.ShellCompDirectiveNoSpace
		case len(path) > 0:
			return nil, cobra.ShellCompDirectiveDefault
		}
		return nil, cobra.ShellCompDirectiveNoFileComp
	})
	if err != nil {
		return fmt.Errorf("completion of --%s: %w", fl.Name, err)
	}
	return nil
}

// maxFolders bounds the folders offered for one word.
const maxFolders = 1000

// folders are the folders whose paths start with prefix, each with a
// trailing slash so that the next level completes too; hidden ones only
// when prefix names them.
func folders(prefix string) []string {
	dir, base := filepath.Split(prefix)
	list := dir
	if list == "" {
		list = "."
	}
	entries, err := os.ReadDir(list)
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range entries {
		name := e.Name()
		if !strings.HasPrefix(name, base) || (strings.HasPrefix(name, ".") && !strings.HasPrefix(base, ".")) {
			continue
		}
		if info, err := os.Stat(filepath.Join(list, name)); err == nil && info.IsDir() {
			out = append(out, dir+name+"/")
		}
		if len(out) == maxFolders {
			break
		}
	}
	return out
}
