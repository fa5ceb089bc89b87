package tributary

/*
#include <stdlib.h>
#include "tributary.h"
*/
import "C"

import (
	"strings"
	"unsafe"
)

// VerifyReport is the outcome of Verify.
type VerifyReport struct {
	// Consistent is true when the target's committed part matches its manifest
	// (length, line count, running CRC). An uncommitted tail does not make it
	// inconsistent.
	Consistent bool
	Epoch      uint64
	// CommittedLen and CommittedLines are the current generation's.
	CommittedLen   uint64
	CommittedLines uint64
	// Generation is the target's current generation (1 until a managed rotation).
	Generation uint64
	// RotatedGenerations is how many rotated generations ("<target>.<generation>")
	// are still kept; Verify checks them too.
	RotatedGenerations int
	// TargetLen is the target's length now.
	TargetLen uint64
	// UncommittedTailBytes are bytes beyond CommittedLen, left by a crashed or
	// running drain: reported, not a failure; the next drain truncates them.
	UncommittedTailBytes uint64
	// Problems says what does not match (empty when Consistent).
	Problems []string
}

// Verify checks the target against its manifest: length, line count and running
// CRC of the committed bytes. An inconsistent target is reported in the report
// (Consistent false), not as an error; errors are for when the check cannot run: a
// target that was never drained (no manifest: ErrInvalidArgument), a corrupt manifest
// (ErrCorruptManifest), I/O errors. It reads the whole committed part of the target.
func Verify(target string) (VerifyReport, error) {
	const op = "verify"
	ctarget, err := cString(op, "target", target)
	if err != nil {
		return VerifyReport{}, err
	}
	defer C.free(unsafe.Pointer(ctarget))
	var r C.trib_verify_report
	var cerr *C.trib_error
	if err := callError(op, C.trib_verify(ctarget, &r, &cerr), cerr); err != nil {
		return VerifyReport{}, err
	}
	defer C.trib_verify_report_clear(&r)
	out := VerifyReport{
		Consistent:           bool(r.consistent),
		Epoch:                uint64(r.epoch),
		CommittedLen:         uint64(r.committed_len),
		CommittedLines:       uint64(r.committed_lines),
		TargetLen:            uint64(r.target_len),
		UncommittedTailBytes: uint64(r.uncommitted_tail_bytes),
		Generation:           uint64(r.generation),
		RotatedGenerations:   int(r.rotated_generations),
	}
	if r.problems != nil {
		out.Problems = strings.Split(C.GoString(r.problems), "\n")
	}
	return out, nil
}

// StatusReport is the committed state of a target and the backlog of the journals
// of a spool.
type StatusReport struct {
	// HasManifest is false before the first drain; the manifest fields are then 0.
	HasManifest bool
	TargetID    string // 32 hex digits; empty without a manifest
	Epoch       uint64
	// Generation is the target's current generation (1 until a managed rotation;
	// 0 without a manifest). The committed fields below are this generation's.
	Generation     uint64
	CommittedLen   uint64
	CommittedLines uint64
	CommittedCRC   uint32 // CRC32 of the first CommittedLen bytes
	// RotatedGenerations is how many rotated generations ("<target>.<generation>")
	// are still kept.
	RotatedGenerations int
	// ManifestFormat is the manifest's format version: 3 (deltas, the default for
	// new targets; drained by tributary 0.2.0 and later only), 2 ("tributary init
	// --manifest-format 2": what older builds read), 1 (not upgraded yet); 0 without
	// a manifest.
	ManifestFormat int
	// TargetExists is false when the target file does not exist (yet).
	TargetExists bool
	TargetLen    uint64
	// Watermarks has one entry per journal that ever fed the target, ordered by
	// journal id.
	Watermarks []Watermark
	// Journals has one entry per journal of the spool given to Status, ordered by
	// path.
	Journals []JournalStatus
}

// Watermark is how far one journal has been drained into the target.
type Watermark struct {
	JournalID string // 32 hex digits
	LastSeq   uint64 // highest seq of the journal committed in the target
	CRC       uint32 // CRC32 of the line at LastSeq
}

// JournalStatus is one journal of a spool.
type JournalStatus struct {
	Path      string
	JournalID string
	Backlog   Backlog
	// Watermark is the target's watermark for this journal (0 when it never fed
	// the target).
	Watermark uint64
}

// Status reads the committed state of target (its manifest and size) and, if spool
// is not "", the backlog of every *.journal in that folder. It takes no lock.
func Status(target, spool string) (StatusReport, error) {
	const op = "status"
	ctarget, err := cString(op, "target", target)
	if err != nil {
		return StatusReport{}, err
	}
	defer C.free(unsafe.Pointer(ctarget))
	var cspool *C.char
	if spool != "" {
		if cspool, err = cString(op, "spool", spool); err != nil {
			return StatusReport{}, err
		}
		defer C.free(unsafe.Pointer(cspool))
	}
	var rep *C.trib_status_report
	var cerr *C.trib_error
	if err := callError(op, C.trib_status(ctarget, cspool, &rep, &cerr), cerr); err != nil {
		return StatusReport{}, err
	}
	defer C.trib_status_report_free(rep)

	var s C.trib_status_summary
	if err := callError(op, C.trib_status_report_summary(rep, &s, &cerr), cerr); err != nil {
		return StatusReport{}, err
	}
	out := StatusReport{
		HasManifest:    bool(s.has_manifest),
		TargetID:       goID(&s.target_id),
		Epoch:          uint64(s.epoch),
		CommittedLen:   uint64(s.committed_len),
		CommittedLines: uint64(s.committed_lines),
		CommittedCRC:   uint32(s.committed_crc),
		TargetExists:   bool(s.target_exists),
		TargetLen:      uint64(s.target_len),
	}
	out.Generation = uint64(s.generation)
	out.RotatedGenerations = int(s.rotated_generations)
	var format C.uint32_t
	if err := callError(op, C.trib_status_report_manifest_format(rep, &format, &cerr), cerr); err != nil {
		return StatusReport{}, err
	}
	out.ManifestFormat = int(format)
	for i := 0; i < int(s.watermark_count); i++ {
		var w C.trib_watermark
		if err := callError(op, C.trib_status_report_watermark(rep, C.size_t(i), &w, &cerr), cerr); err != nil {
			return StatusReport{}, err
		}
		out.Watermarks = append(out.Watermarks, Watermark{
			JournalID: goID(&w.journal_id),
			LastSeq:   uint64(w.last_seq),
			CRC:       uint32(w.crc),
		})
	}
	for i := 0; i < int(s.journal_count); i++ {
		var js C.trib_journal_status
		if err := callError(op, C.trib_status_report_journal(rep, C.size_t(i), &js, &cerr), cerr); err != nil {
			return StatusReport{}, err
		}
		out.Journals = append(out.Journals, JournalStatus{
			Path:      C.GoString(js.path),
			JournalID: goID(&js.journal_id),
			Backlog:   goBacklog(&js.backlog),
			Watermark: uint64(js.watermark),
		})
	}
	return out, nil
}
