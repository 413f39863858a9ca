package archive

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// An extraction that stops before its end (the receiver killed, the
// connection gone for good) may leave its staging directory for the next
// transfer of the same names to resume: Extractor.Stage takes it up and
// lists the files it holds (Held), the receiver tells the sender, and the
// sender writes each file the receiver holds a prefix of as a tar entry
// with the PAX records PCP.keep (how many bytes of the held file come
// first) and PCP.keep.sha256 (their SHA-256), followed by only the rest of
// the file. Everything else in the staging directory is discarded at the
// end: the result is exactly what the stream says.

// StaleAfter is how long a staging directory that no extraction holds is
// kept for a resume after its last use: Stage removes older ones.
const StaleAfter = 7 * 24 * time.Hour

// PAX records of a resumed file entry (see pcp-protocol(7)).
const (
	paxKeep       = "PCP.keep"
	paxKeepSHA256 = "PCP.keep.sha256"
)

const (
	// manifestName is the file in a staging directory that records the
	// names of the offer it extracts; an extraction that may be resumed
	// holds a lock on it while it runs.
	manifestName = "offer"
	// prevDir, in a staging directory, holds the files of the extraction
	// being resumed until the stream keeps them.
	prevDir = "p"
	// maxManifest bounds the manifest that Stage reads.
	maxManifest = 8 << 20
	// maxHeld and maxHeldNames bound the list Stage returns: the files
	// beyond are sent again rather than told about.
	maxHeld      = 100_000
	maxHeldNames = 8 << 20
)

// Held is a file of an unfinished extraction that a resumed stream may
// keep: its path in the archive (slash-separated), its size, and the
// SHA-256 of its content.
type Held struct {
	Path   string
	Size   int64
	SHA256 []byte
}

// manifest is what a staging directory records of its offer.
type manifest struct {
	Names []string `json:"names"`
}

// Stage prepares the staging directory before Extract, so that an
// extraction stopped before its end can be resumed by a later stream of the
// same top-level names (ExtractOptions.Names, which must be set):
//   - it removes the staging directories in the destination that no
//     running extraction holds and that were last used more than StaleAfter
//     ago, and, unless resume is set, the earlier ones of the same names
//     (never one whose Commit was cut short while it held replaced entries);
//   - with resume it takes up the newest earlier staging directory of the
//     same names that no extraction holds, and returns the regular files it
//     holds, for the sender to keep (WriteOptions.Holdings); else it creates
//     a new one.
//
// Either way the staging directory is then held (locked, where the system
// allows) until Commit, Abort or Suspend, and a failed Extract leaves it in
// place for the caller to Abort or Suspend. Without Stage, Extract creates
// a staging directory that nothing resumes.
//
// Listing hashes every held file: ctx stops it.
func (e *Extractor) Stage(ctx context.Context, resume bool) ([]Held, error) {
	if e.state != stateNew || e.staging != "" {
		return nil, errors.New("stage: this extractor was already used")
	}
	if e.opt.Names == nil {
		return nil, errors.New("stage: no names to stage for")
	}
	found, lock := e.sweep(resume)
	if found != "" {
		held, err := e.takeUp(ctx, found, lock)
		if err == nil {
			return held, nil
		}
		lock.Close() // left as it is: not resumable after all, or for the next try
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
	}
	staging, err := os.MkdirTemp(e.dir, stagingPrefix)
	if err != nil {
		return nil, fmt.Errorf("creating staging directory: %w", err)
	}
	m, err := json.Marshal(manifest{Names: e.opt.Names})
	if err == nil {
		err = os.WriteFile(filepath.Join(staging, manifestName), m, 0o600)
	}
	if err == nil {
		lock, err = openLocked(filepath.Join(staging, manifestName))
	}
	if err == nil && e.opt.Sync != nil {
		// So that a machine that stops finds the staging folder's offer.
		err = errors.Join(fsync(filepath.Join(staging, manifestName)), fsync(staging), fsync(e.dir))
		if err != nil {
			lock.Close()
		}
	}
	if err != nil {
		removeAll(staging)
		return nil, fmt.Errorf("creating staging directory: %w", err)
	}
	e.staging, e.lock = staging, lock
	return nil, nil
}

// sweep removes stale staging directories, and with !resume those of the
// same names; with resume it returns the newest one of the same names, and
// its lock.
func (e *Extractor) sweep(resume bool) (found string, lock *os.File) {
	entries, err := os.ReadDir(e.dir)
	if err != nil {
		return "", nil
	}
	var foundAt time.Time
	for _, d := range entries {
		if !strings.HasPrefix(d.Name(), stagingPrefix) || !d.IsDir() {
			continue
		}
		dir := filepath.Join(e.dir, d.Name())
		if _, err := os.Lstat(filepath.Join(dir, asideName)); err == nil {
			continue // a commit cut short: what it replaced is there, for the user
		}
		names, used, f, ok := readManifest(dir)
		if !ok {
			continue // in use, or not a staging directory of ours
		}
		same := names != nil && sameNames(names, e.opt.Names)
		switch {
		case time.Since(used) > StaleAfter, same && !resume:
		case same && (found == "" || used.After(foundAt)):
			if found != "" {
				lock.Close()
				removeAll(found) // an older one of the same names
			}
			found, foundAt, lock = dir, used, f
			continue
		case same: // older than the one found
		default:
			if f != nil {
				f.Close()
			}
			continue
		}
		removeAll(dir)
		if f != nil {
			f.Close()
		}
	}
	return found, lock
}

// readManifest reads the manifest of the staging directory dir and locks
// it: the names of its offer (nil when it has no manifest), when it was
// last used, and the locked manifest. ok is false when another
// extraction holds it or it cannot be read.
func readManifest(dir string) (names []string, used time.Time, lock *os.File, ok bool) {
	info, err := os.Lstat(dir)
	if err != nil || !info.IsDir() {
		return nil, time.Time{}, nil, false
	}
	f, err := openLocked(filepath.Join(dir, manifestName))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, info.ModTime(), nil, true // from an older pcp, or not resumable
	case err != nil:
		return nil, time.Time{}, nil, false
	}
	st, err := f.Stat()
	b, rerr := io.ReadAll(io.LimitReader(f, maxManifest))
	var m manifest
	if err != nil || rerr != nil || json.Unmarshal(b, &m) != nil || m.Names == nil {
		return nil, info.ModTime(), f, true
	}
	return m.Names, st.ModTime(), f, true
}

// openLocked opens an existing manifest and locks it, or fails.
func openLocked(name string) (*os.File, error) {
	f, err := os.OpenFile(name, os.O_RDWR|oNoFollow, 0)
	if err != nil {
		return nil, err
	}
	if !tryLock(f) {
		f.Close()
		return nil, errors.New("held by another extraction")
	}
	return f, nil
}

// sameNames reports whether a and b hold the same names, in any order.
func sameNames(a, b []string) bool {
	return len(a) == len(b) && slices.Equal(slices.Sorted(slices.Values(a)), slices.Sorted(slices.Values(b)))
}

// takeUp makes the staging directory dir, held by lock, this extractor's:
// the files of its earlier runs go to prevDir, and are listed.
func (e *Extractor) takeUp(ctx context.Context, dir string, lock *os.File) ([]Held, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, err
	}
	defer root.Close()
	content := contentName
	if _, err := root.Lstat(content); err == nil {
		if _, err := root.Lstat(prevDir); err == nil {
			// A resumed run was cut short too: what it wrote is newer.
			mergeInto(root, content, prevDir)
			if err := removeAll(filepath.Join(dir, content)); err != nil {
				return nil, err
			}
		} else if err := root.Rename(content, prevDir); err != nil {
			return nil, err
		}
	}
	now := time.Now()
	os.Chtimes(filepath.Join(dir, manifestName), now, now)
	e.staging, e.lock = dir, lock
	held, err := holdings(ctx, root, prevDir)
	if err != nil {
		e.staging, e.lock = "", nil
		return nil, err
	}
	e.held = make(map[string]Held, len(held))
	for _, h := range held {
		e.held[h.Path] = h
	}
	return held, nil
}

// mergeInto moves the regular files under from into the same places under
// to, replacing what is there; a file that cannot be moved is left (it is
// only sent again).
func mergeInto(root *os.Root, from, to string) {
	fs.WalkDir(root.FS(), from, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return nil
		}
		dest := path.Join(to, strings.TrimPrefix(p, from+"/"))
		if root.MkdirAll(filepath.FromSlash(path.Dir(dest)), 0o700) == nil {
			root.Rename(filepath.FromSlash(p), filepath.FromSlash(dest))
		}
		return nil
	})
}

// holdings lists the non-empty regular files under dir in root, with their
// SHA-256, up to maxHeld files and maxHeldNames bytes of names.
func holdings(ctx context.Context, root *os.Root, dir string) ([]Held, error) {
	var held []Held
	names := 0
	buf := make([]byte, copyBufSize)
	err := fs.WalkDir(root.FS(), dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p == dir && errors.Is(err, fs.ErrNotExist) {
				return fs.SkipAll
			}
			return nil // an unreadable folder: its files are sent again
		}
		if !d.Type().IsRegular() {
			return nil
		}
		if len(held) >= maxHeld || names+len(p) > maxHeldNames {
			return fs.SkipAll
		}
		h, err := hashFile(ctx, root, p, buf)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil || h.Size == 0 {
			return nil
		}
		h.Path = strings.TrimPrefix(p, dir+"/")
		held = append(held, h)
		names += len(p)
		return nil
	})
	return held, err
}

// hashFile reads the regular file p of root to its end.
func hashFile(ctx context.Context, root *os.Root, p string, buf []byte) (Held, error) {
	f, err := root.OpenFile(filepath.FromSlash(p), os.O_RDONLY|oNoFollow, 0)
	if err != nil {
		return Held{}, err
	}
	defer f.Close()
	if info, err := f.Stat(); err != nil || !info.Mode().IsRegular() {
		return Held{}, errors.New("not a regular file")
	}
	sum := sha256.New()
	n, err := io.CopyBuffer(sum, ctxReader{ctx, f}, buf)
	if err != nil {
		return Held{}, err
	}
	return Held{Size: n, SHA256: sum.Sum(nil)}, nil
}

// Suspend ends an extraction that stopped before its end and leaves its
// staging directory, made by Stage, for a later stream of the same names
// to resume; it returns the directory and the size of the files it holds
// ("" when there is nothing to resume: then it removes it, as Abort).
// It does nothing after Commit.
func (e *Extractor) Suspend() (dir string, size int64) {
	if e.state == stateExtracted || e.staging == "" || e.lock == nil {
		e.Abort()
		return "", 0
	}
	e.state = stateDone
	filepath.WalkDir(e.staging, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() && d.Name() != manifestName {
			if info, err := d.Info(); err == nil {
				size += info.Size()
			}
		}
		return nil
	})
	if size == 0 {
		e.Abort()
		return "", 0
	}
	dir = e.staging
	now := time.Now()
	os.Chtimes(filepath.Join(dir, manifestName), now, now) // its last use, for StaleAfter
	e.staging = ""
	e.unlock()
	return dir, size
}

// unlock lets other extractions take up the staging directory.
func (e *Extractor) unlock() {
	if e.lock != nil {
		e.lock.Close()
		e.lock = nil
	}
}

// keepRecord reads the PAX records of a resumed file entry: how many bytes
// of the held file come first, and their SHA-256 (0 and nil when the entry
// is not resumed).
func keepRecord(hdr *tar.Header) (keep int64, sum []byte, reason string) {
	v, ok := hdr.PAXRecords[paxKeep]
	if !ok {
		return 0, nil, ""
	}
	keep, err := strconv.ParseInt(v, 10, 64)
	if err != nil || keep <= 0 {
		return 0, nil, "malformed " + paxKeep + " record"
	}
	sum, err = hex.DecodeString(hdr.PAXRecords[paxKeepSHA256])
	if err != nil || len(sum) != sha256.Size {
		return 0, nil, "malformed " + paxKeepSHA256 + " record"
	}
	return keep, sum, ""
}

// keepable returns how many bytes at the start of the file r (at its start,
// of hdr.Size bytes) the receiver holds already, as the holdings say: the
// size it holds when that many bytes of r have the SHA-256 it holds, else 0.
// r is left where the data to send starts.
func (aw *archiveWriter) keepable(ctx context.Context, hdr *tar.Header, r io.Reader) (Held, bool) {
	h, ok := aw.holdings[hdr.Name]
	seeker, canSeek := r.(io.Seeker)
	if !ok || !canSeek || h.Size <= 0 || h.Size > hdr.Size {
		return Held{}, false
	}
	sum := sha256.New()
	n, err := io.CopyBuffer(sum, io.LimitReader(ctxReader{ctx, r}, h.Size), aw.buf)
	if err == nil && n == h.Size && bytes.Equal(sum.Sum(nil), h.SHA256) {
		return h, true
	}
	if _, err := seeker.Seek(0, io.SeekStart); err != nil {
		return Held{}, false
	}
	return Held{}, false
}

// kept checks the resume records of an entry (file: a regular file, not a
// hard link) against what the staging directory holds: the held file that
// the entry keeps, or the reason to refuse the entry.
func (x *extraction) kept(hdr *tar.Header, parts []string, file bool) (Held, string) {
	keep, sum, reason := keepRecord(hdr)
	switch {
	case reason != "":
		return Held{}, reason
	case keep == 0:
		return Held{}, ""
	case !file:
		return Held{}, "resume record on an entry that is not a regular file"
	}
	key := strings.Join(parts, "/")
	h, ok := x.held[key]
	if !ok || h.Size != keep || !bytes.Equal(h.SHA256, sum) {
		return Held{}, "resumes a file that this receiver does not hold"
	}
	delete(x.held, key)
	return h, ""
}

// keep replaces the file key, just created (f, empty), with the held file of
// the same path, cut to its first n bytes, with the mode f was given: the
// rest of the data follows.
func (x *extraction) keep(f outFile, key string, n int64) (outFile, error) {
	mode, err := modeOf(f)
	f.Close()
	if err != nil {
		return nil, err
	}
	rel := filepath.FromSlash(key)
	if err := x.staging.Rename(filepath.Join(prevDir, rel), filepath.Join(contentName, rel)); err != nil {
		return nil, err
	}
	return x.folders.reopen(key, mode, n)
}
