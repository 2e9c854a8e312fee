// SPDX-License-Identifier: Apache-2.0

package bench

import (
	_ "embed"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// forkSetuidSource is the paper's baseline server: accept, fork, setuid, receive, send, exit.
//
//go:embed csrc/forksetuid.c
var forkSetuidSource []byte

// forkSetuid is a running fork-setuid server.
type forkSetuid struct {
	cmd  *exec.Cmd
	addr string
}

// startForkSetuid compiles the embedded C server with cc in dir and starts it, changing to
// uid and gid for every connection. It returns a reason to skip the row (and no error) when
// there is no C compiler.
func startForkSetuid(dir string, uid, gid int) (fs *forkSetuid, skip string, err error) {
	cc, err := exec.LookPath("cc")
	if err != nil {
		return nil, "no C compiler (cc) to build the fork-setuid server; install gcc to include it", nil
	}
	src := filepath.Join(dir, "forksetuid.c")
	bin := filepath.Join(dir, "forksetuid")
	if err := os.WriteFile(src, forkSetuidSource, 0o644); err != nil {
		return nil, "", err
	}
	if out, err := exec.Command(cc, "-O2", "-o", bin, src).CombinedOutput(); err != nil {
		return nil, "", fmt.Errorf("compiling the fork-setuid server: %v: %s", err, out)
	}
	portFile := filepath.Join(dir, "forksetuid.port")
	cmd := exec.Command(bin, portFile, strconv.Itoa(uid), strconv.Itoa(gid), strconv.Itoa(msgSize))
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, "", fmt.Errorf("starting the fork-setuid server: %w", err)
	}
	fs = &forkSetuid{cmd: cmd}
	for range 500 {
		if data, err := os.ReadFile(portFile); err == nil && strings.HasSuffix(string(data), "\n") {
			fs.addr = "127.0.0.1:" + strings.TrimSpace(string(data))
			return fs, "", nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	fs.stop()
	return nil, "", errors.New("the fork-setuid server did not start within 5s")
}

// stop kills the server.
func (fs *forkSetuid) stop() {
	_ = fs.cmd.Process.Kill()
	_ = fs.cmd.Wait()
}
