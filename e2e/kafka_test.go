package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wskafka/wskafka/internal/testkit"
)

// The Kafka side is checked with kcat (librdkafka): no project code, no Go Kafka client.

const (
	kcatTimeout = time.Minute      // one kcat invocation
	kcatPoll    = 45 * time.Second // waiting for published records to show up
)

// needKcat returns kcat's path; without it the test skips, or fails under CI.
func needKcat(t *testing.T) string {
	t.Helper()
	return needTool(t, "kcat", "Debian: apt-get install -y kcat")
}

// kcat runs kcat against the suite's brokers with stdin and returns its stdout.
func kcat(t *testing.T, stdin io.Reader, args ...string) []byte {
	t.Helper()
	return kcatOn(t, brokers, stdin, args...)
}

// kcatOn is kcat against other brokers (a test's private broker).
func kcatOn(t *testing.T, addrs []string, stdin io.Reader, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), kcatTimeout)
	defer cancel()
	args = append([]string{"-b", strings.Join(addrs, ","), "-q"}, args...)
	cmd := exec.CommandContext(ctx, needKcat(t), args...)
	cmd.Stdin = stdin
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("kcat %s: %v\n%s", strings.Join(args, " "), err, testkit.Tail(stderr.String(), 20))
	}
	return stdout.Bytes()
}

// kcatProduceValues produces each value as one record, byte for byte: kcat reads one file per record, so no
// delimiter can cut a value.
func kcatProduceValues(t *testing.T, topic string, values [][]byte) {
	t.Helper()
	dir := t.TempDir()
	args := []string{"-P", "-t", topic}
	for i, v := range values {
		path := filepath.Join(dir, fmt.Sprintf("record-%04d", i))
		if err := os.WriteFile(path, v, 0o644); err != nil {
			t.Fatal(err)
		}
		args = append(args, path)
	}
	kcat(t, nil, args...)
}

// kcatProduceKeyed produces one record per "key:value" line; kcat skips empty messages unless they have a key, so
// this is how it produces an empty value, or with null a null one (-Z).
func kcatProduceKeyed(t *testing.T, topic string, null bool, lines ...string) {
	t.Helper()
	args := []string{"-P", "-t", topic, "-K", ":"}
	if null {
		args = append(args, "-Z")
	}
	kcat(t, strings.NewReader(strings.Join(lines, "\n")+"\n"), args...)
}

// kcatConsume reads every record of the topic, from the beginning to the current end. Each is printed as
// "<length>:<value>" so that values are read back byte for byte, newlines and all.
func kcatConsume(t *testing.T, topic string) [][]byte {
	t.Helper()
	return kcatConsumeOn(t, brokers, topic)
}

// kcatConsumeOn is kcatConsume against other brokers.
func kcatConsumeOn(t *testing.T, addrs []string, topic string) [][]byte {
	t.Helper()
	out := kcatOn(t, addrs, nil, "-C", "-t", topic, "-o", "beginning", "-e", "-f", "%S:%s")
	var values [][]byte
	r := bufio.NewReader(bytes.NewReader(out))
	for {
		lenText, err := r.ReadString(':')
		if err == io.EOF && lenText == "" {
			return values
		}
		if err != nil {
			t.Fatalf("kcat output %q: reading a length: %v", out, err)
		}
		n, err := strconv.Atoi(strings.TrimSuffix(lenText, ":"))
		if err != nil {
			t.Fatalf("kcat output %q: %v", out, err)
		}
		if n < 0 { // a null value
			values = append(values, nil)
			continue
		}
		v := make([]byte, n)
		if _, err := io.ReadFull(r, v); err != nil {
			t.Fatalf("kcat output %q: reading %d bytes: %v", out, n, err)
		}
		values = append(values, v)
	}
}

// kcatWaitFor polls the topic until it holds exactly want (in any order: records spread over partitions), and
// fails when it does not within kcatPoll.
func kcatWaitFor(t *testing.T, topic string, want [][]byte) {
	t.Helper()
	wantSorted := sortedStrings(want)
	deadline := time.Now().Add(kcatPoll)
	var got []string
	for {
		got = sortedStrings(kcatConsume(t, topic))
		if slices.Equal(got, wantSorted) {
			return
		}
		if len(got) > len(wantSorted) || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond) // poll interval
	}
	t.Fatalf("kcat read from %s:\n  got  %q\n  want %q", topic, got, wantSorted)
}

func sortedStrings(values [][]byte) []string {
	s := make([]string, len(values))
	for i, v := range values {
		s[i] = string(v)
		if v == nil {
			s[i] = "<null>" // apart from an empty value
		}
	}
	slices.Sort(s)
	return s
}

// kcatPartitions returns the topic's partition ids as the broker reports them.
func kcatPartitions(t *testing.T, topic string) []int {
	t.Helper()
	out := kcat(t, nil, "-L", "-t", topic, "-J")
	var md struct {
		Topics []struct {
			Topic      string `json:"topic"`
			Error      string `json:"error"`
			Partitions []struct {
				Partition int `json:"partition"`
			} `json:"partitions"`
		} `json:"topics"`
	}
	if err := json.Unmarshal(out, &md); err != nil {
		t.Fatalf("kcat -L -J: %v\n%s", err, out)
	}
	for _, tp := range md.Topics {
		if tp.Topic != topic {
			continue
		}
		if tp.Error != "" {
			t.Fatalf("kcat -L: topic %s: %s", topic, tp.Error)
		}
		ids := make([]int, 0, len(tp.Partitions))
		for _, p := range tp.Partitions {
			ids = append(ids, p.Partition)
		}
		slices.Sort(ids)
		return ids
	}
	t.Fatalf("kcat -L: topic %s not in %s", topic, out)
	return nil
}
