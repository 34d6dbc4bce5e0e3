package profiles

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"text/template"

	"github.com/vincent-petithory/dataurl"
)

const (
	markersBase  = "http://10.0.0.1:8080"
	markersMAC   = "52:54:00:00:00:01"
	markersID    = "52-54-00-00-00-01"
	markersToken = "ABCDEFGHIJKLMNOPQRSTUVWXYZ" // the shape of a session token
	markersHost  = "one.lab"
)

const markersMachine = "kind: Machine\nname: n1\nmatch: {mac: \"" + markersMAC + "\"}\nprofile: worker\nmetadata: {hostname: " + markersHost + "}\n"

// phoneHome is long and plain enough for Butane to store it base64-encoded,
// which hid the markers from For.
const phoneHome = `          #!/bin/bash
          # Tell provisiond the install finished, retrying while the network settles.
          set -euo pipefail
          for attempt in 1 2 3 4 5 6 7 8 9 10; do
            if curl --fail --silent --show-error --max-time 10 \
                --header "Authorization: Bearer {{ .provisiond.token }}" \
                --request POST "{{ .provisiond.installed_url }}"; then
              exit 0
            fi
            sleep "$attempt"
          done
          exit 1
`

// quietScript has no session values; Butane base64-encodes it all the same.
const quietScript = `          #!/bin/bash
          set -euo pipefail
          echo "{{ .metadata.hostname }}" > /etc/hostname
          systemctl restart systemd-hostnamed.service
          systemctl restart systemd-networkd.service
          systemctl restart systemd-resolved.service
`

// butaneWith writes a Butane config holding scripts (path -> inline contents
// indented by ten spaces) at the known paths; contentsExtra goes into each contents.
func butaneWith(variant, version, contentsExtra string, scripts map[string]string) string {
	var b strings.Builder
	b.WriteString("variant: " + variant + "\nversion: " + version + "\nstorage:\n  files:\n")
	for _, path := range []string{"/usr/local/bin/phone-home", "/usr/local/bin/quiet"} {
		if s, ok := scripts[path]; ok {
			b.WriteString("    - path: " + path + "\n      mode: 0755\n      contents:\n" + contentsExtra + "        inline: |\n" + s)
		}
	}
	return b.String()
}

// renderButane renders a Butane template as Load does.
func renderButane(t *testing.T, text string) []byte {
	t.Helper()
	tmpl, err := template.New("worker.bu").Option("missingkey=error").Parse(text)
	if err != nil {
		t.Fatal(err)
	}
	r := &renderer{base: markersBase}
	m := &Machine{Name: "n1", Metadata: map[string]any{"hostname": markersHost}}
	var buf bytes.Buffer
	if err := tmpl.Execute(&buf, r.templateData(&Profile{Name: "worker"}, m, Query{MAC: markersMAC})); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

type ignFile struct {
	Path     string
	Contents ignResource
	Append   []ignResource
}

type ignResource struct {
	Source      *string
	Compression *string
}

func parseFiles(t *testing.T, body []byte) []ignFile {
	t.Helper()
	var cfg struct{ Storage struct{ Files []ignFile } }
	if err := json.Unmarshal(body, &cfg); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, body)
	}
	return cfg.Storage.Files
}

func decodeSource(t *testing.T, r ignResource) []byte {
	t.Helper()
	if r.Source == nil {
		return nil
	}
	du, err := dataurl.DecodeString(*r.Source)
	if err != nil {
		t.Fatalf("source %.60q: %v", *r.Source, err)
	}
	return du.Data
}

func fileContents(t *testing.T, body []byte, path string) []byte {
	t.Helper()
	for _, f := range parseFiles(t, body) {
		if f.Path == path {
			b := decodeSource(t, f.Contents)
			for _, a := range f.Append {
				b = append(b, decodeSource(t, a)...)
			}
			return b
		}
	}
	t.Fatalf("no file %s in %s", path, body)
	return nil
}

// loadServed loads a tree with machine n1 and returns its Rendered config.
func loadServed(t *testing.T, files map[string]string) (*Rendered, error) {
	t.Helper()
	files["m.yaml"] = markersMachine
	set, err := Load(writeTree(t, files), LoadOptions{BaseURL: markersBase})
	if err != nil {
		return nil, err
	}
	res, err := set.Match(Query{MAC: markersMAC})
	if err != nil {
		t.Fatal(err)
	}
	out, err := set.Config(res, Query{MAC: markersMAC})
	if err != nil || out == nil {
		t.Fatalf("Config = %v, %v", out, err)
	}
	return out, nil
}

func b64URL(s string) string {
	return "data:;base64," + base64.StdEncoding.EncodeToString([]byte(s))
}

func TestSessionMarkersInDataURLs(t *testing.T) {
	ignProfile := strings.Replace(baseProfile, "butane: worker.bu", "ignition: worker.ign", 1)
	script := "#!/bin/sh\ncurl -H 'Authorization: Bearer " + tokenMarker + "' -X POST " + markersBase + "/api/v1/machines/" + idMarker + "/installed\n"
	wantScript := strings.NewReplacer(tokenMarker, markersToken, idMarker, markersID).Replace(script)

	for _, tc := range []struct {
		name  string
		files map[string]string
		// hidden: the plain Butane translation stores these files base64 with the
		// markers invisible (the bug); they must come out filled in.
		hidden []string
		// want: file path -> exact contents after For.
		want map[string]string
		// same: Load serves the plain translation (or raw Ignition) byte for byte.
		same    bool
		wantErr []string
	}{
		{
			name: "flatcar script with token and installed_url",
			files: map[string]string{"p.yaml": baseProfile, "worker.bu": butaneWith("flatcar", "1.0.0", "",
				map[string]string{"/usr/local/bin/phone-home": phoneHome, "/usr/local/bin/quiet": quietScript})},
			hidden: []string{"/usr/local/bin/phone-home"},
		},
		{
			name: "fcos script with token and installed_url",
			files: map[string]string{"p.yaml": baseProfile, "worker.bu": butaneWith("fcos", "1.5.0", "",
				map[string]string{"/usr/local/bin/phone-home": phoneHome})},
			hidden: []string{"/usr/local/bin/phone-home"},
		},
		{
			name: "no markers: left byte-identical",
			files: map[string]string{"p.yaml": baseProfile, "worker.bu": butaneWith("flatcar", "1.0.0", "",
				map[string]string{"/usr/local/bin/quiet": quietScript})},
			same: true,
		},
		{
			name: "inline contents declared gzip",
			files: map[string]string{"p.yaml": baseProfile, "worker.bu": butaneWith("fcos", "1.5.0", "        compression: gzip\n",
				map[string]string{"/usr/local/bin/phone-home": phoneHome})},
			wantErr: []string{"m.yaml:1: machine \"n1\": butane worker.bu: storage file /usr/local/bin/phone-home: uses the session token or machine id inside gzip-compressed contents, where it cannot be filled in per machine; remove `compression: gzip`"},
		},

		{
			name: "raw ignition with base64 contents and append",
			files: map[string]string{"p.yaml": ignProfile, "worker.ign": `{"ignition":{"version":"3.3.0"},"storage":{"files":[` +
				`{"path":"/usr/local/bin/phone-home","mode":493,"overwrite":true,"contents":{"source":"` + b64URL(script) + `"},` +
				`"append":[{"source":"data:text/plain;charset=utf-8;base64,` + base64.StdEncoding.EncodeToString([]byte("# machine "+idMarker+"\n")) + `"}]},` +
				`{"path":"/etc/motd","contents":{"source":"` + b64URL("hello <world> & all\n") + `"}}]},` +
				`"systemd":{"units":[{"name":"phone-home.service","enabled":true,"contents":"[Service]\nExecStart=/usr/local/bin/phone-home\n"}]}}`},
			want: map[string]string{"/usr/local/bin/phone-home": wantScript + "# machine " + markersID + "\n", "/etc/motd": "hello <world> & all\n"},
		},
		{
			name: "raw ignition without markers: left byte-identical",
			files: map[string]string{"p.yaml": ignProfile, "worker.ign": `{"ignition": {"version": "3.4.0"},
 "storage": {"files": [{"path": "/etc/motd", "contents": {"source": "` + b64URL("hello\n") + `"}}]}}
`},
			same: true,
		},

		{
			name: "raw ignition with a hash over a marker",
			files: map[string]string{"p.yaml": ignProfile, "worker.ign": `{"ignition":{"version":"3.4.0"},"storage":{"files":[` +
				`{"path":"/usr/local/bin/phone-home","contents":{"source":"` + b64URL(script) + `","verification":{"hash":"sha256-0000000000000000000000000000000000000000000000000000000000000000"}}}]}}`},
			wantErr: []string{"m.yaml:1: machine \"n1\": ignition worker.ign: storage file /usr/local/bin/phone-home: uses the session token or machine id", "verification.hash"},
		},
		{
			name: "raw ignition with a marker in a merged config",
			files: map[string]string{"p.yaml": ignProfile, "worker.ign": `{"ignition":{"version":"3.4.0","config":{"merge":[{"source":"` +
				b64URL(`{"ignition":{"version":"3.4.0"},"passwd":{"users":[{"name":"core","gecos":"`+idMarker+`"}]}}`) + `"}]}}}`},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var plain []byte
			if bu := tc.files["worker.bu"]; bu != "" && tc.wantErr == nil {
				var err error
				if plain, err = translateButane(renderButane(t, bu)); err != nil {
					t.Fatalf("translate: %v", err)
				}
				for _, path := range tc.hidden {
					src := *findFile(t, plain, path).Contents.Source
					if !strings.HasPrefix(src, "data:;base64,") || strings.Contains(src, "PROVISIOND_") {
						t.Fatalf("Butane stored %s as %.60q; the test wants it base64 with the markers hidden", path, src)
					}
					if got := decodeSource(t, findFile(t, plain, path).Contents); !bytes.Contains(got, []byte(tokenMarker)) || !bytes.Contains(got, []byte(idMarker)) {
						t.Fatalf("%s does not use both markers:\n%s", path, got)
					}
				}
			}

			out, err := loadServed(t, tc.files)
			if tc.wantErr != nil {
				var probs Problems
				if !errors.As(err, &probs) {
					t.Fatalf("Load error = %v; want Problems", err)
				}
				for _, w := range tc.wantErr {
					if !strings.Contains(probs.Error(), w) {
						t.Errorf("problems do not contain %q; got:\n%v", w, probs)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("Load: %v", err)
			}

			if tc.same {
				want := plain
				if want == nil {
					want = []byte(tc.files["worker.ign"])
				}
				if !bytes.Equal(out.Body, want) {
					t.Fatalf("config without markers was rewritten:\n got %s\nwant %s", out.Body, want)
				}
			}

			served := out.For(markersID, markersToken)
			if bytes.Contains(served, []byte("PROVISIOND_")) {
				t.Errorf("served config holds a marker:\n%s", served)
			}
			for _, p := range dataURLPayloads(t, served) {
				if bytes.Contains(p, []byte("PROVISIOND_")) {
					t.Errorf("a data URL of the served config holds a marker:\n%s", p)
				}
			}
			if err := validateIgnition(served, false); err != nil {
				t.Errorf("served config does not validate: %v\n%s", err, served)
			}
			for _, path := range tc.hidden {
				got := string(fileContents(t, served, path))
				if !strings.Contains(got, "Bearer "+markersToken) || !strings.Contains(got, markersBase+"/api/v1/machines/"+markersID+"/installed") || strings.Contains(got, "PROVISIOND_") {
					t.Errorf("%s as served:\n%s\nwant the token %s and the machine id %s filled in", path, got, markersToken, markersID)
				}
			}
			for path, want := range tc.want {
				if got := string(fileContents(t, served, path)); got != want {
					t.Errorf("%s as served = %q; want %q", path, got, want)
				}
			}
			if plain != nil {
				// Everything but the exposed sources is as Butane wrote it.
				assertSameExceptSources(t, plain, out.Body)
			}
			if tc.files["worker.ign"] != "" {
				assertSameExceptSources(t, []byte(tc.files["worker.ign"]), out.Body)
			}
		})
	}
}

func findFile(t *testing.T, body []byte, path string) ignFile {
	t.Helper()
	for _, f := range parseFiles(t, body) {
		if f.Path == path {
			return f
		}
	}
	t.Fatalf("no file %s in %s", path, body)
	return ignFile{}
}

// dataURLPayloads decodes every data URL source in Ignition config body.
func dataURLPayloads(t *testing.T, body []byte) [][]byte {
	t.Helper()
	var v any
	if err := json.Unmarshal(body, &v); err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	var walk func(any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, e := range v {
				if s, ok := e.(string); ok && k == "source" && strings.HasPrefix(s, "data:") {
					du, err := dataurl.DecodeString(s)
					if err != nil {
						t.Fatalf("source %.60q: %v", s, err)
					}
					out = append(out, du.Data)
				}
				walk(e)
			}
		case []any:
			for _, e := range v {
				walk(e)
			}
		}
	}
	walk(v)
	return out
}

// assertSameExceptSources checks that before and after hold the same JSON, data
// URL sources compared by their decoded data, numbers by their text.
func assertSameExceptSources(t *testing.T, before, after []byte) {
	t.Helper()
	norm := func(b []byte) any {
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.UseNumber()
		var v any
		if err := dec.Decode(&v); err != nil {
			t.Fatal(err)
		}
		var walk func(any) any
		walk = func(v any) any {
			switch v := v.(type) {
			case map[string]any:
				for k, e := range v {
					if s, ok := e.(string); ok && k == "source" && strings.HasPrefix(s, "data:") {
						du, err := dataurl.DecodeString(s)
						if err != nil {
							t.Fatal(err)
						}
						v[k] = string(du.Data)
					} else {
						v[k] = walk(e)
					}
				}
			case []any:
				for i, e := range v {
					v[i] = walk(e)
				}
			}
			return v
		}
		return walk(v)
	}
	a, _ := json.Marshal(norm(before))
	b, _ := json.Marshal(norm(after))
	if !bytes.Equal(a, b) {
		t.Errorf("config changed beyond its data URL encoding:\nbefore %s\n after %s", a, b)
	}
}

func TestExposeMarkersSource(t *testing.T) {
	for _, tc := range []struct {
		name, src, want string
	}{
		{"base64 without media type", b64URL("a " + tokenMarker + "\n"), "data:,a%20" + tokenMarker + "%0A"},
		{"base64 with media type", "data:text/plain;charset=utf-8;base64," + base64.StdEncoding.EncodeToString([]byte(idMarker+"/x")), "data:text/plain;charset=utf-8," + idMarker + "%2Fx"},
		{"percent-encoded already", "data:,a%20" + tokenMarker, "data:,a%20" + tokenMarker},
		{"markers spelled with escapes", "data:,%50ROVISIOND_MACHINE_ID_8e3a7c15", "data:," + idMarker},
		{"no marker", b64URL("plain"), b64URL("plain")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := `{"ignition":{"version":"3.4.0"},"storage":{"files":[{"path":"/f","contents":{"source":"` + tc.src + `"}}]}}`
			out, err := exposeMarkers([]byte(in))
			if err != nil {
				t.Fatal(err)
			}
			if got := *findFile(t, out, "/f").Contents.Source; got != tc.want {
				t.Errorf("source = %q; want %q", got, tc.want)
			}
			if (tc.src == tc.want) != bytes.Equal(out, []byte(in)) {
				t.Errorf("rewritten = %v; want %v", !bytes.Equal(out, []byte(in)), tc.src != tc.want)
			}
		})
	}
}
