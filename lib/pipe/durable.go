package pipe

import (
	"fmt"
	"io"
	"os"
	"time"
)

// SyncFile writes w to stable storage if it is a regular file (a
// receiver's stdout redirected to a file), and reports whether it was one:
// a pipe or a terminal cannot be synced.
func SyncFile(w io.Writer) (bool, error) {
	f, ok := w.(*os.File)
	if !ok {
		return false, nil
	}
	info, err := f.Stat()
	if err != nil || !info.Mode().IsRegular() {
		return false, nil
	}
	if err := f.Sync(); err != nil {
		return true, fmt.Errorf("writing the output to the disk: %w", err)
	}
	return true, nil
}

// SyncCommit returns an Options.Commit that syncs w with SyncFile and, if
// it was a file, tells debugf (if set) how long that took.
func SyncCommit(w io.Writer, debugf func(format string, args ...any)) func() error {
	return func() error {
		start := time.Now()
		synced, err := SyncFile(w)
		if synced && err == nil && debugf != nil {
			debugf("output written to the disk in %v", time.Since(start).Round(time.Millisecond))
		}
		return err
	}
}
