// Package ipxe renders the iPXE scripts provisiond serves (the generic chain script
// and each machine's boot script) and carries the embedded iPXE binaries that
// PXE firmware downloads first.
package ipxe
