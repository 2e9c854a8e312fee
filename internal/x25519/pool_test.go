// SPDX-License-Identifier: Apache-2.0

package x25519

import (
	"bytes"
	"crypto/ecdh"
	"crypto/rand"
	"os"
	"os/exec"
	"runtime"
	"sync"
	"testing"
	"time"
)

// checkKeyPair fails the test if kp's public key does not match its private
// key according to crypto/ecdh, parsing the private key's bytes again.
func checkKeyPair(t testing.TB, kp KeyPair) {
	t.Helper()
	if kp.PrivateKey() == nil {
		t.Fatal("key pair without a private key")
	}
	priv, err := ecdh.X25519().NewPrivateKey(kp.PrivateKey().Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if [Size]byte(priv.PublicKey().Bytes()) != kp.Public {
		t.Fatalf("key pair public key %x does not match its private key", kp.Public)
	}
}

// get returns p.Get's key pair, checked with checkKeyPair.
func get(t testing.TB, p *Pool) KeyPair {
	t.Helper()
	kp, err := p.Get()
	if err != nil {
		t.Fatal(err)
	}
	checkKeyPair(t, kp)
	return kp
}

// waitFull waits until p holds p.q.Cap() key pairs.
func waitFull(t testing.TB, p *Pool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for p.q.Len() < p.q.Cap() {
		if time.Now().After(deadline) {
			t.Fatalf("pool holds %d of %d keys after 10s", p.q.Len(), p.q.Cap())
		}
		time.Sleep(time.Millisecond)
	}
}

// TestPoolDistinct checks that Get returns valid, distinct key pairs, both
// from the pool and generated inline once the pool is drained.
func TestPoolDistinct(t *testing.T) {
	const size = 16
	p := NewPool(size)
	defer p.Close()
	waitFull(t, p)

	seen := make(map[[Size]byte]bool)
	for i := range 4 * size {
		kp := get(t, p)
		if seen[kp.Public] {
			t.Fatalf("Get %d returned a key pair already handed out", i)
		}
		seen[kp.Public] = true
	}
}

// TestPoolConcurrent checks that concurrent Get calls, racing with Close,
// never hand out the same key pair twice. Run it with -race.
func TestPoolConcurrent(t *testing.T) {
	const (
		workers = 8
		perW    = 50
	)
	p := NewPool(8)
	waitFull(t, p)

	keys := make(chan [Size]byte, workers*perW)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perW {
				if w == 0 && i == perW/2 {
					p.Close()
				}
				kp, err := p.Get()
				if err != nil {
					t.Error(err)
					return
				}
				keys <- kp.Public
			}
		}()
	}
	wg.Wait()
	close(keys)
	p.Close()

	seen := make(map[[Size]byte]bool)
	for k := range keys {
		if seen[k] {
			t.Fatalf("key pair %x handed out twice", k)
		}
		seen[k] = true
	}
	if len(seen) != workers*perW {
		t.Fatalf("got %d distinct keys, want %d", len(seen), workers*perW)
	}
}

// TestPoolAfterClose checks that Get keeps working after Close, that Close
// empties the pool and can be called again, and that small and nil pools work.
func TestPoolAfterClose(t *testing.T) {
	p := NewPool(4)
	waitFull(t, p)
	p.Close()
	if n := p.q.Len(); n != 0 {
		t.Errorf("pool holds %d keys after Close, want 0", n)
	}
	p.Close()
	a, b := get(t, p), get(t, p)
	if a.Public == b.Public {
		t.Error("Get after Close returned the same key pair twice")
	}

	for _, size := range []int{0, -1} {
		p := NewPool(size)
		get(t, p)
		p.Close()
		get(t, p)
	}

	var nilPool *Pool
	get(t, nilPool)
	nilPool.Close()
}

// fillGoroutines returns the number of goroutines running Pool.fill.
func fillGoroutines() int {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	return bytes.Count(buf, []byte("keypool.(*Pool[...]).fill("))
}

// waitGoroutines waits until cond holds, failing the test after a deadline.
func waitGoroutines(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			t.Fatalf("%s: %d goroutines, %d running Pool.fill\n%s", what, runtime.NumGoroutine(), fillGoroutines(), buf)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestPoolNoGoroutineLeak checks that Close stops the refilling goroutine,
// whether the pool is full, empty or still filling.
func TestPoolNoGoroutineLeak(t *testing.T) {
	// Goroutines of pools closed by earlier tests may still be exiting.
	waitGoroutines(t, "before the test", func() bool { return fillGoroutines() == 0 })

	pools := []*Pool{NewPool(1), NewPool(1000), NewPool(4), NewPool(0)}
	closed := false
	closeAll := func() {
		if !closed {
			closed = true
			for _, p := range pools {
				p.Close()
			}
		}
	}
	defer closeAll() // also when the test fails half way
	waitFull(t, pools[0])
	waitFull(t, pools[2])
	for range 8 {
		get(t, pools[2])
	}
	// Counted by their stacks: runtime.NumGoroutine also counts goroutines of the runtime
	// and the testing package that come and go.
	if n := fillGoroutines(); n != 3 {
		t.Fatalf("%d goroutines running Pool.fill with 3 running pools, want 3", n)
	}
	closeAll()
	waitGoroutines(t, "after Close", func() bool { return fillGoroutines() == 0 })
}

// TestFIPSOnly checks that a process that forbids X25519 (GODEBUG=fips140=only)
// gets crypto/ecdh's error from Generate and Pool.Get rather than keys, and
// that the pool's goroutine then exits. The test runs itself again in a child
// process with that setting.
func TestFIPSOnly(t *testing.T) {
	if os.Getenv("NETAUTH_X25519_FIPS_CHILD") == "1" {
		if _, err := Generate(rand.Reader); err == nil {
			t.Fatal("Generate made a key pair in FIPS 140-only mode")
		}
		p := NewPool(4)
		if _, err := p.Get(); err == nil {
			t.Fatal("Pool.Get returned a key pair in FIPS 140-only mode")
		}
		p.Close() // waits for the refilling goroutine
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestFIPSOnly$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), "NETAUTH_X25519_FIPS_CHILD=1", "GODEBUG=fips140=only")
	out, err := cmd.CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("--- PASS: TestFIPSOnly")) {
		t.Fatalf("child process: %v\n%s", err, out)
	}
}
