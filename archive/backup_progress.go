package archive

import (
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// progress reports a long transfer: a bar redrawn in place on a terminal,
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

func (p *progress) addRead(n int64)   { p.read.Add(n) }
func (p *progress) addStored(n int64) { p.stored.Add(n) }

// done stops reporting and clears the bar.
func (p *progress) done() {
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
		slog.Info(p.what+" progress", "read", HumanBytes(read), "of", HumanBytes(p.total), "stored", HumanBytes(stored), "rate", HumanBytes(int64(rate))+"/s", "eta", eta)
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
		p.what, bar, frac*100, HumanBytes(read), HumanBytes(p.total), HumanBytes(stored), HumanBytes(int64(rate)), eta)
}

// HumanBytes formats a byte count with binary units.
func HumanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 5; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
