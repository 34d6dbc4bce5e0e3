package api

import (
	"encoding/json"
	"testing"

	"github.com/provisiond/provisiond/internal/boot"
	"github.com/provisiond/provisiond/internal/seal"
)

func TestScratch(t *testing.T) {
	f, _ := newPowerFixture(t)
	f.mustCall(t, "POST", "/machines/n2/power", `{"action":"on"}`, 200)
	c, b := f.call(t, "GET", "/events?machine=n2", apiToken, "")
	t.Logf("events?machine=n2: %d %s", c, b)
	c, b = f.call(t, "GET", "/events?machine=52:54:00:00:00:02", apiToken, "")
	t.Logf("events?machine=mac: %d %s", c, b)
	// reprovision of a machine with BMC whose answer the CLI decodes into api.Machine
	f.boot(t, boot.Request{MAC: n1MAC})
	_, b = f.call(t, "POST", "/machines/n1/reprovision", apiToken, "")
	var m Machine
	t.Logf("decode reprovision answer into api.Machine: %v", decodeErr(b, &m))

	// core without a controller
	t.Setenv("PROVISIOND_API_TEST_N1_BMC", "a:b")
	box, _ := seal.New(make([]byte, 32))
	g := newFixtureWith(t, boot.Config{Secrets: box}, map[string]string{"p.yaml": powerProfiles, "wipe.txt": "x"})
	c, b = g.call(t, "POST", "/machines/n1/power", apiToken, `{"action":"on"}`)
	t.Logf("no controller: %d %s", c, b)
	// no secrets
	h := newFixtureWith(t, boot.Config{}, map[string]string{"p.yaml": powerProfiles, "wipe.txt": "x"})
	c, b = h.call(t, "PUT", "/machines/n1/bmc", apiToken, `{"address":"ipmi://1.2.3.4","username":"u","password":"p"}`)
	t.Logf("no secrets: %d %s", c, b)
	c, b = h.call(t, "POST", "/power", apiToken, `{"action":"wipe","machines":["n1"]}`)
	t.Logf("bulk wipe no profile: %d %s", c, b)
}

func decodeErr(b string, v any) error { return jsonUnmarshal([]byte(b), v) }
var jsonUnmarshal = json.Unmarshal
