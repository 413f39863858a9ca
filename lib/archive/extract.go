package archive

import (
	"archive/tar"
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pcp-dev/pcp/lib/compress"
)

const (
	// maxWindow is the largest zstd window Extract accepts: the default
	// limit of the reference zstd decoder (--memory=128MB), so that every
	// stream `zstd -d` takes without options is taken here, and a hostile
	// stream cannot make the decoder allocate more.
	maxWindow = 128 << 20
	// maxTrailing is the most zero padding accepted after the tar end marker
	// (tar pads its output to a whole record, 10 KiB by default).
	maxTrailing = 16 << 20
)

// zstdMagic starts every zstd frame.
const zstdMagic = "\x28\xb5\x2f\xfd"

// ExtractOptions tune extraction.
type ExtractOptions struct {
	// Overwrite replaces existing files and directories that have the same
	// top-level name as an extracted entry; without it an existing name
	// makes Commit fail before anything is moved.
	Overwrite bool

	// MaxSize, when positive, refuses an archive whose regular files hold
	// more bytes in total: the receiver passes the size it accepted.
	MaxSize int64
	// MaxCount, when positive, refuses an archive with more entries.
	MaxCount int64
	// Names, when not nil, are the only top-level names the archive may
	// have: the receiver passes the names it was offered and accepted.
	Names []string

	// Progress, when not nil, is called after each chunk of file data has
	// been written to disk, with the number of bytes in the chunk. It runs
	// on the extracting goroutine and must be quick.
	Progress func(n int64)

	// Sync, when not nil (Durable, or a hook of a test), makes Commit
	// durable: it is called with the staged entries' folder and tree true
	// before they move (all of their data and entries), then with the
	// destination directory and tree false after they moved (the new
	// names); an error fails Commit. With it, Extract also starts writing
	// each file to the disk while the transfer goes on.
	Sync func(path string, tree bool) error
}

// UnsafeEntryError reports an archive entry that was refused (hostile or
// unsupported); Name is the entry name as in the archive, sanitized for
// printing (control characters escaped, long names shortened); Reason says
// why.
type UnsafeEntryError struct {
	Name, Reason string
}

// Error implements error.
func (e *UnsafeEntryError) Error() string {
	return fmt.Sprintf("refused archive entry \"%s\": %s", e.Name, e.Reason)
}

func unsafeEntry(name, reason string) error {
	return &UnsafeEntryError{Name: sanitize(name), Reason: reason}
}

// ExistsError is returned when a top-level name exists in the destination
// and overwriting was not asked for. It matches fs.ErrExist.
type ExistsError struct{ Name string }

func (e *ExistsError) Error() string { return sanitize(e.Name) + " exists (use --overwrite)" }
func (e *ExistsError) Unwrap() error { return fs.ErrExist }

// PeerMessage is what the sender is told: the receiver is the one to act.
func (e *ExistsError) PeerMessage() string {
	return "the receiver already has " + sanitize(e.Name) + " (it can receive again with --overwrite)"
}

type extractorState int

const (
	stateNew       extractorState = iota // Extract not called yet
	stateStaged                          // Extract called, or failed with a staging directory kept for Abort or Suspend
	stateExtracted                       // Extract succeeded, waiting for Commit or Abort
	stateDone                            // committed, aborted, or failed
)

// Extractor extracts one stream into dir, safely, in two phases: Extract
// writes everything under a hidden staging directory inside dir
// (dir/.pcp-partial-XXXXXX), Commit moves the top-level entries into place;
// Abort (or a failed Extract or Commit) removes the staging directory, so a
// failed, truncated or rejected transfer leaves no file under its final
// name. Every Extractor must end with Commit or Abort (Abort after Commit is
// harmless, so `defer x.Abort()` is the usual pattern).
//
// The sender is assumed hostile. Extract refuses, with *UnsafeEntryError, and
// without writing anything outside the staging directory:
//   - empty names, absolute names, names with a ".." component or a control
//     character (ASCII, DEL, or Unicode C1), names longer than 4096 bytes or
//     deeper than 256 levels, and top-level names starting with
//     ".pcp-partial-";
//   - devices, FIFOs and every type other than regular file, directory,
//     symlink and hard link (PAX global headers are skipped);
//   - symlinks whose target is empty, absolute, climbs with ".." after a
//     name (as in "a/../.."), or climbs above the destination;
//   - any entry whose path goes through a symlink or a non-directory created
//     earlier by the archive (entry "a" -> ".", then "a/x");
//   - hard links, except to a regular file extracted earlier from the same
//     archive (what `tar -c` writes for hard-linked files);
//   - a second entry with the name of an earlier one (a directory entry for
//     a directory created implicitly as a parent is allowed);
//   - more data or entries than ExtractOptions.MaxSize and MaxCount allow.
//
// It also fails (with a plain error) on a stream that is not tar or
// zstd-compressed tar, on a truncated stream (data shorter than its header
// says, a missing end-of-archive marker, a cut zstd frame), and on anything
// but zero padding after the end of the archive.
//
// On top of these checks all file system access goes through an os.Root on
// the staging directory, files are created with O_EXCL (and O_NOFOLLOW),
// and directories one by one with Mkdir. Permission bits are applied as
// mode & 0o777 (never setuid, setgid or sticky) and, like tar run by a user
// other than root, further restricted by the process umask; a directory gets
// its mode after its contents are written. Modification times are restored
// on files, directories and (on Linux and macOS) symlinks. Owners are not
// restored: everything belongs to the receiving user.
//
// An Extractor is not safe for concurrent use: to stop a running Extract,
// cancel its context (and close its reader if that may block).
type Extractor struct {
	dir     string // absolute destination directory
	opt     ExtractOptions
	state   extractorState
	staging string             // the staging directory, "" when there is none
	lock    *os.File           // the staging directory's manifest, locked, when Stage made it
	held    map[string]Held    // what the staging directory held before (Stage), by path
	names   []string           // top-level names, after Extract
	topDirs map[string]dirMeta // top-level directories: mode applied by Commit
}

// NewExtractor returns an Extractor into the existing directory dir. It
// creates nothing yet: Extract creates the staging directory.
func NewExtractor(dir string, opt ExtractOptions) (*Extractor, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("resolving output directory %s: %w", dir, err)
	}
	info, err := os.Stat(abs)
	if err != nil {
		return nil, fmt.Errorf("output directory: %w", err)
	}
	if !info.IsDir() {
		return nil, fmt.Errorf("output directory %s is not a directory", dir)
	}
	return &Extractor{dir: abs, opt: opt}, nil
}

// CheckNames checks top-level names offered by a sender before any data
// flows: each must be a single valid name (else *UnsafeEntryError), names
// must be distinct, and, unless ExtractOptions.Overwrite is set, none may
// exist in the destination (else an error matching fs.ErrExist that says
// "NAME exists (use --overwrite)"). Commit checks again.
func (e *Extractor) CheckNames(names []string) error {
	seen := make(map[string]bool, len(names))
	for _, name := range names {
		parts, reason := splitName(name)
		if reason == "" && (len(parts) != 1 || parts[0] != name) {
			reason = "not a single top-level name"
		}
		if reason == "" && seen[name] {
			reason = "offered twice"
		}
		if reason != "" {
			return unsafeEntry(name, reason)
		}
		seen[name] = true
		if e.opt.Overwrite {
			continue
		}
		if err := e.checkAbsent(name); err != nil {
			return err
		}
	}
	return nil
}

// Existing returns the offered names (each a single valid name, as
// CheckNames wants) that exist in the destination; others are skipped.
func (e *Extractor) Existing(names []string) []string {
	var found []string
	for _, name := range names {
		if parts, reason := splitName(name); reason != "" || len(parts) != 1 || parts[0] != name {
			continue
		}
		var exists *ExistsError
		if errors.As(e.checkAbsent(name), &exists) {
			found = append(found, name)
		}
	}
	return found
}

// checkAbsent fails if name exists in the destination.
func (e *Extractor) checkAbsent(name string) error {
	_, err := os.Lstat(filepath.Join(e.dir, filepath.FromSlash(name)))
	switch {
	case err == nil:
		return &ExistsError{name}
	case errors.Is(err, fs.ErrNotExist):
		return nil
	default:
		return fmt.Errorf("checking %s: %w", name, err)
	}
}

// Extract reads a tar stream, zstd-compressed or not (the zstd magic
// 28 B5 2F FD, or a skippable frame, selects zstd; anything else is read as
// plain tar), and writes it into the staging directory. It returns the
// summary of what it extracted: top-level names in order of appearance,
// total size of regular files, number of entries. On error the staging
// directory is removed and the summary describes what had been read. Extract
// may be called once.
func (e *Extractor) Extract(ctx context.Context, r io.Reader) (Summary, error) {
	if e.state != stateNew {
		return Summary{}, errors.New("extract: this extractor was already used")
	}
	e.state = stateStaged
	if e.staging == "" {
		staging, err := os.MkdirTemp(e.dir, stagingPrefix)
		if err != nil {
			e.state = stateDone
			return Summary{}, fmt.Errorf("creating staging directory: %w", err)
		}
		e.staging = staging
	}
	sum, err := e.extract(ctx, r)
	if err != nil {
		if e.lock != nil {
			return sum, err // Abort or Suspend decides
		}
		e.state = stateDone
		if rerr := e.removeStaging(); rerr != nil {
			err = errors.Join(err, rerr)
		}
		return sum, err
	}
	e.state = stateExtracted
	e.names = sum.Names
	return sum, nil
}

// contentDir is where the archive is extracted, inside the staging
// directory; asideDir receives replaced entries during Commit.
func (e *Extractor) contentDir() string { return filepath.Join(e.staging, contentName) }
func (e *Extractor) asideDir() string   { return filepath.Join(e.staging, asideName) }

// The folders of a staging directory: the content, and (during a Commit
// with Overwrite) the entries replaced.
const (
	contentName = "x"
	asideName   = "o"
)

func (e *Extractor) extract(ctx context.Context, r io.Reader) (Summary, error) {
	content := e.contentDir()
	if err := os.Mkdir(content, 0o700); err != nil {
		return Summary{}, fmt.Errorf("creating staging directory: %w", err)
	}
	root, err := os.OpenRoot(content)
	if err != nil {
		return Summary{}, fmt.Errorf("opening staging directory: %w", err)
	}
	defer root.Close()

	br := bufio.NewReaderSize(ctxReader{ctx, r}, 64<<10)
	var src io.Reader = br
	head, err := br.Peek(4)
	if err != nil && !errors.Is(err, io.EOF) {
		return Summary{}, fmt.Errorf("reading archive: %w", err)
	}
	if isZstd(head) {
		dec := compress.NewReader(br, maxWindow)
		defer dec.Close()
		src = zstdErrReader{dec}
	}

	x := &extraction{
		held:     e.held,
		root:     root,
		folders:  folders{root: root},
		rootPath: content,
		opt:      e.opt,
		nodes:    make(map[string]*node),
		buf:      make([]byte, copyBufSize),
	}
	if e.opt.Sync != nil {
		x.flusher = &flusher{path: content}
	}
	if e.held != nil {
		if x.staging, err = os.OpenRoot(e.staging); err != nil {
			return Summary{}, fmt.Errorf("opening staging directory: %w", err)
		}
		defer x.staging.Close()
	}
	err = x.run(ctx, src)
	x.folders.close()
	if x.flusher != nil {
		x.flusher.wait()
	}
	if err != nil {
		return x.sum, err
	}
	e.topDirs = x.topDirs
	return x.sum, nil
}

// zstdErrReader says where decoding errors come from.
type zstdErrReader struct{ r io.Reader }

func (z zstdErrReader) Read(p []byte) (int, error) {
	n, err := z.r.Read(p)
	if err != nil && err != io.EOF {
		err = fmt.Errorf("zstd: %w", err)
	}
	return n, err
}

// isZstd reports whether head starts a zstd frame or a skippable frame.
func isZstd(head []byte) bool {
	if len(head) < 4 {
		return false
	}
	if string(head[:4]) == zstdMagic {
		return true
	}
	return head[0]&0xf0 == 0x50 && head[1] == 0x2a && head[2] == 0x4d && head[3] == 0x18
}

// Commit moves the extracted top-level entries from the staging directory
// into the destination and removes the staging directory. Unless
// ExtractOptions.Overwrite is set, it first checks that none of the names
// exists and fails with "NAME exists (use --overwrite)" (matching
// fs.ErrExist) before moving anything; the moves themselves never replace an
// entry that appeared meanwhile (on Linux and macOS). With Overwrite an
// existing entry is renamed aside into the staging directory, the new one is
// moved in, and the old one is deleted at the end. If a move fails, the
// entries moved so far are moved back, the replaced ones restored where
// possible, and the staging directory is removed.
func (e *Extractor) Commit() error {
	if e.state != stateExtracted {
		return errors.New("commit: nothing to commit (Extract not called or failed, or already committed or aborted)")
	}
	e.state = stateDone
	defer e.unlock()
	if sync := e.opt.Sync; sync != nil {
		if err := sync(e.contentDir(), true); err != nil {
			return errors.Join(fmt.Errorf("writing the files to the disk: %w", err), e.removeStaging())
		}
	}
	if err := e.commit(); err != nil {
		if rerr := e.removeStaging(); rerr != nil {
			err = errors.Join(err, rerr)
		}
		return err
	}
	var errs []error
	for name, d := range e.topDirs {
		if err := finishTopDir(filepath.Join(e.dir, name), d); err != nil {
			errs = append(errs, err)
		}
	}
	if sync := e.opt.Sync; sync != nil {
		if err := sync(e.dir, false); err != nil {
			errs = append(errs, fmt.Errorf("writing the new names to the disk: %w", err))
		}
	}
	if err := e.removeStaging(); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return fmt.Errorf("files are in place, but: %w", errors.Join(errs...))
	}
	return nil
}

func (e *Extractor) commit() error {
	if !e.opt.Overwrite {
		for _, name := range e.names {
			if err := e.checkAbsent(name); err != nil {
				return err
			}
		}
	}
	type move struct {
		final  string // the destination
		aside  string // where the replaced entry went, "" if none
		placed bool   // the new entry is at final
	}
	var moves []*move
	rollback := func() {
		for i := len(moves) - 1; i >= 0; i-- {
			m := moves[i]
			if m.placed {
				os.Rename(m.final, filepath.Join(e.contentDir(), filepath.Base(m.final)))
			}
			if m.aside != "" {
				os.Rename(m.aside, m.final)
			}
		}
	}
	if e.opt.Overwrite {
		if err := os.Mkdir(e.asideDir(), 0o700); err != nil {
			return fmt.Errorf("creating staging directory: %w", err)
		}
	}
	for i, name := range e.names {
		m := &move{final: filepath.Join(e.dir, filepath.FromSlash(name))}
		moves = append(moves, m)
		if e.opt.Overwrite {
			if err := e.putAside(m.final, filepath.Join(e.asideDir(), strconv.Itoa(i)), &m.aside); err != nil {
				rollback()
				return err
			}
		}
		if err := renameNoReplace(filepath.Join(e.contentDir(), name), m.final); err != nil {
			rollback()
			if errors.Is(err, fs.ErrExist) {
				return &ExistsError{name}
			}
			return fmt.Errorf("moving %s into place: %w", sanitize(name), err)
		}
		m.placed = true
	}
	return nil
}

// putAside moves the existing entry final (if any) to aside and records
// where it went. An entry that cannot be moved (a read-only directory, for a
// user other than root) is deleted instead.
func (e *Extractor) putAside(final, aside string, where *string) error {
	if _, err := os.Lstat(final); errors.Is(err, fs.ErrNotExist) {
		return nil
	} else if err != nil {
		return fmt.Errorf("checking %s: %w", final, err)
	}
	if err := os.Rename(final, aside); err == nil {
		*where = aside
		return nil
	}
	if err := removeAll(final); err != nil {
		return fmt.Errorf("replacing %s: %w", final, err)
	}
	return nil
}

// finishTopDir applies the mode and time of a top-level directory after it
// was moved into place (a read-only directory could not have been moved).
func finishTopDir(path string, d dirMeta) error {
	f, err := os.OpenFile(path, os.O_RDONLY|oNoFollow, 0)
	if err != nil {
		return fmt.Errorf("setting mode of %s: %w", path, err)
	}
	defer f.Close()
	if info, err := f.Stat(); err != nil || !info.IsDir() {
		return fmt.Errorf("setting mode of %s: no longer a directory", path)
	}
	if err := f.Chmod(d.perm); err != nil {
		return fmt.Errorf("setting mode of %s: %w", path, err)
	}
	if err := os.Chtimes(path, time.Time{}, d.mtime); err != nil {
		return fmt.Errorf("setting time of %s: %w", path, err)
	}
	return nil
}

// Abort removes the staging directory and everything extracted into it.
// It may be called at any time after Extract returned, also more than once,
// and does nothing after Commit.
func (e *Extractor) Abort() error {
	e.state = stateDone
	defer e.unlock()
	return e.removeStaging()
}

func (e *Extractor) removeStaging() error {
	if e.staging == "" {
		return nil
	}
	if err := removeAll(e.staging); err != nil {
		return fmt.Errorf("removing staging directory: %w", err)
	}
	e.staging = ""
	return nil
}

// removeAll is os.RemoveAll that also removes directories without write or
// search permission (as an extracted read-only directory may be).
func removeAll(path string) error {
	if err := os.RemoveAll(path); err == nil {
		return nil
	}
	makeWritable(path, 0)
	return os.RemoveAll(path)
}

func makeWritable(path string, depth int) {
	info, err := os.Lstat(path)
	if err != nil || !info.IsDir() || depth > maxDepth+2 {
		return
	}
	if info.Mode().Perm()&0o700 != 0o700 {
		os.Chmod(path, 0o700)
	}
	children, _ := os.ReadDir(path)
	for _, c := range children {
		if c.IsDir() {
			makeWritable(filepath.Join(path, c.Name()), depth+1)
		}
	}
}

type entryKind int

const (
	kindFile entryKind = iota
	kindDir
	kindSymlink
)

// node is an extracted entry.
type node struct {
	kind     entryKind
	explicit bool // a directory that had its own entry (not only implied by a child)
}

// dirMeta is the mode and time a directory gets once its contents are in.
type dirMeta struct {
	rel   string // slash-separated, relative to the content directory
	depth int
	perm  fs.FileMode
	mtime time.Time
}

// extraction is the state of one Extract.
type extraction struct {
	root     *os.Root
	folders  folders  // creates the regular files
	flusher  *flusher // nil unless opt.Sync is set
	rootPath string
	opt      ExtractOptions
	held     map[string]Held  // files a resumed stream may keep, by path; each is kept at most once
	staging  *os.Root         // the staging directory, when files may be kept
	nodes    map[string]*node // by slash-separated relative path
	dirs     []dirMeta
	topDirs  map[string]dirMeta
	sum      Summary
	buf      []byte
}

// tailReader counts the bytes read and the length of the run of zero bytes
// at the end of what was read.
type tailReader struct {
	r     io.Reader
	n     int64
	zeros int64
}

func (t *tailReader) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	if n > 0 {
		t.n += int64(n)
		i := n - 1
		for i >= 0 && p[i] == 0 {
			i--
		}
		if i < 0 {
			t.zeros += int64(n)
		} else {
			t.zeros = int64(n - 1 - i)
		}
	}
	return n, err
}

func (x *extraction) run(ctx context.Context, src io.Reader) error {
	tail := &tailReader{r: src}
	tr := tar.NewReader(tail)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		before := tail.n
		hdr, err := tr.Next()
		if before == 0 && tail.n < 512 && (err == io.EOF || errors.Is(err, io.ErrUnexpectedEOF)) {
			return fmt.Errorf("not a tar archive: the stream ends after %d bytes, before the first header: %w", tail.n, io.ErrUnexpectedEOF)
		}
		if err == io.EOF {
			// archive/tar also reports a stream that simply stops at an
			// entry boundary as io.EOF. Only the end marker (two zero
			// blocks, after at most 511 bytes of padding) means the end.
			if tail.n-before < 1024 || tail.zeros < 1024 {
				return fmt.Errorf("archive truncated: no end-of-archive marker: %w", io.ErrUnexpectedEOF)
			}
			break
		}
		if err != nil {
			return readError(err)
		}
		if err := x.entry(ctx, tr, hdr); err != nil {
			return err
		}
	}
	if err := checkTrailing(tail, x.buf); err != nil {
		return err
	}
	return x.finishDirs()
}

// readError explains an error from the tar reader.
func readError(err error) error {
	switch {
	case errors.Is(err, io.ErrUnexpectedEOF):
		return fmt.Errorf("archive truncated: %w", err)
	case errors.Is(err, tar.ErrHeader):
		return fmt.Errorf("not a valid tar stream: %w", err)
	default:
		return fmt.Errorf("reading archive: %w", err)
	}
}

// checkTrailing reads what follows the tar end marker to its end (which also
// verifies the zstd checksum): only zero padding is allowed.
func checkTrailing(r io.Reader, buf []byte) error {
	var total int64
	for {
		n, err := r.Read(buf)
		for _, b := range buf[:n] {
			if b != 0 {
				return errors.New("trailing garbage after the end of the archive")
			}
		}
		total += int64(n)
		if total > maxTrailing {
			return fmt.Errorf("more than %d MiB of padding after the end of the archive", maxTrailing>>20)
		}
		switch {
		case err == io.EOF:
			return nil
		case errors.Is(err, io.ErrUnexpectedEOF):
			return fmt.Errorf("archive truncated after its end marker: %w", err)
		case err != nil:
			return fmt.Errorf("reading after the end of the archive: %w", err)
		}
	}
}

// entry extracts one archive entry.
func (x *extraction) entry(ctx context.Context, tr *tar.Reader, hdr *tar.Header) error {
	if hdr.Typeflag == tar.TypeXGlobalHeader {
		return nil // PAX global header (git archive writes one): no file
	}
	parts, reason := splitName(hdr.Name)
	if reason != "" {
		return unsafeEntry(hdr.Name, reason)
	}
	if len(parts) == 0 {
		if hdr.Typeflag == tar.TypeDir {
			return nil // "./": the destination itself
		}
		return unsafeEntry(hdr.Name, "names the destination itself")
	}
	var kind entryKind
	hardLink := false
	switch hdr.Typeflag {
	case tar.TypeReg, tar.TypeGNUSparse:
		kind = kindFile
	case tar.TypeLink:
		kind, hardLink = kindFile, true
	case tar.TypeDir:
		kind = kindDir
	case tar.TypeSymlink:
		kind = kindSymlink
	case tar.TypeChar, tar.TypeBlock:
		return unsafeEntry(hdr.Name, "device file")
	case tar.TypeFifo:
		return unsafeEntry(hdr.Name, "FIFO")
	default:
		return unsafeEntry(hdr.Name, fmt.Sprintf("unsupported entry type %q", hdr.Typeflag))
	}
	if kind != kindDir && strings.HasSuffix(hdr.Name, "/") {
		return unsafeEntry(hdr.Name, "name ends with a slash but the entry is not a directory")
	}
	if x.opt.MaxCount > 0 && x.sum.Count >= x.opt.MaxCount {
		return unsafeEntry(hdr.Name, fmt.Sprintf("more entries than the %d announced", x.opt.MaxCount))
	}
	keep, reason := x.kept(hdr, parts, kind == kindFile && !hardLink)
	if reason != "" {
		return unsafeEntry(hdr.Name, reason)
	}
	if kind == kindFile && !hardLink && x.opt.MaxSize > 0 && hdr.Size+keep.Size > x.opt.MaxSize-x.sum.Size {
		return unsafeEntry(hdr.Name, fmt.Sprintf("more data than the %d bytes announced", x.opt.MaxSize))
	}

	if x.opt.Names != nil && !slices.Contains(x.opt.Names, parts[0]) {
		return unsafeEntry(hdr.Name, "not among the names offered")
	}
	key := strings.Join(parts, "/")
	if n, ok := x.nodes[key]; ok && !(kind == kindDir && n.kind == kindDir && !n.explicit) {
		return unsafeEntry(hdr.Name, "duplicate entry: an earlier entry has this name")
	}
	_, seenTop := x.nodes[parts[0]]
	if err := x.parents(hdr.Name, parts); err != nil {
		return err
	}
	rel := filepath.FromSlash(key)
	var err error
	switch {
	case hardLink:
		err = x.link(hdr, key, rel)
	case kind == kindFile:
		err = x.file(ctx, tr, hdr, key, keep.Size)
	case kind == kindDir:
		err = x.dir(hdr, key, rel, len(parts))
	case kind == kindSymlink:
		err = x.symlink(hdr, key, rel, parts)
	}
	if err != nil {
		return err
	}
	if !seenTop {
		x.sum.Names = append(x.sum.Names, parts[0])
	}
	x.sum.Count++
	return nil
}

// parents checks the parents of an entry and creates missing ones.
func (x *extraction) parents(name string, parts []string) error {
	for i := 1; i < len(parts); i++ {
		p := strings.Join(parts[:i], "/")
		n, ok := x.nodes[p]
		if ok {
			switch n.kind {
			case kindDir:
				continue
			case kindSymlink:
				return unsafeEntry(name, "path goes through the symlink "+sanitize(p)+" created by the archive")
			default:
				return unsafeEntry(name, "parent "+sanitize(p)+" is not a directory")
			}
		}
		if err := x.root.Mkdir(filepath.FromSlash(p), 0o777); err != nil {
			return createError(name, "creating parent directory "+sanitize(p), err)
		}
		x.nodes[p] = &node{kind: kindDir}
	}
	return nil
}

// createError explains a failure to create an entry: a name that exists
// although the archive did not create it is a collision (names that differ
// only in case on a case-insensitive file system, for instance).
func createError(name, what string, err error) error {
	if errors.Is(err, fs.ErrExist) {
		return unsafeEntry(name, "collides with an earlier entry (case-insensitive file system?)")
	}
	return fmt.Errorf("extracting %s: %s: %w", sanitize(name), what, err)
}

// file extracts a regular file, after the first keep bytes, which the
// staging directory holds from before.
func (x *extraction) file(ctx context.Context, tr *tar.Reader, hdr *tar.Header, key string, keep int64) error {
	perm := fs.FileMode(hdr.Mode) & 0o777
	f, err := x.folders.create(key, perm)
	if err != nil {
		return createError(hdr.Name, "creating file", err)
	}
	x.nodes[key] = &node{kind: kindFile}
	if keep > 0 {
		if f, err = x.keep(f, key, keep); err != nil {
			return fmt.Errorf("extracting %s: resuming: %w", sanitize(hdr.Name), err)
		}
		if x.opt.Progress != nil {
			x.opt.Progress(keep)
		}
	}
	if x.opt.Sync != nil {
		w := &writeback{f: f}
		err = copyExact(ctx, w, tr, hdr.Size, x.buf, x.opt.Progress)
		if !w.finish() {
			x.flusher.wrote(w.off)
		}
	} else {
		err = copyExact(ctx, f, tr, hdr.Size, x.buf, x.opt.Progress)
	}
	if cerr := f.Close(); err == nil && cerr != nil {
		err = &writeError{cerr}
	}
	var we *writeError
	switch {
	case err == nil:
	case errors.As(err, &we):
		return fmt.Errorf("extracting %s: %w", sanitize(hdr.Name), err)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return fmt.Errorf("archive truncated: the data of %s ends before its declared size of %d bytes: %w", sanitize(hdr.Name), hdr.Size, err)
	default:
		return fmt.Errorf("extracting %s: reading archive: %w", sanitize(hdr.Name), err)
	}
	x.sum.Size += keep + hdr.Size
	if err := x.folders.setModTime(key, hdr.ModTime); err != nil {
		return fmt.Errorf("extracting %s: setting time: %w", sanitize(hdr.Name), err)
	}
	return nil
}

// dir creates a directory (or adopts one created as a parent) and records
// the mode and time it gets at the end.
func (x *extraction) dir(hdr *tar.Header, key, rel string, depth int) error {
	perm := fs.FileMode(hdr.Mode) & 0o777
	if n, ok := x.nodes[key]; ok {
		n.explicit = true
	} else {
		if err := x.root.Mkdir(rel, perm|0o700); err != nil {
			return createError(hdr.Name, "creating directory", err)
		}
		x.nodes[key] = &node{kind: kindDir, explicit: true}
	}
	// The mode the system gave (the umask applied) bounds the final mode.
	info, err := x.root.Lstat(rel)
	if err != nil {
		return fmt.Errorf("extracting %s: %w", sanitize(hdr.Name), err)
	}
	got := info.Mode().Perm()
	if got&0o700 != 0o700 {
		if err := x.root.Chmod(rel, got|0o700); err != nil {
			return fmt.Errorf("extracting %s: %w", sanitize(hdr.Name), err)
		}
	}
	x.dirs = append(x.dirs, dirMeta{rel: key, depth: depth, perm: got & perm, mtime: hdr.ModTime})
	return nil
}

// symlink creates a symlink after checking its target.
func (x *extraction) symlink(hdr *tar.Header, key, rel string, parts []string) error {
	if reason := checkLinkTarget(parts, hdr.Linkname); reason != "" {
		return unsafeEntry(hdr.Name, reason)
	}
	if err := x.root.Symlink(filepath.FromSlash(hdr.Linkname), rel); err != nil {
		return createError(hdr.Name, "creating symlink", err)
	}
	x.nodes[key] = &node{kind: kindSymlink}
	// Best effort: a symlink's time matters little.
	lutimes(filepath.Join(x.rootPath, rel), hdr.ModTime)
	return nil
}

// checkLinkTarget returns why the symlink target is refused for a link at
// parts, or "". The target is resolved lexically from the link's directory;
// ".." is only allowed before the first name, since after a name that is
// itself a symlink ".." would climb from wherever that symlink points.
func checkLinkTarget(parts []string, target string) string {
	switch {
	case target == "":
		return "empty symlink target"
	case len(target) > maxPathLen:
		return fmt.Sprintf("symlink target longer than %d bytes", maxPathLen)
	case hasControl(target):
		return "control or bidirectional character in symlink target"
	case strings.HasPrefix(target, "/") || filepath.IsAbs(target) || filepath.VolumeName(target) != "":
		return "absolute symlink target"
	case runtime.GOOS == "windows" && strings.ContainsAny(target, `\:`):
		return "backslash or colon in symlink target"
	}
	up, named := 0, false
	for _, c := range strings.Split(target, "/") {
		switch c {
		case "", ".":
		case "..":
			if named {
				return "symlink target climbs (..) after a name"
			}
			up++
		default:
			named = true
		}
	}
	if up > len(parts)-1 {
		return "symlink target points outside the destination"
	}
	return ""
}

// link creates a hard link to a regular file extracted earlier.
func (x *extraction) link(hdr *tar.Header, key, rel string) error {
	tparts, reason := splitName(hdr.Linkname)
	if reason != "" {
		return unsafeEntry(hdr.Name, "hard link target: "+reason)
	}
	tkey := strings.Join(tparts, "/")
	if n, ok := x.nodes[tkey]; len(tparts) == 0 || !ok || n.kind != kindFile {
		return unsafeEntry(hdr.Name, "hard link to something other than a regular file extracted earlier from this archive")
	}
	if err := x.root.Link(filepath.FromSlash(tkey), rel); err != nil {
		return createError(hdr.Name, "creating hard link", err)
	}
	x.nodes[key] = &node{kind: kindFile}
	return nil
}

// finishDirs applies directory modes and times, deepest first, once all
// contents are in. Top-level directories get their time now and their mode
// in Commit, after they were moved (a read-only directory cannot be moved to
// another parent by a user other than root).
func (x *extraction) finishDirs() error {
	slices.SortStableFunc(x.dirs, func(a, b dirMeta) int { return b.depth - a.depth })
	x.topDirs = make(map[string]dirMeta)
	for _, d := range x.dirs {
		rel := filepath.FromSlash(d.rel)
		if d.depth == 1 {
			x.topDirs[d.rel] = d
		} else if err := x.root.Chmod(rel, d.perm); err != nil {
			return fmt.Errorf("setting mode of %s: %w", sanitize(d.rel), err)
		}
		if err := x.root.Chtimes(rel, time.Time{}, d.mtime); err != nil {
			return fmt.Errorf("setting time of %s: %w", sanitize(d.rel), err)
		}
	}
	return nil
}
