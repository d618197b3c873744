package audit

import (
	"bufio"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"strings"
	"time"
)

// Summary is the report as `unhidra audit verify` prints it: one line when
// the log is intact; otherwise the problem, where it is, and what was read.
func (r *Report) Summary() string {
	speed := ""
	if s := r.Elapsed.Seconds(); s > 0 {
		speed = fmt.Sprintf(", %.0f records/s", float64(r.Records)/s)
	}
	if p := r.Problem; p != nil {
		var b strings.Builder
		fmt.Fprintf(&b, "NOT INTACT (%s): %s\n", p.Kind, p.Msg)
		fmt.Fprintf(&b, "first bad:  %s\n", p.Where())
		fmt.Fprintf(&b, "read %d records and %d signed heads in %s%s", r.Records, r.Heads, r.Elapsed.Round(time.Millisecond), speed)
		return b.String()
	}
	last := "no signed head"
	if r.Last != nil {
		last = fmt.Sprintf("last head %d records signed %s", r.Last.Size, r.Last.Time.UTC().Format("2006-01-02T15:04:05Z"))
	}
	contained := ""
	if r.Checkpoint != nil {
		contained = fmt.Sprintf(", contains the checkpoint of %d records", r.Checkpoint.Size)
	}
	return fmt.Sprintf("intact: %d records, %d signed heads, root %s, %s%s; verified in %s%s",
		r.Records, r.Heads, base64.StdEncoding.EncodeToString(r.Root[:]), last, contained, r.Elapsed.Round(time.Millisecond), speed)
}

// Where names the first bad record or range ("no record at fault" when
// none is).
func (p *Problem) Where() string {
	switch {
	case p.Seq >= 0 && p.Last > p.Seq:
		return fmt.Sprintf("records %d..%d", p.Seq, p.Last)
	case p.Seq >= 0:
		return fmt.Sprintf("record %d", p.Seq)
	}
	return "no record at fault"
}

// Export writes the records from..to (to 0: the end) of one snapshot of
// sc to w as JSON lines, each exactly a record's canonical entry. It
// returns how many it wrote and the next index to export from.
func Export(ctx context.Context, sc Scanner, w io.Writer, from, to uint64) (n, next uint64, err error) {
	bw := bufio.NewWriterSize(w, 256<<10)
	next = from
	err = sc.AuditSnapshot(ctx, func(s Snapshot) error {
		for row, err := range s.Rows(from) {
			if err != nil {
				return err
			}
			if to > 0 && row.Seq >= to {
				break
			}
			bw.Write(row.Entry)
			if err := bw.WriteByte('\n'); err != nil {
				return err
			}
			n++
			next = row.Seq + 1
		}
		return nil
	})
	if ferr := bw.Flush(); err == nil {
		err = ferr
	}
	return n, next, err
}
