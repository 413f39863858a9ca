// Package archive is the pcp wire format for files and folders: a plain tar
// stream, normally inside a plain zstd stream, and the safe extraction of such
// streams.
//
// Nothing in the format is private: `tar -c DIR | zstd` produces a stream
// that Extract accepts, and Write produces a stream that `zstd -d | tar -x`
// accepts.
//
// # Sending
//
// Scan walks the paths and summarises them (names, total size, entry count)
// so that the receiver can be asked before any data flows. Write streams the
// paths: every path becomes a top-level entry named by its base name, as with
// `tar -C parent -c base`. Regular files, directories (also empty ones) and
// symbolic links (stored as links, never followed) are supported, with their
// permission bits and modification times. Hard links are stored as separate
// regular files (the data is sent once per name). Devices, FIFOs and sockets
// make Scan and Write fail with an error naming the path, so that the sender
// learns about them before anything is sent. Owners are not sent: every entry
// has uid and gid 0 and no user or group name.
//
// WriteStream sends a single stream of unknown length (stdin) as one regular
// file. Tar needs the size of a file before its data, so WriteStream spools
// the stream into an unlinked-on-return temporary file in os.TempDir() first.
//
// # Receiving
//
// An Extractor writes everything into a hidden staging directory inside the
// destination (DIR/.pcp-partial-XXXXXX) and moves the top-level entries into
// place only in Commit, so that a failed, truncated, rejected or hostile
// transfer never leaves a file under its final name. The sender is treated as
// hostile: see Extractor for the rules.
package archive

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Summary is what a sender offers, shown to the receiver before any data.
type Summary struct {
	Names   []string // the top-level names, in the order given
	Size    int64    // total bytes of regular files
	Count   int64    // number of entries (files, dirs, symlinks)
	Skipped Skipped  // what was left out inside the folders given
}

const (
	// maxPathLen caps the length of an entry name or a symlink target.
	maxPathLen = 4096
	// maxDepth caps the number of components of an entry name.
	maxDepth = 256
	// stagingPrefix starts the name of every staging directory; no archive
	// entry may start with it.
	stagingPrefix = ".pcp-partial-"
	// copyBufSize is the size of the buffer used to copy file data.
	copyBufSize = 256 << 10
)

// Scan walks paths (files, directories, symlinks — a symlink given as a path
// or found inside a tree is not followed, unless sel.Dereference) and
// returns the summary that Write would produce for them at this moment.
// Inside folders, what receivers would refuse is left out and counted in
// Summary.Skipped (symlinks that point outside, FIFOs, sockets, devices),
// as is what sel excludes. Errors name the path: a path given that does
// not exist or cannot be sent, a file or directory that this process may
// not read (by its mode bits), two paths with the same base name, a bad
// pattern.
func Scan(paths []string, sel Selection) (Summary, error) {
	var sum Summary
	if err := sel.check(); err != nil {
		return sum, err
	}
	tops, err := topLevel(paths)
	if err != nil {
		return sum, err
	}
	for _, t := range tops {
		sum.Names = append(sum.Names, t.name)
	}
	w := &walker{ctx: context.Background(), sel: sel, fileInfo: true, perms: currentPermissions(), fn: func(e walkEntry) error {
		sum.Count++
		if e.info.Mode().IsRegular() {
			sum.Size += e.info.Size()
		}
		return nil
	}}
	err = w.walk(tops)
	sum.Skipped = w.skipped
	return sum, err
}

// topEntry is one path given to Scan or Write with the name it gets in the
// archive.
type topEntry struct {
	path string // as given, cleaned
	name string // base name, the top-level name in the archive
}

// topLevel computes the top-level archive names for paths and checks that
// they are usable and distinct.
func topLevel(paths []string) ([]topEntry, error) {
	if len(paths) == 0 {
		return nil, errors.New("no paths to send")
	}
	seen := make(map[string]string, len(paths))
	tops := make([]topEntry, 0, len(paths))
	for _, p := range paths {
		if p == "" {
			return nil, errors.New("empty path")
		}
		clean := filepath.Clean(p)
		base := filepath.Base(clean)
		if base == "." || base == ".." {
			abs, err := filepath.Abs(clean)
			if err != nil {
				return nil, fmt.Errorf("resolving %s: %w", p, err)
			}
			base = filepath.Base(abs)
		}
		if base == "" || base == "." || base == ".." || strings.ContainsAny(base, `/\`) || filepath.VolumeName(base) != "" {
			return nil, fmt.Errorf("cannot send %s: it has no base name to store it under", p)
		}
		if _, reason := splitName(base); reason != "" {
			return nil, fmt.Errorf("cannot send %s: %s", p, reason)
		}
		if other, dup := seen[base]; dup {
			return nil, fmt.Errorf("cannot send both %s and %s: both would be named %q", other, p, base)
		}
		seen[base] = p
		tops = append(tops, topEntry{path: clean, name: base})
	}
	return tops, nil
}

// typeName describes a file mode type for error messages.
func typeName(m fs.FileMode) string {
	switch {
	case m&fs.ModeCharDevice != 0:
		return "character device"
	case m&fs.ModeDevice != 0:
		return "block device"
	case m&fs.ModeNamedPipe != 0:
		return "FIFO"
	case m&fs.ModeSocket != 0:
		return "socket"
	case m&fs.ModeIrregular != 0:
		return "file of unknown type"
	default:
		return "file of type " + m.Type().String()
	}
}

// splitName validates an entry name as found in an archive (or a top-level
// name offered by a sender) and returns its components, without empty and "."
// components. An empty result names the extraction root itself. A non-empty
// reason says why the name is refused.
func splitName(name string) (parts []string, reason string) {
	switch {
	case name == "":
		return nil, "empty name"
	case len(name) > maxPathLen:
		return nil, fmt.Sprintf("name longer than %d bytes", maxPathLen)
	case hasControl(name):
		return nil, "control or bidirectional character in name"
	case strings.HasPrefix(name, "/"):
		return nil, "absolute path"
	}
	if runtime.GOOS == "windows" && (strings.ContainsAny(name, `\:`) || filepath.VolumeName(name) != "") {
		return nil, "backslash, colon or volume name in name"
	}
	for _, c := range strings.Split(name, "/") {
		switch c {
		case "", ".":
			continue
		case "..":
			return nil, "parent directory (..) in name"
		}
		parts = append(parts, c)
	}
	if len(parts) > maxDepth {
		return nil, fmt.Sprintf("more than %d levels deep", maxDepth)
	}
	if len(parts) == 0 {
		return nil, ""
	}
	if strings.HasPrefix(parts[0], stagingPrefix) {
		return nil, "reserved name (" + stagingPrefix + "...)"
	}
	if !filepath.IsLocal(filepath.Join(parts...)) {
		return nil, "not a local path on this system"
	}
	return parts, ""
}

// hasControl reports whether s contains an ASCII control character, DEL, a
// Unicode control character (C1), or a bidirectional control (U+202E and
// its kind), with which a name shows in another order than it has: an
// "invoice\u202etxt.exe" that ls shows as "invoiceexe.txt". Other format
// characters, such as the zero-width joiner of emoji sequences, pass.
func hasControl(s string) bool {
	for i := 0; i < len(s); {
		b := s[i]
		if b < 0x20 || b == 0x7f {
			return true
		}
		if b < utf8.RuneSelf {
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r != utf8.RuneError && (unicode.IsControl(r) || unicode.Is(unicode.Bidi_Control, r)) {
			return true
		}
		i += size
	}
	return false
}

// sanitize makes an archive name safe to print: control characters and
// invalid UTF-8 are escaped as in a Go string literal (without the quotes),
// and very long names are shortened.
func sanitize(s string) string {
	const max = 256
	cut := false
	if len(s) > max {
		s = s[:max]
		cut = true
	}
	q := strconv.Quote(s)
	q = q[1 : len(q)-1]
	if cut {
		q += "..."
	}
	return q
}

// ctxReader makes reads fail once ctx is done. It also hides any WriteTo
// method of the underlying reader, so that io.Copy uses the given buffer.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// firstPiece is the size of copyExact's first piece; each next one is
// twice as large, up to its buffer.
const firstPiece = 4 << 10

// copyExact copies exactly n bytes from src to dst through buf, checking ctx
// between chunks and reporting each chunk to progress (when not nil). It
// returns io.ErrUnexpectedEOF if src ends early. Errors from dst are wrapped
// in a writeError so that callers can tell the two sides apart.
func copyExact(ctx context.Context, dst io.Writer, src io.Reader, n int64, buf []byte, progress func(int64)) error {
	// Whole pieces, so that the destination is written in large, aligned
	// writes whatever sizes the source yields (a zstd decoder yields at
	// most a block at a time); the first pieces small, so that the first
	// bytes of a file do not wait for the first 256 KiB.
	size := min(firstPiece, len(buf))
	for n > 0 {
		if err := ctx.Err(); err != nil {
			return err
		}
		chunk := buf[:size]
		size = min(2*size, len(buf))
		if int64(len(chunk)) > n {
			chunk = chunk[:n]
		}
		m, err := io.ReadFull(src, chunk)
		if err == io.ErrUnexpectedEOF {
			err = io.EOF
		}
		if m > 0 {
			if _, werr := dst.Write(chunk[:m]); werr != nil {
				return &writeError{werr}
			}
			n -= int64(m)
			if progress != nil {
				progress(int64(m))
			}
		}
		if err == io.EOF {
			if n > 0 {
				return io.ErrUnexpectedEOF
			}
			return nil
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// writeError marks an error of the destination in copyExact.
type writeError struct{ err error }

func (e *writeError) Error() string { return "writing: " + e.err.Error() }
func (e *writeError) Unwrap() error { return e.err }
