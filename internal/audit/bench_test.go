package audit_test

import (
	"context"
	"sync"
	"testing"
	"time"
)

// BenchmarkLogAppend is the audit log's durable append rate with 256
// concurrent callers (each waits for its record to be on disk), the load
// of a login flood: appends/s and records per group commit.
func BenchmarkLogAppend(b *testing.B) {
	e := newEnv(b)
	l := e.open(b)
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	ch := make(chan int, 1024)
	for range 256 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range ch {
				if _, err := l.Append(context.Background(), event(i)); err != nil {
					b.Error(err)
				}
			}
		}()
	}
	for i := range b.N {
		ch <- i
	}
	close(ch)
	wg.Wait()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "appends/s")
	var heads int
	if err := e.db.Reader().QueryRow(`SELECT COUNT(*) FROM audit_heads`).Scan(&heads); err == nil && heads > 0 {
		b.ReportMetric(float64(b.N)/float64(heads), "records/commit")
	}
}
