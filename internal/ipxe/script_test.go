package ipxe

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite golden files under testdata/")

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs from golden file:\n--- got\n%s--- want\n%s", name, got, want)
	}
}

func TestScripts(t *testing.T) {
	for _, tc := range []struct {
		name, file string
		script     string
	}{
		{"chain", "chain.ipxe", ChainScript("http://10.99.0.2:8080")},
		// One script serves both firmware kinds: BIOS ignores initrd=, a UEFI
		// EFI-stub kernel needs it to find the initrds loaded with --name.
		{"boot with two initrds", "boot.ipxe", BootScript(Boot{
			Comment: "machine node2, profile fcos-live",
			Kernel:  "http://10.99.0.2:8080/assets/fcos/kernel",
			Initrds: []string{"http://10.99.0.2:8080/assets/fcos/initramfs.img", "http://10.99.0.2:8080/assets/fcos/rootfs.img"},
			Args:    []string{"console=ttyS0", "ignition.config.url=http://10.99.0.2:8080/ignition?mac=52-54-00-00-00-02&token=T"},
		})},
		{"generic config named by the args", "template.ipxe", BootScript(Boot{
			Kernel:    "http://10.99.0.2:8080/assets/debian/linux",
			Args:      []string{"ds=nocloud-net;s=${config-url}&f="},
			ConfigURL: "http://10.99.0.2:8080/config?mac=52-54-00-00-00-03&token=T",
		})},
		{"duplicate initrd names", "dup-initrds.ipxe", BootScript(Boot{
			Kernel:  "https://mirror.example/k",
			Initrds: []string{"https://a.example/x/initrd.img?v=1", "https://b.example/y/initrd.img"},
		})},
		{"local boot", "local.ipxe", LocalBootScript("machine node1 is installed")},
	} {
		t.Run(tc.name, func(t *testing.T) { golden(t, tc.file, tc.script) })
	}
}

// The retry message says what failed: every command of a boot script that
// can fail is preceded by the step naming its file, and the chain script
// echoes that step, not a fixed "could not fetch the script".
func TestRetryMessage(t *testing.T) {
	chain := ChainScript("http://h:1")
	if !strings.Contains(chain, "set "+StepSetting+" fetch the script for this machine\nchain ") ||
		!strings.Contains(chain, "echo provisiond: could not ${"+StepSetting+"}, retrying in 10 s\n") {
		t.Errorf("chain script does not report the step that failed:\n%s", chain)
	}
	script := BootScript(Boot{Kernel: "http://h:1/assets/k", Initrds: []string{"http://h:1/assets/i1", "http://h:1/assets/i2"}})
	lines := strings.Split(script, "\n")
	want := map[string]string{"kernel": "fetch the kernel http://h:1/assets/k", "boot": "boot the kernel http://h:1/assets/k"}
	checked := 0
	for i, l := range lines {
		cmd, rest, _ := strings.Cut(l, " ")
		var step string
		switch cmd {
		case "kernel", "boot":
			step = want[cmd]
		case "initrd":
			step = "fetch the initrd " + rest[strings.LastIndex(rest, " ")+1:]
		default:
			continue
		}
		checked++
		if i == 0 || lines[i-1] != "set "+StepSetting+" "+step {
			t.Errorf("%q is not preceded by the step %q:\n%s", l, step, script)
		}
	}
	if checked != 4 {
		t.Errorf("checked %d commands; want kernel, 2 initrds and boot:\n%s", checked, script)
	}
}
