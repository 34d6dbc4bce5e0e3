package e2e

import (
	"bufio"
	"bytes"
	"compress/gzip"
	_ "embed"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// The markers the test OS prints around the Ignition config it fetched.
const (
	ignitionBegin = "PVD-IGNITION-BEGIN"
	ignitionEnd   = "PVD-IGNITION-END"
	testOSFailure = "PVD-E2E-FAIL"
)

var (
	//go:embed testdata/init.sh
	initScript []byte
	//go:embed testdata/udhcpc.script
	udhcpcScript []byte
)

// virtioModules are the modules the cloud kernel needs to drive QEMU's
// virtio-net NIC, in the order they must be loaded (each depends only on the
// ones before it). Those built into the kernel are skipped.
var virtioModules = []string{
	"virtio_ring", "virtio", "virtio_pci_modern_dev", "virtio_pci_legacy_dev",
	"virtio_pci", "failover", "net_failover", "virtio_net",
}

// diskModules drive QEMU's virtio-blk disks, for a test OS that must see its
// disks (the inspection agent's); they load after virtioModules.
var diskModules = []string{"virtio_blk"}

// testOS is a kernel and an initramfs that, booted with ignition.config.url=,
// prints the config it fetched on the serial console, phones home to the URL
// the config names and reboots (see testdata/init.sh).
type testOS struct {
	// Dir holds exactly the two files Kernel and Initrd name, so it can be
	// served as an assets directory.
	Dir    string
	Kernel string // file name of the kernel in Dir
	Initrd string // file name of the gzipped newc initramfs in Dir
}

// findKernel returns the newest Debian cloud kernel on this host and its
// release, or ok=false when none is installed.
func findKernel() (path, release string, ok bool) {
	matches, _ := filepath.Glob("/boot/vmlinuz-*-cloud-amd64")
	if len(matches) == 0 {
		return "", "", false
	}
	path = matches[len(matches)-1] // Glob sorts; the last is the newest.
	return path, strings.TrimPrefix(filepath.Base(path), "vmlinuz-"), true
}

// buildTestOS writes the test OS into a fresh directory: the host's cloud
// kernel and an initramfs of busybox-static, the virtio modules of that kernel
// (and extraModules, loaded after them), and testdata/init.sh.
func buildTestOS(t *testing.T, kernel, release, busybox string, extraModules ...string) *testOS {
	t.Helper()
	return buildTestOSFrom(t, kernel, filepath.Join("/lib/modules", release), busybox, slices.Concat(virtioModules, extraModules))
}

// buildTestOSFrom is buildTestOS for any kernel: modDir is its module tree
// (of another architecture, an unpacked package's), modules what to load.
func buildTestOSFrom(t *testing.T, kernel, modDir, busybox string, modules []string) *testOS {
	t.Helper()
	tos := &testOS{Dir: t.TempDir(), Kernel: "vmlinuz", Initrd: "initramfs.gz"}
	// A copy rather than a symlink: a server may refuse to follow links out
	// of its assets directory.
	if err := copyFile(kernel, filepath.Join(tos.Dir, tos.Kernel)); err != nil {
		t.Fatalf("copy kernel: %v", err)
	}
	if err := writeInitramfs(filepath.Join(tos.Dir, tos.Initrd), modDir, busybox, modules); err != nil {
		t.Fatalf("build initramfs: %v", err)
	}
	return tos
}

// writeInitramfs writes the test OS's initramfs to path: busybox, init and
// the named modules (in load order) of the kernel whose module tree is modDir.
func writeInitramfs(path, modDir, busybox string, names []string) error {
	bb, err := os.ReadFile(busybox)
	if err != nil {
		return fmt.Errorf("read busybox: %w", err)
	}
	modules, err := loadModules(modDir, names)
	if err != nil {
		return err
	}

	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	zw := gzip.NewWriter(f)
	cw := &cpioWriter{w: zw}
	for _, dir := range []string{"bin", "sbin", "usr", "usr/bin", "usr/sbin", "dev", "proc", "sys", "tmp", "etc", "lib", "lib/modules"} {
		cw.dir(dir)
	}
	// The kernel opens /dev/console for init's stdio before init can mount
	// devtmpfs: without this node the serial console shows nothing from init.
	cw.charDev("dev/console", 0o600, 5, 1)
	cw.file("bin/busybox", 0o755, bb)
	cw.file("init", 0o755, initScript)
	cw.file("udhcpc.script", 0o755, udhcpcScript)
	var order strings.Builder
	for _, m := range modules {
		cw.file("lib/modules/"+m.name+".ko", 0o644, m.data)
		fmt.Fprintln(&order, m.name)
	}
	cw.file("etc/modules", 0o644, []byte(order.String()))
	cw.trailer()
	if cw.err != nil {
		return fmt.Errorf("write %s: %w", path, cw.err)
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return f.Close()
}

type module struct {
	name string
	data []byte // uncompressed .ko
}

// loadModules reads the named modules of the kernel whose module tree is dir,
// in the given order, leaving out those modules.builtin lists. Paths come
// from modules.dep, so the layout and compression of the tree do not matter.
func loadModules(dir string, names []string) ([]module, error) {
	builtin, err := moduleNames(filepath.Join(dir, "modules.builtin"))
	if err != nil {
		return nil, err
	}
	loadable, err := moduleNames(filepath.Join(dir, "modules.dep"))
	if err != nil {
		return nil, err
	}
	var mods []module
	for _, name := range names {
		if _, ok := builtin[name]; ok {
			continue
		}
		rel, ok := loadable[name]
		if !ok {
			return nil, fmt.Errorf("module %s is neither built into %s nor listed in its modules.dep", name, dir)
		}
		data, err := readModule(filepath.Join(dir, rel))
		if err != nil {
			return nil, fmt.Errorf("module %s: %w", name, err)
		}
		mods = append(mods, module{name: name, data: data})
	}
	return mods, nil
}

// moduleNames maps module names to their paths in a modules.builtin or
// modules.dep file (the path is the first field, "kernel/.../name.ko[.xz]").
func moduleNames(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	names := make(map[string]string)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		rel, _, _ := strings.Cut(sc.Text(), ":")
		base := filepath.Base(rel)
		name := base[:strings.Index(base+".ko", ".ko")]
		// modprobe treats '-' and '_' alike; the names above use '_'.
		names[strings.ReplaceAll(name, "-", "_")] = rel
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return names, nil
}

// readModule returns a module file uncompressed: busybox insmod loads plain
// ELF only. Debian 12 ships plain .ko; newer kernels ship .ko.xz or .ko.zst.
func readModule(path string) ([]byte, error) {
	switch filepath.Ext(path) {
	case ".ko":
		return os.ReadFile(path)
	case ".gz":
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		zr, err := gzip.NewReader(f)
		if err != nil {
			return nil, fmt.Errorf("gunzip %s: %w", path, err)
		}
		return io.ReadAll(zr)
	case ".xz":
		return decompressWith("xz", path)
	case ".zst":
		return decompressWith("zstd", path)
	}
	return nil, fmt.Errorf("unknown module compression: %s", path)
}

func decompressWith(tool, path string) ([]byte, error) {
	var stderr bytes.Buffer
	cmd := exec.Command(tool, "-dc", path)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("%s -dc %s: %w: %s", tool, path, err, stderr.Bytes())
	}
	return out, nil
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("copy %s to %s: %w", src, dst, err)
	}
	return out.Close()
}

// cpioWriter writes the "newc" cpio format the kernel unpacks as initramfs
// (Documentation/driver-api/early-userspace/buffer-format.rst). The first
// error sticks in err and turns later calls into no-ops.
type cpioWriter struct {
	w   io.Writer
	ino uint32
	err error
}

const (
	cpioDir  = 0o040000
	cpioFile = 0o100000
	cpioChar = 0o020000
)

func (c *cpioWriter) dir(name string) { c.entry(name, cpioDir|0o755, 0, 0, nil) }
func (c *cpioWriter) trailer()        { c.entry("TRAILER!!!", 0, 0, 0, nil) }
func (c *cpioWriter) file(name string, perm uint32, data []byte) {
	c.entry(name, cpioFile|perm, 0, 0, data)
}
func (c *cpioWriter) charDev(name string, perm, major, minor uint32) {
	c.entry(name, cpioChar|perm, major, minor, nil)
}

func (c *cpioWriter) entry(name string, mode, rdevMajor, rdevMinor uint32, data []byte) {
	if c.err != nil {
		return
	}
	c.ino++
	nlink := 1
	if mode&cpioDir != 0 {
		nlink = 2
	}
	// Fields: magic, ino, mode, uid, gid, nlink, mtime, filesize, devmajor,
	// devminor, rdevmajor, rdevminor, namesize (with the NUL), check.
	hdr := fmt.Sprintf("070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		c.ino, mode, 0, 0, nlink, 0, len(data), 0, 0, rdevMajor, rdevMinor, len(name)+1, 0)
	// The name is padded so that header+name, and then the data, each end
	// on a 4-byte boundary.
	var buf bytes.Buffer
	buf.WriteString(hdr)
	buf.WriteString(name)
	buf.WriteByte(0)
	buf.Write(make([]byte, pad4(buf.Len())))
	buf.Write(data)
	buf.Write(make([]byte, pad4(len(data))))
	_, c.err = c.w.Write(buf.Bytes())
}

func pad4(n int) int { return (4 - n%4) % 4 }
