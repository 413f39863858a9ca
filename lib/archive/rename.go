package archive

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
)

// renameCheckFirst renames oldpath to newpath unless newpath exists, in two
// steps: the fallback of renameNoReplace where the system has no atomic
// no-replace rename.
func renameCheckFirst(oldpath, newpath string) error {
	if _, err := os.Lstat(newpath); err == nil {
		return &os.LinkError{Op: "rename", Old: oldpath, New: newpath, Err: fs.ErrExist}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("checking %s: %w", newpath, err)
	}
	return os.Rename(oldpath, newpath)
}
