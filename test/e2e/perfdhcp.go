package e2e

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// perfReport is what perfdhcp (kea's DHCP load generator) printed at the
// end of a run with -x l.
type perfReport struct {
	Rate       float64 // "Rate: N 4-way exchanges/second"
	DO, RA     perfStats
	AckedAddrs []string      // the REQUEST-ACK lease list: one entry per ACK received
	Took       time.Duration // avalanche only: "It took HH:MM:SS.ffffff to provision N clients"
}

// perfStats is one "***Statistics for: X-Y***" section.
type perfStats struct {
	Sent, Received, Drops, Rejected int
	AvgDelay                        string // ms, or n/a
}

var (
	perfSection  = regexp.MustCompile(`(?m)^\*\*\*(Statistics|Leases) for:? (DISCOVER-OFFER|REQUEST-ACK)\*\*\*$`)
	perfRateLine = regexp.MustCompile(`Rate: ([0-9.]+) 4-way exchanges/second`)
	perfTook     = regexp.MustCompile(`It took (\d+):(\d+):([0-9.]+) to provision`)
)

// parsePerf reads perfdhcp's output.
func parsePerf(out string) (perfReport, error) {
	var r perfReport
	if m := perfRateLine.FindStringSubmatch(out); m != nil {
		r.Rate, _ = strconv.ParseFloat(m[1], 64)
	}
	if m := perfTook.FindStringSubmatch(out); m != nil {
		h, _ := strconv.Atoi(m[1])
		mi, _ := strconv.Atoi(m[2])
		s, _ := strconv.ParseFloat(m[3], 64)
		r.Took = time.Duration((float64(h*3600+mi*60) + s) * float64(time.Second))
	}
	idx := perfSection.FindAllStringSubmatchIndex(out, -1)
	seen := 0
	for i, m := range idx {
		end := len(out)
		if i+1 < len(idx) {
			end = idx[i+1][0]
		}
		body := out[m[1]:end]
		kind, exchange := out[m[2]:m[3]], out[m[4]:m[5]]
		switch {
		case kind == "Statistics":
			st, err := parsePerfStats(body)
			if err != nil {
				return r, fmt.Errorf("perfdhcp %s statistics: %w", exchange, err)
			}
			if exchange == "DISCOVER-OFFER" {
				r.DO = st
			} else {
				r.RA = st
			}
			seen++
		case exchange == "REQUEST-ACK":
			// "client_id,adrress,prefix" then ",10.96.1.7," per lease.
			for line := range strings.Lines(body) {
				f := strings.Split(strings.TrimSpace(line), ",")
				if len(f) == 3 && f[1] != "" && f[1] != "adrress" {
					r.AckedAddrs = append(r.AckedAddrs, f[1])
				}
			}
		}
	}
	if seen != 2 {
		return r, fmt.Errorf("perfdhcp printed %d of its 2 statistics sections", seen)
	}
	return r, nil
}

func parsePerfStats(body string) (perfStats, error) {
	var st perfStats
	for _, f := range []struct {
		label string
		n     *int
	}{{"sent packets", &st.Sent}, {"received packets", &st.Received}, {"drops", &st.Drops}, {"rejected leases", &st.Rejected}} {
		m := regexp.MustCompile(`(?m)^` + f.label + `: (\d+)$`).FindStringSubmatch(body)
		if m == nil {
			return st, fmt.Errorf("no %q count", f.label)
		}
		*f.n, _ = strconv.Atoi(m[1])
	}
	if m := regexp.MustCompile(`(?m)^avg delay: ([0-9.]+ ms|n/a)$`).FindStringSubmatch(body); m != nil {
		st.AvgDelay = m[1]
	}
	return st, nil
}
