// Command mangen builds the man pages from their markdown sources
// (man/NAME.SECTION.md), with the OPTIONS sections checked against the
// flags of the built commands: `mangen --bin bin --out man man/*.md`
// (run by make). See package manpage.
package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/pcp-dev/pcp/internal/manpage"
	"github.com/pcp-dev/pcp/lib/cli"
	"github.com/spf13/pflag"
)

func main() {
	fs := pflag.NewFlagSet("mangen", pflag.ContinueOnError)
	bin := fs.String("bin", "bin", "the folder of the built commands")
	out := fs.String("out", "man", "the folder to write the pages to")
	if err := fs.Parse(os.Args[1:]); err != nil {
		os.Exit(2)
	}
	for _, src := range fs.Args() {
		if err := build(src, *bin, *out); err != nil {
			fmt.Fprintln(os.Stderr, "mangen:", err)
			os.Exit(1)
		}
	}
}

// build writes the page of the markdown file src into out. The page of
// NAME.SECTION documents the flags of the command NAME in bin, if there
// is one.
func build(src, bin, out string) error {
	name := strings.TrimSuffix(filepath.Base(src), ".md")
	text, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	var commands []cli.CommandFlags
	command := filepath.Join(bin, strings.TrimSuffix(name, filepath.Ext(name)))
	if _, err := os.Stat(command); err == nil {
		var stdout bytes.Buffer
		run := exec.Command(command, cli.DescribeRequest)
		run.Stdout, run.Stderr = &stdout, os.Stderr
		if err := run.Run(); err != nil {
			return fmt.Errorf("%s %s: %w", command, cli.DescribeRequest, err)
		}
		if err := json.Unmarshal(stdout.Bytes(), &commands); err != nil {
			return fmt.Errorf("the flags of %s: %w", command, err)
		}
	}
	page, err := manpage.Build(name, text, commands)
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(out, name), page, 0o644)
}
