package kafkago

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/protocol"
	"github.com/segmentio/kafka-go/protocol/consumer"
	"github.com/segmentio/kafka-go/protocol/findcoordinator"
	"github.com/segmentio/kafka-go/protocol/heartbeat"
	"github.com/segmentio/kafka-go/protocol/joingroup"
	"github.com/segmentio/kafka-go/protocol/leavegroup"
	"github.com/segmentio/kafka-go/protocol/offsetcommit"
	"github.com/segmentio/kafka-go/protocol/offsetfetch"
	"github.com/segmentio/kafka-go/protocol/syncgroup"
	"go.uber.org/zap"

	"github.com/wskafka/wskafka/bridge"
)

// groupMember is one member of a classic consumer group (JoinGroup, SyncGroup, Heartbeat, OffsetFetch,
// OffsetCommit, LeaveGroup), spoken with kafka-go's protocol-level messages.
//
// kafka-go's ConsumerGroup does not survive a coordinator restart well: a failed heartbeat ends the generation
// (consumergroup.go:486-488 in v0.4.51), and every error while joining again except RebalanceInProgress drops the
// member id (consumergroup.go:747-756; joinGroup returns "" on any error, consumergroup.go:945). After a broker
// restart the coordinator reloads the group from __consumer_offsets with the old member in it, so the member
// that joins anew waits for the old one's session to expire: a whole session timeout without records.
//
// This member instead keeps its generation while the coordinator cannot be reached, and asks again with short
// pauses: a coordinator that reloaded the group accepts the old generation's heartbeats and commits, so the
// partitions never change hands. Only the coordinator ends a generation (REBALANCE_IN_PROGRESS,
// ILLEGAL_GENERATION), and only it forgets the member (UNKNOWN_MEMBER_ID, FENCED_INSTANCE_ID); any other rejoin
// keeps the member id, which the coordinator recognizes at once. The Java consumer behaves alike: a session that
// passes without an answered heartbeat only makes it look the coordinator up again (AbstractCoordinator's
// heartbeat thread); its partitions are lost only when the coordinator says so.
//
// No group.instance.id (KIP-345): each subscription is its own member and a reconnecting socket is a new one, so
// static membership would save nothing that the kept member id does not, and two sockets given one instance id
// would fence each other.
type groupMember struct {
	k         *Client // cluster settings, and the topic metadata the leader assigns from
	group     string
	topics    []string
	balancers []kafka.GroupBalancer
	transport *transport // Client.groups
	logger    *zap.Logger

	ctx    context.Context // ends with Close
	cancel context.CancelFunc
	next   chan *generation
	errs   chan error
	done   chan struct{} // closed once the member has left its group
	leave  error         // why leaving failed; set before done is closed

	mu          sync.Mutex
	coordinator net.Addr // nil until found, and again when it stops answering for the group

	memberID string // owned by run
}

// errRejoin is a join that the coordinator asks to repeat at once (MEMBER_ID_REQUIRED, a rebalance started
// meanwhile); it is not reported to Next.
var errRejoin = errors.New("rejoining the group")

// errMemberClosed is what Next reports once Close was called.
var errMemberClosed = errors.New("consumer group member closed")

// Pauses between attempts to reach a coordinator that does not answer, growing from the first to the last. A
// restarted coordinator answers within a pause of the last one.
const (
	groupRetryMin = 50 * time.Millisecond
	groupRetryMax = time.Second
)

func newGroupMember(k *Client, groupID string, topics []string, balancers []kafka.GroupBalancer) *groupMember {
	ctx, cancel := context.WithCancel(context.Background())
	m := &groupMember{
		k:         k,
		group:     groupID,
		topics:    topics,
		balancers: balancers,
		transport: k.groups,
		logger:    k.logger.With(zap.String("group", groupID)),
		ctx:       ctx,
		cancel:    cancel,
		next:      make(chan *generation),
		errs:      make(chan error),
		done:      make(chan struct{}),
	}
	go m.run()
	return m
}

// Next implements GroupMember.
func (m *groupMember) Next(ctx context.Context) (bridge.Generation, error) {
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-m.ctx.Done():
		return nil, errMemberClosed
	case err := <-m.errs:
		return nil, portErr(err)
	case gen := <-m.next:
		return gen, nil
	}
}

// Close implements GroupMember: it ends the current generation, waits for its functions, and leaves the group.
func (m *groupMember) Close() error {
	m.cancel()
	<-m.done
	return m.leave
}

func (m *groupMember) run() {
	defer close(m.done)
	defer func() { m.leave = m.leaveGroup() }()
	pause := backoff{first: groupRetryMin, most: groupRetryMax}
	for m.ctx.Err() == nil {
		gen, err := m.join()
		switch {
		case m.ctx.Err() != nil:
			return
		case errors.Is(err, errRejoin):
			continue
		case err != nil:
			select {
			case m.errs <- err:
			case <-m.ctx.Done():
				return
			}
			wait := groupRetryMax
			if coordinatorTrouble(err) {
				wait = pause.step()
			}
			select {
			case <-time.After(wait):
			case <-m.ctx.Done():
				return
			}
			continue
		}
		pause.reset()
		select {
		case m.next <- gen:
			m.heartbeat(gen)
		case <-m.ctx.Done():
		}
		gen.end()
	}
}

// join joins the group, assigns its partitions when elected leader, and fetches the committed offsets of what
// this member was given.
func (m *groupMember) join() (*generation, error) {
	cfg := m.k.cfg
	addr, err := m.findCoordinator(m.ctx)
	if err != nil {
		return nil, err
	}
	// The coordinator answers a JoinGroup once every member has rejoined, or the rebalance timeout has passed.
	ctx, cancel := context.WithTimeout(m.ctx, cfg.RebalanceTimeout+cfg.RequestTimeout)
	defer cancel()
	meta, err := subscriptionMetadata(m.topics)
	if err != nil {
		return nil, err
	}
	req := &joingroup.Request{
		GroupID:            m.group,
		SessionTimeoutMS:   int32(cfg.SessionTimeout.Milliseconds()),
		RebalanceTimeoutMS: int32(cfg.RebalanceTimeout.Milliseconds()),
		MemberID:           m.memberID,
		ProtocolType:       "consumer",
	}
	for _, b := range m.balancers {
		req.Protocols = append(req.Protocols, joingroup.RequestProtocol{Name: b.ProtocolName(), Metadata: meta})
	}
	msg, err := m.roundTrip(ctx, addr, req)
	if err != nil {
		return nil, fmt.Errorf("joining group %s: %w", m.group, err)
	}
	joined := msg.(*joingroup.Response)
	switch err := kafkaError(joined.ErrorCode); {
	case errors.Is(err, kafka.MemberIDRequired):
		// KIP-394: a new member asks again with the id the coordinator chose for it.
		m.memberID = joined.MemberID
		return nil, errRejoin
	case errors.Is(err, kafka.UnknownMemberId):
		m.memberID = ""
		return nil, errRejoin
	case errors.Is(err, kafka.RebalanceInProgress):
		return nil, errRejoin
	case err != nil:
		m.coordinatorFailed(addr, err)
		return nil, fmt.Errorf("joining group %s: %w", m.group, err)
	}
	m.memberID = joined.MemberID

	sync := &syncgroup.Request{
		GroupID:      m.group,
		GenerationID: joined.GenerationID,
		MemberID:     m.memberID,
		ProtocolType: "consumer",
		ProtocolName: joined.ProtocolName,
	}
	if joined.LeaderID == m.memberID {
		if sync.Assignments, err = m.assign(ctx, joined); err != nil {
			return nil, err
		}
	}
	if msg, err = m.roundTrip(ctx, addr, sync); err != nil {
		return nil, fmt.Errorf("syncing group %s: %w", m.group, err)
	}
	synced := msg.(*syncgroup.Response)
	switch err := kafkaError(synced.ErrorCode); {
	case errors.Is(err, kafka.UnknownMemberId):
		m.memberID = ""
		return nil, errRejoin
	case errors.Is(err, kafka.RebalanceInProgress), errors.Is(err, kafka.IllegalGeneration):
		return nil, errRejoin
	case err != nil:
		m.coordinatorFailed(addr, err)
		return nil, fmt.Errorf("syncing group %s: %w", m.group, err)
	}
	assigned, err := decodeAssignment(synced.Assignments)
	if err != nil {
		return nil, fmt.Errorf("assignment of group %s: %w", m.group, err)
	}
	offsets, err := m.fetchOffsets(addr, assigned)
	if err != nil {
		return nil, err
	}
	genCtx, end := context.WithCancel(m.ctx)
	return &generation{m: m, id: joined.GenerationID, memberID: m.memberID, assignments: offsets, ctx: genCtx, cancel: end}, nil
}

// assign computes, as the group's leader, every member's partitions with the balancer the coordinator chose.
func (m *groupMember) assign(ctx context.Context, joined *joingroup.Response) ([]syncgroup.RequestAssignment, error) {
	var balancer kafka.GroupBalancer
	for _, b := range m.balancers {
		if b.ProtocolName() == joined.ProtocolName {
			balancer = b
		}
	}
	if balancer == nil {
		return nil, fmt.Errorf("group %s chose balancer %q, which this member did not offer", m.group, joined.ProtocolName)
	}
	members := make([]kafka.GroupMember, len(joined.Members))
	var topics []string
	seen := make(map[string]bool)
	for i, jm := range joined.Members {
		sub, err := decodeSubscription(jm.Metadata)
		if err != nil {
			return nil, fmt.Errorf("subscription of member %s of group %s: %w", jm.MemberID, m.group, err)
		}
		members[i] = kafka.GroupMember{ID: jm.MemberID, Topics: sub.Topics, UserData: sub.UserData}
		for _, t := range sub.Topics {
			if !seen[t] {
				seen[t] = true
				topics = append(topics, t)
			}
		}
	}
	// A topic that does not exist has no partitions to assign, as in kafka-go and the official clients.
	infos, err := m.k.Topics(ctx, topics)
	if err != nil {
		return nil, fmt.Errorf("partitions of group %s: %w", m.group, err)
	}
	var partitions []kafka.Partition
	for topic, parts := range infos {
		for _, p := range parts {
			partitions = append(partitions, kafka.Partition{Topic: topic, ID: p.ID})
		}
	}
	given := balancer.AssignGroups(members, partitions)
	out := make([]syncgroup.RequestAssignment, len(members))
	for i, member := range members {
		assignment, err := encodeAssignment(given[member.ID])
		if err != nil {
			return nil, err
		}
		out[i] = syncgroup.RequestAssignment{MemberID: member.ID, Assignment: assignment}
	}
	return out, nil
}

// fetchOffsets returns the group's committed offset of each assigned partition, -1 where it has none.
func (m *groupMember) fetchOffsets(addr net.Addr, assigned map[string][]int) (map[string]map[int]int64, error) {
	out := make(map[string]map[int]int64, len(assigned))
	req := &offsetfetch.Request{GroupID: m.group}
	for topic, parts := range assigned {
		out[topic] = make(map[int]int64, len(parts))
		ids := make([]int32, len(parts))
		for i, p := range parts {
			out[topic][p] = -1
			ids[i] = int32(p)
		}
		req.Topics = append(req.Topics, offsetfetch.RequestTopic{Name: topic, PartitionIndexes: ids})
	}
	if len(req.Topics) == 0 {
		return out, nil
	}
	ctx, cancel := context.WithTimeout(m.ctx, m.k.cfg.RequestTimeout)
	defer cancel()
	msg, err := m.roundTrip(ctx, addr, req)
	if err != nil {
		return nil, fmt.Errorf("fetching offsets of group %s: %w", m.group, err)
	}
	res := msg.(*offsetfetch.Response)
	if err := kafkaError(res.ErrorCode); err != nil {
		m.coordinatorFailed(addr, err)
		return nil, fmt.Errorf("fetching offsets of group %s: %w", m.group, err)
	}
	for _, t := range res.Topics {
		for _, p := range t.Partitions {
			if err := kafkaError(p.ErrorCode); err != nil {
				m.coordinatorFailed(addr, err)
				return nil, fmt.Errorf("fetching offset of %s/%d for group %s: %w", t.Name, p.PartitionIndex, m.group, err)
			}
			if _, ok := out[t.Name][int(p.PartitionIndex)]; ok && p.CommittedOffset >= 0 {
				out[t.Name][int(p.PartitionIndex)] = p.CommittedOffset
			}
		}
	}
	return out, nil
}

// heartbeat keeps gen alive until one of its functions returns, the coordinator ends it, or the member closes.
// A coordinator that cannot be reached is asked again after a short pause, never ending the generation: when
// it answers, it says whether the generation is still current.
func (m *groupMember) heartbeat(gen *generation) {
	interval := m.k.cfg.HeartbeatInterval
	timer := time.NewTimer(interval)
	defer timer.Stop()
	pause := groupRetryMin
	for {
		select {
		case <-gen.ctx.Done():
			return
		case <-timer.C:
		}
		err := m.beat(gen)
		switch {
		case err == nil:
			pause = groupRetryMin
			timer.Reset(interval)
		case gen.ctx.Err() != nil:
			return
		case errors.Is(err, kafka.UnknownMemberId), errors.Is(err, kafka.FencedInstanceID):
			m.memberID = ""
			return
		case errors.Is(err, kafka.RebalanceInProgress), errors.Is(err, kafka.IllegalGeneration):
			return
		case coordinatorTrouble(err):
			m.logger.Debug("heartbeat unanswered, keeping the generation", zap.Int32("generation", gen.id), zap.Error(err))
			timer.Reset(min(pause, interval))
			pause = min(2*pause, groupRetryMax)
		default:
			// The next join reports it.
			m.logger.Warn("heartbeat refused", zap.Int32("generation", gen.id), zap.Error(err))
			return
		}
	}
}

func (m *groupMember) beat(gen *generation) error {
	ctx, cancel := context.WithTimeout(gen.ctx, m.k.cfg.RequestTimeout)
	defer cancel()
	addr, err := m.findCoordinator(ctx)
	if err != nil {
		return err
	}
	req := &heartbeatRequest{
		Request:  heartbeat.Request{GroupID: m.group, GenerationID: gen.id, MemberID: gen.memberID},
		clientID: m.k.cfg.ClientID,
	}
	msg, err := m.roundTrip(ctx, addr, req)
	if err != nil {
		return err
	}
	err = kafkaError(msg.(*heartbeat.Response).ErrorCode)
	m.coordinatorFailed(addr, err)
	return err
}

// leaveGroup tells the coordinator the member is gone, so that its partitions move at once rather than after
// its session timeout.
func (m *groupMember) leaveGroup() error {
	if m.memberID == "" {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), m.k.cfg.RequestTimeout)
	defer cancel()
	addr, err := m.findCoordinator(ctx)
	if err != nil {
		return fmt.Errorf("leaving group %s: %w", m.group, err)
	}
	msg, err := m.roundTrip(ctx, addr, &leavegroup.Request{
		GroupID: m.group,
		Members: []leavegroup.RequestMember{{MemberID: m.memberID}},
	})
	if err != nil {
		return fmt.Errorf("leaving group %s: %w", m.group, err)
	}
	// Only the members' codes: kafka-go reads the top-level one from the wrong field, as in heartbeatRequest. A
	// leave that failed unnoticed costs the group one session timeout, as a crashed member does.
	for _, member := range msg.(*leavegroup.Response).Members {
		if err := kafkaError(member.ErrorCode); err != nil {
			return fmt.Errorf("leaving group %s: %w", m.group, err)
		}
	}
	return nil
}

// findCoordinator returns the group's coordinator, asking the cluster when it is not known.
func (m *groupMember) findCoordinator(ctx context.Context) (net.Addr, error) {
	m.mu.Lock()
	addr := m.coordinator
	m.mu.Unlock()
	if addr != nil {
		return addr, nil
	}
	msg, err := m.roundTrip(ctx, kafka.TCP(m.k.cfg.Brokers...), &findcoordinator.Request{Key: m.group})
	if err != nil {
		return nil, fmt.Errorf("finding the coordinator of group %s: %w", m.group, err)
	}
	res := msg.(*findcoordinator.Response)
	if err := kafkaError(res.ErrorCode); err != nil {
		return nil, fmt.Errorf("finding the coordinator of group %s: %w", m.group, err)
	}
	addr = kafka.TCP(net.JoinHostPort(res.Host, strconv.Itoa(int(res.Port))))
	m.mu.Lock()
	m.coordinator = addr
	m.mu.Unlock()
	return addr, nil
}

// coordinatorFailed forgets addr as the coordinator when err says it is not (or no longer reachable), so that
// the next request looks it up again.
func (m *groupMember) coordinatorFailed(addr net.Addr, err error) {
	if err == nil || !coordinatorTrouble(err) || errors.Is(err, kafka.GroupLoadInProgress) {
		return
	}
	m.mu.Lock()
	if m.coordinator != nil && m.coordinator.String() == addr.String() {
		m.coordinator = nil
	}
	m.mu.Unlock()
}

// roundTrip sends req to addr; a coordinator that could not be reached is forgotten.
func (m *groupMember) roundTrip(ctx context.Context, addr net.Addr, req protocol.Message) (protocol.Message, error) {
	msg, err := m.transport.RoundTrip(ctx, addr, req)
	if err != nil {
		m.coordinatorFailed(addr, err)
	}
	return msg, err
}

// coordinatorTrouble reports whether err means the coordinator could not be reached or is not ready: the
// request is worth repeating, and the member still holds its generation.
func coordinatorTrouble(err error) bool {
	var kerr kafka.Error
	if !errors.As(err, &kerr) {
		return !errors.Is(err, context.Canceled)
	}
	switch kerr {
	case kafka.GroupCoordinatorNotAvailable, kafka.NotCoordinatorForGroup, kafka.GroupLoadInProgress,
		kafka.RequestTimedOut, kafka.NetworkException:
		return true
	}
	return false
}

func kafkaError(code int16) error {
	if code == 0 {
		return nil
	}
	return kafka.Error(code)
}

// subscriptionMetadata encodes the member's topics as kafka-go's ConsumerGroup does (version 1 of the consumer
// protocol's subscription, without owned partitions): a leader running an older wskafka decodes exactly that and
// refuses anything longer.
func subscriptionMetadata(topics []string) ([]byte, error) {
	return protocol.Marshal(0, consumer.Subscription{Version: 1, Topics: topics})
}

// decodeSubscription reads a member's subscription of any version, including kafka-go's version 1 without the
// owned partitions that version 1 adds.
func decodeSubscription(b []byte) (consumer.Subscription, error) {
	var sub consumer.Subscription
	if len(b) >= 2 && int16(binary.BigEndian.Uint16(b)) >= 1 {
		if err := protocol.Unmarshal(b, 1, &sub); err == nil {
			return sub, nil
		}
	}
	err := protocol.Unmarshal(b, 0, &sub)
	return sub, err
}

func encodeAssignment(partitions map[string][]int) ([]byte, error) {
	a := consumer.Assignment{Version: 1}
	for topic, parts := range partitions {
		tp := consumer.TopicPartition{Topic: topic, Partitions: make([]int32, len(parts))}
		for i, p := range parts {
			tp.Partitions[i] = int32(p)
		}
		a.AssignedPartitions = append(a.AssignedPartitions, tp)
	}
	return protocol.Marshal(1, a)
}

// decodeAssignment reads the partitions the leader gave this member; a member given nothing may receive no bytes.
func decodeAssignment(b []byte) (map[string][]int, error) {
	out := make(map[string][]int)
	if len(b) == 0 {
		return out, nil
	}
	var a consumer.Assignment
	if err := protocol.Unmarshal(b, 1, &a); err != nil {
		return nil, err
	}
	for _, tp := range a.AssignedPartitions {
		for _, p := range tp.Partitions {
			out[tp.Topic] = append(out[tp.Topic], int(p))
		}
	}
	return out, nil
}

// heartbeatRequest is a Heartbeat whose response is read here. kafka-go v0.4.51 declares the response's fields
// in the wrong order (protocol/heartbeat/heartbeat.go:30-31: ErrorCode before ThrottleTimeMs, which comes first
// from version 1 on), so through it every heartbeat answers "no error" and a member never learns that a rebalance
// started.
type heartbeatRequest struct {
	heartbeat.Request
	clientID string
	version  int16 // negotiated for the connection
}

// heartbeatCorrelationID is what heartbeatRequest's exchanges are numbered with; the broker only echoes it.
const heartbeatCorrelationID = 1 << 30

// Required implements protocol.RawExchanger: every heartbeat is exchanged by RawExchange.
func (r *heartbeatRequest) Required(versions map[protocol.ApiKey]int16) bool {
	r.version = versions[protocol.Heartbeat]
	return true
}

// RawExchange implements protocol.RawExchanger: the request is written as kafka-go writes it, and the response
// read as the protocol defines it (https://kafka.apache.org/protocol#The_Messages_Heartbeat).
func (r *heartbeatRequest) RawExchange(rw io.ReadWriter) (protocol.Message, error) {
	if err := protocol.WriteRequest(rw, r.version, heartbeatCorrelationID, r.clientID, &r.Request); err != nil {
		return nil, err
	}
	var size int32
	if err := binary.Read(rw, binary.BigEndian, &size); err != nil {
		return nil, err
	}
	if size < 0 || size > 1<<16 {
		return nil, fmt.Errorf("heartbeat response of %d bytes", size)
	}
	b := make([]byte, size)
	if _, err := io.ReadFull(rw, b); err != nil {
		return nil, err
	}
	return decodeHeartbeatResponse(b, r.version)
}

// decodeHeartbeatResponse reads a Heartbeat response after its size: the correlation id, from version 4 on the
// header's tagged fields, from version 1 on throttle_time_ms, then error_code.
func decodeHeartbeatResponse(b []byte, version int16) (*heartbeat.Response, error) {
	short := fmt.Errorf("heartbeat response v%d of %d bytes: %w", version, len(b), io.ErrUnexpectedEOF)
	if len(b) < 4 {
		return nil, short
	}
	if id := int32(binary.BigEndian.Uint32(b)); id != heartbeatCorrelationID {
		return nil, fmt.Errorf("heartbeat response for request %d, want %d", id, heartbeatCorrelationID)
	}
	b = b[4:]
	if version >= 4 {
		fields, n := binary.Uvarint(b)
		if n <= 0 {
			return nil, short
		}
		b = b[n:]
		for range fields {
			_, n := binary.Uvarint(b) // the tag
			if n <= 0 {
				return nil, short
			}
			b = b[n:]
			size, n := binary.Uvarint(b)
			if n <= 0 || uint64(len(b)-n) < size {
				return nil, short
			}
			b = b[n+int(size):]
		}
	}
	res := &heartbeat.Response{}
	if version >= 1 {
		if len(b) < 4 {
			return nil, short
		}
		res.ThrottleTimeMs = int32(binary.BigEndian.Uint32(b))
		b = b[4:]
	}
	if len(b) < 2 {
		return nil, short
	}
	res.ErrorCode = int16(binary.BigEndian.Uint16(b))
	return res, nil
}

// generation implements Generation for groupMember.
type generation struct {
	m           *groupMember
	id          int32
	memberID    string
	assignments map[string]map[int]int64

	ctx    context.Context
	cancel context.CancelFunc

	mu    sync.Mutex
	ended bool
	fns   sync.WaitGroup
}

// Assignments implements Generation.
func (g *generation) Assignments() map[string]map[int]int64 {
	out := make(map[string]map[int]int64, len(g.assignments))
	for topic, parts := range g.assignments {
		out[topic] = make(map[int]int64, len(parts))
		for p, off := range parts {
			out[topic][p] = off
		}
	}
	return out
}

// Start implements Generation. A function started after the generation ended still runs, with a context that
// has ended, so that a caller waiting on it is not left hanging.
func (g *generation) Start(fn func(ctx context.Context)) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.ended {
		go fn(g.ctx)
		return
	}
	g.fns.Add(1)
	go func() {
		defer g.fns.Done()
		defer g.cancel()
		fn(g.ctx)
	}()
}

// end ends the generation and waits for its functions.
func (g *generation) end() {
	g.mu.Lock()
	g.ended = true
	g.mu.Unlock()
	g.cancel()
	g.fns.Wait()
}

// Commit implements Generation. It is valid until the member rejoins, so also from a function of the generation
// that is returning because the generation ended. It never waits for a coordinator that does not answer: the
// deliverer commits between frames, and a failed commit only leaves offsets for a later one (or the partitions'
// next owner).
func (g *generation) Commit(offsets map[string]map[int]int64) error {
	req := &offsetcommit.Request{GroupID: g.m.group, GenerationID: g.id, MemberID: g.memberID}
	for topic, parts := range offsets {
		t := offsetcommit.RequestTopic{Name: topic}
		for p, off := range parts {
			if _, ok := g.assignments[topic][p]; !ok {
				return fmt.Errorf("committing %s/%d: not assigned to this member in generation %d", topic, p, g.id)
			}
			t.Partitions = append(t.Partitions, offsetcommit.RequestPartition{PartitionIndex: int32(p), CommittedOffset: off})
		}
		if len(t.Partitions) > 0 {
			req.Topics = append(req.Topics, t)
		}
	}
	if len(req.Topics) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), g.m.k.cfg.RequestTimeout)
	defer cancel()
	err := g.commit(ctx, req)
	if coordinatorTrouble(err) && !errors.Is(err, kafka.GroupLoadInProgress) && ctx.Err() == nil {
		// The coordinator may have moved: once more, to where the cluster now says it is.
		err = g.commit(ctx, req)
	}
	return portErr(err)
}

func (g *generation) commit(ctx context.Context, req *offsetcommit.Request) error {
	m := g.m
	addr, err := m.findCoordinator(ctx)
	if err != nil {
		return err
	}
	msg, err := m.roundTrip(ctx, addr, req)
	if err != nil {
		return fmt.Errorf("committing offsets of group %s: %w", m.group, err)
	}
	var errs []error
	for _, t := range msg.(*offsetcommit.Response).Topics {
		for _, p := range t.Partitions {
			if err := kafkaError(p.ErrorCode); err != nil {
				m.coordinatorFailed(addr, err)
				errs = append(errs, fmt.Errorf("committing %s/%d for group %s: %w", t.Name, p.PartitionIndex, m.group, err))
			}
		}
	}
	return errors.Join(errs...)
}

// Interface guards
var (
	_ bridge.GroupMember = (*groupMember)(nil)
	_ bridge.Generation  = (*generation)(nil)

	_ protocol.RawExchanger = (*heartbeatRequest)(nil)
)
