package inspect

import (
	"path/filepath"

	"github.com/provisiond/provisiond/internal/store"
)

// readNICs lists the network interfaces in /sys/class/net backed by
// hardware (a "device" link): not lo, bridges, bonds, veth or tunnels.
// Speed and link are as the kernel sees them now: an interface the initramfs
// did not bring up reports no link and speed 0.
func readNICs(root string) ([]store.NIC, error) {
	ents, err := readDir(root, "sys/class/net")
	if err != nil {
		return nil, err
	}
	var out []store.NIC
	for _, e := range ents {
		dir := filepath.Join(root, "sys/class/net", e.Name())
		if !exists(filepath.Join(dir, "device")) {
			continue
		}
		nic := store.NIC{
			Name:   e.Name(),
			MAC:    readValue(filepath.Join(dir, "address")),
			Driver: linkBase(filepath.Join(dir, "device/driver")),
			// carrier cannot be read while the interface is down.
			Link: readValue(filepath.Join(dir, "carrier")) == "1" || readValue(filepath.Join(dir, "operstate")) == "up",
		}
		// speed is -1 or unreadable without link, and absent on virtio
		// before Linux 4.x.
		if s, ok := readInt(filepath.Join(dir, "speed")); ok && s > 0 {
			nic.Speed = int(s)
		}
		out = append(out, nic)
	}
	return out, nil
}
