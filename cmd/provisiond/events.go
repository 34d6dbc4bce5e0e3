package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"syscall"
	"time"

	"github.com/provisiond/provisiond/internal/api"
	"github.com/provisiond/provisiond/internal/store"
)

// `provisiond events`: the event log through the daemon's API. A listing is
// newest first, as the dashboard's timeline: what just happened is what an
// operator looks for. --follow reads like tail -f instead: oldest first, new
// events appended below as they happen.

const (
	// eventsPageSize is how many events one request asks for: the API's maximum.
	eventsPageSize = 1000
	// followEvery is how often --follow asks for new events.
	followEvery = 2 * time.Second
)

func eventsCommand() *command {
	return &command{
		name:    "events",
		summary: "show the event log, newest first, through the daemon's API",
		about: "Every boot step, lifecycle change, power operation and refused request is an\n" +
			"event. The listing is newest first; --limit keeps the newest N, --type keeps\n" +
			"one type of event (installed, power, reprovision, ...). With --follow\n" +
			"the events are printed oldest first and new ones appended as they happen (as\n" +
			"tail -f does; -o json then prints one JSON object per line), until Ctrl-C.",
		examples: []string{
			"provisiond events --machine node1 --since 1h",
			"provisiond events --limit 20",
			"provisiond events --type installed --since 24h",
			"provisiond events --follow",
		},
		flags: func(fs *flagSet, c *cli) func([]string) error {
			cf := addClientFlags(fs, c)
			machine := fs.String("machine", "", "only the events of machine `ID` (a MAC, UUID or Machine name)")
			since := fs.String("since", "", "only events since `WHEN`: an RFC 3339 time, or a duration ago such as 1h")
			typ := fs.String("type", "", "only events of `TYPE`, such as installed, power or reprovision")
			limit := fs.Int("limit", 0, "only the `N` newest events (default: all)")
			follow := fs.Bool("follow", false, "then keep printing new events as they happen, until interrupted")
			fs.alias("f", "follow")
			return func(pos []string) error {
				return runEvents(c, cf, eventsFilter{machine: *machine, since: *since, typ: *typ}, *limit, *follow, pos)
			}
		},
	}
}

// eventsFilter is what the events of a listing must match; "" matches all.
type eventsFilter struct{ machine, since, typ string }

func runEvents(c *cli, cf *clientFlags, f eventsFilter, limit int, follow bool, pos []string) error {
	if len(pos) != 0 {
		return usagef("events takes no arguments, got %q", pos)
	}
	if f.since != "" {
		if _, err := api.ParseSince(f.since, time.Now()); err != nil {
			return usagef("--%v", err)
		}
	}
	if limit < 0 {
		return usagef("--limit %d: want a positive count, or 0 for all", limit)
	}
	cl, err := cf.client()
	if err != nil {
		return err
	}
	q := url.Values{}
	for k, v := range map[string]string{"machine": f.machine, "since": f.since, "type": f.typ} {
		if v != "" {
			q.Set(k, v)
		}
	}
	// The API lists the newest first itself, so that --limit N costs one
	// request, not the whole log.
	events, raw, err := fetchNewestEvents(cl, q, limit, eventsPageSize)
	if err != nil {
		return err
	}
	if follow {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		cl.ctx = ctx
		var after uint64
		if len(events) > 0 {
			after = events[0].Seq
		}
		slices.Reverse(events)
		slices.Reverse(raw)
		p := eventPrinter{w: c.stdout, out: *cf.out}
		for i := range events {
			if err := p.print(events[i], raw[i]); err != nil {
				return err
			}
		}
		return followEvents(ctx, cl, q, after, followEvery, p.print, func(err error) {
			fmt.Fprintf(c.stderr, "provisiond events: %v; trying again every %v\n", err, followEvery)
		})
	}
	return cf.out.print(c.stdout, map[string]any{"events": raw}, func(w io.Writer) error {
		if len(events) == 0 {
			fmt.Fprintln(c.stderr, "no events")
			return nil
		}
		return eventTable(w, events, true)
	})
}

// eventPrinter prints followed events one at a time: table rows (the header
// once) or one JSON object per line.
type eventPrinter struct {
	w      io.Writer
	out    output
	header bool // printed
}

func (p *eventPrinter) print(e store.Event, raw json.RawMessage) error {
	if p.out == outputJSON {
		var buf bytes.Buffer
		if err := json.Compact(&buf, raw); err != nil {
			return err
		}
		buf.WriteByte('\n')
		_, err := p.w.Write(buf.Bytes())
		return err
	}
	err := eventTable(p.w, []store.Event{e}, !p.header)
	p.header = true
	return err
}

// followEvents asks for the events after after every interval and hands
// each new one to emit, until ctx ends. A daemon that cannot be reached (a
// restart) is reported through retry and tried again; an error the API
// answered ends it.
func followEvents(ctx context.Context, cl *apiClient, q url.Values, after uint64, every time.Duration,
	emit func(store.Event, json.RawMessage) error, retry func(error)) error {
	t := time.NewTicker(every)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		events, raw, err := fetchEvents(cl, q, after, eventsPageSize)
		var ae *apiError
		switch {
		case ctx.Err() != nil:
			return nil
		case errors.As(err, &ae):
			return err
		case err != nil:
			if !failing {
				retry(err)
			}
			failing = true
			continue
		}
		failing = false
		for i, e := range events {
			if err := emit(e, raw[i]); err != nil {
				return err
			}
			after = e.Seq
		}
	}
}

// fetchEvents pages through /events with after=<last seq>, from the events
// after after on, until a page comes back short. It returns each event
// decoded and as the API sent it, oldest first.
func fetchEvents(c *apiClient, q url.Values, after uint64, pageSize int) ([]store.Event, []json.RawMessage, error) {
	var (
		events []store.Event
		raw    = []json.RawMessage{}
	)
	q = cloneValues(q)
	for {
		q.Set("limit", strconv.Itoa(pageSize))
		if after > 0 {
			q.Set("after", strconv.FormatUint(after, 10))
		}
		var list struct {
			Events []json.RawMessage `json:"events"`
		}
		if _, err := c.get("/events", q, &list); err != nil {
			return nil, nil, err
		}
		for _, r := range list.Events {
			var e store.Event
			if err := decodeAnswer(r, &e); err != nil {
				return nil, nil, err
			}
			if e.Seq <= after && after > 0 {
				return nil, nil, fmt.Errorf("the API sent event %d after asking for events after %d; not paging on", e.Seq, after)
			}
			events = append(events, e)
			raw = append(raw, r)
			after = e.Seq
		}
		if len(list.Events) < pageSize {
			return events, raw, nil
		}
	}
}

// fetchNewestEvents asks /events for the limit (0: all) newest events,
// newest first, paging back with before=<last seq> while it needs more and
// pages come back full. It returns each event decoded and as the API sent
// it, newest first.
func fetchNewestEvents(c *apiClient, q url.Values, limit, pageSize int) ([]store.Event, []json.RawMessage, error) {
	var (
		events []store.Event
		raw    = []json.RawMessage{}
		before uint64 // 0: from the newest
	)
	q = cloneValues(q)
	q.Set("order", "newest")
	for {
		n := pageSize
		if limit > 0 {
			n = min(n, limit-len(events))
		}
		q.Set("limit", strconv.Itoa(n))
		if before > 0 {
			q.Set("before", strconv.FormatUint(before, 10))
		}
		var list struct {
			Events []json.RawMessage `json:"events"`
		}
		if _, err := c.get("/events", q, &list); err != nil {
			return nil, nil, err
		}
		if len(list.Events) > n {
			return nil, nil, fmt.Errorf("the API sent %d events after asking for %d; not paging on", len(list.Events), n)
		}
		for _, r := range list.Events {
			var e store.Event
			if err := decodeAnswer(r, &e); err != nil {
				return nil, nil, err
			}
			// A daemon older than order=newest and before= would list
			// oldest first and page on from the start forever.
			if before > 0 && e.Seq >= before {
				return nil, nil, fmt.Errorf("the API sent event %d after asking for events before %d, newest first (is the daemon older than this client?); not paging on", e.Seq, before)
			}
			events = append(events, e)
			raw = append(raw, r)
			before = e.Seq
		}
		if len(list.Events) < n || (limit > 0 && len(events) >= limit) || before <= 1 {
			return events, raw, nil
		}
	}
}

func cloneValues(q url.Values) url.Values {
	out := url.Values{}
	for k, v := range q {
		out[k] = slices.Clone(v)
	}
	return out
}
