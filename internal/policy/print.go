// SPDX-License-Identifier: Apache-2.0

package policy

import (
	"io"
	"strings"
)

// WriteTo writes the configuration in netauthd.conf syntax with every
// directive that has a value spelled out, defaults included (as
// "netauthd -T" prints it): read back by Parse, the output gives the same
// configuration. key-command, authorized-principals-command, program, args,
// backend, users and groups are left out when they have no value, as they
// have no way of saying "none"; so are the certificate files
// (trusted-user-ca-keys, authorized-principals-dir, revoked-keys,
// host-certificate) when not set.
func (c *Config) WriteTo(w io.Writer) (int64, error) {
	b := &strings.Builder{}
	line := func(name string, vals ...string) {
		b.WriteString(name)
		for _, v := range vals {
			b.WriteByte(' ')
			b.WriteString(quoteValue(v))
		}
		b.WriteByte('\n')
	}
	if c.Path != "" {
		b.WriteString("# effective configuration of " + strings.ReplaceAll(c.Path, "\n", " ") + "\n")
	} else {
		b.WriteString("# effective configuration: the embedded default\n")
	}
	line("host-key", c.HostKey)
	line("audit-log", c.AuditLog)
	if c.AuthorizedKeysDir == "" {
		line("authorized-keys-dir", "none")
	} else {
		line("authorized-keys-dir", c.AuthorizedKeysDir)
	}
	line("home-authorized-keys", yesNo(c.HomeAuthorizedKeys))
	if len(c.KeyCommand) > 0 {
		line("key-command", c.KeyCommand...)
	}
	if c.TicketLifetime < 0 {
		line("ticket-lifetime", "off")
	} else {
		line("ticket-lifetime", formatDuration(c.TicketLifetime))
	}
	line("max-clock-skew", formatDuration(c.MaxClockSkew))
	line("handshake-timeout", formatDuration(c.HandshakeTimeout))
	line("revocation-check", formatDuration(c.RevocationCheck))
	line("spare-workers", itoa(c.SpareWorkers))
	if c.MetricsListen != "" {
		line("metrics-listen", c.MetricsListen)
	}
	for _, d := range []struct{ name, value string }{
		{"trusted-user-ca-keys", c.TrustedUserCAKeys},
		{"authorized-principals-dir", c.AuthorizedPrincipalsDir},
		{"revoked-keys", c.RevokedKeys},
		{"host-certificate", c.HostCertificate},
	} {
		if d.value != "" {
			line(d.name, d.value)
		}
	}
	if len(c.AuthorizedPrincipalsCommand) > 0 {
		line("authorized-principals-command", c.AuthorizedPrincipalsCommand...)
	}
	for _, s := range c.Services {
		b.WriteString("\nservice " + quoteValue(s.Name) + " {\n")
		in := func(name string, vals ...string) {
			b.WriteString("    ")
			line(name, vals...)
		}
		for _, a := range s.Listen {
			in("listen", a)
		}
		in("mode", s.Mode.String())
		if s.Mode == Exec {
			in("exec-worker", s.ExecWorker.String())
		}
		if s.Program != "" {
			in("program", s.Program)
		}
		if len(s.Args) > 0 {
			in("args", s.Args...)
		}
		if s.Backend != "" {
			in("backend", s.Backend)
		}
		if len(s.IdentityHeaders) > 0 {
			in("identity-headers", s.IdentityHeaders...)
		}
		if s.Mode == Instance {
			if s.InstanceListen != "" {
				in("instance-listen", s.InstanceListen)
			}
			if s.InstanceStartTimeout != 0 { // else the default, DefaultInstanceStartTimeout
				in("instance-start-timeout", formatDuration(s.InstanceStartTimeout))
			}
		}
		if len(s.Users) > 0 {
			in("users", s.Users...)
		}
		if len(s.Groups) > 0 {
			in("groups", s.Groups...)
		}
		if s.RunAsUser {
			in("run-as", "user")
		} else {
			in("run-as", "account", s.Account)
		}
		in("max-workers", itoa(s.MaxWorkers))
		in("max-connections-per-user", itoa(s.MaxConnsPerUser))
		in("idle-timeout", formatDuration(s.IdleTimeout))
		b.WriteString("}\n")
	}
	n, err := io.WriteString(w, b.String())
	return int64(n), err
}

// quoteValue writes v as one value of a directive: as it is when it is a
// plain word, else in double quotes with " and \ escaped.
func quoteValue(v string) string {
	if v != "" && v != "{" && v != "}" && !strings.ContainsAny(v, " \t\"\\#") {
		return v
	}
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(v) + `"`
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
