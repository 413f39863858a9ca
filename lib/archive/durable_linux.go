package archive

import (
	"errors"
	"fmt"
	"io/fs"
	"os"

	"golang.org/x/sys/unix"
)

// fewEntries is how many files and folders a tree may hold to be synced
// one by one; a larger tree gets one syncfs(2). An fsync costs a journal
// commit, which adds up over thousands of small files; a syncfs also
// writes what other programs left unwritten on the file system (a second
// or more on a busy machine), which a few fsyncs do not wait for.
const fewEntries = 64

// syncTree writes everything under path to stable storage: one fsync per
// entry when there are few, else the whole file system at once (also when
// an entry cannot be opened for its fsync: a file of mode 000).
func syncTree(path string) error {
	many, err := syncEntries(path, fewEntries, false)
	if many || errors.Is(err, fs.ErrPermission) {
		return syncAll(path)
	}
	return err
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

// startWriteback asks the kernel to start writing n bytes of the file fd at off to
// the disk, without waiting; a failure only means it starts later.
func startWriteback(fd uintptr, off, n int64) {
	unix.SyncFileRange(int(fd), off, n, unix.SYNC_FILE_RANGE_WRITE)
}

// flushAll writes the file system that holds path to stable storage, as a
// head start for the sync at the end; it may fail.
func flushAll(path string) { syncAll(path) }
