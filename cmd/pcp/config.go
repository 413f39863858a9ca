package main

import (
	"errors"
	"fmt"
	iofs "io/fs"
	"os"

	"github.com/spf13/pflag"

	"github.com/pcp-dev/pcp/lib/cli"
	"github.com/pcp-dev/pcp/lib/files"
)

// configFlags are pcp config's flags: only --version.
func configFlags() *pflag.FlagSet { return cli.NewFlagSet("config", "pcp config", os.Stdout) }

// showConfig prints, for each setting a config file may hold, the value
// pcp send and pcp receive would take and where it comes from.
func showConfig(args []string) error {
	var f cli.Flags
	fs := configFlags()
	if err := f.Parse(fs, args, os.Getenv); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return cli.Usagef("config takes no arguments")
	}
	var sf, rf cli.Flags
	var sopt files.SendOptions
	var ropt files.ReceiveOptions
	var level string
	var yes, toStdout bool
	sfs, rfs := sendFlags(&sf, &sopt, &level), receiveFlags(&rf, &ropt, &yes, &toStdout)
	if err := sf.Parse(sfs, nil, os.Getenv); err != nil {
		return err
	}
	if err := rf.Parse(rfs, nil, os.Getenv); err != nil {
		return err
	}
	path := cli.ConfigPath(os.Getenv)
	state := "found"
	if _, err := os.Stat(path); errors.Is(err, iofs.ErrNotExist) {
		state = "none there"
	}
	fmt.Printf("config file: %s (%s)\n", path, state)
	for _, key := range cli.ConfigKeys {
		fmt.Printf("%-12s %s\n", key, setting(key, &sf, sfs, &rf, rfs))
	}
	return nil
}

// setting describes one setting: its value for the commands that have it,
// and where that came from.
func setting(key string, sf *cli.Flags, sfs *pflag.FlagSet, rf *cli.Flags, rfs *pflag.FlagSet) string {
	s, r := sfs.Lookup(key), rfs.Lookup(key)
	switch {
	case s != nil && r != nil && s.Value.String() != r.Value.String():
		return fmt.Sprintf("send: %s, receive: %s (%s)", show(s), show(r), rf.Source(key))
	case r != nil:
		return fmt.Sprintf("%s (%s)", show(r), rf.Source(key))
	case s != nil:
		return fmt.Sprintf("%s (%s)", show(s), sf.Source(key))
	}
	return "(no command has it)"
}

// unset says what an empty list means.
var unset = map[string]string{
	"bootstrap": "the public IPFS bootstrap peers",
	"relay":     "none named: relays are looked for in the DHT",
}

// show is a flag's value; an empty list is said in words.
func show(fl *pflag.Flag) string {
	if v := fl.Value.String(); v != "[]" && v != "" {
		return v
	}
	if u := unset[fl.Name]; u != "" {
		return u
	}
	return "none"
}
