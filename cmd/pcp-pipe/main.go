// Command pcp-pipe is an authenticated byte pipe between two peers that
// share a code: `pcp-pipe send` streams stdin, `pcp-pipe recv CODE` writes
// it to stdout. See pcp-pipe(1).
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/pcp-dev/pcp/lib/cli"
)

const usage = `Usage: pcp-pipe send [OPTIONS]        stream stdin to the peer; prints the code on stderr
       pcp-pipe recv [OPTIONS] CODE   write the peer's stream to stdout
       pcp-pipe completion bash|zsh|fish   print the shell's completion script
Run "pcp-pipe send --help" or "pcp-pipe recv --help" for the options.`

func main() { os.Exit(cli.Main("pcp-pipe", os.Args[1:], os.Stderr, run)) }

func run(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return cli.Usagef("missing command\n%s", usage)
	}
	if cli.IsCompletion(args) {
		var noSync bool
		return cli.Complete(cli.Command{Name: "pcp-pipe", Sub: []cli.Command{
			{Name: "send", Short: "stream stdin to the peer", Flags: sendFlags(new(cli.Flags))},
			{Name: "recv", Short: "write the peer's stream to stdout", Flags: recvFlags(new(cli.Flags), &noSync)},
		}}, args, os.Stdout)
	}
	switch args[0] {
	case "send":
		return send(ctx, args[1:])
	case "recv", "receive":
		return recv(ctx, args[1:])
	case "--version":
		fmt.Println(cli.Version("pcp-pipe"))
		return nil
	case "-h", "--help", "help":
		fmt.Println(usage)
		return nil
	}
	return cli.Usagef("unknown command %q\n%s", args[0], usage)
}
