package cli

import (
	"encoding/json"
	"io"
	"strings"

	"github.com/spf13/pflag"
)

// DescribeRequest is the hidden first argument that asks a command for
// its flags as JSON (a list of CommandFlags), the source of the OPTIONS sections
// of its man page: the pages are built from the flag sets the binary
// parses, so that they cannot name a flag it lacks or miss one it has.
const DescribeRequest = "__flags"

// CommandFlags are the flags of one command or subcommand, as described for its
// man page.
type CommandFlags struct {
	// Command is its full name, such as "pcp send".
	Command string `json:"command"`
	// Flags are its flags in the order of its --help, pflag's own -h,
	// --help last.
	Flags []Flag `json:"flags"`
}

// Flag is one flag of a command.
type Flag struct {
	Name      string `json:"name"`
	Shorthand string `json:"shorthand,omitempty"`
	// Value is true when the flag takes a value (--code CODE), false for
	// a switch (--verbose).
	Value bool `json:"value"`
	// Usage is its one line of --help.
	Usage string `json:"usage"`
}

// describe writes the flags of cmd and of each subcommand as JSON to w.
func describe(cmd Command, w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(flagsOf(cmd, nil))
}

// flagsOf appends to list the flags of cmd, named after its parents, and
// of its subcommands. A command without a flag set (one that only has
// subcommands) is left out.
func flagsOf(cmd Command, parents []string) []CommandFlags {
	name := append(parents[:len(parents):len(parents)], cmd.Name)
	var list []CommandFlags
	if cmd.Flags != nil {
		f := CommandFlags{Command: strings.Join(name, " ")}
		cmd.Flags.VisitAll(func(fl *pflag.Flag) {
			if fl.Hidden || fl.Deprecated != "" {
				return
			}
			f.Flags = append(f.Flags, Flag{
				Name:      fl.Name,
				Shorthand: fl.Shorthand,
				Value:     fl.NoOptDefVal == "",
				Usage:     fl.Usage,
			})
		})
		if cmd.Flags.Lookup("help") == nil {
			f.Flags = append(f.Flags, Flag{Name: "help", Shorthand: "h", Usage: "print the options and exit"})
		}
		list = append(list, f)
	}
	for _, sub := range cmd.Sub {
		list = append(list, flagsOf(sub, name)...)
	}
	return list
}
