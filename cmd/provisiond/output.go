package main

import (
	"encoding/json"
	"errors"
	"io"
)

// output is the -o/--output flag: how a command prints its result. Every
// command that has it prints through print, so the two formats differ only
// in how the result looks: what the command does and its exit status do not
// depend on it.
type output string

const (
	outputTable output = "table"
	outputJSON  output = "json"
)

func (o *output) String() string { return string(*o) }
func (o *output) Get() any       { return string(*o) }

func (o *output) Set(s string) error {
	switch output(s) {
	case outputTable, outputJSON:
		*o = output(s)
		return nil
	}
	return errors.New("want table or json")
}

// addOutputFlag declares -o/--output.
func addOutputFlag(fs *flagSet) *output {
	o := outputTable
	fs.Var(&o, "output", "print the result in `FORMAT`: table or json")
	fs.alias("o", "output")
	return &o
}

// print writes v as indented JSON for -o json (a json.RawMessage as the API
// sent it), or else calls table.
func (o output) print(w io.Writer, v any, table func(io.Writer) error) error {
	if o != outputJSON {
		return table(w)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false) // "a -> b" reads better than "a -\u003e b"; nothing here is HTML
	return enc.Encode(v)
}
