package main

import (
	"github.com/pcp-dev/pcp/lib/cli"
	"github.com/pcp-dev/pcp/lib/files"
	"github.com/pcp-dev/pcp/lib/node"
)

// commandLine describes pcp's command line, with the flag sets the
// subcommands parse, for shell completion.
func commandLine() cli.Command {
	var sopt files.SendOptions
	var ropt files.ReceiveOptions
	var level string
	var yes, toStdout, noRelay, asJSON bool
	limits := node.DefaultRelayLimits()
	return cli.Command{Name: "pcp", Sub: []cli.Command{
		{Name: "send", Short: "send files and folders (- for stdin)", Flags: sendFlags(new(cli.Flags), &sopt, &level), Args: cli.PathArgs},
		{Name: "receive", Short: "receive files and folders", Flags: receiveFlags(new(cli.Flags), &ropt, &yes, &toStdout)},
		{Name: "node", Short: "run a DHT server", Flags: nodeFlags(new(cli.Flags), &limits, &noRelay)},
		{Name: "config", Short: "show the settings and where they come from", Flags: configFlags()},
		{Name: "doctor", Short: "tell how peers elsewhere will reach this machine", Flags: doctorFlags(new(cli.Flags), &asJSON)},
	}}
}
