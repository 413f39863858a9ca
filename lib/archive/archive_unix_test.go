//go:build unix

package archive

import "syscall"

// mkfifo creates a FIFO for tests of unsupported types.
func mkfifo(path string) error { return syscall.Mkfifo(path, 0o644) }
