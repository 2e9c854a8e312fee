// SPDX-License-Identifier: Apache-2.0

package handshake

import (
	"errors"
	"golang.org/x/crypto/ssh"
	"testing"
	"time"
)

// TestRevokedBetweenHelloAndBinder revokes the user's key after the server accepted a
// resumption's ClientHello and before the client's binder arrives. The key check made for the
// ClientHello is then stale: a ticket holder who keeps a resumption waiting at that point when
// the key is removed must not be admitted by the binder, so the key and the grant are checked
// again once the binder verified. Authorize here admits anyone, as the library's and
// netauthd's do once the key was found eligible.
func TestRevokedBetweenHelloAndBinder(t *testing.T) {
	e := newEnv(t)
	e.srv.Authorize = admitAll
	revoked := false
	allowed := eligibleKey(func(user string) ssh.PublicKey {
		if revoked {
			return nil
		}
		return e.allowed[user]
	})
	e.srv.Eligible = func(r *Result) error {
		if err := allowed(r); err != nil {
			return err
		}
		if r.Resumed {
			revoked = true // the key goes while the client computes its binder
		}
		return nil
	}
	_, sess := e.fullSession(t)
	e.cli.Session = sess
	o2 := e.run(t)
	if o2.cliErr != nil {
		t.Fatalf("resumption, client: %v", o2.cliErr)
	}
	if !o2.cli.Result.Resumed || !revoked {
		t.Fatalf("the server did not resume the ticket (resumed %v, revoked %v)", o2.cli.Result.Resumed, revoked)
	}
	var r *Refusal
	if !errors.As(o2.srvErr, &r) || r.Code != CodeNotAuthorized {
		t.Fatalf("server admitted a resumption whose key was revoked before its binder: %v, want a not_authorized refusal", o2.srvErr)
	}
	var re *RefusedError
	if _, err := o2.cli.ReadVerdict(time.Now()); !errors.As(err, &re) || re.Code != CodeNotAuthorized {
		t.Fatalf("client verdict: %v, want not authorized", err)
	}
}

// TestResumableOnlyChoosesResumption: a configuration's Resumable replaces Eligible for the
// check at the ClientHello only. Eligible still decides after the binder: a ticket Resumable
// lets through is refused (not_authorized) when Eligible refuses its key. And a Resumable
// that answers with a key other than the ticket's is not believed: the ticket falls back to a
// full handshake.
func TestResumableOnlyChoosesResumption(t *testing.T) {
	e := newEnv(t)
	e.srv.Authorize = admitAll
	found := eligibleKey(func(user string) ssh.PublicKey { return e.allowed[user] })
	_, sess := e.fullSession(t)
	e.cli.Session = sess
	var resumable, eligible int
	e.srv.Resumable = func(r *Result) error {
		resumable++
		return found(r)
	}
	e.srv.Eligible = func(r *Result) error {
		eligible++
		return errors.New("revoked")
	}
	o := e.run(t)
	if o.cliErr != nil || !o.cli.Result.Resumed {
		t.Fatalf("the ticket Resumable lets through was not resumed: %v", o.cliErr)
	}
	var r *Refusal
	if !errors.As(o.srvErr, &r) || r.Code != CodeNotAuthorized || resumable != 1 || eligible != 1 {
		t.Fatalf("server %v after Resumable %d and Eligible %d calls; want a not_authorized refusal after one of each", o.srvErr, resumable, eligible)
	}

	other := newSigner(t).PublicKey()
	e.srv.Resumable = func(r *Result) error {
		r.SetKey(other)
		return nil
	}
	e.srv.Eligible = found
	o = e.run(t)
	if o.cliErr != nil || o.cli.Result.Resumed || o.srvErr != nil {
		t.Fatalf("a Resumable answering with another key: resumed %v, client %v, server %v; want a full handshake", o.cli.Result.Resumed, o.cliErr, o.srvErr)
	}
}
