//go:build !tributary_external

package tributary

// Linking against the library built in this repository (the default): the header
// comes from <repo>/include and the library from <repo>/target/release, which
// `cargo build --release` produces. The rpath lets programs and tests run without
// LD_LIBRARY_PATH. To link an installed library instead, build with
// `-tags tributary_external` (see link_external.go and docs/go.md).

/*
#cgo CFLAGS: -I${SRCDIR}/../../include
#cgo LDFLAGS: -L${SRCDIR}/../../target/release -Wl,-rpath,${SRCDIR}/../../target/release -ltributary
*/
import "C"
