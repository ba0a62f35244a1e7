package e2e

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/wskafka/wskafka/internal/testkit"
)

// Bounds of a private broker (scripts/kafka: up takes ~13 s, restart ~15 s on the 2-core machine; up runs Maven
// when no jar cache is found).
const (
	kafkaUpTimeout      = 3 * time.Minute
	kafkaRestartTimeout = 2 * time.Minute
	kafkaDownTimeout    = time.Minute
)

// privateKafka is a broker of one test's own, started with scripts/kafka in a state folder of the test's: the
// suite's broker is shared by every other test and must not be killed.
type privateKafka struct {
	t       *testing.T
	dir     string
	brokers []string
}

// startPrivateKafka starts a single-node Apache Kafka with scripts/kafka up; t.Cleanup stops it. It needs a real
// Kafka run (KAFKA_BROKERS set, so java and the jars are there): on the in-process broker it skips.
func startPrivateKafka(t *testing.T) *privateKafka {
	t.Helper()
	if embedded {
		t.Skip("e2e: needs a real Kafka (KAFKA_BROKERS is not set); scripts/kafka starts one")
	}
	needTool(t, "java", "Java 17+ runs scripts/kafka")
	k := &privateKafka{t: t, dir: t.TempDir()}
	// The jars of the suite's broker are reused, so that Maven does not run again: scripts/kafka keeps them in
	// <state>/libs with a .resolved marker, and resolves again only when the marker does not match its pom.
	for _, state := range []string{os.Getenv("KAFKA_STATE_DIR"), filepath.Join(projectRoot, ".kafka")} {
		if state == "" {
			continue
		}
		libs := filepath.Join(state, "libs")
		if _, err := os.Stat(filepath.Join(libs, ".resolved")); err == nil {
			if err := os.Symlink(libs, filepath.Join(k.dir, "libs")); err != nil {
				t.Fatal(err)
			}
			break
		}
	}
	t.Cleanup(k.down)
	k.brokers = k.run("up", kafkaUpTimeout)
	t.Logf("private broker at %v (state %s)", k.brokers, k.dir)
	return k
}

// run runs scripts/kafka with a bound and returns the brokers of its KAFKA_BROKERS line, if it printed one.
func (k *privateKafka) run(command string, timeout time.Duration) []string {
	k.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(projectRoot, "scripts", "kafka"), command)
	cmd.Dir = projectRoot
	cmd.Env = k.env()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		k.t.Fatalf("scripts/kafka %s: %v\n%s", command, err, testkit.Tail(stderr.String(), 30))
	}
	sc := bufio.NewScanner(&stdout)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "KAFKA_BROKERS="); ok {
			return splitBrokers(v)
		}
	}
	return nil
}

// env is the script's environment: the state folder, and none of the caller's KAFKA_ settings, so ports are the
// script's choice (free ones) and there is no SASL listener.
func (k *privateKafka) env() []string {
	var env []string
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "KAFKA_") {
			env = append(env, e)
		}
	}
	return append(env, "KAFKA_STATE_DIR="+k.dir)
}

func splitBrokers(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' })
}

// kill is a broker crash: SIGKILL, data and ports kept.
func (k *privateKafka) kill() { k.run("kill", kafkaDownTimeout) }

// restart starts the broker again on the same ports and data; it returns once the broker answers.
func (k *privateKafka) restart() {
	k.t.Helper()
	if got := k.run("restart", kafkaRestartTimeout); strings.Join(got, ",") != strings.Join(k.brokers, ",") {
		k.t.Fatalf("scripts/kafka restart: got brokers %v, want the same %v", got, k.brokers)
	}
}

// freeze stops the broker (SIGSTOP) for d and lets it go on (SIGCONT): connections stay open and requests wait,
// unanswered, as with a broker stuck in a long GC pause or on a full disk.
func (k *privateKafka) freeze(d time.Duration) {
	k.t.Helper()
	b, err := os.ReadFile(filepath.Join(k.dir, "kafka.pid"))
	if err != nil {
		k.t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		k.t.Fatalf("kafka.pid: %v", err)
	}
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		k.t.Fatal(err)
	}
	// Whatever happens to the test, the broker goes on (and scripts/kafka down can stop it).
	defer syscall.Kill(pid, syscall.SIGCONT)
	time.Sleep(d)
}

func (k *privateKafka) down() {
	ctx, cancel := context.WithTimeout(context.Background(), kafkaDownTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(projectRoot, "scripts", "kafka"), "down")
	cmd.Env = k.env()
	if out, err := cmd.CombinedOutput(); err != nil {
		k.t.Logf("scripts/kafka down: %v\n%s", err, testkit.Tail(string(out), 10))
	}
}

// brokerKeepalive pings every 2 s and gives up after 2 s more: much less than the broker's outage. The
// connect_timeout of 10 s lets a request wait on a hung broker longer than that: with the default 1 s, kafka-go's
// reads time out after 1 s too, and every request is answered kafka_unavailable before the keepalive matters.
const brokerKeepalive = "connect_timeout 10s\n\t\t\tlimits {\n\t\t\t\tping_interval 2s\n\t\t\t\tpong_timeout 2s\n\t\t\t}"

// Timeline of the broker scenario.
const (
	brokerBefore        = 2 * time.Second  // load before the crash
	brokerDown          = 2 * time.Second  // the broker stays dead this long before it is started again
	brokerAfter         = time.Second      // load once everything has resumed
	brokerResumeTimeout = 60 * time.Second // after the restart, until the subscriptions deliver again
	// brokerFreeze is how long the broker is stopped (SIGSTOP) after it is back: longer than ping_interval +
	// pong_timeout of brokerKeepalive, shorter than the consumer's session_timeout (10 s).
	brokerFreeze = 6 * time.Second
)

// TestFaultBrokerRestart kills the broker with SIGKILL mid-stream and starts it again on the same port and data,
// then stops it (SIGSTOP) for longer than the keepalive, while publishers (with and without receipts) and
// subscribers (a commit:client group member, a broadcast socket, one that subscribes during each outage) run.
// Every publish must be answered (a receipt or s:1, never silence), none that got no error may be missing, the
// group must process every record in Kafka, the subscriptions must deliver again by themselves, on the sockets
// they had (their closing is a failure), and a subscribe sent during an outage must be answered s:0 once Kafka is
// back. Counts and recovery times are logged.
func TestFaultBrokerRestart(t *testing.T) {
	needSuite(t)
	needKcat(t)
	pk := startPrivateKafka(t)
	// Keepalive much shorter than the outage: a client whose request waits on Kafka meanwhile is not dead.
	srv := startCaddy(t, caddyOptions{brokers: pk.brokers, wskafka: brokerKeepalive})
	url := func() string { return srv.url() }
	topic, group := uniqueName(t, "t"), uniqueName(t, "group")
	setup := dial(t, "setup", srv.url(), nil)
	setup.request(t, topicMsg("create", []any{map[string]any{"name": topic, "partitions": 2}}))
	setup.close()

	l := newLedger()
	groupTally, broadcastTally := newTally(), newTally()
	member := startSubscriber(t, groupTally, "member",
		map[string]any{"t": []string{topic}, "consumer_group": group, "commit": "client"}, url)
	broadcast := startSubscriber(t, broadcastTally, "broadcast",
		map[string]any{"t": []string{topic}, "mode": "broadcast"}, url)
	subs := []*seqSubscriber{member, broadcast}
	for _, s := range subs {
		s.stay = true
		s.waitSubscribed(t)
	}
	pubs := []*seqPublisher{
		startPublisher(t, l, "plain", topic, false, 10*time.Millisecond, url),
		startPublisher(t, l, "receipts", topic, true, 20*time.Millisecond, url),
	}

	time.Sleep(brokerBefore)
	killed := time.Now()
	pk.kill()
	// A subscriber that comes while the broker is away: its subscribe is answered (s:1, then s:0 once Kafka is
	// back), and its socket stays open, however long it waits on Kafka.
	late := startSubscriber(t, newTally(), "late-subscriber",
		map[string]any{"t": []string{topic}, "consumer_group": uniqueName(t, "late-group")}, url)
	late.stay, late.retryRefused = true, true
	time.Sleep(brokerDown)
	pk.restart()
	restarted := time.Now()
	t.Logf("broker killed, started again after %v", restarted.Sub(killed).Round(time.Millisecond))

	// Resumed: a record published after the restart has reached each subscriber, and a receipt has come for one.
	deadline := time.Now().Add(brokerResumeTimeout)
	resumed := map[string]time.Duration{}
	for len(resumed) < len(subs)+1 {
		if d := firstAckAfter(l, restarted); d > 0 {
			resumed["receipts"] = d
		}
		for _, s := range subs {
			if d := firstDeliveryAfter(l, s.ty, restarted); d > 0 {
				resumed[s.name] = d
			}
		}
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(faultPoll)
	}
	for late.subscribedAfter(killed).IsZero() && time.Now().Before(deadline) && len(late.errors()) == 0 {
		time.Sleep(faultPoll)
	}
	if at := late.subscribedAfter(killed); at.IsZero() {
		t.Errorf("%s: subscribed during the outage, got no s:0 within %v of the restart (refused %s), want one",
			late.name, brokerResumeTimeout, late.refusals())
	} else {
		resumed[late.name] = at.Sub(restarted)
	}
	t.Logf("broker restart: after the restart, first receipt, first delivery of a new record, the late subscribe's "+
		"s:0 (per client; negative: before the restart returned): %v; the late subscribe was refused %s",
		resumed, late.refusals())
	for _, name := range []string{"receipts", member.name, broadcast.name} {
		if _, ok := resumed[name]; !ok {
			t.Errorf("%s: nothing published after the restart came through within %v, want the client to resume by itself",
				name, brokerResumeTimeout)
		}
	}

	// Then the broker hangs: a subscribe that comes meanwhile waits on Kafka longer than the keepalive allows a
	// silent peer, on a client that answers every ping.
	frozen := startSubscriber(t, newTally(), "subscriber-during-freeze",
		map[string]any{"t": []string{topic}, "consumer_group": uniqueName(t, "freeze-group")}, url)
	frozen.stay, frozen.retryRefused = true, true
	// And a request the server answers from Kafka before it reads the socket's next frame (topic/list): its
	// client answers pings all along, so its socket must stay open until the answer.
	lister := dial(t, "lister", srv.url(), nil)
	listed := make(chan error, 1)
	go func() {
		r, err := lister.roundTrip(topicMsg("list", nil))
		if err == nil {
			t.Logf("broker freeze: topic/list sent as it began was answered %s", r.raw)
		}
		listed <- err
	}()
	frozenAt := time.Now()
	pk.freeze(brokerFreeze)
	thawed := time.Now()
	select {
	case err := <-listed:
		if err != nil {
			t.Errorf("broker freeze (%v, keepalive 2s + 2s): topic/list sent as it began: %v after %v, want an answer "+
				"(s:0, or s:1 kafka_timeout) on the open socket", brokerFreeze, err, time.Since(frozenAt).Round(time.Millisecond))
		}
	case <-time.After(brokerResumeTimeout):
		t.Errorf("broker freeze: topic/list sent as it began: no answer within %v of the broker going on", brokerResumeTimeout)
	}
	deadline = time.Now().Add(brokerResumeTimeout)
	for frozen.subscribedAfter(frozenAt).IsZero() && time.Now().Before(deadline) && len(frozen.errors()) == 0 {
		time.Sleep(faultPoll)
	}
	if at := frozen.subscribedAfter(frozenAt); at.IsZero() {
		t.Errorf("%s: got no s:0 within %v of the broker going on (refused %s), want one", frozen.name,
			brokerResumeTimeout, frozen.refusals())
	} else {
		t.Logf("broker freeze (%v): the subscribe sent as it began was answered s:0 %v after the broker went on (refused %s)",
			brokerFreeze, at.Sub(thawed).Round(time.Millisecond), frozen.refusals())
	}

	time.Sleep(brokerAfter)
	for _, p := range pubs {
		p.finish()
	}
	inKafka := readBack(t, pk.brokers, topic, l, false)
	assertPublishes(t, "broker restart", l.count(inKafka), false)
	assertGroup(t, "broker restart", groupTally, inKafka, member)
	for _, s := range subs {
		s.finish()
	}
	// A broadcast subscriber reads from "now" on: what it misses while the broker is away is logged, not counted.
	t.Logf("broker restart: broadcast subscriber: %d of %d records received, %d more than once",
		len(inKafka)-len(broadcastTally.missing(inKafka)), len(inKafka), broadcastTally.duplicated())
	for _, p := range pubs {
		p.mu.Lock()
		if n := len(p.closes); n > 0 {
			t.Logf("%s: the server closed %d of its sockets (%v); it dialled again", p.name, n, p.closes)
		}
		p.mu.Unlock()
	}
	late.finish()
	frozen.finish()
	clientErrors(t, &pubs[0].clientLife, &pubs[1].clientLife, &member.clientLife, &broadcast.clientLife,
		&late.clientLife, &frozen.clientLife)
}

// firstAckAfter returns how long after at the first receipt came for a publish written after at (0: none yet).
// The ledger records no answer times, so it is the write time of the first acknowledged one, a lower bound.
func firstAckAfter(l *ledger, at time.Time) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	var first time.Time
	for _, p := range l.pubs {
		if p.acked && p.writtenAt.After(at) && (first.IsZero() || p.writtenAt.Before(first)) {
			first = p.writtenAt
		}
	}
	if first.IsZero() {
		return 0
	}
	return first.Sub(at)
}

// firstDeliveryAfter returns how long after at the tally first got a record written after at (0: none yet).
func firstDeliveryAfter(l *ledger, ty *tally, at time.Time) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	ty.mu.Lock()
	defer ty.mu.Unlock()
	var first time.Time
	for value, p := range l.pubs {
		if got, ok := ty.first[value]; ok && p.writtenAt.After(at) && (first.IsZero() || got.Before(first)) {
			first = got
		}
	}
	if first.IsZero() {
		return 0
	}
	return first.Sub(at)
}

// refusals says how often the subscriber's subscribe was refused, and the first refusal's payload.
func (s *seqSubscriber) refusals() string {
	s.smu.Lock()
	defer s.smu.Unlock()
	if s.refused == 0 {
		return "0 times"
	}
	return fmt.Sprintf("%d times, first %s", s.refused, s.firstRefusal)
}

// String makes a close readable in logs.
func (c socketClose) String() string {
	return fmt.Sprintf("%d at %s", c.code, c.at.Format("15:04:05.000"))
}
