// Command pcp sends files and folders to a peer that shares a code
// (`pcp send PATH...`, `pcp receive CODE`), and runs `pcp node`, a
// long-running DHT server that is the bootstrap peer of a private network.
// See pcp(1).
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/pcp-dev/pcp/lib/cli"
)

const usage = `Usage: pcp send [OPTIONS] PATH...   send files and folders (- for stdin); prints the code
       pcp receive [OPTIONS] CODE    receive them into the current folder (or --output)
       pcp node [OPTIONS]            run a DHT server; prints its multiaddrs on stdout
       pcp config                    show the settings send and receive take, and where from
       pcp doctor [OPTIONS]          tell how peers elsewhere will reach this machine
       pcp completion bash|zsh|fish  print the shell's completion script
Run "pcp COMMAND --help" for the options.`

func main() { os.Exit(cli.Main("pcp", os.Args[1:], os.Stderr, run)) }

func run(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return cli.Usagef("missing command\n%s", usage)
	}
	if cli.IsCompletion(args) {
		return cli.Complete(commandLine(), args, os.Stdout)
	}
	switch args[0] {
	case "send":
		return send(ctx, args[1:])
	case "receive", "recv":
		return receive(ctx, args[1:])
	case "node":
		return serveNode(ctx, args[1:])
	case "config":
		return showConfig(args[1:])
	case "doctor":
		return diagnose(ctx, args[1:])
	case "--version":
		fmt.Println(cli.Version("pcp"))
		return nil
	case "-h", "--help", "help":
		fmt.Println(usage)
		return nil
	}
	return cli.Usagef("unknown command %q\n%s", args[0], usage)
}
