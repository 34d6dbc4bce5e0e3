package boot

import (
	"net"
	"strings"
)

// actorChars are what a self-declared actor name may hold: it labels the event
// log and log lines, so it is kept short and plain.
const actorChars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-"

// ValidActorName reports whether name may label events: at most 32 of
// letters, digits, '.', '_' and '-'.
func ValidActorName(name string) bool {
	return len(name) <= 32 && strings.Trim(name, actorChars) == ""
}

// Actor names who asked, for the event log: "alice/api@10.0.0.5", where via
// is the channel (api, web) and remoteAddr the request's. The operator token
// is shared, so the name is self-declared and proves nothing; an unusable
// name is left out.
func Actor(name, via, remoteAddr string) string {
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		host = remoteAddr
	}
	who := via + "@" + host
	if name != "" && ValidActorName(name) {
		who = name + "/" + who
	}
	return who
}
