// Command genprofiles writes a profiles directory with N Machines for benchmarks:
// one Butane-templated Flatcar profile, every Machine with its own hostname, so
// every Machine's Ignition is a distinct translation.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"log"
	"os"
	"path/filepath"
)

const profile = `kind: Profile
name: worker
boot:
  kernel: /assets/flatcar/flatcar_production_pxe.vmlinuz
  initrd: [/assets/flatcar/flatcar_production_pxe_image.cpio.gz]
  args: [flatcar.first_boot=yes, console=ttyS0]
config:
  butane: worker.bu
`

const butane = `variant: flatcar
version: 1.0.0
passwd:
  users:
    - name: core
      ssh_authorized_keys: ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBenchmarkKeyBenchmarkKeyBenchmarkKey00 bench"]
storage:
  files:
    - path: /etc/hostname
      mode: 0644
      contents:
        inline: "{{ .metadata.hostname }}"
systemd:
  units:
    - name: hello.service
      enabled: true
      contents: |
        [Unit]
        Description=hello from {{ .machine.name }}
        [Service]
        Type=oneshot
        ExecStart=/usr/bin/echo {{ .machine.mac }}
        [Install]
        WantedBy=multi-user.target
`

func main() {
	n := flag.Int("n", 10000, "number of machines")
	dir := flag.String("dir", "bench-profiles", "output directory")
	flag.Parse()
	if err := generate(*dir, *n); err != nil {
		log.Fatal(err)
	}
}

// MAC returns the i-th benchmark machine's MAC address.
func MAC(i int) string {
	return fmt.Sprintf("02:00:00:%02x:%02x:%02x", i>>16&0xff, i>>8&0xff, i&0xff)
}

func generate(dir string, n int) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "profiles.yaml"), []byte(profile), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "worker.bu"), []byte(butane), 0o644); err != nil {
		return err
	}
	f, err := os.Create(filepath.Join(dir, "machines.yaml"))
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	for i := 0; i < n; i++ {
		fmt.Fprintf(w, "---\nkind: Machine\nname: node%05d\nmatch: {mac: %q}\nprofile: worker\nmetadata: {hostname: node%05d.bench}\n", i, MAC(i), i)
	}
	if err := w.Flush(); err != nil {
		return err
	}
	return f.Close()
}
