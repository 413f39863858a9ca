// Package files sends files and folders over the pipe as plain tar inside
// plain zstd, and extracts them safely on the other side: the composition
// behind `pcp send` and `pcp receive`.
package files

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"slices"
	"strings"
	"sync/atomic"
	"time"
	"unicode"

	"github.com/pcp-dev/pcp/lib/archive"
	"github.com/pcp-dev/pcp/lib/code"
	"github.com/pcp-dev/pcp/lib/compress"
	"github.com/pcp-dev/pcp/lib/pipe"
	"github.com/pcp-dev/pcp/lib/route"
	"github.com/pcp-dev/pcp/lib/session"
	"github.com/pcp-dev/pcp/lib/status"
)

// Header kinds of a pcp transfer. A stream from `pcp-pipe send` has the kind
// pipe.KindRaw and no summary.
const (
	KindTarZstd = "tar+zstd"
	KindTar     = "tar"
)

// NoteTar, in a receiver's note (pipe.Options.Note), says that it takes a
// plain tar stream where the header offered tar+zstd (it tells the two
// apart by the zstd magic number), as pcp receive does when it extracts:
// a sender on the same machine then sends plain tar, which costs less
// than zstd's stored frames. pcp-pipe recv sends no note: what it gets is
// always what the header says.
const NoteTar = "tar"

// maxNames bounds the top-level names of a transfer: all are listed in the
// header, so that the receiver can see them and refuse any other.
const maxNames = 1000

// Result describes a finished transfer.
type Result struct {
	session.Result
	// Size is the total size of the files, -1 when unknown (Bytes is what
	// went over the wire, compressed).
	Size int64
}

// SendOptions tune Send.
type SendOptions struct {
	// Level is archive.AutoLevel (zstd at the level that suits the link,
	// chosen as the transfer goes), a zstd level from 1 (fastest) to 4, or
	// 0 for plain tar.
	Level int
	// Name names the data read from stdin (the path "-").
	Name string
	// Selection chooses what is sent of the folders given: what matches
	// an --exclude pattern, and whether symlinks are followed (-L).
	Selection archive.Selection
	// Progress is called with the bytes archived so far and the total
	// (-1 when unknown).
	Progress func(done, total int64)
	// Debugf, if set, is told when the automatic level changes.
	Debugf func(format string, args ...any)
}

// Outgoing is a prepared transfer: the offer and how to write it.
type Outgoing struct {
	header    pipe.Header
	level     int // as SendOptions.Level
	write     func(ctx context.Context, w io.Writer, level int, holdings map[string]archive.Held) error
	release   func() error
	delivered *reports // what the receiver reports it has written out
	debugf    func(format string, args ...any)
}

// Offer is what the receiver will be asked to accept.
func (o *Outgoing) Offer() Offer { return Offer{o.header} }

// Skipping says what the folders sent hold that is left out, for the
// sender to tell before it waits ("skipping 2 symlinks that point outside
// the folder; -L sends what links point to"); "" when nothing is.
func (o *Outgoing) Skipping() string {
	left := o.header.Skipped
	if len(left) == 0 {
		return ""
	}
	hint := ""
	if left["outside"] > 0 {
		hint = "; -L sends what links point to"
	}
	return "skipping " + DescribeSkipped(left) + hint
}

// Prepare checks paths ("-" for stdin) and sums them up, before any peer is
// involved, so that a mistake shows before a code is handed out. stdin is
// read to its end here, into a temporary file (tar needs its size first).
// Close releases what Prepare holds.
func Prepare(ctx context.Context, paths []string, stdin io.Reader, opt SendOptions) (*Outgoing, error) {
	delivered := new(reports)
	h, write, release, err := prepare(ctx, paths, stdin, opt, delivered.latest)
	if err != nil {
		return nil, err
	}
	return &Outgoing{header: h, level: opt.Level, write: write, release: release, delivered: delivered, debugf: opt.Debugf}, nil
}

// Close releases what Prepare holds: the copy of stdin.
func (o *Outgoing) Close() error { return o.release() }

// Send announces c and streams the prepared transfer as tar+zstd to the
// receiver that accepts it.
func Send(ctx context.Context, s *session.Session, c code.Code, out *Outgoing, timeout time.Duration) (Result, error) {
	pr, pw := io.Pipe()
	wctx, cancel := context.WithCancel(ctx)
	written := make(chan struct{})
	accepted := make(chan struct{}) // the archive begins once the receiver accepted
	level := out.level
	var holdings map[string]archive.Held
	go func() {
		defer close(written)
		select {
		case <-accepted:
			pw.CloseWithError(out.write(wctx, pw, level, holdings))
		case <-wctx.Done():
			pw.CloseWithError(wctx.Err())
		}
	}()
	res, err := s.Send(ctx, c, out.header, pr, timeout, session.SendOptions{
		Options: pipe.Options{
			Delivered: out.delivered.add,
			Holds: func(b []byte) {
				holdings = parseHoldings(b)
				if out.debugf != nil && len(holdings) > 0 {
					out.debugf("the receiver holds %d files of an earlier transfer of these names", len(holdings))
				}
			},
			Noted: func(note string) {
				if level == archive.AutoLevel && out.delivered.sameHost.Load() && slices.Contains(strings.Fields(note), NoteTar) {
					// The two share the cores, and the link is memory.
					level = 0
					if out.debugf != nil {
						out.debugf("the receiver runs on this machine and takes plain tar: sending plain tar")
					}
				}
				close(accepted)
			},
		},
		Route: func(p route.Path) { out.delivered.sameHost.Store(p.SameHost) },
	})
	// A refused or failed transfer stops the writer: give it a moment to
	// clean up (not forever: it may be blocked reading a stdin that stays open).
	cancel()
	pr.Close()
	select {
	case <-written:
	case <-time.After(time.Second):
	}
	return Result{Result: res, Size: out.header.Size}, err
}

// reports keeps the receiver's latest report, for the compressor, and
// whether the receiver runs on this machine.
type reports struct {
	last     atomic.Pointer[compress.Report]
	sameHost atomic.Bool
}

// add takes a report as it arrives.
func (r *reports) add(delivered, sent int64) {
	r.last.Store(&compress.Report{Delivered: delivered, Sent: sent, At: time.Now()})
}

// latest is the last report, or none.
func (r *reports) latest() compress.Report {
	var rep compress.Report
	if p := r.last.Load(); p != nil {
		rep = *p
	}
	rep.SameHost = r.sameHost.Load()
	return rep
}

// prepare builds the header and the writer of the archive; delivered tells
// the writer how much the receiver has written out.
func prepare(ctx context.Context, paths []string, stdin io.Reader, opt SendOptions, delivered func() compress.Report) (h pipe.Header, write func(ctx context.Context, w io.Writer, level int, holdings map[string]archive.Held) error, release func() error, err error) {
	kind := KindTarZstd
	if opt.Level == 0 {
		kind = KindTar
	}
	wopt := archive.WriteOptions{Level: opt.Level, Debugf: opt.Debugf, Delivered: delivered, Selection: opt.Selection}
	total := int64(-1)
	if opt.Progress != nil {
		var done int64
		wopt.Progress = func(n int64) {
			done += n
			opt.Progress(done, total)
		}
	}
	if len(paths) == 1 && paths[0] == "-" {
		name := opt.Name
		if name == "" {
			name = "stdin"
		}
		if name == "." || name == ".." || strings.ContainsAny(name, "/\\\x00") || strings.IndexFunc(name, unicode.IsControl) >= 0 {
			return pipe.Header{}, nil, nil, fmt.Errorf("--name %q: want a plain file name", name)
		}
		// Read stdin to its end now, before any code is handed out: tar
		// needs the size first, a full disk shows before a peer is
		// involved, and the offer carries the size.
		sp, err := archive.Spool(ctx, name, stdin)
		if err != nil {
			return pipe.Header{}, nil, nil, err
		}
		h = pipe.Header{Kind: kind, Names: []string{name}, Size: sp.Size(), Count: 1}
		total = sp.Size()
		return h, func(ctx context.Context, w io.Writer, level int, holdings map[string]archive.Held) error {
			wopt.Level, wopt.Holdings = level, holdings
			return sp.Write(ctx, w, wopt)
		}, sp.Close, nil
	}
	for _, p := range paths {
		if p == "-" {
			return pipe.Header{}, nil, nil, fmt.Errorf("- (stdin) cannot be sent together with other paths")
		}
	}
	sum, err := archive.Scan(paths, opt.Selection)
	if err != nil {
		return pipe.Header{}, nil, nil, err
	}
	if len(sum.Names) > maxNames {
		return pipe.Header{}, nil, nil, fmt.Errorf("%d paths to send (at most %d): put them in a folder", len(sum.Names), maxNames)
	}
	h = pipe.Header{Kind: kind, Names: sum.Names, Size: sum.Size, Count: sum.Count, Skipped: skippedCounts(sum.Skipped)}
	total = sum.Size
	return h, func(ctx context.Context, w io.Writer, level int, holdings map[string]archive.Held) error {
		wopt.Level, wopt.Holdings = level, holdings
		return archive.Write(ctx, w, paths, wopt)
	}, func() error { return nil }, nil
}

// Offer is what a receiver is asked to accept.
type Offer struct {
	pipe.Header
}

// Described reports whether the sender said what it sends (pcp send does;
// pcp-pipe send does not).
func (o Offer) Described() bool { return o.Kind == KindTarZstd || o.Kind == KindTar }

// String describes the offer on one line: names (shortened if many), total
// size and number of files.
func (o Offer) String() string {
	if !o.Described() {
		return "a stream with no summary (sent with pcp-pipe send)"
	}
	names := o.Names
	more := ""
	if len(names) > 3 {
		more = fmt.Sprintf(" and %d more", len(names)-3)
		names = names[:3]
	}
	items := "items" // files, folders and links
	if o.Count == 1 {
		items = "item"
	}
	left := ""
	if d := DescribeSkipped(o.Skipped); d != "" {
		left = " (left out: " + d + ")"
	}
	return fmt.Sprintf("%s%s: %s in %d %s%s", strings.Join(quoteAll(names), ", "), more, size(o.Size), o.Count, items, left)
}

// skipReasons are the reasons of pipe.Header.Skipped, in the order they
// are told, with the words for one entry and for several.
var skipReasons = []struct {
	key, one, many string
	count          func(archive.Skipped) int64
}{
	{"outside", "symlink that points outside the folder", "symlinks that point outside the folder", func(s archive.Skipped) int64 { return s.Outside }},
	{"broken", "symlink that leads nowhere or in a circle", "symlinks that lead nowhere or in a circle", func(s archive.Skipped) int64 { return s.Broken }},
	{"special", "FIFO, socket or device", "FIFOs, sockets or devices", func(s archive.Skipped) int64 { return s.Special }},
	{"excluded", "entry excluded by a pattern", "entries excluded by a pattern", func(s archive.Skipped) int64 { return s.Excluded }},
}

// skippedCounts are the counts of s by reason, nil when nothing was left out.
func skippedCounts(s archive.Skipped) map[string]int64 {
	if s.Total() == 0 {
		return nil
	}
	m := map[string]int64{}
	for _, r := range skipReasons {
		if n := r.count(s); n > 0 {
			m[r.key] = n
		}
	}
	return m
}

// DescribeSkipped says what counts (from an offer; reasons it does not
// know are not told, as they come from the peer) hold: "2 symlinks that
// point outside the folder and 1 FIFO, socket or device"; "" for none.
func DescribeSkipped(counts map[string]int64) string {
	var parts []string
	for _, r := range skipReasons {
		n := counts[r.key]
		switch {
		case n == 1:
			parts = append(parts, "1 "+r.one)
		case n > 1:
			parts = append(parts, fmt.Sprintf("%d %s", n, r.many))
		}
	}
	switch len(parts) {
	case 0:
		return ""
	case 1:
		return parts[0]
	}
	return strings.Join(parts[:len(parts)-1], ", ") + " and " + parts[len(parts)-1]
}

func quoteAll(names []string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = fmt.Sprintf("%q", n)
	}
	return out
}

func size(n int64) string {
	if n < 0 {
		return "an unknown size"
	}
	return status.Size(n)
}

// ReceiveOptions tune Receive.
type ReceiveOptions struct {
	// Dir is where the files go.
	Dir string
	// Overwrite allows replacing existing files of the same names.
	Overwrite bool
	// Raw, if set, receives the stream as it is (tar+zstd) instead of extracting it.
	Raw io.Writer
	// Confirm decides on the offer before any data; an error refuses it.
	// Nil accepts.
	Confirm func(Offer) error
	// ReplaceExisting, when not nil and Overwrite is not set, is asked
	// about the offered names that exist in Dir (each quoted, as %q),
	// before the offer is answered: true replaces them as Overwrite would,
	// false (or an error) refuses the offer. Nil refuses such an offer at
	// once.
	ReplaceExisting func(names []string) (bool, error)
	// Timeout bounds the search for the sender (0: no limit).
	Timeout time.Duration
	// Progress is called with the bytes extracted so far and the total
	// offered (-1 when unknown); with Raw, the bytes received.
	Progress func(done, total int64)
	// NoSync acknowledges the data without writing it to stable storage
	// first: faster, but a crash right after may lose what the sender was
	// told is stored. Without it the files (or Raw, when it is a regular
	// file) are synced before the acknowledgement.
	NoSync bool
	// Debugf, if set, is told how long the sync took.
	Debugf func(format string, args ...any)
	// NoResume starts afresh: without it, what an unfinished transfer of
	// the same names into Dir left behind is told to a sender that takes
	// it, and only the rest is sent.
	NoResume bool
	// Resuming, if set, is told before any data how much of the offer's
	// total is here already from an unfinished transfer, when the sender
	// resumes.
	Resuming func(have, total int64)
	// Kept, if set, is told where the files of a transfer cut short were
	// kept for a later one to resume, and their size.
	Kept func(dir string, size int64)
}

// Receive finds c's sender, asks opt.Confirm, and extracts the stream safely
// into opt.Dir: under temporary names, moved into place only after the
// end frame's digest checked out. A failed, truncated or refused transfer
// leaves nothing under a final name.
func Receive(ctx context.Context, s *session.Session, c code.Code, opt ReceiveOptions) (_ Result, err error) {
	if opt.Raw != nil {
		popt := pipe.Options{Accept: confirmer(opt)}
		if !opt.NoSync {
			popt.Commit = pipe.SyncCommit(opt.Raw, opt.Debugf)
		}
		if opt.Progress != nil {
			popt.Progress = func(n int64) { opt.Progress(n, -1) }
		}
		res, err := s.Receive(ctx, c, opt.Raw, opt.Timeout, popt)
		return Result{Result: res, Size: -1}, err
	}
	r := &receiver{opt: opt, ctx: ctx, extracted: make(chan struct{})}
	r.pr, r.pw = io.Pipe()
	defer func() { r.abort(err) }()
	res, err := s.Receive(ctx, c, r.pw, opt.Timeout, pipe.Options{Accept: r.accept, Holding: r.holding, Commit: r.commit, Note: NoteTar})
	if err != nil {
		r.pw.CloseWithError(err)
		if xerr := r.extractError(); xerr != nil {
			err = xerr // the refused entry explains the failed write best
		}
	}
	size := int64(-1)
	if r.committed { // else the extractor may still be running
		size = r.size
	}
	return Result{Result: res, Size: size}, err
}

// confirmer asks opt.Confirm about a header.
func confirmer(opt ReceiveOptions) func(pipe.Header) error {
	return func(h pipe.Header) error {
		if opt.Confirm == nil {
			return nil
		}
		return opt.Confirm(Offer{h})
	}
}

// receiver extracts one accepted stream: the extractor starts once the
// offer is accepted, reading what the pipe writes into pw.
type receiver struct {
	opt       ReceiveOptions
	ctx       context.Context
	pr        *io.PipeReader
	pw        *io.PipeWriter
	x         *archive.Extractor
	extracted chan struct{} // closed when Extract has returned, with xerr
	xerr      error
	committed bool
	size      int64          // of the extracted files, once committed
	held      []archive.Held // what an unfinished transfer of the same names left
}

func (r *receiver) accept(h pipe.Header) error {
	o := Offer{h}
	xopt := archive.ExtractOptions{Overwrite: r.opt.Overwrite}
	if !r.opt.NoSync {
		xopt.Sync = func(path string, tree bool) error {
			start := time.Now()
			err := archive.Durable(path, tree)
			if err == nil && r.opt.Debugf != nil {
				what := "files"
				if !tree {
					what = "new names"
				}
				r.opt.Debugf("%s written to the disk in %v", what, time.Since(start).Round(time.Millisecond))
			}
			return err
		}
	}
	if o.Described() {
		if len(h.Names) == 0 {
			return errors.New("the offer names nothing")
		}
		xopt.Names = h.Names // the archive may hold nothing else
	}
	if o.Described() && h.Size >= 0 {
		xopt.MaxSize, xopt.MaxCount = offerLimits(h.Size, h.Count)
	}
	if r.opt.Progress != nil {
		var done int64
		total := int64(-1)
		if o.Described() {
			total = h.Size
		}
		xopt.Progress = func(n int64) {
			done += n
			r.opt.Progress(done, total)
		}
	}
	x, err := archive.NewExtractor(r.opt.Dir, xopt)
	if err != nil {
		return err
	}
	if o.Described() {
		err := x.CheckNames(h.Names)
		var exists *archive.ExistsError
		if errors.As(err, &exists) && r.opt.ReplaceExisting != nil {
			replace, aerr := r.opt.ReplaceExisting(quoteAll(x.Existing(h.Names)))
			switch {
			case aerr != nil:
				return aerr
			case !replace:
				return err
			}
			xopt.Overwrite = true
			if x, err = archive.NewExtractor(r.opt.Dir, xopt); err == nil {
				err = x.CheckNames(h.Names)
			}
		}
		if err != nil {
			return err
		}
		if err := checkSpace(r.opt.Dir, h.Size); err != nil {
			return err
		}
	}
	if err := confirmer(r.opt)(h); err != nil {
		return err
	}
	if o.Described() {
		held, err := x.Stage(r.ctx, !r.opt.NoResume)
		if err != nil {
			return err
		}
		r.held = held
	}
	r.x = x
	go func() {
		var sum archive.Summary
		sum, r.xerr = x.Extract(r.ctx, r.pr)
		r.size = sum.Size
		// Whatever stopped the extractor also stops the pipe writing into it.
		r.pr.CloseWithError(errOr(r.xerr, errors.New("the archive ended before the stream")))
		close(r.extracted)
	}()
	return nil
}

// offerLimits bounds what may come by what was accepted, with slack for
// files that grew while being sent: 10 % and 1 MiB more bytes, 10 % and 100
// more entries. The sums saturate: an offer near the largest int64 must not
// wrap them round to a negative limit, which would mean none.
func offerLimits(size, count int64) (maxSize, maxCount int64) {
	return satAdd(size, size/10, 1<<20), satAdd(count, count/10, 100)
}

// satAdd adds non-negative numbers, at most math.MaxInt64.
func satAdd(ns ...int64) int64 {
	var sum int64
	for _, n := range ns {
		if n > math.MaxInt64-sum {
			return math.MaxInt64
		}
		sum += n
	}
	return sum
}

// commit runs once the stream's digest checked out: the archive must have
// ended cleanly, then its entries move into place.
func (r *receiver) commit() error {
	r.pw.Close()
	<-r.extracted
	if r.xerr != nil {
		return r.xerr
	}
	if err := r.x.Commit(); err != nil {
		return err
	}
	r.committed = true
	return nil
}

// extractError waits briefly for the extractor's own error, if it failed.
func (r *receiver) extractError() error {
	if r.x == nil || r.committed {
		return nil
	}
	select {
	case <-r.extracted:
		var unsafe *archive.UnsafeEntryError
		if errors.As(r.xerr, &unsafe) || errors.Is(r.xerr, fs.ErrExist) {
			return r.xerr
		}
	case <-time.After(time.Second):
	}
	return nil
}

// holding is what the receiver holds of the offer, for the sender.
func (r *receiver) holding(h pipe.Header) ([]byte, error) {
	if len(r.held) == 0 {
		return nil, nil
	}
	var have int64
	for _, f := range r.held {
		have += f.Size
	}
	if r.opt.Resuming != nil {
		r.opt.Resuming(min(have, max(h.Size, 0)), h.Size)
	}
	return marshalHoldings(r.held), nil
}

// abort stops the extractor, if it runs, after the transfer failed with
// err: what it wrote is kept for a later transfer to resume when the
// transfer was cut short (interrupted, the sender gone), else removed.
func (r *receiver) abort(err error) {
	if r.x == nil || r.committed {
		return
	}
	r.pr.CloseWithError(errors.New("transfer failed"))
	<-r.extracted // the extractor is not safe for concurrent use
	if !cutShort(err) {
		r.x.Abort()
		return
	}
	if dir, size := r.x.Suspend(); dir != "" && r.opt.Kept != nil {
		r.opt.Kept(dir, size)
	}
}

// cutShort reports whether err stopped a transfer before its end without
// anything wrong in what came: interrupted, the sender gone or stopped.
func cutShort(err error) bool {
	var lost *pipe.LostError
	var peer *pipe.PeerError
	var stalled *pipe.StalledError
	var integrity *pipe.IntegrityError
	switch {
	case errors.Is(err, context.Canceled), errors.As(err, &lost), errors.As(err, &peer), errors.As(err, &stalled):
		return true
	case errors.As(err, &integrity):
		return integrity.Err != nil // the stream ended early, rather than a count or digest that differ
	}
	return false
}

func errOr(err, otherwise error) error {
	if err != nil {
		return err
	}
	return otherwise
}
