//go:build !unix

package archive

import "errors"

// mkfifo is not available here.
func mkfifo(string) error { return errors.ErrUnsupported }
