package boot

import (
	"fmt"
	"io/fs"
	"slices"

	"github.com/provisiond/provisiond/internal/profiles"
)

// MissingAssets lists the references of set's profiles to files that assets
// (the --assets directory) does not hold as regular files: the machines of
// those profiles would loop on a 404.
func MissingAssets(set *profiles.Set, assets fs.FS) []profiles.AssetRef {
	var missing []profiles.AssetRef
	known := map[string]bool{} // path -> present; a path is often shared
	for _, a := range set.AssetPaths() {
		ok, seen := known[a.Path]
		if !seen {
			fi, err := fs.Stat(assets, a.Path)
			ok = err == nil && fi.Mode().IsRegular()
			known[a.Path] = ok
		}
		if !ok {
			missing = append(missing, a)
		}
	}
	return missing
}

// AssetProblems is MissingAssets as problems at each profile, as validate
// --assets reports them; dir names the assets directory in the message.
func AssetProblems(set *profiles.Set, assets fs.FS, dir string) profiles.Problems {
	var probs profiles.Problems
	for _, a := range MissingAssets(set, assets) {
		probs = append(probs, profiles.Problem{File: a.Pos.File, Line: a.Pos.Line,
			Msg: fmt.Sprintf("profile %s: boot.%s %s: no such file in the assets directory %s", a.Profile, a.Kind, a.Ref(), dir)})
	}
	return probs
}

// MissingFile is a file under the assets directory that profiles boot but
// that is not there.
type MissingFile struct {
	Path     string   `json:"path"`     // as the profiles write it: /assets/...
	Profiles []string `json:"profiles"` // the profiles that boot it, each once
}

// MissingFiles is MissingAssets by file: each missing path once, in the
// order first met, with the profiles that name it.
func MissingFiles(set *profiles.Set, assets fs.FS) []MissingFile {
	out := []MissingFile{}
	at := map[string]int{}
	for _, a := range MissingAssets(set, assets) {
		i, ok := at[a.Ref()]
		if !ok {
			i = len(out)
			at[a.Ref()] = i
			out = append(out, MissingFile{Path: a.Ref()})
		}
		if !slices.Contains(out[i].Profiles, a.Profile) {
			out[i].Profiles = append(out[i].Profiles, a.Profile)
		}
	}
	return out
}
