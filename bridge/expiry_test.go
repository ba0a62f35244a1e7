package bridge

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/zap"
)

// TestExpiriesCloseEachSessionAtItsMoment opens sockets whose credentials expire in a different order than they
// opened, and one that closes by itself first: each gets 4001 in the order of its moment, and the hub forgets
// every session once it has ended.
func TestExpiriesCloseEachSessionAtItsMoment(t *testing.T) {
	hub := NewHub(sessionConfig(), newSessionKafka(), nil, zap.NewNop())
	start := time.Now()
	moments := map[string]time.Duration{"late": 1500 * time.Millisecond, "early": 300 * time.Millisecond, "gone": 900 * time.Millisecond, "middle": 900 * time.Millisecond}
	server := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, err := (&websocket.Upgrader{}).Upgrade(w, r, nil)
		if err != nil {
			t.Error(err)
			return
		}
		hub.Go(conn, Client{CloseAt: start.Add(moments[r.URL.Query().Get("name")])}, func() {})
	}))
	t.Cleanup(func() {
		hub.Close(websocket.CloseGoingAway, 0)
		hub.Wait()
		server.Close()
	})
	closed := make(chan string, len(moments))
	for _, name := range []string{"late", "early", "gone", "middle"} {
		conn, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(server.URL, "http")+"/?name="+name, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = conn.Close() })
		if name == "gone" {
			_ = conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
		}
		go func() {
			for {
				if _, _, err := conn.ReadMessage(); err != nil {
					var ce *websocket.CloseError
					if errors.As(err, &ce) && ce.Code == CloseCredentialExpired {
						closed <- name
					} else {
						closed <- name + " without 4001"
					}
					return
				}
			}
		}()
	}
	var order []string
	for range moments {
		select {
		case name := <-closed:
			order = append(order, name)
		case <-time.After(10 * time.Second):
			t.Fatalf("closed so far: %v", order)
		}
	}
	if got, want := strings.Join(order, " "), "gone without 4001 early middle late"; got != want {
		t.Fatalf("got %s, want %s", got, want)
	}
	for deadline := time.Now().Add(10 * time.Second); hub.Sessions() > 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("sessions still open")
		}
	}
	hub.expiries.mu.Lock()
	defer hub.expiries.mu.Unlock()
	if len(hub.expiries.at) != 0 || len(hub.expiries.due) != 0 {
		t.Fatalf("the hub still holds %d sessions' moments", len(hub.expiries.due))
	}
}
