package bridge

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"
)

// knownTopicsTTL is how long a topic found by a subscribe's check is taken to exist without asking Kafka again.
// A reload or a network blip makes thousands of clients subscribe within seconds, each to the same few topics;
// one metadata request each was the subscribe's main cost. The price of the cache is that a topic deleted
// within the last seconds can still be subscribed to (the member then has no partitions of it, as if it were
// subscribed before the delete).
const knownTopicsTTL = 2 * time.Second

// knownTopicsStale is how long a topic found stays known when Kafka cannot answer the check (unavailable or
// timed out). A storm of subscribes across many instances on a starved machine can keep a broker's new
// connections past connect_timeout; refusing every client to a topic that existed within the minute, as if Kafka
// were gone, would make them all retry and feed the storm. The subscription still needs Kafka on its own: a group
// joins it, a broadcast stream not yet running reads the topic's partitions, and their errors are replied.
const knownTopicsStale = time.Minute

// knownTopicsPrune is the size of the cache above which expired entries are swept on insert; only topics that
// exist enter it, so it stays as small as the cluster's topic list.
const knownTopicsPrune = 1024

// knownTopics answers a subscribe's question "which of these topics do not exist?". Topics found are remembered
// for knownTopicsTTL, and for knownTopicsStale while Kafka cannot answer; concurrent questions about the same
// topics share one metadata request. A topic not found is asked about again next time: it may just have been
// created.
type knownTopics struct {
	admin   Admin
	timeout time.Duration // bounds the shared request, which outlives any one caller's context

	mu     sync.Mutex
	seen   map[string]time.Time // topic → when Kafka last said it exists
	lookup singleflight.Group
}

func newKnownTopics(admin Admin, timeout time.Duration) *knownTopics {
	return &knownTopics{admin: admin, timeout: timeout, seen: make(map[string]time.Time)}
}

// missing returns the names, in order, of the topics that do not exist.
func (k *knownTopics) missing(ctx context.Context, names []string) ([]string, error) {
	now := time.Now()
	k.mu.Lock()
	var unsure []string
	for _, name := range names {
		if at, ok := k.seen[name]; !ok || now.Sub(at) >= knownTopicsTTL {
			unsure = append(unsure, name)
		}
	}
	k.mu.Unlock()
	if len(unsure) == 0 {
		return nil, nil
	}
	slices.Sort(unsure)
	unsure = slices.Compact(unsure)
	key := strings.Join(unsure, "\x00")
	answer := k.lookup.DoChan(key, func() (any, error) {
		// Shared by every caller asking the same: not cancelled by the first one leaving.
		lookupCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), k.timeout)
		defer cancel()
		found, err := k.admin.Topics(lookupCtx, unsure)
		if err != nil {
			return nil, err
		}
		k.remember(found)
		return found, nil
	})
	var found map[string][]PartitionInfo
	select {
	case res := <-answer:
		if res.Err != nil {
			unreachable := errors.Is(res.Err, ErrKafkaUnavailable) || errors.Is(res.Err, ErrKafkaTimeout)
			if unreachable && k.seenWithin(unsure, knownTopicsStale) {
				return nil, nil
			}
			return nil, res.Err
		}
		found = res.Val.(map[string][]PartitionInfo)
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	var missing []string
	for _, name := range names {
		if _, ok := found[name]; !ok && slices.Contains(unsure, name) {
			missing = append(missing, name)
		}
	}
	return missing, nil
}

// seenWithin reports whether Kafka said, within the last d, that every one of names exists.
func (k *knownTopics) seenWithin(names []string, d time.Duration) bool {
	now := time.Now()
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, name := range names {
		if at, ok := k.seen[name]; !ok || now.Sub(at) >= d {
			return false
		}
	}
	return true
}

func (k *knownTopics) remember(found map[string][]PartitionInfo) {
	now := time.Now()
	k.mu.Lock()
	defer k.mu.Unlock()
	if len(k.seen)+len(found) > knownTopicsPrune {
		for name, at := range k.seen {
			if now.Sub(at) >= knownTopicsStale {
				delete(k.seen, name)
			}
		}
	}
	for name := range found {
		k.seen[name] = now
	}
}
