package archive

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"

	"golang.org/x/sys/unix"
)

// fewEntries is how many files and folders a tree may hold to be synced
// one by one; a larger tree gets one syncfs(2). An fsync costs a journal
// commit, which adds up over thousands of small files; a syncfs also
// writes what other programs left unwritten on the file system (a second
// or more on a busy machine), which a few fsyncs do not wait for.
const fewEntries = 64

// syncTree writes everything under path to stable storage: one fsync per
// entry when there are few, else the whole file system at once.
func syncTree(path string) error {
	var entries []string
	err := filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if len(entries) == fewEntries {
			entries = nil
			return filepath.SkipAll
		}
		if d.Type().IsRegular() || d.IsDir() {
			entries = append(entries, p)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("sync %s: %w", path, err)
	}
	if entries != nil {
		// Files first, then their folders, deepest first.
		slices.Reverse(entries)
		for _, p := range entries {
			if err := syncDir(p); errors.Is(err, fs.ErrPermission) {
				return syncAll(path) // an entry without read permission for us
			} else if err != nil {
				return err
			}
		}
		return nil
	}
	return syncAll(path)
}

// syncAll writes the file system that holds path to stable storage.
func syncAll(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("sync %s: %w", path, err)
	}
	defer f.Close()
	if err := unix.Syncfs(int(f.Fd())); err != nil {
		return fmt.Errorf("sync %s: %w", path, err)
	}
	return nil
}

// syncDir writes the directory (or file) path to stable storage.
func syncDir(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("sync %s: %w", path, err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", path, err)
	}
	return nil
}

// startWriteback asks the kernel to start writing n bytes of f at off to
// the disk, without waiting; a failure only means it starts later.
func startWriteback(f *os.File, off, n int64) {
	unix.SyncFileRange(int(f.Fd()), off, n, unix.SYNC_FILE_RANGE_WRITE)
}
