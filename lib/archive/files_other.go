//go:build !linux

package archive

import (
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

// setModTime sets the modification time of the file key.
func (d *folders) setModTime(key string, mtime time.Time) error {
	return d.root.Chtimes(filepath.FromSlash(key), time.Time{}, mtime)
}

// openToSend opens the file name in the folder dir (nil: name is a path)
// for reading, without following a symlink, and returns its status.
func openToSend(dir *os.File, name string) (io.ReadCloser, fileStat, error) {
	if dir != nil {
		name = filepath.Join(dir.Name(), name)
	}
	f, err := os.OpenFile(name, os.O_RDONLY|oNoFollow, 0)
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
