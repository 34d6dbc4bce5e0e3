package web

import (
	"net/url"
	"slices"
	"strings"
)

// What the tables share: their links carry the filters in use as a query,
// and a pager leads to the neighbouring pages. The machines table pages by
// number, the event log by event sequence; both render the "pager" template.

// pager links a table's page to its neighbours; an empty href: none.
type pager struct {
	Prev, PrevLabel string
	Next, NextLabel string
}

// queryOf encodes name/value pairs as a query string without the "?",
// leaving out empty values so that links carry only the filters in use.
func queryOf(pairs ...string) string {
	v := make([]string, 0, len(pairs)/2)
	for i := 0; i+1 < len(pairs); i += 2 {
		if pairs[i+1] != "" {
			v = append(v, pairs[i]+"="+url.QueryEscape(pairs[i+1]))
		}
	}
	return strings.Join(v, "&")
}

// href is path with query, if any.
func href(path, query string) string {
	if query == "" {
		return path
	}
	return path + "?" + query
}

// options is a filter's choices with the current value among them, so that a
// value from a link (a type the list lacks) still shows as selected.
func options(choices []string, current string) []string {
	if current == "" || slices.Contains(choices, current) {
		return choices
	}
	return append(choices, current)
}
