package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// The scale scenario's workers read their sockets through one epoll loop per process instead of a gorilla reader
// goroutine each. On the 2 cores that the Caddy under test shares with them, the readers' CPU is the latency of the
// last socket of a record: at 19,000 sockets the goroutine readers took 15.5 µs of CPU per delivery (a worker's
// profile: two read(2) per frame, the second only to find the socket empty before parking, and a quarter in the
// scheduler), about what Caddy spends writing it. A level-triggered epoll loop reads each ready socket once.

// pollBufferSize is what the loop reads a socket into: the frames that queued on it since the last read.
const pollBufferSize = 64 << 10

// pollEvents is how many ready sockets one epoll_wait returns at most.
const pollEvents = 512

// pollStopCheck bounds how long the loop waits in epoll_wait before it looks whether it is asked to stop.
const pollStopCheck = 100 * time.Millisecond

// polledSocket is one subscribed socket: its descriptor (a duplicate of the dialled connection's, outside the Go
// runtime's poller) and the bytes of a frame that has not arrived whole.
type polledSocket struct {
	fd      int
	index   int
	pending []byte
}

// poller reads every socket of a subscriberSet in one goroutine locked to its thread.
type poller struct {
	epfd    int
	sockets map[int]*polledSocket
	stop    chan struct{}
	once    sync.Once
}

// subscribePolled is subscribeSet for a wskafka route read by a poller: n sockets dialled to url (parallel at a
// time, bound to src), each upgraded and subscribed to topic in broadcast mode with blocking I/O, then handed to
// one epoll loop.
func subscribePolled(ctx context.Context, rawURL, topic string, n, parallel int, src sourceAddrs) (*subscriberSet, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, err
	}
	subscribe, err := json.Marshal(map[string]any{"id": 1, "t": "topic", "a": "subscribe",
		"p": map[string]any{"t": []string{topic}, "mode": "broadcast"}})
	if err != nil {
		return nil, err
	}
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll_create1: %w", err)
	}
	p := &poller{epfd: epfd, sockets: make(map[int]*polledSocket, n), stop: make(chan struct{})}
	s := &subscriberSet{ep: endpoint{name: "wskafka", url: rawURL}, perConn: make([][]time.Duration, n), allIn: make(chan struct{})}
	s.closeConns = p.close
	sockets := make([]*polledSocket, n)
	retried := &codeCounts{counts: map[string]int{}}
	errs := make(chan error, n)
	sem := make(chan struct{}, parallel)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range sockets {
		sem <- struct{}{}
		if ctx.Err() != nil {
			break
		}
		wg.Go(func() {
			defer func() { <-sem }()
			ps, err := dialSubscribed(ctx, u, src.of(i), maskedFrames(subscribe, 1), retried)
			if err != nil {
				errs <- fmt.Errorf("wskafka subscriber %d: %w", i, err)
				return
			}
			ps.index = i
			sockets[i] = ps
		})
	}
	wg.Wait()
	s.subscribe = time.Since(start)
	s.retried = retried.counts
	close(errs)
	for _, ps := range sockets {
		if ps != nil {
			p.sockets[ps.fd] = ps
		}
	}
	if err := <-errs; err != nil {
		p.closeAll()
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		p.closeAll()
		return nil, err
	}
	for fd := range p.sockets {
		if err := syscall.EpollCtl(epfd, syscall.EPOLL_CTL_ADD, fd, &syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP, Fd: int32(fd)}); err != nil {
			p.closeAll()
			return nil, fmt.Errorf("epoll_ctl: %w", err)
		}
	}
	// Frames that came behind the subscribe reply in the same read.
	now := time.Now().UnixNano()
	for _, ps := range sockets {
		if len(ps.pending) > 0 {
			ps.pending = p.frames(s, ps, ps.pending, now)
		}
	}
	s.readers.Go(func() { p.loop(s) })
	return s, nil
}

// codeCounts counts subscribes refused and tried again, by error code.
type codeCounts struct {
	mu     sync.Mutex
	counts map[string]int
}

func (c *codeCounts) add(code string) {
	c.mu.Lock()
	c.counts[code]++
	c.mu.Unlock()
}

// dialSubscribed dials u from local, upgrades the connection to WebSocket and sends subscribe, waiting for its
// reply (by hand rather than with gorilla, whose Conn keeps in its buffer what arrived behind the reply and cannot
// hand the socket over with it) (answering pings meanwhile, and sending it again after a retryable refusal, counted in retried); it
// returns a duplicate of the connection's descriptor, which the Go runtime does not poll, with the bytes read
// past the reply.
func dialSubscribed(ctx context.Context, u *url.URL, local net.Addr, subscribe []byte, retried *codeCounts) (*polledSocket, error) {
	conn, err := (&net.Dialer{Timeout: 10 * time.Second, LocalAddr: local}).DialContext(ctx, "tcp", u.Host)
	if err != nil {
		return nil, fmt.Errorf("dialing %s: %w", u.Host, err)
	}
	defer func() { _ = conn.Close() }()                // the duplicate keeps the socket
	_ = conn.SetDeadline(time.Now().Add(replyTimeout)) // a failed deadline shows as the next I/O failing
	var key [16]byte
	_, _ = rand.Read(key[:]) // never fails
	if _, err := fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n", u.RequestURI(), u.Host, base64.StdEncoding.EncodeToString(key[:])); err != nil {
		return nil, err
	}
	br := bufio.NewReaderSize(conn, 4096)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return nil, fmt.Errorf("the upgrade: %w", err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		return nil, fmt.Errorf("the upgrade: %s", resp.Status)
	}
	if _, err := conn.Write(subscribe); err != nil {
		return nil, err
	}
	var buf []byte
	for try := 1; ; {
		chunk := make([]byte, 4096)
		n, err := br.Read(chunk)
		if err != nil {
			return nil, fmt.Errorf("waiting for the subscribe reply: %w", err)
		}
		buf = append(buf, chunk[:n]...)
		for {
			f, ok, err := nextFrame(buf)
			if err != nil {
				return nil, err
			}
			if !ok {
				break
			}
			buf = buf[f.size:]
			switch f.op {
			case opPing:
				if _, err := conn.Write(clientFrame(opPong, f.payload)); err != nil {
					return nil, err
				}
			case opText:
				var r reply
				if err := json.Unmarshal(f.payload, &r); err != nil {
					return nil, fmt.Errorf("the subscribe reply: %w: %s", err, f.payload)
				}
				if string(r.RefID) != "1" {
					return nil, fmt.Errorf("a frame before the subscribe reply: %s", f.payload)
				}
				if r.S != 0 {
					var refusal struct {
						Code string `json:"code"`
					}
					_ = json.Unmarshal(r.P, &refusal) // no code: not retryable
					if try == subscribeTries || !slices.Contains(retryableCodes, refusal.Code) {
						return nil, fmt.Errorf("the subscribe failed: %s", f.payload)
					}
					try++
					retried.add(refusal.Code)
					time.Sleep(time.Second)
					if _, err := conn.Write(subscribe); err != nil {
						return nil, err
					}
					continue
				}
				if br.Buffered() > 0 {
					rest, _ := br.Peek(br.Buffered()) // buffered: cannot fail
					buf = append(buf, rest...)
				}
				return dupSocket(conn, buf)
			default:
				return nil, fmt.Errorf("frame opcode %d before the subscribe reply", f.op)
			}
		}
	}
}

// dupSocket duplicates conn's descriptor (non-blocking: the flag belongs to the shared file description).
func dupSocket(conn net.Conn, pending []byte) (*polledSocket, error) {
	raw, err := conn.(*net.TCPConn).SyscallConn()
	if err != nil {
		return nil, err
	}
	fd, dupErr := -1, error(nil)
	if err := raw.Control(func(orig uintptr) { fd, dupErr = syscall.Dup(int(orig)) }); err != nil {
		return nil, err
	}
	if dupErr != nil {
		return nil, fmt.Errorf("dup: %w", dupErr)
	}
	syscall.CloseOnExec(fd)
	return &polledSocket{fd: fd, pending: pending}, nil
}

// loop reads every ready socket once per epoll_wait until asked to stop.
func (p *poller) loop(s *subscriberSet) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	defer p.closeAll()
	events := make([]syscall.EpollEvent, pollEvents)
	buf := make([]byte, pollBufferSize)
	for {
		select {
		case <-p.stop:
			return
		default:
		}
		n, err := syscall.EpollWait(p.epfd, events, int(pollStopCheck/time.Millisecond))
		if err != nil {
			if errors.Is(err, syscall.EINTR) {
				continue
			}
			s.failure.CompareAndSwap(nil, fmt.Errorf("epoll_wait: %w", err))
			return
		}
		for _, ev := range events[:n] {
			ps := p.sockets[int(ev.Fd)]
			if ps == nil {
				continue
			}
			start := copy(buf, ps.pending)
			r, err := syscall.Read(ps.fd, buf[start:])
			now := time.Now().UnixNano()
			if errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EINTR) {
				continue
			}
			if err != nil || r == 0 {
				p.lost(s, ps, err)
				continue
			}
			ps.pending = append(ps.pending[:0], p.frames(s, ps, buf[:start+r], now)...)
		}
	}
}

// frames handles the whole frames at the start of b and returns what is left of it, a frame not yet whole.
func (p *poller) frames(s *subscriberSet, ps *polledSocket, b []byte, now int64) []byte {
	for {
		f, ok, err := nextFrame(b)
		if err != nil {
			p.lost(s, ps, err)
			return nil
		}
		if !ok {
			return b
		}
		b = b[f.size:]
		switch f.op {
		case opText, opBinary:
			s.frame(ps.index, f.payload, now)
		case opPing:
			if _, err := syscall.Write(ps.fd, clientFrame(opPong, f.payload)); err != nil {
				p.lost(s, ps, fmt.Errorf("answering a ping: %w", err))
				return nil
			}
		case opClose:
			p.lost(s, ps, fmt.Errorf("closed by the server: %q", f.payload))
			return nil
		}
	}
}

// lost counts a socket the server closed (or that failed) and stops reading it.
func (p *poller) lost(s *subscriberSet, ps *polledSocket, err error) {
	if err == nil {
		err = errors.New("EOF")
	}
	if !s.closing.Load() {
		s.closed.Add(1)
		s.failure.CompareAndSwap(nil, fmt.Errorf("wskafka socket %d closed: %w", ps.index, err))
	}
	_ = syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_DEL, ps.fd, nil) // closing it below removes it anyway
	_ = syscall.Close(ps.fd)                                        // nothing to do about a failed close
	delete(p.sockets, ps.fd)
}

// close asks the loop to stop; the loop closes the sockets.
func (p *poller) close() {
	p.once.Do(func() { close(p.stop) })
}

// closeAll sends each socket a close frame and closes it, then the epoll descriptor.
func (p *poller) closeAll() {
	bye := clientFrame(opClose, binary.BigEndian.AppendUint16(nil, 1000))
	for fd := range p.sockets {
		_, _ = syscall.Write(fd, bye) // closing: nothing to do about it
		_ = syscall.Close(fd)         // closing: nothing to do about it
	}
	clear(p.sockets)
	_ = syscall.Close(p.epfd) // closing: nothing to do about it
}

// WebSocket opcodes (RFC 6455 §5.2).
const (
	opText   = 0x1
	opBinary = 0x2
	opClose  = 0x8
	opPing   = 0x9
	opPong   = 0xa
)

// serverFrame is one frame a server sent: unmasked, as RFC 6455 §5.1 requires.
type serverFrame struct {
	op      byte
	payload []byte
	size    int // header and payload
}

// nextFrame parses the frame at the start of b; ok is false while b does not hold it whole. A fragmented or
// masked frame is an error: wskafka sends neither.
func nextFrame(b []byte) (f serverFrame, ok bool, err error) {
	if len(b) < 2 {
		return f, false, nil
	}
	if b[0]&0x80 == 0 || b[0]&0x0f == 0 {
		return f, false, errors.New("a fragmented frame")
	}
	if b[1]&0x80 != 0 {
		return f, false, errors.New("a masked frame from the server")
	}
	f.op = b[0] & 0x0f
	header, length := 2, uint64(b[1]&0x7f)
	switch length {
	case 126:
		if len(b) < 4 {
			return f, false, nil
		}
		header, length = 4, uint64(binary.BigEndian.Uint16(b[2:]))
	case 127:
		if len(b) < 10 {
			return f, false, nil
		}
		header, length = 10, binary.BigEndian.Uint64(b[2:])
		if length > 1<<30 {
			return f, false, errors.New("a frame of " + strconv.FormatUint(length, 10) + " bytes")
		}
	}
	if uint64(len(b)-header) < length {
		return f, false, nil
	}
	f.size = header + int(length)
	f.payload = b[header:f.size]
	return f, true, nil
}

// clientFrame is one masked frame of op carrying payload (control frames: at most 125 bytes).
func clientFrame(op byte, payload []byte) []byte {
	frame := maskedFrames(payload, 1)
	frame[0] = 0x80 | op
	return frame
}
