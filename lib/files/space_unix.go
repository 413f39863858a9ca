//go:build linux || darwin

package files

import "golang.org/x/sys/unix"

// freeSpace is what this user may still write on the file system of dir
// (root also the blocks reserved for it).
func freeSpace(dir string) (int64, bool) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, false
	}
	blocks := uint64(st.Bavail)
	if unix.Geteuid() == 0 {
		blocks = uint64(st.Bfree)
	}
	return int64(blocks) * int64(st.Bsize), true
}
