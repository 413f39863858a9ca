package main

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"strings"
	"time"

	"github.com/pcp-dev/pcp/lib/cli"
	"github.com/pcp-dev/pcp/lib/files"
	"github.com/pcp-dev/pcp/lib/status"
	"github.com/spf13/pflag"
)

// receiveFlags are pcp receive's flags, set into f, opt, yes and toStdout.
func receiveFlags(f *cli.Flags, opt *files.ReceiveOptions, yes, toStdout *bool) *pflag.FlagSet {
	fs := cli.NewFlagSet("receive", "pcp receive [OPTIONS] CODE", os.Stdout)
	f.AddCode(fs, true)
	fs.StringVarP(&opt.Dir, "output", "o", ".", "extract into this `DIR`")
	cli.Configurable(fs, "output")
	cli.DirValue(fs, "output")
	fs.BoolVar(toStdout, "stdout", false, "write the received stream (tar+zstd) to stdout instead of extracting it")
	fs.BoolVarP(yes, "yes", "y", false, "accept without asking")
	fs.BoolVar(&opt.Overwrite, "overwrite", false, "replace existing files and folders of the same names")
	fs.BoolVar(&opt.NoResume, "no-resume", false, "start afresh, even if an unfinished transfer of the same names left files here")
	fs.BoolVar(&opt.NoSync, "no-fsync", false, "acknowledge before the files are on stable storage (faster; a crash may lose them)")
	f.AddPeer(fs)
	f.AddNetwork(fs, 10*time.Minute)
	f.AddTransfer(fs, "pcp")
	return fs
}

func receive(ctx context.Context, args []string) error {
	var f cli.Flags
	var opt files.ReceiveOptions
	var yes, toStdout bool
	fs := receiveFlags(&f, &opt, &yes, &toStdout)
	if err := f.Parse(fs, args, os.Getenv); err != nil {
		return err
	}
	f.QuietWithoutTerminal()
	c, err := f.FindCode(ctx, "pcp", fs.Args())
	if err != nil {
		return err
	}
	if !yes && !cli.CanAsk() {
		return cli.Usagef("no terminal to confirm the transfer on; pass --yes to accept without asking")
	}
	if toStdout {
		opt.Raw = os.Stdout
	} else if info, err := os.Stat(opt.Dir); err != nil || !info.IsDir() {
		return cli.Usagef("--output %s: %s", opt.Dir, notFolder(err))
	}
	log := f.Logger("pcp", os.Stderr)
	f.Receives = true
	opt.Confirm = func(o files.Offer) error {
		log.Infof("receiving %s", o)
		return nil
	}
	if !yes {
		opt.ReplaceExisting = func(names []string) (bool, error) {
			q := strings.Join(names, ", ") + " exists in " + opt.Dir + "; replace it?"
			if len(names) > 1 {
				q = strings.Join(names, ", ") + " exist in " + opt.Dir + "; replace them?"
			}
			return cli.Ask(ctx, "pcp", q, "--overwrite")
		}
		opt.Confirm = func(o files.Offer) error {
			ok, err := cli.Ask(ctx, "pcp", "receive "+o.String()+"?", "--yes")
			if err == nil && !ok {
				err = cli.ErrDeclined
			}
			return err
		}
	}
	s, err := f.Start(ctx, log)
	if err != nil {
		return err
	}
	defer s.Close()
	progress := f.Progress("receiving")
	opt.Timeout, opt.Progress, opt.Debugf = f.Timeout, progress.Update, log.Debugf
	opt.Resuming = func(have, total int64) {
		log.Infof("resuming: %s of %s already here", status.Size(have), status.Size(total))
	}
	opt.Kept = func(dir string, size int64) {
		log.Infof("kept the %s received in %s: receiving the same names there again resumes (--no-resume starts afresh)", status.Size(size), dir)
	}
	res, err := files.Receive(ctx, s.Session, c, opt)
	progress.Finish()
	if err != nil {
		return err
	}
	log.Infof("received %s in %v (%s/s), %s; digest verified", amount(res), res.Transfer.Round(time.Millisecond), status.Size(rate(res)), res.Path)
	return nil
}

// notFolder says why --output is not a folder to receive into.
func notFolder(err error) string {
	switch {
	case err == nil:
		return "not a folder"
	case errors.Is(err, fs.ErrNotExist):
		return "no such folder (create it first)"
	case errors.Is(err, fs.ErrPermission):
		return "permission denied"
	}
	return err.Error()
}
