// SPDX-License-Identifier: Apache-2.0

package x25519

import (
	"crypto/rand"
	"sync"
	"time"
)

// refillDelay is how long the refilling goroutine waits before replacing a taken key
// while the pool is more than half full.
const refillDelay = 2 * time.Millisecond

// Pool keeps up to size pre-generated ephemeral key pairs so that netauth's
// handshakes do not pay for key generation on their critical path. One
// background goroutine refills the pool and sleeps while it is full. Every key
// pair is handed out at most once.
//
// A Pool must not be copied after first use. All methods are safe for
// concurrent use, and the methods of a nil *Pool behave like those of a closed
// empty pool.
type Pool struct {
	keys chan KeyPair
	stop chan struct{}
	done chan struct{}
	once sync.Once
}

// NewPool starts a pool holding up to size key pairs generated from
// crypto/rand. With size less than one the pool starts no goroutine and Get
// always generates inline. The caller must call Close to stop the refilling
// goroutine.
func NewPool(size int) *Pool {
	p := &Pool{
		stop: make(chan struct{}),
		done: make(chan struct{}),
	}
	if size < 1 {
		close(p.done)
		return p
	}
	p.keys = make(chan KeyPair, size)
	go p.fill()
	return p
}

// fill generates key pairs into p.keys until p.stop is closed. A blocked send
// is how the goroutine sleeps while the pool is full.
func (p *Pool) fill() {
	defer close(p.done)
	for {
		select {
		case <-p.stop:
			return
		default:
		}
		if len(p.keys) > cap(p.keys)/2 {
			// Plenty left: let the handshake that just took a key finish before
			// competing with it for the CPU.
			t := time.NewTimer(refillDelay)
			select {
			case <-t.C:
			case <-p.stop:
				t.Stop()
				return
			}
		}
		k, err := Generate(rand.Reader)
		if err != nil {
			// Only a process that forbids X25519 (GODEBUG=fips140=only) gets here,
			// and then every key fails: Get generates inline and reports the error.
			return
		}
		select {
		case p.keys <- k:
		case <-p.stop:
			return
		}
	}
}

// Get returns a key pair taken from the pool, or generates one inline from
// crypto/rand if the pool is empty. It never blocks waiting for the refilling
// goroutine, and it keeps working after Close. Its signature is that of the
// handshake's Ephemeral callback. It fails only when generation fails, that is
// when the process forbids X25519 (GODEBUG=fips140=only).
func (p *Pool) Get() (KeyPair, error) {
	if p != nil {
		select {
		case k := <-p.keys:
			return k, nil
		default:
		}
	}
	return Generate(rand.Reader)
}

// Close stops the refilling goroutine, waits for it to exit, and drops the key
// pairs still held by the pool (their private keys cannot be wiped; see
// KeyPair). It is safe to call Close more than once.
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
