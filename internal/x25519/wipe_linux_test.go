// SPDX-License-Identifier: Apache-2.0

package x25519

import (
	"bufio"
	"crypto/rand"
	"encoding/binary"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"unsafe"
)

// secret is a 32-byte value the test looks for in memory. It is kept XORed with secretMask,
// so that the test itself holds no copy of the value.
type secret [Size]byte

var secretMask = func() (m [Size]byte) {
	for i := range m {
		m[i] = byte(0xa5 ^ i*37)
	}
	return m
}()

// maskSecret returns the masked form of b[:Size], computed byte by byte.
func maskSecret(b []byte) (s secret) {
	for i := range s {
		s[i] = b[i] ^ secretMask[i]
	}
	return s
}

// seedReader writes pseudo-random bytes straight into the caller's buffer and records the
// masked form of the clamped scalar they give.
type seedReader struct {
	ctr     uint64
	scalars []secret
}

func (r *seedReader) Read(p []byte) (int, error) {
	var s secret
	for i := range p {
		r.ctr++
		x := r.ctr * 0x9e3779b97f4a7c15
		x ^= x >> 29
		x *= 0xbf58476d1ce4e5b9
		x ^= x >> 32
		p[i] = byte(x)
		c := p[i]
		switch i {
		case 0:
			c &= 248
		case Size - 1:
			c = c&127 | 64
		}
		if i < Size {
			s[i] = c ^ secretMask[i]
		}
	}
	r.scalars = append(r.scalars, s)
	return len(p), nil
}

// countInMemory returns, for each secret, at how many 8-byte aligned addresses of this
// process's writable memory it is found. It reads /proc/self/mem into a buffer mapped
// outside the Go heap, which it does not search.
func countInMemory(t *testing.T, secrets []secret) []int {
	t.Helper()
	buf, err := syscall.Mmap(-1, 0, 1<<20, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Munmap(buf)
	self := uint64(uintptr(unsafe.Pointer(&buf[0])))

	// Index the secrets by their first 8 bytes (unmasked in a register only).
	byPrefix := make(map[uint64][]int)
	for i, s := range secrets {
		var m [8]byte
		for j := range m {
			m[j] = s[j] ^ secretMask[j]
		}
		p := binary.LittleEndian.Uint64(m[:])
		clear(m[:])
		byPrefix[p] = append(byPrefix[p], i)
	}

	maps, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		t.Fatal(err)
	}
	mem, err := os.Open("/proc/self/mem")
	if err != nil {
		t.Fatal(err)
	}
	defer mem.Close()
	counts := make([]int, len(secrets))
	sc := bufio.NewScanner(strings.NewReader(string(maps)))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 || !strings.HasPrefix(f[1], "rw") || (len(f) >= 6 && strings.HasPrefix(f[5], "[v")) {
			continue
		}
		from, to, _ := strings.Cut(f[0], "-")
		lo, err1 := strconv.ParseUint(from, 16, 64)
		hi, err2 := strconv.ParseUint(to, 16, 64)
		// Skip our buffer, and the race detector's shadow memory (terabytes, never a Go value).
		if err1 != nil || err2 != nil || lo == self || hi-lo > 1<<32 {
			continue
		}
		for off := lo; off < hi; off += uint64(len(buf)) {
			n, _ := mem.ReadAt(buf[:min(uint64(len(buf)), hi-off)], int64(off))
			for i := 0; i+Size <= n; i += 8 {
				for _, k := range byPrefix[binary.LittleEndian.Uint64(buf[i:])] {
					var acc byte
					for j := range Size {
						acc |= buf[i+j] ^ secretMask[j] ^ secrets[k][j]
					}
					if acc == 0 {
						counts[k]++
					}
				}
			}
		}
	}
	return counts
}

// TestWipes searches the process's memory for secrets: the private scalars of 64 key pairs
// while they are held, and the shared secrets of a DH with each after the caller wiped its
// copy. Every scalar must be found (so the search works), and in one place only, crypto/ecdh's
// key, which cannot be wiped: Generate wipes its own copy of the random bytes. DH must wipe
// crypto/ecdh's copy of each shared secret. A few stack copies of the last values computed
// (inside crypto/ecdh) may remain, hence the small allowance.
func TestWipes(t *testing.T) {
	const n = 64
	// A random start: the scalars of an earlier run (-count) are still in memory.
	var start [8]byte
	rand.Read(start[:])
	r := &seedReader{ctr: binary.LittleEndian.Uint64(start[:])}
	peer, err := Generate(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	kps := make([]KeyPair, n)
	for i := range kps {
		if kps[i], err = Generate(r); err != nil {
			t.Fatal(err)
		}
	}
	var shared []secret
	for i := range kps {
		out, err := kps[i].DH(peer.Public)
		if err != nil {
			t.Fatal(err)
		}
		shared = append(shared, maskSecret(out[:]))
		clear(out[:])
	}

	missing, twice := 0, 0
	for _, c := range countInMemory(t, r.scalars) {
		switch {
		case c == 0:
			missing++
		case c > 1:
			twice++
		}
	}
	if missing > 0 {
		t.Errorf("%d of %d private scalars not found in memory while their key pairs are held: the search does not work", missing, n)
	}
	if twice > 4 {
		t.Errorf("%d of %d private scalars found at more than one place: the random bytes are not wiped", twice, n)
	}
	if left := found(countInMemory(t, shared)); left > 4 {
		t.Errorf("%d of %d shared secrets left in memory after the caller wiped its copy", left, n)
	}

	// What Zero cannot do, measured (docs/SECURITY.md, "Keys and secrets"): how long the
	// dropped scalars stay in memory. Logged only: it depends on the garbage collector.
	for i := range kps {
		kps[i].Zero()
	}
	runtime.GC()
	runtime.GC()
	t.Logf("after Zero and two garbage collections: %d of %d scalars still in memory", found(countInMemory(t, r.scalars)), n)
	for range 2000 {
		kp, err := Generate(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		out, err := kp.DH(peer.Public)
		if err != nil {
			t.Fatal(err)
		}
		clear(out[:])
		kp.Zero()
	}
	runtime.GC()
	t.Logf("after 2,000 more key pairs and DHs and a garbage collection: %d of %d scalars still in memory", found(countInMemory(t, r.scalars)), n)
}

// found returns how many counts are not zero.
func found(counts []int) int {
	n := 0
	for _, c := range counts {
		if c > 0 {
			n++
		}
	}
	return n
}
