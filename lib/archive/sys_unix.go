//go:build linux || darwin

package archive

import (
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// oNoFollow makes an open fail on a symlink.
const oNoFollow = syscall.O_NOFOLLOW

// lutimes sets the modification time of path without following a symlink.
func lutimes(path string, mtime time.Time) error {
	tv := unix.NsecToTimeval(mtime.UnixNano())
	return unix.Lutimes(path, []unix.Timeval{tv, tv})
}

// tryLock takes an exclusive lock on f, without waiting; false when another
// process (or another open file) holds one. Closing f releases it.
func tryLock(f *os.File) bool {
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err != unix.EINTR {
			return err == nil
		}
	}
}
