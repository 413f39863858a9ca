//go:build linux || darwin || freebsd || netbsd || openbsd

package pipe

import "syscall"

// mapMemory maps size bytes of anonymous memory, outside the Go heap; nil
// if the system refuses.
func mapMemory(size int) ([]byte, func()) {
	mem, err := syscall.Mmap(-1, 0, size, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		return nil, nil
	}
	return mem, func() { syscall.Munmap(mem) }
}
