// SPDX-License-Identifier: Apache-2.0

// Command notes is a per-user notes service. netauthd runs one worker per user, as that
// user, so the notes live in the user's own home directory (~/.netauth-notes, mode 0600) and
// the operating system, not this program, keeps users out of each other's notes.
//
// Protocol, one command per line:
//
//	add TEXT     append a note
//	list         print your notes, then a line "."
//	read USER    try to print USER's notes (the OS refuses unless you are USER)
//	quit
package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"os/user"
	"path/filepath"
	"strings"

	"ubns.dev/netauth"
)

const notesFile = ".netauth-notes"

func main() {
	if !netauth.IsWorker() {
		log.Fatal("notes runs as a netauthd worker (see examples/netauthd.conf)")
	}
	ln, err := netauth.Listen("", "", nil)
	if err != nil {
		log.Fatal(err)
	}
	if err := ln.Serve(serve); err != nil {
		log.Fatal(err)
	}
}

func serve(c *netauth.Conn) {
	home, err := os.UserHomeDir()
	if err != nil {
		fmt.Fprintln(c, "error: no home directory")
		return
	}
	mine := filepath.Join(home, notesFile)
	in := bufio.NewScanner(c)
	for in.Scan() {
		cmd, arg, _ := strings.Cut(in.Text(), " ")
		switch cmd {
		case "add":
			err = appendNote(mine, arg)
			reply(c, err, "ok")
		case "list":
			err = printFile(c, mine)
			reply(c, err, ".")
		case "read":
			err = readOther(c, arg)
			reply(c, err, ".")
		case "quit":
			return
		default:
			fmt.Fprintln(c, "error: commands are add TEXT, list, read USER, quit")
		}
	}
}

func reply(w io.Writer, err error, ok string) {
	if err != nil {
		fmt.Fprintln(w, "error:", err)
		return
	}
	fmt.Fprintln(w, ok)
}

func appendNote(path, text string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	if _, err := fmt.Fprintln(f, text); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func printFile(w io.Writer, path string) error {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(w, f)
	return err
}

func readOther(w io.Writer, name string) error {
	u, err := user.Lookup(name)
	if err != nil {
		return err
	}
	return printFile(w, filepath.Join(u.HomeDir, notesFile))
}
