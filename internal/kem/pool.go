// SPDX-License-Identifier: Apache-2.0

package kem

import (
	"crypto/mlkem"
	"sync"
	"time"
)

// refillDelay is how long the refilling goroutine waits before replacing a taken key while
// the pool is more than half full (as internal/x25519's pool does).
const refillDelay = 2 * time.Millisecond

// Pool keeps up to size pre-generated ML-KEM-768 decapsulation keys so that a client's full
// handshake does not pay for key generation on its critical path. One background goroutine
// refills the pool and sleeps while it is full. Every key is handed out at most once.
//
// A Pool must not be copied after first use. All methods are safe for concurrent use, and the
// methods of a nil *Pool behave like those of a closed empty pool.
type Pool struct {
	keys chan *mlkem.DecapsulationKey768
	stop chan struct{}
	done chan struct{}
	once sync.Once
}

// NewPool starts a pool holding up to size keys generated from crypto/rand. With size less
// than one the pool starts no goroutine and Get always generates inline. The caller must call
// Close to stop the refilling goroutine.
func NewPool(size int) *Pool {
	p := &Pool{
		stop: make(chan struct{}),
		done: make(chan struct{}),
	}
	if size < 1 {
		close(p.done)
		return p
	}
	p.keys = make(chan *mlkem.DecapsulationKey768, size)
	go p.fill()
	return p
}

// fill generates keys into p.keys until p.stop is closed. A blocked send is how the
// goroutine sleeps while the pool is full.
func (p *Pool) fill() {
	defer close(p.done)
	for {
		select {
		case <-p.stop:
			return
		default:
		}
		if len(p.keys) > cap(p.keys)/2 {
			// Plenty left: let the handshake that just took a key finish before competing
			// with it for the CPU.
			t := time.NewTimer(refillDelay)
			select {
			case <-t.C:
			case <-p.stop:
				t.Stop()
				return
			}
		}
		dk, err := mlkem.GenerateKey768()
		if err != nil {
			// Generation does not fail with crypto/rand; should it, Get generates inline
			// and reports the error.
			return
		}
		select {
		case p.keys <- dk:
		case <-p.stop:
			return
		}
	}
}

// Get returns a decapsulation key taken from the pool, or generates one inline from
// crypto/rand if the pool is empty. It never blocks waiting for the refilling goroutine, and
// it keeps working after Close. Its signature is that of the client handshake's KEM callback.
func (p *Pool) Get() (*mlkem.DecapsulationKey768, error) {
	if p != nil {
		select {
		case dk := <-p.keys:
			return dk, nil
		default:
		}
	}
	return mlkem.GenerateKey768()
}

// Close stops the refilling goroutine, waits for it to exit, and drops the keys still held by
// the pool (they cannot be wiped; see the package comment). It is safe to call Close more
// than once.
func (p *Pool) Close() {
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
