package archive

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
)

// Durable is the ExtractOptions.Sync of a receiver whose success must mean
// that the files survive a crash of the machine a moment later: with tree,
// everything under path is written to stable storage (an fsync of every
// file and directory under path; on Linux, for a tree of more than
// fewEntries, one syncfs(2) of the file system instead, which also writes
// what other programs left there);
// without, the directory path itself (its entries: the names moved into
// it), which Windows cannot sync and skips.
func Durable(path string, tree bool) error {
	if tree {
		return syncTree(path)
	}
	return fsync(path)
}

// errTooMany stops the walk of syncEntries.
var errTooMany = errors.New("too many entries")

// syncEntries fsyncs every file and folder under path, each before the
// folder that holds it. With limit > 0, a tree of more entries is left as
// it is and reported as many. An entry we may not open fails the sync with
// fs.ErrPermission, unless skipUnreadable leaves it to the system.
func syncEntries(path string, limit int, skipUnreadable bool) (many bool, err error) {
	var entries []string
	err = filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
		switch {
		case err != nil:
			return err
		case limit > 0 && len(entries) == limit:
			return errTooMany
		case d.Type().IsRegular() || d.IsDir():
			entries = append(entries, p)
		}
		return nil
	})
	if errors.Is(err, errTooMany) {
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("sync %s: %w", path, err)
	}
	slices.Reverse(entries) // pre-order reversed: the deepest first
	for _, p := range entries {
		if err := fsync(p); err != nil && !(skipUnreadable && errors.Is(err, fs.ErrPermission)) {
			return false, err
		}
	}
	return false, nil
}

// fsync writes the file or folder path to stable storage (on macOS with
// F_FULLFSYNC, through os.File.Sync). Windows cannot sync a folder, which
// is skipped, and flushes a file only through a handle that may write.
func fsync(path string) error {
	flag := os.O_RDONLY
	if runtime.GOOS == "windows" {
		if info, err := os.Stat(path); err == nil && info.IsDir() {
			return nil
		}
		flag = os.O_RDWR
	}
	f, err := os.OpenFile(path, flag, 0)
	if err != nil {
		return fmt.Errorf("sync %s: %w", path, err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", path, err)
	}
	return nil
}

// writebackEvery is how much of a file is written before its writeback to
// the disk is started, when the extraction is to be durable: the disk then
// works while the transfer goes on, and the sync at the end finds little
// left to write.
const writebackEvery = 8 << 20

// writebackFrom is the size from which a file's writeback is started when
// it is complete.
const writebackFrom = 1 << 20

// outFile is a regular file being extracted.
type outFile interface {
	io.Writer
	Fd() uintptr
	Close() error
}

// writeback passes writes on to f and starts the writeback of each
// writebackEvery bytes (on Linux; elsewhere it only writes).
type writeback struct {
	f        outFile
	off, due int64
}

func (w *writeback) Write(p []byte) (int, error) {
	n, err := w.f.Write(p)
	w.off += int64(n)
	if w.off-w.due >= writebackEvery {
		startWriteback(w.f.Fd(), w.due, w.off-w.due)
		w.due = w.off
	}
	return n, err
}

// finish starts the writeback of what is left of a file of at least
// writebackFrom bytes. Smaller files are left to the sync at the end, which
// writes them together: starting the writeback of each of 100,000 small
// files took their extraction here from 5.5 s to 9 s (each start is a
// request to the disk), and saved only 0.5 s of the final sync.
// It reports whether the file counted as large.
func (w *writeback) finish() bool {
	if w.off < writebackFrom {
		return false
	}
	if w.off > w.due {
		startWriteback(w.f.Fd(), w.due, w.off-w.due)
	}
	return true
}

var _ io.Writer = (*writeback)(nil)

// flushEvery is how much small-file data an extraction writes between
// background flushes of the file system.
const flushEvery = 32 << 20

// flusher writes an extraction's small files to the disk while the transfer
// goes on: after each flushEvery bytes of them it starts a sync of the file
// system in the background (on Linux; elsewhere files are synced one by one
// at the end), unless one is still running. Over 100,000 small files this
// took the final sync, which the acknowledgement waits for, from 0.8-1.4 s
// to 15 ms here; extraction and sync together went from 3.0-4.4 s to
// 3.3-3.5 s even with no transfer to overlap.
type flusher struct {
	path    string // a folder on the file system
	pending int64
	wg      sync.WaitGroup
	running bool
	mu      sync.Mutex
}

// wrote counts n bytes written to small files.
func (f *flusher) wrote(n int64) {
	f.pending += n
	if f.pending < flushEvery {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.running {
		return
	}
	f.pending, f.running = 0, true
	f.wg.Go(func() {
		flushAll(f.path)
		f.mu.Lock()
		f.running = false
		f.mu.Unlock()
	})
}

// wait waits for the flush that is running, if any.
func (f *flusher) wait() { f.wg.Wait() }
