//go:build tributary_external

package tributary

// Linking against an installed library (build with `-tags tributary_external`): cgo
// asks pkg-config for tributary's flags, so install it with `scripts/install PREFIX`
// (which writes PREFIX/lib/pkgconfig/tributary.pc) and, for a PREFIX pkg-config does
// not search, point it there:
//
//	PKG_CONFIG_PATH=/opt/tributary/lib/pkgconfig go build -tags tributary_external ./...
//
// Programs linked to the shared library find it at run time through the loader's
// paths (LD_LIBRARY_PATH, ldconfig) or an rpath you add with CGO_LDFLAGS.

/*
#cgo pkg-config: tributary
*/
import "C"
