//go:build linux || darwin

package archive

import (
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
