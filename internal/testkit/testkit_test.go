package testkit

import (
	"os"
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	ms := func(ns ...int) []time.Duration {
		d := make([]time.Duration, len(ns))
		for i, n := range ns {
			d[i] = time.Duration(n) * time.Millisecond
		}
		return d
	}
	hundred := make([]int, 100)
	for i := range hundred {
		hundred[i] = 100 - i // unsorted: 100 down to 1
	}
	tests := []struct {
		name   string
		values []time.Duration
		q      float64
		want   time.Duration
	}{
		{name: "none", values: nil, q: 0.5, want: 0},
		{name: "one", values: ms(7), q: 0.99, want: 7 * time.Millisecond},
		{name: "median of an odd count", values: ms(3, 1, 2), q: 0.5, want: 2 * time.Millisecond},
		{name: "p99 of 1..100", values: ms(hundred...), q: 0.99, want: 99 * time.Millisecond},
		{name: "max", values: ms(hundred...), q: 1, want: 100 * time.Millisecond},
		{name: "a tiny q is the least", values: ms(5, 4), q: 0.001, want: 4 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := append([]time.Duration(nil), tt.values...)
			if got := Percentile(tt.values, tt.q); got != tt.want {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
			for i := range before {
				if before[i] != tt.values[i] {
					t.Fatal("the values were reordered")
				}
			}
		})
	}
}

// The figures of this very process can be read.
func TestProcFigures(t *testing.T) {
	if rss, err := ResidentBytes(os.Getpid()); err != nil || rss <= 0 {
		t.Fatalf("got %d, %v; want this process's resident bytes", rss, err)
	}
	if _, err := CPUTime(os.Getpid()); err != nil {
		t.Fatalf("got %v, want this process's CPU time", err)
	}
	if _, err := ResidentBytes(-1); err == nil {
		t.Fatal("got no error for a process that does not exist")
	}
}
