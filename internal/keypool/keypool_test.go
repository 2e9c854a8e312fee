// SPDX-License-Identifier: Apache-2.0

package keypool

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// counter returns a generator of distinct ints, and how many it made.
func counter() (func() (int, error), *atomic.Int64) {
	var n atomic.Int64
	return func() (int, error) { return int(n.Add(1)), nil }, &n
}

// waitFull waits until p holds p.Cap() keys.
func waitFull(t testing.TB, p *Pool[int]) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for p.Len() < p.Cap() {
		if time.Now().After(deadline) {
			t.Fatalf("pool holds %d of %d keys after 10s", p.Len(), p.Cap())
		}
		time.Sleep(time.Millisecond)
	}
}

// TestTakeHandsOutEachKeyOnce: concurrent Takes racing with the refill and with Close never
// get one key twice, and an empty pool says so instead of blocking. Run it with -race.
func TestTakeHandsOutEachKeyOnce(t *testing.T) {
	gen, _ := counter()
	p := New(8, gen)
	waitFull(t, p)
	var mu sync.Mutex
	seen := map[int]bool{}
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 50 {
				k, ok := p.Take()
				if !ok {
					continue
				}
				mu.Lock()
				if seen[k] {
					t.Errorf("key %d handed out twice", k)
				}
				seen[k] = true
				mu.Unlock()
			}
		})
	}
	time.Sleep(time.Millisecond)
	p.Close()
	wg.Wait()
	if len(seen) < 8 {
		t.Errorf("%d keys taken, want at least the 8 the full pool held", len(seen))
	}
	if p.Len() != 0 {
		t.Errorf("pool holds %d keys after Close", p.Len())
	}
	if _, ok := p.Take(); ok {
		t.Error("Take after Close returned a key")
	}
}

// TestEmptyAndNil: a pool of size 0 and a nil pool hold nothing, start no generation, and may
// be closed (twice).
func TestEmptyAndNil(t *testing.T) {
	gen, n := counter()
	var nilPool *Pool[int]
	for _, p := range []*Pool[int]{New(0, gen), New(-1, gen), nilPool} {
		if _, ok := p.Take(); ok || p.Len() != 0 || p.Cap() != 0 {
			t.Errorf("empty pool: Take %v, Len %d, Cap %d", ok, p.Len(), p.Cap())
		}
		p.Close()
		p.Close()
	}
	if n.Load() != 0 {
		t.Errorf("empty pools generated %d keys", n.Load())
	}
}

// TestGeneratorFailure: a generator that fails stops the refilling, and Close still returns.
func TestGeneratorFailure(t *testing.T) {
	p := New(4, func() (int, error) { return 0, errors.New("no keys here") })
	if _, ok := p.Take(); ok {
		t.Error("Take returned a key from a pool whose generator fails")
	}
	p.Close()
}

// BenchmarkTake measures Take when the pool holds keys, which is what a handshake pays while
// the refilling goroutine keeps up. The pool is filled directly, with the timer stopped.
func BenchmarkTake(b *testing.B) {
	const size = 1024
	p := &Pool[[64]byte]{keys: make(chan [64]byte, size), stop: make(chan struct{}), done: make(chan struct{})}
	close(p.done)
	defer p.Close()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i += size {
		b.StopTimer()
		for len(p.keys) < size {
			p.keys <- [64]byte{1}
		}
		b.StartTimer()
		for range min(size, b.N-i) {
			p.Take()
		}
	}
}
