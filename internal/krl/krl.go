// SPDX-License-Identifier: Apache-2.0

// Package krl reads revoked keys the way sshd's RevokedKeys does: either an OpenSSH key
// revocation list (a KRL, as `ssh-keygen -k` writes it; OpenSSH PROTOCOL.krl) or a plain list
// of public keys, one per line in authorized_keys format.
//
// A key is revoked when its plain public key (a certificate's underlying key) is listed, by
// its wire form or its SHA-1 or SHA-256 hash; a certificate also when its CA key is revoked,
// or when a certificate section for its CA (or for any CA) lists its key id or its serial
// (serial 0 is never revoked by serial, as in OpenSSH).
package krl

import (
	"bytes"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/big"
	"os"
	"sort"

	"golang.org/x/crypto/ssh"
)

// MaxSize is the largest revoked-keys file Parse and Load accept, in bytes. It is checked
// before the file is read or anything is allocated for it.
const MaxSize = 16 << 20

// magic starts every KRL.
const magic = "SSHKRL\n\x00"

const formatVersion = 1

// Section types (PROTOCOL.krl).
const (
	sectionCertificates   = 1
	sectionExplicitKey    = 2
	sectionFingerprintSHA = 3
	sectionSignature      = 4
	sectionFingerprint256 = 5
	sectionExtension      = 255

	certSerialList   = 0x20
	certSerialRange  = 0x21
	certSerialBitmap = 0x22
	certKeyID        = 0x23
	certExtension    = 0x39
)

// MaxEntries bounds the entries (keys, hashes, serial ranges, key ids) one file may hold, so
// that a serial bitmap of alternating bits cannot make a file of MaxSize bytes expand to
// many times that in memory.
const MaxEntries = 1 << 22

var errTooMany = fmt.Errorf("krl: more than %d entries", MaxEntries)

// maxBitmapBits bounds one serial bitmap section's bits (the file's size bounds it too).
const maxBitmapBits = 8 * MaxSize

// Set is a parsed revoked-keys file. The zero Set revokes nothing. Safe for concurrent reads.
type Set struct {
	// keys holds the SHA-256 of the wire form of every plain key revoked explicitly (a
	// plain list, or a KRL's explicit key section), and sha256s those of a KRL's SHA-256
	// fingerprint sections: both compare with the SHA-256 of a key's plain wire form.
	keys    map[[sha256.Size]byte]struct{}
	sha1s   map[[sha1.Size]byte]struct{}
	certs   map[string]*caSection // by CA key wire form; "" for any CA
	isKRL   bool
	entries int
}

// caSection is what a KRL revokes of one CA's certificates.
type caSection struct {
	ranges []serialRange // sorted by lo, merged
	keyIDs map[string]struct{}
}

type serialRange struct{ lo, hi uint64 }

// IsKRL reports whether the set came from a KRL (rather than a plain list of keys).
func (s *Set) IsKRL() bool { return s != nil && s.isKRL }

// Len is the number of entries the set holds (keys, hashes, serial ranges and key ids).
func (s *Set) Len() int {
	if s == nil {
		return 0
	}
	return s.entries
}

// Load reads the revoked-keys file at path (a KRL or a plain key list), refusing files larger
// than MaxSize before reading them.
func Load(path string) (*Set, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("krl: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("krl: %w", err)
	}
	if fi.Size() > MaxSize {
		return nil, fmt.Errorf("krl: %s is %d bytes, more than %d", path, fi.Size(), MaxSize)
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxSize+1))
	if err != nil {
		return nil, fmt.Errorf("krl: reading %s: %w", path, err)
	}
	s, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%w (in %s)", err, path)
	}
	return s, nil
}

// Parse parses a revoked-keys file: a KRL if it starts with the KRL magic, else a plain list
// of public keys (authorized_keys format without options: blank lines and lines starting with
// "#" are skipped; a line that is not a key is an error, so that a damaged file never revokes
// less than it says).
func Parse(data []byte) (*Set, error) {
	if len(data) > MaxSize {
		return nil, fmt.Errorf("krl: %d bytes, more than %d", len(data), MaxSize)
	}
	s := &Set{}
	if bytes.HasPrefix(data, []byte(magic)) {
		s.isKRL = true
		if err := s.parseKRL(data[len(magic):]); err != nil {
			return nil, err
		}
		return s, nil
	}
	if err := s.parseList(data); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *Set) parseList(data []byte) error {
	for n, line := range bytes.Split(data, []byte("\n")) {
		line = bytes.TrimSpace(line)
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		pub, _, _, _, err := ssh.ParseAuthorizedKey(line)
		if err != nil {
			return fmt.Errorf("krl: line %d: not a public key: %w", n+1, err)
		}
		if s.entries >= MaxEntries {
			return errTooMany
		}
		s.addKey(plain(pub).Marshal())
	}
	return nil
}

func (s *Set) addKey(wire []byte) {
	if s.keys == nil {
		s.keys = make(map[[sha256.Size]byte]struct{})
	}
	s.keys[sha256.Sum256(wire)] = struct{}{}
	s.entries++
}

// reader reads SSH wire-format fields, bounds-checked.
type reader struct {
	b   []byte
	err error
}

func (r *reader) fail(what string) {
	if r.err == nil {
		r.err = fmt.Errorf("krl: truncated %s", what)
	}
	r.b = nil
}

// take returns the next n bytes, or nil if fewer are left.
func (r *reader) take(n int, what string) []byte {
	if len(r.b) < n {
		r.fail(what)
		return nil
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

func (r *reader) u8(what string) byte {
	if v := r.take(1, what); v != nil {
		return v[0]
	}
	return 0
}

func (r *reader) u32(what string) uint32 {
	if v := r.take(4, what); v != nil {
		return binary.BigEndian.Uint32(v)
	}
	return 0
}

func (r *reader) u64(what string) uint64 {
	if v := r.take(8, what); v != nil {
		return binary.BigEndian.Uint64(v)
	}
	return 0
}

func (r *reader) str(what string) []byte {
	n := r.u32(what)
	if r.err != nil || uint64(n) > uint64(len(r.b)) {
		r.fail(what)
		return nil
	}
	return r.take(int(n), what)
}

func (s *Set) parseKRL(data []byte) error {
	r := &reader{b: data}
	if v := r.u32("format version"); r.err == nil && v != formatVersion {
		return fmt.Errorf("krl: unsupported format version %d", v)
	}
	r.u64("krl version")
	r.u64("generated date")
	r.u64("flags")
	r.str("reserved")
	r.str("comment")
	if r.err != nil {
		return r.err
	}
	for len(r.b) > 0 {
		typ := r.u8("section type")
		body := r.str("section")
		if r.err != nil {
			return r.err
		}
		var err error
		switch typ {
		case sectionCertificates:
			err = s.parseCertSection(body)
		case sectionExplicitKey:
			err = s.parseExplicitKeys(body)
		case sectionFingerprintSHA, sectionFingerprint256:
			err = s.parseHashes(typ, body)
		case sectionSignature:
			// OpenSSH 9.4 and later refuse signed KRLs, and so does this parser.
			return errors.New("krl: signed KRLs are not supported (sign the file with ssh-keygen -Y sign instead)")
		case sectionExtension:
			err = parseExtension(body, "extension")
		default:
			return fmt.Errorf("krl: unknown section type %d", typ)
		}
		if err != nil {
			return err
		}
		if s.entries > MaxEntries {
			return errTooMany
		}
	}
	return nil
}

// parseExtension accepts a non-critical extension and refuses a critical one (none is
// known).
func parseExtension(body []byte, what string) error {
	r := &reader{b: body}
	name := r.str(what + " name")
	crit := r.u8(what + " criticality")
	r.str(what + " contents")
	if r.err != nil {
		return r.err
	}
	if len(r.b) != 0 {
		return fmt.Errorf("krl: trailing bytes in %s", what)
	}
	if crit != 0 {
		return fmt.Errorf("krl: unsupported critical %s %q", what, name)
	}
	return nil
}

func (s *Set) parseExplicitKeys(body []byte) error {
	r := &reader{b: body}
	for len(r.b) > 0 {
		blob := r.str("explicit key")
		if r.err != nil {
			return r.err
		}
		pub, err := ssh.ParsePublicKey(blob)
		if err != nil {
			return fmt.Errorf("krl: explicit key: %w", err)
		}
		if _, ok := pub.(*ssh.Certificate); ok {
			return errors.New("krl: explicit key section holds a certificate")
		}
		s.addKey(blob)
	}
	return nil
}

func (s *Set) parseHashes(typ byte, body []byte) error {
	r := &reader{b: body}
	for len(r.b) > 0 {
		h := r.str("key hash")
		if r.err != nil {
			return r.err
		}
		switch {
		case typ == sectionFingerprintSHA && len(h) == sha1.Size:
			if s.sha1s == nil {
				s.sha1s = make(map[[sha1.Size]byte]struct{})
			}
			s.sha1s[[sha1.Size]byte(h)] = struct{}{}
		case typ == sectionFingerprint256 && len(h) == sha256.Size:
			if s.keys == nil {
				s.keys = make(map[[sha256.Size]byte]struct{})
			}
			s.keys[[sha256.Size]byte(h)] = struct{}{}
		default:
			return fmt.Errorf("krl: key hash of %d bytes in a section of type %d", len(h), typ)
		}
		s.entries++
	}
	return nil
}

func (s *Set) parseCertSection(body []byte) error {
	r := &reader{b: body}
	caBlob := r.str("CA key")
	r.str("reserved")
	if r.err != nil {
		return r.err
	}
	if len(caBlob) > 0 {
		ca, err := ssh.ParsePublicKey(caBlob)
		if err != nil {
			return fmt.Errorf("krl: CA key: %w", err)
		}
		if _, ok := ca.(*ssh.Certificate); ok {
			return errors.New("krl: CA key is a certificate")
		}
	}
	if s.certs == nil {
		s.certs = make(map[string]*caSection)
	}
	sec := s.certs[string(caBlob)]
	if sec == nil {
		sec = &caSection{}
		s.certs[string(caBlob)] = sec
	}
	for len(r.b) > 0 {
		typ := r.u8("certificate section type")
		sub := r.str("certificate section")
		if r.err != nil {
			return r.err
		}
		sr := &reader{b: sub}
		switch typ {
		case certSerialList:
			for len(sr.b) > 0 {
				v := sr.u64("serial")
				if sr.err != nil {
					return sr.err
				}
				sec.ranges = append(sec.ranges, serialRange{v, v})
				s.entries++
			}
		case certSerialRange:
			lo, hi := sr.u64("serial range"), sr.u64("serial range")
			if sr.err != nil {
				return sr.err
			}
			if len(sr.b) != 0 {
				return errors.New("krl: trailing bytes in a serial range")
			}
			if lo > hi {
				return fmt.Errorf("krl: serial range %d-%d is empty", lo, hi)
			}
			sec.ranges = append(sec.ranges, serialRange{lo, hi})
			s.entries++
		case certSerialBitmap:
			off := sr.u64("bitmap offset")
			bm := sr.str("bitmap")
			if sr.err != nil {
				return sr.err
			}
			if len(sr.b) != 0 {
				return errors.New("krl: trailing bytes in a serial bitmap")
			}
			if err := sec.addBitmap(off, bm, &s.entries); err != nil {
				return err
			}
		case certKeyID:
			for len(sr.b) > 0 {
				id := sr.str("key id")
				if sr.err != nil {
					return sr.err
				}
				if sec.keyIDs == nil {
					sec.keyIDs = make(map[string]struct{})
				}
				sec.keyIDs[string(id)] = struct{}{}
				s.entries++
			}
		case certExtension:
			if err := parseExtension(sub, "certificate extension"); err != nil {
				return err
			}
		default:
			return fmt.Errorf("krl: unknown certificate section type 0x%02x", typ)
		}
	}
	sec.normalize()
	return nil
}

// addBitmap adds the serials of a bitmap section: the mpint's bit N revokes serial off+N.
func (sec *caSection) addBitmap(off uint64, mpint []byte, entries *int) error {
	if len(mpint) > 0 && mpint[0]&0x80 != 0 {
		return errors.New("krl: negative serial bitmap")
	}
	if uint64(len(mpint))*8 > maxBitmapBits {
		return errors.New("krl: serial bitmap too large")
	}
	bits := new(big.Int).SetBytes(mpint)
	n := bits.BitLen()
	if n > 0 && off+uint64(n-1) < off {
		return errors.New("krl: serial bitmap overflows")
	}
	for i := 0; i < n; {
		if bits.Bit(i) == 0 {
			i++
			continue
		}
		j := i
		for j+1 < n && bits.Bit(j+1) == 1 {
			j++
		}
		if *entries >= MaxEntries {
			return errTooMany
		}
		sec.ranges = append(sec.ranges, serialRange{off + uint64(i), off + uint64(j)})
		*entries++
		i = j + 1
	}
	return nil
}

// normalize sorts and merges the section's serial ranges.
func (sec *caSection) normalize() {
	if len(sec.ranges) < 2 {
		return
	}
	sort.Slice(sec.ranges, func(i, j int) bool { return sec.ranges[i].lo < sec.ranges[j].lo })
	out := sec.ranges[:1]
	for _, r := range sec.ranges[1:] {
		last := &out[len(out)-1]
		if r.lo <= last.hi || (last.hi != ^uint64(0) && r.lo == last.hi+1) {
			last.hi = max(last.hi, r.hi)
			continue
		}
		out = append(out, r)
	}
	sec.ranges = out
}

func (sec *caSection) revokes(cert *ssh.Certificate) bool {
	if sec == nil {
		return false
	}
	if _, ok := sec.keyIDs[cert.KeyId]; ok {
		return true
	}
	if cert.Serial == 0 {
		return false
	}
	i := sort.Search(len(sec.ranges), func(i int) bool { return sec.ranges[i].hi >= cert.Serial })
	return i < len(sec.ranges) && sec.ranges[i].lo <= cert.Serial
}

// plain returns a certificate's underlying key, and any other key itself.
func plain(k ssh.PublicKey) ssh.PublicKey {
	if c, ok := k.(*ssh.Certificate); ok {
		return c.Key
	}
	return k
}

// keyRevoked reports whether a plain key is revoked explicitly or by hash.
func (s *Set) keyRevoked(k ssh.PublicKey) bool {
	wire := plain(k).Marshal()
	if _, ok := s.keys[sha256.Sum256(wire)]; ok {
		return true
	}
	if len(s.sha1s) > 0 {
		if _, ok := s.sha1s[sha1.Sum(wire)]; ok {
			return true
		}
	}
	return false
}

// Revoked reports whether key is revoked: its plain key, and for a certificate also its CA
// key, its serial under its CA, and its key id.
func (s *Set) Revoked(key ssh.PublicKey) bool {
	if s == nil || key == nil {
		return false
	}
	if s.keyRevoked(key) {
		return true
	}
	cert, ok := key.(*ssh.Certificate)
	if !ok {
		return false
	}
	if cert.SignatureKey != nil {
		if s.keyRevoked(cert.SignatureKey) {
			return true
		}
		if s.certs[string(cert.SignatureKey.Marshal())].revokes(cert) {
			return true
		}
	}
	return s.certs[""].revokes(cert)
}
