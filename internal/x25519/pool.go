// SPDX-License-Identifier: Apache-2.0

package x25519

import (
	"crypto/rand"

	"ubns.dev/netauth/internal/keypool"
)

// Pool keeps up to size pre-generated ephemeral key pairs so that netauth's handshakes do not
// pay for key generation on their critical path (internal/keypool). Every key pair is handed
// out at most once.
//
// A Pool must not be copied after first use. All methods are safe for concurrent use, and the
// methods of a nil *Pool behave like those of a closed empty pool.
type Pool struct {
	q *keypool.Pool[KeyPair]
}

// NewPool starts a pool holding up to size key pairs generated from crypto/rand. With size
// less than one the pool starts no goroutine and Get always generates inline. The caller must
// call Close to stop the refilling goroutine.
func NewPool(size int) *Pool {
	return &Pool{q: keypool.New(size, func() (KeyPair, error) { return Generate(rand.Reader) })}
}

// Get returns a key pair taken from the pool, or generates one inline from crypto/rand if the
// pool is empty. It never blocks waiting for the refilling goroutine, and it keeps working
// after Close. Its signature is that of the handshake's Ephemeral callback. It fails only when
// generation fails, that is when the process forbids X25519 (GODEBUG=fips140=only).
func (p *Pool) Get() (KeyPair, error) {
	if p != nil {
		if k, ok := p.q.Take(); ok {
			return k, nil
		}
	}
	return Generate(rand.Reader)
}

// Close stops the refilling goroutine, waits for it to exit, and drops the key pairs still
// held by the pool (their private keys cannot be wiped; see KeyPair). It is safe to call Close
// more than once.
func (p *Pool) Close() {
	if p != nil {
		p.q.Close()
	}
}
