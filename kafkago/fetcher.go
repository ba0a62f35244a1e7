package kafkago

import (
	"context"
	"errors"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/protocol/fetch"

	"github.com/wskafka/wskafka/bridge"
)

// fetcher reads many partitions with kafka-go's protocol-level Fetch API: one request per broker covers every
// partition it leads of those read, as franz-go and Kafka's own consumer ask, where kafka-go's Client.Fetch and
// Reader take one partition a request. A member reading four partitions of one broker so makes one round trip
// where it made four, and an idle one long-polls once per broker, not once per partition (issue #13). The
// protocol's records also keep an empty value apart from a null one ("p":"" and "p":null), which kafka-go's
// Reader decodes alike as nil.
//
// Each fetcher has its own transport, so its long polls never queue behind another's on a shared connection. A
// new transport is also how it learns where a partition moved: kafka-go's Transport answers metadata from a cache
// it refreshes every few seconds, and routes a fetch by that cache.
type fetcher struct {
	k         *Client
	addr      net.Addr
	transport *transport
	minBytes  int32
	maxBytes  int32
	maxWait   time.Duration // what the broker may wait for minBytes: fetch_max_wait, within the request timeout

	parts map[topicPartition]*fetchPartition
	// stale says the leaders known may be wrong (a broker refused a partition, or was not reached): the next plan
	// takes a new transport once no request is out on the old one.
	stale bool
	// outOfRange holds the partitions found out of range, reported by the next Fetch.
	outOfRange map[string]map[int]int64

	// Requests to more than one broker run on goroutines of their own, and may outlive the Fetch that sent them:
	// ctx ends them at Close, and results carries their answers.
	ctx      context.Context
	cancel   context.CancelFunc
	running  sync.WaitGroup
	inflight map[int]bool // brokers with a request out on a goroutine
	results  chan fetchResult
}

type topicPartition struct {
	topic     string
	partition int
}

// fetchPartition is where the reading of one partition stands.
type fetchPartition struct {
	offset int64 // of the next record to return
	leader int   // the broker that leads it as last known; -1 unknown
	asked  bool  // a request for it is out
	gone   bool  // out of range: not read until Seek
	// After a failure the partition is not asked for again before retryAt, with a pause that grows as kafka-go's
	// Reader's does, up to fetchBackoffMax.
	retryAt time.Time
	pause   backoff
}

// fetchBackoffMax caps the pause between failed fetches of a partition (a partition moving to another leader, a
// broker restarting); kafka-go's Reader pauses alike.
const fetchBackoffMax = time.Second

// fetchRequest is one request to one broker: the partitions it asks for, at their offsets then.
type fetchRequest struct {
	broker int
	asked  []fetchAsk
}

type fetchAsk struct {
	tp     topicPartition
	offset int64
}

type fetchResult struct {
	req fetchRequest
	res *fetchResponse
	err error
}

// ReadPartitions implements Consumers.
func (k *Client) ReadPartitions(offsets map[string]map[int]int64) bridge.PartitionsReader {
	f := &fetcher{
		k: k, addr: kafka.TCP(k.cfg.Brokers...), transport: k.newTransport(),
		minBytes: int32(k.cfg.FetchMinBytes), maxBytes: int32(k.cfg.FetchMaxBytes), maxWait: k.cfg.FetchMaxWait,
		parts:    make(map[topicPartition]*fetchPartition),
		inflight: make(map[int]bool),
		results:  make(chan fetchResult),
	}
	// A broker keeps a request up to maxWait: kafka-go leaves it half the request timeout, for the way there
	// and back.
	if half := k.cfg.RequestTimeout / 2; half > 0 && half < f.maxWait {
		f.maxWait = half
	}
	f.ctx, f.cancel = context.WithCancel(context.Background())
	for topic, parts := range offsets {
		for p, offset := range parts {
			f.parts[topicPartition{topic, p}] = &fetchPartition{
				offset: offset, leader: -1, pause: backoff{first: 50 * time.Millisecond, most: fetchBackoffMax},
			}
		}
	}
	return f
}

// Fetch implements PartitionsReader.
func (f *fetcher) Fetch(ctx context.Context) ([]bridge.Record, error) {
	for {
		if len(f.outOfRange) > 0 {
			err := &bridge.OffsetsOutOfRangeError{Offsets: f.outOfRange}
			f.outOfRange = nil
			return nil, err
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		reqs, due := f.plan(ctx)
		var r fetchResult
		if len(reqs) == 1 && len(f.inflight) == 0 {
			// One broker, the usual case: the answer comes straight from kafka-go's connection to this goroutine,
			// with no goroutine of ours between them.
			r = f.roundTrip(ctx, reqs[0])
		} else {
			for _, req := range reqs {
				f.send(req)
			}
			var err error
			if r, err = f.await(ctx, due); err != nil {
				return nil, err
			}
			if r.res == nil && r.err == nil {
				continue // a partition's pause is over: plan again
			}
		}
		if records := f.take(ctx, r); len(records) > 0 {
			return records, nil
		}
	}
}

// await waits for the answer of a request out, or until due (a zero result), or ctx ends.
func (f *fetcher) await(ctx context.Context, due time.Time) (fetchResult, error) {
	var wait <-chan time.Time
	if !due.IsZero() {
		t := time.NewTimer(time.Until(due))
		defer t.Stop()
		wait = t.C
	}
	select {
	case r := <-f.results:
		delete(f.inflight, r.req.broker)
		return r, nil
	case <-wait:
		return fetchResult{}, nil
	case <-ctx.Done():
		return fetchResult{}, ctx.Err()
	}
}

// plan groups the partitions to ask for now by leader, one request per broker. due is when a partition waiting
// out a failure may be asked for again (zero when none is waiting).
func (f *fetcher) plan(ctx context.Context) (reqs []fetchRequest, due time.Time) {
	if f.stale && len(f.inflight) == 0 {
		f.transport.CloseIdleConnections()
		f.transport = f.k.newTransport()
		f.stale = false
		for _, fp := range f.parts {
			fp.leader = -1
		}
	}
	now := time.Now()
	ready := func(fp *fetchPartition) bool {
		if fp.asked || fp.gone {
			return false
		}
		if now.Before(fp.retryAt) {
			if due.IsZero() || fp.retryAt.Before(due) {
				due = fp.retryAt
			}
			return false
		}
		return true
	}
	var unknown []string
	for tp, fp := range f.parts {
		if ready(fp) && fp.leader < 0 && !slices.Contains(unknown, tp.topic) {
			unknown = append(unknown, tp.topic)
		}
	}
	if len(unknown) > 0 && !f.stale {
		f.leaders(ctx, unknown)
	}
	byBroker := make(map[int]int)
	for tp, fp := range f.parts {
		if !ready(fp) || fp.leader < 0 {
			continue
		}
		i, ok := byBroker[fp.leader]
		if !ok {
			if f.inflight[fp.leader] {
				continue // asked on the broker's next request, once its answer is in
			}
			i = len(reqs)
			byBroker[fp.leader] = i
			reqs = append(reqs, fetchRequest{broker: fp.leader})
		}
		reqs[i].asked = append(reqs[i].asked, fetchAsk{tp: tp, offset: fp.offset})
	}
	return reqs, due
}

// leaders learns who leads the partitions of topics, from the transport's metadata; a partition without a leader
// waits out a pause, then asks a new transport.
func (f *fetcher) leaders(ctx context.Context, topics []string) {
	client := &kafka.Client{Addr: f.addr, Transport: f.transport, Timeout: f.k.cfg.RequestTimeout}
	res, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: topics})
	led := make(map[topicPartition]int)
	if err == nil {
		for _, t := range res.Topics {
			for _, p := range t.Partitions {
				if t.Error == nil && p.Leader.Host != "" {
					led[topicPartition{t.Name, p.ID}] = p.Leader.ID
				}
			}
		}
	}
	for tp, fp := range f.parts {
		if fp.leader >= 0 || !slices.Contains(topics, tp.topic) || fp.asked || fp.gone {
			continue
		}
		if id, ok := led[tp]; ok {
			fp.leader = id
		} else if ctx.Err() == nil {
			f.failed(fp)
		}
	}
}

// failed makes a partition wait before it is asked for again, and the next plan start from fresh metadata.
func (f *fetcher) failed(fp *fetchPartition) {
	fp.retryAt = time.Now().Add(fp.pause.step())
	f.stale = true
}

// send starts req on a goroutine of its own; its answer arrives on results.
func (f *fetcher) send(req fetchRequest) {
	f.inflight[req.broker] = true
	for _, a := range req.asked {
		f.parts[a.tp].asked = true
	}
	f.running.Go(func() {
		r := f.roundTrip(f.ctx, req)
		select {
		case f.results <- r:
		case <-f.ctx.Done():
		}
	})
}

// roundTrip asks one broker for the partitions of req. It touches nothing of f but its settings and transport, so
// that send's goroutines may run it.
func (f *fetcher) roundTrip(ctx context.Context, req fetchRequest) fetchResult {
	msg := &fetchExchange{clientID: f.k.cfg.ClientID, Request: fetch.Request{
		ReplicaID: -1, MaxWaitTime: int32(f.maxWait / time.Millisecond), MinBytes: f.minBytes, MaxBytes: f.maxBytes,
		// No fetch session (KIP-227): every request names its partitions in full.
		SessionID: -1, SessionEpoch: -1,
	}}
	for _, a := range req.asked {
		i := slices.IndexFunc(msg.Topics, func(t fetch.RequestTopic) bool { return t.Topic == a.tp.topic })
		if i < 0 {
			i = len(msg.Topics)
			msg.Topics = append(msg.Topics, fetch.RequestTopic{Topic: a.tp.topic})
		}
		msg.Topics[i].Partitions = append(msg.Topics[i].Partitions, fetch.RequestPartition{
			Partition: int32(a.tp.partition), CurrentLeaderEpoch: -1, FetchOffset: a.offset, LogStartOffset: -1,
			PartitionMaxBytes: f.maxBytes,
		})
	}
	if timeout := f.k.cfg.RequestTimeout; timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	m, err := f.transport.RoundTrip(ctx, f.addr, msg)
	r := fetchResult{req: req, err: err}
	if err == nil {
		r.res = m.(*fetchResponse)
		if r.res.errorCode != 0 {
			r.err = kafka.Error(r.res.errorCode)
		}
	}
	return r
}

// take applies one broker's answer: the records of each partition still at the offset asked for (a Seek since
// moves it elsewhere), out-of-range partitions set aside for the next Fetch to report, and a pause for
// partitions the broker refused or could not be asked about.
func (f *fetcher) take(ctx context.Context, r fetchResult) []bridge.Record {
	asked := make(map[topicPartition]int64, len(r.req.asked))
	for _, a := range r.req.asked {
		asked[a.tp] = a.offset
		f.parts[a.tp].asked = false
	}
	if r.err != nil {
		if ctx.Err() == nil && f.ctx.Err() == nil {
			for tp := range asked {
				f.failed(f.parts[tp])
			}
		}
		return nil
	}
	count := 0
	for _, t := range r.res.topics {
		for _, p := range t.partitions {
			count += recordCount(p.batches)
		}
	}
	records := make([]bridge.Record, 0, count)
	for _, t := range r.res.topics {
		for _, p := range t.partitions {
			tp := topicPartition{t.name, int(p.partition)}
			fp, ok := f.parts[tp]
			if offset, wasAsked := asked[tp]; !ok || !wasAsked || fp.offset != offset || fp.gone {
				continue
			}
			switch code := kafka.Error(p.errorCode); {
			case p.errorCode == 0:
				var err error
				records, fp.offset, err = appendRecords(records, tp.topic, tp.partition, fp.offset, p.highWatermark, p.batches)
				if err != nil {
					f.failed(fp)
					continue
				}
				fp.pause.reset()
			case errors.Is(code, kafka.OffsetOutOfRange):
				fp.gone = true
				if f.outOfRange == nil {
					f.outOfRange = make(map[string]map[int]int64)
				}
				if f.outOfRange[tp.topic] == nil {
					f.outOfRange[tp.topic] = make(map[int]int64)
				}
				f.outOfRange[tp.topic][tp.partition] = fp.offset
			default:
				// Not the leader any more, or not yet (NOT_LEADER_OR_FOLLOWER, FENCED_LEADER_EPOCH, a topic just
				// created or deleted): ask again, where fresh metadata says.
				f.failed(fp)
			}
		}
	}
	return records
}

// Seek implements PartitionsReader.
func (f *fetcher) Seek(topic string, partition int, offset int64) {
	if fp, ok := f.parts[topicPartition{topic, partition}]; ok {
		fp.offset, fp.gone, fp.retryAt = offset, false, time.Time{}
		fp.pause.reset()
	}
}

// Close implements PartitionsReader.
func (f *fetcher) Close() {
	f.cancel()
	f.running.Wait()
	f.transport.CloseIdleConnections()
}

// Interface guards
var _ bridge.PartitionsReader = (*fetcher)(nil)
