package inspect

import (
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/provisiond/provisiond/internal/store"
)

// readDisks lists the disks in /sys/block: devices backed by hardware (a
// "device" link), so not loop, ram, zram, dm- or md; not optical or floppy
// drives, NVMe multipath's hidden per-path nodes, eMMC boot and RPMB
// partitions, nor empty card readers (size 0).
func readDisks(root string) ([]store.Disk, error) {
	ents, err := readDir(root, "sys/block")
	if err != nil {
		return nil, err
	}
	byID := diskLinks(root)
	var out []store.Disk
	for _, e := range ents {
		name := e.Name()
		dir := filepath.Join(root, "sys/block", name)
		if !isDisk(dir, name) {
			continue
		}
		sectors, _ := readInt(filepath.Join(dir, "size"))
		if sectors <= 0 {
			continue
		}
		out = append(out, store.Disk{
			Name:       name,
			Model:      firstValue(dir, "device/model", "device/name"), // name: MMC
			Serial:     diskSerial(dir),
			WWN:        diskWWN(dir),
			Size:       uint64(sectors) * 512, // always 512-byte units, whatever the sector size
			Rotational: readValue(filepath.Join(dir, "queue/rotational")) == "1",
			ByID:       byID[name],
		})
	}
	return out, nil
}

// isDisk reports whether the block device name in /sys/block is a disk.
func isDisk(dir, name string) bool {
	if !exists(filepath.Join(dir, "device")) || readValue(filepath.Join(dir, "hidden")) == "1" {
		return false
	}
	switch {
	case strings.HasPrefix(name, "sr"), strings.HasPrefix(name, "fd"):
		return false
	case strings.HasPrefix(name, "mmcblk"):
		// mmcblk0boot0, mmcblk0rpmb: the eMMC's hardware partitions.
		return !strings.Contains(name, "boot") && !strings.HasSuffix(name, "rpmb")
	}
	return true
}

// diskSerial is a disk's serial number: virtio-blk's serial, NVMe's
// device/serial, or the unit serial (VPD page 0x80) SCSI and SATA disks
// expose, which libata fills from the ATA serial.
func diskSerial(dir string) string {
	if s := firstValue(dir, "serial", "device/serial"); s != "" {
		return s
	}
	return vpdSerial(filepath.Join(dir, "device/vpd_pg80"))
}

// vpdSerial parses a VPD page 0x80 (Unit Serial Number): a 4-byte header
// whose last byte is the length, then the serial, space-padded.
func vpdSerial(path string) string {
	b, err := os.ReadFile(path)
	if err != nil || len(b) < 4 || b[1] != 0x80 {
		return ""
	}
	n := min(int(b[3]), len(b)-4)
	return strings.TrimSpace(strings.Trim(string(b[4:4+n]), "\x00"))
}

// diskWWN is a disk's world wide name as lsblk shows it: a SCSI or SATA
// NAA identifier as 0x..., an NVMe EUI-64 or NGUID as eui.... The kernel's
// wwid may be a t10 vendor identifier, which names no disk uniquely: none.
func diskWWN(dir string) string {
	for _, f := range []string{"wwid", "device/wwid"} {
		w := readValue(filepath.Join(dir, f))
		switch {
		case w == "":
			continue
		case strings.HasPrefix(w, "naa."):
			return "0x" + strings.TrimPrefix(w, "naa.")
		case strings.HasPrefix(w, "t10."):
			return ""
		default:
			return w
		}
	}
	return ""
}

// diskLinks maps each disk's kernel name to the /dev/disk/by-id links that
// resolve to it, sorted. udev makes them; an initramfs without udev has
// none, and every disk then has no links.
func diskLinks(root string) map[string][]string {
	const dir = "/dev/disk/by-id"
	ents, err := os.ReadDir(filepath.Join(root, dir))
	if err != nil {
		return nil
	}
	out := map[string][]string{}
	for _, e := range ents {
		t := linkBase(filepath.Join(root, dir, e.Name()))
		if t != "" {
			out[t] = append(out[t], dir+"/"+e.Name())
		}
	}
	for _, links := range out {
		slices.Sort(links)
	}
	return out
}

// firstValue is the first of dir's files that has a value.
func firstValue(dir string, files ...string) string {
	for _, f := range files {
		if v := readValue(filepath.Join(dir, f)); v != "" {
			return v
		}
	}
	return ""
}
