package dhcp

import (
	"encoding/hex"
	"errors"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"testing"
)

// TestPerfdhcpBootStorm is the load requirement: perfdhcp sends PXE DISCOVERs at
// 1,000/s for 10 s and every one gets an OFFER. perfdhcp acts as a relay (giaddr set,
// replies counted on giaddr:67), so this measures the relayed path. Both ends live in
// network namespaces the test creates; nothing leaves them.
//
// PROVISIOND_PERFDHCP_RATE overrides the rate, to find the saturation point.
func TestPerfdhcpBootStorm(t *testing.T) {
	srvNS, cliNS := vethNamespaces(t)
	perfdhcp := lookTool(t, "perfdhcp")
	rate := perfRate(t)
	const period = 10 // seconds

	watch := startNetnsServer(t, srvNS)

	guid := make([]byte, 16)
	for i := range guid {
		guid[i] = byte(i)
	}
	args := []string{"netns", "exec", cliNS, perfdhcp, "-4", "-l", "vcli", "-i",
		"-r", strconv.Itoa(rate), "-p", strconv.Itoa(period), "-R", "1000", "-W", "2000000",
		"-o", "60," + hex.EncodeToString([]byte(vcBIOS)),
		"-o", "93,0000",
		"-o", "94,010201",
		"-o", "97,00" + hex.EncodeToString(guid),
		"10.231.0.1",
	}
	out, err := exec.CommandContext(t.Context(), lookTool(t, "ip"), args...).CombinedOutput()
	t.Logf("perfdhcp %v:\n%s", args[3:], out)
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatalf("run perfdhcp: %v", err)
	}

	sent, recv := perfCount(t, out, "sent packets"), perfCount(t, out, "received packets")
	t.Logf("rate %d/s for %d s: %d DISCOVERs sent, %d OFFERs received (%.0f offers/s), server logged %d offers, avg delay %s ms",
		rate, period, sent, recv, float64(recv)/period, watch.count(), perfField(out, "avg delay"))
	if sent < rate*period*9/10 {
		t.Errorf("perfdhcp sent only %d DISCOVERs, want about %d: the load was not applied", sent, rate*period)
	}
	if recv != sent {
		t.Errorf("received %d offers for %d DISCOVERs: %d dropped", recv, sent, sent-recv)
	}
	if exit != nil {
		t.Errorf("perfdhcp exited %d (3 means incomplete exchanges)", exit.ExitCode())
	}
}

// perfRate is the rate perfdhcp sends at: 1,000/s, or PROVISIOND_PERFDHCP_RATE.
func perfRate(t *testing.T) int {
	t.Helper()
	v := os.Getenv("PROVISIOND_PERFDHCP_RATE")
	if v == "" {
		return 1000
	}
	r, err := strconv.Atoi(v)
	if err != nil || r <= 0 {
		t.Fatalf("PROVISIOND_PERFDHCP_RATE=%q: want a positive integer", v)
	}
	return r
}

// perfCount reads the first "<label>: N" of perfdhcp's report: the DISCOVER-OFFER section.
func perfCount(t *testing.T, out []byte, label string) int {
	t.Helper()
	n, err := strconv.Atoi(perfField(out, label))
	if err != nil {
		t.Fatalf("perfdhcp output has no %q count", label)
	}
	return n
}

func perfField(out []byte, label string) string {
	m := regexp.MustCompile(regexp.QuoteMeta(label) + `: ([0-9.]+)`).FindSubmatch(out)
	if m == nil {
		return ""
	}
	return string(m[1])
}
