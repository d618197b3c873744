package audit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/mod/sumdb/note"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/audit/merkle"
)

// Options configure a Log.
type Options struct {
	// Signer signs the tree heads (required).
	Signer note.Signer
	// Origin is the first line of every checkpoint (default: the signer's
	// name).
	Origin string
	// Dir, when set, receives the latest checkpoint (CheckpointFile) every
	// CheckpointEvery when the log grew, and on Close.
	Dir             string
	CheckpointEvery time.Duration // default 1 minute
	// MaxBatch bounds a group commit (default 512); QueueLen the events
	// waiting for one (default 4096).
	MaxBatch int
	QueueLen int
	// Wait bounds how long Audit waits for room in a full queue (default
	// 10 s); after that the record is reported as lost.
	Wait       time.Duration
	Log        *slog.Logger
	Registerer prometheus.Registerer
	Now        func() time.Time
}

// Log is the tamper-evident audit log: a Recorder that appends every event
// as a Record to an RFC 6962 Merkle tree kept in a Store. Events are group
// committed: one transaction, one signed head and one fsync for all the
// events that arrived while the previous commit ran, so a flood of logins
// costs the log a few transactions a second, not one each. Audit returns
// once its record is durable, so an action acknowledged to a client is in
// the log; a record that cannot be stored is written to the process log at
// error level and counted (unhidra_audit_append_errors_total), never
// dropped silently.
type Log struct {
	st   Store
	o    Options
	log  *slog.Logger
	m    *logMetrics
	q    chan *pending
	quit chan struct{}
	done chan struct{}

	nlost     atomic.Uint64
	closeOnce sync.Once
	mu        sync.Mutex
	head      Head // the latest stored head
	written   uint64
	lastErr   error
	lastErrAt time.Time

	// Owned by the commit loop.
	tree *merkle.Tree
}

type pending struct {
	rec  Record
	done chan error
}

// Open opens the log kept in st and starts its commit loop. It refuses a
// store whose tree does not end in its last signed head (the log was
// altered: `unhidra audit verify` says where).
func Open(ctx context.Context, st Store, o Options) (*Log, error) {
	if o.Signer == nil {
		return nil, errors.New("audit: no signer")
	}
	if o.Origin == "" {
		o.Origin = o.Signer.Name()
	}
	if o.CheckpointEvery <= 0 {
		o.CheckpointEvery = time.Minute
	}
	if o.MaxBatch <= 0 {
		o.MaxBatch = 512
	}
	if o.QueueLen <= 0 {
		o.QueueLen = 4096
	}
	if o.Wait <= 0 {
		o.Wait = 10 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	l := &Log{st: st, o: o, log: o.Log, m: newLogMetrics(o.Registerer), q: make(chan *pending, o.QueueLen), quit: make(chan struct{}), done: make(chan struct{})}
	if err := l.load(ctx); err != nil {
		return nil, err
	}
	l.written = l.head.Size
	go l.run()
	return l, nil
}

// load reads the tree's right edge from the store and checks it against
// the last signed head.
func (l *Log) load(ctx context.Context) error {
	head, err := l.st.AuditHead(ctx)
	if err != nil {
		return fmt.Errorf("audit: read the last signed head: %w", err)
	}
	ids := merkle.Edge(head.Size)
	var edge []merkle.Hash
	if len(ids) > 0 {
		if edge, err = l.st.AuditNodes(ctx, ids); err != nil {
			return fmt.Errorf("audit: the tree of %d records is incomplete (run `unhidra audit verify`): %w", head.Size, err)
		}
	}
	tree, err := merkle.NewTree(head.Size, edge)
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	if head.Size > 0 && tree.Root() != head.Root {
		return fmt.Errorf("audit: the stored tree of %d records does not end in its signed head (run `unhidra audit verify`)", head.Size)
	}
	l.tree = tree
	l.mu.Lock()
	l.head = head
	l.mu.Unlock()
	return nil
}

// Audit implements Recorder: it appends e and waits until it is stored.
// A record that cannot be stored is reported as lost (see Log).
func (l *Log) Audit(ctx context.Context, e Event) {
	_, _ = l.Append(ctx, e)
}

// Append appends e and returns its seq once it is durable. When it cannot
// be stored, the error says why and the record is reported as lost. It
// waits at most Options.Wait for room in the queue; once queued, the
// commit loop always answers (the store's own timeout bounds a commit).
func (l *Log) Append(ctx context.Context, e Event) (uint64, error) {
	e = Complete(ctx, e, l.o.Now())
	p := &pending{rec: NewRecord(e), done: make(chan error, 1)}
	fail := func(err error) (uint64, error) {
		l.lost(p.rec, err)
		return 0, err
	}
	select {
	case <-l.quit:
		return fail(errClosed)
	default:
	}
	t := time.NewTimer(l.o.Wait)
	select {
	case l.q <- p:
		t.Stop()
	case <-l.quit:
		t.Stop()
		return fail(errClosed)
	case <-t.C:
		l.m.waits.Inc()
		return fail(fmt.Errorf("the audit queue stayed full for %s", l.o.Wait))
	}
	select {
	case err := <-p.done:
		if err != nil {
			return fail(err)
		}
		return p.rec.Seq, nil
	case <-l.done:
		// Closed while this one was being queued: stored in the last
		// drain, or never.
		select {
		case err := <-p.done:
			if err != nil {
				return fail(err)
			}
			return p.rec.Seq, nil
		default:
			return fail(errClosed)
		}
	}
}

var errClosed = unhidra.Errorf(unhidra.EUNAVAILABLE, "the audit log is closed")

// lost reports a record that could not be stored: at error level with
// every field, so the process log keeps what the audit log could not.
func (l *Log) lost(r Record, err error) {
	l.m.errors.Inc()
	l.nlost.Add(1)
	l.mu.Lock()
	l.lastErr, l.lastErrAt = err, l.o.Now()
	l.mu.Unlock()
	entry, _ := r.Encode()
	l.log.Error("audit record NOT stored", "err", err, "record", string(entry))
}

// Lost returns how many records could not be stored since Open.
func (l *Log) Lost() uint64 { return l.nlost.Load() }

// Err returns the last append failure of the past minute (nil when the
// log stores): what the health check reports.
func (l *Log) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.lastErr != nil && l.o.Now().Sub(l.lastErrAt) < time.Minute {
		return l.lastErr
	}
	return nil
}

// Head returns the latest stored signed head.
func (l *Log) Head() Head {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.head
}

// Store returns the store the log is kept in (for reads and proofs).
func (l *Log) Store() Store { return l.st }

func (l *Log) run() {
	defer close(l.done)
	tick := time.NewTicker(l.o.CheckpointEvery)
	defer tick.Stop()
	batch := make([]*pending, 0, l.o.MaxBatch)
	for {
		select {
		case p := <-l.q:
			batch = append(batch[:0], p)
		fill:
			for len(batch) < l.o.MaxBatch {
				select {
				case p := <-l.q:
					batch = append(batch, p)
				default:
					break fill
				}
			}
			l.commit(batch)
			clear(batch)
		case <-tick.C:
			l.writeCheckpoint()
		case <-l.quit:
			for {
				batch = batch[:0]
				for len(batch) < l.o.MaxBatch {
					select {
					case p := <-l.q:
						batch = append(batch, p)
						continue
					default:
					}
					break
				}
				if len(batch) == 0 {
					break
				}
				l.commit(batch)
			}
			l.writeCheckpoint()
			return
		}
	}
}

// commit stores one batch and answers its waiters. Another process
// appending to the same store (an administration command beside the
// server) makes the store refuse the batch as a conflict: the tree is
// reloaded from the store and the batch placed after the other's records.
func (l *Log) commit(batch []*pending) {
	start := time.Now()
	var err error
	for attempt := 0; attempt < 100; attempt++ {
		if attempt > 0 {
			// Let the other writer's commit through.
			time.Sleep(time.Duration(attempt) * time.Millisecond)
		}
		var b *Batch
		var ok []*pending
		b, ok, err = l.build(batch)
		if len(ok) == 0 {
			return
		}
		if err == nil {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			err = l.st.AppendAudit(ctx, b)
			cancel()
		}
		if err == nil {
			l.mu.Lock()
			l.head = b.Head
			l.mu.Unlock()
			l.m.appended.Add(float64(len(ok)))
			l.m.batch.Observe(float64(len(ok)))
			l.m.commit.Observe(time.Since(start).Seconds())
			l.m.size.Set(float64(b.Head.Size))
			for _, p := range ok {
				p.done <- nil
			}
			return
		}
		// Nothing of the batch is stored: the tree goes back to the
		// store's.
		if lerr := l.load(context.Background()); lerr != nil {
			l.log.Error("audit: reload after a failed append", "err", lerr)
			break
		}
		if unhidra.ErrorCode(err) != unhidra.ECONFLICT {
			break
		}
	}
	for _, p := range batch {
		if p.done != nil {
			p.done <- err
		}
	}
}

// build places the records of batch after the tree and returns the batch
// to store. A record that cannot be encoded is answered at once (and
// marked by a nil done).
func (l *Log) build(batch []*pending) (*Batch, []*pending, error) {
	b := &Batch{Rows: make([]Row, 0, len(batch))}
	ok := make([]*pending, 0, len(batch))
	for _, p := range batch {
		if p.done == nil {
			continue
		}
		p.rec.Seq = l.tree.Size()
		entry, err := p.rec.Encode()
		if err != nil {
			p.done <- err
			p.done = nil
			continue
		}
		leaf := merkle.LeafHash(entry)
		l.tree.Append(leaf, func(id merkle.NodeID, h merkle.Hash) { b.Nodes = append(b.Nodes, Node{ID: id, Hash: h}) })
		r := p.rec
		b.Rows = append(b.Rows, Row{Seq: r.Seq, Time: r.Time, ActorKind: r.Actor.Kind, ActorID: r.Actor.ID, Action: r.Action, Target: r.Target, Outcome: r.Outcome, Entry: entry, Leaf: leaf})
		ok = append(ok, p)
	}
	if len(ok) == 0 {
		return nil, nil, nil
	}
	cp := Checkpoint{Origin: l.o.Origin, Size: l.tree.Size(), Root: l.tree.Root(), Time: l.o.Now().UTC()}
	msg, err := SignCheckpoint(cp, l.o.Signer)
	if err != nil {
		return nil, ok, err
	}
	b.Head = Head{Size: cp.Size, Root: cp.Root, Time: cp.Time, Note: msg}
	return b, ok, nil
}

// writeCheckpoint writes the latest head to Dir when the log grew since
// the last one written.
func (l *Log) writeCheckpoint() {
	if l.o.Dir == "" {
		return
	}
	h := l.Head()
	if h.Size == 0 || h.Size == l.written {
		return
	}
	if err := WriteCheckpointFile(l.o.Dir, h.Note); err != nil {
		l.log.Error("audit: write the checkpoint", "dir", l.o.Dir, "err", err)
		return
	}
	l.written = h.Size
	l.m.checkpoints.Inc()
}

// Close stores what is queued, writes the last checkpoint and stops. Later
// events are reported as not stored.
func (l *Log) Close() error {
	l.closeOnce.Do(func() { close(l.quit) })
	<-l.done
	return nil
}

type logMetrics struct {
	appended, errors, waits, checkpoints prometheus.Counter
	batch, commit                        prometheus.Histogram
	size                                 prometheus.Gauge
}

func newLogMetrics(reg prometheus.Registerer) *logMetrics {
	m := &logMetrics{
		appended:    prometheus.NewCounter(prometheus.CounterOpts{Name: "unhidra_audit_appends_total", Help: "Audit records stored."}),
		errors:      prometheus.NewCounter(prometheus.CounterOpts{Name: "unhidra_audit_append_errors_total", Help: "Audit records that could not be stored (each written to the process log at error level)."}),
		waits:       prometheus.NewCounter(prometheus.CounterOpts{Name: "unhidra_audit_queue_full_total", Help: "Audit records lost because the append queue stayed full."}),
		checkpoints: prometheus.NewCounter(prometheus.CounterOpts{Name: "unhidra_audit_checkpoints_written_total", Help: "Signed checkpoints written to the data dir."}),
		batch:       prometheus.NewHistogram(prometheus.HistogramOpts{Name: "unhidra_audit_batch_size", Help: "Records per audit group commit.", Buckets: prometheus.ExponentialBuckets(1, 2, 10)}),
		commit:      prometheus.NewHistogram(prometheus.HistogramOpts{Name: "unhidra_audit_commit_seconds", Help: "Time to sign and store one audit group commit.", Buckets: prometheus.ExponentialBuckets(0.0001, 2, 14)}),
		size:        prometheus.NewGauge(prometheus.GaugeOpts{Name: "unhidra_audit_log_size", Help: "Records in the audit log (its tree size)."}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.appended, m.errors, m.waits, m.checkpoints, m.batch, m.commit, m.size} {
			if err := reg.Register(c); err != nil {
				var are prometheus.AlreadyRegisteredError
				if !errors.As(err, &are) {
					panic(err)
				}
			}
		}
	}
	return m
}
