package check

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"io"

	"filippo.io/age"

	"github.com/walvault/walvault/archive/codec"
	"github.com/walvault/walvault/archive/repo"
)

// checkEncryption picks whose recipient to try: archive_command's when it
// can be seen, else check's own.
func checkEncryption(rep *Report, r *repo.Repo, ac archiveCmd, opts Options) {
	recipients := ac.set.Recipients
	switch {
	case ac.calls && recipients.Known:
		checkArchiveRecipients(rep, r, recipients, opts)
	case len(opts.Recipients) > 0:
		checkCrypto(rep, r, opts.Recipients, true, ownRecipient)
	case ac.calls:
		rep.add("encryption", Warn, "cannot see archive_command's recipient: "+ac.unknown(),
			"run check with --recipient set to what archive_command uses, and --identity-file to the key restores will use")
	default:
		rep.add("encryption", Skip, "no recipient known", "")
	}
}

// checkArchiveRecipients checks the recipients archive_command encrypts
// to.
func checkArchiveRecipients(rep *Report, r *repo.Repo, recipients Setting, opts Options) {
	if len(recipients.Values) == 0 {
		rep.add("encryption", OK, "archive_command encrypts nothing (no --recipient, WALVAULT_RECIPIENT or 'recipient:' in a config file): objects are stored unencrypted", "")
		return
	}
	var recips []age.Recipient
	var err error
	if opts.ParseRecipients != nil {
		recips, err = opts.ParseRecipients(recipients.Values)
	}
	if err != nil {
		rep.add("encryption", Fail, "archive_command's recipient does not parse: "+err.Error(), "fix the recipient archive_command uses")
		return
	}
	checkCrypto(rep, r, recips, true, "archive_command's recipient ("+recipients.From+")")
}

// checkCrypto encrypts a probe to recips and decrypts it with the
// identities.
func checkCrypto(rep *Report, r *repo.Repo, recips []age.Recipient, known bool, what string) {
	switch {
	case len(recips) == 0 && known:
		rep.add("encryption", OK, "objects are not encrypted ("+what+": none)", "")
		return
	case len(recips) == 0:
		rep.add("encryption", Skip, "no recipient given", "")
		return
	case len(r.Identities) == 0:
		rep.add("encryption", Warn, "objects are encrypted ("+what+"), but no --identity-file was given: cannot check that restores can decrypt them",
			"run check with --identity-file set to the key restores will use")
		return
	}
	probe := make([]byte, 256)
	_, _ = rand.Read(probe)
	var buf bytes.Buffer
	w, err := codec.NewWriter(&buf, codec.Settings{Compression: codec.None, Recipients: recips})
	if err == nil {
		_, err = w.Write(probe)
		if cerr := w.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		rep.add("encryption", Fail, "encrypting a probe to "+what+": "+err.Error(), "")
		return
	}
	dec, err := codec.NewReader(&buf, r.Identities)
	var got []byte
	if err == nil {
		got, err = io.ReadAll(dec)
	}
	if err != nil || !bytes.Equal(got, probe) {
		rep.add("encryption", Fail, fmt.Sprintf("the identity file cannot decrypt what %s encrypts (%v): restores would fail", what, err),
			"use the identity that belongs to the recipient (walvault keygen prints it), or encrypt to the identity's recipient")
		return
	}
	rep.add("encryption", OK, "the identity file decrypts what "+what+" encrypts", "")
}
