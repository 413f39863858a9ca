//go:build linux

package linkem

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// OpenTAP creates the TAP device name in the caller's network namespace and
// returns it open: each Read returns one Ethernet frame sent to the device,
// each Write hands one to it. The device lives as long as the file is open,
// also after it was moved to another namespace (`ip link set NAME netns
// PID`); it is down until it is set up.
func OpenTAP(name string) (*os.File, error) {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("open /dev/net/tun: %w", err)
	}
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("tap %s: %w", name, err)
	}
	ifr.SetUint16(unix.IFF_TAP | unix.IFF_NO_PI)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("create tap %s: %w", name, err)
	}
	// Non-blocking, so that the runtime's poller serves Read and Write and
	// Close unblocks a pending Read.
	return os.NewFile(uintptr(fd), "/dev/net/tun:"+name), nil
}
