package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/wskafka/wskafka/internal/testkit"
)

// idleSettle is how long the sockets sit before memory is read: goroutines started, buffers allocated.
const idleSettle = 3 * time.Second

type idleResult struct {
	sockets             int
	rssBefore, rssAfter int64
	perSocket           float64 // bytes
	perGiB              float64 // sockets
	idleCPU             time.Duration
	window              time.Duration
	dialTime            time.Duration
}

// idle holds K sockets open without traffic and reads the server's resident memory and CPU.
func (b *bench) idle(ctx context.Context) error {
	caddy, err := b.startCaddy(ctx, false)
	if err != nil {
		return err
	}
	defer caddy.stop()
	// One socket first, so that what is made once per handler (Kafka clients, pools) is not counted per socket.
	warm, err := dialWS(ctx, caddy.url("/ws"))
	if err != nil {
		return err
	}
	if _, err := warm.request(1, "health", "", nil); err != nil {
		return err
	}
	warm.close()
	time.Sleep(time.Second)

	res := &idleResult{sockets: b.cfg.idleSockets, window: b.cfg.idleWindow}
	if res.rssBefore, err = testkit.ResidentBytes(caddy.Pid()); err != nil {
		return err
	}
	start := time.Now()
	conns, err := dialMany(ctx, caddy.url("/ws"), b.cfg.idleSockets, 64)
	if err != nil {
		return err
	}
	res.dialTime = time.Since(start)
	// Each socket is read, as a client would: the server's keepalive pings are answered.
	var readers sync.WaitGroup
	for _, c := range conns {
		readers.Go(func() {
			for {
				if _, _, err := c.conn.ReadMessage(); err != nil {
					return
				}
			}
		})
	}
	defer readers.Wait()
	fmt.Printf("%d sockets open in %v\n", len(conns), res.dialTime.Round(time.Millisecond))
	time.Sleep(idleSettle)
	if res.rssAfter, err = testkit.ResidentBytes(caddy.Pid()); err != nil {
		closeAll(conns)
		return err
	}
	meter, err := startCPU(caddy.Pid())
	if err != nil {
		closeAll(conns)
		return err
	}
	select {
	case <-time.After(b.cfg.idleWindow):
	case <-ctx.Done():
		closeAll(conns)
		return ctx.Err()
	}
	res.idleCPU, res.window, err = meter.stop()
	closeAll(conns)
	if err != nil {
		return err
	}
	res.perSocket = float64(res.rssAfter-res.rssBefore) / float64(res.sockets)
	res.perGiB = float64(1<<30) / res.perSocket
	b.idleResult = res
	fmt.Printf("RSS %.1f MiB → %.1f MiB: %.1f KiB per socket, %.0f sockets per GiB; idle CPU %v in %v (%.2f%% of a core)\n",
		mib(res.rssBefore), mib(res.rssAfter), res.perSocket/1024, res.perGiB, res.idleCPU, res.window.Round(time.Millisecond),
		100*res.idleCPU.Seconds()/res.window.Seconds())
	return nil
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }
