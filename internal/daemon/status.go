// SPDX-License-Identifier: Apache-2.0

package daemon

import (
	"cmp"
	"slices"
	"time"
)

// WorkerInfo describes one running worker process.
type WorkerInfo struct {
	Pid     int    `json:"pid"`
	Service string `json:"service"`
	// User is the user the worker serves ("" for a worker shared by every user, a
	// backend's).
	User        string `json:"user,omitempty"`
	Connections int    `json:"connections"` // connections handed to it (or being handed) and open
	// Started is when its process started (or when a spare worker became it).
	Started time.Time `json:"started"`
}

// Workers lists the worker processes that are running (started, not retired or dead), by
// service, user and pid. Spare workers not yet assigned are not listed.
func (d *Daemon) Workers() []WorkerInfo {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []WorkerInfo
	for _, w := range d.workers {
		select {
		case <-w.ready: // start has set pid (or failed: dead)
		default:
			continue // starting
		}
		if w.retired || w.dead || w.startErr != nil {
			continue
		}
		out = append(out, WorkerInfo{Pid: w.pid, Service: w.svc.Name, User: w.user, Connections: w.active, Started: w.started})
	}
	slices.SortFunc(out, func(a, b WorkerInfo) int {
		return cmp.Or(cmp.Compare(a.Service, b.Service), cmp.Compare(a.User, b.User), cmp.Compare(a.Pid, b.Pid))
	})
	return out
}
