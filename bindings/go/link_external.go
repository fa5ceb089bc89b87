//go:build tributary_external

package tributary

// Linking against a library you provide (build with `-tags tributary_external`):
// only -ltributary is given here; say where the header and the library are with the
// usual cgo variables, for example
//
//	CGO_CFLAGS="-I/opt/tributary/include" \
//	CGO_LDFLAGS="-L/opt/tributary/lib -Wl,-rpath,/opt/tributary/lib" \
//	go build -tags tributary_external ./...
//
// or install tributary.h and libtributary.so where the C compiler and linker look
// by default (/usr/local/include, /usr/local/lib). The in-repository include folder
// stays on the include path after yours, so a checkout of the repository still finds
// its own header when CGO_CFLAGS does not name one.

/*
#cgo CFLAGS: -I${SRCDIR}/../../include
#cgo LDFLAGS: -ltributary
*/
import "C"
