package api

import (
	"fmt"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/go-chi/chi/v5"

	"github.com/provisiond/provisiond/internal/boot"
	"github.com/provisiond/provisiond/internal/httperr"
	"github.com/provisiond/provisiond/internal/store"
)

// maxHardwareBody bounds a hardware report: 64 disks with 16 by-id paths
// each, 64 NICs and every string at its limit stay well below it.
const maxHardwareBody = 1 << 20

// reportHardware serves POST /machines/{id}/hardware: the inspection
// agent's report (provisiond agent), with the machine's session token, from
// the machine, as for the phone-home; the operator's token works too.
func (a *api) reportHardware(w http.ResponseWriter, r *http.Request) {
	var hw store.Hardware
	a.fromMachine(w, r, &hw, maxHardwareBody, func(c machineCaller) (store.Machine, error) {
		return a.b.ReportHardware(r.Context(), chi.URLParam(r, "id"), c.token, hw, c.from, c.viaAPI)
	})
}

// hardwareQuery reads GET /machines' hardware filters: ?serial= (the whole
// SMBIOS serial, any case), ?vendor= and ?product= (part of it, any case),
// ?min_memory= (bytes, or with KiB, MiB, GiB or TiB) and ?min_cpus=
// (logical CPUs).
func hardwareQuery(q url.Values) (boot.HardwareQuery, error) {
	hq := boot.HardwareQuery{Serial: q.Get("serial"), Vendor: q.Get("vendor"), Product: q.Get("product")}
	if s := q.Get("min_memory"); s != "" {
		n, err := ParseBytes(s)
		if err != nil {
			return hq, fmt.Errorf("%w: min_memory: %v", httperr.ErrBadRequest, err)
		}
		hq.MinMemory = n
	}
	if s := q.Get("min_cpus"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			return hq, fmt.Errorf("%w: min_cpus %q: want a number of CPUs", httperr.ErrBadRequest, s)
		}
		hq.MinCPUs = n
	}
	return hq, nil
}

// ParseBytes reads a size: bytes, or a number with a binary unit (KiB,
// MiB, GiB, TiB; K, KB, G, GB... read the same), e.g. 16GiB or 1.5G. The
// CLI's size flags read the same syntax through it.
func ParseBytes(s string) (uint64, error) {
	num := strings.ToUpper(strings.TrimSpace(s))
	mult := 1.0
units:
	for i, unit := range []string{"K", "M", "G", "T"} {
		for _, suffix := range []string{unit + "IB", unit + "B", unit} {
			if n, ok := strings.CutSuffix(num, suffix); ok {
				num, mult = strings.TrimSpace(n), math.Exp2(float64(10*(i+1)))
				break units
			}
		}
	}
	if mult == 1 {
		num = strings.TrimSuffix(num, "B") // "512B"
	}
	v, err := strconv.ParseFloat(num, 64)
	if err != nil || !(v >= 0) || v*mult >= math.MaxUint64 { // !(v >= 0): NaN too
		return 0, fmt.Errorf("%q: want bytes, or a number with KiB, MiB, GiB or TiB", s)
	}
	return uint64(v * mult), nil
}
