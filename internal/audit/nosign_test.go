// SPDX-License-Identifier: Apache-2.0

package audit

import (
	"io"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// gateSigner signs only when let through, to hold a signature in the middle
// of being made.
type gateSigner struct {
	ssh.Signer
	entered chan struct{}
	release chan struct{}
}

func (g gateSigner) Sign(r io.Reader, data []byte) (*ssh.Signature, error) {
	g.entered <- struct{}{}
	<-g.release
	return g.Signer.Sign(r, data)
}

// TestWriteDoesNotSign: Write, which netauthd calls before it accepts a
// connection, makes no signature: the host key signs checkpoints in the
// background. (Records were once signed one by one, in Write.)
func TestWriteDoesNotSign(t *testing.T) {
	host := newHostKey(t)
	_, w := openTestLog(t, host)
	gate := gateSigner{Signer: w.signer, entered: make(chan struct{}), release: make(chan struct{})}
	w.mu.Lock()
	w.signer = gate
	w.mu.Unlock()
	done := make(chan error, 1)
	go func() { done <- w.Write(refusedRecord(host.pub, "accepted or not, no signature")) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-gate.entered:
		go func() { gate.release <- struct{}{} }()
		<-done
		t.Fatal("Write made a signature before it returned: the decision waited for the host key")
	case <-time.After(10 * time.Second):
		t.Fatal("Write did not return")
	}
	// Let the checkpoints through, for Close.
	go func() {
		for range gate.entered {
			gate.release <- struct{}{}
		}
	}()
	if err := w.Close(); err != nil { // it signs the closing checkpoint
		t.Fatal(err)
	}
	close(gate.entered)
}
