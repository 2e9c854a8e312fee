// SPDX-License-Identifier: Apache-2.0

package x25519

import (
	"crypto/rand"
	"io"

	"github.com/flynn/noise"
)

// ErrKeyLength is returned by the DH method of the noise.DHFunc when a key is
// not 32 bytes long.
const ErrKeyLength = Error("x25519: key is not 32 bytes long")

// DHFunc returns a noise.DHFunc named "25519" for netauth's handshakes.
//
// With a nil pool, its GenerateKeypair reads exactly 32 bytes from the random
// reader it is given (crypto/rand.Reader if that is nil), just as
// noise.DH25519 does, so deterministic randomness gives the same public keys
// and the same handshake transcript as noise.DH25519. With a non-nil pool,
// GenerateKeypair ignores its random argument and takes a key pair from pool.
//
// Its DH method computes X25519 directly from the 32-byte private key without
// recomputing the public key, and rejects keys that are not 32 bytes long and
// low-order public keys.
func DHFunc(pool *Pool) noise.DHFunc {
	return dhFunc{pool: pool}
}

// dhFunc is the noise.DHFunc returned by DHFunc.
type dhFunc struct {
	pool *Pool
}

// GenerateKeypair returns a new key pair from the pool, or from random if
// there is no pool.
func (f dhFunc) GenerateKeypair(random io.Reader) (noise.DHKey, error) {
	var kp KeyPair
	if f.pool != nil {
		kp = f.pool.Get()
	} else {
		if random == nil {
			random = rand.Reader
		}
		var err error
		if kp, err = Generate(random); err != nil {
			return noise.DHKey{}, err
		}
	}
	key := noise.DHKey{
		Private: make([]byte, Size),
		Public:  make([]byte, Size),
	}
	copy(key.Private, kp.Private[:])
	copy(key.Public, kp.Public[:])
	kp.Zero()
	return key, nil
}

// DH returns the X25519 shared secret of privkey and pubkey.
func (dhFunc) DH(privkey, pubkey []byte) ([]byte, error) {
	if len(privkey) != Size || len(pubkey) != Size {
		return nil, ErrKeyLength
	}
	out, err := DH([Size]byte(privkey), [Size]byte(pubkey))
	if err != nil {
		return nil, err
	}
	return out[:], nil
}

// DHLen returns 32, the length of an X25519 shared secret.
func (dhFunc) DHLen() int { return Size }

// DHName returns "25519", the Noise name of X25519.
func (dhFunc) DHName() string { return "25519" }
