//go:build !walvault_front

package main

import (
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/walvault/walvault/archive"
)

// progress reports a long transfer (archive.Progress): a bar redrawn in place on a terminal,
// a log line every interval otherwise (cron, systemd, CI).
type progress struct {
	what         string
	total        int64
	read, stored atomic.Int64
	start        time.Time
	bar          io.Writer // nil: log lines
	interval     time.Duration
	stop         chan struct{}
	wg           sync.WaitGroup
}

func newProgress(what string, total int64, bar io.Writer, interval time.Duration) *progress {
	if interval <= 0 {
		interval = 30 * time.Second
	}
	p := &progress{what: what, total: total, start: time.Now(), bar: bar, interval: interval, stop: make(chan struct{})}
	tick := interval
	if bar != nil {
		tick = 250 * time.Millisecond
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		t := time.NewTicker(tick)
		defer t.Stop()
		for {
			select {
			case <-p.stop:
				return
			case <-t.C:
				p.report()
			}
		}
	}()
	return p
}

func (p *progress) AddRead(n int64)   { p.read.Add(n) }
func (p *progress) AddStored(n int64) { p.stored.Add(n) }

// Done stops reporting and clears the bar.
func (p *progress) Done() {
	close(p.stop)
	p.wg.Wait()
	if p.bar != nil {
		fmt.Fprint(p.bar, "\r\033[K")
	}
}

func (p *progress) report() {
	read, stored := p.read.Load(), p.stored.Load()
	el := time.Since(p.start).Seconds()
	rate := float64(read) / max(el, 0.001)
	eta := "?"
	if rate > 0 && p.total > read {
		eta = time.Duration(float64(p.total-read) / rate * float64(time.Second)).Round(time.Second).String()
	} else if p.total <= read {
		eta = "0s"
	}
	if p.bar == nil {
		slog.Info(p.what+" progress", "read", archive.HumanBytes(read), "of", archive.HumanBytes(p.total), "stored", archive.HumanBytes(stored), "rate", archive.HumanBytes(int64(rate))+"/s", "eta", eta)
		return
	}
	frac := 1.0
	if p.total > 0 {
		frac = min(1, float64(read)/float64(p.total))
	}
	const width = 24
	fill := int(frac * width)
	bar := strings.Repeat("=", fill) + strings.Repeat(" ", width-fill)
	fmt.Fprintf(p.bar, "\r\033[K%s [%s] %3.0f%%  %s/%s read  %s stored  %s/s  ETA %s",
		p.what, bar, frac*100, archive.HumanBytes(read), archive.HumanBytes(p.total), archive.HumanBytes(stored), archive.HumanBytes(int64(rate)), eta)
}

// progressReporter is how the commands' domain reports progress: a bar when
// bar is a terminal, log lines every interval otherwise.
func progressReporter(bar io.Writer, interval time.Duration) archive.NewProgress {
	return func(what string, total int64) archive.Progress {
		return newProgress(what, total, bar, interval)
	}
}
