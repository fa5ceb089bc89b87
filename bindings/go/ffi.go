package tributary

/*
#include <stdlib.h>
#include "tributary.h"
*/
import "C"

import (
	"fmt"
	"strings"
	"time"
	"unsafe"
)

// ABIVersion is the version of the C ABI this package was compiled against
// (TRIB_ABI_VERSION of include/tributary.h).
const ABIVersion uint32 = C.TRIB_ABI_VERSION

// The library's struct layouts must be the ones this package was compiled with:
// refuse to run against a library built for another ABI (a stale libtributary.so
// on the library path) instead of corrupting memory.
func init() {
	if got := uint32(C.trib_abi_version()); got != ABIVersion {
		panic(fmt.Sprintf("tributary: the loaded libtributary (version %s) has C ABI version %d, but this Go "+
			"package was compiled against ABI version %d: rebuild the library and this package from the same "+
			"checkout (cargo build --release)", LibraryVersion(), got, ABIVersion))
	}
}

// LibraryVersion is the version of the linked libtributary (e.g. "0.2.0").
func LibraryVersion() string {
	return C.GoString(C.trib_version())
}

// callError turns the result code and the error of one C call into a Go error (nil
// for TRIB_OK) and frees the C error. The error always comes from the same call's
// err_out: the library keeps no thread-local "last error".
func callError(op string, rc C.int, cerr *C.trib_error) error {
	if rc == C.TRIB_OK { // on success the library does not touch err_out
		return nil
	}
	if cerr == nil {
		return &Error{Op: op, Kind: ErrorKind(rc), Message: C.GoString(C.trib_result_name(rc)), LineIndex: -1}
	}
	defer C.trib_error_free(cerr)
	return &Error{
		Op:        op,
		Kind:      ErrorKind(C.trib_error_kind(cerr)),
		Message:   C.GoString(C.trib_error_message(cerr)),
		LineIndex: int(C.trib_error_line_index(cerr)),
		// (uint64_t: the cgo type converts exactly)
		RecordsNotStored: uint64(C.trib_error_records_not_stored(cerr)),
	}
}

// cString copies a path to C memory (free it with C.free). A Go string with a NUL
// byte cannot be passed on: C would see a shorter, different path.
func cString(op, what, s string) (*C.char, error) {
	if strings.IndexByte(s, 0) >= 0 {
		return nil, argError(op, fmt.Sprintf("%s %q contains a NUL byte", what, s))
	}
	return C.CString(s), nil
}

// bytesArg is the (pointer, length) pair of a byte slice for C; the library never
// keeps the pointer after the call returns. (nil, 0) is the empty string.
func bytesArg(b []byte) (*C.uint8_t, C.size_t) {
	if len(b) == 0 {
		return nil, 0
	}
	return (*C.uint8_t)(unsafe.Pointer(unsafe.SliceData(b))), C.size_t(len(b))
}

// stringArg is bytesArg for a string, without copying it.
func stringArg(s string) (*C.uint8_t, C.size_t) {
	if len(s) == 0 {
		return nil, 0
	}
	return (*C.uint8_t)(unsafe.Pointer(unsafe.StringData(s))), C.size_t(len(s))
}

// millis converts an option's duration to whole milliseconds, rounding up so that a
// positive duration never becomes 0 ("off" or "at once" for several options).
func millis(op, what string, d time.Duration) (C.uint64_t, error) {
	if d < 0 {
		return 0, argError(op, fmt.Sprintf("%s is negative (%v)", what, d))
	}
	// (not (d + 1ms - 1) / 1ms: that overflows for durations near "forever", e.g.
	// time.Duration(math.MaxInt64), into a negative number the library refused)
	ms := d / time.Millisecond
	if d%time.Millisecond != 0 {
		ms++
	}
	return C.uint64_t(ms), nil
}

// idHexDigits is the length of a journal or target id in hex digits: TRIB_ID_BUF_LEN
// without its NUL.
const idHexDigits = C.TRIB_ID_BUF_LEN - 1

// goID reads a NUL-terminated id buffer (TRIB_ID_BUF_LEN bytes).
func goID(buf *[C.TRIB_ID_BUF_LEN]C.char) string {
	return C.GoString(&buf[0])
}

// debugPanic calls trib_debug_panic, which panics inside the library on purpose;
// the tests use it to see that the panic comes back as a KindPanic error.
func debugPanic() error {
	var cerr *C.trib_error
	rc := C.trib_debug_panic(&cerr)
	return callError("debug panic", rc, cerr)
}

// resultName is the library's name for a result code (tests compare it with
// ErrorKind.String).
func resultName(code int) string {
	return C.GoString(C.trib_result_name(C.int(code)))
}
