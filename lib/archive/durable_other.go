//go:build !linux

package archive

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
)

// syncTree writes every file and directory under path to stable storage,
// one fsync each (F_FULLFSYNC on macOS, through os.File.Sync).
func syncTree(path string) error {
	return filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("sync %s: %w", p, err)
		}
		switch {
		case d.Type().IsRegular():
			err = syncFile(p)
		case d.IsDir():
			err = syncDir(p)
		}
		if errors.Is(err, fs.ErrPermission) {
			return nil // an entry without read permission for us: left to the system
		}
		return err
	})
}

// syncDir writes the directory path's entries to stable storage; Windows
// cannot open a directory for that, and skips it.
func syncDir(path string) error {
	if runtime.GOOS == "windows" {
		return nil
	}
	return syncFile(path)
}

func syncFile(path string) error {
	flag := os.O_RDONLY
	if runtime.GOOS == "windows" {
		flag = os.O_RDWR // FlushFileBuffers needs write access
	}
	f, err := os.OpenFile(path, flag, 0)
	if runtime.GOOS == "windows" && errors.Is(err, fs.ErrPermission) {
		return nil // a read-only file: Windows cannot flush it from here
	}
	if err != nil {
		return fmt.Errorf("sync %s: %w", path, err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", path, err)
	}
	return nil
}

// startWriteback does nothing here: the sync at the end writes everything.
func startWriteback(*os.File, int64, int64) {}
