package main

import (
	"net/url"
	"testing"
	"time"

	"github.com/provisiond/provisiond/internal/ipxe"
)

// The config URL is read out of a script as internal/ipxe renders it, so a
// change of the script's shape breaks this test, not a benchmark run.
func TestConfigURL(t *testing.T) {
	other, _ := url.Parse("http://127.0.0.1:9002")
	cases := []struct {
		name      string
		script    string
		wantURL   string
		wantToken string
		wantErr   bool
	}{
		{
			name: "boot with config",
			script: ipxe.BootScript(ipxe.Boot{Kernel: "http://127.0.0.1:9001/assets/k", Initrds: []string{"http://127.0.0.1:9001/assets/i"},
				ConfigURL: "http://127.0.0.1:9001/ignition?mac=02-00-00-00-00-07&token=ABC"}),
			wantURL:   "http://127.0.0.1:9002/ignition?mac=02-00-00-00-00-07&token=ABC",
			wantToken: "ABC",
		},
		{name: "boot without config", script: ipxe.BootScript(ipxe.Boot{Kernel: "http://x/k"}), wantErr: true},
		{name: "local boot", script: ipxe.LocalBootScript("installed"), wantErr: true},
		{name: "config URL without token", script: ipxe.BootScript(ipxe.Boot{Kernel: "http://x/k", ConfigURL: "http://x/ignition?mac=m"}), wantErr: true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			u, tok, err := configURL([]byte(c.script), other)
			if (err != nil) != c.wantErr {
				t.Fatalf("configURL error %v, want error %v; script:\n%s", err, c.wantErr, c.script)
			}
			if u != c.wantURL || tok != c.wantToken {
				t.Errorf("configURL = %q, %q; want %q, %q", u, tok, c.wantURL, c.wantToken)
			}
		})
	}
}

func TestCheckIgnition(t *testing.T) {
	for body, ok := range map[string]bool{
		`{"ignition":{"version":"3.4.0"}}`: true,
		`{"ignition":{}}`:                  false,
		`version: v1alpha1`:                false,
	} {
		if err := checkIgnition([]byte(body)); (err == nil) != ok {
			t.Errorf("checkIgnition(%s) = %v, want ok %v", body, err, ok)
		}
	}
}

func TestPct(t *testing.T) {
	ds := []time.Duration{5, 1, 4, 2, 3, 6, 7, 8, 9, 10}
	for p, want := range map[int]time.Duration{50: 5, 99: 10, 100: 10, 10: 1} {
		if got := pct(ds, p); got != want {
			t.Errorf("pct(%d) = %v, want %v", p, got, want)
		}
	}
	if got := pct(nil, 99); got != 0 {
		t.Errorf("pct of nothing = %v, want 0", got)
	}
}
