//go:build linux || darwin

package archive

import (
	"io/fs"
	"os"
	"syscall"
)

// permissions are who this process is, to tell from a file's mode bits,
// owner and group whether it may read it, without a system call per file.
type permissions struct {
	uid    uint32
	groups map[uint32]bool
}

// currentPermissions are this process's; nil for root, who may read all.
func currentPermissions() *permissions {
	uid := os.Geteuid()
	if uid == 0 {
		return nil
	}
	p := &permissions{uid: uint32(uid), groups: map[uint32]bool{uint32(os.Getegid()): true}}
	if gids, err := os.Getgroups(); err == nil {
		for _, g := range gids {
			p.groups[uint32(g)] = true
		}
	}
	return p
}

// readable says whether the file of info may be read (and, a folder,
// entered) as the kernel would decide from its mode bits; ACLs are not
// seen, and a file they forbid fails later, when it is opened.
func (p *permissions) readable(info fs.FileInfo) bool {
	st, ok := info.Sys().(*syscall.Stat_t)
	if p == nil || !ok {
		return true
	}
	need := fs.FileMode(0o4)
	if info.IsDir() {
		need = 0o5
	}
	perm := info.Mode().Perm()
	switch {
	case st.Uid == p.uid:
		perm >>= 6
	case p.groups[st.Gid]:
		perm >>= 3
	}
	return perm&need == need
}
