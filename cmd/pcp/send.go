package main

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"time"

	"github.com/pcp-dev/pcp/lib/archive"
	"github.com/pcp-dev/pcp/lib/cli"
	"github.com/pcp-dev/pcp/lib/files"
	"github.com/pcp-dev/pcp/lib/status"
	"github.com/spf13/pflag"
	"golang.org/x/term"
)

// sendFlags are pcp send's flags, set into f, opt and level (--compress).
func sendFlags(f *cli.Flags, opt *files.SendOptions, level *string) *pflag.FlagSet {
	fs := cli.NewFlagSet("send", "pcp send [OPTIONS] PATH...", os.Stdout)
	f.AddCode(fs, false)
	f.AddWords(fs)
	fs.StringVar(level, "compress", "auto", "zstd level: auto (what suits the link), 1 (fastest) to 4 (smallest), or 0 for plain tar")
	cli.Configurable(fs, "compress")
	cli.Values(fs, "compress", "auto", "0", "1", "2", "3", "4")
	fs.StringVar(&opt.Name, "name", "", "the name of the data read from stdin (the path -)")
	fs.StringArrayVar(&opt.Selection.Exclude, "exclude", nil, "leave out what inside the folders matches `PATTERN` (a shell glob on the name or the path from the folder's name, e.g. '*.o' or proj/.venv; repeatable)")
	fs.BoolVarP(&opt.Selection.Dereference, "dereference", "L", false, "send what symlinks point to instead of the links")
	f.AddNetwork(fs, 0)
	f.AddTransfer(fs, "pcp")
	return fs
}

func send(ctx context.Context, args []string) error {
	var f cli.Flags
	var opt files.SendOptions
	var level string
	fs := sendFlags(&f, &opt, &level)
	if err := f.Parse(fs, args, os.Getenv); err != nil {
		return err
	}
	f.QuietWithoutTerminal()
	if fs.NArg() == 0 {
		return cli.Usagef("nothing to send: give one or more paths, or - for stdin")
	}
	if fs.NArg() > 1 && slices.Contains(fs.Args(), "-") {
		return cli.Usagef("- (stdin) cannot be sent together with other paths")
	}
	f.StdinIsData = slices.Contains(fs.Args(), "-")
	var err error
	if opt.Level, err = parseLevel(level); err != nil {
		return cli.Usagef("%s %s", f.Named("compress"), err)
	}
	for _, p := range opt.Selection.Exclude {
		if err := archive.CheckPattern(p); err != nil {
			return cli.Usagef("--exclude: %v", err)
		}
	}
	log := f.Logger("pcp", os.Stderr)
	progress := f.Progress("sending")
	opt.Progress, opt.Debugf = progress.Update, log.Debugf
	if f.StdinIsData && term.IsTerminal(int(os.Stdin.Fd())) {
		fmt.Fprintln(os.Stderr, "pcp: reading what you type until Ctrl-D (the end of the input)")
	}
	out, err := files.Prepare(ctx, fs.Args(), os.Stdin, opt)
	if err != nil {
		return err
	}
	defer out.Close()
	if note := out.Skipping(); note != "" {
		// Said even without a terminal: the receiver gets less than the folder.
		fmt.Fprintf(os.Stderr, "pcp: %s\n", note)
	}
	s, err := f.Start(ctx, log)
	if err != nil {
		return err
	}
	defer s.Close()
	c, err := f.AnnounceCode("pcp", "pcp receive", os.Stderr)
	if err != nil {
		return err
	}
	log.Debugf("offering %s", out.Offer())
	res, err := files.Send(ctx, s.Session, c, out, f.Timeout)
	progress.Finish()
	if err != nil {
		return err
	}
	log.Infof("sent %s in %v (%s/s), %s; the receiver confirmed it", amount(res), res.Transfer.Round(time.Millisecond), status.Size(rate(res)), res.Path)
	return nil
}

// parseLevel reads --compress: auto, or a zstd level from 0 (none) to 4.
func parseLevel(s string) (int, error) {
	if s == "auto" {
		return archive.AutoLevel, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 || n > 4 {
		return 0, fmt.Errorf("%s: want auto, or 0 (plain tar) to 4", s)
	}
	return n, nil
}

// amount says how much was moved: the files' size, and the bytes on the
// wire when compression changed it.
func amount(r files.Result) string {
	if r.Size < 0 || r.Size == r.Bytes {
		return status.Size(r.Bytes)
	}
	return fmt.Sprintf("%s (%s on the wire)", status.Size(r.Size), status.Size(r.Bytes))
}

// rate is the files' size (or the wire bytes) per second of transfer.
func rate(r files.Result) int64 {
	n := r.Size
	if n < 0 {
		n = r.Bytes
	}
	if r.Transfer <= 0 {
		return 0
	}
	return int64(float64(n) / r.Transfer.Seconds())
}
