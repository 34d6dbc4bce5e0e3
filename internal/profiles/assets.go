package profiles

import (
	"cmp"
	"slices"
	"strings"
)

// The kinds of file an AssetRef names.
const (
	AssetKernel = "kernel"
	AssetInitrd = "initrd"
	AssetUKI    = "uki"
)

// AssetRef is one reference of a profile to a file under the assets
// directory: what serve must have for that profile to boot.
type AssetRef struct {
	Path    string // relative to the assets directory, e.g. "flatcar/vmlinuz"
	Kind    string // AssetKernel, AssetInitrd or AssetUKI
	Profile string
	Pos     Pos // the profile's, where an operator fixes the reference
}

// Ref is the reference as the profile writes it: "/assets/" + Path.
func (a AssetRef) Ref() string { return AssetPrefix + a.Path }

// AssetPaths lists every kernel, initrd and UKI the set's profiles name
// under the assets directory, by path then profile. http(s) URLs are left
// out: another server has them.
func (s *Set) AssetPaths() []AssetRef {
	var refs []AssetRef
	for _, p := range s.Profiles {
		add := func(ref, kind string) {
			if path, ok := strings.CutPrefix(ref, AssetPrefix); ok && path != "" {
				refs = append(refs, AssetRef{Path: path, Kind: kind, Profile: p.Name, Pos: p.Pos})
			}
		}
		// What the profile's loader boots: a UKI's profile names no kernel.
		if p.Boot.Loader == LoaderUKI {
			add(p.Boot.UKI, AssetUKI)
			continue
		}
		add(p.Boot.Kernel, AssetKernel)
		for _, i := range p.Boot.Initrd {
			add(i, AssetInitrd)
		}
	}
	slices.SortFunc(refs, func(a, b AssetRef) int {
		return cmp.Or(cmp.Compare(a.Path, b.Path), cmp.Compare(a.Profile, b.Profile), cmp.Compare(a.Kind, b.Kind))
	})
	return slices.Compact(refs)
}
