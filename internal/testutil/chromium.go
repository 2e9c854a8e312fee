// SPDX-License-Identifier: Apache-2.0

package testutil

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// ArtifactsEnv names the directory where tests write files worth keeping after the run, such
// as the screenshots of browser tests: each test writes into a subdirectory named after it.
// Without it they go to the test's temporary directory, removed when the test ends.
const ArtifactsEnv = "NETAUTH_TEST_ARTIFACTS"

// Browser is headless Chromium run as a given user, for tests that load pages the way a
// person's browser does. Every run starts a fresh browser with a fresh profile owned by that
// user.
type Browser struct {
	t        testing.TB
	bin      string
	uid, gid int
	home     string // the user's home for the browser: the profile and its caches live here
	runs     int
	// Timeout bounds each run (default 60s); on expiry the browser's whole process group
	// is killed.
	Timeout time.Duration
}

// NewBrowser returns headless Chromium to be run with uid and gid (a test running as root
// may give any account's; otherwise its own). The test is skipped, saying so, when Debian's
// chromium is not installed; CI installs it (scripts/test).
func NewBrowser(t testing.TB, uid, gid int) *Browser {
	t.Helper()
	bin, err := exec.LookPath("chromium")
	if err != nil {
		t.Skip("chromium is not installed (apt-get install chromium; CI installs it)")
	}
	home, err := os.MkdirTemp("", "netauth-browser-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(home) })
	if err := os.Chown(home, uid, gid); err != nil {
		t.Fatalf("giving the browser's home to uid %d: %v", uid, err)
	}
	if err := os.Chmod(home, 0o700); err != nil {
		t.Fatal(err)
	}
	return &Browser{t: t, bin: bin, uid: uid, gid: gid, home: home, Timeout: 60 * time.Second}
}

// LoadError is the error of a page Chromium could not load: the connection was refused or
// reset, the response was empty, and so on.
type LoadError struct {
	URL string
	Net string // Chromium's network error, such as "net::ERR_CONNECTION_RESET"
}

func (e *LoadError) Error() string {
	return fmt.Sprintf("chromium could not load %s: %s", e.URL, e.Net)
}

// loadFailed is the line headless Chromium logs when the page does not load (it exits 0).
var loadFailed = regexp.MustCompile(`Page load failed: (net::ERR_[A-Z0-9_]+)`)

// DOM loads url and returns the DOM once the page has loaded (chromium --dump-dom). A page
// Chromium could not load is a *LoadError naming Chromium's network error; another failure
// or a timeout is an error with what Chromium printed.
func (b *Browser) DOM(url string) (string, error) {
	b.t.Helper()
	out, err := b.run(url, "--dump-dom")
	return string(out), err
}

// Screenshot loads url in a window of width×height pixels and writes a PNG of it to name
// (a file name such as "alice.png") in the directory $NETAUTH_TEST_ARTIFACTS/TEST, or in the
// test's temporary directory without that variable. It returns the file's path.
func (b *Browser) Screenshot(url, name string, width, height int) (string, error) {
	b.t.Helper()
	if name != filepath.Base(name) || !strings.HasSuffix(name, ".png") {
		return "", fmt.Errorf("screenshot name %q: want a file name ending in .png", name)
	}
	// Chromium, running as the user, writes the file into the user's home; the test (which
	// may run as another user) then copies it where it is kept.
	b.runs++
	shot := filepath.Join(b.home, fmt.Sprintf("shot-%d.png", b.runs))
	if _, err := b.run(url, "--screenshot="+shot, fmt.Sprintf("--window-size=%d,%d", width, height), "--hide-scrollbars"); err != nil {
		return "", err
	}
	data, err := os.ReadFile(shot)
	if err != nil {
		return "", fmt.Errorf("reading the screenshot: %w", err)
	}
	if !bytes.HasPrefix(data, []byte("\x89PNG\r\n\x1a\n")) {
		return "", fmt.Errorf("the screenshot of %s is not a PNG file (%d bytes)", url, len(data))
	}
	dir := b.t.TempDir()
	if a := os.Getenv(ArtifactsEnv); a != "" {
		dir = filepath.Join(a, safeTestName(b.t.Name()))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return "", fmt.Errorf("creating the artifacts directory: %w", err)
		}
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, data, 0o644); err != nil {
		return "", fmt.Errorf("writing the screenshot: %w", err)
	}
	return path, nil
}

// safeTestName makes a test's name (which may hold '/' for subtests) a directory name.
func safeTestName(name string) string {
	return regexp.MustCompile(`[^A-Za-z0-9._-]+`).ReplaceAllString(name, "_")
}

// maxBrowserOutput bounds what a run's standard output and error are kept of.
const maxBrowserOutput = 8 << 20

// run runs Chromium headless as the browser's user on url with extra flags, and returns its
// standard output.
func (b *Browser) run(url string, extra ...string) ([]byte, error) {
	b.runs++
	profile := filepath.Join(b.home, fmt.Sprintf("profile-%d", b.runs))
	args := []string{
		"--headless",
		// Chromium's sandbox needs unprivileged user namespaces (Debian ships no setuid
		// sandbox helper), which containers such as CI's often forbid; Chromium then refuses
		// to start, and as root it never starts with the sandbox. The pages these tests
		// load are their own, from loopback, so the sandbox would protect nothing here.
		"--no-sandbox",
		"--disable-gpu",
		// /dev/shm is small in containers; Chromium then writes shared memory to /tmp.
		"--disable-dev-shm-usage",
		// Nothing but the page: no first-run pages, no background requests to Google's
		// services, no proxy from the environment.
		"--no-first-run",
		"--no-default-browser-check",
		"--disable-background-networking",
		"--disable-component-update",
		"--disable-default-apps",
		"--disable-extensions",
		"--disable-sync",
		"--no-proxy-server",
		"--user-data-dir=" + profile,
	}
	args = append(append(args, extra...), url)
	ctx, cancel := context.WithTimeout(context.Background(), b.Timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, b.bin, args...)
	cmd.Dir = b.home
	cmd.Env = []string{
		"HOME=" + b.home,
		"PATH=/usr/local/bin:/usr/bin:/bin",
		"LANG=C.UTF-8",
		"TMPDIR=" + b.home,
		"XDG_CONFIG_HOME=" + filepath.Join(b.home, ".config"),
		"XDG_CACHE_HOME=" + filepath.Join(b.home, ".cache"),
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if b.uid != os.Getuid() || b.gid != os.Getgid() {
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: uint32(b.uid), Gid: uint32(b.gid), Groups: []uint32{}}
	}
	// On timeout, kill the whole process group: Chromium runs a dozen processes.
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	stdout := &limitedBuffer{max: maxBrowserOutput}
	stderr := &limitedBuffer{max: maxBrowserOutput}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	err := cmd.Run()
	if cmd.Process != nil {
		// Whatever Chromium left behind in its group goes too.
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	if ctx.Err() != nil {
		return nil, fmt.Errorf("chromium did not finish loading %s within %v:\n%s", url, b.Timeout, relevant(stderr.String()))
	}
	if err != nil {
		return nil, fmt.Errorf("chromium on %s: %w:\n%s", url, err, relevant(stderr.String()))
	}
	if m := loadFailed.FindStringSubmatch(stderr.String()); m != nil {
		return nil, &LoadError{URL: url, Net: m[1]}
	}
	return stdout.Bytes(), nil
}

// relevant drops from Chromium's standard error the lines about the D-Bus session bus,
// which a test's environment does not have.
func relevant(s string) string {
	var keep []string
	for _, line := range strings.Split(s, "\n") {
		if strings.Contains(line, "dbus") || strings.TrimSpace(line) == "" {
			continue
		}
		keep = append(keep, line)
	}
	return strings.Join(keep, "\n")
}

// limitedBuffer keeps the first max bytes written to it and discards the rest.
type limitedBuffer struct {
	bytes.Buffer
	max int
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if room := l.max - l.Len(); room > 0 {
		l.Buffer.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

var _ io.Writer = (*limitedBuffer)(nil)
