//go:build !linux

package archive

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// folders creates the regular files of an extraction through its os.Root.
type folders struct {
	root *os.Root
}

// close does nothing here.
func (d *folders) close() {}

// create creates the regular file key with mode perm; it must not exist.
func (d *folders) create(key string, perm fs.FileMode) (outFile, error) {
	return d.root.OpenFile(filepath.FromSlash(key), os.O_WRONLY|os.O_CREATE|os.O_EXCL|oNoFollow, perm)
}

// reopen opens the existing regular file key to write after its first
// size bytes (what is beyond is cut), with the permission bits perm.
func (d *folders) reopen(key string, perm fs.FileMode, size int64) (outFile, error) {
	f, err := d.root.OpenFile(filepath.FromSlash(key), os.O_WRONLY|oNoFollow, 0)
	if err != nil {
		return nil, err
	}
	info, err := f.Stat()
	switch {
	case err != nil:
	case !info.Mode().IsRegular() || info.Size() < size:
		err = fmt.Errorf("reopen %s: not the file held", key)
	default:
		if err = f.Chmod(perm); err == nil {
			if err = f.Truncate(size); err == nil {
				_, err = f.Seek(size, io.SeekStart)
			}
		}
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// modeOf is the permission bits of the open file f.
func modeOf(f outFile) (fs.FileMode, error) {
	info, err := f.(*os.File).Stat()
	if err != nil {
		return 0, err
	}
	return info.Mode().Perm(), nil
}

// setModTime sets the modification time of the file key.
func (d *folders) setModTime(key string, mtime time.Time) error {
	return d.root.Chtimes(filepath.FromSlash(key), time.Time{}, mtime)
}

// openToSend opens the file name in the folder dir (nil: name is a path)
// for reading, following a symlink only with follow, and returns its
// status.
func openToSend(dir *os.File, name string, follow bool) (io.ReadCloser, fileStat, error) {
	if dir != nil {
		name = filepath.Join(dir.Name(), name)
	}
	flags := os.O_RDONLY
	if !follow {
		flags |= oNoFollow
	}
	f, err := os.OpenFile(name, flags, 0)
	if err != nil {
		return nil, fileStat{}, err
	}
	info, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fileStat{}, err
	}
	return f, fileStat{mode: info.Mode(), size: info.Size(), mtime: info.ModTime()}, nil
}
