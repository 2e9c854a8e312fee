// SPDX-License-Identifier: Apache-2.0

package kem

import (
	"crypto/mlkem"

	"ubns.dev/netauth/internal/keypool"
)

// Pool keeps up to size pre-generated ML-KEM-768 decapsulation keys so that a client's full
// handshake does not pay for key generation on its critical path (internal/keypool). Every key
// is handed out at most once.
//
// A Pool must not be copied after first use. All methods are safe for concurrent use, and the
// methods of a nil *Pool behave like those of a closed empty pool.
type Pool struct {
	q *keypool.Pool[*mlkem.DecapsulationKey768]
}

// NewPool starts a pool holding up to size keys generated from crypto/rand. With size less
// than one the pool starts no goroutine and Get always generates inline. The caller must call
// Close to stop the refilling goroutine.
func NewPool(size int) *Pool {
	return &Pool{q: keypool.New(size, mlkem.GenerateKey768)}
}

// Get returns a decapsulation key taken from the pool, or generates one inline from
// crypto/rand if the pool is empty. It never blocks waiting for the refilling goroutine, and
// it keeps working after Close. Its signature is that of the client handshake's KEM callback.
func (p *Pool) Get() (*mlkem.DecapsulationKey768, error) {
	if p != nil {
		if dk, ok := p.q.Take(); ok {
			return dk, nil
		}
	}
	return mlkem.GenerateKey768()
}

// Close stops the refilling goroutine, waits for it to exit, and drops the keys still held by
// the pool (they cannot be wiped; see the package comment). It is safe to call Close more
// than once.
func (p *Pool) Close() {
	if p != nil {
		p.q.Close()
	}
}
