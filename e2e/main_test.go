package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/wskafka/wskafka/internal/testkit"
)

// The suite's shared state, set up once by TestMain.
var (
	// projectRoot is the module's root folder (where go.mod is).
	projectRoot string
	// caddyBin is the binary `go build ./cmd/caddy` made.
	caddyBin string
	// brokers are the bootstrap addresses every Caddy and kcat use: KAFKA_BROKERS, or the in-process kfake.
	brokers []string
	// embedded is true when brokers is the in-process kfake cluster rather than KAFKA_BROKERS.
	embedded bool
	// runID makes this run's topic and group names unique: a real broker keeps them between runs.
	runID string
	// xcaddy is the xcaddy build started in the background, when a test that needs it is selected.
	xcaddy *xcaddyBuild
)

// The tests that wait for the background xcaddy build.
const (
	xcaddyTestName = "TestXcaddyBuild"
	jwtTestName    = "TestJWT"
)

func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(runSuite(m))
}

func runSuite(m *testing.M) int {
	if testing.Short() {
		// Every test skips itself (see needSuite); nothing is built.
		return m.Run()
	}
	var err error
	if projectRoot, err = filepath.Abs(".."); err == nil {
		_, err = os.Stat(filepath.Join(projectRoot, "go.mod"))
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: finding the project root: %v\n", err)
		return 1
	}
	tmp, err := os.MkdirTemp("", "wskafka-e2e-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: %v\n", err)
		return 1
	}
	defer os.RemoveAll(tmp)

	runID = newRunID()

	caddyBin = filepath.Join(tmp, "caddy")
	build := exec.Command("go", "build", "-o", caddyBin, "./cmd/caddy")
	build.Dir = projectRoot
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: go build ./cmd/caddy: %v\n%s", err, out)
		return 1
	}

	// The xcaddy build is slow (a whole Caddy), so it runs while the tests do; it starts after the build above so
	// that it finds the dependencies compiled in the build cache.
	if selected(xcaddyTestName) || selected(jwtTestName) {
		xcaddy = startXcaddyBuild(projectRoot, filepath.Join(tmp, "xcaddy"))
		defer xcaddy.stop()
	}

	if env := os.Getenv("KAFKA_BROKERS"); env != "" {
		brokers = strings.FieldsFunc(env, func(r rune) bool { return r == ',' || r == ' ' })
	} else {
		// One broker for every Caddy of the suite and for kcat: Caddy's own "embedded" broker lives inside one
		// Caddy process, where neither a second Caddy nor kcat could share it.
		cluster, err := kfake.NewCluster(kfake.NumBrokers(1))
		if err != nil {
			fmt.Fprintf(os.Stderr, "e2e: starting kfake: %v\n", err)
			return 1
		}
		defer cluster.Close()
		brokers = cluster.ListenAddrs()
		embedded = true
	}
	fmt.Fprintf(os.Stderr, "e2e: brokers %v (embedded %v), run %s\n", brokers, embedded, runID)
	return m.Run()
}

// needSuite skips the test in -short mode, where TestMain builds nothing.
func needSuite(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("e2e: skipped in -short mode")
	}
}

// inCI reports whether the suite runs under CI, where a missing tool is a failure rather than a skip.
func inCI() bool { return os.Getenv("CI") != "" }

// needTool returns the path of a program the test needs; without it the test skips, or fails under CI.
func needTool(t *testing.T, name, install string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		missing(t, fmt.Sprintf("%s not found (%s)", name, install))
	}
	return path
}

// missing skips the test for a missing prerequisite, or fails it under CI.
func missing(t *testing.T, why string) {
	t.Helper()
	if inCI() {
		t.Fatalf("e2e: %s; CI is set, so this is a failure", why)
	}
	t.Skipf("e2e: %s; skipping (set CI to make this a failure)", why)
}

// selected reports whether -test.run would run the top-level test name.
func selected(name string) bool {
	f := flag.Lookup("test.run")
	if f == nil || f.Value.String() == "" {
		return true
	}
	top := strings.Split(f.Value.String(), "/")[0]
	ok, err := regexp.MatchString(top, name)
	return err != nil || ok
}

func newRunID() string {
	b := make([]byte, 4)
	rand.Read(b)
	return time.Now().UTC().Format("150405") + "-" + hex.EncodeToString(b)
}

// uniqueName returns a topic or group name unique to this run and test, and to this repetition of the test
// under -count: a real broker keeps what an earlier repetition wrote.
func uniqueName(t *testing.T, what string) string {
	t.Helper()
	name := strings.NewReplacer("/", "-", "_", "-").Replace(t.Name())
	if n := repetition(t); n > 0 {
		name += fmt.Sprintf("-r%d", n)
	}
	return fmt.Sprintf("e2e-%s-%s-%s", runID, strings.ToLower(name), what)
}

// repetitions numbers the tests that share a name: 0 for the first, 1 for its first repetition under -count, ….
var repetitions = struct {
	sync.Mutex
	of     map[*testing.T]int
	byName map[string]int
}{of: map[*testing.T]int{}, byName: map[string]int{}}

func repetition(t *testing.T) int {
	repetitions.Lock()
	defer repetitions.Unlock()
	n, ok := repetitions.of[t]
	if !ok {
		n = repetitions.byName[t.Name()]
		repetitions.byName[t.Name()]++
		repetitions.of[t] = n
	}
	return n
}

// xcaddyBuild is `xcaddy build` running in the background; wait returns its binary.
type xcaddyBuild struct {
	cancel context.CancelFunc
	done   chan struct{}
	bin    string
	log    string
	err    error
}

// xcaddyVersion and caddyVersion are what the README tells users to build with; securityModule is the JWT
// module of the README's recipe (TestJWT), at securityVersion.
const (
	xcaddyVersion   = "v0.4.5"
	caddyVersion    = "v2.11.9"
	securityModule  = "github.com/greenpau/caddy-security"
	securityVersion = "v1.1.64"
)

// startXcaddyBuild installs xcaddy from the Go module proxy into dir and builds Caddy with this module from
// the working tree and the JWT module of the README's recipe, as a user would:
//
//	xcaddy build v2.11.9 --with github.com/wskafka/wskafka=<project root> --with github.com/greenpau/caddy-security@v1.1.64
//
// One build serves both tests: a second one would link a second Caddy, and the JWT module adds packages
// without changing the version of any module wskafka uses.
func startXcaddyBuild(root, dir string) *xcaddyBuild {
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	b := &xcaddyBuild{cancel: cancel, done: make(chan struct{}), bin: filepath.Join(dir, "caddy"), log: filepath.Join(dir, "xcaddy.log")}
	go func() {
		defer close(b.done)
		b.err = b.run(ctx, root, dir)
	}()
	return b
}

func (b *xcaddyBuild) run(ctx context.Context, root, dir string) error {
	gobin := filepath.Join(dir, "bin")
	work := filepath.Join(dir, "work")
	noModules := filepath.Join(dir, "no-modules")
	for _, d := range []string{gobin, work, noModules} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	logFile, err := os.Create(b.log)
	if err != nil {
		return err
	}
	defer logFile.Close()

	goproxy := os.Getenv("GOPROXY")
	if goproxy == "" {
		out, err := exec.CommandContext(ctx, "go", "env", "GOPROXY").Output()
		if err != nil {
			return fmt.Errorf("go env GOPROXY: %w", err)
		}
		goproxy = strings.TrimSpace(string(out))
	}
	env := append(os.Environ(),
		"GOBIN="+gobin,
		"GOPROXY="+fallbackProxy(goproxy, "file://"+filepath.ToSlash(noModules)),
		// xcaddy's default flags (-trimpath and tags) share nothing with the build cache of `go build ./cmd/caddy`,
		// which makes a cold build four times slower; these keep it to the link step when the cache is warm.
		`XCADDY_GO_BUILD_FLAGS=-ldflags "-w -s"`,
	)
	command := func(name string, args ...string) *exec.Cmd {
		cmd := exec.CommandContext(ctx, name, args...)
		cmd.Dir = work
		cmd.Env = env
		cmd.Stdout, cmd.Stderr = logFile, logFile
		// The go tool's children die with it: kill the whole process group on timeout or stop.
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
		cmd.WaitDelay = 10 * time.Second
		return cmd
	}
	if err := command("go", "install", "github.com/caddyserver/xcaddy/cmd/xcaddy@"+xcaddyVersion).Run(); err != nil {
		return fmt.Errorf("go install xcaddy@%s: %w", xcaddyVersion, err)
	}
	build := command(filepath.Join(gobin, "xcaddy"), "build", caddyVersion,
		"--with", "github.com/wskafka/wskafka="+root, "--with", securityModule+"@"+securityVersion, "--output", b.bin)
	if err := build.Run(); err != nil {
		return fmt.Errorf("xcaddy build %s: %w", caddyVersion, err)
	}
	return nil
}

// fallbackProxy makes a GOPROXY under which a module that the proxies do not have is "not found".
//
// xcaddy runs `go get github.com/wskafka/wskafka`, which asks the proxy for the module's versions before using the
// local replacement; Go uses the replacement only when the answer is "not found". proxy.golang.org says so with a
// 404, but some mirrors answer 403, which Go treats as fatal, and "direct" fails without a network. So: the
// proxies of goproxy, each followed by "|" (fall through on any error: after a "," Go stops at anything but 404
// and 410), then an empty file:// proxy, whose answer is "not found". Modules the proxies have are unaffected.
func fallbackProxy(goproxy, empty string) string {
	var proxies []string
	for _, p := range strings.FieldsFunc(goproxy, func(r rune) bool { return r == ',' || r == '|' }) {
		if p != "direct" && p != "off" {
			proxies = append(proxies, p)
		}
	}
	if len(proxies) == 0 {
		return goproxy
	}
	return strings.Join(append(proxies, empty), "|")
}

// wait returns the built binary, or fails the test with the build's log.
func (b *xcaddyBuild) wait(t *testing.T) string {
	t.Helper()
	select {
	case <-b.done:
	case <-t.Context().Done():
		t.Fatal("test ended while waiting for the xcaddy build")
	}
	if b.err != nil {
		out, _ := os.ReadFile(b.log)
		t.Fatalf("%v\n%s", b.err, testkit.Tail(string(out), 40))
	}
	return b.bin
}

func (b *xcaddyBuild) stop() {
	b.cancel()
	<-b.done
}
