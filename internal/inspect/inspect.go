// Package inspect reads a machine's hardware from /sys and /proc, with no
// outside tool, for the inspection agent (provisiond agent) that reports it
// to the daemon. Everything is read under a root directory: "/" on a machine,
// a fixture tree in tests. Parts the kernel does not expose (no SMBIOS on a
// board, no udev to make /dev/disk/by-id) are left empty; a missing /proc or
// /sys is an error, as the report would then say nothing true.
package inspect

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/provisiond/provisiond/internal/store"
)

// Collect reads the hardware of the machine whose filesystem root is root.
// ReportedAt is left zero: the daemon stamps the report when it arrives, by
// its own clock.
func Collect(root string) (store.Hardware, error) {
	var hw store.Hardware
	var err error
	hw.System = readSystem(root)
	if hw.CPU, err = readCPU(root); err != nil {
		return store.Hardware{}, err
	}
	if hw.Memory, err = readMemory(root); err != nil {
		return store.Hardware{}, err
	}
	if hw.Disks, err = readDisks(root); err != nil {
		return store.Hardware{}, err
	}
	if hw.NICs, err = readNICs(root); err != nil {
		return store.Hardware{}, err
	}
	return hw, nil
}

// readValue returns the trimmed contents of a one-value sysfs or procfs file,
// and "" if it cannot be read: sysfs attributes are optional (a disk without
// a serial has no serial file) and some refuse reading in some states (the
// speed of a NIC that is down).
func readValue(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// readInt is readValue as an integer, and ok false if it is absent or not one.
func readInt(path string) (n int64, ok bool) {
	n, err := strconv.ParseInt(readValue(path), 10, 64)
	return n, err == nil
}

// linkBase is the last element of the symlink at path's target, "" if it is
// not a link: a driver's name from device/driver.
func linkBase(path string) string {
	t, err := os.Readlink(path)
	if err != nil {
		return ""
	}
	return filepath.Base(t)
}

// exists reports whether path exists, not following a final symlink: a
// sysfs "device" link counts even when its target lies outside a fixture.
func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

// readDir lists a directory that must exist, with a hint when it is a
// filesystem the kernel mounts: an initramfs that forgot to mount /sys or
// /proc is the usual cause.
func readDir(root, dir string) ([]fs.DirEntry, error) {
	ents, err := os.ReadDir(filepath.Join(root, dir))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w%s", dir, err, mountHint(err))
	}
	return ents, nil
}

// mountHint says what a missing /proc or /sys file most likely means.
func mountHint(err error) string {
	if errors.Is(err, fs.ErrNotExist) {
		return " (are /proc and /sys mounted?)"
	}
	return ""
}
