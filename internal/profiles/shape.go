package profiles

import (
	"fmt"
	"reflect"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"
)

// checkShape reports where n, the value of the field at path ("" for a whole
// document, "match.labels", "boot.args[1]") whose key is at line, does not
// have the shape of t: a list where a map belongs, a map where one value
// does, a key no field accepts. Decoding alone would say
// `cannot unmarshal !!seq into map[string]string`, naming Go types nobody
// wrote, and yaml.v3 ignores unknown fields when decoding a Node, while a typo
// such as "intrd:" must not silently boot without an initrd. example, from
// the field's `example` tag, shows the expected shape.
func (l *loader) checkShape(file string, line int, path string, n *yaml.Node, t reflect.Type, example string) bool {
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return true // an empty field: its zero value, which the checks after decoding judge
	}
	eg := ""
	if example != "" {
		eg = ", e.g. " + example
	}
	wrong := func(want string) bool {
		l.probs.add(file, line, "%s must be %s%s; got %s", path, want, eg, describeNode(n))
		return false
	}
	switch t.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			return wrong("a map with fields " + strings.Join(knownFields(t), ", "))
		}
		ok := true
		for i := 0; i+1 < len(n.Content); i += 2 {
			key, val := n.Content[i], n.Content[i+1]
			f, found := fieldByTag(t, key.Value)
			if !found {
				known := knownFields(t)
				l.probs.add(file, key.Line, "unknown field %q in %s%s (known: %s)", key.Value, strings.ToLower(t.Name()), didYouMean(key.Value, known), strings.Join(known, ", "))
				ok = false
				continue
			}
			ok = l.checkShape(file, key.Line, joinPath(path, key.Value), val, f.Type, f.Tag.Get("example")) && ok
		}
		return ok
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			return wrong("a map of key: value")
		}
		if t.Elem().Kind() != reflect.String {
			return true // free-form values (metadata)
		}
		ok := true
		for i := 0; i+1 < len(n.Content); i += 2 {
			key := n.Content[i]
			ok = l.checkShape(file, key.Line, joinPath(path, key.Value), n.Content[i+1], t.Elem(), "") && ok
		}
		return ok
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			return wrong("a list")
		}
		ok := true
		for i, c := range n.Content {
			ok = l.checkShape(file, c.Line, fmt.Sprintf("%s[%d]", path, i), c, t.Elem(), "") && ok
		}
		return ok
	case reflect.String:
		if n.Kind != yaml.ScalarNode {
			return wrong("a single value")
		}
	case reflect.Bool:
		var b bool
		if n.Kind != yaml.ScalarNode || n.Decode(&b) != nil {
			return wrong("true or false")
		}
	}
	return true
}

// describeNode says what an operator wrote, for "got ..." in messages.
func describeNode(n *yaml.Node) string {
	switch n.Kind {
	case yaml.SequenceNode:
		return "a list"
	case yaml.MappingNode:
		return "a map"
	case yaml.AliasNode:
		return "an alias (*" + n.Value + ")"
	}
	v := []rune(n.Value)
	if len(v) > 40 {
		v = append(v[:37], []rune("...")...)
	}
	return fmt.Sprintf("%q", string(v))
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func fieldByTag(t reflect.Type, name string) (reflect.StructField, bool) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if tag := strings.Split(f.Tag.Get("yaml"), ",")[0]; tag == name && tag != "-" {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

func knownFields(t reflect.Type) []string {
	var names []string
	for i := 0; i < t.NumField(); i++ {
		if tag := strings.Split(t.Field(i).Tag.Get("yaml"), ",")[0]; tag != "" && tag != "-" {
			names = append(names, tag)
		}
	}
	sort.Strings(names)
	return names
}

// didYouMean is `, did you mean "x"?` for the one name of known that is a
// typo away from name (two edits at most), or "".
func didYouMean(name string, known []string) string {
	best, bestDist := "", 3
	for _, k := range known {
		if d := EditDistance(strings.ToLower(name), k); d < bestDist {
			best, bestDist = k, d
		} else if d == bestDist {
			best = "" // a tie: no guess
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(", did you mean %q?", best)
}

// EditDistance is the optimal string alignment distance between a and b,
// bytewise (names are ASCII): the edits a typo makes, a swap of two
// neighbours counting as one (intird, initrd). Exported so that every "did
// you mean" of the project (unknown fields here; flags, verbs and variables
// in cmd/provisiond) counts typos alike.
func EditDistance(a, b string) int {
	// Three rows of the full table: the transposition looks two rows back.
	prev2, prev, cur := make([]int, len(b)+1), make([]int, len(b)+1), make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(b)]
}
