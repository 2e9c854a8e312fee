// SPDX-License-Identifier: Apache-2.0

// Package keypool keeps pre-generated ephemeral keys of one kind (internal/x25519's key pairs,
// internal/kem's ML-KEM decapsulation keys), so that a handshake does not pay for key
// generation on its critical path.
package keypool

import (
	"sync"
	"time"
)

// RefillDelay is how long the refilling goroutine waits before replacing a taken key while
// the pool is more than half full: the handshake that just took a key finishes first.
const RefillDelay = 2 * time.Millisecond

// Pool keeps up to its size keys made by its generator. One background goroutine refills it
// and sleeps while it is full. Every key is handed out at most once.
//
// A Pool must not be copied after first use. All methods are safe for concurrent use, and the
// methods of a nil *Pool behave like those of a closed empty pool.
type Pool[T any] struct {
	gen  func() (T, error)
	keys chan T
	stop chan struct{}
	done chan struct{}
	once sync.Once
}

// New starts a pool holding up to size keys made by gen. With size less than one the pool
// starts no goroutine and holds nothing. The caller must call Close to stop the refilling
// goroutine. If gen fails, the goroutine stops refilling (the callers of Take then generate
// inline, and see the error themselves).
func New[T any](size int, gen func() (T, error)) *Pool[T] {
	p := &Pool[T]{gen: gen, stop: make(chan struct{}), done: make(chan struct{})}
	if size < 1 {
		close(p.done)
		return p
	}
	p.keys = make(chan T, size)
	go p.fill()
	return p
}

// fill generates keys into p.keys until p.stop is closed. A blocked send is how the goroutine
// sleeps while the pool is full.
func (p *Pool[T]) fill() {
	defer close(p.done)
	for {
		select {
		case <-p.stop:
			return
		default:
		}
		if len(p.keys) > cap(p.keys)/2 {
			t := time.NewTimer(RefillDelay)
			select {
			case <-t.C:
			case <-p.stop:
				t.Stop()
				return
			}
		}
		k, err := p.gen()
		if err != nil {
			return
		}
		select {
		case p.keys <- k:
		case <-p.stop:
			return
		}
	}
}

// Take returns a key from the pool, or false if it holds none. It never blocks waiting for
// the refilling goroutine.
func (p *Pool[T]) Take() (T, bool) {
	if p != nil {
		select {
		case k := <-p.keys:
			return k, true
		default:
		}
	}
	var zero T
	return zero, false
}

// Len and Cap return how many keys the pool holds, and can hold.
func (p *Pool[T]) Len() int {
	if p == nil {
		return 0
	}
	return len(p.keys)
}

// Cap returns how many keys the pool can hold.
func (p *Pool[T]) Cap() int {
	if p == nil {
		return 0
	}
	return cap(p.keys)
}

// Close stops the refilling goroutine, waits for it to exit, and drops the keys the pool
// still holds. It is safe to call Close more than once.
func (p *Pool[T]) Close() {
	if p == nil {
		return
	}
	p.once.Do(func() { close(p.stop) })
	<-p.done
	for {
		select {
		case <-p.keys:
		default:
			return
		}
	}
}
