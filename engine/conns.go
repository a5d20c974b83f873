package engine

import (
	"cmp"
	"slices"

	"github.com/xnic/xnic/flows"
	"github.com/xnic/xnic/flows/conn"
)

// topConns returns the n connections with the most bytes. Call it on the
// worker (through Worker.Do).
func (p *rxPipeline) topConns(n int) []conn.Entry {
	c := p.proc.Cache()
	c.Sync()
	return c.Table().TopN(n, nil)
}

// ConnStat is one connection in Engine.TopConns.
type ConnStat struct {
	Worker int       `json:"worker"`
	Key    flows.Key `json:"-"`
	Flow   string    `json:"flow"` // "proto src:port > dst:port", receive direction
	Owner  uint32    `json:"guest"`
	Class  uint8     `json:"class"`

	PacketsIn  uint64 `json:"packets_in"`
	BytesIn    uint64 `json:"bytes_in"`
	PacketsOut uint64 `json:"packets_out"`
	BytesOut   uint64 `json:"bytes_out"`
	OutOfOrder uint32 `json:"out_of_order"`
}

// TopConns returns the n connections with the most bytes across all
// workers, most first. It runs on each worker between two passes.
func (e *Engine) TopConns(n int) []ConnStat {
	var all []ConnStat
	for wi, w := range e.workers {
		if w.pipe == nil {
			continue
		}
		var top []conn.Entry
		w.Do(func() { top = w.pipe.topConns(n) })
		for i := range top {
			c := &top[i].Context
			k := c.Key()
			all = append(all, ConnStat{
				Worker: wi, Key: k, Flow: k.String(), Owner: c.Owner, Class: c.Class,
				PacketsIn: c.PacketsIn, BytesIn: c.BytesIn, PacketsOut: c.PacketsOut, BytesOut: c.BytesOut,
				OutOfOrder: c.OutOfOrder,
			})
		}
	}
	slices.SortStableFunc(all, func(a, b ConnStat) int {
		return cmp.Compare(b.BytesIn+b.BytesOut, a.BytesIn+a.BytesOut)
	})
	if len(all) > n {
		all = all[:n]
	}
	return all
}
