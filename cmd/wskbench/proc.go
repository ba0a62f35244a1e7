package main

import (
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/wskafka/wskafka/internal/testkit"
)

// cpuMeter measures the CPU a process uses between start and stop.
type cpuMeter struct {
	pid   int
	cpu   time.Duration
	start time.Time
}

func startCPU(pid int) (*cpuMeter, error) {
	cpu, err := testkit.CPUTime(pid)
	return &cpuMeter{pid: pid, cpu: cpu, start: time.Now()}, err
}

// stop returns the CPU used and the wall time elapsed since start.
func (m *cpuMeter) stop() (cpu, wall time.Duration, err error) {
	now, err := testkit.CPUTime(m.pid)
	return now - m.cpu, time.Since(m.start), err
}

func median(values []float64) float64 {
	s := slices.Clone(values)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// loadAverage is the machine's 1-minute load average (/proc/loadavg), written beside each figure: the machine is
// shared; -1 when unreadable.
func loadAverage() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return -1
	}
	var l float64
	if _, err := fmt.Sscan(string(b), &l); err != nil {
		return -1
	}
	return l
}
