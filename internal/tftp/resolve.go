package tftp

import (
	"errors"
	"fmt"
	"path"
	"path/filepath"
	"strings"
)

// ErrInvalidName is returned for a requested file name that could name
// something outside the served root, or nothing at all.
var ErrInvalidName = errors.New("invalid file name")

// Resolve turns the file name of a read request into a clean, slash-separated
// name relative to the served root, or fails with ErrInvalidName. It is pure:
// the caller opens the result through os.Root, which also stops symlinks from
// leaving the root, so the root itself is not needed here.
//
// One leading "/" is stripped: DHCP configs written for tftp-hpa (-s) and
// dnsmasq commonly hand out "/pxelinux.0" meaning "in the TFTP root", and
// firmware requests exactly what DHCP said. Anything still absolute after
// that ("//x") is rejected, as are "..", NUL and backslashes. Backslashes are
// not mapped to "/" (Windows-style clients send "boot\x86\wdsnbp.com"; tftp-hpa
// needs a remap rule for them): refusing them means a backslash can never act
// as a separator in a name we check and then a separator where it is opened.
func Resolve(requested string) (string, error) {
	name := strings.TrimPrefix(requested, "/")
	switch {
	case name == "":
		return "", fmt.Errorf("%q: empty: %w", requested, ErrInvalidName)
	case strings.ContainsRune(name, 0):
		return "", fmt.Errorf("%q: contains NUL: %w", requested, ErrInvalidName)
	case strings.ContainsRune(name, '\\'):
		return "", fmt.Errorf("%q: contains a backslash: %w", requested, ErrInvalidName)
	case !filepath.IsLocal(name):
		return "", fmt.Errorf("%q: not inside the root: %w", requested, ErrInvalidName)
	}
	// IsLocal accepts "a/../b"; no client has a reason to send "..", so any
	// such element is refused rather than resolved.
	for _, elem := range strings.Split(name, "/") {
		if elem == ".." {
			return "", fmt.Errorf("%q: contains \"..\": %w", requested, ErrInvalidName)
		}
	}
	clean := path.Clean(name)
	if clean == "." {
		return "", fmt.Errorf("%q: names the root itself: %w", requested, ErrInvalidName)
	}
	return clean, nil
}
