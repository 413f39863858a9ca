package archive

import (
	"archive/tar"
	"bufio"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strconv"
	"time"

	"github.com/pcp-dev/pcp/lib/compress"
)

// AutoLevel is the WriteOptions.Level that adapts the zstd level to the
// pace of the output, chunk by chunk (see lib/compress).
const AutoLevel = compress.Auto

// WriteOptions tune Write and WriteStream.
type WriteOptions struct {
	// Selection chooses what Write sends of the paths inside folders; Scan
	// with the same Selection tells what that is.
	Selection Selection

	// Level is AutoLevel, or the zstd level 1..4 of every chunk, as
	// klauspost's zstd.EncoderLevel: 1 fastest (roughly zstd -1), 2 default
	// (zstd -3), 3 better (zstd -7), 4 best. 0 means no compression: a plain
	// tar stream.
	Level int

	// Debugf, if set, is told when AutoLevel changes the level.
	Debugf func(format string, args ...any)
	// Delivered, if set, returns the receiver's latest report of how much
	// of the stream it has written out, for AutoLevel to measure the link by.
	Delivered func() compress.Report

	// Progress, when not nil, is called after each chunk of file data has
	// been written, with the number of uncompressed bytes in the chunk; the
	// sum over a transfer is Summary.Size. It runs on the writing goroutine
	// and must be quick.
	Progress func(n int64)

	// Holdings, by path in the archive, are the files of an unfinished
	// extraction that the receiver holds (see Extractor.Stage). A file
	// whose first bytes are what the receiver holds is written as a
	// resumed entry: PAX records that say how many bytes the receiver
	// keeps and their SHA-256, then only the rest of the data. A stream
	// with resumed entries is for pcp's extractor only.
	Holdings map[string]Held
}

// Write writes paths as a tar stream (inside zstd unless opt.Level is 0) to
// w. Each path becomes a top-level entry named by its base name (like
// `tar -C parent -c base`); directories are written recursively, parents
// before their contents, in lexical order. Regular files, directories (also
// empty ones) and symlinks (stored as symlinks, target as is, never
// followed) are written with their permission bits (0o777) and modification
// times (to the second). Hard links are stored as separate regular files.
// A device, FIFO or socket fails Write with an error naming the path. Long
// names are written as PAX records.
//
// A file that grows while it is sent is cut at the size it had when it was
// opened; one that shrinks fails Write. ctx is checked between entries and
// between chunks of data. On error the stream is left unterminated (no tar
// end marker, no final zstd block), so that no reader takes it for a
// complete archive.
func Write(ctx context.Context, w io.Writer, paths []string, opt WriteOptions) error {
	if err := opt.Selection.check(); err != nil {
		return err
	}
	tops, err := topLevel(paths)
	if err != nil {
		return err
	}
	aw, err := newArchiveWriter(w, opt)
	if err != nil {
		return err
	}
	walk := &walker{ctx: ctx, sel: opt.Selection, fn: aw.writeEntry(ctx)}
	return aw.end(walk.walk(tops))
}

// WriteStream writes the single stream r as one regular file named name,
// mode 0644 and modification time now, in the same format as Write. Tar
// needs a file's size before its data, so WriteStream first spools r (see
// Spool) and then sends that: memory stays flat, disk use is the size of
// the stream, and nothing is written to w before r has ended.
func WriteStream(ctx context.Context, w io.Writer, name string, r io.Reader, opt WriteOptions) error {
	sp, err := Spool(ctx, name, r)
	if err != nil {
		return err
	}
	defer sp.Close()
	return sp.Write(ctx, w, opt)
}

// Spooled is a stream read to its end into a temporary file, to be sent as
// one regular file: its size is known before its data.
type Spooled struct {
	name    string
	f       *os.File
	size    int64
	removed bool // unlinked already, while open
}

// Spool reads r to its end into a temporary file in os.TempDir(), unlinked
// at once where the system allows it, so that no copy is left behind
// whatever ends the process. name must be a single file name (no slash, no
// control character). Close removes the file.
func Spool(ctx context.Context, name string, r io.Reader) (*Spooled, error) {
	parts, reason := splitName(name)
	if reason == "" && (len(parts) != 1 || parts[0] != name) {
		reason = "must be a single file name"
	}
	if reason != "" {
		return nil, fmt.Errorf("invalid stream name %q: %s", sanitize(name), reason)
	}
	f, err := os.CreateTemp("", "pcp-stream-*")
	if err != nil {
		return nil, fmt.Errorf("create a file to hold stdin: %w", err)
	}
	sp := &Spooled{name: name, f: f, removed: os.Remove(f.Name()) == nil}
	size, err := io.CopyBuffer(f, ctxReader{ctx, r}, make([]byte, copyBufSize))
	if err != nil {
		sp.Close()
		return nil, fmt.Errorf("hold stdin in %s: %w", os.TempDir(), err)
	}
	sp.size = size
	return sp, nil
}

// Size is the number of bytes spooled.
func (sp *Spooled) Size() int64 { return sp.size }

// Write writes the spooled stream to w as one regular file, mode 0644 and
// modification time now, in the same format as Write; it may be called
// again (each call starts from the beginning).
func (sp *Spooled) Write(ctx context.Context, w io.Writer, opt WriteOptions) error {
	aw, err := newArchiveWriter(w, opt)
	if err != nil {
		return err
	}
	hdr := &tar.Header{
		Typeflag: tar.TypeReg,
		Name:     sp.name,
		Mode:     0o644,
		Size:     sp.size,
		ModTime:  time.Now().Truncate(time.Second),
	}
	return aw.end(aw.writeFile(ctx, hdr, io.NewSectionReader(sp.f, 0, sp.size), sp.name))
}

// Close removes the spool file.
func (sp *Spooled) Close() error {
	err := sp.f.Close()
	if !sp.removed {
		os.Remove(sp.f.Name())
	}
	return err
}

// checkLevel validates WriteOptions.Level.
func checkLevel(level int) error {
	if level < AutoLevel || level > compress.Best {
		return fmt.Errorf("invalid compression level %d: want 0 (none) to 4, or %d (auto)", level, AutoLevel)
	}
	return nil
}

// archiveWriter is a tar writer, optionally on top of a zstd encoder.
type archiveWriter struct {
	tw       *tar.Writer
	zw       *compress.Writer // nil without compression
	bw       *bufio.Writer    // nil with compression
	buf      []byte
	progress func(int64)
	holdings map[string]Held // what the receiver holds, by path
}

func newArchiveWriter(w io.Writer, opt WriteOptions) (*archiveWriter, error) {
	if err := checkLevel(opt.Level); err != nil {
		return nil, err
	}
	aw := &archiveWriter{buf: make([]byte, copyBufSize), progress: opt.Progress, holdings: opt.Holdings}
	if opt.Level == 0 {
		// Headers are 512-byte writes: gather them.
		aw.bw = bufio.NewWriterSize(w, 64<<10)
		aw.tw = tar.NewWriter(aw.bw)
		return aw, nil
	}
	zw, err := compress.NewWriter(w, compress.Options{Level: opt.Level, Debugf: opt.Debugf, Delivered: opt.Delivered})
	if err != nil {
		return nil, err
	}
	aw.zw = zw
	aw.tw = tar.NewWriter(zw)
	return aw, nil
}

// finish writes the tar end marker and the end of the zstd frame, and
// flushes everything to the underlying writer.
func (aw *archiveWriter) finish() error {
	if err := aw.tw.Close(); err != nil {
		return fmt.Errorf("finishing tar stream: %w", err)
	}
	if aw.zw != nil {
		if err := aw.zw.Close(); err != nil {
			return fmt.Errorf("writing archive: %w", err)
		}
	}
	if aw.bw != nil {
		if err := aw.bw.Flush(); err != nil {
			return fmt.Errorf("writing archive: %w", err)
		}
	}
	return nil
}

// end finishes the archive after its entries were written without error
// (err == nil), else abandons it, unterminated, so that no reader takes it
// for whole.
func (aw *archiveWriter) end(err error) error {
	if err == nil {
		err = aw.finish()
	}
	if err != nil {
		aw.abandon()
	}
	return err
}

// abandon stops the compressor without terminating the stream: what was
// written ends after a whole frame, but the tar end marker is missing.
func (aw *archiveWriter) abandon() {
	if aw.zw != nil {
		aw.zw.Abort()
	}
}

// writeEntry returns the walk callback that writes one entry.
func (aw *archiveWriter) writeEntry(ctx context.Context) func(walkEntry) error {
	return func(e walkEntry) error {
		if e.isRegular() {
			return aw.sendFile(ctx, e)
		}
		mode := e.info.Mode()
		hdr := &tar.Header{
			Name:    e.name,
			Mode:    int64(mode.Perm()),
			ModTime: e.info.ModTime().Truncate(time.Second),
		}
		switch {
		case mode.IsDir():
			hdr.Typeflag = tar.TypeDir
			hdr.Name += "/"
		case mode&fs.ModeSymlink != 0:
			target, err := os.Readlink(e.path)
			if err != nil {
				return fmt.Errorf("cannot send %s: %w", e.path, err)
			}
			hdr.Typeflag = tar.TypeSymlink
			hdr.Linkname = target
			hdr.Mode = 0o777
		}
		if err := aw.tw.WriteHeader(hdr); err != nil {
			return fmt.Errorf("writing header of %s: %w", e.path, err)
		}
		return nil
	}
}

// sendFile writes the regular file of e, with the size, mode and time it has
// once opened.
func (aw *archiveWriter) sendFile(ctx context.Context, e walkEntry) error {
	f, st, err := openToSend(e.dir, e.base, e.follow)
	if err != nil {
		return fmt.Errorf("cannot send %s: %w", e.path, err)
	}
	defer f.Close()
	if !st.mode.IsRegular() {
		return fmt.Errorf("cannot send %s: it changed into a %s while being sent", e.path, typeName(st.mode))
	}
	hdr := &tar.Header{
		Typeflag: tar.TypeReg,
		Name:     e.name,
		Mode:     int64(st.mode.Perm()),
		Size:     st.size,
		ModTime:  st.mtime.Truncate(time.Second),
	}
	return aw.writeFile(ctx, hdr, f, e.path)
}

// fileStat is what the tar header of a file needs of its status.
type fileStat struct {
	mode  fs.FileMode
	size  int64
	mtime time.Time
}

// writeFile writes hdr and then exactly hdr.Size bytes from r. path names
// the source in errors.
func (aw *archiveWriter) writeFile(ctx context.Context, hdr *tar.Header, r io.Reader, path string) error {
	if h, ok := aw.keepable(ctx, hdr, r); ok {
		hdr.PAXRecords = map[string]string{paxKeep: strconv.FormatInt(h.Size, 10), paxKeepSHA256: hex.EncodeToString(h.SHA256)}
		hdr.Size -= h.Size
		if aw.progress != nil {
			aw.progress(h.Size)
		}
	}
	if err := aw.tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("writing header of %s: %w", path, err)
	}
	err := copyExact(ctx, aw.tw, r, hdr.Size, aw.buf, aw.progress)
	var we *writeError
	switch {
	case err == nil:
		return nil
	case errors.Is(err, io.ErrUnexpectedEOF) && !errors.As(err, &we):
		return fmt.Errorf("sending %s: the file shrank while being sent (expected %d bytes): %w", path, hdr.Size, err)
	case errors.As(err, &we):
		return fmt.Errorf("sending %s: %w", path, err)
	default:
		return fmt.Errorf("sending %s: reading: %w", path, err)
	}
}
