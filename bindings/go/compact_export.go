package tributary

// The callback trib_compact calls, exported to C (a file with //export may only
// declare C things in its preamble: the trampoline is in compact.go).

/*
#include "tributary.h"
*/
import "C"

import "unsafe"

//export compactEvent
func compactEvent(ctx unsafe.Pointer, event C.int, subject *C.char, kind C.int, message *C.char,
	report *C.trib_drain_report) {
	compactEventFromC(ctx, event, subject, kind, message, report)
}
