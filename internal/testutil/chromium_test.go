// SPDX-License-Identifier: Apache-2.0

package testutil

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"
)

// TestBrowser loads a page with headless Chromium, as nobody when the test runs as root,
// and checks the DOM after the page's script ran, a screenshot, and the error page of a
// server that resets the connection.
func TestBrowser(t *testing.T) {
	uid, gid := os.Getuid(), os.Getgid()
	if uid == 0 {
		uid, gid = 65534, 65534 // nobody, nogroup
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `<!DOCTYPE html><title>t</title><p id="p">static</p><script>document.getElementById("p").textContent = "from script"</script>`)
	}))
	defer srv.Close()
	b := NewBrowser(t, uid, gid)
	dom, err := b.DOM(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(dom, `<p id="p">from script</p>`) {
		t.Errorf("DOM:\n%s\nwant the paragraph the script wrote", dom)
	}
	path, err := b.Screenshot(srv.URL, "page.png", 400, 300)
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil || !bytes.HasPrefix(data, []byte("\x89PNG")) {
		t.Errorf("screenshot %s: %v, %d bytes; want a PNG file", path, err, len(data))
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o644 {
		t.Errorf("screenshot %s: %v, want a file of mode 0644", path, err)
	}
	if home := os.Getenv(ArtifactsEnv); home == "" && !strings.HasPrefix(path, os.TempDir()) {
		t.Errorf("screenshot written to %s, want the test's temporary directory", path)
	}

	// A server that resets every connection: a LoadError naming the reset.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.(*net.TCPConn).SetLinger(0)
			time.Sleep(10 * time.Millisecond)
			c.Close()
		}
	}()
	dom, err = b.DOM("http://" + ln.Addr().String() + "/")
	var le *LoadError
	if !errors.As(err, &le) || le.Net != "net::ERR_CONNECTION_RESET" && le.Net != "net::ERR_EMPTY_RESPONSE" {
		t.Errorf("loading a page whose connection is reset: %v, DOM %q; want a LoadError naming the reset", err, dom)
	}
}
