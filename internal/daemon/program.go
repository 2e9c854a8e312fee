// SPDX-License-Identifier: Apache-2.0

package daemon

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"

	"ubns.dev/netauth/internal/handoff"
	"ubns.dev/netauth/internal/keys"
	"ubns.dev/netauth/internal/policy"
)

// workerCommand returns the program and arguments that start a worker of sc. Per-user and
// per-connection services run their own program. Exec, backend, http-backend and instance
// services run netauthd's built-in worker (Options.Self): "exec -- PROGRAM ARG..." starts the
// service's program for each connection, "backend ADDRESS" forwards each connection to the
// backend, "http-backend ADDRESS HEADER..." each HTTP request, with HEADER... set to the user's
// name, and "instance -listen METHOD ... -- PROGRAM ARG..." starts the user's instance of the
// program and relays each connection to it.
func (d *Daemon) workerCommand(sc *policy.Service) (string, []string, error) {
	switch sc.Mode {
	case policy.Exec:
		return d.builtinWorker(sc, append([]string{"exec", "--", sc.Program}, sc.Args...))
	case policy.Backend:
		return d.builtinWorker(sc, []string{"backend", sc.Backend})
	case policy.HTTPBackend:
		return d.builtinWorker(sc, append([]string{"http-backend", sc.Backend}, sc.UserHeaders()...))
	case policy.Instance:
		args := []string{"instance", "-listen", sc.InstanceListen, "-start-timeout", sc.StartTimeout().String()}
		if sc.InstanceListen == policy.InstanceTCP {
			ino, err := hostNetns()
			if err != nil {
				return "", nil, err
			}
			args = append(args, "-host-netns", strconv.FormatUint(ino, 10))
		}
		return d.builtinWorker(sc, append(append(args, "--", sc.Program), sc.Args...))
	}
	return sc.Program, sc.Args, nil
}

// builtinWorker returns the command line of the built-in worker with args.
func (d *Daemon) builtinWorker(sc *policy.Service, args []string) (string, []string, error) {
	self := d.opts.Self
	if len(self) == 0 {
		return "", nil, errors.New("netauthd was not given its own program (Options.Self) to run the built-in exec and backend workers")
	}
	if !filepath.IsAbs(self[0]) {
		return "", nil, fmt.Errorf("the built-in worker program %q (Options.Self) is not an absolute path", self[0])
	}
	if (sc.Mode == policy.Exec || sc.Mode == policy.Instance) && !filepath.IsAbs(sc.Program) {
		return "", nil, fmt.Errorf("service %q: program %q is not an absolute path", sc.Name, sc.Program)
	}
	out := make([]string, 0, len(self)-1+len(args))
	out = append(append(out, self[1:]...), args...)
	return self[0], out, nil
}

// workerKeyFor returns the key of the worker that takes user's next connection to sc (without
// the serial a per-connection worker gets), and whether each connection gets a worker of its
// own. A backend service has one worker for all its users, whose key has no user.
func workerKeyFor(sc *policy.Service, user string) (key workerKey, perConn bool) {
	switch {
	case sc.WorkerShared():
		return workerKey{service: sc.Name}, false
	case sc.WorkerPerConnection():
		return workerKey{service: sc.Name, user: user}, true
	}
	return workerKey{service: sc.Name, user: user}, false
}

// A backend service's one worker serves the connections of every user, so the daemon tracks
// the user of each of its connections (worker.users) and the keys each user authenticated
// with (worker.userKeys): per-user limits are counted per connection, and revocation closes
// one user's connections (handoff.TypeRevoke) instead of stopping the worker.

// connUserLocked returns the user of connection id at w and forgets the connection; when it
// was the user's last connection there, it also forgets the keys the user used. It returns
// w.user for a connection it does not know. Callers hold d.mu.
func (w *worker) connUserLocked(id uint64) string {
	user, ok := w.users[id]
	if !ok {
		return w.user
	}
	delete(w.users, id)
	for _, u := range w.users {
		if u == user {
			return user
		}
	}
	delete(w.userKeys, user)
	return user
}

// noteUserKeyLocked records that user authenticated with key (fingerprint fp) on a connection
// handed to w. Callers hold d.mu.
func (w *worker) noteUserKeyLocked(user, fp string, key usedKey) {
	if !w.svc.WorkerShared() {
		return // w.keysUsed covers a worker of one user
	}
	if w.userKeys == nil {
		w.userKeys = make(map[string]map[string]usedKey)
	}
	if w.userKeys[user] == nil {
		w.userKeys[user] = make(map[string]usedKey)
	}
	w.userKeys[user][fp] = key
}

// releaseConnsLocked takes the connections still registered with a worker that has exited
// off their users' counts. Callers hold d.mu.
func (d *Daemon) releaseConnsLocked(w *worker) {
	for id := range w.users {
		d.connsLocked(userService{w.svc.Name, w.connUserLocked(id)}, -1)
	}
	w.active = 0
}

// checkSharedRevocations re-checks the users of each backend service's worker: a user who
// lost their key or their grant has their connections closed, and the worker carries on for
// the others; a worker whose service was removed is stopped. A key that two users share is
// revoked for both: the worker closes connections by key fingerprint.
func (d *Daemon) checkSharedRevocations(ctx context.Context, cfg *policy.Config, cs *certState, src keys.Source) {
	type item struct {
		w    *worker
		user string
		keys []usedKey
	}
	d.mu.Lock()
	var items []item
	var removed []*worker
	for _, w := range d.workers {
		if w.dead || !w.svc.WorkerShared() {
			continue
		}
		if cfg.Lookup(w.svc.Name) == nil {
			removed = append(removed, w)
			continue
		}
		for user, ks := range w.userKeys {
			it := item{w: w, user: user}
			for _, k := range ks {
				it.keys = append(it.keys, k)
			}
			items = append(items, it)
		}
	}
	d.mu.Unlock()
	for _, w := range removed {
		d.log.Info("service removed; stopping its worker and its connections", "service", w.svc.Name, "pid", w.pid)
		w.retire()
		w.kill("service removed")
	}
	for _, it := range items {
		reason := d.revoked(ctx, cfg, cs, src, it.w.svc.Name, it.user, it.keys)
		if reason == "" {
			continue
		}
		d.log.Info("access revoked; closing the user's connections", "service", it.w.svc.Name, "user", it.user, "pid", it.w.pid, "reason", reason)
		d.mu.Lock()
		delete(it.w.userKeys, it.user)
		d.mu.Unlock()
		for _, k := range it.keys {
			if err := it.w.ch.Send(&handoff.Message{Type: handoff.TypeRevoke, Payload: []byte(keys.Fingerprint(k.key))}, nil); err != nil {
				d.log.Warn("revocation: telling the worker", "service", it.w.svc.Name, "pid", it.w.pid, "err", err)
			}
		}
	}
}
