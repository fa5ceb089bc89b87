package tributary

/*
#include <stdlib.h>
#include "tributary.h"
*/
import "C"

import (
	"fmt"
	"runtime"
	"strings"
	"unsafe"
)

// A CursorStore keeps named reader cursors durably in a local SQLite file: a
// program commits the Cursor of the last line it processed under a name and, after a
// restart, reopens a Reader there with OpenReaderAt(target, c). A stored Cursor keeps
// its TargetID, so a Reader of another target refuses it.
//
// For results appended to a Journal, prefer Journal.AppendBatchWithCursor: it commits
// the cursor together with the results, in one transaction.
//
// A CursorStore is safe for concurrent use (its calls are serialized).
type CursorStore struct {
	// h is the library handle; calls take it exclusively (a trib_cursor_store is
	// single-threaded), Close waits for them (see owned).
	h    owned[*C.trib_cursor_store]
	path string
}

// OpenCursorStore opens the cursor store at path, creating it (mode 0600) if it does
// not exist. It must be on a local disk (ErrUnsafeFilesystem otherwise); a file that
// is not a cursor store is ErrNotAJournal.
func OpenCursorStore(path string) (*CursorStore, error) {
	const op = "open cursor store"
	cpath, err := cString(op, "path", path)
	if err != nil {
		return nil, err
	}
	defer C.free(unsafe.Pointer(cpath))
	var h *C.trib_cursor_store
	var cerr *C.trib_error
	if err := callError(op, C.trib_cursor_store_open(cpath, &h, &cerr), cerr); err != nil {
		return nil, err
	}
	s := &CursorStore{path: path}
	s.h = owned[*C.trib_cursor_store]{
		p:    h,
		free: func(h *C.trib_cursor_store) { C.trib_cursor_store_close(h) },
		what: "cursor store",
	}
	// A backstop only: a CursorStore that is garbage-collected unclosed is closed here.
	runtime.SetFinalizer(s, func(s *CursorStore) { s.h.finalize() })
	return s, nil
}

// Path is the path the store was opened with.
func (s *CursorStore) Path() string { return s.path }

// cName copies a cursor's name to C memory (free it with C.free): non-empty text
// without NUL bytes.
func cName(op, name string) (*C.char, error) {
	if name == "" || strings.IndexByte(name, 0) >= 0 {
		return nil, argError(op, fmt.Sprintf("a cursor's name must be non-empty text without NUL bytes, not %q", name))
	}
	return C.CString(name), nil
}

// Get returns the cursor last committed under name; ok is false if there is none.
func (s *CursorStore) Get(name string) (c Cursor, ok bool, err error) {
	const op = "cursor store get"
	cname, err := cName(op, name)
	if err != nil {
		return Cursor{}, false, err
	}
	defer C.free(unsafe.Pointer(cname))
	h, err := s.h.exclusive(op)
	if err != nil {
		return Cursor{}, false, err
	}
	defer s.h.mu.Unlock()
	var out C.trib_cursor
	var found C.bool
	var cerr *C.trib_error
	rc := C.trib_cursor_store_get(h, cname, &out, &found, &cerr)
	runtime.KeepAlive(s)
	if err := callError(op, rc, cerr); err != nil {
		return Cursor{}, false, err
	}
	if !found {
		return Cursor{}, false, nil
	}
	return cursorFromC(&out), true, nil
}

// Commit durably records (fsync) that name has processed everything before c,
// replacing what name held.
func (s *CursorStore) Commit(name string, c Cursor) error {
	const op = "cursor store commit"
	if c.Offset < 0 {
		return argError(op, fmt.Sprintf("cursor %v: the offset is negative", c))
	}
	cc, err := c.toC(op)
	if err != nil {
		return err
	}
	cname, err := cName(op, name)
	if err != nil {
		return err
	}
	defer C.free(unsafe.Pointer(cname))
	h, err := s.h.exclusive(op)
	if err != nil {
		return err
	}
	defer s.h.mu.Unlock()
	var cerr *C.trib_error
	rc := C.trib_cursor_store_commit(h, cname, &cc, &cerr)
	runtime.KeepAlive(s)
	return callError(op, rc, cerr)
}

// Close releases the store; every Commit that returned nil is already durable. It
// waits for calls in progress; later calls fail with ErrClosed. Closing twice is
// harmless: Close always returns nil.
func (s *CursorStore) Close() error {
	if s.h.close() {
		runtime.SetFinalizer(s, nil)
	}
	return nil
}
