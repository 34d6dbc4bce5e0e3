package assets

import (
	"bytes"
	"crypto"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/packet"

	"github.com/provisiond/provisiond/internal/assets/assetstest"
)

func TestEmbeddedKeys(t *testing.T) {
	tests := []struct {
		os   string
		want []string // primary fingerprints
		sub  string   // a signing subkey that must be there
	}{
		{Flatcar, []string{"F88CFEDEFF29A5B4D9523864E25D9AED0593B34A"}, "52F145DFD00BBDCD928CBB5A32DA80F91EF52974"},
		{FCOS, []string{
			"C6E7F081CF80E13146676E88829B606631645531",
			"36F612DCF27F7D1A48A835E4DBFCF71C6D9F90A6",
			"4F50A6114CD5C6976A7F1179655A4B02F577861E",
		}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.os, func(t *testing.T) {
			kr, err := readKeyring(embeddedKeys(tt.os))
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			subs := map[string]bool{}
			for _, e := range kr {
				got = append(got, fmt.Sprintf("%X", e.PrimaryKey.Fingerprint))
				for _, s := range e.Subkeys {
					subs[fmt.Sprintf("%X", s.PublicKey.Fingerprint)] = s.Sig.FlagSign
				}
			}
			if strings.Join(got, " ") != strings.Join(tt.want, " ") {
				t.Errorf("keys = %v; want %v", got, tt.want)
			}
			if tt.sub != "" && !subs[tt.sub] {
				t.Errorf("signing subkey %s missing", tt.sub)
			}
		})
	}
	if embeddedKeys(Talos) != nil {
		t.Error("Talos has embedded keys; it publishes no signatures")
	}
}

func TestReadKeyring(t *testing.T) {
	a := assetstest.PublicKey(t, assetstest.NewKey(t, "a"))
	b := assetstest.PublicKey(t, assetstest.NewKey(t, "b"))
	var binary bytes.Buffer
	if err := assetstest.NewKey(t, "c").Serialize(&binary); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		data    []byte
		want    int
		wantErr bool
	}{
		{"one armored", a, 1, false},
		{"two armored blocks", append(append(append([]byte{}, a...), '\n'), b...), 2, false},
		{"binary", binary.Bytes(), 1, false},
		{"empty", nil, 0, true},
		{"not a key", []byte("hello"), 0, true},
		{"unterminated block", a[:len(a)-40], 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kr, err := readKeyring(tt.data)
			if (err != nil) != tt.wantErr || len(kr) != tt.want {
				t.Fatalf("readKeyring = %d keys, %v; want %d keys, error %v", len(kr), err, tt.want, tt.wantErr)
			}
		})
	}
}

// signAt makes a binary detached signature by key dated at, whether or not the
// key was valid then (go-crypto's own signing refuses expired keys).
func signAt(t *testing.T, key *packet.PrivateKey, at time.Time, data []byte) []byte {
	return signFor(t, key, at, 0, data)
}

// signFor is signAt for a signature that itself expires after lifetime.
func signFor(t *testing.T, key *packet.PrivateKey, at time.Time, lifetime time.Duration, data []byte) []byte {
	t.Helper()
	cfg := &packet.Config{Time: func() time.Time { return at }}
	sig := &packet.Signature{
		SigType:      packet.SigTypeBinary,
		PubKeyAlgo:   key.PubKeyAlgo,
		Hash:         crypto.SHA256,
		CreationTime: at,
		IssuerKeyId:  &key.KeyId,
	}
	if lifetime > 0 {
		secs := uint32(lifetime / time.Second)
		sig.SigLifetimeSecs = &secs
	}
	h, err := sig.PrepareSign(cfg)
	if err != nil {
		t.Fatal(err)
	}
	h.Write(data)
	var b bytes.Buffer
	if err := sig.Sign(h, key, cfg); err != nil {
		t.Fatal(err)
	}
	if err := sig.Serialize(&b); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// TestSignatureKeyLifetime: a release signed while its (yearly rotated)
// signing subkey was valid stays verifiable after the subkey expires; a
// signature dated after expiry, or by a revoked key, does not.
func TestSignatureKeyLifetime(t *testing.T) {
	year := 365 * 24 * time.Hour
	t0 := time.Now().Add(-3 * year)
	then := func(at time.Time) *packet.Config {
		return &packet.Config{Algorithm: packet.PubKeyAlgoEdDSA, Time: func() time.Time { return at }}
	}
	e, err := openpgp.NewEntity("Rotating", "", "rotating@example.invalid", then(t0))
	if err != nil {
		t.Fatal(err)
	}
	sub := then(t0)
	sub.KeyLifetimeSecs = uint32(year / time.Second)
	if err := e.AddSigningSubkey(sub); err != nil {
		t.Fatal(err)
	}
	subkey := e.Subkeys[len(e.Subkeys)-1].PrivateKey
	revoked := assetstest.NewKey(t, "Revoked")
	if err := revoked.RevokeKey(packet.KeyCompromised, "test", nil); err != nil {
		t.Fatal(err)
	}

	data := []byte("release digests\n")
	tests := []struct {
		name    string
		signer  *openpgp.Entity
		sig     []byte
		wantErr string
	}{
		{"subkey valid when it signed", e, signAt(t, subkey, t0.Add(year/2), data), ""},
		{"subkey expired when it signed", e, signAt(t, subkey, t0.Add(2*year), data), "expired"},
		{"subkey not yet valid", e, signAt(t, subkey, t0.Add(-time.Hour), data), "expired"},
		{"subkey expired since, signature expired too", e, signFor(t, subkey, t0.Add(year/2), time.Hour, data), "expired"},
		{"valid key, signature expired", e, signFor(t, e.PrivateKey, t0.Add(year/2), time.Hour, data), "expired"},
		{"valid key, signature not yet expired", e, signFor(t, e.PrivateKey, time.Now().Add(-time.Hour), 2*time.Hour, data), ""},
		{"revoked key", revoked, signAt(t, revoked.PrivateKey, time.Now(), data), "revoked"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kr, err := readKeyring(assetstest.PublicKey(t, tt.signer))
			if err != nil {
				t.Fatal(err)
			}
			signer, err := verifySignature(kr, bytes.NewReader(data), tt.sig)
			if tt.wantErr == "" {
				if err != nil || !strings.Contains(signer, "Rotating") {
					t.Fatalf("verify = %q, %v; want accepted", signer, err)
				}
				return
			}
			if !errors.Is(err, ErrUnverified) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("verify = %q, %v; want %v mentioning %q", signer, err, ErrUnverified, tt.wantErr)
			}
		})
	}
}

func TestVerifySignedText(t *testing.T) {
	key := assetstest.NewKey(t, "Signer")
	other := assetstest.NewKey(t, "Other")
	kr, err := readKeyring(assetstest.PublicKey(t, key))
	if err != nil {
		t.Fatal(err)
	}
	text := []byte("# SHA512 HASH\nabc  file\n- a line with a dash\n")
	clear := assetstest.ClearSign(t, key, text)
	fetched := func(b []byte, err error) func() ([]byte, error) {
		return func() ([]byte, error) { return b, err }
	}
	tests := []struct {
		name     string
		asc      []byte
		detached func() ([]byte, error)
		wantErr  bool
	}{
		{"clearsigned", clear, nil, false},
		{"clearsigned, text altered", bytes.Replace(clear, []byte("abc"), []byte("abd"), 1), nil, true},
		{"clearsigned by another key", assetstest.ClearSign(t, other, text), nil, true},
		{"detached armored", assetstest.ArmoredDetachSign(t, key, text), fetched(text, nil), false},
		{"detached, text altered", assetstest.ArmoredDetachSign(t, key, text), fetched(append([]byte("x"), text...), nil), true},
		{"detached, text missing", assetstest.ArmoredDetachSign(t, key, text), fetched(nil, ErrNotFound), true},
		{"garbage", []byte("-----BEGIN PGP SIGNATURE-----\nnope\n-----END PGP SIGNATURE-----\n"), fetched(text, nil), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, signer, err := verifySignedText(kr, tt.asc, tt.detached)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("verifySignedText accepted %q", got)
				}
				return
			}
			if err != nil || !bytes.Equal(got, text) || !strings.HasPrefix(signer, "Signer (test only)") {
				t.Fatalf("verifySignedText = %q, %q, %v; want the text signed by Signer", got, signer, err)
			}
		})
	}
}

func TestParseDigests(t *testing.T) {
	sha512 := strings.Repeat("ab", 64)
	sha256 := strings.Repeat("cd", 32)
	tests := []struct {
		name    string
		text    string
		want    hashSet
		wantErr bool
	}{
		{"flatcar format", "# MD5 HASH\n" + strings.Repeat("0", 32) + "  f\n# SHA1 HASH\n" + strings.Repeat("1", 40) + "  f\n# SHA512 HASH\n" + sha512 + "  f\n",
			hashSet{"sha512": sha512}, false},
		{"other files ignored", "# SHA512 HASH\n" + strings.Repeat("ee", 64) + "  g\n" + sha512 + "  f\n", hashSet{"sha512": sha512}, false},
		{"sha256 too", "# SHA256 HASH\n" + sha256 + "  f\n# SHA512 HASH\n" + strings.ToUpper(sha512) + " *f\n", hashSet{"sha512": sha512, "sha256": sha256}, false},
		{"untrusted only", "# MD5 HASH\n" + strings.Repeat("0", 32) + "  f\n", hashSet{}, false},
		{"lines before any header", sha512 + "  f\n", hashSet{}, false},
		{"short digest", "# SHA512 HASH\nabcd  f\n", nil, true},
		{"two different", "# SHA512 HASH\n" + sha512 + "  f\n" + strings.Repeat("ef", 64) + "  f\n", nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseDigests([]byte(tt.text), "f")
			if (err != nil) != tt.wantErr || (!tt.wantErr && fmt.Sprint(got) != fmt.Sprint(tt.want)) {
				t.Fatalf("parseDigests = %v, %v; want %v, error %v", got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestParseSums(t *testing.T) {
	d := strings.Repeat("ab", 32)
	tests := []struct {
		name string
		text string
		want hashSet
	}{
		{"text mode", d + "  vmlinuz-amd64\n", hashSet{"sha256": d}},
		{"binary mode", d + " *vmlinuz-amd64\n", hashSet{"sha256": d}},
		{"other names only", d + "  vmlinuz-arm64\n" + d + "  vmlinuz-amd64.sig\n", hashSet{}},
		{"blank and junk lines", "\njunk\n" + d + "  vmlinuz-amd64\n", hashSet{"sha256": d}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseSums([]byte(tt.text), "sha256", "vmlinuz-amd64")
			if err != nil || fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Fatalf("parseSums = %v, %v; want %v", got, err, tt.want)
			}
		})
	}
}

func TestResolveFCOSLocation(t *testing.T) {
	const stream = "https://mirror.example/fcos/streams/stable.json"
	tests := []struct {
		name, ref, mirror, want string
	}{
		{"official, no mirror", fcosOfficial + "/prod/k", "", fcosOfficial + "/prod/k"},
		{"official onto mirror", fcosOfficial + "/prod/k", "https://mirror.example/fcos", "https://mirror.example/fcos/prod/k"},
		{"relative to the stream", "../prod/k", "https://mirror.example/fcos", "https://mirror.example/fcos/prod/k"},
		{"elsewhere kept", "https://other.example/k", "https://mirror.example/fcos", "https://other.example/k"},
		{"lookalike host kept", "https://builds.coreos.fedoraproject.org.evil.example/k", "https://mirror.example/fcos", "https://builds.coreos.fedoraproject.org.evil.example/k"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := resolve(stream, tt.ref, tt.mirror)
			if err != nil || got != tt.want {
				t.Fatalf("resolve = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func TestNoDowngrade(t *testing.T) {
	req := func(u string) *http.Request {
		p, err := url.Parse(u)
		if err != nil {
			t.Fatal(err)
		}
		return &http.Request{URL: p}
	}
	tests := []struct {
		name    string
		from    string
		to      string
		hops    int
		wantErr bool
	}{
		{"https to https", "https://github.com/x", "https://objects.example/x", 1, false},
		{"http to http", "http://mirror/x", "http://mirror/y", 1, false},
		{"https to http", "https://github.com/x", "http://objects.example/x", 1, true},
		{"too many", "https://a/x", "https://a/y", 10, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			via := make([]*http.Request, tt.hops)
			for i := range via {
				via[i] = req(tt.from)
			}
			if err := noDowngrade(req(tt.to), via); (err != nil) != tt.wantErr {
				t.Fatalf("noDowngrade = %v; want error %v", err, tt.wantErr)
			}
		})
	}
}
