package profiles

import (
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"unicode/utf8"
)

// The functions config templates have beyond text/template's builtins, so
// that a value from metadata (an SSH key, a hostname, a script) can be placed
// in YAML or JSON without breaking it. Each one that builds a string counts it
// against the render's limit as printf does (see limits.go), and checks that
// limit while building, not after: a few characters of template can name a
// value that YAML aliases repeat a million times.

// toJSON is toJson: v as compact JSON, map keys sorted, so that a rendered
// config, and the cache key taken from it, is the same on every load. Strings
// are escaped as quote escapes them, which keeps the result a valid YAML
// flow value too.
func (x *execution) toJSON(v any) (string, error) {
	e := jsonEncoder{name: "toJson", limit: x.built}
	if err := e.value(reflect.ValueOf(v)); err != nil {
		return "", err
	}
	return x.count("toJson", string(e.buf))
}

// quote returns s as a double-quoted string that JSON and YAML both read back
// as s: quotes, backslashes, newlines and the characters YAML refuses or
// folds (controls, DEL, C1, U+2028/2029, the BOM) are escaped as \n or \uXXXX.
// A number or boolean is quoted in its printed form, nothing (a missing
// metadata key, through index) as "".
func (x *execution) quote(v any) (string, error) {
	s, ok := printScalar(reflect.ValueOf(v))
	if !ok {
		return "", fmt.Errorf("got %s; quote takes one string or number (toJson takes lists and maps)", kindName(reflect.ValueOf(v)))
	}
	e := jsonEncoder{name: "quote", limit: x.built}
	if err := e.string(s); err != nil {
		return "", err
	}
	return x.count("quote", string(e.buf))
}

// join joins the items of list, strings or numbers, with sep. Nothing (a
// missing metadata key, through index) joins to "".
func (x *execution) join(sep string, list any) (string, error) {
	rv := reflect.ValueOf(list)
	switch rv.Kind() {
	case reflect.Invalid:
		return "", nil
	case reflect.Slice, reflect.Array:
	default:
		return "", fmt.Errorf("got %s; join takes a separator and a list, e.g. join \",\" .metadata.disks", kindName(rv))
	}
	items := make([]string, rv.Len())
	size := len(sep) * max(rv.Len()-1, 0)
	for i := range items {
		var ok bool
		if items[i], ok = printScalar(rv.Index(i)); !ok {
			return "", fmt.Errorf("item %d is %s; join joins strings and numbers", i, kindName(rv.Index(i)))
		}
		// Checked before building: sep repeated for every item could
		// otherwise take far more than either holds.
		if size += len(items[i]); size > x.built || size < 0 {
			return "", &limitError{"join: " + errTooMuchBuilt.msg}
		}
	}
	return x.count("join", strings.Join(items, sep))
}

// pickDefault is default: v, or def when v is empty: nothing (a missing key
// read with index), "" or an empty list or map. Unlike Helm's default, 0 and
// false are values: `wipe: false` in metadata must not turn into a default of
// true.
func pickDefault(def, v any) any {
	switch rv := reflect.ValueOf(v); rv.Kind() {
	case reflect.Invalid:
		return def
	case reflect.String, reflect.Slice, reflect.Map, reflect.Array:
		if rv.Len() == 0 {
			return def
		}
	case reflect.Pointer, reflect.Interface:
		if rv.IsNil() {
			return def
		}
	}
	return v
}

// printScalar returns v as print spells a string, number or boolean, and ""
// for nothing (a missing key read with index, YAML's null); false for a list,
// a map or anything else.
func printScalar(v reflect.Value) (string, bool) {
	if v.Kind() == reflect.Interface {
		v = v.Elem()
	}
	switch {
	case !v.IsValid():
		return "", true
	case v.Kind() == reflect.String:
		return v.String(), true
	case isNumberOrBool(v.Kind()):
		return fmt.Sprint(v.Interface()), true // a few bytes
	}
	return "", false
}

func isNumberOrBool(k reflect.Kind) bool {
	switch k {
	case reflect.Bool, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Float32, reflect.Float64:
		return true
	}
	return false
}

// kindName says what a template value is, in the words of YAML rather than Go.
func kindName(v reflect.Value) string {
	if v.Kind() == reflect.Interface {
		v = v.Elem()
	}
	switch v.Kind() {
	case reflect.Invalid:
		return "nothing"
	case reflect.Slice, reflect.Array:
		return "a list"
	case reflect.Map:
		return "a map"
	case reflect.String:
		return "a string"
	}
	return "a " + v.Type().String()
}

// jsonEncoder appends JSON to buf, failing once buf passes limit. It walks
// the values templates see (metadata decoded from YAML, the maps of
// templateData) itself, because encoding/json builds the whole output before
// anything could count it.
type jsonEncoder struct {
	name  string // of the template function, for limit errors
	buf   []byte
	limit int
}

func (e *jsonEncoder) add(s string) error {
	e.buf = append(e.buf, s...)
	return e.check()
}

func (e *jsonEncoder) check() error {
	if len(e.buf) > e.limit {
		return &limitError{e.name + ": " + errTooMuchBuilt.msg}
	}
	return nil
}

func (e *jsonEncoder) value(v reflect.Value) error {
	for v.Kind() == reflect.Interface || v.Kind() == reflect.Pointer {
		if v.IsNil() {
			return e.add("null")
		}
		v = v.Elem()
	}
	switch v.Kind() {
	case reflect.Invalid:
		return e.add("null")
	case reflect.String:
		return e.string(v.String())
	case reflect.Slice, reflect.Array:
		if err := e.add("["); err != nil {
			return err
		}
		for i := range v.Len() {
			if i > 0 {
				if err := e.add(","); err != nil {
					return err
				}
			}
			if err := e.value(v.Index(i)); err != nil {
				return err
			}
		}
		return e.add("]")
	case reflect.Map:
		return e.object(v)
	}
	if !isNumberOrBool(v.Kind()) {
		return fmt.Errorf("cannot encode %s", kindName(v))
	}
	// A number's JSON is a few bytes; encoding/json spells floats as JSON
	// wants them and refuses NaN and infinities (YAML's .nan, .inf).
	b, err := json.Marshal(v.Interface())
	if err != nil {
		return err
	}
	return e.add(string(b))
}

// object encodes map v with its keys, which JSON wants as strings, in order.
func (e *jsonEncoder) object(v reflect.Value) error {
	type entry struct {
		key string
		val reflect.Value
	}
	entries := make([]entry, 0, v.Len())
	for it := v.MapRange(); it.Next(); {
		// YAML allows {1: a}; JSON spells the key as a string.
		key, ok := printScalar(it.Key())
		if !ok {
			return fmt.Errorf("a map key is %s; JSON keys are strings", kindName(it.Key()))
		}
		entries = append(entries, entry{key, it.Value()})
	}
	slices.SortFunc(entries, func(a, b entry) int { return strings.Compare(a.key, b.key) })
	if err := e.add("{"); err != nil {
		return err
	}
	for i, en := range entries {
		if i > 0 {
			if err := e.add(","); err != nil {
				return err
			}
		}
		if err := e.string(en.key); err != nil {
			return err
		}
		if err := e.add(":"); err != nil {
			return err
		}
		if err := e.value(en.val); err != nil {
			return err
		}
	}
	return e.add("}")
}

// string appends s as a JSON string that is also a YAML double-quoted scalar
// with the same value. JSON allows any character but '"', '\' and controls
// raw; YAML refuses DEL, the C1 controls and U+FFFE/U+FFFF in a stream,
// folds U+0085 into a space, and some readers take U+2028/U+2029 for line
// breaks and U+FEFF for a byte order mark. \uXXXX means the same to both.
func (e *jsonEncoder) string(s string) error {
	if err := e.add(`"`); err != nil {
		return err
	}
	const hex = "0123456789abcdef"
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == '"':
			e.buf = append(e.buf, `\"`...)
		case r == '\\':
			e.buf = append(e.buf, `\\`...)
		case r == '\n':
			e.buf = append(e.buf, `\n`...)
		case r == '\r':
			e.buf = append(e.buf, `\r`...)
		case r == '\t':
			e.buf = append(e.buf, `\t`...)
		case r == utf8.RuneError && size == 1:
			e.buf = append(e.buf, `\ufffd`...) // not UTF-8: neither would read it
		case r < 0x20, r >= 0x7f && r <= 0x9f, r == 0x2028, r == 0x2029, r == 0xfeff, r == 0xfffe, r == 0xffff:
			e.buf = append(e.buf, '\\', 'u', hex[r>>12&0xf], hex[r>>8&0xf], hex[r>>4&0xf], hex[r&0xf])
		default:
			e.buf = append(e.buf, s[i:i+size]...)
		}
		i += size
		if err := e.check(); err != nil {
			return err
		}
	}
	return e.add(`"`)
}
